"""The cgroup-backed container operations of Engine API 1.41 against the real
daemon: pause/unpause (the v1 freezer), stop and kill of a paused container
(dockerd signals, then thaws), stats (one-shot, primed, streamed), update
(memory, cpu, pids of a running container, checked in the cgroup files),
top with ps_args, and their 404/409/400 paths.

This machine runs cgroup v1; every check of a cgroup file reads
/sys/fs/cgroup/<controller>/pyd/<id>. Network: only 127.0.0.1. Every loop
is bounded in count and time.
"""

import json
import os
import socket
import time

import pytest

from tests.pydtest import inspect, kill_quiet, poll, require, require_mark, wait_for

MiB = 1024 * 1024
V = "/v1.41"  # the endpoints are the modern surface's (v1.3 had none of them)
ZERO_TIME = "0001-01-01T00:00:00Z"
COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"
BUSY = "while true; do :; done"

pytestmark = require_mark(os.path.exists("/sys/fs/cgroup/freezer"), "cgroup v1 files (these tests read them)")


# -- helpers -------------------------------------------------------------------

@pytest.fixture
def started(api, busybox):
    """start(script, **config) -> id of a running `sh -c script`; all killed and removed at the end."""
    made = []

    def start(script, body=None, **config):
        cid = api.create(["sh", "-c", script], **config)
        made.append(cid)
        api.start(cid, body)
        return cid

    yield start
    for cid in made:
        r = api.get(f"/containers/{cid}/json")
        if r.status == 200:
            if r.json()["State"]["Running"]:
                api.post(f"{V}/containers/{cid}/unpause")
            kill_quiet(api, cid)
            api.delete(f"/containers/{cid}")


def cg(controller, cid, name):
    with open(f"/sys/fs/cgroup/{controller}/pyd/{cid}/{name}") as f:
        return f.read().strip()


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2:].split()[0]


def lines_of(api, cid):
    return api.logs(cid).decode().split()


def stats(api, cid, query="stream=0&one-shot=1"):
    r = api.get(f"{V}/containers/{cid}/stats?{query}")
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/json"
    return r.json()


def stream_lines(daemon, path, max_lines, timeout):
    """Read a chunked JSON-lines reply; stop after max_lines objects, at its end or at the deadline.
    Returns (objects, ended): ended is True if the server finished the reply."""
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        f = s.makefile("rb")
        status = f.readline()
        assert b" 200 " in status, status
        while f.readline() not in (b"\r\n", b""):
            pass
        out, deadline = [], time.monotonic() + timeout
        while len(out) < max_lines and time.monotonic() < deadline:
            size = f.readline()
            if not size:
                return out, False
            n = int(size.strip(), 16)
            if n == 0:
                return out, True
            out.append(json.loads(f.read(n)))
            f.readline()
        return out, False
    finally:
        s.close()


# -- pause and unpause -----------------------------------------------------------

def test_pause_freezes_and_unpause_resumes(api, started):
    cid = started(COUNTER)
    wait_for(lambda: len(lines_of(api, cid)) >= 3, what="the counter to print")
    r = api.post(f"{V}/containers/{cid}/pause")
    assert r.status == 204, r
    assert cg("freezer", cid, "freezer.state") == "FROZEN"
    pids = [int(p) for p in cg("freezer", cid, "cgroup.procs").split()]
    assert pids and all(proc_state(p) == "D" for p in pids), [proc_state(p) for p in pids]
    st = inspect(api, cid)["State"]
    assert st["Running"] is True  # paused is still running, as in Docker
    row = [c for c in api.get("/containers/json").json() if cid.startswith(c["Id"])]
    assert row and row[0]["Status"].endswith("(Paused)"), row
    before = lines_of(api, cid)
    time.sleep(0.6)  # six counter periods
    assert lines_of(api, cid) == before, "a paused container went on printing"

    r = api.post(f"{V}/containers/{cid}/unpause")
    assert r.status == 204, r
    assert cg("freezer", cid, "freezer.state") == "THAWED"
    wait_for(lambda: len(lines_of(api, cid)) > len(before) + 2, what="the counter to resume")
    counts = [int(x) for x in lines_of(api, cid)]
    assert counts == list(range(len(counts))), "the counter lost or repeated a step"


