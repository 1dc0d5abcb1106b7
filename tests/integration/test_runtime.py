"""The container runtime through the HTTP API (Remote API v1.3, section 2.1;
NOTES-v1.3 "Containers"; DESIGN.md "Isolation baseline").

Every test runs real containers from the busybox image and checks what the
container sees from inside (its output, captured through attach logs=1) or
what the host sees (/proc, cgroups, mountinfo, the daemon root).

Network: only 127.0.0.1. Every loop is bounded in count and in time.
"""

import concurrent.futures
import json
import os
import re
import signal
import time

import pytest

from tests.pydtest import inspect, poll, proc_status

HEX12 = re.compile(r"^[0-9a-f]{12}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
PREFIXES = ["", "/v1.3"]
MiB = 1024 * 1024
ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPS_DEFAULT = "00000000a80425fb"  # Docker's default 14 capabilities
CGROUP_V1 = ("memory", "pids", "devices")
UP = re.compile(r"^Up (Less than a second|1 seconds?|[0-9]+ seconds)$")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def sh(api, script, **config):
    """Run `sh -c script`; return (exit code, combined output, id)."""
    return api.run(["sh", "-c", script], **config)


def out_of(api, script, **config):
    code, out, _ = sh(api, script, **config)
    assert code == 0, (code, out)
    return out


def env_of(text):
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def cgroup_dirs(cid):
    return [f"/sys/fs/cgroup/{c}/pyd/{cid}" for c in CGROUP_V1]


def leaked_cgroups(cid):
    return [d for d in cgroup_dirs(cid) if os.path.exists(d)]


def host_mountinfo():
    with open("/proc/self/mountinfo") as f:
        return f.read().splitlines()


def proc_is(pid, name):
    """True if host pid `pid` is a live (non-zombie) process whose command name is `name`."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    state = stat[stat.rindex(")") + 1:].split()[0]
    return state != "Z" and comm == name


def daemon_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def daemon_threads(pid):
    return proc_status(pid, "Threads")


def import_busybox(api, tar):
    r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", tar,
                 headers={"Content-Type": "application/x-tar"}, timeout=300)
    assert r.status == 200 and b'"error"' not in r.body, r
    return api.get("/images/busybox/json").json()["id"]


def listed(api, query="", prefix=""):
    r = api.get(f"{prefix}/containers/json{query}")
    assert r.status == 200, r
    return r.json()


def ids_in(rows):
    return [r["Id"] for r in rows]


def wait_running(api, cid, timeout=10):
    return poll(lambda: inspect(api, cid)["State"]["Running"], timeout)


def cgroup_pids(cid):
    try:
        with open(f"/sys/fs/cgroup/pids/pyd/{cid}/cgroup.procs") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def wait_for_proc(cid, name, timeout=10):
    """Wait until a process named `name` runs in the container's cgroup."""
    return poll(lambda: any(proc_is(p, name) for p in cgroup_pids(cid)), timeout)


@pytest.fixture(autouse=True)
def tidy(request):
    """Force-delete, on the session daemon, every container a test leaves behind."""
    if "api" not in request.fixturenames:
        yield
        return
    api = request.getfixturevalue("api")
    before = set(ids_in(listed(api, "?all=1")))
    yield
    for cid in set(ids_in(listed(api, "?all=1"))) - before:
        api.delete(f"/containers/{cid}?force=1")


# --------------------------------------------------------------------------
# isolation, seen from inside the container
# --------------------------------------------------------------------------

def test_hostname_is_the_short_id_by_default(api, busybox):
    code, out, cid = sh(api, "hostname; cat /etc/hostname")
    assert code == 0
    assert out == f"{cid[:12]}\n{cid[:12]}\n"
    assert inspect(api, cid)["Config"]["Hostname"] == cid[:12]


def test_hostname_from_config(api, busybox):
    code, out, _ = sh(api, "hostname; cat /etc/hostname", Hostname="boxname")
    assert (code, out) == (0, "boxname\nboxname\n")


def test_command_is_pid_1(api, busybox):
    assert out_of(api, "echo $$") == "1\n"


def test_ps_sees_only_the_containers_processes(api, busybox):
    out = out_of(api, "sleep 30 & ps")
    lines = out.splitlines()
    assert lines[0].split()[0] == "PID", out
    procs = [ln.split(None, 2) for ln in lines[1:]]
    pids = [int(p[0]) for p in procs]
    assert 1 in pids, out
    assert 2 <= len(procs) <= 3, out  # sh (or ps exec'd by it), sleep, ps
    assert all(pid < 100 for pid in pids), out
    assert any("sleep" in p[2] for p in procs), out
    assert not any("pyd" in p[2] or "pytest" in p[2] or "python" in p[2] for p in procs), out


def test_host_mounts_are_not_visible(daemon, api, busybox):
    code, out, cid = sh(api, f"cat /proc/mounts; echo ---; ls /work {daemon.root} 2>&1; echo ls=$?")
    assert code == 0, out
    mounts, _, rest = out.partition("---\n")
    points = [ln.split()[1] for ln in mounts.splitlines()]
    sources = [ln.split()[0] for ln in mounts.splitlines()]
    assert points[0] == "/" and "/proc" in points, mounts
    # Mount points the host has and a container must not: everything but the
    # few the container mounts for itself.
    own = {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"}
    host_points = {ln.split()[4] for ln in host_mountinfo()} - own
    assert host_points, "the host has no mount points beyond the basics?"
    leaked = [p for p in points if p in host_points or p.startswith("/sys/fs/cgroup")
              or p.startswith("/work") or p.startswith(daemon.root) or p.startswith("/tmp/")]
    assert not leaked, mounts
    assert not any(daemon.root in s or s.startswith("/work") for s in sources), mounts
    # The host's tree is not reachable either.
    assert "ls=0" not in rest and "No such file" in rest, rest


def test_capabilities_default_set_for_root(api, busybox):
    caps = env_of(out_of(api, "grep ^Cap /proc/self/status | tr -d '\\t' | tr ':' '='"))
    assert caps["CapEff"] == CAPS_DEFAULT, caps
    assert caps["CapPrm"] == CAPS_DEFAULT, caps
    assert caps["CapBnd"] == CAPS_DEFAULT, caps
    assert int(caps["CapInh"], 16) == 0, caps


def test_capabilities_empty_for_a_non_root_user(api, busybox):
    caps = env_of(out_of(api, "grep ^Cap /proc/self/status | tr -d '\\t' | tr ':' '='", User="user"))
    assert int(caps["CapEff"], 16) == 0, caps
    assert int(caps["CapPrm"], 16) == 0, caps
    assert int(caps["CapInh"], 16) == 0, caps


def test_only_fds_0_to_2_are_open(api, busybox):
    # ls opens /proc/self/fd itself: that is fd 3.
    assert out_of(api, "ls /proc/self/fd").split() == ["0", "1", "2", "3"]


def test_proc_masks_and_readonly_proc_sys(api, busybox):
    with open("/proc/timer_list", "rb") as f:
        assert f.read(100), "the host's timer_list is not empty: masking is observable"
    script = ("if [ -e /proc/kcore ]; then echo kcore=$(cat /proc/kcore | wc -c); else echo kcore=absent; fi; "
              "echo keys=$(cat /proc/keys | wc -c); "
              "echo timer_list=$(cat /proc/timer_list | wc -c); "
              "if echo x > /proc/sys/kernel/hostname; then echo sys=written; else echo sys=refused; fi; "
              "echo hostname=$(hostname)")
    code, out, cid = sh(api, script)
    assert code == 0, out
    got = env_of(out)
    assert got["kcore"] in ("absent", "0"), out
    assert got["keys"] == "0", out
    assert got["timer_list"] == "0", out
    assert got["sys"] == "refused", out
    assert got["hostname"] == cid[:12], out
    assert "Read-only file system" in out, out


def test_mount_is_refused(api, busybox):
    code, out, _ = sh(api, "mount -t tmpfs none /mnt 2>&1; echo rc=$?; grep -c ' /mnt ' /proc/mounts")
    got = out.splitlines()
    assert "rc=0" not in got, out
    assert any(ln.startswith("rc=") for ln in got), out
    assert got[-1] == "0", out  # nothing mounted on /mnt


# --------------------------------------------------------------------------
# memory limits
# --------------------------------------------------------------------------

def test_memory_hog_is_oom_killed_with_137(api, busybox):
    t0 = time.monotonic()
    code, out, cid = sh(api, "x=a; while true; do x=$x$x; done", Memory=32 * MiB)
    assert code == 137, out
    assert time.monotonic() - t0 < 60
    st = inspect(api, cid)["State"]
    assert st["ExitCode"] == 137 and st["Running"] is False, st
    if "OOMKilled" in st:
        assert st["OOMKilled"] is True, st
    assert not leaked_cgroups(cid)


def test_memory_limit_is_written_to_the_cgroup(api, busybox):
    cid = api.create(["sleep", "30"], Memory=32 * MiB)
    api.start(cid)
    mem = f"/sys/fs/cgroup/memory/pyd/{cid}"
    with open(f"{mem}/memory.limit_in_bytes") as f:
        assert int(f.read()) == 32 * MiB
    if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
        with open(f"{mem}/memory.memsw.limit_in_bytes") as f:
            assert int(f.read()) == 64 * MiB  # Docker's default: MemorySwap = 2 * Memory
    with open(f"/sys/fs/cgroup/memory/pyd/{cid}/cgroup.procs") as f:
        assert str(inspect(api, cid)["State"]["Pid"]) in f.read().split()
    assert api.post(f"/containers/{cid}/kill").status == 204
    assert poll(lambda: not leaked_cgroups(cid), 5), leaked_cgroups(cid)


def test_info_reports_memory_and_swap_limit_support(api):
    info = api.get("/info").json()
    assert info["MemoryLimit"] is True
    assert info["SwapLimit"] is os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_memory_below_4mb_is_400(api, busybox, prefix):
    r = api.post(f"{prefix}/containers/create", {"Image": "busybox", "Cmd": ["true"], "Memory": 4 * MiB - 1})
    assert r.status == 400, r
    r = api.post(f"{prefix}/containers/create", {"Image": "busybox", "Cmd": ["true"], "Memory": 1 * MiB})
    assert r.status == 400, r


@pytest.mark.parametrize("prefix", PREFIXES)
def test_memory_swap_smaller_than_memory_is_400(api, busybox, prefix):
    r = api.post(f"{prefix}/containers/create",
                 {"Image": "busybox", "Cmd": ["true"], "Memory": 64 * MiB, "MemorySwap": 32 * MiB})
    assert r.status == 400, r


# --------------------------------------------------------------------------
# environment, user, working directory
# --------------------------------------------------------------------------

def test_env_defaults_and_config_env(api, busybox):
    code, out, cid = api.run(["env"], Env=["FOO=bar", "WITH_EQ=a=b"])
    assert code == 0, out
    env = env_of(out)
    assert env["FOO"] == "bar"
    assert env["WITH_EQ"] == "a=b"
    assert env["PATH"] == DEFAULT_PATH
    assert env["HOSTNAME"] == cid[:12]
    assert env["HOME"] == "/root"


def test_home_of_a_named_user(api, busybox):
    env = env_of(out_of(api, "env; echo UID_IS=$(id -u)", User="user"))
    assert env["HOME"] == "/home/user"
    assert env["UID_IS"] == "1000"


def test_user_by_name_has_its_groups(api, busybox):
    out = out_of(api, "id -u; id -g; id -G", User="user")
    uid, gid, groups = out.splitlines()
    assert (uid, gid) == ("1000", "1000")
    assert "50" in groups.split(), out  # staff:x:50:user


def test_user_by_uid(api, busybox):
    assert out_of(api, "id -u; id -g", User="1000").split() == ["1000", "1000"]


def test_user_as_uid_colon_gid(api, busybox):
    assert out_of(api, "id -u; id -g", User="1000:50").split() == ["1000", "50"]


def test_unknown_user_fails_start_and_leaves_the_container_startable(daemon, api, busybox):
    cid = api.create(["id"], User="nosuchuser")
    r = api.post(f"/containers/{cid}/start")
    assert r.status == 500, r
    assert b"nosuchuser" in r.body, r
    st = inspect(api, cid)["State"]
    assert st["Running"] is False and st["Pid"] == 0, st
    assert cid[:12] not in ids_in(listed(api))
    # Still in a startable state: a second start fails the same way (not 304 "already running").
    r = api.post(f"/containers/{cid}/start")
    assert r.status == 500 and b"nosuchuser" in r.body, r
    assert not leaked_cgroups(cid)
    assert api.delete(f"/containers/{cid}").status == 204


def test_working_dir_is_created_and_used(api, busybox):
    assert out_of(api, "pwd; test -d /tmp/newdir && echo isdir", WorkingDir="/tmp/newdir") == "/tmp/newdir\nisdir\n"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_relative_working_dir_is_400(api, busybox, prefix):
    r = api.post(f"{prefix}/containers/create", {"Image": "busybox", "Cmd": ["pwd"], "WorkingDir": "tmp/x"})
    assert r.status == 400, r


# --------------------------------------------------------------------------
# life cycle and status codes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_create_is_201_with_id_and_warnings(daemon, api, busybox, prefix):
    r = api.post(f"{prefix}/containers/create", {"Image": "busybox", "Cmd": ["true"]})
    assert r.status == 201, r
    body = r.json()
    assert set(body) == {"Id", "Warnings"}, body
    assert HEX64.match(body["Id"]), body
    assert body["Warnings"] in ([], None), body
    assert os.path.isdir(os.path.join(daemon.root, "containers", body["Id"]))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_create_errors(api, busybox, prefix):
    p = f"{prefix}/containers/create"
    assert api.post(p, {"Image": "nosuchimage", "Cmd": ["true"]}).status == 404
    assert api.post(p, b'{"Image": "busybox", "Cmd": ["true"]',
                    headers={"Content-Type": "application/json"}).status == 400
    assert api.post(p, {"Image": "busybox", "Cmd": 42}).status == 400
    assert api.post(p, {"Image": "busybox", "Cmd": {"a": 1}}).status == 400
    assert api.post(p, {"Image": "busybox", "Cmd": ["ok", 3]}).status == 400
    assert api.post(p).status == 400
    assert api.post(p, b"", headers={"Content-Type": "application/json"}).status == 400
    assert api.post(p, [1, 2]).status == 400


@pytest.mark.parametrize("prefix", PREFIXES)
def test_start_stop_kill_codes(api, busybox, prefix):
    cid = api.create(["sleep", "1000"])
    base = f"{prefix}/containers/{cid}"
    assert api.post(f"{base}/start").status == 204
    assert inspect(api, cid, prefix)["State"]["Running"] is True
    assert api.post(f"{base}/start").status == 304
    assert api.post(f"{prefix}/containers/{'f' * 64}/start").status == 404
    t0 = time.monotonic()
    assert api.post(f"{base}/stop?t=1").status == 204
    assert time.monotonic() - t0 < 5
    st = inspect(api, cid, prefix)["State"]
    assert st["Running"] is False and st["FinishedAt"] != ZERO_TIME, st
    assert api.post(f"{base}/stop?t=1").status == 304
    assert api.post(f"{base}/kill").status == 409
    assert api.post(f"{base}/start").status == 204
    assert api.post(f"{base}/kill").status == 204
    st = inspect(api, cid, prefix)["State"]
    assert st["Running"] is False and st["ExitCode"] == 137, st
    assert api.post(f"{base}/kill").status == 409
    assert api.post(f"{prefix}/containers/{'f' * 64}/stop").status == 404
    assert api.post(f"{prefix}/containers/{'f' * 64}/kill").status == 404


@pytest.mark.parametrize("prefix", PREFIXES)
def test_restart_runs_the_container_again(api, busybox, prefix):
    cid = api.create(["sleep", "1000"])
    api.start(cid)
    before = inspect(api, cid)["State"]
    time.sleep(0.05)
    t0 = time.monotonic()
    assert api.post(f"{prefix}/containers/{cid}/restart?t=1").status == 204
    assert time.monotonic() - t0 < 10
    after = inspect(api, cid)["State"]
    assert after["Running"] is True, after
    assert after["StartedAt"] != before["StartedAt"], (before, after)
    assert after["Pid"] != before["Pid"] and proc_is(after["Pid"], "sleep"), after
    assert not proc_is(before["Pid"], "sleep")
    assert api.post(f"{prefix}/containers/{'f' * 64}/restart").status == 404


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("cmd, code", [(["sh", "-c", "exit 3"], 3), (["true"], 0), (["false"], 1)])
def test_wait_returns_the_exit_code(api, busybox, prefix, cmd, code):
    cid = api.create(cmd)
    api.start(cid)
    r = api.post(f"{prefix}/containers/{cid}/wait")
    assert r.status == 200, r
    assert r.json() == {"StatusCode": code}
    assert inspect(api, cid)["State"]["ExitCode"] == code


@pytest.mark.parametrize("prefix", PREFIXES)
def test_wait_on_a_never_started_container_returns_at_once(api, busybox, prefix):
    cid = api.create(["true"])
    t0 = time.monotonic()
    r = api.post(f"{prefix}/containers/{cid}/wait", timeout=10)
    assert r.status == 200, r
    assert r.json() == {"StatusCode": 0}
    assert time.monotonic() - t0 < 5
    assert api.post(f"{prefix}/containers/{'f' * 64}/wait").status == 404


@pytest.mark.parametrize("prefix", PREFIXES)
def test_delete_codes(daemon, api, busybox, prefix):
    cid = api.create(["true"])
    r = api.delete(f"{prefix}/containers/{cid}")
    assert r.status == 204, r
    assert api.get(f"{prefix}/containers/{cid}/json").status == 404
    assert not os.path.exists(os.path.join(daemon.root, "containers", cid))
    assert api.delete(f"{prefix}/containers/{cid}").status == 404
    assert api.delete(f"{prefix}/containers/{'f' * 64}").status == 404

    cid = api.create(["sleep", "1000"])
    api.start(cid)
    pid = inspect(api, cid)["State"]["Pid"]
    assert api.delete(f"{prefix}/containers/{cid}?v=bogus").status == 400
    assert api.delete(f"{prefix}/containers/{cid}").status == 409
    assert inspect(api, cid)["State"]["Running"] is True
    assert api.delete(f"{prefix}/containers/{cid}?force=1").status == 204
    assert api.get(f"{prefix}/containers/{cid}/json").status == 404
    assert poll(lambda: not proc_is(pid, "sleep"), 5)
    assert not leaked_cgroups(cid)
    assert not os.path.exists(os.path.join(daemon.root, "containers", cid))


def test_start_of_a_missing_binary_is_500_naming_it(daemon, api, busybox):
    cid = api.create(["nosuchbin", "arg"])
    r = api.post(f"/containers/{cid}/start")
    assert r.status == 500, r
    assert b"nosuchbin" in r.body, r
    st = inspect(api, cid)["State"]
    assert st["Running"] is False and st["Pid"] == 0, st
    assert not leaked_cgroups(cid)
    assert api.delete(f"/containers/{cid}").status == 204
    assert not os.path.exists(os.path.join(daemon.root, "containers", cid))


def test_failed_starts_leak_nothing(daemon, api, busybox):
    pid = daemon.server_pid()
    fds0, threads0 = daemon_fds(pid), daemon_threads(pid)
    ids = []
    for _ in range(10):
        cid = api.create(["nosuchbin"])
        ids.append(cid)
        for _ in range(2):
            r = api.post(f"/containers/{cid}/start")
            assert r.status == 500 and b"nosuchbin" in r.body, r
        assert api.delete(f"/containers/{cid}").status == 204
    assert not [cid for cid in ids if leaked_cgroups(cid)]
    assert not [cid for cid in ids if os.path.exists(os.path.join(daemon.root, "containers", cid))]
    assert poll(lambda: daemon_fds(pid) <= fds0 + 2, 5), (fds0, daemon_fds(pid))
    assert poll(lambda: daemon_threads(pid) <= threads0 + 2, 5), (threads0, daemon_threads(pid))


def test_concurrent_starts_run_one_process(api, busybox):
    cid = api.create(["sleep", "1000"])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: api.post(f"/containers/{cid}/start").status, range(8), timeout=60))
    assert codes == [204] + [304] * 7, codes
    assert wait_for_proc(cid, "sleep")
    assert len(cgroup_pids(cid)) == 1, cgroup_pids(cid)
    assert inspect(api, cid)["State"]["Pid"] == cgroup_pids(cid)[0]


