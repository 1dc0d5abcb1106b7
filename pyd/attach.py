"""An attach session on a hijacked connection.

Output: the replay of the log (logs=1), then the live feed (stream=1) until
the container's output ends; then the write side is half-closed. Bytes go
raw on the legacy surface or with a TTY, and in 8-byte-header frames when
the surface asks for it (`framed`): the one switch the modern API needs.

Input (stdin=1 and the container has OpenStdin): a thread copies what the
client sends, starting with what is already buffered in rfile, into the
container's stdin. With StdinOnce and no TTY, the client's EOF closes the
container's stdin. With a TTY, Ctrl-P Ctrl-Q detaches the client.

A client that stops reading is dropped once it is too far behind (stdio.Subscriber).
"""

import logging
import socket
import struct
import threading

from . import containers as cs
from .stdio import STDERR, STDOUT, Dropped

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">BxxxI")
DETACH = b"\x10\x11"  # Ctrl-P Ctrl-Q


class _Detached(Exception):
    pass


def frame(stream, data):
    return _FRAME.pack(stream, len(data)) + data


def run(c, runtime, hijack, logs, stream, stdin, stdout, stderr, framed):
    tty = bool(c.config.get("Tty"))
    framed = framed and not tty
    streams = [s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on]
    output = runtime.output(c)
    with c.lock:
        waiting = c.state_name in (cs.CREATED, cs.STARTING)
        live = stream and (c.running or waiting)
        replay, sub = output.subscribe(streams, logs, live, wait_for_start=waiting)
    detached = threading.Event()

    def send(s, data):
        hijack.send(frame(s, data) if framed else data)

    stdin_thread = None
    try:
        for s, data in replay:
            send(s, data)
        if stdin and stream and c.config.get("OpenStdin") and (c.running or waiting):
            stdin_thread = threading.Thread(target=_copy_stdin, name=f"stdin-{c.short_id}",
                                            args=(c, runtime, hijack, tty, detached, sub), daemon=True)
            stdin_thread.start()
        while sub is not None:
            item = sub.get(timeout=1.0)
            if item is None or detached.is_set():
                break
            s, data = item
            if s == "timeout":
                continue
            send(s, data)
    except Dropped:
        log.info("attach to %s: client too slow, dropped", c.short_id)
    except OSError:
        pass  # the client went away
    finally:
        if sub is not None:
            output.unsubscribe(sub)
        hijack.close_write()
        try:
            hijack.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
        if stdin_thread is not None:
            stdin_thread.join(5)


def _copy_stdin(c, runtime, hijack, tty, detached, sub):
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
                        _write(c, data[:i])
                    raise _Detached()
                if data.endswith(DETACH[:1]):
                    data, pending = data[:-1], DETACH[:1]
            if data:
                _write(c, data)
        # EOF from the client.
        if c.config.get("StdinOnce") and not tty:
            r = c.runtime
            if r is not None:
                r.close_stdin()
    except _Detached:
        log.info("client detached from %s", c.short_id)
        detached.set()
        if sub is not None:
            sub.end()
    except OSError:
        pass


def _write(c, data):
    r = c.runtime
    if r is None:
        raise BrokenPipeError()
    r.write_stdin(data)
