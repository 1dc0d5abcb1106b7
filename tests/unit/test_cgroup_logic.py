"""Fast tests of the cgroup operations' pure parts: the paused state in the
state machine, Docker's update rules, the ContainerStats shape, ps output
parsing and the cgroup file parsers."""

import errno

import pytest

from pyd import errors, native
from pyd.api import legacy, stats_shape
from pyd.engine import lifecycle as lc
from pyd.engine.events import Bus
from pyd.engine import resources
from pyd.engine.resources import check_update
from pyd.runtime import cgroups, procs
from pyd.store.containers import Container

MiB = 1 << 20


class _Records:
    def __init__(self):
        self.saved = []

    def save(self, c, durable=True):
        self.saved.append(c.status)


def _running(tmp_path):
    store, bus = _Records(), Bus()
    life = lc.Lifecycle(store, bus)
    c = Container({"id": "a" * 64, "name": "web", "image": "b" * 64, "config": {"Image": "busybox"},
                   "state": lc.new_state()}, str(tmp_path))
    life.created(c)
    life.starting(c)
    life.running(c, 42)
    return life, c, bus.subscribe(), store


def test_pause_unpause_moves_and_events(tmp_path):
    life, c, sub, store = _running(tmp_path)
    started_at = c.state["started_at"]
    life.paused(c)
    assert c.status == "paused" and c.running and c.paused
    with pytest.raises(errors.Conflict, match=f"Container {c.id} is already paused"):
        life.paused(c)
    with pytest.raises(errors.Conflict, match="paused"):
        life.starting(c)
    with pytest.raises(errors.Conflict, match="paused"):
        life.removing(c)
    life.unpaused(c)
    assert c.status == "running" and c.state["started_at"] == started_at and c.state["pid"] == 42
    with pytest.raises(errors.Conflict, match=f"Container {c.id} is not paused"):
        life.unpaused(c)
    life.paused(c)
    life.exited(c, 137)  # killed while paused
    assert not c.running
    with pytest.raises(errors.Conflict, match="is not running"):
        life.paused(c)
    assert [e.action for e in iter(lambda: sub.get(0), None)] == ["pause", "unpause", "pause", "die"]
    assert store.saved[-4:] == ["paused", "running", "paused", "exited"]


def test_unpause_of_a_starting_container_is_refused(tmp_path):
    life = lc.Lifecycle(_Records(), Bus())
    c = Container({"id": "a" * 64, "name": "web", "image": "b" * 64, "config": {"Image": "busybox"},
                   "state": lc.new_state()}, str(tmp_path))
    life.created(c)
    life.starting(c)
    with pytest.raises(errors.Conflict, match="not paused"):
        life.unpaused(c)
    assert c.status == "starting"


def test_wait_stopped_waits_through_pause(tmp_path):
    life, c, _, _ = _running(tmp_path)
    life.paused(c)
    assert life.wait_stopped(c, 0.01) is False


def test_legacy_status_of_a_paused_container():
    st = {"status": "paused", "started_at": "2026-01-01T00:00:00Z"}
    assert legacy.status_string(st, now=1767225600 + 30) == "Up 30 seconds (Paused)"


# -- update rules ------------------------------------------------------------------

def test_update_merges_only_what_is_given():
    host = {"Memory": 64 * MiB, "MemorySwap": 128 * MiB}
    changes, limits = check_update({"Memory": 0, "CpuShares": 512, "PidsLimit": None,
                                    "RestartPolicy": {"Name": ""}}, host, 2)
    assert changes == {"CpuShares": 512}
    assert limits == {"memory": None, "memory_swap": None, "pids_limit": None, "cpu_shares": 512,
                      "cpu_quota": None, "cpu_period": None}


def test_update_nano_cpus_become_quota_and_period():
    changes, limits = check_update({"NanoCpus": 1_500_000_000}, {}, 2)
    assert changes == {"NanoCpus": 1_500_000_000}
    assert (limits["cpu_quota"], limits["cpu_period"]) == (150000, 100000)


def test_update_pids_limit_zero_lifts_it():
    changes, limits = check_update({"PidsLimit": 0}, {"PidsLimit": 20}, 2)
    assert changes == {"PidsLimit": 0} and limits["pids_limit"] == 0