def test_stop_with_timeout_kills_a_process_that_ignores_term(api, busybox):
    cid = api.create(["sh", "-c", 'trap "" TERM; sleep 100'])
    api.start(cid)
    assert wait_for_proc(cid, "sleep"), "sleep never started"
    t0 = time.monotonic()
    assert api.post(f"/containers/{cid}/stop?t=1").status == 204
    elapsed = time.monotonic() - t0
    assert 0.5 < elapsed < 5, elapsed
    assert api.wait(cid) == 137
    assert inspect(api, cid)["State"]["ExitCode"] == 137


def test_kill_9_from_the_host_is_noticed(api, busybox):
    cid = api.create(["sleep", "1000"])
    api.start(cid)
    pid = inspect(api, cid)["State"]["Pid"]
    assert proc_is(pid, "sleep")
    os.kill(pid, signal.SIGKILL)
    assert api.wait(cid, timeout=30) == 137
    st = inspect(api, cid)["State"]
    assert st["Running"] is False and st["ExitCode"] == 137 and st["Pid"] == 0, st
    assert poll(lambda: not leaked_cgroups(cid), 5)


def test_restart_after_exit_updates_the_exit_code(api, busybox):
    cid = api.create(["sh", "-c", "test -f /flag && exit 5; touch /flag; exit 3"])
    api.start(cid)
    assert api.wait(cid) == 3
    first = inspect(api, cid)["State"]
    time.sleep(0.05)
    api.start(cid)
    assert api.wait(cid) == 5
    second = inspect(api, cid)["State"]
    assert second["ExitCode"] == 5 and second["Running"] is False
    assert second["StartedAt"] != first["StartedAt"]


