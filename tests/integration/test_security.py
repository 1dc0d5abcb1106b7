"""Escapes tried from inside real containers (issue 14): each must fail.

A static probe (tests/pydtest/probe.c, built here with gcc -static) makes
the system calls Docker's default seccomp profile refuses and prints the
errno of each; the image is busybox plus the probe (and a setuid-root copy
of it). Run alone with `pytest -m security`.
"""

import hashlib
import io
import os
import subprocess
import tarfile
import time

import pytest

from tests.pydtest import daemon_cmd

pytestmark = pytest.mark.security
V = "/v1.41"
EPERM, ENOSYS = 1, 38
PROBE_SRC = os.path.join(os.path.dirname(__file__), os.pardir, "pydtest", "probe.c")


@pytest.fixture(scope="module")
def probe_image(api, busybox_tar, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe") / "probe"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(out), PROBE_SRC], check=True)
    data = out.read_bytes()
    buf = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(busybox_tar)) as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        for name, mode in (("probe", 0o755), ("suid-probe", 0o4755)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(data), mode, 0, 0, 1700000000
            dst.addfile(ti, io.BytesIO(data))
    r = api.post("/images/create?fromSrc=-&repo=secprobe&tag=latest", buf.getvalue(),
                 headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r
    return "secprobe"


def run(api, cmd, image="secprobe", **config):
    """create (on the modern path: HostConfig is the 1.41 one), start, wait, logs, remove."""
    r = api.post(f"{V}/containers/create", {"Image": image, "Cmd": cmd, **config})
    assert r.status == 201, r
    cid = r.json()["Id"]
    try:
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        code = api.wait(cid)
        return code, api.logs(cid).decode(errors="replace")
    finally:
        api.delete(f"{V}/containers/{cid}?force=1")


def probe(api, names, **config):
    code, out = run(api, ["/probe", *names], **config)
    assert code == 0, out
    got = dict(line.split() for line in out.splitlines() if line.strip())
    return {k: int(v) for k, v in got.items()}


BLOCKED = ["keyctl", "add_key", "request_key", "userfaultfd", "perf_event_open", "bpf", "vsock", "vsock_high",
           "unshare_user", "unshare_ns", "clone_ns", "mount", "umount2", "pivot_root", "kexec_load",
           "init_module", "open_by_handle_at", "swapon", "reboot", "settimeofday", "setns", "personality_bad",
           "x32_getpid"]


def test_the_default_profile_blocks_what_docker_blocks(api, probe_image):
    got = probe(api, ["getpid", "clone3", *BLOCKED])
    assert got["getpid"] == 0
    assert got["clone3"] == ENOSYS              # so that libcs fall back to clone
    wrong = {k: v for k, v in got.items() if k in BLOCKED and v != EPERM}
    assert not wrong, f"not refused with EPERM: {wrong}"


def test_the_status_shows_seccomp_and_no_new_privs(api, probe_image):
    code, out = run(api, ["grep", "-E", "^(Seccomp|NoNewPrivs|CapEff|CapInh|CapPrm):", "/proc/self/status"])
    fields = dict(line.split(":\t") for line in out.strip().splitlines())
    assert fields["Seccomp"].strip() == "2", out
    assert fields["NoNewPrivs"].strip() == "1", out
    assert fields["CapEff"].strip() == "00000000a80425fb", out
    assert fields["CapInh"].strip() == "0000000000000000", out
    code, out = run(api, ["grep", "-E", "^Cap(Eff|Prm):", "/proc/self/status"], User="1000")
    assert all(line.split()[1] == "0000000000000000" for line in out.strip().splitlines()), out


def test_unshare_from_busybox_fails(api, probe_image):
    code, out = run(api, ["unshare", "-Ur", "true"])
    assert code != 0, out


def test_unconfined_and_cap_sys_admin_lift_it_as_in_docker(api, probe_image):
    got = probe(api, ["keyctl", "unshare_ns"], HostConfig={"SecurityOpt": ["seccomp=unconfined"]})
    assert got["keyctl"] == 0 and got["unshare_ns"] == EPERM   # no CAP_SYS_ADMIN: the kernel refuses
    got = probe(api, ["unshare_ns", "mount", "keyctl"], HostConfig={"CapAdd": ["SYS_ADMIN"]})
    assert got["unshare_ns"] == 0 and got["keyctl"] == EPERM


def test_a_custom_profile_is_honoured(api, probe_image):
    import json
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                            {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]}]}
    got = probe(api, ["getpid", "keyctl", "vsock"], HostConfig={"SecurityOpt": ["seccomp=" + json.dumps(profile)]})
    assert got == {"getpid": 13, "keyctl": 0, "vsock": EPERM}
    r = api.post(f"{V}/containers/create", {"Image": "secprobe", "HostConfig": {"SecurityOpt": ["seccomp={nope"]}})
    assert r.status == 400, r
    r = api.post(f"{V}/containers/create", {"Image": "secprobe", "HostConfig": {"SecurityOpt": ["bogus=1"]}})
    assert r.status == 400, r


