"""Faults (issue 14): a full disk, a killed daemon, a killed container.
Each ends with the store consistent and nothing leaked."""

import json
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
