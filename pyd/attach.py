"""An attach session on a hijacked connection.

Output: the replay of the log (logs=1), then the live feed (stream=1) until
the container's output ends; then the write side is half-closed. Bytes go
raw on the legacy surface or with a TTY, and in 8-byte-header frames when
the surface asks for it (`framed`): the one switch the modern API needs.

Input (stdin=1 and the container has OpenStdin): a thread copies what the
client sends, starting with what is already buffered in rfile, into the
container's stdin, waiting for the start when the client attached first.
With StdinOnce and no TTY, the client's EOF closes the container's stdin.
With a TTY, Ctrl-P Ctrl-Q detaches the client.

Leaving clients: a client that stops reading is dropped once it is too far
behind (stdio.Subscriber): its socket is shut down at once, which frees the
session thread even from a blocked send. A client that did not ask for stdin
and closes its connection is noticed within a second, even when the
container is silent. See docs/attach.md.
"""

import logging
import select
import socket
import struct
import threading

from . import containers as cs
from .stdio import STDERR, STDOUT, Dropped

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">BxxxI")
DETACH = b"\x10\x11"  # Ctrl-P Ctrl-Q
POLL = 1.0


class _Detached(Exception):
    pass


def frame(stream, data):
    return _FRAME.pack(stream, len(data)) + data


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _client_gone(sock):
    """True when the client closed its side (EOF pending on the socket)."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
        return bool(ready) and sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def run(c, runtime, hijack, logs, stream, stdin, stdout, stderr, framed, error_format):
    tty = bool(c.config.get("Tty"))
    framed = framed and not tty
    streams = [s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on]
    output = runtime.output(c)
    with c.lock:
        waiting = c.state_name in (cs.CREATED, cs.STARTING)
        live = stream and (c.running or waiting)
        replay, sub = output.subscribe(streams, logs, live, wait_for_start=waiting,
                                       on_drop=lambda: _shutdown(hijack.sock))
    ended = threading.Event()  # the session is over: the stdin thread must stop too

    def send(s, data):
        hijack.send(frame(s, data) if framed else data)

    forward_stdin = stdin and stream and c.config.get("OpenStdin") and (c.running or waiting)
    stdin_thread = None
    try:
        for s, data in replay:
            send(s, data)
        if forward_stdin:
            stdin_thread = threading.Thread(target=_copy_stdin, name=f"stdin-{c.short_id}",
                                            args=(c, hijack, tty, ended, sub), daemon=True)
            stdin_thread.start()
        while sub is not None:
            item = sub.get(timeout=POLL)
            if item is None or ended.is_set():
                break
            s, data = item
            if s == "timeout":
                if not stdin and _client_gone(hijack.sock):
                    break
                continue
            send(s, data)
    except Dropped:
        log.info("attach to %s: client too slow, dropped", c.short_id)
    except OSError:
        pass  # the client went away
    except Exception as e:
        log.exception("attach to %s failed", c.short_id)
        try:
            hijack.send(error_format(str(e)))
        except OSError:
            pass
    finally:
        ended.set()
        if sub is not None:
            output.unsubscribe(sub)
        hijack.close_write()
        try:
            hijack.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        if stdin_thread is not None:
            stdin_thread.join(5)


def _started_runtime(c, ended):
    """The running container's runtime, waiting while it is yet to start; None
    if it will not run (failed, exited, removed) or the session ended."""
    with c.lock:
        while not ended.is_set():
            if c.runtime is not None:
                return c.runtime
            if c.state_name not in (cs.CREATED, cs.STARTING):
                return None
            c.changed.wait(POLL)
    return None


def _copy_stdin(c, hijack, tty, ended, sub):
    pending = b""  # a Ctrl-P held back until we know whether Ctrl-Q follows
    try:
        while True:
            data = hijack.rfile.read1(65536)
            if not data:
                break
            if tty:
                data, pending = pending + data, b""
                i = data.find(DETACH)
                if i >= 0:
                    if i:
                        _write(c, data[:i], ended)
                    raise _Detached()
                if data.endswith(DETACH[:1]):
                    data, pending = data[:-1], DETACH[:1]
            if data:
                _write(c, data, ended)
        # EOF from the client.
        if c.config.get("StdinOnce") and not tty:
            r = _started_runtime(c, ended)
            if r is not None:
                r.close_stdin()
    except _Detached:
        log.info("client detached from %s", c.short_id)
        ended.set()
        if sub is not None:
            sub.end()
    except OSError:
        pass


def _write(c, data, ended):
    r = _started_runtime(c, ended)
    if r is None:
        raise BrokenPipeError()
    r.write_stdin(data)