@pytest.mark.parametrize("body,host,exc", [
    ({"Memory": 256 * MiB}, {"Memory": 64 * MiB, "MemorySwap": 128 * MiB}, errors.Conflict),
    ({"NanoCpus": 10**9}, {"CpuQuota": 50000}, errors.Conflict),
    ({"CpuPeriod": 50000}, {"NanoCpus": 10**9}, errors.Conflict),
    ({"RestartPolicy": {"Name": "always"}}, {"AutoRemove": True}, errors.Conflict),
    ({"MemorySwap": 100 * MiB}, {}, errors.BadParameter),     # swap without memory
    ({"Memory": True}, {}, errors.BadParameter),
    ({"Memory": -1}, {}, errors.BadParameter),                # Docker's minimum applies to -1 too
    ({"NanoCpus": 10**6}, {}, errors.BadParameter),           # below 0.01 cpu
    ({"CpuShares": -5}, {}, errors.BadParameter),
    ({"CpusetCpus": "0-1"}, {}, errors.BadParameter),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}, {}, errors.BadParameter),
    ("Memory=1", {}, errors.BadParameter),
])
def test_update_refusals(body, host, exc):
    with pytest.raises(exc):
        check_update(body, host, 2)


def test_update_memory_alone_on_an_unlimited_container_is_allowed():
    changes, limits = check_update({"Memory": 64 * MiB}, {"Memory": 0, "MemorySwap": 0}, 2)
    assert changes == {"Memory": 64 * MiB} and limits["memory_swap"] is None


# -- the ContainerStats shape ------------------------------------------------------

SAMPLE = {"id": "c" * 64, "name": "web", "read": "2026-01-01T00:00:01.5Z", "stats": {
    "cpu": {"total": 500, "percpu": [200, 300], "user": 100, "system": 50,
            "throttling": {"periods": 3, "throttled_periods": 1, "throttled_time": 9}},
    "system_cpu_usage": 10**12, "online_cpus": 2,
    "memory": {"usage": 4096, "max_usage": 8192, "limit": 1 << 30, "failcnt": 0, "stat": {"rss": 1}},
    "pids": {"current": 2, "limit": 0},
    "blkio": {"io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "Read", "value": 7}],
              "io_serviced_recursive": []}}}


def test_stats_shape_of_a_running_container():
    pre = dict(SAMPLE, read="2026-01-01T00:00:00.5Z")
    s = stats_shape.stats_json(SAMPLE, pre)
    assert s["name"] == "/web" and s["id"] == "c" * 64
    assert s["read"] == SAMPLE["read"] and s["preread"] == pre["read"]
    assert s["cpu_stats"] == {"cpu_usage": {"total_usage": 500, "usage_in_kernelmode": 50,
                                            "usage_in_usermode": 100, "percpu_usage": [200, 300]},
                              "system_cpu_usage": 10**12, "online_cpus": 2,
                              "throttling_data": {"periods": 3, "throttled_periods": 1, "throttled_time": 9}}
    assert s["precpu_stats"] == s["cpu_stats"]
    assert s["memory_stats"] == {"usage": 4096, "max_usage": 8192, "limit": 1 << 30, "stats": {"rss": 1}}
    assert s["pids_stats"] == {"current": 2}  # a zero limit is left out, as Go's omitempty does
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [{"major": 8, "minor": 0, "op": "Read", "value": 7}]
    assert s["blkio_stats"]["sectors_recursive"] == []  # as dockerd: a list, empty
    assert "networks" not in s and s["num_procs"] == 0 and s["storage_stats"] == {}


