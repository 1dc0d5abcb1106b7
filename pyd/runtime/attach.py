"""An attach session over a duplex Conn (pyd.http.conn, or anything with
read, write, close_write, gone and abort): it works the same over TCP, unix
sockets and TLS, since it never touches a socket.

Output: the replay of the log (logs=1), then the live feed (stream=1) until
the container's output ends; then the write side is half-closed. Bytes go
raw on the legacy surface or with a TTY, and in 8-byte-header frames when
the surface asks for it (`framed`).

Input (a StdinTarget was given): a thread copies what the client sends into
the container's stdin, waiting for the start when the client attached
first. With StdinOnce and no TTY, the client's EOF closes the container's
stdin. With a TTY, Ctrl-P Ctrl-Q detaches the client.

Leaving clients: a client that stops reading is dropped once it is too far
behind (stdio.Subscriber): the engine subscribed it with conn.abort as the
drop action, which frees the session thread even from a blocked write. A
client that did not ask for stdin and closes its connection is noticed
within a second (conn.gone), even when the container is silent. See
docs/attach.md.
"""

import logging
import struct
import threading
from dataclasses import dataclass

from .stdio import STDOUT, Dropped

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">BxxxI")
DETACH = b"\x10\x11"  # Ctrl-P Ctrl-Q
POLL = 1.0


class _Detached(Exception):
    pass


def frame(stream, data):
    return _FRAME.pack(stream, len(data)) + data


@dataclass
class StdinTarget:
    """Where a session's stdin goes: the container's process of run `min_run`
    or later, waited for if it has not started yet."""
    runtime: object
    cid: str
    min_run: int
    stdin_once: bool


def run(conn, name, replay, sub, stdin, tty, framed, error_format):
    """Serve one session until the output ends, the client leaves or detaches.
    `replay` yields logged (stream, bytes); `sub` is the live Subscriber or
    None; `stdin` a StdinTarget or None. Returns True when the client detached
    (Ctrl-P Ctrl-Q)."""
    # The modern surface's clients half-close when they send no stdin (the
    # docker CLI does at once) and still read: there EOF is not leaving.
    half_close = framed
    framed = framed and not tty
    ended = threading.Event()  # the session is over: the stdin thread must stop too
    detached = threading.Event()

    def send(s, data):
        conn.write(frame(s, data) if framed else data)

    stdin_thread = None
    try:
        for s, data, _ in replay:
            send(s, data)
        if stdin is not None:
            stdin_thread = threading.Thread(target=_copy_stdin, name=f"stdin-{name}",
                                            args=(conn, stdin, tty, ended, sub, detached), daemon=True)
            stdin_thread.start()
        while sub is not None:
            item = sub.get(timeout=POLL)
            if item is None or ended.is_set():
                break
            s, data, _ = item
            if s == "timeout":
                # Silence: has the client gone? (Its half-close is not that: the
                # docker CLI sends one at once when it has no stdin.)
                if stdin is None and conn.gone(half_close, probe=frame(STDOUT, b"") if framed else None):
                    break
                continue
            send(s, data)
    except Dropped:
        log.info("attach to %s: client too slow, dropped", name)
    except OSError:
        pass  # the client went away
    except Exception as e:
        log.exception("attach to %s failed", name)
        try:
            conn.write(error_format(str(e)))
        except OSError:
            pass
    finally:
        ended.set()
        conn.close_write()
        conn.close_read()
        if stdin_thread is not None:
            stdin_thread.join(5)
    return detached.is_set()


def _copy_stdin(conn, target, tty, ended, sub, detached):
    pending = b""  # a Ctrl-P held back until we know whether Ctrl-Q follows
    try:
        while True:
            data = conn.read(65536)
            if not data:
                break
            if tty:
                data, pending = pending + data, b""
                i = data.find(DETACH)
                if i >= 0:
                    if i:
                        _write(target, data[:i], ended)
                    raise _Detached()
                if data.endswith(DETACH[:1]):
                    data, pending = data[:-1], DETACH[:1]
            if data:
                _write(target, data, ended)
        # EOF from the client.
        if target.stdin_once and not tty:
            p = target.runtime.wait_process(target.cid, target.min_run, ended, POLL)
            if p is not None:
                p.close_stdin()
    except _Detached:
        detached.set()
        log.info("client detached from %s", target.cid[:12])
        ended.set()
        if sub is not None:
            sub.end()
    except OSError:
        pass


def _write(target, data, ended):
    p = target.runtime.wait_process(target.cid, target.min_run, ended, POLL)
    if p is None:
        raise BrokenPipeError()
    p.write_stdin(data)