def test_exec_gets_the_same_filter(api, probe_image):
    cid = api.create(["sleep", "30"], image="secprobe")
    api.start(cid)
    try:
        r = api.post(f"{V}/containers/{cid}/exec", {"Cmd": ["/probe", "keyctl", "getpid", "unshare_user"],
                                                    "AttachStdout": True, "Tty": True})
        assert r.status == 201, r
        r = api.post(f"{V}/exec/{r.json()['Id']}/start", {"Detach": False, "Tty": True})
        assert r.status == 200, r
        got = dict(line.split() for line in r.body.decode().splitlines() if line.strip())
        assert got == {"keyctl": str(EPERM), "getpid": "0", "unshare_user": str(EPERM)}, r.body
    finally:
        api.post(f"/containers/{cid}/kill")
        api.post(f"/containers/{cid}/wait")
        api.delete(f"/containers/{cid}")


def test_a_setuid_binary_gives_nothing_to_user_1000(api, probe_image):
    code, out = run(api, ["/suid-probe", "euid"], User="1000")
    assert (code, out.strip()) == (0, "1000"), out
    # With no-new-privileges turned off, the kernel honours the bit again (the check can fail).
    code, out = run(api, ["/suid-probe", "euid"], User="1000",
                    HostConfig={"SecurityOpt": ["no-new-privileges=false"]})
    assert (code, out.strip()) == (0, "0"), out


def test_proc_and_sys_are_guarded(api, probe_image):
    script = ("for f in /proc/sysrq-trigger /proc/sys/kernel/core_pattern; do "
              "  (echo x > $f) 2>/dev/null && echo WROTE $f; done; "
              "for f in /proc/kcore /proc/keys /proc/timer_list; do "
              "  [ -s $f ] && head -c1 $f >/dev/null 2>&1 && echo READ $f; done; "
              "grep -E ' /(proc/sys|sys) ' /proc/mounts")
    code, out = run(api, ["sh", "-c", script])
    assert "WROTE" not in out and "READ" not in out, out
    assert all(" ro," in line or line.split()[3].startswith("ro") for line in out.splitlines() if line), out


def test_the_fd_table_holds_only_stdio(api, probe_image):
    code, out = run(api, ["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"])
    # 0 1 2, and the fd ls itself opened for the directory
    assert out.split() in (["0", "1", "2"], ["0", "1", "2", "3"]), out


@pytest.mark.parametrize("cwd", ["/proc/self/fd/3", "/proc/self/fd/7", "/proc/self/cwd/..", "/proc/1/root/x"])
def test_a_working_dir_through_a_magic_link_fails_the_start(daemon, api, probe_image, cwd):
    cid = api.create(["pwd"], image="secprobe", WorkingDir=cwd)
    r = api.post(f"/containers/{cid}/start")
    if r.status == 204:
        # Started: it must then be inside its own root (a missing link target made inside it).
        api.wait(cid)
        out = api.logs(cid).decode()
        assert out.startswith("/") and not out.startswith("/proc/self/fd"), out
    else:
        assert r.status >= 400, r
    api.delete(f"/containers/{cid}?force=1")
    # Nothing was made on the host through it.
    assert not os.path.exists(os.path.join(daemon.root, "x"))


