"""HostConfig launch options in real containers, at the runtime layer:
capability sets, privileged, read-only root, tmpfs, host and none networks,
and pyd-init as pid 1. Drives pyd.native.spawn (through runtime.spec for
the tmpfs rules) as root with the busybox boxes of test_native, no daemon.
"""

import errno
import os
import signal
import stat
import subprocess
import sys

import pytest

from pyd import native
from pyd.runtime import caps as capabilities
from pyd.runtime import devices
from pyd.runtime.spec import tmpfs_entries

from .test_native import Box, read_all, reaped, status_field

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EXTRA_APPLETS = ["readlink", "kill", "stat", "ip", "chown", "tr"]
# Nodes every container's /dev has (native/shim.c's table).
DEFAULT_NODES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}


@pytest.fixture
def box(tmp_path):
    b = Box(tmp_path)
    for a in EXTRA_APPLETS:
        if not (b.lower / "bin" / a).exists():
            os.symlink("busybox", b.lower / "bin" / a)
    return b


def own_bounding():
    with open("/proc/self/status") as f:
        return int(status_field(f.read(), "CapBnd"), 16)


def mounts_of(out):
    """{mount point: options} from /proc/mounts text (the last mount wins)."""
    res = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4:
            res[f[1]] = (f[2], f[3].split(","))
    return res


def code(status):
    return os.waitstatus_to_exitcode(status)


# -- capabilities --------------------------------------------------------

