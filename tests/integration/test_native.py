"""pyd.native against real containers: busybox in an overlay, no daemon.

Needs root and the compiled shim (python3 native/build.py).  Each test
builds a throwaway busybox rootfs under tmp_path and spawns real
containers through pyd.native.spawn, reading their output from a pipe.
"""

import errno
import os
import shutil
import threading

import pytest

from pyd.native import LaunchSpec, spawn, step_name

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "cat", "ls", "ps", "mount", "id", "hostname", "sleep", "true",
           "tty", "stty", "echo", "grep", "wc", "pwd", "touch", "test"]
CAPS_DEFAULT = "00000000a80425fb"


class Box:
    """A busybox image (lower), an overlay upper/work and a mount point."""

    def __init__(self, base):
        self.base = base
        self.lower = base / "lower"
        self.upper = base / "upper"
        self.work = base / "work"
        self.root = base / "root"
        self.cdir = base / "container"  # hosts, hostname, resolv.conf
        for d in (self.upper, self.work, self.root, self.cdir):
            d.mkdir(parents=True)
        for d in ("bin", "etc", "proc", "dev", "sys", "tmp", "mnt"):
            (self.lower / d).mkdir(parents=True)
        shutil.copy2(BUSYBOX, self.lower / "bin" / "busybox")
        for a in APPLETS:
            os.symlink("busybox", self.lower / "bin" / a)
        (self.lower / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n")
        (self.lower / "etc" / "group").write_text("root:x:0:\ntty:x:5:\nuser:x:1000:\n")
        for name in ("hosts", "hostname", "resolv.conf"):
            (self.lower / "etc" / name).write_text("")
        (self.cdir / "hosts").write_text("127.0.0.1\tlocalhost\n")
        (self.cdir / "hostname").write_text("box\n")
        (self.cdir / "resolv.conf").write_text("nameserver 192.0.2.53\n")

    def spec(self, argv, **kw):
        files = [(str(self.cdir / n), "/etc/" + n, False)
                 for n in ("hosts", "hostname", "resolv.conf")]
        base = dict(rootfs=str(self.root), hostname="box", argv=argv,
                    env=["PATH=/bin", "HOME=/root"], cwd="/",
                    lowerdirs=[str(self.lower)], upperdir=str(self.upper),
                    workdir=str(self.work), binds=files)
        base.update(kw)
        return LaunchSpec(**base)

    def run(self, cmd, on_clone=None, **kw):
        """Run `sh -c cmd`; return (output, wait status)."""
        argv = kw.pop("argv", ["sh", "-c", cmd])
        r, w = os.pipe()
        try:
            try:
                child = spawn(self.spec(argv, stdout=w, stderr=w, **kw), on_clone=on_clone)
            finally:
                os.close(w)
            out = read_all(r)
        finally:
            os.close(r)
        _, status = os.waitpid(child.pid, 0)
        return out.decode(), status

    def ok(self, cmd, **kw):
        out, status = self.run(cmd, **kw)
        assert os.waitstatus_to_exitcode(status) == 0, out
        return out


def read_all(fd):
    chunks = []
    while True:
        try:
            b = os.read(fd, 65536)
        except OSError as e:
            if e.errno == errno.EIO:  # pty master after the slave side closed
                break
            raise
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def reaped(pid):
    """True if pid is no longer our (zombie) child."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.fixture
def box(tmp_path):
    return Box(tmp_path)


def status_field(out, name):
    for line in out.splitlines():
        if line.startswith(name + ":"):
            return line.split()[1]
    raise AssertionError(f"{name} not in {out!r}")


def test_step_names():
    assert step_name(1) == "make-private"
    assert step_name(9) == "pivot_root"
    assert step_name(999) == "unknown"


def test_hostname_pid1_and_ps(box):
    # "; true" keeps sh from exec'ing ps in place of itself.
    out = box.ok("hostname; echo $$; ps -o pid,comm; true")
    lines = out.splitlines()
    assert lines[0] == "box"
    assert lines[1] == "1"
    pids = sorted(int(l.split()[0]) for l in lines[3:])
    # sh (pid 1) and the ps it runs: nothing of the host.
    assert len(pids) == 2 and pids[0] == 1, out


def test_host_mounts_not_visible(box, tmp_path):
    out = box.ok("cat /proc/mounts")
    lines = out.splitlines()
    roots = [l for l in lines if l.split()[1] == "/"]
    assert len(roots) == 1 and roots[0].startswith("overlay / overlay "), out
    # Every other line: no host path of ours, no host filesystem (except
    # the three files bind-mounted from the container's directory).
    files = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
    assert files <= {l.split()[1] for l in lines}
    for line in lines:
        if line in roots or line.split()[1] in files:
            continue
        dev, mnt = line.split()[:2]
        for p in [str(tmp_path)] + [str(a) for a in tmp_path.parents if str(a) != "/"]:
            assert p not in dev and not mnt.startswith(p), line
        assert "cgroup" not in line and not dev.startswith("/dev/"), line
    mnts = {l.split()[1] for l in lines}
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"} <= mnts
    sysline = [l for l in lines if l.split()[1] == "/sys"][0]
    assert sysline.split()[3].startswith("ro,"), sysline
    procopts = [l for l in lines if l.split()[1] == "/proc"][0].split()[3].split(",")
    assert {"nosuid", "nodev", "noexec"} <= set(procopts)


def test_capabilities(box):
    out = box.ok("grep Cap /proc/self/status")
    assert status_field(out, "CapEff") == CAPS_DEFAULT
    assert status_field(out, "CapPrm") == CAPS_DEFAULT
    assert status_field(out, "CapBnd") == CAPS_DEFAULT
    assert int(status_field(out, "CapInh"), 16) == 0
    assert int(status_field(out, "CapAmb"), 16) == 0


def test_signals_default(box):
    # Python ignores SIGPIPE/SIGXFSZ; that must not leak into the container.
    # Run grep directly: busybox sh itself ignores SIGQUIT for its children.
    out = box.ok(None, argv=["grep", "-E", "Sig(Ign|Blk)", "/proc/self/status"])
    assert int(status_field(out, "SigIgn"), 16) == 0
    assert int(status_field(out, "SigBlk"), 16) == 0


def test_only_std_fds(box):
    # An inheritable fd in the parent must still not reach the container.
    r, w = os.pipe()
    os.set_inheritable(r, True)
    try:
        out = box.ok("ls /proc/self/fd")
    finally:
        os.close(r)
        os.close(w)
    # 3 is ls's own handle on /proc/self/fd.
    assert sorted(out.split()) == ["0", "1", "2", "3"], out


def test_masked_and_readonly_paths(box):
    masked = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug")
              if os.path.exists(p)]
    assert masked, "no maskable /proc file on this host"
    cmds = "; ".join(f"echo {p} $(cat {p} | wc -c)" for p in masked)
    out = box.ok(cmds)
    for p in masked:
        assert f"{p} 0" in out, out
    out, status = box.run("echo x > /proc/sys/kernel/hostname")
    assert status != 0 and "Read-only" in out, out
    out, status = box.run("echo x > /proc/sysrq-trigger")
    assert status != 0, out
    out = box.ok("ls -A /sys/firmware | wc -l; grep ' /sys/firmware ' /proc/mounts")
    assert out.splitlines()[0].strip() == "0"
    assert " ro," in out


def test_mount_refused(box):
    out, status = box.run("mount -t tmpfs none /mnt")
    assert os.waitstatus_to_exitcode(status) != 0, out


def test_loopback_up(box):
    flags = box.ok("cat /sys/class/net/lo/flags").strip()
    assert int(flags, 16) & 0x1  # IFF_UP


def test_dev_nodes(box):
    out = box.ok("ls -l /dev; echo hi > /dev/null && echo null-ok")
    for name in ("null", "zero", "full", "random", "urandom", "tty"):
        assert any(l.startswith("crw-rw-rw-") and l.endswith(" " + name)
                   for l in out.splitlines()), (name, out)
    for name in ("fd", "stdin", "stdout", "stderr", "ptmx", "pts", "shm"):
        assert any(l.split()[-1] == name or f" {name} -> " in l for l in out.splitlines()), name
    assert "null-ok" in out


def test_user_switch(box):
    out = box.ok("id -u; id -g; id -G; grep CapEff /proc/self/status",
                 uid=1000, gid=1000, groups=(5, 1000))
    lines = out.splitlines()
    assert lines[0] == "1000"
    assert lines[1] == "1000"
    assert sorted(lines[2].split()) == ["1000", "5"]
    assert int(lines[3].split()[1], 16) == 0


def test_cwd_created_and_honored(box):
    out = box.ok("pwd", cwd="/work/a/b")
    assert out.strip() == "/work/a/b"
    assert (box.upper / "work" / "a" / "b").is_dir()


def test_missing_binary(box):
    pids = []
    with pytest.raises(OSError) as ei:
        box.run(None, argv=["nosuchbin"], on_clone=pids.append)
    e = ei.value
    assert e.errno == errno.ENOENT
    assert e.strerror == 'exec: "nosuchbin": executable file not found in $PATH'
    assert pids and reaped(pids[0])


def test_missing_absolute_binary_and_eacces(box):
    with pytest.raises(OSError) as ei:
        box.run(None, argv=["/bin/nope"])
    assert ei.value.errno == errno.ENOENT and '"/bin/nope"' in ei.value.strerror
    (box.lower / "bin" / "noexec").write_text("#!/bin/sh\n")
    with pytest.raises(OSError) as ei:
        box.run(None, argv=["noexec"])
    assert ei.value.errno == errno.EACCES and ei.value.strerror.startswith("exec: ")


def test_failing_step_is_named(box, tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(OSError) as ei:
        box.run("true", binds=[(missing, "/data", False)])
    assert ei.value.errno == errno.ENOENT
    assert ei.value.strerror == f"bind: {missing} -> /data"
    with pytest.raises(OSError) as ei:
        box.run("true", rootfs=str(tmp_path / "no-such-root"))
    assert ei.value.errno == errno.ENOENT and ei.value.strerror.startswith("rootfs: ")


def test_files_and_binds(box, tmp_path):
    ro = tmp_path / "ro"
    rw = tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "f").write_text("ro-data\n")
    out, status = box.run(
        "cat /etc/hostname /etc/resolv.conf /ro/f; "
        "echo w > /rw/new && echo rw-ok; echo w > /ro/g || echo ro-refused",
        binds=box.spec([]).binds + [(str(ro), "/ro", True), (str(rw), "/rw", False)])
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert "box\n" in out and "nameserver 192.0.2.53" in out and "ro-data" in out
    assert "rw-ok" in out and "ro-refused" in out
    assert (rw / "new").read_text() == "w\n"
    assert not (ro / "g").exists()


def test_bind_through_symlink_stays_inside(box, tmp_path):
    host_dir = tmp_path / "hostdir"  # what the image's symlinks point at
    host_dir2 = tmp_path / "hostdir2"
    for d in (host_dir, host_dir2):
        d.mkdir()
        (d / "marker").write_text("host\n")
    src = tmp_path / "volume"
    src.mkdir()
    (src / "payload").write_text("vol\n")
    # Absolute and ..-escaping relative links to a host path.
    os.symlink(str(host_dir), box.lower / "evil")
    os.symlink("../../../../../../../.." + str(host_dir2) + "/rel", box.lower / "evil2")
    before = sorted(os.listdir(host_dir)), sorted(os.listdir(host_dir2))
    mountinfo_before = open("/proc/self/mountinfo").read()

    out = box.ok("ls /evil; ls /evil2; grep -c . /proc/mounts",
                 binds=[(str(src), "/evil", True), (str(src), "/evil2", False)])
    assert out.splitlines()[:2] == ["payload", "payload"], out

    # The mounts landed in rootfs (overlay upper) under the link targets ...
    assert (box.upper / str(host_dir).lstrip("/")).is_dir()
    assert (box.upper / str(host_dir2).lstrip("/") / "rel").is_dir()
    # ... and the host directories were neither mounted on nor written to.
    assert (sorted(os.listdir(host_dir)), sorted(os.listdir(host_dir2))) == before
    mountinfo = open("/proc/self/mountinfo").read()
    assert str(host_dir) not in mountinfo
    assert mountinfo.count("\n") == mountinfo_before.count("\n")


def test_bind_through_symlink_to_etc(box, tmp_path):
    # The classic: /evil -> /etc in the image must not mount over host /etc.
    src = tmp_path / "volume"
    src.mkdir()
    (src / "payload").write_text("vol\n")
    os.symlink("/etc", box.lower / "evil")
    host_etc = sorted(os.listdir("/etc"))
    out = box.ok("ls /etc; ls /evil", binds=[(str(src), "/evil", False)])
    assert out.split() == ["payload", "payload"], out
    assert sorted(os.listdir("/etc")) == host_etc
    assert not os.path.exists("/etc/payload")
    assert " /etc " not in open("/proc/self/mountinfo").read()


def test_tty_as_user(box):
    child = spawn(box.spec(["sh", "-c", "tty; id -u; ls -ln $(tty)"], tty=True, uid=1000, gid=1000))
    try:
        out = read_all(child.pty_master).decode().replace("\r", "")
    finally:
        os.close(child.pty_master)
    os.waitpid(child.pid, 0)
    lines = out.splitlines()
    assert lines[:2] == ["/dev/pts/0", "1000"], out
    assert lines[2].split()[2] == "1000", out  # the user owns its terminal


def test_tty(box):
    child = spawn(box.spec(["sh", "-c", "tty; ls /dev/console; stty size >/dev/null && echo stty-ok"],
                           tty=True))
    try:
        assert child.pty_master is not None
        out = read_all(child.pty_master).decode()
    finally:
        os.close(child.pty_master)
    _, status = os.waitpid(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    lines = out.replace("\r", "").splitlines()
    assert lines[0] == "/dev/pts/0"
    assert "/dev/console" in lines and "stty-ok" in lines


def test_stdin_pipe(box):
    r, w = os.pipe()
    os.write(w, b"from-stdin\n")
    os.close(w)
    try:
        out = box.ok("cat", stdin=r)
    finally:
        os.close(r)
    assert out == "from-stdin\n"


def test_on_clone_gets_waiting_child(box):
    seen = {}

    def on_clone(pid):
        seen["pid"] = pid
        # Still the clone of this Python: it has not exec'd yet.
        seen["exe"] = os.readlink(f"/proc/{pid}/exe")

    r, w = os.pipe()
    try:
        child = spawn(box.spec(["true"], stdout=w, stderr=w), on_clone=on_clone)
    finally:
        os.close(w)
        os.close(r)
    os.waitpid(child.pid, 0)
    assert seen["pid"] == child.pid
    assert seen["exe"] == os.readlink("/proc/self/exe")


def test_on_clone_failure_kills_child(box):
    pids = []

    class Boom(Exception):
        pass

    def on_clone(pid):
        pids.append(pid)
        raise Boom()

    with pytest.raises(Boom):
        spawn(box.spec(["true"]), on_clone=on_clone)
    assert pids and reaped(pids[0])


def test_child_joins_its_cgroups_itself_first(box):
    """cgroup_fds: the child writes "0" to each v1 tasks file before any setup."""
    dirs = [f"/sys/fs/cgroup/{c}/pyd/native-test-{os.getpid()}" for c in ("memory", "pids")]
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    fds = [os.open(os.path.join(d, "tasks"), os.O_WRONLY | os.O_CLOEXEC) for d in dirs]
    try:
        out = box.ok("cat /proc/self/cgroup", cgroup_fds=fds, cgroup_paths=[d + "/tasks" for d in dirs])
    finally:
        for fd in fds:
            os.close(fd)
        for d in dirs:
            os.rmdir(d)
    lines = dict(line.split(":", 2)[1:] for line in out.splitlines())
    assert lines["memory"].endswith(f"/pyd/native-test-{os.getpid()}"), out
    assert lines["pids"].endswith(f"/pyd/native-test-{os.getpid()}"), out


def test_a_cgroup_the_child_cannot_join_is_reported(box):
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)  # not writable: write fails
    try:
        with pytest.raises(OSError) as ei:
            box.run("true", cgroup_fds=[fd], cgroup_paths=["/sys/fs/cgroup/memory/x/tasks"])
    finally:
        os.close(fd)
    assert ei.value.errno == errno.EBADF
    assert str(ei.value.strerror) == "cgroup: /sys/fs/cgroup/memory/x/tasks"


def test_copy_driver_and_layers_dir(box, tmp_path):
    # Copy driver: a plain directory bind-mounted as the root.
    out = box.ok("hostname", lowerdirs=(), upperdir=None, workdir=None,
                 rootfs_source=str(box.lower))
    assert out.strip() == "box"
    # layers_dir: lowerdirs become relative to keep the options short.
    layers = tmp_path / "layers"
    layers.mkdir()
    shutil.copytree(box.lower, layers / "base", symlinks=True)
    (layers / "top").mkdir()
    (layers / "top" / "hello").write_text("top\n")
    out = box.ok("cat /hello; grep ' / overlay ' /proc/mounts",
                 lowerdirs=[str(layers / "top"), str(layers / "base")],
                 layers_dir=str(layers))
    assert out.startswith("top\n")
    assert "lowerdir=top:base," in out


def test_no_fd_leak(box):
    def count():
        return len(os.listdir("/proc/self/fd"))

    before = count()
    for i in range(50):
        kind = i % 5
        if kind == 2:
            with pytest.raises(OSError):
                spawn(box.spec(["nosuchbin"], tty=True))
        elif kind == 3:
            with pytest.raises(OSError):
                box.run(None, argv=["nosuchbin"])
        elif kind == 4:
            child = spawn(box.spec(["true"], tty=True))
            read_all(child.pty_master)
            os.close(child.pty_master)
            os.waitpid(child.pid, 0)
        else:
            box.ok("true")
    assert count() == before


def test_concurrent_spawns(tmp_path):
    boxes = [Box(tmp_path / f"b{i}") for i in range(8)]
    errors = []

    def worker(b):
        try:
            for _ in range(5):
                assert b.ok("echo ok").strip() == "ok"
        except BaseException as e:  # collected and re-raised below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(b,), name=f"spawn-{i}")
               for i, b in enumerate(boxes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


# -- detached mounts (docker cp on a stopped container) ----------------------

def test_detached_overlay_and_binds_are_attached_nowhere(tmp_path):
    from pyd import native
    for d in ("lower", "upper", "work", "src", "ro"):
        (tmp_path / d).mkdir()
    (tmp_path / "lower" / "vol").mkdir()
    (tmp_path / "lower" / "rovol").mkdir()
    (tmp_path / "lower" / "base").write_text("base\n")
    (tmp_path / "src" / "in").write_text("src\n")
    fd = native.overlay_mount_fd([str(tmp_path / "lower")], str(tmp_path / "upper"), str(tmp_path / "work"))
    try:
        for name, src, ro in (("vol", "src", False), ("rovol", "ro", True)):
            t = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                native.attach_bind(str(tmp_path / src), t, readonly=ro)
            finally:
                os.close(t)
        with open(f"/proc/self/fd/{fd}/vol/in") as f:
            assert f.read() == "src\n"
        with open(f"/proc/self/fd/{fd}/vol/new", "w") as f:   # rw bind: into its source
            f.write("n")
        assert (tmp_path / "src" / "new").read_text() == "n"
        with pytest.raises(OSError) as e:
            open(f"/proc/self/fd/{fd}/rovol/x", "w")
        assert e.value.errno == errno.EROFS
        with open(f"/proc/self/fd/{fd}/written", "w") as f:  # the overlay: into its upper dir
            f.write("w")
        assert (tmp_path / "upper" / "written").read_text() == "w"
        with open("/proc/self/mountinfo") as f:
            assert str(tmp_path) not in f.read()
    finally:
        os.close(fd)
    ro = native.tree_fd(str(tmp_path / "src"), readonly=True)
    try:
        with pytest.raises(OSError) as e:
            open(f"/proc/self/fd/{ro}/y", "w")
        assert e.value.errno == errno.EROFS
    finally:
        os.close(ro)
    with pytest.raises(OSError) as e:
        native.overlay_mount_fd([str(tmp_path / "nowhere")])
    assert e.value.errno == errno.ENOENT
