"""Faults (issue 14): a full disk, a killed daemon, a killed container.
Each ends with the store consistent and nothing leaked."""

import json
import socket
import os
import signal
import subprocess
import time

import pytest

from tests.pydtest import Api

V = "/v1.41"


@pytest.fixture
def small_root(tmp_path):
    """A data root on a 96 MiB tmpfs of its own, unmounted at the end."""
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m,mode=0700", "tmpfs", str(root)], check=True)
    yield root
    subprocess.run(["umount", "-l", str(root)], check=False)


def fill(path):
    """Fill the filesystem holding `path`; returns the filler's path."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    # The last partial blocks too.
    try:
        with open(filler, "ab") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    return filler


def cgroup_procs(cid):
    """Processes left in any cgroup named for the container (v1 or v2)."""
    left = []
    for base, _, files in os.walk("/sys/fs/cgroup"):
        if cid in base and "cgroup.procs" in files:
            try:
                left += open(os.path.join(base, "cgroup.procs")).read().split()
            except OSError:
                pass
    return left


def test_a_full_disk_gives_clean_errors_and_recovery(new_daemon, small_root, busybox_tar):
    d = new_daemon(root=small_root).start()
    api = d.api
    try:
        r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                     headers={"Content-Type": "application/x-tar"})
        assert r.status == 200 and b'"error"' not in r.body, r
        made = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["sh", "-c", "echo hi"]})
        assert made.status == 201, made
        cid = made.json()["Id"]
        running = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["sleep", "60"]}).json()["Id"]
        assert api.post(f"{V}/containers/{running}/start").status == 204
        filler = fill(str(small_root))

        # A start on a full disk fails cleanly: no process, and the container is not running.
        r = api.post(f"{V}/containers/{cid}/start")
        assert r.status >= 400, r
        assert b"no space left on device" in r.body.lower(), r
        state = api.get(f"{V}/containers/{cid}/json").json()["State"]
        assert state["Running"] is False and state["Pid"] == 0, state
        assert cgroup_procs(cid) == []
        # A create fails cleanly and lists nothing half-made.
        before = {c["Id"] for c in api.get(f"{V}/containers/json?all=1").json()}
        r = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["true"]})
        assert r.status >= 400 and b"no space left on device" in r.body.lower(), r
        assert {c["Id"] for c in api.get(f"{V}/containers/json?all=1").json()} == before
        # An import fails cleanly too.
        r = api.post("/images/create?fromSrc=-&repo=more&tag=1", busybox_tar,
                     headers={"Content-Type": "application/x-tar"})
        assert b"no space left on device" in r.body.lower(), r
        assert api.get(f"{V}/images/more:1/json").status == 404
        # DELETE works on a full disk, so that space can be freed through the API.
        assert api.delete(f"{V}/containers/{cid}").status == 204
        assert api.delete(f"{V}/containers/{running}?force=1").status == 204
        assert cgroup_procs(running) == []
        assert api.get("/version").status == 200

        # Space again: everything works.
        os.unlink(filler)
        code, out, _ = api.run(["echo", "again"])
        assert (code, out) == (0, "again\n")
        r = api.post("/images/create?fromSrc=-&repo=more&tag=1", busybox_tar,
                     headers={"Content-Type": "application/x-tar"})
        assert r.status == 200 and b'"error"' not in r.body, r
    finally:
        started = time.monotonic()
        d.stop()
        assert time.monotonic() - started < 20, "shutdown took too long"


def test_a_container_that_logs_to_a_full_disk_does_not_hang_the_daemon(new_daemon, small_root, busybox_tar):
    d = new_daemon(root=small_root).start()
    api = d.api
    try:
        r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                     headers={"Content-Type": "application/x-tar"})
        assert r.status == 200, r
        cid = api.post(f"{V}/containers/create",
                       {"Image": "busybox", "Cmd": ["sh", "-c", "while true; do echo lots of output; done"]}).json()["Id"]
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        time.sleep(0.5)
        filler = fill(str(small_root))      # the log hits the full disk while the container writes
        time.sleep(1)
        assert api.get(f"{V}/containers/{cid}/json").json()["State"]["Running"] is True
        for _ in range(20):
            started = time.monotonic()
            assert api.get("/version").status == 200
            assert time.monotonic() - started < 1.0
            time.sleep(0.1)
        assert api.post(f"{V}/containers/{cid}/kill").status == 204
        r = api.post(f"{V}/containers/{cid}/wait", timeout=30)
        assert r.status == 200 and r.json()["StatusCode"] == 137, r
        # The log is whole up to where the disk filled: it still reads.
        logs = api.get(f"{V}/containers/{cid}/logs?stdout=1")
        assert logs.status == 200 and b"lots of output" in logs.body
        assert api.delete(f"{V}/containers/{cid}?force=1").status == 204
        assert cgroup_procs(cid) == []
        os.unlink(filler)
    finally:
        started = time.monotonic()
        d.stop()
        assert time.monotonic() - started < 20, "shutdown took too long"


# -- kill -9 of the daemon in the middle of work --------------------------------------

def host_mounts_under(root):
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if str(root) in ln]


def consistent(d):
    """After a restart: every listed image inspects, with its history; every
    layer directory belongs to an image; tmp/ is empty; nothing is mounted
    under the root; every container inspects, and none that claims to run
    lacks its process."""
    api = d.api
    images = api.get(f"{V}/images/json?all=1").json()
    used = set()
    for img in images:
        r = api.get(f"{V}/images/{img['Id']}/json")
        assert r.status == 200, r
        used |= {l.partition(":")[2] for l in r.json()["RootFS"]["Layers"]}
        assert api.get(f"{V}/images/{img['Id']}/history").status == 200
    layers_dir = os.path.join(d.root, "layers", "sha256")
    on_disk = {e for e in os.listdir(layers_dir) if len(e) == 64} if os.path.isdir(layers_dir) else set()
    assert on_disk <= used, f"layers without an image: {on_disk - used}"
    assert os.listdir(os.path.join(d.root, "tmp")) == []
    for c in api.get(f"{V}/containers/json?all=1").json():
        st = api.get(f"{V}/containers/{c['Id']}/json").json()["State"]
        if st["Running"]:
            assert st["Pid"] and os.path.exists(f"/proc/{st['Pid']}"), st
        else:
            assert cgroup_procs(c["Id"]) == [], c["Id"]
    mounts = [m for m in host_mounts_under(d.root)
              if "/containers/" not in m or not any(c["State"] == "running"
                                                    for c in api.get(f"{V}/containers/json").json())]
    assert not mounts, mounts
    return images


def send_raw(d, head, body_part=b""):
    """A request whose answer nobody waits for (the socket stays open)."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    s.sendall(head + body_part)
    return s


