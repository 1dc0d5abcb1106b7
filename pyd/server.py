"""HTTP core on http.server and socketserver.

Map:
  status_for()   the ONE table from error meanings (pyd.errors) to HTTP status
  Request        what a handler sees: params, query helpers, body, hijack
  Reply, Stream  what a handler returns: a whole reply, or a chunked stream
  Hijack         a connection taken over by a handler (attach)
  Handler        BaseHTTPRequestHandler: limits, versions, routing, one write per reply
  Server         the listeners (TCP and unix, any number) and a bound on connections

Handlers return a Reply or a Stream, or call req.hijack() and return None.
Errors raised before anything was written become a status and a body shaped
by the request's API surface; errors raised inside a Stream are written into
the stream, since the status line has already gone.
"""

import http.server
import json
import logging
import os
import socket
import socketserver
import threading
import time
import traceback
from urllib.parse import parse_qs, unquote

from . import errors
from .api import versions

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192

_STATUS = [
    (errors.NotFound, 404),
    (errors.BadParameter, 400),
    (errors.Conflict, 409),
    (errors.NotModified, 304),
    (errors.Impossible, 406),
    (errors.Unauthorized, 401),
    (errors.TooLarge, 413),
    (errors.Unavailable, 503),
]


def status_for(exc):
    """Map an exception to its HTTP status. Anything without a meaning is 500."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


class Reply:
    """A complete reply, written in one send (see DESIGN.md, Nagle note)."""

    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status=200, body=b"", content_type=None, headers=()):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = list(headers)

    @classmethod
    def json(cls, obj, status=200):
        return cls(status, json.dumps(obj).encode(), "application/json")

    @classmethod
    def text(cls, text, status=200, content_type="text/plain; charset=utf-8"):
        return cls(status, text.encode(), content_type)

    @classmethod
    def empty(cls, status=204):
        return cls(status)


class Stream:
    """A reply whose body is produced piece by piece (progress, export, events).

    `chunks` yields bytes, or is a callable taking `send(bytes)` for code
    that reports progress through callbacks. `on_error(message) -> bytes` formats an error that
    happens after the header went out; `close()` is called on the iterator
    when the client goes away so its cleanup runs.
    """

    def __init__(self, chunks, content_type="application/json", on_error=None, status=200):
        self.chunks = chunks
        self.content_type = content_type
        self.on_error = on_error
        self.status = status


class Hijack:
    """A connection taken over by a handler. Read client bytes from `rfile`
    (it may already hold buffered bytes), write with `send`."""

    def __init__(self, handler):
        self.sock = handler.connection
        self.rfile = handler.rfile
        self._wfile = handler.wfile

    def send(self, data):
        self._wfile.write(data)

    def close_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class _BodyReader:
    """Reads exactly Content-Length bytes, or a chunked body, from rfile."""

    def __init__(self, rfile, length=None, chunked=False):
        self._rfile = rfile
        self._left = length or 0
        self._chunked = chunked
        self._done = not chunked and not length

    @property
    def finished(self):
        return self._done

    def _next_chunk_size(self):
        line = self._rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise errors.BadParameter("malformed chunked body")
        try:
            return int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise errors.BadParameter("malformed chunked body") from None

    def read(self, n=-1):
        if self._done:
            return b""
        if self._chunked and self._left == 0:
            self._left = self._next_chunk_size()
            if self._left == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = self._rfile.read(want)
        if len(data) < want:
            self._done = True
            raise errors.BadParameter("request body ended early")
        self._left -= len(data)
        if self._left == 0:
            if self._chunked:
                self._rfile.readline(16)  # CRLF after the chunk
            else:
                self._done = True
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self):
        return True

    def read_all(self, limit):
        parts, total = [], 0
        while True:
            data = self.read(65536)
            if not data:
                return b"".join(parts)
            total += len(data)
            if total > limit:
                raise errors.TooLarge(f"request body over the limit of {limit} bytes")
            parts.append(data)

    def drain(self, limit):
        """Skip what is left, so keep-alive can go on; False if too much."""
        total = 0
        while not self._done:
            data = self.read(65536)
            total += len(data)
            if total > limit:
                return False
        return True


_TRUE = ("1", "true", "True")
_FALSE = ("0", "false", "False", "")


class Request:
    """The parsed request as handlers see it."""

    def __init__(self, handler, method, path, query, params, version, surface):
        self._handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.params = params
        self.version = version
        self.surface = surface
        self.headers = handler.headers
        self.daemon = handler.server.app.daemon
        self.config = handler.server.app.config
        self.hijacked = None
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise errors.BadParameter("invalid Content-Length") from None
        if length < 0:
            raise errors.BadParameter("invalid Content-Length")
        self.body = _BodyReader(handler.rfile, length, chunked="chunked" in te)

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[-1] if values else default

    def arg_bool(self, name, default=False):
        value = self.arg(name)
        if value is None:
            return default
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise errors.BadParameter(f"bad value for {name}: {value!r} (expected 1/True/true or 0/False/false)")

    def arg_int(self, name, default=None):
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise errors.BadParameter(f"bad value for {name}: {value!r} (expected an integer)") from None

    def json(self, default=None):
        """The body parsed as JSON; `default` when the body is empty."""
        raw = self.body.read_all(self.config.max_json_body)
        if not raw.strip():
            return default
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise errors.BadParameter(f"malformed JSON body: {e}") from None

    def hijack(self):
        """Take the connection over: write the surface's head, return a Hijack.

        Validate everything before calling this: afterwards no status can be sent.
        """
        h = self._handler
        status_line, headers = self.surface.hijack_head(self.headers)
        head = [status_line] + [f"{k}: {v}" for k, v in headers + h.extra_headers()]
        h.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        h.close_connection = True
        h.connection.settimeout(None)
        h.status_for_log = int(status_line.split()[1])
        self.hijacked = Hijack(h)
        return self.hijacked


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pyd"
    sys_version = ""

    def setup(self):
        self.timeout = self.server.app.config.idle_timeout
        super().setup()
        if self.server.address_family in (socket.AF_INET, socket.AF_INET6):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def address_string(self):
        # On a unix socket client_address is '' (DESIGN.md, stdlib quirks).
        return self.client_address[0] if self.client_address else "unix"

    def log_message(self, format, *args):
        log.debug("%s " + format, self.address_string(), *args)

    def log_request(self, code="-", size="-"):
        pass  # one line per request is logged by _dispatch, with timing

    def extra_headers(self):
        hdrs = [("API-Version", versions.ADVERTISED)]
        if self.server.app.config.cors:
            hdrs += [
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Headers", "Origin, X-Requested-With, Content-Type, Accept"),
                ("Access-Control-Allow-Methods", "GET, POST, DELETE, PUT, OPTIONS"),
            ]
        return hdrs

    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414, "request line too long")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._dispatch()
            self.wfile.flush()
        except (TimeoutError, ConnectionError, BrokenPipeError):
            self.close_connection = True

    def send_error(self, code, message=None, explain=None):
        """stdlib calls this for protocol errors; answer in plain text and close."""
        text = message or self.responses.get(code, ("error",))[0]
        self.close_connection = True
        try:
            self._write(code, (str(text) + "\n").encode(), "text/plain; charset=utf-8",
                        [("Connection", "close")])
        except OSError:
            pass
        log.info("%s %s -> %d (%s)", self.address_string(), self.requestline[:100], code, text)

    # -- writing ---------------------------------------------------------

    def _head(self, status, content_type, headers):
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server_version}",
                 f"Date: {self.date_time_string()}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines += [f"{k}: {v}" for k, v in list(headers) + self.extra_headers()]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write(self, status, body, content_type, headers=()):
        headers = list(headers)
        if status not in (204, 304):
            headers.append(("Content-Length", str(len(body))))
        else:
            body = b""
        head = self._head(status, content_type, headers)
        self.wfile.write(head if self.command == "HEAD" else head + body)
        self.status_for_log = status

    def _write_stream(self, stream, surface):
        chunked = self.request_version == "HTTP/1.1"
        if not chunked:
            self.close_connection = True
        headers = [("Transfer-Encoding", "chunked")] if chunked else []
        self.wfile.write(self._head(stream.status, stream.content_type, headers))
        self.status_for_log = stream.status

        def send(data):
            if not data:
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

        chunks = stream.chunks if callable(stream.chunks) else iter(stream.chunks)
        try:
            if callable(chunks):
                chunks(send)
            else:
                for data in chunks:
                    send(data)
        except (ConnectionError, BrokenPipeError, TimeoutError):
            self.close_connection = True
            return
        except Exception as e:
            self._log_failure(e)
            if not stream.on_error:
                # No way to say it in-band (a tar, say): end without the final
                # chunk and close, so the client sees a broken reply, not a short one.
                self.close_connection = True
                return
            message = str(e) if isinstance(e, (errors.PydError, OSError)) else f"internal error: {e}"
            try:
                send(stream.on_error(message))
            except OSError:
                self.close_connection = True
                return
        finally:
            close = getattr(chunks, "close", None)
            if close and not callable(stream.chunks):
                close()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    # -- dispatch --------------------------------------------------------

    def _log_failure(self, exc):
        if isinstance(exc, errors.PydError):
            log.info("%s %s: %s", self.command, self.path, exc)
        else:
            log.error("%s %s failed:\n%s", self.command, self.path,
                      "".join(traceback.format_exception(exc)))

    def _dispatch(self):
        started = time.monotonic()
        self.status_for_log = 0
        app = self.server.app
        req = None
        surface = versions.Legacy(versions.DEFAULT)
        try:
            raw_path, _, qs = self.path.partition("?")
            version, path = versions.split(unquote(raw_path))
            surface = versions.surface_for(version)
            if self.command == "OPTIONS" and app.config.cors:
                result = Reply(200)
            else:
                route, params = app.router.match(self.command, path)
                query = parse_qs(qs, keep_blank_values=True)
                req = Request(self, self.command, path, query, params, version, surface)
                result = route(req)
            if req is not None and req.hijacked:
                pass
            elif isinstance(result, Stream):
                self._write_stream(result, surface)
            else:
                self._write(result.status, result.body, result.content_type, result.headers)
        except (ConnectionError, BrokenPipeError, TimeoutError):
            self.close_connection = True
        except Exception as e:
            self._log_failure(e)
            if req is not None and req.hijacked:
                try:
                    req.hijacked.send(surface.text_stream_error(str(e)))
                except OSError:
                    pass
            else:
                status = status_for(e)
                message = str(e) if isinstance(e, (errors.PydError, OSError)) else f"internal error: {type(e).__name__}: {e}"
                ctype, body = surface.error_body(message)
                try:
                    self._write(status, body, ctype)
                except OSError:
                    self.close_connection = True
        finally:
            if req is not None and not req.hijacked and not self.close_connection:
                # Keep-alive only when the body was consumed; drain small leftovers.
                try:
                    if not req.body.drain(1 << 16):
                        self.close_connection = True
                except (errors.PydError, OSError):
                    self.close_connection = True
            log.debug("%s %s %d %.1fms", self.command, self.path, self.status_for_log,
                      (time.monotonic() - started) * 1000)


class _Slots:
    """Bounds the connection threads shared by every listener."""

    def __init__(self, limit):
        self._sem = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.open = set()

    def enter(self, sock):
        if not self._sem.acquire(blocking=False):
            return False
        with self._lock:
            self.open.add(sock)
        return True

    def leave(self, sock):
        with self._lock:
            self.open.discard(sock)
        self._sem.release()


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 32\r\nConnection: close\r\n\r\ntoo many connections, try again\n")


class _Bounded(socketserver.ThreadingMixIn):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def process_request(self, request, client_address):
        if not self.slots.enter(request):
            try:
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.leave(request)
            raise

    def process_request_thread(self, request, client_address):
        threading.current_thread().name = "conn"
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.leave(request)

    def handle_error(self, request, client_address):
        log.error("connection error:\n%s", traceback.format_exc())


class _TCPListener(_Bounded, socketserver.TCPServer):
    pass


class _TCP6Listener(_TCPListener):
    address_family = socket.AF_INET6


class _UnixListener(_Bounded, socketserver.UnixStreamServer):
    allow_reuse_address = False


class App:
    """What handlers reach through the server: config, daemon, router."""

    def __init__(self, config, daemon, router):
        self.config = config
        self.daemon = daemon
        self.router = router


class Server:
    """Any number of listeners sharing one App and one connection bound."""

    def __init__(self, app):
        self.app = app
        self.slots = _Slots(app.config.max_connections)
        self.listeners = []
        self._threads = []

    def listen_tcp(self, host, port):
        cls = _TCP6Listener if ":" in host else _TCPListener
        srv = cls((host, port), Handler, bind_and_activate=True)
        self._add(srv)
        return srv.server_address[1]

    def listen_unix(self, path):
        _remove_stale_socket(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = os.umask(0o117)
        try:
            srv = _UnixListener(path, Handler, bind_and_activate=True)
        finally:
            os.umask(old)
        self._add(srv)
        return path

    def _add(self, srv):
        srv.app = self.app
        srv.slots = self.slots
        self.listeners.append(srv)

    def start(self):
        for srv in self.listeners:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.5},
                                 name=f"listen-{srv.fileno()}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop_accepting(self):
        for srv in self.listeners:
            srv.shutdown()
            srv.server_close()
            if isinstance(srv, _UnixListener):
                try:
                    os.unlink(srv.server_address)
                except OSError:
                    pass

    def close_connections(self, grace):
        """Let replies in progress finish for `grace` seconds, then cut the rest."""
        deadline = time.monotonic() + grace
        while self.slots.open and time.monotonic() < deadline:
            for sock in list(self.slots.open):
                # Idle keep-alive readers wake up with EOF; writers finish first.
                try:
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
            time.sleep(0.05)
        for sock in list(self.slots.open):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _remove_stale_socket(path):
    """Remove a socket left by a dead daemon; refuse if someone answers on it."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"another daemon is listening on {path}")
