"""Start a container process through the compiled shim (pyd._shim).

This is the only module that imports ``pyd._shim`` (built from native/shim.c
by native/build.py).  The C side clones the child into new mount, uts, ipc,
pid and net namespaces and does all of the setup up to execve without
running Python; this module prepares every byte the child needs, runs the
parent half of the handshake and turns a child failure, reported as
(step, errno), into ``OSError(errno, "<step>: <object>")``.

    spec = LaunchSpec(rootfs=..., hostname="abc", argv=["sh"], env=[...], cwd="/")
    child = spawn(spec, on_clone=lambda pid: cgroup.add(pid))
    child.pid, child.pty_master   # pty_master only with tty=True

Handshake (see native/shim.h): the child writes a READY record on the
error pipe once its root is set up; the parent then receives the pty
master (tty), calls ``on_clone(pid)`` (cgroups), and writes the go-ahead
byte.  EOF on the error pipe means execve succeeded; a record means it
failed, and the child has called ``_exit(127)``.
"""

import errno
import fcntl
import os
import threading
import signal
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

__all__ = ["ExecSpec", "LaunchSpec", "Spawned", "StepError", "exec_in", "spawn", "step_name"]

# struct pyd_report {int step; int err; int index;}
_REPORT = struct.Struct("=iii")

# Overlay mount options go through mount(2) as one page at most.
_MOUNT_DATA_MAX = 4095

_DEFAULT_CWD = "/"

# Docker's default capability set, bit n for capability n: CHOWN DAC_OVERRIDE
# FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT
# MKNOD AUDIT_WRITE SETFCAP.
DEFAULT_CAPS = 0xA80425FB

# pyd-init's fixed arguments before the command (native/init.c): as pid 1
# (HostConfig.Init), or as the stage every other process passes through.
_INIT_ARGV = ["pyd-init", "--"]
_PASS_ARGV = ["pyd-init", "--exec", "--"]
_sealed = {}            # "fd": the daemon's one sealed pyd-init memfd
_sealed_lock = threading.Lock()


@dataclass
class LaunchSpec:
    """Everything needed to start one container process.

    ``lowerdirs`` are ordered top-most first (overlayfs order).  With
    ``layers_dir`` set, lowerdirs under it are passed relative to it so the
    overlay option string stays under one page.  Without lowerdirs the
    copy driver is assumed: ``rootfs_source`` (or ``rootfs`` itself) is
    bind-mounted onto ``rootfs``.  ``binds`` holds ``(host_source,
    container_target, readonly)`` tuples, also used for /etc/hosts & co.
    ``stdin``/``stdout``/``stderr`` are fds (None: /dev/null); they are
    ignored with ``tty=True``.

    Launch options: ``caps`` is the capability set (bit n: capability n);
    ``share_netns`` keeps the daemon's network namespace, ``netns_fd`` joins
    the one open at that fd instead of making a new one; ``tmpfs`` holds
    ``(target, mount flags, data, before_bind)`` ordered by before_bind, the
    index of the bind each is mounted before; ``devices`` holds ``(path,
    st_mode, major, minor, uid, gid)`` nodes made in /dev; ``init`` runs
    argv under pyd-init as pid 1.
    """

    rootfs: str
    hostname: str
    argv: Sequence[str]
    env: object  # Sequence of "K=V" strings, or a Mapping
    cwd: str = _DEFAULT_CWD
    uid: int = 0
    gid: int = 0
    groups: Sequence[int] = ()
    lowerdirs: Sequence[str] = ()
    upperdir: Optional[str] = None
    workdir: Optional[str] = None
    layers_dir: Optional[str] = None
    rootfs_source: Optional[str] = None
    binds: Sequence[Tuple[str, str, bool]] = ()
    tty: bool = False
    stdin: Optional[int] = None
    stdout: Optional[int] = None
    stderr: Optional[int] = None
    # cgroup v1 "tasks" files open for writing: the child joins them itself
    # (see native/shim.h); their paths, for error messages.
    cgroup_fds: Sequence[int] = ()
    cgroup_paths: Sequence[str] = ()
    caps: int = DEFAULT_CAPS
    privileged: bool = False
    readonly_rootfs: bool = False
    share_netns: bool = False
    netns_fd: Optional[int] = None  # join this network namespace (made and wired by the daemon)
    tmpfs: Sequence[Tuple[str, int, str, int]] = ()
    devices: Sequence[Tuple[str, int, int, int, int, int]] = ()
    init: bool = False
    no_new_privs: bool = False
    seccomp: bytes = b""            # a BPF program (runtime.seccomp); b"": unconfined