def restart(new_daemon, d):
    d.kill9()
    return new_daemon(root=d.root).start()


@pytest.fixture
def killable(new_daemon, busybox_tar):
    d = new_daemon().start()
    r = d.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                   headers={"Content-Type": "application/x-tar"})
    assert r.status == 200, r
    return d


def test_kill_9_during_an_import(new_daemon, killable, busybox_tar):
    d = killable
    before = {i["Id"] for i in d.api.get(f"{V}/images/json?all=1").json()}
    big = busybox_tar + bytes(8 << 20)          # the tail is never sent
    s = send_raw(d, (f"POST {V}/images/create?fromSrc=-&repo=half&tag=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: application/x-tar\r\nContent-Length: {len(big)}\r\n\r\n").encode(),
                 busybox_tar[: len(busybox_tar) // 2])
    time.sleep(0.5)
    d2 = restart(new_daemon, d)
    s.close()
    images = consistent(d2)
    assert {i["Id"] for i in images} == before
    assert d2.api.get(f"{V}/images/half:1/json").status == 404
    d2.stop()


def test_kill_9_during_a_commit(new_daemon, killable):
    d = killable
    code, _, cid = d.api.run(["dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=64"])
    assert code == 0
    s = send_raw(d, f"POST {V}/commit?container={cid}&repo=mid&tag=commit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Length: 0\r\n\r\n".encode())
    time.sleep(0.2)
    d2 = restart(new_daemon, d)
    s.close()
    consistent(d2)
    r = d2.api.get(f"{V}/images/mid:commit/json")
    if r.status == 200:     # it finished before the kill: then it is whole
        code, out, _ = d2.api.run(["sh", "-c", "test $(stat -c %s /big) -eq 67108864 && echo whole"],
                                  image="mid:commit")
        assert (code, out) == (0, "whole\n")
    d2.stop()


def test_kill_9_during_a_build(new_daemon, killable):
    import io
    import tarfile
    d = killable
    def context(dockerfile):
        ctx = io.BytesIO()
        with tarfile.open(fileobj=ctx, mode="w") as tf:
            ti = tarfile.TarInfo("Dockerfile")
            ti.size = len(dockerfile)
            tf.addfile(ti, io.BytesIO(dockerfile))
        return ctx.getvalue()

    body = context(b"FROM busybox\nRUN echo one > /one\nRUN sleep 5\nRUN echo never\n")
    s = send_raw(d, (f"POST {V}/build?t=built:mid HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-tar\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n").encode(), body)
    time.sleep(2)
    d2 = restart(new_daemon, d)
    s.close()
    consistent(d2)
    assert d2.api.get(f"{V}/images/built:mid/json").status == 404
    # The daemon builds again after it.
    r = d2.api.post(f"{V}/build?t=built:after", context(b"FROM busybox\nRUN echo one > /one\n"),
                    headers={"Content-Type": "application/x-tar"}, timeout=120)
    assert r.status == 200 and b"errorDetail" not in r.body, r
    d2.stop()


def test_kill_9_during_a_start(new_daemon, killable):
    d = killable
    cids = [d.api.create(["sleep", "60"]) for _ in range(5)]
    socks = [send_raw(d, f"POST {V}/containers/{cid}/start HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Content-Length: 0\r\n\r\n".encode()) for cid in cids]
    time.sleep(0.05)
    d2 = restart(new_daemon, d)
    for s in socks:
        s.close()
    consistent(d2)
    for cid in cids:
        st = d2.api.get(f"{V}/containers/{cid}/json").json()["State"]
        assert st["Running"] is False and st["Pid"] == 0, st
        assert cgroup_procs(cid) == []
        assert d2.api.post(f"{V}/containers/{cid}/start").status == 204     # and it starts again
        assert d2.api.delete(f"{V}/containers/{cid}?force=1").status == 204
    d2.stop()


def test_kill_9_during_a_pull(new_daemon, tmp_path, busybox_tar):
    from tests.pydtest.registry import Registry
    reg = Registry(tmp_path / "registry").start()
    try:
        big = _tar_with(busybox_tar, "big", os.urandom(24 << 20))
        reg.put_image("mid/pull", "v1", [big])
        d = new_daemon().start()
        s = send_raw(d, f"POST {V}/images/create?fromImage={reg.addr}/mid/pull&tag=v1 HTTP/1.1\r\n"
                        "Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
        time.sleep(0.3)
        d2 = restart(new_daemon, d)
        s.close()
        images = consistent(d2)
        if d2.api.get(f"{V}/images/{reg.addr}/mid/pull:v1/json").status != 200:
            assert images == []
        r = d2.api.post(f"{V}/images/create?fromImage={reg.addr}/mid/pull&tag=v1", timeout=300)
        assert r.status == 200 and b"errorDetail" not in r.body, r.body[-500:]
        assert d2.api.get(f"{V}/images/{reg.addr}/mid/pull:v1/json").status == 200
        d2.stop()
    finally:
        reg.stop()


def _tar_with(tar_bytes, name, data):
    import io
    import tarfile
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode = len(data), 0o644
        dst.addfile(ti, io.BytesIO(data))
    return out.getvalue()


# -- clients that leave in the middle, 200 times per endpoint ---------------------------

def _counts(pid):
    from tests.pydtest import nfds, proc_status
    return nfds(pid), proc_status(pid, "Threads")


def _settle(pid, base, slack, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        now = _counts(pid)
        if (now[0] <= base[0] + slack and now[1] <= base[1] + slack) or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


def _leave(d, head, body=b"", read=1):
    """Send a request, read `read` bytes of the answer (the head begins), drop the connection."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    try:
        s.sendall(head + body)
        if read:
            s.recv(read)
    finally:
        s.close()


def test_200_disconnects_per_streaming_endpoint_leave_nothing(daemon, api, busybox):
    import io
    import tarfile
    pid = daemon.server_pid()
    cid = api.create(["sh", "-c", "while true; do echo tick; sleep 0.2; done"])
    api.start(cid)
    ctx = io.BytesIO()
    with tarfile.open(fileobj=ctx, mode="w") as tf:
        data = b"FROM busybox\nRUN sleep 30\n"
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    context = ctx.getvalue()
    h = "Host: 127.0.0.1\r\n"
    endpoints = {
        "attach": (f"POST /containers/{cid}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n{h}"
                   "Content-Length: 0\r\n\r\n").encode(),
        "logs": f"GET {V}/containers/{cid}/logs?follow=1&stdout=1 HTTP/1.1\r\n{h}\r\n".encode(),
        "events": f"GET {V}/events HTTP/1.1\r\n{h}\r\n".encode(),
        "export": f"GET {V}/containers/{cid}/export HTTP/1.1\r\n{h}\r\n".encode(),
        "wait": f"POST {V}/containers/{cid}/wait HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n".encode(),
        "wait-v1.3": f"POST /containers/{cid}/wait HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n".encode(),
        # The context half sent: the build never starts.
        "build-upload": (f"POST {V}/build HTTP/1.1\r\n{h}Content-Type: application/x-tar\r\n"
                         f"Content-Length: {len(context)}\r\n\r\n").encode(),
    }
    try:
        base = _settle(pid, _counts(pid), 0, timeout=2)
        for name, head in endpoints.items():
            for _ in range(200):
                if name == "build-upload":
                    _leave(daemon, head, context[: len(context) // 2], read=0)
                elif name.startswith("wait"):
                    _leave(daemon, head, read=0)
                else:
                    _leave(daemon, head)
            now = _settle(pid, base, slack=6)
            assert now[0] <= base[0] + 6 and now[1] <= base[1] + 6, (name, base, now)
        # Builds left while their RUN step runs: the step's container goes too.
        for _ in range(10):
            _leave(daemon, (f"POST {V}/build?rm=1&forcerm=1 HTTP/1.1\r\n{h}Content-Type: application/x-tar\r\n"
                            f"Content-Length: {len(context)}\r\n\r\n").encode(), context, read=1)
        now = _settle(pid, base, slack=6, timeout=30)
        assert now[0] <= base[0] + 6 and now[1] <= base[1] + 6, ("build", base, now)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = [c for c in api.get(f"{V}/containers/json?all=1").json() if c["Id"] != cid
                    and c.get("Command", "").endswith("-c sleep 30")]
            if not left:
                break
            time.sleep(0.5)
        assert not left, left
        assert api.get("/version").status == 200
    finally:
        api.post(f"/containers/{cid}/kill")
        api.post(f"/containers/{cid}/wait")
        api.delete(f"/containers/{cid}")