def test_capability_set_comes_from_the_spec(box):
    caps = capabilities.mask(list(capabilities.DEFAULT) + ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
    out = box.ok("cat /proc/self/status", caps=caps)
    want = f"{caps:016x}"
    assert status_field(out, "CapBnd") == want and status_field(out, "CapEff") == want
    assert status_field(out, "CapPrm") == want and status_field(out, "CapInh") == "0" * 16
    # NET_ADMIN is really there: lo can be taken down and up again.
    box.ok("ip link set lo down && ip link set lo up", caps=caps)


def test_no_capabilities_at_all(box):
    out = box.ok("cat /proc/self/status", caps=0)
    assert status_field(out, "CapBnd") == status_field(out, "CapEff") == "0" * 16
    # Without CAP_CHOWN and CAP_DAC_OVERRIDE root is an ordinary user.
    out, status = box.run("touch /tmp/f && chown 1000 /tmp/f", caps=0)
    assert code(status) != 0 and "Operation not permitted" in out, out


def test_default_set_drops_net_admin(box):
    out, status = box.run("ip link set lo down")
    assert code(status) != 0, out
    out = box.ok("cat /proc/self/status")
    assert status_field(out, "CapEff") == f"{native.DEFAULT_CAPS:016x}"


def test_capabilities_beyond_the_kernel_are_ignored(box):
    # Bit 63 is no capability of any kernel: the shim keeps what exists.
    out = box.ok("cat /proc/self/status", caps=native.DEFAULT_CAPS | (1 << 63))
    assert status_field(out, "CapBnd") == f"{native.DEFAULT_CAPS:016x}"


def test_non_root_user_has_no_effective_capabilities(box):
    out = box.ok("cat /proc/self/status", uid=1000, gid=1000,
                 caps=capabilities.mask(capabilities.NAMES))
    assert status_field(out, "CapEff") == "0" * 16
    assert status_field(out, "CapBnd") == f"{own_bounding():016x}"


# -- privileged -----------------------------------------------------------

def privileged(box, cmd, **kw):
    return box.ok(cmd, privileged=True, caps=capabilities.mask(capabilities.NAMES),
                  devices=devices.host_devices(), **kw)


def test_privileged_has_every_capability_and_nothing_masked(box):
    out = privileged(box, "cat /proc/self/status; echo ==; cat /proc/mounts")
    status, mounts = out.split("==\n")
    # Every capability the daemon has (this test process is the daemon here).
    assert status_field(status, "CapEff") == f"{own_bounding():016x}"
    m = mounts_of(mounts)
    for path in ("/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/sys", "/proc/bus"):
        assert path not in m, (path, mounts)
    assert "rw" in m["/sys"][1], mounts


def test_unprivileged_masks_stay(box):
    m = mounts_of(box.ok("cat /proc/mounts"))
    assert "ro" in m["/sys"][1] and "ro" in m["/proc/sys"][1]
    assert {"/proc/keys", "/proc/timer_list", "/sys/firmware"} <= set(m)


def test_privileged_gets_the_host_devices(box):
    host = {p: (mode, major, minor) for p, mode, major, minor, _, _ in devices.host_devices()}
    assert "/dev/console" not in host and not any(p.startswith("/dev/pts/") for p in host)
    block = [p for p, (mode, _, _) in sorted(host.items()) if stat.S_ISBLK(mode)][:1]
    char = [p for p, (mode, _, _) in sorted(host.items())
            if stat.S_ISCHR(mode) and p not in DEFAULT_NODES]
    nested = [p for p in char if p.count("/") > 2][:1]  # e.g. /dev/net/tun
    probe = block + char[:1] + nested
    assert probe
    out = privileged(box, " ; ".join(f"stat -c '%n %F %t %T %a' {p}" for p in probe))
    for line in out.splitlines():
        path, rest = line.split(" ", 1)
        mode, major, minor = host[path]
        kind = "block special file" if stat.S_ISBLK(mode) else "character special file"
        assert rest.startswith(kind), line
        assert rest.split()[-3:] == [f"{major:x}", f"{minor:x}", f"{stat.S_IMODE(mode):o}"], line
    # The default nodes are still the container's own.
    assert privileged(box, "stat -c %t:%T /dev/null").strip() == "1:3"


def test_unprivileged_has_no_host_devices(box):
    out, status = box.run("ls /dev/kmsg /dev/loop0")
    assert code(status) != 0 and "No such file" in out, out


def test_bad_device_entry_is_reported(box):
    with pytest.raises(OSError) as e:
        box.run("true", devices=[("/etc/evil", stat.S_IFCHR | 0o600, 1, 3, 0, 0)])
    assert e.value.errno == errno.EINVAL and "devices: /etc/evil" in str(e.value)


# -- read-only root -------------------------------------------------------

def test_readonly_root_keeps_api_mounts_binds_and_tmpfs_writable(box, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    binds = box.spec(["true"]).binds + [(str(vol), "/data", False)]
    out, status = box.run(
        "touch /newfile; echo rc=$?; echo x > /tmp/t && echo tmp-ok; echo y > /dev/shm/s && echo shm-ok;"
        " echo 10.0.0.1 h >> /etc/hosts && echo hosts-ok; echo z > /data/f && echo data-ok; pwd",
        readonly_rootfs=True, binds=binds, cwd="/made/for/me",
        tmpfs=tmpfs_entries([("/tmp", "")], binds))
    assert code(status) == 0, out
    lines = out.splitlines()
    assert "Read-only file system" in lines[0] and lines[1] == "rc=1", out
    assert lines[2:] == ["tmp-ok", "shm-ok", "hosts-ok", "data-ok", "/made/for/me"], out
    assert (vol / "f").read_text() == "z\n"
    assert "10.0.0.1 h" in (box.cdir / "hosts").read_text()
    # Nothing reached the container's upper layer but the working directory
    # and the bind's mount point, both made before the remount.
    assert sorted(p.name for p in box.upper.iterdir()) == ["data", "made"]


def test_readonly_root_mount_line(box):
    m = mounts_of(box.ok("cat /proc/mounts", readonly_rootfs=True))
    assert m["/"][0] == "overlay" and "ro" in m["/"][1]
    assert "rw" in m["/dev"][1] and "rw" in m["/proc"][1]


# -- tmpfs ------------------------------------------------------------------

def test_tmpfs_with_options_and_docker_defaults(box):
    spec_tmpfs = tmpfs_entries([("/run/x", "size=64m,mode=1770,uid=1000"), ("/scratch", "exec")], [])
    out = box.ok("cat /proc/mounts; stat -c '%a %u' /run/x", tmpfs=spec_tmpfs)
    m = mounts_of(out)
    fstype, opts = m["/run/x"]
    assert fstype == "tmpfs"
    assert {"rw", "nosuid", "nodev", "noexec", "size=65536k", "mode=1770", "uid=1000"} <= set(opts), opts
    assert "noexec" not in m["/scratch"][1] and "nosuid" in m["/scratch"][1]
    assert out.splitlines()[-1] == "1770 1000"


def test_tmpfs_nests_with_binds(box, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "hello").write_text("from the host\n")
    binds = box.spec(["true"]).binds + [(str(vol), "/work/data", False)]
    # The tmpfs on /work goes before the bind inside it, whatever the list order.
    entries = tmpfs_entries([("/work/data/cache", ""), ("/work", "")], binds)
    assert [e[0] for e in entries] == ["/work", "/work/data/cache"]
    assert entries[0][3] == len(binds) - 1 and entries[1][3] == len(binds)
    out = box.ok("cat /work/data/hello; touch /work/data/cache/c; ls /work/data",
                 binds=binds, tmpfs=entries)
    assert out.splitlines() == ["from the host", "cache", "hello"], out
    assert sorted(p.name for p in vol.iterdir()) == ["cache", "hello"]
    assert list((vol / "cache").iterdir()) == []  # the file went into the tmpfs


def test_tmpfs_target_symlink_stays_inside_the_root(box, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), box.lower / "evil")
    out = box.ok("cat /proc/mounts", tmpfs=tmpfs_entries([("/evil/t", "")], []))
    # The link resolved inside the container: <root>/<tmp_path>/outside/t.
    assert str(outside) + "/t" in mounts_of(out), out
    assert list(outside.iterdir()) == []


def test_tmpfs_failure_names_the_target(box):
    (box.lower / "file").write_text("")
    with pytest.raises(OSError) as e:
        box.run("true", tmpfs=tmpfs_entries([("/file/sub", "")], []))
    assert e.value.errno == errno.ENOTDIR and "tmpfs: /file/sub" in str(e.value)


def test_tmpfs_out_of_order_is_refused_before_clone(box):
    with pytest.raises(OSError) as e:
        box.run("true", tmpfs=[("/a", 0, "", 3), ("/b", 0, "", 0)])
    assert e.value.errno == errno.EINVAL


# -- networks ---------------------------------------------------------------

def test_host_network_shares_the_daemon_namespace(box):
    mine = os.readlink("/proc/self/ns/net")
    assert box.ok("readlink /proc/self/ns/net", share_netns=True).strip() == mine
    # Other namespaces stay private.
    assert box.ok("readlink /proc/self/ns/uts", share_netns=True).strip() != os.readlink("/proc/self/ns/uts")


def test_private_network_has_only_lo_up(box):
    mine = os.readlink("/proc/self/ns/net")
    out = box.ok("readlink /proc/self/ns/net; ls /sys/class/net; cat /sys/class/net/lo/flags")
    ns, *rest = out.splitlines()
    assert ns != mine and rest == ["lo", "0x9"], out  # IFF_UP | IFF_LOOPBACK


# -- init -------------------------------------------------------------------

def test_init_is_pid_1_and_runs_the_command_as_its_child(box):
    out = box.ok("echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/1/exe; "
                 "stat -c %u /proc/1", init=True)
    pid, cmdline, exe, uid = out.splitlines()
    assert pid != "1"
    assert cmdline.startswith("pyd-init -- sh -c echo $$"), cmdline
    assert exe.startswith("/memfd:pyd-init"), exe
    assert uid == "0"


def test_init_exit_codes(box):
    assert code(box.run("exit 7", init=True)[1]) == 7
    # Killed by a signal: 128 + the signal, as docker-init.
    assert code(box.run("kill -KILL $$", init=True)[1]) == 128 + signal.SIGKILL
    # Without init the same process is pid 1 and SIGKILL from inside is dropped.
    assert code(box.run("kill -KILL $$; exit 3")[1]) == 3


def test_init_reaps_orphans(box):
    # The orphaned subshell children are re-parented to pid 1, exit, and must
    # not stay zombies.
    out = box.ok("(sleep 0.05 & sleep 0.05 &) ; sleep 0.5; ps -o pid,ppid,stat,comm", init=True)
    rows = [l.split() for l in out.splitlines()[1:]]
    assert not [r for r in rows if r[2].startswith("Z")], out
    assert [r[3] for r in rows if r[0] == "1"] == ["pyd-init"], out


def test_init_forwards_signals(box):
    r, w = os.pipe()
    try:
        try:
            child = native.spawn(box.spec(
                ["sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; "
                 "while true; do sleep 0.05; done"], stdout=w, stderr=w, init=True))
        finally:
            os.close(w)
        assert os.read(r, 6) == b"ready\n"
        os.kill(child.pid, signal.SIGTERM)   # to pid 1, as docker stop does
        out = read_all(r).decode()
    finally:
        os.close(r)
    _, status = os.waitpid(child.pid, 0)
    assert "got-term" in out and code(status) == 3, out


def test_init_default_term_ends_the_command(box):
    r, w = os.pipe()
    try:
        try:
            child = native.spawn(box.spec(["sh", "-c", "echo ready; exec sleep 30"],
                                          stdout=w, stderr=w, init=True))
        finally:
            os.close(w)
        assert os.read(r, 6) == b"ready\n"
        os.kill(child.pid, signal.SIGTERM)
        read_all(r)
    finally:
        os.close(r)
    _, status = os.waitpid(child.pid, 0)
    assert code(status) == 128 + signal.SIGTERM


def test_init_exec_failure_is_reported_like_the_shims(box):
    for on_clone in (None, lambda pid: None):  # vfork and fork-like clones
        with pytest.raises(OSError) as e:
            box.run("", argv=["nosuchbin"], init=True, on_clone=on_clone)
        assert e.value.errno == errno.ENOENT
        assert str(e.value).endswith('exec: "nosuchbin": executable file not found in $PATH')


def test_init_with_a_user_and_a_tty(box):
    child = native.spawn(box.spec(["sh", "-c", "id -u; tty; ps -o pid,user,comm"], tty=True,
                                  uid=1000, gid=1000, init=True))
    try:
        out = read_all(child.pty_master).decode()
    finally:
        os.close(child.pty_master)
    _, status = os.waitpid(child.pid, 0)
    assert code(status) == 0, out
    lines = out.splitlines()
    assert lines[0].strip() == "1000" and lines[1].strip().startswith("/dev/pts/"), out
    assert reaped(child.pid)


def test_init_when_its_executable_lands_on_fd_3(tmp_path):
    # In a fresh interpreter the memfd of pyd-init is fd 3, the very number
    # the error pipe is moved to for pyd-init: the shim must move it first.
    script = (
        "import os, pathlib, sys\n"
        "from tests.integration.test_native import Box\n"
        "from pyd import native\n"
        "box = Box(pathlib.Path(sys.argv[1]))\n"
        "fd = os.dup(0); os.close(fd); assert fd == 3, fd\n"
        "child = native.spawn(box.spec(['sh', '-c', 'exit 5'], init=True))\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(child.pid, 0)[1]))\n")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=TOP,
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "5\n"), r.stderr
