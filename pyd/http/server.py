"""HTTP core on http.server and socketserver.

Map:
  Handler        BaseHTTPRequestHandler: limits, version negotiation and routing
                 (through the App's api), one write per reply
  Server         the listeners (TCP and unix, any number) and a bound on connections
  App            what handlers reach: config, engine, and the api (router and surfaces)

Handlers return a Reply or a Stream, or call req.hijack() and return None.
Errors raised before anything was written become a status and a body shaped
by the request's API surface; errors raised inside a Stream are written into
the stream, since the status line has already gone.
"""

import http.server
import logging
import os
import select
import socket
import socketserver
import threading
import time
import traceback
from urllib.parse import parse_qs, unquote

from .. import errors
from .messages import Reply, Request, Stream, _BodyReader, body_framing
from .origin import Guard
from .status import status_for

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pyd"
    sys_version = ""

    def setup(self):
        self.timeout = self.server.app.config.idle_timeout
        self.tls_failed = False
        self._accepted = self.request
        tls = self.server.app.tls if self.server.address_family != socket.AF_UNIX else None
        if tls is not None:
            self._handshake(tls)
            if self.tls_failed:
                return      # the TLS socket is closed: nothing to read or write
        super().setup()
        if self.server.address_family in (socket.AF_INET, socket.AF_INET6) and not self.tls_failed:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _handshake(self, tls):
        """TLS on this connection's own thread, bounded by the head timeout. The
        slot follows the TLS socket (wrap_socket detaches the plain one)."""
        raw = self.request
        raw.settimeout(self.server.app.config.head_timeout)
        try:
            wrapped = tls.wrap_socket(raw, server_side=True)
        except (OSError, ValueError) as e:   # ssl.SSLError: no or a bad certificate, not TLS...
            log.info("%s: TLS handshake failed: %s", self.client_address[0] if self.client_address else "?", e)
            self.tls_failed = True
            return
        self.server.slots.replace(raw, wrapped)
        self.request = wrapped

    def handle(self):
        if not self.tls_failed:
            super().handle()

    def finish(self):
        if self.tls_failed:
            return
        try:
            super().finish()
        finally:
            if self.request is not self._accepted:     # a TLS socket: ours to close
                try:
                    self.request.close()
                except OSError:
                    pass

    def address_string(self):
        # On a unix socket client_address is '' (DESIGN.md, stdlib quirks).
        return self.client_address[0] if self.client_address else "unix"

    def log_message(self, format, *args):
        log.debug("%s " + format, self.address_string(), *args)

    def log_request(self, code="-", size="-"):
        pass  # one line per request is logged by _dispatch, with timing

    def extra_headers(self):
        hdrs = [("API-Version", self.server.app.api.advertised), ("Docker-Experimental", "false"),
                ("OSType", "linux")]
        if self.server.app.config.cors:
            hdrs += [
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Headers", "Origin, X-Requested-With, Content-Type, Accept"),
                ("Access-Control-Allow-Methods", "GET, POST, DELETE, PUT, OPTIONS"),
            ]
        return hdrs

    def handle_one_request(self):
        slots, sock = self.server.slots, self.connection
        try:
            # Idle (keep-alive) until the first byte of a request; from then the
            # whole head must come within head_timeout, however slowly it trickles.
            slots.mark(sock, _IDLE)
            self.connection.settimeout(self.server.app.config.idle_timeout)
            if not self.rfile.peek(1):
                self.close_connection = True
                return
            slots.mark(sock, _HEAD)
            self.connection.settimeout(self.server.app.config.head_timeout)
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
            slots.mark(sock, _BUSY_STATE)
            self.connection.settimeout(self.server.app.config.idle_timeout)
            self._dispatch()
            self.wfile.flush()
        except (TimeoutError, ConnectionError, BrokenPipeError, ValueError):
            # ValueError: the reaper shut the socket under a buffered read.
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
        headers = stream.headers + ([("Transfer-Encoding", "chunked")] if chunked else [])
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
                    if data is None:  # a tick from a quiet stream: is the client still there?
                        if self._peer_gone():
                            self.close_connection = True
                            return
                        continue
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

    def _skip_body(self):
        """A request refused before its handler (unknown route or version): read
        past its body so that keep-alive goes on, or close if it is large or bad."""
        try:
            length, chunked = body_framing(self.headers)   # a framing it refuses: close
            if (length or chunked) and not _BodyReader(self.rfile, length, chunked).drain(1 << 16):
                self.close_connection = True
        except (ValueError, errors.PydError, OSError):
            self.close_connection = True

    def _peer_gone(self):
        """True once the client has closed its end (EOF or an error waiting to be
        read). A client that pipelines a request meanwhile is not gone."""
        sock = self.connection
        try:
            ready, _, _ = select.select([sock], [], [], 0)
            if not ready:
                return False
            # The plain socket call: an SSLSocket refuses flags, and a peek at
            # the raw bytes is all this needs (EOF is EOF under TLS too).
            return socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

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
        surface = app.api.default_surface()
        try:
            raw_path, _, qs = self.path.partition("?")
            version, path, surface = app.api.negotiate(unquote(raw_path))
            app.guard.check(self.headers, tcp=self.server.address_family != socket.AF_UNIX)
            if self.command == "OPTIONS" and app.config.cors:
                result = Reply(200)
            else:
                route, params = app.api.match(self.command, path, surface)
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
                    req.hijacked.write(surface.text_stream_error(str(e)))
                except OSError:
                    pass
            else:
                if req is None:
                    self._skip_body()
                surface = getattr(e, "surface", surface)
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