# --------------------------------------------------------------------------
# list
# --------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/containers/json", "/containers/ps", "/v1.3/containers/json",
                                  "/v1.3/containers/ps"])
def test_list_running_by_default_and_all_includes_exited(api, busybox, path):
    running = api.create(["sleep", "1000"])
    api.start(running)
    exited = api.create(["sh", "-c", "exit 3"])
    api.start(exited)
    assert api.wait(exited) == 3
    r = api.get(path)
    assert r.status == 200, r
    rows = r.json()
    assert running[:12] in ids_in(rows)
    assert exited[:12] not in ids_in(rows)
    assert all(UP.match(row["Status"]) or row["Status"].startswith("Up ") for row in rows), rows
    rows = api.get(path + "?all=1").json()
    by_id = {row["Id"]: row for row in rows}
    assert by_id[exited[:12]]["Status"] == "Exit 3"
    assert UP.match(by_id[running[:12]]["Status"]), by_id[running[:12]]
    row = by_id[exited[:12]]
    assert set(row) == {"Id", "Image", "Command", "Created", "Status", "Ports"}, row
    assert row["Command"] == "sh -c exit 3"
    assert row["Image"] == "busybox:latest"
    assert row["Ports"] == ""
    assert isinstance(row["Created"], int) and abs(row["Created"] - time.time()) < 120
    assert api.get(path + "?all=bogus").status == 400


