"""HostConfig launch options through the real daemon: POST /v1.41/containers/create
with a HostConfig body, then start, wait and the output (legacy attach logs,
which serve every container).

Network: only 127.0.0.1.
"""

import os
import stat
import time

import pytest

from tests.pydtest import inspect

from pyd.runtime import caps as capabilities

CAPS_DEFAULT = "00000000a80425fb"


@pytest.fixture(scope="module")
def modern(api, busybox):
    return api


@pytest.fixture
def privileged_api(new_daemon, busybox_tar):
    d = new_daemon(extra_args=["--allow-privileged"]).start()
    r = d.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                   headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r
    return d.api


def create(api, script, host=None, **config):
    body = {"Image": "busybox", "Cmd": ["sh", "-c", script], "HostConfig": host or {}}
    body.update(config)
    r = api.post("/v1.41/containers/create", body)
    assert r.status == 201, r
    return r.json()["Id"]


def run(api, script, host=None, **config):
    cid = create(api, script, host, **config)
    api.start(cid)
    code = api.wait(cid)
    return code, api.logs(cid).decode(errors="replace"), cid


def ok(api, script, host=None, **config):
    code, out, _ = run(api, script, host, **config)
    assert code == 0, (code, out)
    return out


def field(out, name):
    return next(l.split()[1] for l in out.splitlines() if l.startswith(name + ":"))


def test_cap_add_and_drop(modern):
    out = ok(modern, "cat /proc/self/status", {"CapAdd": ["net_admin"], "CapDrop": ["CAP_CHOWN"]})
    want = capabilities.mask([c for c in capabilities.DEFAULT if c != "CAP_CHOWN"] + ["CAP_NET_ADMIN"])
    assert field(out, "CapEff") == field(out, "CapBnd") == f"{want:016x}"
    assert field(ok(modern, "cat /proc/self/status"), "CapBnd") == CAPS_DEFAULT
    assert field(ok(modern, "cat /proc/self/status", {"CapDrop": ["ALL"]}), "CapEff") == "0" * 16


def test_unknown_capability_is_400_at_create(modern):
    for host in ({"CapAdd": ["NET_FLY"]}, {"CapDrop": ["bogus"]}):
        r = modern.post("/v1.41/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": host})
        assert r.status == 400, r
        assert "unknown capability" in r.json()["message"]


def test_privileged(privileged_api):
    out = ok(privileged_api, "cat /proc/self/status; cat /proc/mounts; ls /dev",
             {"Privileged": True})
    assert int(field(out, "CapEff"), 16) == capabilities.mask(capabilities.supported())
    mounts = {l.split()[1]: l.split()[3].split(",") for l in out.splitlines() if len(l.split()) > 3}
    assert "rw" in mounts["/sys"] and "/proc/keys" not in mounts
    # The host's devices are there, and usable (the devices cgroup allows all).
    host_devs = {e.name for e in os.scandir("/dev")
                 if stat.S_ISCHR(e.stat(follow_symlinks=False).st_mode)
                 or stat.S_ISBLK(e.stat(follow_symlinks=False).st_mode)}
    assert host_devs - {"console"} <= set(out.split()), out
    if os.path.exists("/dev/kmsg"):
        ok(privileged_api, "head -c 1 /dev/kmsg >/dev/null", {"Privileged": True})
    # Without Privileged the same node, made with CAP_MKNOD, cannot be opened.
    code, out, _ = run(privileged_api, "mknod /tmp/k c 1 11 && head -c 1 /tmp/k")
    assert code != 0 and "Operation not permitted" in out, out


def test_privileged_is_refused_by_default(modern):
    r = modern.post("/v1.41/containers/create",
                    {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Privileged": True}})
    assert r.status == 403, r


def test_readonly_rootfs(modern):
    code, out, _ = run(modern, "touch /x; echo rc=$?; echo ok > /tmp/t && cat /tmp/t",
                       {"ReadonlyRootfs": True, "Tmpfs": {"/tmp": ""}})
    assert code == 0 and "Read-only file system" in out and "rc=1" in out and "ok" in out, out


def test_tmpfs_and_tmpfs_mounts(modern):
    out = ok(modern, "cat /proc/mounts",
             {"Tmpfs": {"/run": "size=1m"},
              "Mounts": [{"Type": "tmpfs", "Target": "/scratch",
                          "TmpfsOptions": {"SizeBytes": 2 << 20, "Mode": 0o1770}}]})
    lines = {l.split()[1]: l.split()[3] for l in out.splitlines()}
    assert "size=1024k" in lines["/run"] and "noexec" in lines["/run"]
    assert "size=2048k" in lines["/scratch"] and "mode=1770" in lines["/scratch"]


def test_bad_tmpfs_is_400_at_create(modern):
    for host in ({"Tmpfs": {"/run": "bogus=1"}}, {"Tmpfs": {"relative": ""}}):
        r = modern.post("/v1.41/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": host})
        assert r.status == 400, r


def test_network_host_and_none(modern):
    mine = os.readlink("/proc/self/ns/net")
    assert ok(modern, "readlink /proc/self/ns/net", {"NetworkMode": "host"}).strip() == mine
    out = ok(modern, "readlink /proc/self/ns/net; ls /sys/class/net", {"NetworkMode": "none"})
    assert out.split()[0] != mine and out.split()[1:] == ["lo"], out


def test_init_pid_1_and_stop(modern):
    out = ok(modern, "echo $$; cat /proc/1/comm", {"Init": True})
    pid, comm = out.split()
    assert pid != "1" and comm == "pyd-init"
    # docker stop: SIGTERM reaches the shell through pyd-init at once.
    cid = create(modern, "sleep 30", {"Init": True})
    modern.start(cid)
    t0 = time.monotonic()
    r = modern.post(f"/containers/{cid}/stop?t=10")
    assert r.status == 204, r
    assert time.monotonic() - t0 < 5
    assert inspect(modern, cid)["State"]["ExitCode"] == 143


def test_exec_into_a_container_with_init_and_options(daemon, modern):
    from .test_exec import run_exec
    cid = create(modern, "sleep 60", {"Init": True, "CapAdd": ["NET_ADMIN"], "ReadonlyRootfs": True})
    modern.start(cid)
    try:
        out, err, info = run_exec(daemon, modern, "/v1.41", cid,
                                  ["sh", "-c", "grep CapBnd /proc/self/status; cat /proc/1/comm; touch /x"])
        want = capabilities.mask(list(capabilities.DEFAULT) + ["CAP_NET_ADMIN"])
        assert f"CapBnd:\t{want:016x}" in out and "pyd-init" in out, out
        assert "Read-only file system" in err and info["ExitCode"] == 1, (out, err)
    finally:
        modern.post(f"/containers/{cid}/kill")
        modern.wait(cid)