@dataclass(frozen=True)
class Spawned:
    """A started container process.  The caller owns ``pty_master``."""

    pid: int
    pty_master: Optional[int]


def _shim():
    # Lazy: importing pyd.native must not load the extension.
    from pyd import _shim as mod

    return mod.ffi, mod.lib


def syscall_nr(name: str) -> int:
    """The number of system call `name` here, or -1 (the shim's build-time table)."""
    ffi, lib = _shim()
    return lib.pyd_syscall_nr(name.encode())


def audit_arch() -> int:
    """AUDIT_ARCH_* of this architecture, as seccomp_data.arch says it (0: unknown)."""
    ffi, lib = _shim()
    return lib.pyd_audit_arch()


def _set_seccomp(ffi, c, program: bytes, keep: list):
    if len(program) % 8:
        raise ValueError("seccomp: a BPF program is a whole number of 8-byte instructions")
    if program:
        buf = ffi.from_buffer(program)
        keep.append(buf)
        c.seccomp_filter = buf
    else:
        c.seccomp_filter = ffi.NULL
    c.seccomp_len = len(program) // 8


def step_name(step: int) -> str:
    """Name of a child setup step, e.g. ``"pivot_root"``."""
    ffi, lib = _shim()
    return ffi.string(lib.pyd_step_name(step)).decode()


def _bytes(value, what: str) -> bytes:
    b = os.fsencode(value)
    if b"\0" in b:
        raise OSError(errno.EINVAL, f"{what}: embedded null byte in {value!r}")
    return b


def _env_list(env) -> list:
    if env is None:
        return []
    if isinstance(env, Mapping):
        return [f"{k}={v}" for k, v in env.items()]
    return list(env)


def _overlay_data(spec: LaunchSpec) -> Optional[bytes]:
    """The "lowerdir=...,upperdir=...,workdir=..." string, or None."""
    if not spec.lowerdirs:
        return None
    lowers = []
    for d in spec.lowerdirs:
        d = os.fspath(d)
        if spec.layers_dir and os.path.isabs(d):
            rel = os.path.relpath(d, spec.layers_dir)
            if not rel.startswith(".."):
                d = rel
        lowers.append(d)
    parts = [("lowerdir", ":".join(lowers))]
    if spec.upperdir:
        parts.append(("upperdir", os.fspath(spec.upperdir)))
        parts.append(("workdir", os.fspath(spec.workdir or "")))
    for key, path in [("lowerdir", d) for d in lowers] + parts[1:]:
        # ',' separates options and ':' layers; refuse rather than escape.
        if not path or any(ch in path for ch in ",:\\"):
            raise OSError(errno.EINVAL, f"rootfs: unusable overlay {key} {path!r}")
    data = _bytes(",".join(f"{k}={v}" for k, v in parts), "rootfs")
    if len(data) > _MOUNT_DATA_MAX:
        raise OSError(errno.E2BIG, f"rootfs: overlay options are {len(data)} bytes, more than "
                      f"one page; pass layers_dir so lowerdirs can be relative")
    return data


def _cap_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0  # the child then probes until EINVAL