_IDLE, _HEAD, _BUSY_STATE = "idle", "head", "busy"


class _Slots:
    """Bounds the connection threads shared by every listener, and keeps
    slow clients from holding them:

    - each connection is idle (waiting for a request), reading a head, or
      busy (a request being served); the reaper cuts a head that has taken
      longer than `head_timeout` however slowly it trickles (a per-read
      timeout alone restarts on every byte);
    - at the bound, a new client takes the slot of the connection that has
      been reading its head the longest, else of the longest idle one; only
      when every slot is busy serving does it get 503. So no number of
      trickling or idle clients locks a new one out."""

    def __init__(self, limit, head_timeout=10.0):
        self._sem = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.head_timeout = head_timeout
        self.open = set()
        self._state = {}            # sock -> (state, since)
        self._alias = {}            # TLS socket -> the accepted one it replaced
        self._reaper = None

    def enter(self, sock):
        if not self._sem.acquire(blocking=False):
            if not self._evict() or not self._sem.acquire(timeout=2):
                return False
        with self._lock:
            self.open.add(sock)
            self._state[sock] = (_IDLE, time.monotonic())
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="http-reaper", daemon=True)
                self._reaper.start()
        return True

    def leave(self, sock):
        with self._lock:
            for s in [t for t, o in self._alias.items() if o is sock] + [sock]:
                self.open.discard(s)
                self._state.pop(s, None)
                self._alias.pop(s, None)
        self._sem.release()

    def replace(self, old, new):
        """The connection's socket is now `new` (TLS): keep its slot and state."""
        with self._lock:
            if old in self.open:
                self.open.discard(old)
                self.open.add(new)
                self._state[new] = self._state.pop(old, (_IDLE, time.monotonic()))
                self._alias[new] = old

    def mark(self, sock, state):
        with self._lock:
            if sock in self._state:
                self._state[sock] = (state, time.monotonic())

    def _evict(self):
        with self._lock:
            for kind in (_HEAD, _IDLE):
                waiting = [(since, sock) for sock, (st, since) in self._state.items() if st == kind]
                if waiting:
                    victim = min(waiting, key=lambda w: w[0])[1]
                    self._state[victim] = ("evicted", time.monotonic())
                    break
            else:
                return False
        log.info("connection bound reached: closing a %s connection for a new client", kind)
        _cut(victim)
        return True

    def _reap(self):
        while True:
            time.sleep(min(1.0, self.head_timeout / 4))
            now = time.monotonic()
            with self._lock:
                late = [sock for sock, (st, since) in self._state.items()
                        if st == _HEAD and now - since > self.head_timeout]
                for sock in late:
                    self._state[sock] = ("evicted", now)
            for sock in late:
                log.info("a request head took longer than %.0fs: connection closed", self.head_timeout)
                _cut(sock)


def _cut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


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
    """What handlers reach through the server: config, the engine, and the api
    (negotiate(path) -> (version, path, surface), match(method, path),
    default_surface(), advertised)."""

    def __init__(self, config, engine, api, tls=None):
        self.config = config
        self.engine = engine
        self.api = api
        self.guard = Guard(config.cors, config.allowed_hosts)
        self.tls = tls          # an ssl.SSLContext for TCP listeners (http.tls), or None


class Server:
    """Any number of listeners sharing one App and one connection bound."""

    def __init__(self, app):
        self.app = app
        self.slots = _Slots(app.config.max_connections, app.config.head_timeout)
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
        _give_to_group(path)
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
        started = bool(self._threads)   # shutdown() waits for serve_forever, which may never have run
        for srv in self.listeners:
            if started:
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


SOCKET_GROUPS = ("pyd", "docker")


def _give_to_group(path):
    """The socket is root's and mode 0660; its group is `pyd`, else `docker`,
    when one exists (as dockerd's -G docker), so that its members may use it."""
    import grp
    for name in SOCKET_GROUPS:
        try:
            gid = grp.getgrnam(name).gr_gid
        except KeyError:
            continue
        try:
            os.chown(path, 0, gid)
        except OSError as e:
            log.warning("cannot give %s to group %s: %s", path, name, e)
        return name
    return None


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