def test_list_status_counts_seconds(api, busybox):
    cid = api.create(["sleep", "1000"])
    api.start(cid)
    time.sleep(2.2)
    row = {r["Id"]: r for r in listed(api)}[cid[:12]]
    assert re.match(r"^Up [0-9]+ seconds$", row["Status"]), row


def test_list_limit_since_and_before_newest_first(api, busybox):
    a = api.create(["true"])
    time.sleep(0.01)
    b = api.create(["true"])
    time.sleep(0.01)
    c = api.create(["true"])
    a, b, c = a[:12], b[:12], c[:12]
    assert ids_in(listed(api, "?limit=2")) == [c, b]
    assert ids_in(listed(api, "?limit=1")) == [c]
    assert ids_in(listed(api, "?all=1"))[:3] == [c, b, a]
    assert ids_in(listed(api, f"?since={a}")) == [c, b]
    assert ids_in(listed(api, f"?since={b}")) == [c]
    assert ids_in(listed(api, f"?since={c}")) == []
    before_c = ids_in(listed(api, f"?before={c}"))
    assert before_c[:2] == [b, a] and c not in before_c
    before_b = ids_in(listed(api, f"?before={b}"))
    assert before_b[:1] == [a] and b not in before_b and c not in before_b
    assert ids_in(listed(api, f"?before={c}&limit=1")) == [b]
    assert ids_in(listed(api, f"?since={a}&before={c}")) == [b]
    assert api.get("/containers/json?since=ffffffffffff").status == 404
    assert api.get("/containers/json?limit=x").status == 400


