"""What handlers see and return.

  Request        params, query helpers, the body (bounded JSON or a stream), hijack
  Reply, Stream  a whole reply, or a chunked stream
  Conn           (http.conn) what hijack() hands over: a duplex byte stream
"""

import json

from .. import errors, timefmt
from .conn import Conn


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
    that reports progress through callbacks. A None from `chunks` is a tick:
    the server checks that the client is still there (a quiet event or log
    follower must not outlive its client). `on_error(message) -> bytes` formats an error that
    happens after the header went out; `close()` is called on the iterator
    when the client goes away so its cleanup runs.
    """

    def __init__(self, chunks, content_type="application/json", on_error=None, status=200,
                 headers=()):
        self.chunks = chunks
        self.content_type = content_type
        self.on_error = on_error
        self.status = status
        self.headers = list(headers)


def body_framing(headers):
    """(length, chunked) of a request body, by RFC 9112's rules rather than by
    accident: Content-Length with Transfer-Encoding, two different lengths,
    or a transfer coding other than chunked are refused, since a proxy in
    front could frame the same bytes differently (request smuggling)."""
    te_values = headers.get_all("Transfer-Encoding") or []
    codings = [c.strip().lower() for v in te_values for c in v.split(",") if c.strip()]
    lengths = {v.strip() for v in (headers.get_all("Content-Length") or [])}
    if codings:
        if lengths:
            raise errors.BadParameter("a request may not have both Content-Length and Transfer-Encoding")
        if codings != ["chunked"]:
            raise errors.BadParameter(f"unsupported Transfer-Encoding {', '.join(codings)!r}: only chunked")
        return 0, True
    if len(lengths) > 1:
        raise errors.BadParameter("conflicting Content-Length headers")
    text = lengths.pop() if lengths else "0"
    if not text.isdigit() or len(text) > 19:
        raise errors.BadParameter("invalid Content-Length")
    return int(text), False


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
        except ValueError as e:
            raise errors.BadParameter("malformed chunked body") from e

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
        self.engine = handler.server.app.engine
        self.api = handler.server.app.api
        self.config = handler.server.app.config
        self.hijacked = None
        self.body = _BodyReader(handler.rfile, *body_framing(self.headers))

    def query_key(self):
        """The query as a hashable value (for api.memo)."""
        return tuple(sorted((k, tuple(v)) for k, v in self.query.items()))

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
        except ValueError as e:
            raise errors.BadParameter(f"bad value for {name}: {value!r} (expected an integer)") from e

    def arg_time(self, name):
        """Epoch seconds from a time parameter (seconds with a fraction, or RFC 3339); None if absent."""
        value = self.arg(name)
        if not value:
            return None
        try:
            return timefmt.parse_time(value)
        except ValueError:
            raise errors.BadParameter(f"bad value for {name}: {value!r} (epoch seconds or RFC 3339)") from None

    def arg_tty_size(self):
        """(h, w) of a resize request."""
        h, w = self.arg_int("h"), self.arg_int("w")
        if h is None or w is None or not (0 <= h < 65536 and 0 <= w < 65536):
            raise errors.BadParameter("h and w must be given as integers from 0 to 65535")
        return h, w

    def json(self, default=None):
        """The body parsed as JSON; `default` when the body is empty.

        A body needs `Content-Type: application/json`, as moby's CheckForJSON
        asks: a browser cannot send that cross-site without a preflight, so a
        web page cannot create containers with a text/plain or form POST."""
        raw = self.body.read_all(self.config.max_json_body)
        if not raw.strip():
            return default
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise errors.BadParameter(f"unsupported Content-Type header ({ctype or 'none'}): "
                                      "a JSON body must be sent as 'application/json'")
        try:
            return json.loads(raw)
        except RecursionError:
            raise errors.BadParameter("malformed JSON body: nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise errors.BadParameter(f"malformed JSON body: {e}") from e

    def client_gone(self):
        """True once the client has closed its end (for handlers that block
        before their answer: they poll this, as streams poll with ticks)."""
        return self._handler._peer_gone()

    def hijack(self):
        """Take the connection over: write the surface's head, return its Conn.

        Validate everything before calling this: afterwards no status can be sent.
        """
        h = self._handler
        status_line, headers = self.surface.hijack_head(self.headers)
        head = [status_line] + [f"{k}: {v}" for k, v in headers + h.extra_headers()]
        h.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        h.close_connection = True
        h.connection.settimeout(None)
        h.status_for_log = int(status_line.split()[1])
        self.hijacked = Conn(h.connection, h.rfile, h.wfile)
        return self.hijacked
