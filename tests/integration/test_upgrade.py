"""An upgrade in place (issue 16): a new file is moved over the frozen
binary while the daemon runs, the safe way to replace a running
executable. The daemon must never read its executable after start (the
one-file bootloader used to re-open it by path for every lazy import, and
then found the new file at the old offsets: "Error -3 while decompressing
data"). dist/pyd unpacks itself once (docs/static.md), so every endpoint
family still works after the rename: each is exercised here, and the log
holds no import error.

Marked `frozen`: it needs the one-file binary (build.sh's frozen pass).
Network: 127.0.0.1 only (a file server and Debian's docker-registry of the
test's own).
"""

import io
import json
import os
import shutil
import socket
import tarfile
import time

import pytest

from tests.pydtest import Daemon, daemon_cmd, require
from tests.pydtest import registry as reglib
from tests.integration.test_images import LocalHTTP

pytestmark = pytest.mark.frozen
V = "/v1.41"


@pytest.fixture(scope="module")
def renamed(tmp_path_factory, busybox_tar):
    cmd = daemon_cmd()
    assert len(cmd) == 1 and os.access(cmd[0], os.X_OK), f"PYD_CMD is not the one-file binary: {cmd}"
    bindir = tmp_path_factory.mktemp("bin")
    binary = bindir / "pyd"
    shutil.copyfile(cmd[0], binary)
    os.chmod(binary, 0o755)
    d = Daemon(tmp_path_factory.mktemp("pyd-upgrade"), cmd=[str(binary)])
    d.start()
    try:
        r = d.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                       headers={"Content-Type": "application/x-tar"})
        assert r.status == 200 and b'"error"' not in r.body, r
        # The new "release": another file entirely, moved over the running one.
        new = bindir / "pyd.new"
        new.write_bytes(os.urandom(1 << 20))
        os.chmod(new, 0o755)
        os.rename(new, binary)
        yield d
    finally:
        rc = d.stop()
        assert rc == 0, f"daemon exited with {rc}:\n{d.log()}"
        log = d.log()
        for bad in ("Error -3", "incorrect header check", "ModuleNotFoundError", "ImportError", "internal error"):
            assert bad not in log, f"{bad!r} in the daemon's log:\n{log[-4000:]}"


def run(d, cmd, image="busybox"):
    r = d.api.post(f"{V}/containers/create", {"Image": image, "Cmd": cmd})
    assert r.status == 201, r
    cid = r.json()["Id"]
    assert d.api.post(f"{V}/containers/{cid}/start").status == 204
    assert d.api.wait(cid) == 0
    return cid


def test_versions_info_and_events(renamed):
    since = int(time.time()) - 1
    assert renamed.api.get(f"{V}/version").status == 200
    assert renamed.api.get("/v1.3/info").status == 200
    cid = run(renamed, ["true"])
    r = renamed.api.get(f"{V}/events?since={since}&until={int(time.time()) + 1}")
    assert r.status == 200 and cid.encode() in r.body, r
    renamed.api.delete(f"{V}/containers/{cid}")


def test_import_from_a_url_and_insert(renamed, busybox_tar):
    with LocalHTTP({"/rootfs.tar": busybox_tar, "/hello.txt": b"hello\n"}) as srv:
        r = renamed.api.post(f"/images/create?fromSrc={srv.url('/rootfs.tar')}&repo=from-url&tag=1", timeout=120)
        assert r.status == 200 and b'"error"' not in r.body, r
        r = renamed.api.post(f"/images/from-url:1/insert?path=/hello.txt&url={srv.url('/hello.txt')}", timeout=120)
        assert r.status == 200 and b'"error"' not in r.body, r


def test_attach_top_export_and_commit(renamed):
    r = renamed.api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["sh", "-c", "echo attached; sleep 30"]})
    cid = r.json()["Id"]
    s = socket.create_connection(("127.0.0.1", renamed.port), timeout=30)
    try:
        s.sendall(f"POST /containers/{cid}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert renamed.api.post(f"/containers/{cid}/start").status == 204
        got, deadline = head, time.monotonic() + 30
        while b"attached" not in got and time.monotonic() < deadline:
            got += s.recv(4096)
        assert b"attached" in got, got
    finally:
        s.close()
    top = renamed.api.get(f"{V}/containers/{cid}/top")
    assert top.status == 200 and top.json()["Processes"], top
    r = renamed.api.post(f"/commit?container={cid}&repo=committed")
    assert r.status == 201, r
    renamed.api.post(f"/containers/{cid}/kill")
    renamed.api.wait(cid)
    r = renamed.api.get(f"/containers/{cid}/export", timeout=120)
    assert r.status == 200, r
    names = tarfile.open(fileobj=io.BytesIO(r.body)).getnames()
    assert "bin/busybox" in names or "./bin/busybox" in names, names[:10]
    renamed.api.delete(f"{V}/containers/{cid}")


def test_build_save_load_and_cp(renamed):
    ctx = io.BytesIO()
    with tarfile.open(fileobj=ctx, mode="w") as tf:
        data = b"FROM busybox\nRUN echo built > /built\n"
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    r = renamed.api.post(f"{V}/build?t=built:1", ctx.getvalue(), headers={"Content-Type": "application/x-tar"},
                         timeout=180)
    assert r.status == 200 and b"errorDetail" not in r.body, r
    saved = renamed.api.get(f"{V}/images/get?names=built:1", timeout=120)
    assert saved.status == 200, saved
    assert renamed.api.delete(f"{V}/images/built:1").status == 200
    r = renamed.api.post(f"{V}/images/load", saved.body, headers={"Content-Type": "application/x-tar"}, timeout=120)
    assert r.status == 200 and b"error" not in r.body, r
    cid = run(renamed, ["true"], image="built:1")
    r = renamed.api.get(f"{V}/containers/{cid}/archive?path=/built")
    assert r.status == 200, r
    member = tarfile.open(fileobj=io.BytesIO(r.body))
    assert member.extractfile("built").read() == b"built\n"
    renamed.api.delete(f"{V}/containers/{cid}")


def test_push_and_pull(renamed, tmp_path):
    require(reglib.available(), "docker-registry (Debian's package)")
    reg = reglib.Registry(tmp_path / "registry").start()
    try:
        name = f"{reg.addr}/upgrade/busybox"
        assert renamed.api.post(f"/images/busybox/tag?repo={name}&tag=latest").status in (200, 201)
        r = renamed.api.post(f"{V}/images/{name}/push?tag=latest", headers={"X-Registry-Auth": "e30="}, timeout=120)
        assert r.status == 200 and b'"error"' not in r.body, r
        assert renamed.api.delete(f"/images/{name}:latest").status == 200
        r = renamed.api.post(f"{V}/images/create?fromImage={name}&tag=latest", timeout=120)
        assert r.status == 200 and b'"error"' not in r.body, r
        assert json.loads(r.body.splitlines()[-1])["status"].startswith("Status:"), r.body[-300:]
    finally:
        reg.stop()
