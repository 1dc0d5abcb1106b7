"""The frozen pyd on a cgroup-v2-only host: Debian's kernel in a VM
(tests/pydtest/vm.py), booted with cgroup_no_v1=all, where the memory,
pids and cpu controllers are v2's. This machine's own kernel binds them to
v1, so only a VM shows the v2 limits for real (test_cgroup2.py covers what
the unified hierarchy carries here).

The cgroup files are read by a second container that binds the VM's
/sys/fs/cgroup read-only. Marked `frozen`: it needs the one-file binary, and
build.sh runs it once, in the frozen pass. Network: the VM's qemu user
network is restricted (no way out); the host talks to 127.0.0.1 only.
"""

import os
import shutil
import time

import pytest

from tests.pydtest import daemon_cmd, require_mark
from tests.pydtest.vm import VM

pytestmark = [pytest.mark.frozen,
              require_mark(shutil.which("qemu-system-x86_64"), "qemu-system-x86 (the cgroup v2 VM)")]

V = "/v1.41"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def vm(tmp_path_factory, busybox_tar):
    cmd = daemon_cmd()
    assert len(cmd) == 1 and os.access(cmd[0], os.X_OK), f"PYD_CMD is not the one-file binary: {cmd}"
    v = VM(tmp_path_factory.mktemp("vm"), cmd[0], ["--allow-privileged"])
    v.start()
    try:
        r = v.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                       headers={"Content-Type": "application/x-tar"}, timeout=120)
        assert r.status == 200 and b'"error"' not in r.body, r
        yield v
    finally:
        v.stop()


def create(vm, cmd, **host):
    r = vm.api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": cmd, "HostConfig": host}, timeout=60)
    assert r.status == 201, r
    return r.json()["Id"]


def run(vm, cmd, **host):
    """create, start, wait, logs, remove: (exit code, output)."""
    cid = create(vm, cmd, **host)
    try:
        assert vm.api.post(f"{V}/containers/{cid}/start", timeout=60).status == 204
        code = vm.api.wait(cid, timeout=120)
        return code, vm.api.logs(cid).decode(errors="replace")
    finally:
        vm.api.delete(f"{V}/containers/{cid}?force=1", timeout=60)


def cgroup_files(vm, cid, *names):
    """{name: content} of the container's v2 cgroup files, read from a second container."""
    script = "; ".join(f"echo {n}=$(cat /cg/pyd/{cid}/{n})" for n in names)
    code, out = run(vm, ["sh", "-c", script], Binds=["/sys/fs/cgroup:/cg:ro"])
    assert code == 0, out
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture
def limited(vm):
    cid = create(vm, ["sleep", "600"], Memory=64 * MiB, PidsLimit=40, NanoCpus=500_000_000, CpuShares=512)
    assert vm.api.post(f"{V}/containers/{cid}/start", timeout=60).status == 204
    yield cid
    vm.api.delete(f"{V}/containers/{cid}?force=1", timeout=60)


def test_info_reports_v2_with_its_controllers(vm):
    info = vm.api.get(f"{V}/info").json()
    assert info["CgroupVersion"] == "2" and info["KernelVersion"].startswith("6.1."), info
    assert info["MemoryLimit"] and info["PidsLimit"] and info["CpuCfsQuota"] and info["CPUShares"], info
    assert not any(w for w in info["Warnings"] if "memory limit" in w or "pids" in w or "cpu" in w), info["Warnings"]


