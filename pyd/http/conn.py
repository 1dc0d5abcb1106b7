"""Conn: the duplex byte stream of a hijacked (or upgraded) connection.

    read(n)       up to n bytes from the client; b"" at its EOF. Bytes the
                  HTTP parser had already buffered come first.
    write(data)   all of data, or OSError
    close_write() half-close: the client sees EOF, and can still send
    close_read()  stop reading: a thread blocked in read() returns b""
    gone()        True once the client has closed its side; never blocks
    abort()       cut the connection both ways at once (a slow client)

It never peeks with socket flags (ssl.SSLSocket.recv refuses them): gone()
reads what is ready into a small buffer that read() serves first. So the
same code runs over TCP, unix sockets and TLS; with TLS, close_write sends
the close_notify alert (unwrap) rather than a bare FIN when it can.
"""

import select
import socket
import threading

# What gone() keeps of input that arrives while nobody reads it.
MAX_PENDING = 64 << 10


class Conn:
    def __init__(self, sock, rfile, wfile):
        self._sock = sock
        self._rfile = rfile      # buffered: may hold bytes past the request head
        self._wfile = wfile
        self._lock = threading.Lock()
        self._pending = b""
        self._eof = False

    def read(self, n=65536):
        with self._lock:
            if self._pending:
                data, self._pending = self._pending[:n], self._pending[n:]
                return data
            if self._eof:
                return b""
        try:
            return self._rfile.read1(n)
        except (OSError, ValueError):
            return b""

    def write(self, data):
        self._wfile.write(data)

    def gone(self):
        with self._lock:
            if self._eof:
                return True
            try:
                ready = _pending_tls(self._sock) or bool(select.select([self._sock], [], [], 0)[0])
                if not ready:
                    return False
                data = self._rfile.read1(65536)
            except (OSError, ValueError):
                self._eof = True
                return True
            if not data:
                self._eof = True
                return True
            if len(self._pending) < MAX_PENDING:
                self._pending += data[:MAX_PENDING - len(self._pending)]
            return False

    def close_write(self):
        try:
            if _is_tls(self._sock):
                self._sock.settimeout(1)
                self._sock.unwrap()
            else:
                self._sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            self._shutdown(socket.SHUT_WR)

    def close_read(self):
        self._shutdown(socket.SHUT_RD)

    def abort(self):
        self._shutdown(socket.SHUT_RDWR)

    def _shutdown(self, how):
        try:
            socket.socket.shutdown(self._sock, how)  # the plain socket call, TLS or not
        except (OSError, ValueError):
            pass


def _is_tls(sock):
    # ssl.SSLSocket, told apart without importing ssl (kept off the start path).
    return hasattr(sock, "unwrap") and hasattr(sock, "pending")


def _pending_tls(sock):
    return _is_tls(sock) and sock.pending() > 0