def test_pause_and_unpause_conflicts(api, busybox, started):
    created = api.create(["true"])
    try:
        r = api.post(f"{V}/containers/{created}/pause")
        assert r.status == 409 and b"is not running" in r.body, r
        r = api.post(f"{V}/containers/{created}/unpause")
        assert r.status == 409 and b"is not paused" in r.body, r
    finally:
        api.delete(f"/containers/{created}")
    cid = started("sleep 60")
    r = api.post(f"{V}/containers/{cid}/unpause")
    assert r.status == 409 and f"Container {cid} is not paused".encode() in r.body, r
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    r = api.post(f"{V}/containers/{cid}/pause")
    assert r.status == 409 and f"Container {cid} is already paused".encode() in r.body, r
    r = api.post(f"/containers/{cid}/start")
    assert r.status == 409, r
    r = api.delete(f"/containers/{cid}")
    assert r.status == 409 and b"paused" in r.body, r
    assert api.post(f"{V}/containers/{cid}/unpause").status == 204
    r = api.post(f"{V}/containers/{cid}/unpause")
    assert r.status == 409, r


@pytest.mark.parametrize("path", ["pause", "unpause", "stats?stream=0", "update", "top"])
def test_unknown_container_is_404(api, path):
    method = api.get if path.startswith(("stats", "top")) else api.post
    r = method(f"{V}/containers/nosuchcontainer/{path}", **({} if method is api.get else {"body": {}}))
    assert r.status == 404, r
    assert "No such container" in r.json()["message"]


@pytest.mark.parametrize("path", ["pause", "unpause", "stats?stream=0", "update"])
def test_not_on_the_legacy_surface(api, started, path):
    cid = started("sleep 60")
    method = api.get if path.startswith("stats") else api.post
    for prefix in ("", "/v1.3"):
        r = method(f"{prefix}/containers/{cid}/{path}", **({} if method is api.get else {"body": {}}))
        assert r.status == 404, (prefix, r)


def test_stop_paused_container_delivers_the_signal(api, started):
    cid = started('trap "exit 3" TERM; while true; do sleep 0.1; done')
    time.sleep(0.3)  # the trap is set
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    t0 = time.monotonic()
    r = api.post(f"/containers/{cid}/stop?t=20")
    assert r.status == 204, r
    assert time.monotonic() - t0 < 10, "stop waited for the SIGKILL: SIGTERM was not delivered"
    assert api.wait(cid) == 3
    assert not os.path.exists(f"/sys/fs/cgroup/freezer/pyd/{cid}")


def test_kill_paused_container(api, started):
    cid = started("sleep 60")
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    r = api.post(f"/containers/{cid}/kill")
    assert r.status == 204, r
    assert api.wait(cid, timeout=20) == 137
    st = inspect(api, cid)["State"]
    assert st["Running"] is False and st["ExitCode"] == 137


def test_other_signal_waits_for_unpause(api, started):
    """As in dockerd, only the stop signal and SIGKILL thaw a paused container;
    another signal stays pending until unpause."""
    cid = started('trap "echo got-usr1" USR1; while true; do sleep 0.1; done')
    time.sleep(0.3)
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    assert api.post(f"/containers/{cid}/kill?signal=USR1").status == 204
    time.sleep(0.3)
    assert cg("freezer", cid, "freezer.state") == "FROZEN"
    assert b"got-usr1" not in api.logs(cid)
    assert api.post(f"{V}/containers/{cid}/unpause").status == 204
    wait_for(lambda: b"got-usr1" in api.logs(cid), what="the USR1 trap after unpause")


def test_force_delete_of_paused_container(api, started):
    cid = started("sleep 60")
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    r = api.delete(f"/containers/{cid}?force=1")
    assert r.status == 204, r
    assert api.get(f"/containers/{cid}/json").status == 404
    assert not os.path.exists(f"/sys/fs/cgroup/freezer/pyd/{cid}")


