"""pyd on a cgroup v2 host, for real: the daemon runs in a mount namespace of
its own where /sys/fs/cgroup is a cgroup2 mount, so it sees a unified-only
host. This machine's kernel binds memory, pids and cpu to v1 hierarchies,
so the unified hierarchy offers none of them here: what is checked is what
v2 carries without controllers (the eBPF device filter, the freezer,
cgroup.procs for top and kill, cpu.stat) and how a host without the
memory, pids and cpu controllers is handled (Docker's warnings at create
and update, /info). The limits themselves on v2 run in a VM with a
v2-only kernel (tests/integration/test_vm.py).

Every cgroup file is read through /proc/<daemon>/root, in the daemon's own
mount namespace. Network: only 127.0.0.1.
"""

import os
import time

import pytest

from tests.pydtest import Daemon, daemon_cmd, kill_quiet, wait_for

V = "/v1.41"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def v2(tmp_path_factory, busybox_tar):
    # unshare(1) makes the new namespace's mounts private: the cgroup2 mount
    # over /sys/fs/cgroup is seen by the daemon (and its containers) only.
    wrap = ["unshare", "-m", "sh", "-c", 'mount -t cgroup2 none /sys/fs/cgroup && exec "$@"', "pyd"]
    d = Daemon(tmp_path_factory.mktemp("pyd-cgroup2"), ["--allow-privileged"], cmd=wrap + daemon_cmd())
    d.start()
    r = d.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                   headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r
    yield d
    rc = d.stop()
    assert rc == 0, f"daemon exited with {rc}:\n{d.log()}"


def cgdir(d, cid):
    return f"/proc/{d.proc.pid}/root/sys/fs/cgroup/pyd/{cid}"


def create(d, cmd, **host):
    r = d.api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": cmd, "HostConfig": host})
    assert r.status == 201, r
    return r.json()["Id"], r.json()["Warnings"]


def run(d, cmd, **host):
    cid, _ = create(d, cmd, **host)
    try:
        assert d.api.post(f"{V}/containers/{cid}/start").status == 204
        code = d.api.wait(cid)
        return code, d.api.logs(cid).decode(errors="replace")
    finally:
        d.api.delete(f"{V}/containers/{cid}?force=1")


def test_info_reports_v2_and_what_it_lacks(v2):
    info = v2.api.get(f"{V}/info").json()
    assert info["CgroupVersion"] == "2", info["CgroupVersion"]
    assert info["MemoryLimit"] is False and info["PidsLimit"] is False and info["CpuCfsQuota"] is False
    for w in ("WARNING: No memory limit support", "WARNING: No pids limit support",
              "WARNING: No cpu cfs quota support"):
        assert w in info["Warnings"], info["Warnings"]
    assert not any("freezer" in w or "device" in w for w in info["Warnings"]), info["Warnings"]


def test_limits_the_host_cannot_carry_are_discarded_with_warnings(v2):
    cid, warnings = create(v2, ["sleep", "30"], Memory=64 * MiB, PidsLimit=50, CpuShares=512)
    try:
        assert any("memory limit" in w and "discarded" in w for w in warnings), warnings
        assert any("PIDs limit discarded" in w for w in warnings), warnings
        assert any("CPU shares" in w for w in warnings), warnings
        host = v2.api.get(f"{V}/containers/{cid}/json").json()["HostConfig"]
        assert host["Memory"] == 0 and host["CpuShares"] == 0 and host["PidsLimit"] is None, host
        assert v2.api.post(f"{V}/containers/{cid}/start").status == 204
        r = v2.api.post(f"{V}/containers/{cid}/update", {"PidsLimit": 20, "Memory": 32 * MiB})
        assert r.status == 200, r
        assert any("PIDs limit discarded" in w for w in r.json()["Warnings"]), r
        assert v2.api.get(f"{V}/containers/{cid}/json").json()["HostConfig"]["Memory"] == 0
        assert not os.path.exists(cgdir(v2, cid) + "/pids.max")
    finally:
        v2.api.delete(f"{V}/containers/{cid}?force=1")


def test_the_device_filter_refuses_what_is_not_allowed(v2):
    # mknod is allowed (CAP_MKNOD, rule "c *:* m"); opening /dev/mem's node is not.
    code, out = run(v2, ["sh", "-c", "mknod /tmp/mem c 1 1 && echo MADE; "
                                     "dd if=/tmp/mem of=/dev/null count=0 2>&1; "
                                     "head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo NULL-OK"])
    assert "MADE" in out and "Operation not permitted" in out and "NULL-OK" in out, out
    assert out.split().count("4") >= 1, out
    # A privileged container has no filter.
    code, out = run(v2, ["sh", "-c", "mknod /tmp/mem c 1 1 && dd if=/tmp/mem of=/dev/null count=0 2>&1; echo END"],
                    Privileged=True)
    assert "Operation not permitted" not in out and "END" in out, out


def test_pause_top_stats_and_kill_on_v2(v2):
    cid, _ = create(v2, ["sh", "-c", "sleep 300 & i=0; while true; do i=$((i+1)); done"])
    try:
        assert v2.api.post(f"{V}/containers/{cid}/start").status == 204
        procs = wait_for(lambda: open(cgdir(v2, cid) + "/cgroup.procs").read().split() or None,
                         what="the container's processes in its v2 cgroup")
        top = v2.api.get(f"{V}/containers/{cid}/top").json()["Processes"]
        assert sorted(row[1] for row in top) == sorted(procs) and len(procs) == 2, (top, procs)
        assert v2.api.post(f"{V}/containers/{cid}/pause").status == 204
        assert open(cgdir(v2, cid) + "/cgroup.freeze").read().strip() == "1"
        wait_for(lambda: "frozen 1" in open(cgdir(v2, cid) + "/cgroup.events").read(), what="frozen")
        assert v2.api.get(f"{V}/containers/{cid}/json").json()["State"]["Paused"] is True
        assert v2.api.post(f"{V}/containers/{cid}/unpause").status == 204
        assert open(cgdir(v2, cid) + "/cgroup.freeze").read().strip() == "0"
        time.sleep(0.3)  # the busy loop runs again: cpu.stat grows
        s = v2.api.get(f"{V}/containers/{cid}/stats?stream=false").json()
        assert s["cpu_stats"]["cpu_usage"]["total_usage"] > 0, s["cpu_stats"]
        assert s["memory_stats"] == {} or "usage" not in s["memory_stats"], s["memory_stats"]
        assert v2.api.post(f"{V}/containers/{cid}/kill").status == 204
        assert v2.api.wait(cid) == 137
        assert all(not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z"
                   for p in procs)
    finally:
        kill_quiet(v2.api, cid)
        v2.api.delete(f"{V}/containers/{cid}?force=1")
    assert not os.path.exists(cgdir(v2, cid)), "the v2 cgroup outlived its container"