def test_list_size_reports_the_rw_layer_growing(api, busybox):
    cid = api.create(["sh", "-c", "dd if=/dev/zero of=/big bs=1024 count=1024 2>/dev/null"])
    row0 = {r["Id"]: r for r in listed(api, "?all=1&size=1")}[cid[:12]]
    assert {"SizeRw", "SizeRootFs"} <= set(row0), row0
    api.start(cid)
    assert api.wait(cid) == 0
    row1 = {r["Id"]: r for r in listed(api, "?all=1&size=1")}[cid[:12]]
    assert row1["SizeRw"] >= row0["SizeRw"] + MiB, (row0, row1)
    assert row1["SizeRootFs"] > row1["SizeRw"], row1
    assert "SizeRw" not in {r["Id"]: r for r in listed(api, "?all=1")}[cid[:12]]


# --------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", PREFIXES)
def test_inspect_has_the_documented_keys(api, busybox, prefix):
    cid = api.create(["sh", "-c", "exit 2"], Env=["A=b"])
    info = inspect(api, cid, prefix)
    assert {"Id", "Created", "Path", "Args", "Config", "State", "Image", "NetworkSettings",
            "SysInitPath", "ResolvConfPath", "Volumes"} <= set(info), info
    assert info["Id"] == cid
    assert info["Path"] == "sh" and info["Args"] == ["-c", "exit 2"]
    assert info["Config"]["Cmd"] == ["sh", "-c", "exit 2"] and info["Config"]["Image"] == "busybox"
    assert "A=b" in info["Config"]["Env"]
    assert info["Image"] == busybox and HEX64.match(info["Image"])
    assert {"IpAddress", "IPAddress"} <= set(info["NetworkSettings"]), info["NetworkSettings"]
    st = info["State"]
    assert {"Running", "Pid", "ExitCode", "StartedAt", "FinishedAt", "Ghost"} <= set(st), st
    assert st["Running"] is False and st["Pid"] == 0 and st["Ghost"] is False
    api.start(cid)
    assert api.wait(cid) == 2
    st = inspect(api, cid, prefix)["State"]
    assert st["ExitCode"] == 2 and st["StartedAt"] != ZERO_TIME and st["FinishedAt"] != ZERO_TIME, st
    assert st["FinishedAt"] >= st["StartedAt"], st