def test_exec_in_a_paused_container_is_refused(api, started):
    """dockerd's rule; an exec would freeze midway through its setup otherwise."""
    cid = started("sleep 60")
    r = api.post(f"{V}/containers/{cid}/exec", {"Cmd": ["true"]})
    assert r.status == 201, r
    exec_id = r.json()["Id"]
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    r = api.post(f"{V}/containers/{cid}/exec", {"Cmd": ["true"]}, timeout=10)
    assert r.status == 409 and "is paused, unpause the container before exec" in r.json()["message"], r
    r = api.post(f"{V}/exec/{exec_id}/start", {"Detach": True}, timeout=10)
    assert r.status == 409 and "is paused" in r.json()["message"], r
    assert api.post(f"{V}/containers/{cid}/unpause", timeout=10).status == 204
    r = api.post(f"{V}/exec/{exec_id}/start", {"Detach": True}, timeout=10)
    assert r.status in (200, 204), r
    wait_for(lambda: api.get(f"{V}/exec/{exec_id}/json").json()["ExitCode"] == 0, what="the exec to run")


def test_no_health_probes_while_paused(api, busybox):
    """As dockerd: a paused container is not probed, so it does not turn unhealthy."""
    ms = 1_000_000
    r = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["sleep", "60"], "Healthcheck": {
        "Test": ["CMD", "true"], "Interval": 100 * ms, "Timeout": 2000 * ms, "Retries": 1}})
    assert r.status == 201, r
    cid = r.json()["Id"]

    def health():
        return api.get(f"{V}/containers/{cid}/json").json()["State"]["Health"]

    try:
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        wait_for(lambda: health()["Status"] == "healthy", what="healthy")
        assert api.post(f"{V}/containers/{cid}/pause").status == 204
        time.sleep(0.3)  # a probe that was under way has ended
        log = health()["Log"]
        time.sleep(0.8)  # eight intervals
        h = health()
        assert h["Status"] == "healthy" and h["FailingStreak"] == 0 and h["Log"] == log, h
        assert api.post(f"{V}/containers/{cid}/unpause").status == 204
        wait_for(lambda: health()["Log"][-1]["Start"] > log[-1]["Start"], what="a probe after unpause")
    finally:
        api.delete(f"{V}/containers/{cid}?force=1")


# -- stats -----------------------------------------------------------------------

def test_stats_one_shot_fields_and_types(api, started):
    cid = started("sleep 60", Memory=64 * MiB)
    s = stats(api, cid)
    assert s["id"] == cid
    assert s["read"] != ZERO_TIME and s["preread"] == ZERO_TIME
    assert s["num_procs"] == 0 and s["storage_stats"] == {}
    cpu = s["cpu_stats"]
    usage = cpu["cpu_usage"]
    for k in ("total_usage", "usage_in_kernelmode", "usage_in_usermode"):
        assert isinstance(usage[k], int) and usage[k] >= 0, (k, usage)
    assert usage["total_usage"] > 0
    assert isinstance(usage["percpu_usage"], list) and len(usage["percpu_usage"]) == os.cpu_count()
    assert sum(usage["percpu_usage"]) == pytest.approx(usage["total_usage"], rel=0.05)
    assert cpu["system_cpu_usage"] > usage["total_usage"]
    assert cpu["online_cpus"] == len(os.sched_getaffinity(0))
    assert set(cpu["throttling_data"]) == {"periods", "throttled_periods", "throttled_time"}
    assert s["precpu_stats"]["cpu_usage"]["total_usage"] == 0
    mem = s["memory_stats"]
    assert 0 < mem["usage"] <= mem["max_usage"]
    assert mem["limit"] == 64 * MiB
    assert isinstance(mem["stats"], dict) and "rss" in mem["stats"] and "cache" in mem["stats"]
    assert s["pids_stats"]["current"] >= 1
    blk = s["blkio_stats"]
    assert isinstance(blk["io_service_bytes_recursive"], list)
    for e in blk["io_service_bytes_recursive"]:
        assert set(e) == {"major", "minor", "op", "value"}


def test_stats_cpu_moves_under_load(api, started):
    cid = started(BUSY)
    a = stats(api, cid)["cpu_stats"]["cpu_usage"]["total_usage"]
    time.sleep(0.5)
    b = stats(api, cid)["cpu_stats"]["cpu_usage"]["total_usage"]
    assert b > a + 50_000_000, (a, b)  # a busy loop: far more than 50 ms of 500 ms


def test_stats_without_one_shot_is_primed(api, started):
    cid = started(BUSY)
    s = stats(api, cid, "stream=0")
    assert s["preread"] != ZERO_TIME and s["preread"] < s["read"]
    pre, now = s["precpu_stats"], s["cpu_stats"]
    assert 0 < pre["cpu_usage"]["total_usage"] < now["cpu_usage"]["total_usage"]
    assert 0 < pre["system_cpu_usage"] < now["system_cpu_usage"]


