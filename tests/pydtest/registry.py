"""A real registry for the tests: Debian's docker-registry (distribution 2.8)
on 127.0.0.1, and a small front written here that sits before it.

- Registry(root, auth=None|"htpasswd", users={...}): `docker-registry serve`
  with a config.yml, a filesystem storage root and a log file, all in `root`;
  deletes enabled. With auth="htpasswd" the users (bcrypt, made with
  `htpasswd -Bbn`) are written before it starts. kill() is SIGKILL (a registry
  dying mid-transfer); start() again serves the same storage on the same port.
  put_image() stores an image made in the test, straight over HTTP (no pyd).
  blob_path() / tamper_blob() reach into the storage layout
  (docker/registry/v2/blobs/sha256/<xx>/<hex>/data). manifest(), tags() and
  catalog() read the registry directly, over plain HTTP.
- Front(upstream, ...): a threaded HTTP proxy on 127.0.0.1 that forwards every
  method (PATCH too), streams bodies both ways and keeps Location headers
  pointing at itself. Optional token auth (token_users=...): /v2/ requests
  without a valid `Authorization: Bearer` token get 401 and a Bearer challenge
  whose realm is the front's /token, which checks Basic credentials (anonymous
  callers get pull-only tokens when anonymous_pull). Optional fault: cut_blob()
  makes the next blob download stop after N bytes, runs an action (e.g. the
  registry's kill) and drops the connection.
  TokenFront(upstream, users, anonymous_pull=False) is the token-auth front.

Everything is bounded: start waits at most `timeout` seconds, stop escalates
to SIGKILL, and close() (or the context manager) stops everything started.
"""

import base64
import gzip
import hashlib
import http.client
import http.server
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

from tests.pydtest import free_port

REGISTRY_BIN = "/usr/bin/docker-registry"
HTPASSWD_BIN = "/usr/bin/htpasswd"


def available():
    return os.access(REGISTRY_BIN, os.X_OK) and os.access(HTPASSWD_BIN, os.X_OK)


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def registry_auth_header(user, password, server):
    """X-Registry-Auth as the docker CLI sends it: base64url of the JSON authConfig."""
    cfg = {"username": user, "password": password, "serveraddress": server}
    return base64.urlsafe_b64encode(json.dumps(cfg).encode()).decode()