def _sealed_init(ffi, lib) -> int:
    """The daemon's sealed pyd-init memfd, made once. Every container
    process and exec process is exec'd through it (pyd-init --exec), so
    that none ever has the daemon's binary as its /proc/self/exe. Being
    sealed it cannot change, so one copy serves every child."""
    with _sealed_lock:
        if "fd" not in _sealed:
            _sealed["fd"] = _init_memfd(ffi, lib)
        return _sealed["fd"]


def _init_memfd(ffi, lib) -> int:
    """A sealed memfd holding pyd-init, for the child to exec.  Sealed (as
    runc's cloned binary) so that no container can write to the executable
    that other containers run as their pid 1 through /proc/1/exe."""
    size = ffi.new("size_t *")
    image = ffi.buffer(lib.pyd_init_image(size), size[0])
    fd = os.memfd_create("pyd-init", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(image)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK |
                    fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _to_c(ffi, spec: LaunchSpec, keep: list):
    """Build struct pyd_spec; every cffi buffer goes into ``keep``.
    c.init_fd is left -1: spawn opens pyd-init."""

    def cstr(value, what):
        if value is None:
            return ffi.NULL
        buf = ffi.new("char[]", _bytes(value, what))
        keep.append(buf)
        return buf

    def number_array(ctype, values):
        """(count, C array or NULL) of `values`."""
        values = list(values)
        if not values:
            return 0, ffi.NULL
        arr = ffi.new(f"{ctype}[]", values)
        keep.append(arr)
        return len(values), arr

    def cstr_array(values, what):
        items = [cstr(v, what) for v in values] + [ffi.NULL]
        arr = ffi.new("char *[]", items)
        keep.append(arr)
        return arr

    argv = list(spec.argv)
    if not argv or not argv[0]:
        raise OSError(errno.EINVAL, "exec: empty argv")
    cwd = os.fspath(spec.cwd or _DEFAULT_CWD)
    if not os.path.isabs(cwd):
        raise OSError(errno.EINVAL, f"chdir: working directory {cwd!r} is not absolute")
    if not os.path.isabs(os.fspath(spec.rootfs)):
        raise OSError(errno.EINVAL, f"rootfs: {spec.rootfs!r} is not absolute")

    c = ffi.new("struct pyd_spec *")
    keep.append(c)
    c.rootfs = cstr(spec.rootfs, "rootfs")
    c.hostname = cstr(spec.hostname or None, "sethostname")
    c.argv = cstr_array(argv, "exec")
    c.envp = cstr_array(_env_list(spec.env), "exec")
    c.cwd = cstr(cwd, "chdir")
    c.uid = spec.uid
    c.gid = spec.gid
    c.ngroups, c.groups = number_array("gid_t", spec.groups)
    data = _overlay_data(spec)
    if data is not None:
        buf = ffi.new("char[]", data)
        keep.append(buf)
        c.overlay_data = buf
        c.layers_dir = cstr(spec.layers_dir, "rootfs")
    else:
        c.overlay_data = ffi.NULL
        c.layers_dir = ffi.NULL
    c.rootfs_source = cstr(spec.rootfs_source, "rootfs")
    binds = list(spec.binds)
    c.nbinds = len(binds)
    if binds:
        barr = ffi.new("struct pyd_bind[]", len(binds))
        keep.append(barr)
        for i, (src, dst, ro) in enumerate(binds):
            barr[i].source = cstr(src, "bind")
            barr[i].target = cstr(dst, "bind")
            barr[i].readonly = 1 if ro else 0
        c.binds = barr
    else:
        c.binds = ffi.NULL
    c.tty = 1 if spec.tty else 0
    c.stdin_fd = -1 if spec.stdin is None else spec.stdin
    c.stdout_fd = -1 if spec.stdout is None else spec.stdout
    c.stderr_fd = -1 if spec.stderr is None else spec.stderr
    c.cap_last_cap = _cap_last_cap()
    c.ncgroup_fds, c.cgroup_fds = number_array("int", spec.cgroup_fds)
    c.caps = spec.caps
    c.privileged = 1 if spec.privileged else 0
    c.readonly_rootfs = 1 if spec.readonly_rootfs else 0
    c.share_netns = 1 if spec.share_netns else 0
    c.netns_fd = -1 if spec.netns_fd is None else spec.netns_fd
    tmpfs = list(spec.tmpfs)
    c.ntmpfs = len(tmpfs)
    c.tmpfs = ffi.NULL
    if tmpfs:
        if [t[3] for t in tmpfs] != sorted(t[3] for t in tmpfs):
            raise OSError(errno.EINVAL, "tmpfs: entries not ordered by before_bind")
        tarr = ffi.new("struct pyd_tmpfs[]", len(tmpfs))
        keep.append(tarr)
        for i, (target, flags, data, before) in enumerate(tmpfs):
            if not os.path.isabs(target) or not 0 <= before <= len(binds):
                raise OSError(errno.EINVAL, f"tmpfs: bad entry {tmpfs[i]!r}")
            tarr[i].target = cstr(target, "tmpfs")
            tarr[i].flags = flags
            tarr[i].data = cstr(data or None, "tmpfs")
            tarr[i].before_bind = before
        c.tmpfs = tarr
    devices = list(spec.devices)
    c.ndevices = len(devices)
    c.devices = ffi.NULL
    if devices:
        darr = ffi.new("struct pyd_device[]", len(devices))
        keep.append(darr)
        for i, (path, mode, major, minor, uid, gid) in enumerate(devices):
            darr[i].path = cstr(path, "devices")
            darr[i].mode, darr[i].major, darr[i].minor = mode, major, minor
            darr[i].uid, darr[i].gid = uid, gid
        c.devices = darr
    c.init_fd = -1
    c.argv = cstr_array((_INIT_ARGV if spec.init else _PASS_ARGV) + argv, "exec")
    c.no_new_privs = 1 if spec.no_new_privs else 0
    _set_seccomp(ffi, c, spec.seccomp, keep)
    return c


def _read_report(fd: int):
    """One (step, err, index) record, or None at EOF."""
    buf = b""
    while len(buf) < _REPORT.size:
        chunk = os.read(fd, _REPORT.size - len(buf))
        if not chunk:
            if buf:
                raise OSError(errno.EIO, "init: truncated report from the container process")
            return None
        buf += chunk
    return _REPORT.unpack(buf)


def _describe(ffi, lib, spec: LaunchSpec, step: int, err: int, index: int) -> str:
    """Name the object a failed step was working on."""
    if step == lib.PYD_STEP_EXEC:
        arg0 = spec.argv[0]
        if err == errno.ENOENT and "/" not in arg0:
            return f'"{arg0}": executable file not found in $PATH'
        return f'"{arg0}": {os.strerror(err).lower()}'
    if step == lib.PYD_STEP_BIND and 0 <= index < len(spec.binds):
        src, dst = spec.binds[index][0], spec.binds[index][1]
        return f"{src} -> {dst}"
    obj = lib.pyd_step_object(step, index)
    if obj != ffi.NULL:
        return ffi.string(obj).decode()
    if step == lib.PYD_STEP_ROOTFS:
        if spec.lowerdirs:
            return f"overlay on {spec.rootfs}"
        return f"bind {spec.rootfs_source or spec.rootfs} on {spec.rootfs}"
    if step == lib.PYD_STEP_HOSTNAME:
        return repr(spec.hostname)
    if step == lib.PYD_STEP_CWD:
        return os.fspath(spec.cwd or _DEFAULT_CWD)
    if step == lib.PYD_STEP_SETRESUID:
        return f"uid {spec.uid}"
    if step == lib.PYD_STEP_SETRESGID:
        return f"gid {spec.gid}"
    if step == lib.PYD_STEP_SETGROUPS:
        return f"groups {list(spec.groups)}"
    if step == lib.PYD_STEP_CAP_BOUNDING:
        return f"capability {index}"
    if step == lib.PYD_STEP_CAPSET:
        return f"capabilities {spec.caps:#x}"
    if step == lib.PYD_STEP_STDIO and 0 <= index < 3:
        return ("stdin", "stdout", "stderr")[index]
    if step == lib.PYD_STEP_TTY:
        return "/dev/ptmx"
    if step == lib.PYD_STEP_LOOPBACK:
        return "lo"
    if step == lib.PYD_STEP_CGROUP:
        paths = list(spec.cgroup_paths)
        return paths[index] if 0 <= index < len(paths) else "tasks"
    if step == lib.PYD_STEP_TMPFS and 0 <= index < len(spec.tmpfs):
        return spec.tmpfs[index][0]
    if step == lib.PYD_STEP_HOST_DEVICE and 0 <= index < len(spec.devices):
        return spec.devices[index][0]
    if step == lib.PYD_STEP_ROOT_READONLY:
        return "/"
    if step == lib.PYD_STEP_INIT:
        return "pyd-init"
    return os.fspath(spec.rootfs)


def _child_error(ffi, lib, spec, step, err, index) -> OSError:
    name = ffi.string(lib.pyd_step_name(step)).decode()
    err = err or errno.EIO
    return OSError(err, f"{name}: {_describe(ffi, lib, spec, step, err, index)}")


def _kill_and_reap(pid: int):
    """SIGKILL (harmless on a zombie) and collect the child."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # someone else (a SIGCHLD reaper) got it first


def spawn(spec: LaunchSpec, on_clone: Optional[Callable[[int], None]] = None) -> Spawned:
    """Start ``spec.argv`` in a new container; return once execve succeeded.

    ``on_clone(pid)`` runs while the child waits, before it drops
    privileges and execs (the daemon puts the pid into its cgroups there).
    If it raises, the child is killed and reaped and the exception
    propagates.  A failure in the child raises ``OSError(errno, "<step>:
    <object>")`` after the child has been reaped.  Safe to call from many
    threads at once: the C call releases the GIL and shares no state.
    """
    ffi, lib = _shim()
    # The cffi buffers in `keep` must outlive pyd_spawn; after the clone the
    # child works on its own copy-on-write copy of them.
    keep = []
    cspec = _to_c(ffi, spec, keep)
    # Without a step for the parent between setup and exec, the child can
    # share our memory and suspend this thread until its exec (native/shim.h).
    cspec.vfork = 1 if on_clone is None else 0
    cspec.init_fd = _sealed_init(ffi, lib)
    cres = ffi.new("struct pyd_result *")
    rc = lib.pyd_spawn(cspec, cres)
    if rc < 0:
        raise OSError(-rc, f"clone: {spec.rootfs}")

    pid = cres.pid
    err_fd, sync_fd, sock = cres.err_fd, cres.sync_fd, cres.tty_sock
    master = None
    done = False
    try:
        rep = _read_report(err_fd)
        if rep is None:
            raise OSError(errno.EIO, f"init: container process for {spec.rootfs} died during setup")
        step, err, index = rep
        if step != lib.PYD_STEP_READY:
            raise _child_error(ffi, lib, spec, step, err, index)

        if spec.tty:
            fd = lib.pyd_recv_fd(sock)
            if fd < 0:
                raise OSError(-fd, "tty: receiving the pty master")
            master = fd

        if on_clone is not None:
            on_clone(pid)

        # Go-ahead.  EPIPE means the child is gone: the error pipe says why.
        try:
            os.write(sync_fd, b"\x01")
        except BrokenPipeError:
            pass
        os.close(sync_fd)
        sync_fd = -1

        rep = _read_report(err_fd)
        if rep is not None:
            raise _child_error(ffi, lib, spec, *rep)
        done = True
        return Spawned(pid, master)
    finally:
        for fd in (err_fd, sync_fd, sock):
            if fd >= 0:
                os.close(fd)
        if not done:
            if master is not None:
                os.close(master)
            _kill_and_reap(pid)


def mount(source, target, fstype, flags=0, data=None):
    """mount(2); raises OSError naming the target."""
    ffi, lib = _shim()
    rc = lib.pyd_mount(_bytes(source, "mount"), _bytes(target, "mount"), _bytes(fstype, "mount"),
                       flags, _bytes(data, "mount") if data else ffi.NULL)
    if rc < 0:
        raise OSError(-rc, f"mount {fstype} on {target}: {os.strerror(-rc)}")


def umount(target, flags=0):
    ffi, lib = _shim()
    rc = lib.pyd_umount(_bytes(target, "umount"), flags)
    if rc < 0:
        raise OSError(-rc, f"umount {target}: {os.strerror(-rc)}")


def syncfs(path):
    """Write out everything cached for the filesystem holding `path` (syncfs(2))."""
    ffi, lib = _shim()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        rc = lib.pyd_syncfs(fd)
    finally:
        os.close(fd)
    if rc < 0:
        raise OSError(-rc, f"syncfs {path}: {os.strerror(-rc)}")


def device_filter(cgroup_dir, rules):
    """Attach cgroup v2's device filter to `cgroup_dir`: an eBPF program that
    allows what `rules` allow and refuses every other device access.
    `rules`: (type, major, minor, access) with type 0 (any), 1 (block) or
    2 (char), major/minor -1 for any, access a mask of 1 (mknod), 2 (read)
    and 4 (write)."""
    ffi, lib = _shim()
    c_rules = ffi.new("struct pyd_dev_rule[]", max(len(rules), 1))
    for i, (kind, major, minor, access) in enumerate(rules):
        c_rules[i].type, c_rules[i].major, c_rules[i].minor, c_rules[i].access = kind, major, minor, access
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rc = lib.pyd_device_filter(fd, c_rules, len(rules))
    finally:
        os.close(fd)
    if rc < 0:
        raise OSError(-rc, f"device filter (eBPF) on {cgroup_dir}: {os.strerror(-rc)}")


def set_parent_death_signal(sig):
    """prctl(PR_SET_PDEATHSIG): receive `sig` when the parent process dies."""
    ffi, lib = _shim()
    rc = lib.pyd_set_pdeathsig(sig)
    if rc < 0:
        raise OSError(-rc, f"prctl(PR_SET_PDEATHSIG): {os.strerror(-rc)}")


# -- exec: a process inside a running container --------------------------------

@dataclass
class ExecSpec:
    """A process to start inside a running container (see native/shim.h,
    pyd_exec).  ``ns_fds`` are open /proc/<init>/ns/<name> files, joined in
    order (mnt last), ``ns_names`` their names for error messages;
    ``cgroup_fds`` files the process joins by writing "0" (v1 "tasks").
    ``caps`` is the bounding set, and the effective and permitted sets of
    uid 0.  The caller keeps owning every fd given here."""

    argv: Sequence[str]
    env: Sequence[str]
    cwd: str
    ns_fds: Sequence[int]
    ns_names: Sequence[str]
    caps: int
    uid: int = 0
    gid: int = 0
    groups: Sequence[int] = ()
    cgroup_fds: Sequence[int] = ()
    cgroup_paths: Sequence[str] = ()
    tty: bool = False
    stdin: Optional[int] = None
    stdout: Optional[int] = None
    stderr: Optional[int] = None
    no_new_privs: bool = False
    seccomp: bytes = b""            # the container's BPF program, b"": none


def _exec_to_c(ffi, lib, spec: ExecSpec, keep: list):
    def cstr_array(values):
        items = []
        for v in values:
            buf = ffi.new("char[]", _bytes(v, "exec"))
            keep.append(buf)
            items.append(buf)
        arr = ffi.new("char *[]", items + [ffi.NULL])
        keep.append(arr)
        return arr

    def number_array(ctype, values):
        values = list(values)
        if not values:
            return 0, ffi.NULL
        arr = ffi.new(f"{ctype}[]", values)
        keep.append(arr)
        return len(values), arr

    argv = list(spec.argv)
    if not argv or not argv[0]:
        raise OSError(errno.EINVAL, "exec: empty argv")
    if not os.path.isabs(spec.cwd):
        raise OSError(errno.EINVAL, f"chdir: working directory {spec.cwd!r} is not absolute")
    c = ffi.new("struct pyd_exec_spec *")
    keep.append(c)
    c.argv = cstr_array(_PASS_ARGV + argv)
    c.init_fd = _sealed_init(ffi, lib)
    c.envp = cstr_array(_env_list(spec.env))
    cwd = ffi.new("char[]", _bytes(spec.cwd, "chdir"))
    keep.append(cwd)
    c.cwd = cwd
    c.uid, c.gid = spec.uid, spec.gid
    c.ngroups, c.groups = number_array("gid_t", spec.groups)
    c.nns_fds, c.ns_fds = number_array("int", spec.ns_fds)
    c.ncgroup_fds, c.cgroup_fds = number_array("int", spec.cgroup_fds)
    c.tty = 1 if spec.tty else 0
    c.stdin_fd = -1 if spec.stdin is None else spec.stdin
    c.stdout_fd = -1 if spec.stdout is None else spec.stdout
    c.stderr_fd = -1 if spec.stderr is None else spec.stderr
    c.caps = spec.caps
    c.cap_last_cap = _cap_last_cap()
    c.no_new_privs = 1 if spec.no_new_privs else 0
    _set_seccomp(ffi, c, spec.seccomp, keep)
    return c


class StepError(OSError):
    """A failure of the exec's setup; `step` names the step ("exec", "chdir"...)."""

    def __init__(self, err, message, step):
        super().__init__(err, message)
        self.step = step


def _exec_error(ffi, lib, spec: ExecSpec, step, err, index) -> OSError:
    name = ffi.string(lib.pyd_step_name(step)).decode()
    err = err or errno.EIO
    if step == lib.PYD_STEP_SETNS:
        names = list(spec.ns_names)
        what = f"{names[index]} namespace" if 0 <= index < len(names) else "namespace"
        what += f": {os.strerror(err).lower()}"
    elif step == lib.PYD_STEP_CWD:
        what = f"{spec.cwd}: {os.strerror(err).lower()}"
    elif step == lib.PYD_STEP_EXEC_CLONE:
        what = "the process in the container's pid namespace"
    elif step == lib.PYD_STEP_NO_NEW_PRIVS:
        what = "PR_SET_NO_NEW_PRIVS"
    else:
        # The steps shared with spawn are named the same way; describe
        # reads only argv, uid, gid, groups and the cgroup paths.
        shared = LaunchSpec(rootfs="/", hostname="", argv=list(spec.argv), env=(), uid=spec.uid,
                            gid=spec.gid, groups=list(spec.groups), cgroup_paths=list(spec.cgroup_paths))
        what = _describe(ffi, lib, shared, step, err, index)
    return StepError(err, f"{name}: {what}", name)


def exec_in(spec: ExecSpec) -> Spawned:
    """Start ``spec.argv`` inside a running container; return once execve
    succeeded.  ``pid`` is the process as the daemon sees it (its child:
    reap it with waitpid).  A failure raises ``OSError(errno, "<step>:
    <object>")`` with every process involved reaped."""
    ffi, lib = _shim()
    keep = []
    cspec = _exec_to_c(ffi, lib, spec, keep)
    cres = ffi.new("struct pyd_result *")
    rc = lib.pyd_exec(cspec, cres)
    if rc < 0:
        raise OSError(-rc, "clone: exec")
    middle, err_fd, sock = cres.pid, cres.err_fd, cres.tty_sock
    pid, failure, master = None, None, None
    try:
        # Records from both children until both have exec'd or exited.
        while True:
            rep = _read_report(err_fd)
            if rep is None:
                break
            step, err, index = rep
            if step == lib.PYD_STEP_EXEC_PID:
                pid = index
            elif failure is None:
                failure = _exec_error(ffi, lib, spec, step, err, index)
        if failure is None and pid is None:
            failure = OSError(errno.EIO, "exec: the intermediate process died during setup")
        if failure is None and spec.tty:
            fd = lib.pyd_recv_fd(sock)
            if fd < 0:
                failure = OSError(-fd, "tty: receiving the pty master")
            else:
                master = fd
    finally:
        os.close(err_fd)
        if sock >= 0:
            os.close(sock)
        try:
            os.waitpid(middle, 0)
        except ChildProcessError:
            pass
    if failure is not None:
        if pid is not None:
            _kill_and_reap(pid)
        raise failure
    return Spawned(pid, master)


# -- archive: detached mounts for a stopped container ---------------------------

def overlay_mount_fd(lowers, upper=None, work=None, readonly=False):
    """A detached overlay mount of `lowers` (top first) with an optional
    upper/work pair: the O_PATH-like fd of its root, attached nowhere in any
    mount namespace, gone when the fd is closed. The caller closes it."""
    ffi, lib = _shim()
    keep = [ffi.new("char[]", _bytes(d, "overlay lowerdir")) for d in lowers]
    arr = ffi.new("char *[]", keep)
    fd = lib.pyd_overlay_fsmount(arr, len(keep),
                                 _bytes(upper, "overlay upperdir") if upper else ffi.NULL,
                                 _bytes(work, "overlay workdir") if work else ffi.NULL,
                                 1 if readonly else 0)
    if fd < 0:
        raise OSError(-fd, f"mount overlay (fsmount): {os.strerror(-fd)}")
    return fd


def attach_bind(source, target_fd, readonly=False):
    """Bind host path `source` recursively onto the O_PATH fd `target_fd`
    (open_tree + move_mount: the target is never looked up by path), e.g.
    inside a detached mount from overlay_mount_fd."""
    ffi, lib = _shim()
    rc = lib.pyd_attach_bind(_bytes(source, "bind source"), target_fd, 1 if readonly else 0)
    if rc < 0:
        raise OSError(-rc, f"bind {source}: {os.strerror(-rc)}")


def tree_fd(source, readonly=False):
    """A detached recursive bind of host path `source` (open_tree
    OPEN_TREE_CLONE): the fd of its root, attached nowhere; mounts can be
    attached below it (attach_bind). The caller closes it."""
    ffi, lib = _shim()
    fd = lib.pyd_clone_tree(_bytes(source, "bind source"), 1 if readonly else 0)
    if fd < 0:
        raise OSError(-fd, f"open_tree {source}: {os.strerror(-fd)}")
    return fd


def setns(fd, nstype=0):
    """setns(2) for the calling thread only: join the namespace open at `fd`
    (nstype 0 = whatever it is, or a CLONE_NEW* constant to insist)."""
    ffi, lib = _shim()
    rc = lib.pyd_setns(fd, nstype)
    if rc < 0:
        raise OSError(-rc, f"setns {fd}: {os.strerror(-rc)}")


def unshare(flags):
    """unshare(2) for the calling thread only (pyd/network: CLONE_NEWNET on a
    short-lived thread of its own)."""
    ffi, lib = _shim()
    rc = lib.pyd_unshare(flags)
    if rc < 0:
        raise OSError(-rc, f"unshare {flags:#x}: {os.strerror(-rc)}")
