"""One registry's HTTP API V2 (the OCI distribution protocol), over
http.client: its scheme, its auth, and the requests pull and push need.

- **Transport.** HTTPS is verified against the system CAs. An insecure
  registry (reference.is_insecure) is tried over HTTPS without
  verification first, then plain HTTP, as Docker does; the scheme that
  answered is kept.
- **Auth.** A 401's `WWW-Authenticate` says how:
  - `Bearer realm=...,service=...,scope=...`: a token from the realm, asked
    with Basic credentials when there are any, kept per scope;
  - `Basic`: the credentials on every request.
  Passwords are never logged.
- **Bounds.** Every request has a timeout; an idempotent one is retried
  (a bounded number of times) on a broken connection; redirects (blob
  storage) are followed a few times, without the Authorization header when
  they leave the registry's host.
"""

import base64
import http.client
import json
import logging
import re
import ssl
import threading
import time
import urllib.parse

from .. import __version__, errors
from .reference import is_insecure

log = logging.getLogger(__name__)

TIMEOUT = 60
RETRIES = 3
MAX_REDIRECTS = 5
MAX_JSON = 8 << 20          # a manifest, an index, a token, a catalog page
CATALOG_PAGE = 1000

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)


class RegistryError(errors.PydError):
    """The registry refused or failed; `status` is its HTTP status (0: none)."""

    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status


class AuthError(RegistryError, errors.Unauthorized):
    pass


class NotFoundError(RegistryError, errors.NotFound):
    pass


def _challenge(header):
    """'Bearer realm="x",service="y"' -> ("bearer", {"realm": "x", "service": "y"})."""
    scheme, _, rest = (header or "").strip().partition(" ")
    params = dict((k.lower(), v) for k, v in re.findall(r'([A-Za-z_]+)="([^"]*)"', rest))
    return scheme.lower(), params


def _error_text(data):
    """The registry's {"errors": [{"code", "message"}]} in one line."""
    try:
        errs = json.loads(data).get("errors") or []
        return "; ".join(f"{e.get('code', '').lower().replace('_', ' ')}: {e.get('message', '')}".strip(": ")
                         for e in errs) or data.decode(errors="replace")[:200]
    except (ValueError, AttributeError):
        return data.decode(errors="replace")[:200].strip()


