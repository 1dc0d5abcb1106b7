"""Images through the HTTP API (Remote API v1.3, section 2.2, and NOTES-v1.3 "Images"):
import (fromSrc), a pull from an unreachable registry (fromImage), list, viz, inspect, history, tag,
delete, insert; hostile tars; a kill -9 in the middle of a large import.

Network: only 127.0.0.1. URL tests serve files from an http.server started in
a thread inside the test and shut down at its end.
"""

import bz2
import contextlib
import gzip
import hashlib
import http.client
import http.server
import io
import json
import lzma
import os
import re
import socket
import stat
import tarfile
import threading
import time
import uuid

import pytest

from tests.pydtest import BUSYBOX, layer_dir, store_entries

HEX12 = re.compile(r"^[0-9a-f]{12}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
PREFIXES = ["", "/v1.3"]
MB = 1000 * 1000


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def uniq(prefix="t"):
    """A fresh, valid (lowercase) repository name."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def tar_bytes(*entries, fmt=tarfile.PAX_FORMAT):
    """Build a tar in memory. Entries:
    ("file", name, data[, mode]) ("dir", name) ("sym", name, target) ("hard", name, target)."""
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for e in entries:
            kind, name = e[0], e[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = now
            if kind == "file":
                data = e[2]
                ti.size = len(data)
                ti.mode = e[3] if len(e) > 3 else 0o644
                tf.addfile(ti, io.BytesIO(data))
                continue
            if kind == "paxfile":  # ("paxfile", name, data, {pax headers})
                ti.size, ti.mode, ti.pax_headers = len(e[2]), 0o644, dict(e[3])
                tf.addfile(ti, io.BytesIO(e[2]))
                continue
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, e[2], 0o777
            elif kind == "hard":
                ti.type, ti.linkname, ti.mode = tarfile.LNKTYPE, e[2], 0o644
            else:
                raise ValueError(kind)
            tf.addfile(ti)
    return buf.getvalue()


def small_tar(size=3000):
    """A small, unique image: one file of `size` bytes plus a marker."""
    marker = uuid.uuid4().hex.encode()
    return tar_bytes(("dir", "etc"), ("file", "etc/marker", marker),
                     ("file", "data.bin", (marker * (size // len(marker) + 1))[:size]))


def compress(data, kind):
    if kind == "identity":
        return data
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    raise ValueError(kind)


def stream_objects(body):
    """Parse a progress stream: JSON objects separated (and ended) by CRLF."""
    assert body.endswith(b"\r\n"), body[-200:]
    parts = body.split(b"\r\n")
    assert parts[-1] == b""
    objs = []
    for p in parts[:-1]:
        assert p, f"empty record in stream: {body[:500]!r}"
        objs.append(json.loads(p))
    return objs


def errors_in(objs):
    return [o["error"] for o in objs if "error" in o]


def do_import(api, data, repo=None, tag=None, prefix="", src="-", headers=None):
    """POST /images/create?fromSrc=...; returns (response, objects)."""
    q = f"fromSrc={src}"
    if repo is not None:
        q += f"&repo={repo}"
    if tag is not None:
        q += f"&tag={tag}"
    h = {"Content-Type": "application/x-tar"}
    h.update(headers or {})
    r = api.post(f"{prefix}/images/create?{q}", data, headers=h, timeout=300)
    objs = stream_objects(r.body) if r.status == 200 else None
    return r, objs


def import_ok(api, data, repo=None, tag=None, prefix=""):
    """Import and return the full id, asserting success."""
    r, objs = do_import(api, data, repo, tag, prefix)
    assert r.status == 200, r
    assert not errors_in(objs), objs
    id12 = objs[-1]["status"]
    assert HEX12.match(id12), objs
    full = api.get(f"/images/{id12}/json").json()["id"]
    return full


def insert_ok(api, name, path, url, prefix=""):
    r = api.post(f"{prefix}/images/{name}/insert?path={path}&url={url}", timeout=120)
    assert r.status == 200, r
    objs = stream_objects(r.body)
    assert not errors_in(objs), objs
    id12 = objs[-1]["status"]
    assert HEX12.match(id12), objs
    return api.get(f"/images/{id12}/json").json()["id"]


def all_rows(api):
    r = api.get("/images/json?all=1")
    assert r.status == 200, r
    return r.json()


def all_ids12(api):
    return sorted({row["Id"] for row in all_rows(api)})


def tmp_entries(daemon_root):
    return sorted(os.listdir(os.path.join(daemon_root, "tmp")))


def tags_of(api, id12):
    return sorted((row["Repository"], row["Tag"]) for row in all_rows(api)
                  if row["Id"] == id12 and row["Repository"] != "<none>")


@pytest.fixture
def cleanup(api):
    """Collects image ids made by a test; deletes them (children first) at the end."""
    made = []
    yield made
    for image_id in reversed(made):
        for _ in range(4):
            r = api.delete(f"/images/{image_id}")
            if r.status in (200, 404):
                break
            if r.status == 409:
                for repo, tag in tags_of(api, image_id[:12]):
                    api.delete(f"/images/{repo}:{tag}")


class LocalHTTP:
    """http.server on 127.0.0.1 in a thread. `files` maps a path to bytes;
    `redirects` maps a path to a Location. Anything else is a 404."""

    def __init__(self, files=None, redirects=None):
        files, redirects = dict(files or {}), dict(redirects or {})
        self.hits = []
        hits = self.hits

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                if self.path in redirects:
                    self.send_response(302)
                    self.send_header("Location", redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = files.get(self.path)
                if data is None:
                    self.send_error(404, "no such file")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextlib.contextmanager
def tcp_trap():
    """A listener on 127.0.0.1 that records (and at once closes) every connection."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(0.2)
    got, stop = [], threading.Event()

    def loop():
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                c, addr = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            got.append(addr)
            c.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield s.getsockname()[1], got
    finally:
        stop.set()
        t.join(5)
        s.close()


def snapshot(path):
    """Names, contents and mtimes of everything under `path` (and path itself)."""
    out = {".": os.lstat(path).st_mtime_ns}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            data = None
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    data = f.read()
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_mtime_ns, data)
    return out