def test_stats_shape_without_a_previous_sample_or_when_stopped():
    s = stats_shape.stats_json(SAMPLE)
    assert s["preread"] == "0001-01-01T00:00:00Z"
    assert s["precpu_stats"] == {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                                 "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    gone = stats_shape.stats_json({"id": "c" * 64, "name": "", "read": "x", "stats": None}, SAMPLE)
    assert gone["read"] == "0001-01-01T00:00:00Z" and gone["memory_stats"] == {} and "name" not in gone
    assert gone["preread"] == SAMPLE["read"]


# -- ps output ---------------------------------------------------------------------

PS = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init splash
root         100       1  0 10:00 ?        00:00:00 sh -c sleep 1000 &  wait
root         101     100  0 10:00 ?        00:00:00 sleep 1000
root         200       1  0 10:00 ?        00:00:00 other
"""

PS_THREADS = """USER         PID %CPU COMMAND
root         100  0.0 app
root           -  0.0 -
root           -  0.0 -
root         200  0.0 other
root           -  0.0 -
"""


def test_parse_ps_keeps_the_container_rows_and_joins_the_command():
    titles, rows = procs.parse_ps(PS, {100, 101})
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert rows == [["root", "100", "1", "0", "10:00", "?", "00:00:00", "sh -c sleep 1000 & wait"],
                    ["root", "101", "100", "0", "10:00", "?", "00:00:00", "sleep 1000"]]


def test_parse_ps_thread_rows_follow_their_process():
    _, rows = procs.parse_ps(PS_THREADS, {100})
    assert [r[1] for r in rows] == ["100", "-", "-"]


@pytest.mark.parametrize("text", ["CMD\nsleep\n", "PID CMD\nabc sleep\n"])
def test_parse_ps_refusals(text):
    with pytest.raises(errors.BadParameter):
        procs.parse_ps(text, {1})


@pytest.mark.parametrize("args", ["-o user=PID", "-eo pid,user=PIDX", "x" * 2000])
def test_ps_args_refused(args):
    with pytest.raises(errors.BadParameter):
        procs.check_ps_args(args)


def test_ps_args_pid_rename_allowed():
    procs.check_ps_args("-o pid=PID,comm")


# -- cgroup file parsers -----------------------------------------------------------

def test_blkio_lines(tmp_path):
    f = tmp_path / "blkio.throttle.io_service_bytes_recursive"
    f.write_text("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n")
    assert cgroups._blkio_v1(str(f)) == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096},
        {"major": 8, "minor": 0, "op": "Write", "value": 512},
        {"major": 8, "minor": 0, "op": "Total", "value": 4608}]
    assert cgroups._blkio_v1(str(tmp_path / "missing")) == []


@pytest.mark.parametrize("shares,weight", [(2, 1), (1024, 39), (262144, 10000)])
def test_shares_to_weight(shares, weight):
    assert cgroups.shares_to_weight(shares) == weight


def test_system_cpu_usage_grows():
    a = cgroups.system_cpu_usage()
    sum(range(10**6))
    assert cgroups.system_cpu_usage() >= a > 0


# -- cgroup v2, on a hand-made tree (this machine runs v1) ---------------------------

@pytest.fixture
def v2_tree(tmp_path, monkeypatch):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    d = tmp_path / "pyd" / "c1"
    d.mkdir(parents=True)
    for name, text in {"memory.max": "max\n", "memory.swap.max": "max\n", "pids.max": "max\n",
                       "cpu.weight": "100\n", "cpu.max": "max 100000\n", "cgroup.freeze": "0\n",
                       "cgroup.events": "populated 1\nfrozen 1\n",
                       "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\n"
                                   "nr_throttled 2\nthrottled_usec 30\n",
                       "memory.current": "8192\n", "memory.stat": "anon 4096\nfile 4096\n",
                       "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
                       "pids.current": "3\n",
                       "io.stat": "8:0 rbytes=4096 wbytes=512 rios=2 wios=1 dbytes=0 dios=0\n\n"}.items():
        (d / name).write_text(text)
    monkeypatch.setattr(cgroups, "V2_ROOT", str(tmp_path))
    return d


@pytest.fixture
def filters(v2_tree, monkeypatch):
    """The device filters attached: the eBPF program needs a real cgroup
    (tests/integration/test_cgroup2.py attaches it), here the call is recorded."""
    calls = []
    monkeypatch.setattr(native, "device_filter", lambda path, rules: calls.append((path, rules)))
    return calls


def test_v2_limits_freeze_and_counters(v2_tree, filters):
    cg = cgroups.Cgroup("c1")
    assert cg.version == 2 and cg.dirs == [str(v2_tree)]
    cg.create(64 * MiB, 128 * MiB, pids_limit=20, cpu_shares=512, cpu_quota=50000)
    assert filters == [(str(v2_tree), cgroups.device_rules(cgroups.DEVICE_ALLOW))]
    read = lambda name: (v2_tree / name).read_text()  # noqa: E731
    assert read("memory.max") == str(64 * MiB)
    assert read("memory.swap.max") == str(64 * MiB)   # v2 limits the swap alone
    assert read("pids.max") == "20" and read("cpu.weight") == str(cgroups.shares_to_weight(512))
    assert read("cpu.max") == "50000 100000"
    cg.update(cpu_period=200000, pids_limit=0, memory_swap=-1)
    assert read("cpu.max") == "50000 200000" and read("pids.max") == "max" and read("memory.swap.max") == "max"
    cg.freeze()
    assert read("cgroup.freeze") == "1" and cg.frozen()
    cg.thaw()
    assert read("cgroup.freeze") == "0"
    s = cg.stats()
    assert s["cpu"] == {"total": 1_500_000, "percpu": [], "user": 1_000_000, "system": 500_000,
                        "throttling": {"periods": 4, "throttled_periods": 2, "throttled_time": 30_000}}
    assert s["memory"]["usage"] == 8192 and s["memory"]["failcnt"] == 1 and s["memory"]["stat"]["anon"] == 4096
    assert s["memory"]["limit"] == 64 * MiB
    assert s["pids"] == {"current": 3, "limit": 0}
    assert s["blkio"]["io_service_bytes_recursive"] == [
        {"major": 8, "minor": 0, "op": "read", "value": 4096}, {"major": 8, "minor": 0, "op": "write", "value": 512}]
    assert s["blkio"]["io_serviced_recursive"][0]["value"] == 2
    assert cg.oom_killed()


def test_v2_freeze_gives_up_and_thaws(v2_tree):
    (v2_tree / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    cg = cgroups.Cgroup("c1")
    with pytest.raises(OSError) as e:
        cg.freeze(timeout=0.05)
    assert e.value.errno == errno.EBUSY and (v2_tree / "cgroup.freeze").read_text() == "0"


def test_v2_privileged_gets_no_device_filter(v2_tree, filters):
    cgroups.Cgroup("c1").create(all_devices=True)
    assert filters == []


def test_v2_without_controllers_writes_no_limit(v2_tree, filters):
    """A unified hierarchy that offers no memory, pids or cpu controller (a
    hybrid host's, or an appliance kernel without them): the files are not
    there, and create neither fails nor makes them."""
    (v2_tree.parent.parent / "cgroup.controllers").write_text("hugetlb\n")
    for name in ("memory.max", "memory.swap.max", "pids.max", "cpu.weight", "cpu.max"):
        (v2_tree / name).unlink()
    cg = cgroups.Cgroup("c1")
    cg.create(64 * MiB, 128 * MiB, pids_limit=20, cpu_shares=512, cpu_quota=50000)
    cg.update(memory=32 * MiB, pids_limit=10, cpu_period=200000)
    assert not any((v2_tree / n).exists() for n in ("memory.max", "pids.max", "cpu.max", "cpu.weight"))
    support = cgroups.support()
    assert not support["memory"] and not support["pids"] and not support["cpu_cfs"]


def test_device_rules_from_v1_lines():
    assert cgroups.device_rules(["c *:* m", "b 8:* r", "c 1:3 rwm", "a"]) == [
        (2, -1, -1, 1), (1, 8, -1, 2), (2, 1, 3, 7), (0, -1, -1, 7)]
    for bad in ("x 1:3 rwm", "c 1:3", "c 13 rw", "c 1:3 rwx", "c -2:3 r", "c 1:3 "):
        with pytest.raises(ValueError):
            cgroups.device_rules([bad])


def test_discard_unsupported_follows_dockerd():
    none = dict.fromkeys(("memory", "swap", "pids", "cpu_shares", "cpu_cfs", "freezer", "devices"), False)
    cfg = {"Memory": 64 * MiB, "MemorySwap": 128 * MiB, "CpuShares": 512, "CpuPeriod": 100000,
           "CpuQuota": 50000, "PidsLimit": 30, "NanoCpus": 0}
    warnings = resources.discard_unsupported(cfg, none)
    assert cfg == {"Memory": 0, "MemorySwap": 0, "CpuShares": 0, "CpuPeriod": 0, "CpuQuota": 0,
                   "PidsLimit": None, "NanoCpus": 0}
    assert len(warnings) == 5 and all(w.startswith("Your kernel does not support") for w in warnings)
    assert any("PIDs limit discarded" in w for w in warnings)
    swapless = dict(none, memory=True)
    cfg = {"Memory": 64 * MiB, "MemorySwap": 128 * MiB}
    assert resources.discard_unsupported(cfg, swapless) == [
        "Your kernel does not support swap limit capabilities or the cgroup is not mounted. "
        "Memory limited without swap."]
    assert cfg == {"Memory": 64 * MiB, "MemorySwap": 0}
    cfg = {"PidsLimit": -1}
    assert resources.discard_unsupported(cfg, none) == [] and cfg == {"PidsLimit": -1}  # "no limit" stays
    with pytest.raises(errors.BadParameter):
        resources.discard_unsupported({"NanoCpus": 10**9}, none)
    everything = dict.fromkeys(none, True)
    cfg = {"Memory": 64 * MiB, "MemorySwap": 128 * MiB, "CpuShares": 512, "PidsLimit": 30}
    assert resources.discard_unsupported(dict(cfg), everything) == []