class Registry:
    def __init__(self, root, auth=None, users=None, port=None):
        if auth not in (None, "htpasswd"):
            raise ValueError(f"auth: {auth!r}")
        self.root = str(root)
        self.auth = auth
        self.users = dict(users or {})
        self.port = port or free_port()
        self.storage = os.path.join(self.root, "storage")
        self.config_path = os.path.join(self.root, "config.yml")
        self.htpasswd_path = os.path.join(self.root, "htpasswd")
        self.logpath = os.path.join(self.root, "registry.log")
        self.proc = None
        self._log = None

    @property
    def addr(self):
        """host:port, the registry part of an image name."""
        return f"127.0.0.1:{self.port}"

    def add_user(self, user, password):
        """Add a user before start() (distribution 2.8 reads the file once)."""
        if self.proc and self.proc.poll() is None:
            raise RuntimeError("add users before the registry starts")
        self.users[user] = password

    def _write_htpasswd(self):
        lines = []
        for user, password in self.users.items():
            r = subprocess.run([HTPASSWD_BIN, "-Bbn", user, password], capture_output=True,
                               text=True, timeout=30, check=True)
            lines.append(r.stdout.strip())
        with open(self.htpasswd_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _write_config(self):
        auth = ""
        if self.auth == "htpasswd":
            self._write_htpasswd()
            auth = (f"auth:\n  htpasswd:\n    realm: pyd-test\n"
                    f"    path: {self.htpasswd_path}\n")
        cfg = (
            "version: 0.1\n"
            "log:\n  level: info\n  formatter: text\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.storage}\n"
            "  delete:\n    enabled: true\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            "http:\n"
            f"  addr: 127.0.0.1:{self.port}\n"
            "  secret: pyd-test-secret\n"
            + auth)
        with open(self.config_path, "w") as f:
            f.write(cfg)

    def start(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            return self
        os.makedirs(self.storage, exist_ok=True)
        self._write_config()
        self._log = open(self.logpath, "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", self.config_path], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, _, _ = self.request("GET", "/v2/", timeout=2)
                if status in (200, 401):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not answer /v2/ in time:\n" + self.log())

    def stop(self, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self._log:
            self._log.close()
            self._log = None

    def kill(self):
        """SIGKILL, as if the registry died; start() serves the same storage again."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._log:
            self._log.close()
            self._log = None

    close = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")[-20000:]
        except OSError:
            return ""

    # -- direct HTTP ------------------------------------------------------

    def credentials(self):
        """Authorization for direct requests: the first user, if auth is on."""
        if self.auth and self.users:
            user, password = next(iter(self.users.items()))
            return basic(user, password)
        return None

    def request(self, method, path, headers=None, body=None, timeout=30):
        """(status, headers, body) of one plain request to the registry itself."""
        h = dict(headers or {})
        cred = self.credentials()
        if cred and "Authorization" not in h:
            h["Authorization"] = cred
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            c.close()

    MANIFEST_TYPES = ", ".join([
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ])

    def manifest(self, name, ref):
        """(digest, parsed manifest, content type) of name:ref as stored; None if unknown.
        The digest is the registry's Docker-Content-Digest (of the bytes as pushed)."""
        status, headers, body = self.request("GET", f"/v2/{name}/manifests/{ref}",
                                             headers={"Accept": self.MANIFEST_TYPES})
        if status == 404:
            return None
        if status != 200:
            raise AssertionError(f"GET manifest {name}:{ref}: {status} {body[:300]!r}")
        return headers.get("Docker-Content-Digest"), json.loads(body), headers.get("Content-Type")

    def manifest_bytes(self, name, ref):
        status, headers, body = self.request("GET", f"/v2/{name}/manifests/{ref}",
                                             headers={"Accept": self.MANIFEST_TYPES})
        if status != 200:
            raise AssertionError(f"GET manifest {name}:{ref}: {status} {body[:300]!r}")
        return body

    def put_blob(self, name, data):
        """Upload `data` (a POST, then a monolithic PUT) unless the registry has it; its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, _, _ = self.request("HEAD", f"/v2/{name}/blobs/{digest}")
        if status == 200:
            return digest
        status, headers, body = self.request("POST", f"/v2/{name}/blobs/uploads/", body=b"")
        if status != 202:
            raise AssertionError(f"POST upload {name}: {status} {body[:300]!r}")
        loc = urllib.parse.urlsplit(headers["Location"])
        path = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + digest
        status, _, body = self.request("PUT", path, body=data,
                                       headers={"Content-Type": "application/octet-stream"})
        if status != 201:
            raise AssertionError(f"PUT blob {name}: {status} {body[:300]!r}")
        return digest

    def put_image(self, name, tag, layers, cmd=("/bin/sh",), compression="gzip"):
        """Store an image made here, without pyd: `layers` are uncompressed tars,
        sent as gzip blobs (or zstd ones, made with the zstd tool, under OCI's
        layer media type) under a schema 2 manifest. Returns a dict with the
        manifest `digest`, the `config` digest (the image id), the `layers`
        (blob digests, sizes) and the `diff_ids`."""
        blobs, diff_ids, history = [], [], []
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for i, tar in enumerate(layers):
            if compression == "zstd":
                gz = subprocess.run(["zstd", "-q", "-c", "-"], input=tar, capture_output=True, check=True).stdout
                media = "application/vnd.oci.image.layer.v1.tar+zstd"
            else:
                gz = gzip.compress(tar, compresslevel=6, mtime=0)
                media = "application/vnd.docker.image.rootfs.diff.tar.gzip"
            blobs.append({"mediaType": media, "size": len(gz), "digest": self.put_blob(name, gz)})
            diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
            history.append({"created": now, "created_by": f"layer {i} made by tests/pydtest/registry.py"})
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        config = json.dumps({
            "architecture": arch, "os": "linux", "created": now,
            "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history,
        }, separators=(",", ":")).encode()
        config_digest = self.put_blob(name, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(config), "digest": config_digest},
            "layers": blobs,
        }, indent=3).encode()
        status, headers, body = self.request(
            "PUT", f"/v2/{name}/manifests/{tag}", body=manifest,
            headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
        if status != 201:
            raise AssertionError(f"PUT manifest {name}:{tag}: {status} {body[:300]!r}")
        return {"digest": headers["Docker-Content-Digest"], "config": config_digest,
                "layers": blobs, "diff_ids": diff_ids, "manifest": manifest}

    def blob(self, name, digest):
        status, _, body = self.request("GET", f"/v2/{name}/blobs/{digest}")
        if status != 200:
            raise AssertionError(f"GET blob {name}@{digest}: {status} {body[:300]!r}")
        return body

    def tags(self, name):
        status, _, body = self.request("GET", f"/v2/{name}/tags/list")
        if status == 404:
            return []
        if status != 200:
            raise AssertionError(f"GET tags {name}: {status} {body[:300]!r}")
        return sorted(json.loads(body).get("tags") or [])

    def catalog(self):
        status, _, body = self.request("GET", "/v2/_catalog")
        if status != 200:
            raise AssertionError(f"GET _catalog: {status} {body[:300]!r}")
        return sorted(json.loads(body).get("repositories") or [])

    # -- the storage on disk ------------------------------------------------

    def blob_path(self, digest):
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexd):
            raise ValueError(f"digest: {digest!r}")
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256",
                            hexd[:2], hexd, "data")

    def blob_digests(self):
        top = os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256")
        out = set()
        if os.path.isdir(top):
            for xx in os.listdir(top):
                for hexd in os.listdir(os.path.join(top, xx)):
                    out.add("sha256:" + hexd)
        return out

    def tamper_blob(self, digest):
        """Change a stored blob's bytes so that its content no longer matches its
        digest, keeping its length. A gzip blob keeps decompressing to the same
        tar (the header's MTIME field changes), so that only a digest check
        catches it; any other blob gets one byte in the middle flipped."""
        path = self.blob_path(digest)
        with open(path, "r+b") as f:
            data = bytearray(f.read())
            if data[:2] == b"\x1f\x8b" and len(data) > 10:
                old = data[4:8]
                data[4:8] = (int.from_bytes(old, "little") ^ 0x5A5A5A5A).to_bytes(4, "little")
            else:
                data[len(data) // 2] ^= 0xFF
            f.seek(0)
            f.write(data)
        return path


# -- the front ------------------------------------------------------------

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
NAME_RE = re.compile(r"^/v2/(.+?)/(manifests|blobs|tags)(/|$)")


class Front:
    """A proxy before an upstream Registry, optionally with token auth and a fault."""

    def __init__(self, upstream, token_users=None, anonymous_pull=False, service="test"):
        self.upstream = upstream
        self.token_users = None if token_users is None else dict(token_users)
        self.anonymous_pull = anonymous_pull
        self.service = service
        self.port = free_port()
        self.tokens = {}          # token -> {repo: {actions}}, "*" for registry:catalog
        self.token_requests = []  # (user or None, [scopes], granted?) in order
        self.requests = []        # (method, path, status) forwarded or answered
        self._cut = None          # [nbytes, action] for the next blob GET
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def cut_blob(self, nbytes, action=None):
        """The next blob download longer than `nbytes` stops after `nbytes`: `action()` runs (e.g.
        registry.kill), then the client's connection is dropped mid-body."""
        with self._lock:
            self._cut = [nbytes, action]

    def cut_done(self):
        with self._lock:
            return self._cut is None

    def start(self):
        front = self

        class Handler(_FrontHandler):
            pass
        Handler.front = front
        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"registry-front-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None

    close = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- token auth ----------------------------------------------------------

    def issue(self, user, scopes):
        """A token for `scopes` ("repository:name:pull,push" strings) granted to
        `user` (None: anonymous, pull only when anonymous_pull)."""
        grant = {}
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), set(parts[-1].split(","))
            if kind == "registry" and name == "catalog":
                if user is not None:
                    grant["*"] = {"*"}
                continue
            if kind != "repository":
                continue
            allowed = {"pull", "push"} if user is not None else ({"pull"} if self.anonymous_pull else set())
            got = actions & allowed
            if got:
                grant.setdefault(name, set()).update(got)
        token = secrets.token_hex(16)
        with self._lock:
            self.tokens[token] = grant
        return token

    def challenge(self, name, actions):
        realm = f"http://{self.addr}/token"
        value = f'Bearer realm="{realm}",service="{self.service}"'
        if name:
            value += f',scope="repository:{name}:pull,push"'
        if actions:
            value += ',error="insufficient_scope"'
        return value


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class _FrontHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    front = None
    timeout = 120

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        self.handle_any()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _reply(self, status, headers, body=b""):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.front.requests.append((self.command, self.path, status))

    def _drain_request(self):
        for _ in self._request_body():
            pass

    def _request_body(self):
        """The request body as chunks, whether it came chunked or with a length."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            for _ in range(1 << 20):
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, 1 << 16))
                    if not data:
                        raise ConnectionError("request body cut short")
                    left -= len(data)
                    yield data
                self.rfile.readline(16)
            raise ConnectionError("too many chunks")
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            data = self.rfile.read(min(left, 1 << 16))
            if not data:
                raise ConnectionError("request body cut short")
            left -= len(data)
            yield data

    def handle_any(self):
        front = self.front
        url = urllib.parse.urlsplit(self.path)
        if front.token_users is not None and url.path == "/token":
            self._drain_request()
            return self.token(url)
        if front.token_users is not None and url.path.startswith("/v2"):
            m = NAME_RE.match(url.path)
            name = m.group(1) if m else None
            need = None
            if name:
                need = {"pull"} if self.command in ("GET", "HEAD") else {"pull", "push"}
            elif url.path.startswith("/v2/_catalog"):
                name, need = "*", {"*"}
            grant = self._grant()
            ok = grant is not None and (not need or need <= grant.get(name, set()))
            if not ok:
                self._drain_request()
                err = {"errors": [{"code": "UNAUTHORIZED" if grant is None else "DENIED",
                                   "message": "authentication required" if grant is None
                                   else "requested access to the resource is denied",
                                   "detail": None}]}
                return self._reply(401, {
                    "Content-Type": "application/json; charset=utf-8",
                    "Docker-Distribution-Api-Version": "registry/2.0",
                    "WWW-Authenticate": front.challenge(None if name == "*" else name,
                                                        need if grant is not None else None),
                }, json.dumps(err).encode())
        return self.forward()

    def _grant(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        with self.front._lock:
            return self.front.tokens.get(auth[7:].strip())

    def token(self, url):
        front = self.front
        q = urllib.parse.parse_qs(url.query)
        scopes = [s for v in q.get("scope", []) for s in v.split(" ")]
        user = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                u, p = None, None
            if u is None or front.token_users.get(u) != p:
                front.token_requests.append((u, scopes, False))
                body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]})
                return self._reply(401, {"Content-Type": "application/json",
                                         "WWW-Authenticate": f'Basic realm="http://{front.addr}/token"'},
                                   body.encode())
            user = u
        token = front.issue(user, scopes)
        front.token_requests.append((user, scopes, True))
        body = {"token": token, "access_token": token, "expires_in": 300,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return self._reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def forward(self):
        front = self.front
        up = front.upstream
        try:
            c = http.client.HTTPConnection("127.0.0.1", up.port, timeout=60)
            c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            for k, v in self.headers.items():
                if k.lower() in HOP or k.lower() == "authorization" and front.token_users is not None:
                    continue
                c.putheader(k, v)
            if chunked:
                c.putheader("Transfer-Encoding", "chunked")
            c.endheaders()
            for data in self._request_body():
                c.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                c.send(b"0\r\n\r\n")
            r = c.getresponse()
        except OSError as e:
            self.close_connection = True
            return self._reply(502, {"Content-Type": "text/plain", "Connection": "close"},
                               f"upstream registry: {e}\n".encode())
        try:
            self._relay(r)
        finally:
            c.close()

    def _relay(self, r):
        front = self.front
        self.send_response(r.status)
        length = r.headers.get("Content-Length")
        for k, v in r.headers.items():
            if k.lower() in HOP or k.lower() == "content-length":
                continue
            if k.lower() == "location":
                v = v.replace(front.upstream.addr, front.addr).replace(
                    f"localhost:{front.upstream.port}", front.addr)
            self.send_header(k, v)
        if self.command == "HEAD" or r.status in (204, 304):
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            front.requests.append((self.command, self.path, r.status))
            return
        if length is not None:
            self.send_header("Content-Length", length)
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        cut = None
        if self.command == "GET" and "/blobs/sha256:" in self.path and r.status == 200:
            with front._lock:
                # Only a blob longer than the cut takes it (not a small config or layer).
                if front._cut and (length is None or int(length) > front._cut[0]):
                    cut, front._cut = front._cut, None
        sent = 0
        for _ in range(1 << 24):
            data = r.read(1 << 16)
            if not data:
                break
            if cut and sent + len(data) >= cut[0]:
                self.wfile.write(data[:max(cut[0] - sent, 0)])
                self.wfile.flush()
                if cut[1]:
                    cut[1]()
                front.requests.append((self.command, self.path, "cut"))
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self.wfile.write(data)
            sent += len(data)
        front.requests.append((self.command, self.path, r.status))


class TokenFront(Front):
    """A Front with Bearer token auth: `users` {name: password} may pull and push."""

    def __init__(self, upstream, users, anonymous_pull=False, service="test"):
        super().__init__(upstream, token_users=users, anonymous_pull=anonymous_pull, service=service)