def test_stats_of_a_stopped_container_are_empty(api, busybox):
    code, _, cid = api.run(["true"])
    try:
        s = stats(api, cid, "stream=0")
        assert s["id"] == cid and s["read"] == ZERO_TIME
        assert s["memory_stats"] == {} and s["pids_stats"] == {}
        assert s["cpu_stats"]["cpu_usage"]["total_usage"] == 0
    finally:
        api.delete(f"/containers/{cid}")


def test_stats_bad_arguments(api, started):
    cid = started("sleep 60")
    r = api.get(f"{V}/containers/{cid}/stats?stream=1&one-shot=1")
    assert r.status == 400, r
    r = api.get(f"{V}/containers/{cid}/stats?stream=maybe")
    assert r.status == 400, r


def test_stats_stream_one_a_second(daemon, api, started):
    cid = started(BUSY)
    t0 = time.monotonic()
    objs, ended = stream_lines(daemon, f"{V}/containers/{cid}/stats", 3, timeout=10)
    took = time.monotonic() - t0
    assert len(objs) == 3 and not ended
    assert took >= 1.5, took  # the 2nd and 3rd object come a second apart
    reads = [o["read"] for o in objs]
    assert reads == sorted(reads) and len(set(reads)) == 3
    assert objs[0]["preread"] == ZERO_TIME
    assert objs[1]["preread"] == objs[0]["read"] and objs[2]["preread"] == objs[1]["read"]
    totals = [o["cpu_stats"]["cpu_usage"]["total_usage"] for o in objs]
    assert totals == sorted(totals) and totals[2] > totals[0]
    assert objs[2]["precpu_stats"] == objs[1]["cpu_stats"]


def test_stats_stream_ends_when_the_container_stops(daemon, api, started):
    cid = started("sleep 2")
    objs, ended = stream_lines(daemon, f"{V}/containers/{cid}/stats?stream=1", 20, timeout=15)
    assert ended, "the stream did not end with the container"
    assert 1 <= len(objs) <= 6
    assert objs[-1]["read"] == ZERO_TIME  # the last one says the container is gone
    assert all(o["read"] != ZERO_TIME for o in objs[:-1])


