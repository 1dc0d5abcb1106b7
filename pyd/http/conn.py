"""Conn: the duplex byte stream of a hijacked (or upgraded) connection.

    read(n)       up to n bytes from the client; b"" at its EOF. Bytes the
                  HTTP parser had already buffered come first.
    write(data)   all of data, or OSError
    close_write() half-close: the client sees EOF, and can still send
    close_read()  stop reading: a thread blocked in read() returns b""
    gone()        True once the client has closed its side; with half_close=True
                  only once it hung up or the connection broke (a half-close
                  just ends its input). Never blocks
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


def _keepalive(sock):
    """Probe a TCP peer that sent its FIN: one that has gone answers with a
    reset (once its FIN_WAIT_2 orphan expires), which poll then reports."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except (OSError, AttributeError):
        pass  # a unix socket: its peer's close is a POLLHUP already


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

    def gone(self, half_close=False, probe=None):
        """Without `half_close` the client's EOF is its leaving (HTTP clients
        of the v1.3 surface never half-close). With it, EOF only ends its
        input, and gone means the connection hung up or broke; `probe` is
        bytes the stream can carry unseen (an empty frame), written after
        the EOF so that a TCP client that closed answers with a reset."""
        with self._lock:
            if self._eof:
                return self._hung_up(probe) if half_close else True
            try:
                ready = _pending_tls(self._sock) or bool(select.select([self._sock], [], [], 0)[0])
                if not ready:
                    return False
                data = self._rfile.read1(65536)
            except (OSError, ValueError):
                self._eof = True
                return True
            if not data:
                # EOF. The docker CLI half-closes at once when it sends no
                # stdin and still reads the output: only a hang-up is gone.
                self._eof = True
                if not half_close:
                    return True
                _keepalive(self._sock)
                return self._hung_up(probe)
            if len(self._pending) < MAX_PENDING:
                self._pending += data[:MAX_PENDING - len(self._pending)]
            return False

    def _hung_up(self, probe=None):
        """The connection is closed both ways or broken: POLLHUP/POLLERR (a
        unix peer's close; a TCP reset, after a write or a keepalive probe)."""
        if probe:
            try:
                self._wfile.write(probe)
            except (OSError, ValueError):
                return True
        p = select.poll()
        try:
            p.register(self._sock, select.POLLIN)
            events = p.poll(0)
        except (OSError, ValueError):
            return True
        return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events)

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