def test_the_proc_self_exe_overwrite_fails(daemon, api, probe_image):
    """CVE-2019-5736: an entrypoint of /proc/self/exe runs, and reaches, only
    pyd's sealed pyd-init copy, never the daemon's binary."""
    binary = daemon_cmd()[0] if daemon_cmd()[0] != os.path.realpath("/proc/self/exe") else None
    exe = os.path.realpath(f"/proc/{daemon.server_pid()}/exe")
    before = hashlib.sha256(open(exe, "rb").read()).hexdigest()
    script = ("readlink /proc/1/exe; "
              "(echo overwrite > /proc/1/exe) 2>&1 && echo WROTE; "
              "(cat /proc/1/exe > /dev/null) && echo readable")
    code, out = run(api, ["--", "sh", "-c", script], Entrypoint=["/proc/self/exe"])
    assert "memfd:pyd-init" in out, out
    assert "WROTE" not in out, out
    code, out = run(api, [], Entrypoint=["/proc/self/exe"])
    assert "usage: pyd-init" in out, out
    assert hashlib.sha256(open(exe, "rb").read()).hexdigest() == before
    assert binary is None or os.path.exists(binary)


def test_a_fork_bomb_under_a_pids_limit_leaves_the_daemon_responsive(daemon, api, probe_image):
    # The modern create: the legacy one takes no HostConfig (v1.3's comes with start),
    # so PidsLimit there would leave the daemon's default of 4096 in force.
    r = api.post(f"{V}/containers/create", {"Image": "secprobe", "Cmd": ["sh", "-c", "b() { b | b & }; b; sleep 30"],
                                            "HostConfig": {"PidsLimit": 64}})
    assert r.status == 201, r
    cid = r.json()["Id"]
    api.start(cid)
    try:
        pid = api.get(f"{V}/containers/{cid}/json").json()["State"]["Pid"]
        assert pids_max(pid) == "64"
        time.sleep(2)
        started = time.monotonic()
        assert api.get("/version").status == 200
        assert time.monotonic() - started < 1.0
        top = api.get(f"{V}/containers/{cid}/top")
        assert top.status == 200 and len(top.json()["Processes"]) <= 64, top
    finally:
        api.post(f"/containers/{cid}/kill")
        api.wait(cid, timeout=60)
        api.delete(f"/containers/{cid}")


def pids_max(pid):
    """pids.max of the cgroup `pid` is in, on cgroup v1 or v2."""
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "pids":
            return open(f"/sys/fs/cgroup/pids{path}/pids.max").read().strip()
        if controllers == "":
            return open(f"/sys/fs/cgroup{path}/pids.max").read().strip()
    raise AssertionError("no pids cgroup")


@pytest.mark.parametrize("host, want", [({}, "4096"), ({"PidsLimit": 77}, "77"), ({"PidsLimit": -1}, "max"),
                                        ({"PidsLimit": 0}, "max")])
def test_the_default_pids_limit_applies_and_minus_one_lifts_it(api, probe_image, host, want):
    r = api.post(f"{V}/containers/create", {"Image": "secprobe", "Cmd": ["sleep", "30"], "HostConfig": host})
    assert r.status == 201, r
    cid = r.json()["Id"]
    try:
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        pid = api.get(f"{V}/containers/{cid}/json").json()["State"]["Pid"]
        assert pids_max(pid) == want
    finally:
        api.delete(f"{V}/containers/{cid}?force=1")


def test_mknod_works_but_the_device_cgroup_refuses_the_node(api, probe_image):
    """CAP_MKNOD is in Docker's default set, so mknod succeeds; the device
    cgroup then refuses to open anything but the default devices."""
    got = probe(api, ["mknod_mem", "open_mem"])
    assert got["mknod_mem"] == 0, got
    assert got["open_mem"] == EPERM, got
    code, out = run(api, ["sh", "-c", "ls /dev | sort | tr '\\n' ' '"])
    extra = set(out.split()) - {"console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random",
                                "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}
    assert not extra, f"/dev holds more than the default set: {extra}"