def test_limits_are_written_to_the_v2_files_and_updated(vm, limited):
    files = cgroup_files(vm, limited, "memory.max", "pids.max", "cpu.max", "cpu.weight")
    assert files == {"memory.max": str(64 * MiB), "pids.max": "40", "cpu.max": "50000 100000",
                     "cpu.weight": "20"}, files   # runc's shares-to-weight: 512 -> 20
    r = vm.api.post(f"{V}/containers/{limited}/update", {"Memory": 48 * MiB, "PidsLimit": 25, "CpuShares": 1024},
                    timeout=60)
    assert r.status == 200 and not r.json()["Warnings"], r
    files = cgroup_files(vm, limited, "memory.max", "pids.max", "cpu.weight")
    assert files == {"memory.max": str(48 * MiB), "pids.max": "25", "cpu.weight": "39"}, files
    s = vm.api.get(f"{V}/containers/{limited}/stats?stream=false", timeout=60).json()
    assert s["memory_stats"]["limit"] == 48 * MiB and s["memory_stats"]["usage"] > 0, s["memory_stats"]
    assert s["pids_stats"] == {"current": 1, "limit": 25}, s["pids_stats"]
    assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0, s["cpu_stats"]


def test_pause_freezes_through_cgroup_freeze(vm, limited):
    assert vm.api.post(f"{V}/containers/{limited}/pause", timeout=60).status == 204
    try:
        assert vm.api.get(f"{V}/containers/{limited}/json").json()["State"]["Paused"] is True
        files = cgroup_files(vm, limited, "cgroup.freeze", "cgroup.events")
        assert files["cgroup.freeze"] == "1" and "frozen 1" in files["cgroup.events"], files
    finally:
        assert vm.api.post(f"{V}/containers/{limited}/unpause", timeout=60).status == 204
    assert cgroup_files(vm, limited, "cgroup.freeze") == {"cgroup.freeze": "0"}


def test_memory_limit_ends_in_the_oom_killer(vm):
    cid = create(vm, ["sh", "-c", "x=$(head -c 48000000 /dev/zero | tr '\\0' a); echo SURVIVED"],
                 Memory=16 * MiB, MemorySwap=16 * MiB)
    try:
        assert vm.api.post(f"{V}/containers/{cid}/start", timeout=60).status == 204
        assert vm.api.wait(cid, timeout=180) == 137
        state = vm.api.get(f"{V}/containers/{cid}/json").json()["State"]
        assert state["OOMKilled"] is True, state
        assert "SURVIVED" not in vm.api.logs(cid).decode(errors="replace")
    finally:
        vm.api.delete(f"{V}/containers/{cid}?force=1", timeout=60)


def test_a_fork_bomb_stays_under_pids_max(vm):
    cid = create(vm, ["sh", "-c", "b() { b | b & }; b; sleep 60"], PidsLimit=32)
    try:
        assert vm.api.post(f"{V}/containers/{cid}/start", timeout=60).status == 204
        time.sleep(5)
        assert vm.api.get("/version", timeout=30).status == 200
        pids = vm.api.get(f"{V}/containers/{cid}/stats?stream=false", timeout=60).json()["pids_stats"]
        assert pids["limit"] == 32 and 1 <= pids["current"] <= 32, pids
    finally:
        vm.api.post(f"/containers/{cid}/kill", timeout=60)
        vm.api.delete(f"{V}/containers/{cid}?force=1", timeout=60)


def test_the_ebpf_device_filter(vm):
    code, out = run(vm, ["sh", "-c", "mknod /tmp/mem c 1 1 && echo MADE; dd if=/tmp/mem of=/dev/null count=0 2>&1; "
                                     "head -c 3 /dev/urandom | wc -c"])
    assert "MADE" in out and "Operation not permitted" in out and out.split()[-1] == "3", out
    code, out = run(vm, ["sh", "-c", "mknod /tmp/mem c 1 1 && dd if=/tmp/mem of=/dev/null count=0 2>&1; echo END"],
                    Privileged=True)
    assert "Operation not permitted" not in out and "END" in out, out


def test_the_cgroup_goes_with_its_container(vm):
    cid = create(vm, ["true"])
    assert vm.api.post(f"{V}/containers/{cid}/start", timeout=60).status == 204
    assert vm.api.wait(cid, timeout=60) == 0
    assert vm.api.delete(f"{V}/containers/{cid}", timeout=60).status == 204
    code, out = run(vm, ["ls", "/cg/pyd"], Binds=["/sys/fs/cgroup:/cg:ro"])
    assert code == 0 and cid not in out, out
