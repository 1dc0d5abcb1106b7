"""Hosts unlike this one, made here (issue 15): a data root where overlayfs
cannot work, a host without the memory controller, and a read-only root
filesystem with only the data root writable. Each is detected at start,
shown in /info, and containers still run. (cgroup v2 hosts:
test_cgroup2.py and test_vm.py.)

The read-only root and the missing controller live in a mount namespace
of the daemon's own (unshare -m), so the host is never changed. Network:
only 127.0.0.1.
"""

import os
import subprocess

import pytest

from tests.pydtest import Daemon, daemon_cmd

V = "/v1.41"
MiB = 1024 * 1024


def in_namespace(script):
    """The daemon command run by `script` (sh) in a mount namespace of its own;
    "$@" in the script is the daemon's argv."""
    return ["unshare", "-m", "sh", "-c", f'set -e; {script}; exec "$@"', "pyd"] + daemon_cmd()


def import_busybox(d, busybox_tar):
    r = d.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                   headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r


def run(d, cmd, **config):
    r = d.api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": cmd, **config})
    assert r.status == 201, r
    cid, warnings = r.json()["Id"], r.json()["Warnings"]
    assert d.api.post(f"{V}/containers/{cid}/start").status == 204
    code = d.api.wait(cid)
    return cid, code, d.api.logs(cid).decode(errors="replace"), warnings


@pytest.fixture
def stopped():
    made = []
    yield made.append
    for d in made:
        rc = d.stop()
        assert rc == 0, f"daemon exited with {rc}:\n{d.log()}"


def test_a_data_root_on_overlayfs_falls_back_to_copies(tmp_path, busybox_tar, stopped):
    """overlayfs refuses an upper directory on overlayfs (pyd inside a
    container, say): auto picks vfs, says so, and containers work."""
    base = tmp_path / "ovl"
    for sub in ("lower", "upper", "work", "merged"):
        (base / sub).mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work", str(base / "merged")],
                   check=True)
    try:
        d = Daemon(base / "merged" / "root")
        stopped(d)
        d.start()
        info = d.api.get(f"{V}/info").json()
        assert info["Driver"] == "vfs" and ["Backing Filesystem", "overlay"] in info["DriverStatus"], info
        assert "overlayfs is not usable" in d.log() and "vfs" in d.log()
        import_busybox(d, busybox_tar)
        cid, code, out, _ = run(d, ["sh", "-c", "echo hi > /made && cat /made"])
        assert code == 0 and out == "hi\n", out
        changes = d.api.get(f"{V}/containers/{cid}/changes").json()
        assert {"Path": "/made", "Kind": 1} in changes, changes
        d.stop()
    finally:
        subprocess.run(["umount", "-l", str(base / "merged")], check=False)


def test_no_memory_controller_discards_memory_limits(tmp_path, busybox_tar, stopped):
    # A tmpfs over the memory hierarchy: the daemon sees a v1 host without it.
    d = Daemon(tmp_path / "root", cmd=in_namespace("mount -t tmpfs none /sys/fs/cgroup/memory"))
    stopped(d)
    d.start()
    info = d.api.get(f"{V}/info").json()
    assert info["CgroupVersion"] == "1" and info["MemoryLimit"] is False and info["PidsLimit"] is True, info
    assert "WARNING: No memory limit support" in info["Warnings"], info["Warnings"]
    import_busybox(d, busybox_tar)
    cid, code, out, warnings = run(d, ["echo", "ran"], HostConfig={"Memory": 64 * MiB, "PidsLimit": 50})
    assert code == 0 and out == "ran\n", out
    assert warnings == ["Your kernel does not support memory limit capabilities or the cgroup is not mounted. "
                        "Limitation discarded."], warnings
    host = d.api.get(f"{V}/containers/{cid}/json").json()["HostConfig"]
    assert host["Memory"] == 0 and host["PidsLimit"] == 50, host
    stats = d.api.get(f"{V}/containers/{cid}/stats?stream=false").json()
    assert stats["memory_stats"] == {}, stats["memory_stats"]


def test_a_read_only_root_with_a_writable_data_root(tmp_path, busybox_tar, stopped):
    root = tmp_path / "root"
    root.mkdir()
    # The root mount made read-only in this namespace only; the data root bound
    # over itself and kept writable; the frozen binary unpacks into it (TMPDIR
    # inside the data root's own tmp/, which the daemon empties at start but
    # for what it runs from).
    script = (f"mount -o remount,bind,ro / && mount --bind {root} {root} && mount -o remount,bind,rw {root} "
              f"&& mkdir -p {root}/tmp && export TMPDIR={root}/tmp && ! touch /pyd-ro-probe 2>/dev/null")
    d = Daemon(root, cmd=in_namespace(script))
    stopped(d)
    d.start()
    assert not os.path.exists("/pyd-ro-probe")
    info = d.api.get(f"{V}/info").json()
    assert ["Root filesystem", "read-only"] in info["SystemStatus"], info.get("SystemStatus")
    import_busybox(d, busybox_tar)
    cid, code, out, _ = run(d, ["sh", "-c", "echo data > /f && cat /f"])
    assert code == 0 and out == "data\n", out
    r = d.api.post(f"{V}/commit?container={cid}&repo=ro-commit")
    assert r.status == 201, r
    _, code, out, _ = run(d, ["cat", "/f"], Image="ro-commit")
    assert code == 0 and out == "data\n", out