def test_dropped_stats_streams_end_their_threads(daemon, api, started):
    cid = started("sleep 60")
    def tasks():
        return len(os.listdir(f"/proc/{daemon.server_pid()}/task"))

    time.sleep(0.3)  # the threads of the requests before this one have ended
    base = tasks()
    socks = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        s.sendall(f"GET {V}/containers/{cid}/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert b" 200 " in s.recv(4096)
        socks.append(s)
    assert tasks() >= base + 5
    for s in socks:
        s.close()
    # each stream notices at its next write, a second later at most
    assert poll(lambda: tasks() <= base + 1, 10), (base, tasks())
    assert api.get(f"{V}/containers/{cid}/stats?stream=0&one-shot=1").status == 200


def test_stats_paused_container(api, started):
    cid = started("sleep 60")
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    s = stats(api, cid)
    assert s["memory_stats"]["usage"] > 0 and s["pids_stats"]["current"] >= 1


# -- update ----------------------------------------------------------------------

def test_update_memory_of_a_running_container(api, started):
    cid = started("sleep 60", Memory=64 * MiB)
    assert int(cg("memory", cid, "memory.limit_in_bytes")) == 64 * MiB
    assert int(cg("memory", cid, "memory.memsw.limit_in_bytes")) == 128 * MiB
    r = api.post(f"{V}/containers/{cid}/update", {"Memory": 200 * MiB, "MemorySwap": 400 * MiB})
    assert r.status == 200, r
    assert r.json() == {"Warnings": None}  # dockerd: null when there are none
    assert int(cg("memory", cid, "memory.limit_in_bytes")) == 200 * MiB
    assert int(cg("memory", cid, "memory.memsw.limit_in_bytes")) == 400 * MiB
    # down again: the order of the two writes must follow the kernel's rule
    r = api.post(f"{V}/containers/{cid}/update", {"Memory": 32 * MiB, "MemorySwap": 48 * MiB})
    assert r.status == 200, r
    assert int(cg("memory", cid, "memory.limit_in_bytes")) == 32 * MiB
    assert int(cg("memory", cid, "memory.memsw.limit_in_bytes")) == 48 * MiB
    cfg = inspect(api, cid)["Config"]
    assert cfg["Memory"] == 32 * MiB and cfg["MemorySwap"] == 48 * MiB  # stored in the record
    assert stats(api, cid)["memory_stats"]["limit"] == 32 * MiB
    # more memory than memory+swap, without a new swap: Docker's conflict
    r = api.post(f"{V}/containers/{cid}/update", {"Memory": 64 * MiB})
    assert r.status == 409, r
    assert int(cg("memory", cid, "memory.limit_in_bytes")) == 32 * MiB


def test_update_cpu_of_a_running_container(api, started):
    cid = started("sleep 60")
    r = api.post(f"{V}/containers/{cid}/update", {"CpuShares": 512, "CpuPeriod": 50000, "CpuQuota": 25000})
    assert r.status == 200, r
    assert cg("cpu", cid, "cpu.shares") == "512"
    assert cg("cpu", cid, "cpu.cfs_period_us") == "50000"
    assert cg("cpu", cid, "cpu.cfs_quota_us") == "25000"
    r = api.post(f"{V}/containers/{cid}/update", {"NanoCpus": 500_000_000})
    assert r.status == 409, r  # NanoCpus after CpuQuota: Docker's conflict


def test_update_nano_cpus_throttles(api, started):
    cid = started(BUSY)
    r = api.post(f"{V}/containers/{cid}/update", {"NanoCpus": 200_000_000})
    assert r.status == 200, r
    assert cg("cpu", cid, "cpu.cfs_period_us") == "100000"
    assert cg("cpu", cid, "cpu.cfs_quota_us") == "20000"
    t = wait_for(lambda: stats(api, cid)["cpu_stats"]["throttling_data"]["throttled_periods"],
                 what="throttled periods")
    assert t > 0


def test_update_pids_limit_bounds_a_fork_bomb(api, started, tmp_path):
    os.chmod(tmp_path, 0o777)
    # The subshell dies at its first failed fork (sh's rule); what it started lives on.
    cid = started("while [ ! -e /x/go ]; do sleep 0.05; done; "
                  "(for i in $(seq 100); do sleep 5 & done); echo forked; exec sleep 60",
                  body={"Binds": [f"{tmp_path}:/x"]})
    r = api.post(f"{V}/containers/{cid}/update", {"PidsLimit": 20})
    assert r.status == 200, r
    assert cg("pids", cid, "pids.max") == "20"
    (tmp_path / "go").write_text("")
    wait_for(lambda: b"forked" in api.logs(cid), what="the fork loop to end")
    out = api.logs(cid)
    assert b"can't fork" in out or b"Resource temporarily unavailable" in out, out[-300:]
    assert 10 <= int(cg("pids", cid, "pids.current")) <= 20
    s = stats(api, cid)["pids_stats"]
    assert s["limit"] == 20 and 10 <= s["current"] <= 20
    # lifted again
    assert api.post(f"{V}/containers/{cid}/update", {"PidsLimit": 0}).status == 200
    assert cg("pids", cid, "pids.max") == "max"


def test_update_of_a_stopped_container_applies_at_start(api, busybox):
    cid = api.create(["sh", "-c", "sleep 60"], Memory=64 * MiB)
    try:
        r = api.post(f"{V}/containers/{cid}/update", {"Memory": 100 * MiB, "MemorySwap": 150 * MiB})
        assert r.status == 200, r
        api.start(cid)
        assert int(cg("memory", cid, "memory.limit_in_bytes")) == 100 * MiB
        assert int(cg("memory", cid, "memory.memsw.limit_in_bytes")) == 150 * MiB
    finally:
        kill_quiet(api, cid)
        api.delete(f"/containers/{cid}")


@pytest.mark.parametrize("body", [
    {"Memory": 1},                                  # below the minimum
    {"Memory": "64m"},                              # not an integer
    {"Memory": 64 * MiB, "MemorySwap": 32 * MiB},   # swap below memory
    {"CpuPeriod": 10},
    {"CpuQuota": 10},
    {"NanoCpus": 1000 * 10**9},                     # more cpus than the host has
    {"NanoCpus": 10**9, "CpuQuota": 50000},
    {"BlkioWeight": 300},                           # not something pyd can change
    {"RestartPolicy": {"Name": "sometimes"}},
    {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
    [1, 2],
])
def test_update_bad_values_are_400(api, started, body):
    cid = started("sleep 60")
    r = api.post(f"{V}/containers/{cid}/update", body)
    assert r.status == 400, r
    assert cg("cpu", cid, "cpu.cfs_quota_us") == "-1"


def test_update_with_docker_cli_zeros_and_restart_policy(daemon, api, started):
    """The docker CLI sends every Resources field, unset ones as zero or null."""
    cid = started("sleep 60", Memory=64 * MiB)
    body = {"BlkioWeight": 0, "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
            "BlkioWeightDevice": None, "CpusetCpus": "", "Devices": None, "Ulimits": None,
            "MemorySwappiness": None, "OomKillDisable": None, "PidsLimit": None, "KernelMemory": 0,
            "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}
    r = api.post(f"{V}/containers/{cid}/update", body)
    assert r.status == 200, r
    with open(os.path.join(daemon.root, "containers", cid, "container.json")) as f:
        host = json.load(f)["host"]
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert host["Memory"] == 64 * MiB  # 0 left it as it was
    assert int(cg("memory", cid, "memory.limit_in_bytes")) == 64 * MiB
    assert cg("pids", cid, "pids.max") == "4096"  # the daemon's default, left as it was by PidsLimit null


# -- top with ps_args ------------------------------------------------------------

def top(api, cid, ps_args=None):
    q = "" if ps_args is None else "?ps_args=" + ps_args.replace(" ", "%20")
    return api.get(f"/v1.41/containers/{cid}/top{q}")


def test_ps_top_of_a_container_keeps_its_rows_only(api, started):
    """runtime.procs.top on a real container's processes (what the 1.41 top serves)."""
    from pyd.runtime import procs
    cid = started("sleep 61 & sleep 62 & wait")
    pid = inspect(api, cid)["State"]["Pid"]
    want = ["sh -c sleep 61 & sleep 62 & wait", "sleep 61", "sleep 62"]

    def settled():  # both children forked and exec'd (a forked child is "sh" until its exec)
        pids = {int(x) for x in cg("pids", cid, "cgroup.procs").split()}
        return pids if sorted(r[-1] for r in procs.top(pids, None)[1]) == want else None

    pids = wait_for(settled, what="the two sleeps")
    titles, rows = procs.top(pids, None)
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert sorted(int(r[1]) for r in rows) == sorted(pids)
    assert all(len(r) == len(titles) for r in rows)
    assert sorted(r[-1] for r in rows) == want
    assert [r for r in rows if int(r[1]) == pid][0][-1].startswith("sh -c")
    titles, rows = procs.top(pids, "-o pid,comm")
    assert titles == ["PID", "COMMAND"] and sorted(r[1] for r in rows) == ["sh", "sleep", "sleep"]
    titles, rows = procs.top(pids, "aux")
    assert titles[:2] == ["USER", "PID"] and titles[-1] == "COMMAND" and len(rows) == 3


def test_top_with_ps_args(api, started):
    cid = started("sleep 61 & sleep 62 & wait")
    wait_for(lambda: sorted(p[1] for p in top(api, cid, "-o pid,comm").json()["Processes"]) == ["sh", "sleep", "sleep"],
             what="the two sleeps")
    r = top(api, cid)
    assert r.status == 200, r
    body = r.json()
    assert body["Titles"][:2] == ["UID", "PID"] and len(body["Processes"]) == 3
    r = top(api, cid, "aux")
    assert r.status == 200 and r.json()["Titles"][0] == "USER", r
    r = top(api, cid, "-o pid,comm")
    assert r.status == 200, r
    assert sorted(p[1] for p in r.json()["Processes"]) == ["sh", "sleep", "sleep"]
    for bad in ("-o comm", "--nonsense", "-o user=PID"):
        r = top(api, cid, bad)
        assert r.status == 400, (bad, r)
    r = api.get("/v1.41/containers/nosuch/top")
    assert r.status == 404, r


def test_top_of_paused_and_stopped_containers(api, started):
    cid = started("sleep 60")
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    r = top(api, cid)
    assert r.status == 200 and len(r.json()["Processes"]) == 1, r
    assert api.post(f"/containers/{cid}/kill").status == 204
    api.wait(cid)
    r = top(api, cid)
    assert r.status == 409, r


def test_legacy_top_keeps_its_shape(api, started):
    cid = started("sleep 60")
    r = api.get(f"/containers/{cid}/top?ps_args=aux")
    assert r.status == 200, r
    rows = r.json()
    assert isinstance(rows, list) and set(rows[0]) == {"PID", "Tty", "Time", "Cmd"}


# -- the daemon going away while a container is paused ---------------------------

CONTROLLERS = ("memory", "pids", "devices", "cpu", "cpuacct", "freezer", "blkio")


def leaked(cid):
    return [c for c in CONTROLLERS if os.path.exists(f"/sys/fs/cgroup/{c}/pyd/{cid}")]


def alive(pid):
    try:
        return proc_state(pid) != "Z"
    except FileNotFoundError:
        return False


def import_busybox(api, tar):
    r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", tar,
                 headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r


def test_kill9_with_a_paused_container_and_restart(new_daemon, busybox_tar):
    """The frozen processes of a dead daemon's container are killed at the next
    start (a frozen task dies only once thawed) and the record says exited."""
    d = new_daemon()
    d.start()
    import_busybox(d.api, busybox_tar)
    cid = d.api.create(["sleep", "1000"])
    d.api.start(cid)
    pid = inspect(d.api, cid)["State"]["Pid"]
    assert d.api.post(f"{V}/containers/{cid}/pause").status == 204
    d.kill9()
    assert alive(pid) and proc_state(pid) == "D"
    d2 = new_daemon(root=d.root)
    d2.start()
    st = inspect(d2.api, cid)["State"]
    assert st["Running"] is False and st["ExitCode"] == 137, st
    assert poll(lambda: not alive(pid), 10), f"pid {pid} survived"
    assert not leaked(cid)
    assert d2.stop() == 0


def test_graceful_shutdown_stops_a_paused_container(new_daemon, busybox_tar):
    d = new_daemon()
    d.start()
    import_busybox(d.api, busybox_tar)
    cid = d.api.create(["sh", "-c", 'trap "exit 5" TERM; while true; do sleep 0.1; done'])
    d.api.start(cid)
    time.sleep(0.3)
    pid = inspect(d.api, cid)["State"]["Pid"]
    assert d.api.post(f"{V}/containers/{cid}/pause").status == 204
    t0 = time.monotonic()
    assert d.stop(timeout=60) == 0, d.log()
    assert time.monotonic() - t0 < 8, "shutdown waited out the grace: SIGTERM was not delivered"
    assert not alive(pid) and not leaked(cid)
    with open(os.path.join(d.root, "containers", cid, "container.json")) as f:
        st = json.load(f)["state"]
    assert st["status"] == "exited" and st["exit_code"] == 5, st


# -- events and the docker CLI ------------------------------------------------------

def container_events(api, cid, since):
    r = api.get(f"{V}/events?since={since}&until={int(time.time()) + 1}", timeout=20)
    assert r.status == 200, r
    evs = [json.loads(line) for line in r.body.splitlines() if line.strip()]
    return [e["Action"] for e in evs if e.get("Type") == "container" and e["Actor"]["ID"] == cid]


def test_pause_unpause_and_update_events(api, started):
    since = int(time.time()) - 1
    cid = started("sleep 60")
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    assert api.post(f"{V}/containers/{cid}/unpause").status == 204
    assert api.post(f"{V}/containers/{cid}/update", {"CpuShares": 256}).status == 200
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    assert api.post(f"{V}/containers/{cid}/kill").status == 204
    api.wait(cid)
    actions = [a for a in container_events(api, cid, since) if a in ("pause", "unpause", "update", "die")]
    assert actions == ["pause", "unpause", "update", "pause", "unpause", "die"], actions


def test_commit_pauses_a_running_container_by_default(api, started):
    cid = started("echo data > /f; sleep 60")
    wait_for(lambda: api.get(f"{V}/containers/{cid}/changes").json(), what="the file")
    since = int(time.time()) - 1
    r = api.post(f"{V}/commit?container={cid}&repo=committed&tag=paused")
    assert r.status == 201, r
    r = api.post(f"{V}/commit?container={cid}&repo=committed&tag=unpaused&pause=0")
    assert r.status == 201, r
    assert inspect(api, cid)["State"]["Running"] and cg("freezer", cid, "freezer.state") == "THAWED"
    actions = [a for a in container_events(api, cid, since) if a in ("pause", "unpause", "commit")]
    assert actions == ["pause", "unpause", "commit", "commit"], actions
    # a container paused by its user stays paused
    assert api.post(f"{V}/containers/{cid}/pause").status == 204
    assert api.post(f"{V}/commit?container={cid}&repo=committed&tag=again").status == 201
    assert cg("freezer", cid, "freezer.state") == "FROZEN"
    for tag in ("paused", "unpaused", "again"):
        assert api.delete(f"{V}/images/committed:{tag}").status == 200


DOCKER = "/usr/local/bin/docker"


@pytest.fixture
def docker(daemon, tmp_path):
    if not os.access(DOCKER, os.X_OK):
        require(False, f"the docker CLI at {DOCKER}")

    def run(*args, timeout=60):
        import subprocess
        r = subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{daemon.port}", *args], capture_output=True,
                           text=True, timeout=timeout,
                           env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path)})
        return r.returncode, r.stdout, r.stderr

    return run