@pytest.mark.parametrize("prefix", PREFIXES)
def test_inspect_unknown_is_404_and_prefix_lookup_works(api, busybox, prefix):
    assert api.get(f"{prefix}/containers/{'e' * 64}/json").status == 404
    assert api.get(f"{prefix}/containers/nosuch/json").status == 404
    cid = api.create(["true"])
    assert inspect(api, cid[:12], prefix)["Id"] == cid
    assert api.post(f"{prefix}/containers/{cid[:12]}/start").status == 204
    assert api.post(f"{prefix}/containers/{cid[:12]}/wait").json() == {"StatusCode": 0}


# --------------------------------------------------------------------------
# output capture
# --------------------------------------------------------------------------

def test_output_is_captured_from_the_first_byte(api, busybox):
    code, out, _ = sh(api, "echo first; sleep 0.5; echo second")
    assert (code, out) == (0, "first\nsecond\n")


def test_stdout_and_stderr_are_separate(api, busybox):
    cid = api.create(["sh", "-c", "echo out; echo err >&2; echo out2"])
    api.start(cid)
    assert api.wait(cid) == 0
    assert api.logs(cid, stdout=1, stderr=0) == b"out\nout2\n"
    assert api.logs(cid, stdout=0, stderr=1) == b"err\n"
    both = api.logs(cid)
    assert sorted(both.splitlines()) == [b"err", b"out", b"out2"]