class Response:
    """A response whose body the caller reads (stream) or has read (data)."""

    def __init__(self, resp, conn):
        self._resp, self._conn = resp, conn
        self.status = resp.status
        self.headers = resp.headers

    def read(self, n=-1):
        return self._resp.read(n) if n is not None and n >= 0 else self._resp.read()

    def readinto(self, b):
        return self._resp.readinto(b)

    def json(self):
        data = self._resp.read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise RegistryError("the registry's answer is too large")
        try:
            return json.loads(data)
        except ValueError as e:
            raise RegistryError(f"the registry sent invalid JSON: {e}") from e

    def close(self):
        try:
            self._resp.close()
        finally:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Registry:
    """A registry host, with the credentials to use there: (username,
    password), or an identity token, or None (anonymous)."""

    def __init__(self, host, insecure=(), credentials=None, timeout=TIMEOUT, scheme=None):
        """`scheme`: "http" or "https" when the operator named it (a mirror's URL)."""
        self.host = host
        self.insecure = is_insecure(host, insecure)
        self.credentials = credentials
        self.timeout = timeout
        self._scheme = scheme
        self._lock = threading.Lock()
        self._tokens = {}       # scope -> bearer token
        self._basic = False     # the registry asked for Basic auth

    # -- connections ------------------------------------------------------------

    def _connection(self, scheme, host):
        if scheme == "https":
            ctx = ssl.create_default_context()
            if self.insecure and host == self.host:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(host, timeout=self.timeout, context=ctx)
        return http.client.HTTPConnection(host, timeout=self.timeout)

    def scheme(self):
        """https, or for an insecure registry whatever answers /v2/ first."""
        with self._lock:
            if self._scheme:
                return self._scheme
            if not self.insecure:
                self._scheme = "https"
                return self._scheme
            last = None
            for scheme in ("https", "http"):
                conn = self._connection(scheme, self.host)
                try:
                    conn.request("GET", "/v2/", headers={"User-Agent": _agent()})
                    conn.getresponse().read(MAX_JSON)
                    self._scheme = scheme
                    return scheme
                except (ssl.SSLError, OSError, http.client.HTTPException) as e:
                    last = e
                finally:
                    conn.close()
            raise RegistryError(f"cannot reach the registry {self.host}: {last}")

    def base_url(self):
        return f"{self.scheme()}://{self.host}"

    # -- auth -------------------------------------------------------------------

    def _basic_header(self):
        if not self.credentials or not isinstance(self.credentials, tuple):
            return None
        user, password = self.credentials
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _auth_header(self, scope):
        token = self._tokens.get(scope)
        if token:
            return "Bearer " + token
        if self._basic:
            return self._basic_header()
        return None

    def _fetch_token(self, params, scope):
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.host}: a Bearer challenge without a realm")
        query = {"service": params.get("service", "")}
        want = scope or params.get("scope")
        if want:
            query["scope"] = want
        if self.credentials and isinstance(self.credentials, tuple):
            query["account"] = self.credentials[0]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        headers = {"User-Agent": _agent()}
        basic = self._basic_header()
        if basic:
            headers["Authorization"] = basic
        resp = self._send("GET", url, headers, None)
        with resp:
            if resp.status in (401, 403):
                raise AuthError(f"login to {self.host} failed: the token server said {resp.status} "
                                f"({_error_text(resp.read(4096))})", resp.status)
            if resp.status != 200:
                raise RegistryError(f"{self.host}: the token server said {resp.status}", resp.status)
            body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthError(f"{self.host}: the token server gave no token")
        self._tokens[scope] = token
        return token

    # -- requests -----------------------------------------------------------------

    def _send(self, method, url, headers, body):
        """One request to an absolute URL; returns a Response (its body unread)."""
        parts = urllib.parse.urlsplit(url)
        conn = self._connection(parts.scheme, parts.netloc)
        path = parts.path + ("?" + parts.query if parts.query else "")
        try:
            conn.request(method, path or "/", body=body, headers=headers)
            return Response(conn.getresponse(), conn)
        except BaseException:
            conn.close()
            raise

    def request(self, method, path, scope=None, headers=None, body=None, ok=(200,)):
        """A request to `path` on the registry with auth for `scope`
        ("repository:x:pull"); returns a Response with a status in `ok`, else
        raises (AuthError for 401/403, NotFoundError for 404). A body must be
        bytes (or None) for a request that may be retried or re-sent after a
        challenge; a file body is sent once, after auth is settled."""
        url = self.base_url() + path
        attempt = 0
        challenged = False
        redirects = 0
        while True:
            h = {"User-Agent": _agent(), **(headers or {})}
            if urllib.parse.urlsplit(url).netloc == self.host:
                auth = self._auth_header(scope)
                if auth:
                    h["Authorization"] = auth
            try:
                resp = self._send(method, url, h, body)
            except (OSError, http.client.HTTPException) as e:
                attempt += 1
                if attempt >= RETRIES or not (body is None or isinstance(body, bytes)):
                    raise RegistryError(f"{method} {self.host}{path}: {e}") from e
                time.sleep(0.2 * attempt)
                continue
            if resp.status == 401 and not challenged:
                challenged = True
                kind, params = _challenge(resp.headers.get("WWW-Authenticate"))
                resp.close()
                if kind == "bearer":
                    self._fetch_token(params, scope)
                    continue
                if kind == "basic":
                    self._basic = True
                    if self._basic_header():
                        continue
                raise AuthError(f"{self.host}: authentication required", 401)
            if resp.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") \
                    and redirects < MAX_REDIRECTS and resp.headers.get("Location"):
                redirects += 1
                url = urllib.parse.urljoin(url, resp.headers["Location"])
                resp.close()
                continue
            if resp.status in ok:
                return resp
            data = resp.read(65536) if method != "HEAD" else b""
            resp.close()
            text = _error_text(data) if data else f"HTTP {resp.status}"
            if resp.status in (401, 403):
                raise AuthError(f"{self.host}: {text}", resp.status)
            if resp.status == 404:
                raise NotFoundError(f"{self.host}{path.split('?')[0]}: {text}", 404)
            raise RegistryError(f"{method} {self.host}{path.split('?')[0]}: {text}", resp.status)

    def absolute(self, location):
        """An upload Location (often relative) as a path+query on this host,
        or an absolute URL elsewhere."""
        url = urllib.parse.urljoin(self.base_url() + "/", location)
        parts = urllib.parse.urlsplit(url)
        if parts.netloc == self.host:
            return parts.path + ("?" + parts.query if parts.query else "")
        return url

    def request_url(self, method, location, scope=None, headers=None, body=None, ok=(200,)):
        """request() for an upload Location (relative or absolute)."""
        where = self.absolute(location)
        if where.startswith("/"):
            return self.request(method, where, scope, headers, body, ok)
        h = {"User-Agent": _agent(), **(headers or {})}
        resp = self._send(method, where, h, body)
        if resp.status not in ok:
            data = resp.read(65536)
            resp.close()
            raise RegistryError(f"{method} {where}: {_error_text(data)}", resp.status)
        return resp

    # -- the calls --------------------------------------------------------------------

    def check_login(self):
        """GET /v2/ with the credentials: True, or AuthError."""
        with self.request("GET", "/v2/", scope=None) as resp:
            resp.read(MAX_JSON)
        return True

    def manifest(self, path, ref, accept=MANIFEST_TYPES):
        """(media type, raw bytes, digest header or None) of a manifest or index."""
        with self.request("GET", f"/v2/{path}/manifests/{ref}", scope=f"repository:{path}:pull",
                          headers={"Accept": ", ".join(accept)}) as resp:
            data = resp.read(MAX_JSON + 1)
            if len(data) > MAX_JSON:
                raise RegistryError(f"{path}:{ref}: the manifest is too large")
            media = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            return media, data, resp.headers.get("Docker-Content-Digest")

    def blob(self, path, digest):
        """The blob as a streaming Response (the caller verifies and closes it)."""
        return self.request("GET", f"/v2/{path}/blobs/{digest}", scope=f"repository:{path}:pull")

    def has_blob(self, path, digest):
        try:
            with self.request("HEAD", f"/v2/{path}/blobs/{digest}", scope=f"repository:{path}:pull,push"):
                return True
        except NotFoundError:
            return False

    def tags(self, path):
        """The repository's tags (GET /v2/<path>/tags/list)."""
        with self.request("GET", f"/v2/{path}/tags/list", scope=f"repository:{path}:pull") as resp:
            return [t for t in (resp.json().get("tags") or []) if isinstance(t, str)]

    def catalog(self, limit=10000, page=CATALOG_PAGE):
        """Up to `limit` repository names, a page at a time (distribution
        refuses pages of more than 1000), following the `Link: <...>; rel="next"`."""
        names, path = [], f"/v2/_catalog?n={page}"
        while path and len(names) < limit:
            with self.request("GET", path, scope="registry:catalog:*") as resp:
                got = [n for n in (resp.json().get("repositories") or []) if isinstance(n, str)]
                link = resp.headers.get("Link") or ""
            names += got
            m = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', link)
            path = self.absolute(m.group(1)) if m and got else None
            if path and not path.startswith("/"):
                break   # a next page on another host: not followed
        return names[:limit]


def _agent():
    return f"pyd/{__version__}"