def test_docker_cli_pause_unpause_stats_top_update(api, docker, started):
    cid = started(BUSY, Memory=64 * MiB)
    assert docker("pause", cid)[0] == 0
    assert cg("freezer", cid, "freezer.state") == "FROZEN"
    code, out, _ = docker("inspect", "-f", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}", cid)
    assert (code, out.strip()) == (0, "paused true true")
    code, _, err = docker("pause", cid)
    assert code == 1 and "is already paused" in err
    assert docker("unpause", cid)[0] == 0
    code, _, err = docker("unpause", cid)
    assert code == 1 and "is not paused" in err

    code, out, err = docker("stats", "--no-stream", "--format", "{{json .}}", cid)
    assert code == 0, err
    row = json.loads(out)
    assert row["ID"] == cid[:12] and row["MemUsage"].endswith("/ 64MiB") and row["PIDs"] == "1", row
    assert float(row["CPUPerc"].rstrip("%")) > 10, row  # a busy loop, over a second

    code, out, _ = docker("top", cid, "-o", "pid,comm")
    assert code == 0 and out.split() == ["PID", "COMMAND", str(inspect(api, cid)["State"]["Pid"]), "sh"], out
    code, out, _ = docker("top", cid, "aux")
    assert code == 0 and out.split()[:2] == ["USER", "PID"]

    code, _, err = docker("update", "--memory", "100m", "--memory-swap", "200m", "--cpus", "0.5",
                          "--pids-limit", "50", cid)
    assert code == 0, err
    assert int(cg("memory", cid, "memory.limit_in_bytes")) == 100 * MiB
    assert int(cg("memory", cid, "memory.memsw.limit_in_bytes")) == 200 * MiB
    assert cg("cpu", cid, "cpu.cfs_quota_us") == "50000" and cg("pids", cid, "pids.max") == "50"
    code, out, _ = docker("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}", cid)
    assert out.split() == [str(100 * MiB), "500000000", "50"], out

    assert docker("pause", cid)[0] == 0
    code, _, err = docker("stop", "-t", "5", cid)
    assert code == 0, err
    assert not inspect(api, cid)["State"]["Running"]


def test_docker_sdk_pause_stats_update_top(daemon, api, started):
    docker_sdk = pytest.importorskip("docker")
    cid = started("sleep 60")
    client = docker_sdk.DockerClient(base_url=f"tcp://127.0.0.1:{daemon.port}", version="auto", timeout=30)
    try:
        c = client.containers.get(cid)
        c.pause()
        c.reload()
        assert c.status == "paused"
        c.unpause()
        s = c.stats(stream=False)
        assert s["id"] == cid and s["memory_stats"]["usage"] > 0 and s["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        s = c.stats(stream=False, one_shot=True)
        assert s["precpu_stats"]["cpu_usage"]["total_usage"] == 0
        frames = c.stats(decode=True)
        first = next(frames)
        frames.close()
        assert first["id"] == cid
        assert c.update(mem_limit="80m", memswap_limit="160m") == {"Warnings": None}
        assert int(cg("memory", cid, "memory.limit_in_bytes")) == 80 * MiB
        t = c.top(ps_args="-o pid,args")
        assert t["Titles"] == ["PID", "COMMAND"] and t["Processes"][0][1] == "sleep 60", t
    finally:
        client.close()