# --------------------------------------------------------------------------
# the daemon going away: kill -9 and restart, graceful shutdown
# --------------------------------------------------------------------------

def test_daemon_kill9_and_restart_leaves_no_false_running_and_no_leaks(new_daemon, busybox_tar):
    d = new_daemon()
    d.start()
    import_busybox(d.api, busybox_tar)
    code, _, exited = d.api.run(["sh", "-c", "exit 7"])
    assert code == 7
    cid = d.api.create(["sleep", "1000"])
    d.api.start(cid)
    pid = inspect(d.api, cid)["State"]["Pid"]
    assert proc_is(pid, "sleep")

    d.kill9()
    d2 = new_daemon(root=d.root)
    d2.start()
    st = inspect(d2.api, cid)["State"]
    assert st["Running"] is False, st
    assert st["FinishedAt"] != ZERO_TIME and st["Pid"] == 0, st
    assert cid[:12] not in ids_in(listed(d2.api))
    assert poll(lambda: not proc_is(pid, "sleep"), 10), f"pid {pid} still runs sleep"
    assert not [ln for ln in host_mountinfo() if d.root in ln]
    assert not leaked_cgroups(cid)
    assert inspect(d2.api, exited)["State"]["ExitCode"] == 7
    assert d2.api.wait(exited) == 7

    d2.api.start(cid)
    st = inspect(d2.api, cid)["State"]
    assert st["Running"] is True and proc_is(st["Pid"], "sleep"), st
    assert d2.api.post(f"/containers/{cid}/kill").status == 204
    assert d2.api.delete(f"/containers/{cid}").status == 204
    assert d2.stop() == 0