# --------------------------------------------------------------------------
# import: POST /images/create?fromSrc=-
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("compression", ["identity", "gzip", "bzip2", "xz"])
def test_import_stream_of_progress_then_short_id_that_resolves(api, daemon, busybox_tar, cleanup,
                                                              compression, prefix):
    repo = uniq("imp")
    body = compress(busybox_tar, compression)
    r, objs = do_import(api, body, repo, "v1", prefix)
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/json"
    assert not errors_in(objs), objs
    progress = [o for o in objs[:-1] if "progress" in o]
    assert progress, objs
    for o in progress:
        assert set(o) == {"status", "progress"} and o["status"] == "Importing", o
    last = objs[-1]
    assert set(last) == {"status"}
    id12 = last["status"]
    assert HEX12.match(id12), last
    info = api.get(f"{prefix}/images/{id12}/json")
    assert info.status == 200, info
    full = info.json()["id"]
    cleanup.append(full)
    assert HEX64.match(full) and full.startswith(id12)
    # the layer on disk holds the decompressed content
    with open(BUSYBOX, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(layer_dir(daemon.root, full), "bin", "busybox"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == want
    assert os.path.islink(os.path.join(layer_dir(daemon.root, full), "bin", "sh"))
    assert api.get(f"/images/{repo}:v1/json").json()["id"] == full


def test_import_progress_with_content_length_ends_at_100_percent(api, busybox_tar, cleanup):
    r, objs = do_import(api, busybox_tar)
    assert r.status == 200 and not errors_in(objs), objs
    cleanup.append(api.get(f"/images/{objs[-1]['status']}/json").json()["id"])
    progress = [o["progress"] for o in objs if "progress" in o]
    assert len(progress) >= 2, objs  # busybox is ~2 MB: reported every MiB and at the end
    assert progress[-1].endswith("(100%)"), progress
    assert re.match(r"^[0-9.]+ [kMG]?B/[0-9.]+ [kMG]?B \(\d+%\)$", progress[0]), progress


def test_import_chunked_upload_from_generator(daemon, api, busybox_tar, cleanup):
    repo = uniq("chunk")

    def gen():
        for i in range(0, len(busybox_tar), 65536):
            yield busybox_tar[i:i + 65536]

    c = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=120)
    try:
        c.request("POST", f"/v1.3/images/create?fromSrc=-&repo={repo}", body=gen(),
                  headers={"Content-Type": "application/x-tar"}, encode_chunked=True)
        resp = c.getresponse()
        status, body = resp.status, resp.read()
    finally:
        c.close()
    assert status == 200, body
    objs = stream_objects(body)
    assert not errors_in(objs), objs
    progress = [o["progress"] for o in objs if "progress" in o]
    assert progress and all(p.endswith("/? (n/a)") for p in progress), progress
    info = api.get(f"/images/{repo}/json")
    assert info.status == 200, info
    cleanup.append(info.json()["id"])
    assert info.json()["id"].startswith(objs[-1]["status"])
    assert info.json()["Size"] > 1 * MB


def test_import_without_repo_is_an_untagged_leaf_listed_as_none(api, cleanup):
    full = import_ok(api, small_tar())
    cleanup.append(full)
    rows = [row for row in api.get("/images/json").json() if row["Id"] == full[:12]]
    assert len(rows) == 1, rows
    assert (rows[0]["Repository"], rows[0]["Tag"]) == ("<none>", "<none>")


def test_import_with_repo_and_tag_is_listed_under_that_name(api, cleanup):
    repo = uniq("named")
    full = import_ok(api, small_tar(), repo, "1.0", prefix="/v1.3")
    cleanup.append(full)
    rows = [row for row in api.get("/images/json").json() if row["Id"] == full[:12]]
    assert [(row["Repository"], row["Tag"]) for row in rows] == [(repo, "1.0")]
    # without a tag, import tags "latest"
    repo2 = uniq("named")
    full2 = import_ok(api, small_tar(), repo2)
    cleanup.append(full2)
    assert tags_of(api, full2[:12]) == [(repo2, "latest")]


def test_import_twice_to_the_same_repo_tag_moves_the_tag(api, cleanup):
    # Regression test; this once failed: Docker 0.5's import tags with force=true (repositories.Set(repo, tag, id, true)),
    # so `docker import - repo` twice moves repo:latest to the new image. pyd calls
    # set_tag() without force after registering: the second import ends with
    # {"error": "tag ... is already set ..."} and leaves an orphan untagged image.
    repo = uniq("twice")
    first = import_ok(api, small_tar(), repo)
    cleanup.append(first)
    before = set(all_ids12(api))
    r, objs = do_import(api, small_tar(), repo)
    assert r.status == 200, r
    new = sorted(set(all_ids12(api)) - before)
    cleanup.extend(new)  # whatever the import left behind goes at the end
    assert not errors_in(objs), objs
    assert len(new) == 1, new
    second = api.get(f"/images/{new[0]}/json").json()["id"]
    assert objs[-1] == {"status": second[:12]}, objs
    assert api.get(f"/images/{repo}/json").json()["id"] == second
    assert tags_of(api, first[:12]) == []


def test_import_from_http_url_downloads_and_imports(api, daemon, cleanup):
    data = small_tar(5000)
    repo = uniq("url")
    with LocalHTTP({"/x.tar": data, "/small.txt": b"hello\n"}) as srv:
        r, objs = do_import(api, b"", repo, None, "/v1.3", src=srv.url("/x.tar"))
        assert srv.hits == ["/x.tar"]
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/json"
    assert not errors_in(objs), objs
    assert any(o.get("status") == "Importing" and "progress" in o for o in objs), objs
    info = api.get(f"/images/{repo}/json")
    assert info.status == 200, info
    full = info.json()["id"]
    cleanup.append(full)
    assert full.startswith(objs[-1]["status"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        want = tf.extractfile("etc/marker").read()
    with open(os.path.join(layer_dir(daemon.root, full), "etc", "marker"), "rb") as f:
        assert f.read() == want


def test_import_from_url_that_404s_is_an_in_stream_error(api, daemon):
    before = all_ids12(api)
    with LocalHTTP({}) as srv:
        r, objs = do_import(api, b"", uniq("url"), src=srv.url("/missing.tar"))
    assert r.status == 200, r
    assert errors_in(objs) and "404" in errors_in(objs)[-1], objs
    assert all_ids12(api) == before
    assert tmp_entries(daemon.root) == []


def test_import_url_redirect_to_file_scheme_is_refused(api, daemon):
    before = all_ids12(api)
    with LocalHTTP({}, {"/r.tar": "file:///etc/passwd"}) as srv:
        r, objs = do_import(api, b"", None, src=srv.url("/r.tar"))
    assert r.status == 200, r
    assert errors_in(objs), objs
    assert all_ids12(api) == before


def test_import_url_redirect_to_ftp_is_not_followed(api, daemon):
    # Regression test; this once failed: fromSrc=ftp://... is refused with 400 (fetch.check_url), but fetch.open_url uses
    # urllib.request.urlopen, whose default HTTPRedirectHandler follows a redirect from
    # http:// to ftp:// (and FTPHandler then connects). Repro: an http server on 127.0.0.1
    # answering 302 Location: ftp://127.0.0.1:<port>/x.tar; POST
    # /images/create?fromSrc=http://127.0.0.1:<http port>/r.tar -> pyd opens a TCP
    # connection to <port>. Redirects should be limited to http/https (same for insert).
    before = all_ids12(api)
    with tcp_trap() as (port, got):
        with LocalHTTP({}, {"/r.tar": f"ftp://127.0.0.1:{port}/x.tar"}) as srv:
            r, objs = do_import(api, b"", None, src=srv.url("/r.tar"))
        time.sleep(0.3)
        connections = list(got)
    assert r.status == 200, r
    assert errors_in(objs), objs
    assert all_ids12(api) == before
    assert connections == [], "pyd followed a redirect to ftp://"


@pytest.mark.parametrize("src", ["file:///etc/passwd", "ftp://127.0.0.1:1/x.tar", "/etc/passwd"])
def test_import_from_non_http_source_is_400_plain_text(api, src):
    r = api.post(f"/images/create?fromSrc={src}")
    assert r.status == 400, r
    assert r.headers["Content-Type"].startswith("text/plain")
    assert b"{" not in r.body


@pytest.mark.parametrize("prefix", PREFIXES)
def test_from_image_pull_of_an_unreachable_registry_is_an_in_stream_error(api, prefix):
    # Port 1 on loopback: nothing listens (the registry tests, test_registry.py, pull for real).
    before = all_ids12(api)
    r = api.post(f"{prefix}/images/create?fromImage=127.0.0.1:1/foo&tag=latest")
    assert r.status == 200, r
    objs = stream_objects(r.body)
    errs = errors_in(objs)
    assert errs and "cannot reach the registry 127.0.0.1:1" in errs[-1], objs
    assert all("error" in o or "progress" in o or not HEX12.match(o.get("status", ""))
               for o in objs), objs
    assert all_ids12(api) == before


@pytest.mark.parametrize("prefix", PREFIXES)
def test_create_without_fromsrc_or_fromimage_is_400(api, prefix):
    r = api.post(f"{prefix}/images/create?repo=foo")
    assert r.status == 400, r
    assert r.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("repo,tag", [("Upper", None), ("a//b", None), ("ok", "a:b"), ("-lead", None),
                                      ("a/", None), ("ok", "-x")])
def test_import_invalid_repo_or_tag_is_400_and_adds_nothing(api, cleanup, repo, tag):
    before = set(all_ids12(api))
    q = f"fromSrc=-&repo={repo}" + (f"&tag={tag}" if tag is not None else "")
    r = api.post(f"/images/create?{q}", small_tar())
    cleanup.extend(sorted(set(all_ids12(api)) - before))
    assert r.status == 400, r
    assert r.headers["Content-Type"].startswith("text/plain")
    assert set(all_ids12(api)) == before


@pytest.mark.parametrize("repo", ["UP/per", "Foo/bar/baz"])
def test_import_uppercase_first_component_that_is_not_a_registry_host_is_400(api, cleanup, repo):
    # Regression test; this once failed: _REPO_RE takes any first component as an optional registry host and allows
    # uppercase in it, so "UP/per" is accepted (200, image tagged "UP/per:latest").
    # A first component is a registry host only when it has a "." or a ":" or is
    # "localhost" (the reference grammar); otherwise it is a path component and must be
    # lowercase. Repro: POST /images/create?fromSrc=-&repo=UP/per with a tar -> 200.
    before = set(all_ids12(api))
    r = api.post(f"/images/create?fromSrc=-&repo={repo}", small_tar())
    cleanup.extend(sorted(set(all_ids12(api)) - before))
    assert r.status == 400, r
    assert set(all_ids12(api)) == before


def test_import_accepts_registry_host_names(api, cleanup):
    for repo in ("localhost/abc", "Registry.Example.com:5000/team/app", "127.0.0.1:5000/x"):
        full = import_ok(api, small_tar(), repo, "t1")
        cleanup.append(full)
        assert api.get(f"/images/{repo}:t1/json").json()["id"] == full


def test_import_repo_param_may_carry_the_tag(api, cleanup):
    repo = uniq("rt")
    full = import_ok(api, small_tar(), f"{repo}:v9")
    cleanup.append(full)
    assert tags_of(api, full[:12]) == [(repo, "v9")]


def _truncated_tar():
    data = tar_bytes(("file", "big.bin", os.urandom(200_000)))
    return data[:100_000]


@pytest.mark.parametrize("kind", ["text", "random", "gzip-of-text", "truncated-tar", "bad-xz", "empty"])
def test_import_garbage_body_is_in_stream_error_and_adds_no_image(api, daemon, kind):
    body = {
        "text": b"this is not a tar archive at all\n" * 50,
        "random": os.urandom(64 * 1024),
        "gzip-of-text": gzip.compress(b"plain text, not a tar\n" * 100),
        "truncated-tar": _truncated_tar(),
        "bad-xz": b"\xfd7zXZ\x00" + os.urandom(4000),
        "empty": b"",
    }[kind]
    before = all_ids12(api)
    r, objs = do_import(api, body, uniq("garbage"))
    assert r.status == 200, r
    assert errors_in(objs), objs
    assert not any(HEX12.match(o.get("status", "")) for o in objs), objs
    assert all_ids12(api) == before
    assert tmp_entries(daemon.root) == []
    assert api.get("/_ping").body == b"OK"


def test_import_of_an_empty_archive_is_an_empty_image(api, daemon, cleanup):
    full = import_ok(api, tar_bytes())  # end-of-archive blocks only: a valid, empty tar
    cleanup.append(full)
    assert api.get(f"/images/{full}/json").json()["Size"] == 0
    assert os.listdir(layer_dir(daemon.root, full)) == []


# --------------------------------------------------------------------------
# hostile tars
# --------------------------------------------------------------------------

@pytest.fixture
def canary(tmp_path):
    """A directory on the host, outside the store, with a file in it."""
    d = tmp_path / "canary"
    d.mkdir()
    (d / "secret").write_bytes(b"do not touch\n")
    old = time.time() - 3600  # well in the past, so any change shows
    os.utime(d / "secret", (old, old))
    os.utime(d, (old, old))
    return str(d)


def _up(n=24):
    return "/".join([".."] * n)


HOSTILE = {
    # name: (entries builder taking the canary dir, expected "error" or a contained path)
    "dotdot-member": (lambda c: [("file", "../escape", b"x")], "error"),
    "deep-dotdot-to-canary": (lambda c: [("dir", "a"), ("file", f"a/{_up()}{c}/escaped", b"x")], "error"),
    "absolute-member": (lambda c: [("file", f"{c}/abs-pwned", b"x")], "contained"),
    "symlink-then-write-through": (lambda c: [("sym", "evil", c), ("file", "evil/pwned", b"x")], "error"),
    "relative-symlink-then-write-through": (
        lambda c: [("sym", "evil", f"{_up()}{c}"), ("file", "evil/pwned", b"x")], "error"),
    "dir-replaced-by-symlink-then-write": (
        lambda c: [("dir", "d"), ("file", "d/ok", b"ok"), ("sym", "d", c), ("file", "d/pwned", b"x")], "error"),
    "hardlink-to-absolute-host-file": (lambda c: [("hard", "shadow", f"{c}/secret")], "error"),
    "hardlink-dotdot-to-host-file": (lambda c: [("hard", "shadow", f"{_up()}{c}/secret")], "error"),
    "hardlink-through-symlink": (
        lambda c: [("sym", "lnkdir", c), ("hard", "shadow", "lnkdir/secret")], "error"),
    "symlink-dotdot-chain": (
        lambda c: [("sym", "l1", ".."), ("sym", "l2", "l1/.."), ("dir", "x"), ("sym", "x/l3", "../l2/../.."),
                   ("file", "x/l3/l1/pwned", b"x")], "error"),
    "oversized-pax-header": (
        lambda c: [("paxfile", "f", b"x", {"comment": "A" * 2_000_000})], "error"),
    "pax-path-escapes": (
        lambda c: [("paxfile", "harmless", b"x", {"path": f"{_up()}{c}/pax-pwned"})], "error"),
    "symlink-to-file-then-overwrite": (
        lambda c: [("sym", "victim", f"{c}/secret"), ("file", "victim", b"overwritten\n")], "contained"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tar_leaves_the_host_untouched(api, daemon, canary, cleanup, case):
    build, expect = HOSTILE[case]
    entries = build(canary)
    body = tar_bytes(*entries, fmt=tarfile.PAX_FORMAT if case.startswith(("pax", "oversized"))
                     else tarfile.GNU_FORMAT)
    before_host = snapshot(canary)
    before_ids = all_ids12(api)
    r, objs = do_import(api, body)
    assert r.status == 200, r
    assert snapshot(canary) == before_host, f"{case}: the canary directory changed"
    assert api.get("/_ping").body == b"OK"
    assert tmp_entries(daemon.root) == []
    if expect == "error":
        assert errors_in(objs), f"{case}: expected an in-stream error, got {objs}"
        assert all_ids12(api) == before_ids
        return
    assert not errors_in(objs), objs
    full = api.get(f"/images/{objs[-1]['status']}/json").json()["id"]
    cleanup.append(full)
    layer = layer_dir(daemon.root, full)
    if case == "absolute-member":
        with open(os.path.join(layer, canary.lstrip("/"), "abs-pwned"), "rb") as f:
            assert f.read() == b"x"
    else:
        p = os.path.join(layer, "victim")
        assert not os.path.islink(p)
        with open(p, "rb") as f:
            assert f.read() == b"overwritten\n"


def test_hostile_tars_leave_no_file_outside_the_layers(api, daemon, canary):
    """Nothing at all appears next to the store's own directories after all hostile imports."""
    allowed = {"images", "layers", "tmp", "refs.json", "format.json", "pyd.sock", "pyd.pid", "pyd.lock",
               "daemon.log", "containers", "volumes"}
    for case, (build, _) in HOSTILE.items():
        fmt = tarfile.PAX_FORMAT if case.startswith(("pax", "oversized")) else tarfile.GNU_FORMAT
        do_import(api, tar_bytes(*build(canary), fmt=fmt))
    extra = set(os.listdir(daemon.root)) - allowed
    assert not any(n in ("escape", "escaped", "pwned") for n in extra), extra
    assert not os.path.exists(os.path.join(os.path.dirname(daemon.root), "escape"))
    assert os.listdir(canary) == ["secret"]
    # clean up what was contained
    for row in all_rows(api):
        if row["Repository"] == "<none>":
            info = api.get(f"/images/{row['Id']}/json").json()
            if os.path.exists(os.path.join(layer_dir(daemon.root, info["id"]), "victim")) or \
               os.path.exists(os.path.join(layer_dir(daemon.root, info["id"]), canary.lstrip("/"))):
                api.delete(f"/images/{row['Id']}")


def test_import_converts_aufs_whiteouts_to_overlay_format(api, daemon, cleanup):
    body = tar_bytes(("dir", "etc"), ("file", "etc/.wh.gone", b""), ("dir", "opq"),
                     ("file", "opq/.wh..wh..opq", b""), ("file", "opq/kept", b"k"))
    full = import_ok(api, body)
    cleanup.append(full)
    layer = layer_dir(daemon.root, full)
    st = os.lstat(os.path.join(layer, "etc", "gone"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not os.path.lexists(os.path.join(layer, "etc", ".wh.gone"))
    assert os.getxattr(os.path.join(layer, "opq"), "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(os.path.join(layer, "opq"))) == ["kept"]


# --------------------------------------------------------------------------
# GET /images/json
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_list_rows_have_exact_keys_and_real_sizes(api, busybox, prefix):
    r = api.get(f"{prefix}/images/json")
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    rows = r.json()
    assert isinstance(rows, list) and rows
    for row in rows:
        assert set(row) == {"Repository", "Tag", "Id", "Created", "Size", "VirtualSize"}, row
        assert HEX12.match(row["Id"])
        assert isinstance(row["Created"], int) and isinstance(row["Size"], int)
        assert isinstance(row["VirtualSize"], int) and row["VirtualSize"] >= row["Size"]
    bb = [row for row in rows if (row["Repository"], row["Tag"]) == ("busybox", "latest")]
    assert len(bb) == 1
    assert bb[0]["Id"] == busybox[:12]
    assert bb[0]["Size"] > 1 * MB
    assert bb[0]["Size"] >= os.path.getsize(BUSYBOX)
    assert abs(bb[0]["Created"] - time.time()) < 24 * 3600


def test_list_one_row_per_repo_tag(api, cleanup):
    repo = uniq("rows")
    full = import_ok(api, small_tar(), repo, "a")
    cleanup.append(full)
    assert api.post(f"/images/{full[:12]}/tag?repo={repo}&tag=b").status == 201
    assert api.post(f"/images/{full[:12]}/tag?repo={repo}x&tag=c").status == 201
    rows = [row for row in api.get("/images/json").json() if row["Id"] == full[:12]]
    assert sorted((row["Repository"], row["Tag"]) for row in rows) == \
        [(repo, "a"), (repo, "b"), (repo + "x", "c")]
    assert len({(row["Created"], row["Size"], row["VirtualSize"]) for row in rows}) == 1
    for t in ("a", "b"):
        api.delete(f"/images/{repo}:{t}")


def test_list_virtual_size_of_inserted_child_is_parent_plus_child(api, busybox, cleanup):
    payload = b"hello, inserted world\n"
    with LocalHTTP({"/hello.txt": payload}) as srv:
        child = insert_ok(api, "busybox", "/usr/bin/hello.txt", srv.url("/hello.txt"))
    cleanup.append(child)
    rows = {row["Id"]: row for row in all_rows(api)}
    parent, kid = rows[busybox[:12]], rows[child[:12]]
    assert kid["Size"] == len(payload)
    assert kid["VirtualSize"] == parent["VirtualSize"] + kid["Size"]
    assert parent["VirtualSize"] == parent["Size"]  # busybox is a base image


def test_list_all_shows_untagged_intermediate_that_default_hides(api, cleanup):
    # chain: P (imported, untagged) -> C (insert into P, then tagged)
    p = import_ok(api, small_tar())
    cleanup.append(p)
    with LocalHTTP({"/f": b"layer two\n"}) as srv:
        c = insert_ok(api, p[:12], "/f", srv.url("/f"))
    cleanup.append(c)
    repo = uniq("chain")
    assert api.post(f"/images/{c[:12]}/tag?repo={repo}").status == 201
    default = api.get("/images/json").json()
    everything = api.get("/images/json?all=1").json()
    assert p[:12] not in {row["Id"] for row in default}
    assert [(row["Repository"], row["Tag"]) for row in everything if row["Id"] == p[:12]] == \
        [("<none>", "<none>")]
    for rows in (default, everything):
        assert [(row["Repository"], row["Tag"]) for row in rows if row["Id"] == c[:12]] == [(repo, "latest")]
    assert api.get("/images/json?all=0").json() == default
    assert api.get("/v1.3/images/json?all=true").json() == everything
    # untagging C makes it an untagged leaf: shown by default as <none>
    # (via the cleanup fixture, deleting the tag prunes both C and P)


def test_list_filter_matches_the_repository_exactly(api, busybox, cleanup):
    other = import_ok(api, small_tar(), "busybox2")
    cleanup.append(other)
    r = api.get("/images/json?filter=busybox")
    assert r.status == 200, r
    rows = r.json()
    assert rows and {row["Repository"] for row in rows} == {"busybox"}
    assert busybox[:12] in {row["Id"] for row in rows}
    assert other[:12] not in {row["Id"] for row in rows}
    rows2 = api.get("/v1.3/images/json?filter=busybox2&all=1").json()
    assert [(row["Repository"], row["Id"]) for row in rows2] == [("busybox2", other[:12])]
    assert api.get("/images/json?filter=busyb").json() == []


@pytest.mark.parametrize("value", ["bogus", "yes", "2"])
def test_list_bad_all_value_is_400(api, value):
    r = api.get(f"/images/json?all={value}")
    assert r.status == 400, r
    assert r.headers["Content-Type"].startswith("text/plain")


# --------------------------------------------------------------------------
# GET /images/viz
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_viz_is_a_graphviz_digraph_of_images(api, busybox, cleanup, prefix):
    repo = uniq("viz")
    p = import_ok(api, small_tar(), repo)
    cleanup.append(p)
    with LocalHTTP({"/f": b"viz child\n"}) as srv:
        c = insert_ok(api, repo, "/f", srv.url("/f"))
    cleanup.append(c)
    r = api.get(f"{prefix}/images/viz")
    assert r.status == 200, r
    assert r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    assert text.startswith("digraph docker {\n")
    assert text.endswith(" base [style=invisible]\n}\n")
    lines = text.split("\n")
    p12, c12, b12 = p[:12], c[:12], busybox[:12]
    assert f' base -> "{p12}" [style=invis]' in lines
    assert f' base -> "{b12}" [style=invis]' in lines
    assert f' "{p12}" -> "{c12}"' in lines
    assert f' base -> "{c12}" [style=invis]' not in lines
    label = (f' "{p12}" [label="{p12}\\n{repo}:latest",shape=box,'
             f'fillcolor="paleturquoise",style="filled,rounded"];')
    assert label in lines
    bb = [ln for ln in lines if ln.startswith(f' "{b12}" [label="{b12}\\n')]
    assert len(bb) == 1 and "busybox:latest" in bb[0].split('"')[3].split("\\n"), bb
    assert bb[0].endswith('",shape=box,fillcolor="paleturquoise",style="filled,rounded"];')
    # untagged C has no label line; edges come before labels
    assert not any(ln.startswith(f' "{c12}" [label=') for ln in lines)
    assert lines.index(f' "{p12}" -> "{c12}"') < lines.index(label)


# --------------------------------------------------------------------------
# GET /images/(name)/json
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_inspect_has_the_documented_keys(api, busybox, prefix):
    r = api.get(f"{prefix}/images/busybox/json")
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    info = r.json()
    assert set(info) >= {"id", "parent", "created", "container", "container_config", "Size", "config"}
    assert info["id"] == busybox and info["parent"] == ""
    assert isinstance(info["container_config"], dict) and isinstance(info["Size"], int)
    assert info["Size"] > 1 * MB
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", info["created"])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_inspect_unknown_image_is_404(api, prefix):
    for name in ("nosuchimage", "nosuch:tag", "0123456789ab", "busybox:nosuchtag"):
        r = api.get(f"{prefix}/images/{name}/json")
        assert r.status == 404, (name, r)
        assert r.headers["Content-Type"].startswith("text/plain")


def test_inspect_resolves_prefix_full_id_repo_and_repo_tag(api, cleanup):
    repo = uniq("res")
    full = import_ok(api, small_tar(), repo, "v2")
    cleanup.append(full)
    assert api.post(f"/images/{full}/tag?repo={repo}").status == 201  # repo:latest too
    for name in (full, full[:12], full[:20], repo, f"{repo}:latest", f"{repo}:v2"):
        r = api.get(f"/images/{name}/json")
        assert r.status == 200, (name, r)
        assert r.json()["id"] == full


@pytest.mark.parametrize("prefix", PREFIXES)
def test_inspect_registry_style_name_resolves(api, cleanup, prefix):
    full = import_ok(api, small_tar())
    cleanup.append(full)
    r = api.post(f"{prefix}/images/{full[:12]}/tag?repo=127.0.0.1:5000/foo/bar&tag=v1")
    assert r.status == 201, r
    r = api.get(f"{prefix}/images/127.0.0.1:5000/foo/bar:v1/json")
    assert r.status == 200, r
    assert r.json()["id"] == full
    assert api.get(f"{prefix}/images/127.0.0.1:5000/foo/bar/json").status == 404  # no :latest
    r = api.post(f"{prefix}/images/{full[:12]}/tag?repo=localhost:5000/foo/bar:v3")
    assert r.status == 201, r
    assert api.get(f"{prefix}/images/localhost:5000/foo/bar:v3/json").json()["id"] == full
    r = api.delete(f"{prefix}/images/127.0.0.1:5000/foo/bar:v1")
    assert r.status == 200 and r.json() == [{"Untagged": full[:12]}], r


def test_registry_style_name_works_for_insert_history_and_delete(api, daemon):
    p = import_ok(api, small_tar())
    name = "localhost:5000/team/app"
    assert api.post(f"/v1.3/images/{p[:12]}/tag?repo={name}&tag=v1").status == 201
    with LocalHTTP({"/f": b"reg\n"}) as srv:
        c = insert_ok(api, f"{name}:v1", "/f", srv.url("/f"), prefix="/v1.3")
    assert api.get(f"/images/{c}/json").json()["parent"] == p
    hist = api.get(f"/v1.3/images/{name}:v1/history").json()
    assert [h["Id"] for h in hist] == [p[:12]]
    assert api.post(f"/images/{c[:12]}/tag?repo={name}&tag=v2").status == 201
    r = api.delete(f"/v1.3/images/{name}:v2")
    assert r.status == 200, r
    assert r.json() == [{"Untagged": c[:12]}, {"Deleted": c[:12]}]
    p_layer = layer_dir(daemon.root, p)
    r = api.delete(f"/images/{name}:v1")
    assert r.status == 200, r
    assert r.json() == [{"Untagged": p[:12]}, {"Deleted": p[:12]}]
    assert not os.path.exists(p_layer)


# --------------------------------------------------------------------------
# GET /images/(name)/history
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_history_lists_the_chain_child_first(api, busybox, cleanup, prefix):
    with LocalHTTP({"/h": b"history\n"}) as srv:
        url = srv.url("/h")
        c = insert_ok(api, "busybox", "/etc/h", url)
    cleanup.append(c)
    r = api.get(f"{prefix}/images/{c[:12]}/history")
    assert r.status == 200 and r.headers["Content-Type"] == "application/json"
    hist = r.json()
    assert [h["Id"] for h in hist] == [c[:12], busybox[:12]]
    for h in hist:
        assert set(h) == {"Id", "Created", "CreatedBy"}
        assert isinstance(h["Created"], int) and isinstance(h["CreatedBy"], str)
    assert url in hist[0]["CreatedBy"]
    assert hist[0]["Created"] >= hist[1]["Created"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_history_unknown_image_is_404(api, prefix):
    r = api.get(f"{prefix}/images/nosuchimage/history")
    assert r.status == 404, r


# --------------------------------------------------------------------------
# POST /images/(name)/tag
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_tag_is_201_and_the_new_name_resolves(api, cleanup, prefix):
    full = import_ok(api, small_tar())
    cleanup.append(full)
    repo = uniq("tag")
    r = api.post(f"{prefix}/images/{full[:12]}/tag?repo={repo}&tag=v1&force=0")
    assert r.status == 201, r
    assert api.get(f"/images/{repo}:v1/json").json()["id"] == full
    # the same tag on the same image again is not a conflict
    assert api.post(f"{prefix}/images/{full[:12]}/tag?repo={repo}&tag=v1").status == 201
    assert tags_of(api, full[:12]) == [(repo, "v1")]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_tag_unknown_image_is_404(api, prefix):
    r = api.post(f"{prefix}/images/nosuchimage/tag?repo={uniq()}")
    assert r.status == 404, r


def test_tag_conflict_is_409_without_force_and_force_moves_it(api, cleanup):
    repo = uniq("mv")
    a = import_ok(api, small_tar(), repo, "t")
    cleanup.append(a)
    b = import_ok(api, small_tar())
    cleanup.append(b)
    r = api.post(f"/images/{b[:12]}/tag?repo={repo}&tag=t")
    assert r.status == 409, r
    assert api.get(f"/images/{repo}:t/json").json()["id"] == a
    r = api.post(f"/images/{b[:12]}/tag?repo={repo}&tag=t&force=0")
    assert r.status == 409, r
    r = api.post(f"/v1.3/images/{b[:12]}/tag?repo={repo}&tag=t&force=1")
    assert r.status == 201, r
    assert api.get(f"/images/{repo}:t/json").json()["id"] == b
    assert tags_of(api, a[:12]) == []
    r = api.post(f"/images/{a[:12]}/tag?repo={repo}&tag=t&force=true")
    assert r.status == 201, r
    assert api.get(f"/images/{repo}:t/json").json()["id"] == a


@pytest.mark.parametrize("query", ["", "?tag=x", "?repo=&tag=x"])
def test_tag_missing_repo_is_400(api, busybox, query):
    r = api.post(f"/images/busybox/tag{query}")
    assert r.status == 400, r
    assert r.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("force", ["maybe", "2", "yes"])
def test_tag_bad_force_value_is_400(api, busybox, force):
    repo = uniq()
    r = api.post(f"/images/busybox/tag?repo={repo}&force={force}")
    assert r.status == 400, r
    assert api.get(f"/images/{repo}/json").status == 404


@pytest.mark.parametrize("repo", ["Upper", "a//b", "bad name"])
def test_tag_invalid_repo_name_is_400(api, busybox, repo):
    r = api.post(f"/images/busybox/tag?repo={repo.replace(' ', '%20')}")
    assert r.status == 400, r


# --------------------------------------------------------------------------
# DELETE /images/(name)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_delete_by_name_only_untags_when_other_tags_remain(api, daemon, cleanup, prefix):
    repo = uniq("del")
    full = import_ok(api, small_tar(), repo, "a")
    cleanup.append(full)
    assert api.post(f"/images/{full[:12]}/tag?repo={repo}&tag=b").status == 201
    r = api.delete(f"{prefix}/images/{repo}:a")
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == [{"Untagged": full[:12]}]
    assert tags_of(api, full[:12]) == [(repo, "b")]
    assert os.path.isdir(layer_dir(daemon.root, full))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_delete_last_tag_deletes_image_and_its_layer(api, daemon, prefix):
    repo = uniq("last")
    full = import_ok(api, small_tar(), repo)
    layer = layer_dir(daemon.root, full)
    assert os.path.isdir(layer)
    r = api.delete(f"{prefix}/images/{repo}")
    assert r.status == 200, r
    assert r.json() == [{"Untagged": full[:12]}, {"Deleted": full[:12]}]
    assert not os.path.exists(layer)
    assert not os.path.exists(layer + ".json")
    assert not os.path.exists(os.path.join(daemon.root, "images", "sha256", full + ".json"))
    assert api.get(f"/images/{full}/json").status == 404
    assert full[:12] not in all_ids12(api)
    assert tmp_entries(daemon.root) == []


def test_delete_untagged_image_by_id(api, daemon):
    full = import_ok(api, small_tar())
    layer = layer_dir(daemon.root, full)
    r = api.delete(f"/images/{full[:12]}")
    assert r.status == 200, r
    assert r.json() == [{"Deleted": full[:12]}]
    assert not os.path.exists(layer)


def test_delete_child_prunes_its_untagged_parent(api, daemon):
    p = import_ok(api, small_tar())
    with LocalHTTP({"/f": b"child\n"}) as srv:
        c = insert_ok(api, p[:12], "/f", srv.url("/f"))
    repo = uniq("prune")
    assert api.post(f"/images/{c[:12]}/tag?repo={repo}").status == 201
    layers = {image_id: layer_dir(daemon.root, image_id) for image_id in (p, c)}
    r = api.delete(f"/images/{repo}:latest")
    assert r.status == 200, r
    assert r.json() == [{"Untagged": c[:12]}, {"Deleted": c[:12]}, {"Deleted": p[:12]}]
    for image_id in (p, c):
        assert not os.path.exists(layers[image_id])
        assert api.get(f"/images/{image_id}/json").status == 404


def test_delete_child_keeps_an_untagged_parent_with_other_children(api, cleanup):
    p = import_ok(api, small_tar())
    cleanup.append(p)
    with LocalHTTP({"/f": b"one\n", "/g": b"two\n"}) as srv:
        c1 = insert_ok(api, p[:12], "/f", srv.url("/f"))
        c2 = insert_ok(api, p[:12], "/g", srv.url("/g"))
    cleanup.append(c2)
    repo = uniq("sib")
    assert api.post(f"/images/{c1[:12]}/tag?repo={repo}").status == 201
    r = api.delete(f"/images/{repo}")
    assert r.status == 200, r
    assert r.json() == [{"Untagged": c1[:12]}, {"Deleted": c1[:12]}]
    assert api.get(f"/images/{p}/json").status == 200


def test_delete_child_never_prunes_tagged_parent_busybox(api, daemon, busybox):
    with LocalHTTP({"/f": b"on busybox\n"}) as srv:
        c = insert_ok(api, "busybox", "/f", srv.url("/f"))
    repo = uniq("onbb")
    assert api.post(f"/images/{c[:12]}/tag?repo={repo}").status == 201
    r = api.delete(f"/images/{repo}")
    assert r.status == 200, r
    assert r.json() == [{"Untagged": c[:12]}, {"Deleted": c[:12]}]
    assert api.get("/images/busybox/json").json()["id"] == busybox
    assert os.path.isdir(layer_dir(daemon.root, busybox))


def test_delete_by_id_tagged_in_two_repositories_is_409(api, cleanup):
    full = import_ok(api, small_tar(), uniq("two"))
    cleanup.append(full)
    assert api.post(f"/images/{full[:12]}/tag?repo={uniq('two')}").status == 201
    tags = tags_of(api, full[:12])
    for name in (full[:12], full):
        r = api.delete(f"/images/{name}")
        assert r.status == 409, r
        assert r.headers["Content-Type"].startswith("text/plain")
    assert tags_of(api, full[:12]) == tags
    assert api.delete(f"/v1.3/images/{full}").status == 409


def test_delete_by_id_with_children_is_409(api, cleanup):
    p = import_ok(api, small_tar())
    cleanup.append(p)
    with LocalHTTP({"/f": b"kid\n"}) as srv:
        c = insert_ok(api, p[:12], "/f", srv.url("/f"))
    cleanup.append(c)
    r = api.delete(f"/images/{p[:12]}")
    assert r.status == 409, r
    assert api.get(f"/images/{p}/json").status == 200
    assert api.get(f"/images/{c}/json").status == 200


def test_delete_by_id_with_children_is_409_and_keeps_its_tag(api, cleanup):
    # Regression test; this once failed: ImageStore.delete() (by-id branch) untags the image and saves repositories.json
    # BEFORE checking for children; the 409 then leaves the parent silently untagged.
    # Repro: import P as repo R, insert a file into R (child C), DELETE /images/<P id> -> 409,
    # then GET /images/R/json -> 404 (the tag is gone although the request failed).
    repo = uniq("kept")
    p = import_ok(api, small_tar(), repo)
    cleanup.append(p)
    with LocalHTTP({"/f": b"kid\n"}) as srv:
        c = insert_ok(api, repo, "/f", srv.url("/f"))
    cleanup.append(c)
    r = api.delete(f"/images/{p[:12]}")
    assert r.status == 409, r
    assert tags_of(api, p[:12]) == [(repo, "latest")]
    assert api.get(f"/images/{repo}/json").status == 200


@pytest.mark.parametrize("prefix", PREFIXES)
def test_delete_unknown_image_is_404(api, prefix):
    for name in ("nosuchimage", "nosuchimage:v1", "0123456789ab"):
        r = api.delete(f"{prefix}/images/{name}")
        assert r.status == 404, (name, r)


# --------------------------------------------------------------------------
# POST /images/(name)/insert
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_insert_downloads_a_file_into_a_new_child_layer(api, daemon, busybox, cleanup, prefix):
    payload = b"hello from insert " + uuid.uuid4().hex.encode() + b"\n"
    with LocalHTTP({"/hello.txt": payload, "/x.tar": b"unused"}) as srv:
        r = api.post(f"{prefix}/images/busybox/insert?path=/usr/bin/hello.txt&url={srv.url('/hello.txt')}",
                     timeout=120)
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/json"
    objs = stream_objects(r.body)
    assert not errors_in(objs), objs
    id12 = objs[-1]["status"]
    assert HEX12.match(id12) and set(objs[-1]) == {"status"}
    info = api.get(f"/images/{id12}/json").json()
    cleanup.append(info["id"])
    assert info["parent"] == busybox
    assert info["Size"] == len(payload)
    with open(os.path.join(layer_dir(daemon.root, info["id"]), "usr", "bin", "hello.txt"), "rb") as f:
        assert f.read() == payload
    # the parent is untouched
    assert not os.path.exists(os.path.join(layer_dir(daemon.root, busybox), "usr", "bin", "hello.txt"))


def test_insert_path_with_dotdot_stays_inside_the_layer(api, daemon, busybox, cleanup, canary):
    before = snapshot(canary)
    with LocalHTTP({"/p": b"payload\n"}) as srv:
        c = insert_ok(api, "busybox", f"/../../../../../../../..{canary}/inserted", srv.url("/p"))
    cleanup.append(c)
    assert snapshot(canary) == before
    with open(os.path.join(layer_dir(daemon.root, c), canary.lstrip("/"), "inserted"), "rb") as f:
        assert f.read() == b"payload\n"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_insert_into_unknown_image_is_404_before_the_stream(api, prefix):
    with LocalHTTP({"/f": b"x"}) as srv:
        r = api.post(f"{prefix}/images/nosuchimage/insert?path=/f&url={srv.url('/f')}")
        assert srv.hits == []
    assert r.status == 404, r
    assert r.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize("query", ["path=/f", "url=http://127.0.0.1:1/f", "", "path=&url=http://127.0.0.1:1/f"])
def test_insert_missing_url_or_path_is_400(api, busybox, query):
    r = api.post(f"/images/busybox/insert?{query}")
    assert r.status == 400, r


def test_insert_non_http_url_is_400(api, busybox):
    r = api.post("/images/busybox/insert?path=/p&url=file:///etc/passwd")
    assert r.status == 400, r


def test_insert_url_that_404s_is_an_in_stream_error(api, daemon, busybox):
    before = all_ids12(api)
    with LocalHTTP({}) as srv:
        r = api.post(f"/images/busybox/insert?path=/f&url={srv.url('/missing')}")
    assert r.status == 200, r
    objs = stream_objects(r.body)
    errs = errors_in(objs)
    assert errs and "404" in errs[-1], objs
    assert all_ids12(api) == before
    assert tmp_entries(daemon.root) == []


# --------------------------------------------------------------------------
# crash safety
# --------------------------------------------------------------------------

FILE_SIZE = 50 * 1024 * 1024


def _big_tar_stream(n_files, block):
    """A tar of n_files x 50 MiB (a random 1 MiB block, repeated with a counter) as a generator."""
    for i in range(n_files):
        ti = tarfile.TarInfo(f"big/file{i:02d}.bin")
        ti.size, ti.mode, ti.mtime = FILE_SIZE, 0o644, int(time.time())
        yield ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        for j in range(FILE_SIZE // len(block)):
            yield (b"%08d%08d" % (i, j)) + block[16:]
    yield b"\0" * 1024


def _big_tar_length(n_files):
    ti = tarfile.TarInfo("big/file00.bin")
    ti.size, ti.mode, ti.mtime = FILE_SIZE, 0o644, int(time.time())
    return n_files * (len(ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")) + FILE_SIZE) + 1024


def _tree_bytes(path):
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for n in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except FileNotFoundError:
                pass
    return total


def _store_state(d):
    """(image rows, layer dirs, layer records, image configs) of a data root."""
    root = d.root
    rows = d.api.get("/images/json?all=1").json()
    entries = store_entries(root, "layers")
    layers = [n for n in entries if not n.endswith(".json") and not n.endswith(".split")]
    records = [n for n in entries if n.endswith(".json")]
    images = store_entries(root, "images")
    return rows, layers, records, images


@pytest.mark.slow
def test_kill9_during_large_import_leaves_a_consistent_store(new_daemon, busybox_tar):
    d = new_daemon()
    d.start()
    r = d.api.post("/images/create?fromSrc=-&repo=busybox", busybox_tar, timeout=120)
    assert r.status == 200 and b'"error"' not in r.body, r
    rows0, layers0, records0, images0 = _store_state(d)
    assert len(rows0) == 1 and len(layers0) == 1 and records0 == [layers0[0] + ".json"] and len(images0) == 1

    n_files = 6  # ~300 MiB declared; killed after ~50 MiB
    total = _big_tar_length(n_files)
    block = os.urandom(1 << 20)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    sent = 0
    tmp_during = []
    try:
        s.sendall(("POST /images/create?fromSrc=-&repo=huge&tag=v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Content-Type: application/x-tar\r\n"
                   f"Content-Length: {total}\r\n\r\n").encode())
        deadline = time.monotonic() + 120
        for chunk in _big_tar_stream(n_files, block):
            s.sendall(chunk)
            sent += len(chunk)
            if sent >= 55 * 1024 * 1024 or time.monotonic() > deadline:
                break
        # the daemon is mid-extraction: its work directory in tmp/ holds tens of MB
        for _ in range(100):
            tmp_during = tmp_entries(d.root)
            on_disk = _tree_bytes(os.path.join(d.root, "tmp"))
            if tmp_during and on_disk >= 20 * 1024 * 1024:
                break
            time.sleep(0.05)
        d.kill9()
    finally:
        s.close()
    assert sent >= 50 * 1024 * 1024
    assert tmp_during, "no import work directory seen in tmp/ before the kill"
    assert on_disk >= 20 * 1024 * 1024, f"only {on_disk} bytes extracted before the kill"

    d.start()
    rows1, layers1, records1, images1 = _store_state(d)
    assert rows1 == rows0
    assert tmp_entries(d.root) == []
    assert layers1 == layers0
    assert records1 == [i + ".json" for i in layers1]
    assert images1 == images0
    assert {i[:12] for i in images1} == {row["Id"] for row in rows1}
    assert d.api.get("/images/huge:v1/json").status == 404
    assert d.api.get("/images/busybox/json").json()["id"] + ".json" == images0[0]
    assert layer_dir(d.root, images0[0][:-5]).endswith(layers0[0])
    # the store still works after the crash
    r = d.api.post("/images/create?fromSrc=-&repo=after", small_tar(), timeout=60)
    assert r.status == 200 and b'"error"' not in r.body, r
    assert d.api.get("/images/after/json").status == 200