def test_graceful_shutdown_stops_running_containers(new_daemon, busybox_tar):
    d = new_daemon()
    d.start()
    import_busybox(d.api, busybox_tar)
    cid = d.api.create(["sleep", "1000"])
    d.api.start(cid)
    pid = inspect(d.api, cid)["State"]["Pid"]
    assert proc_is(pid, "sleep")
    assert d.stop(signal.SIGTERM, timeout=60) == 0, d.log()
    assert not proc_is(pid, "sleep")
    assert not leaked_cgroups(cid)
    assert not [ln for ln in host_mountinfo() if d.root in ln]
    # The record on disk (docs/storage.md) says so too.
    with open(os.path.join(d.root, "containers", cid, "container.json")) as f:
        st = json.load(f)["state"]
    assert st["status"] == "exited" and st["finished_at"] != ZERO_TIME, st


# --------------------------------------------------------------------------
# many at once, and nothing left behind
# --------------------------------------------------------------------------

def test_fifty_parallel_cycles_succeed_and_leak_nothing(daemon, api, busybox):
    pid = daemon.server_pid()
    mounts0 = [ln for ln in host_mountinfo() if daemon.root in ln]
    fds0, threads0 = daemon_fds(pid), daemon_threads(pid)

    def cycle(i):
        cid = api.create(["sh", "-c", f"echo n{i}; exit {i % 3}"])
        r = api.post(f"/containers/{cid}/start")
        assert r.status == 204, r
        code = api.wait(cid)
        out = api.logs(cid)
        r = api.delete(f"/containers/{cid}")
        assert r.status == 204, r
        return cid, code, out

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(cycle, range(50), timeout=300))
    assert len(results) == 50
    for i, (cid, code, out) in enumerate(results):
        assert code == i % 3, (i, code, out)
        assert out == f"n{i}\n".encode(), (i, out)
    ids = [cid for cid, _, _ in results]
    assert len(set(ids)) == 50
    assert not [cid for cid in ids if leaked_cgroups(cid)]
    assert not [cid for cid in ids if os.path.exists(os.path.join(daemon.root, "containers", cid))]
    left = set(os.listdir(os.path.join(daemon.root, "containers")))
    assert not left & set(ids)
    assert [ln for ln in host_mountinfo() if daemon.root in ln] == mounts0
    assert poll(lambda: daemon_fds(pid) <= fds0 + 4, 10), (fds0, daemon_fds(pid))
    assert poll(lambda: daemon_threads(pid) <= threads0 + 3, 10), (threads0, daemon_threads(pid))
    listed_ids = set(ids_in(listed(api, "?all=1")))
    assert not listed_ids & {cid[:12] for cid in ids}
