"""LaunchPlan -> native.LaunchSpec: a pure function, no I/O, so it is unit
tested without root. The stdio fds (and a privileged container's host
devices) are filled in by runtime.process."""

import posixpath

from .. import native
from . import caps as capabilities, seccomp
from .plan import LaunchPlan

NETWORKS = ("none", "host", "join")

# mount(2) flags (linux/mount.h) a tmpfs option may set (True) or clear (False).
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_SYNCHRONOUS, MS_MANDLOCK, MS_DIRSYNC = 16, 64, 128
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
_FLAG_OPTIONS = {
    "defaults": (True, 0),
    "ro": (True, MS_RDONLY), "rw": (False, MS_RDONLY),
    "nosuid": (True, MS_NOSUID), "suid": (False, MS_NOSUID),
    "nodev": (True, MS_NODEV), "dev": (False, MS_NODEV),
    "noexec": (True, MS_NOEXEC), "exec": (False, MS_NOEXEC),
    "sync": (True, MS_SYNCHRONOUS), "async": (False, MS_SYNCHRONOUS),
    "dirsync": (True, MS_DIRSYNC),
    "mand": (True, MS_MANDLOCK), "nomand": (False, MS_MANDLOCK),
    "noatime": (True, MS_NOATIME), "atime": (False, MS_NOATIME),
    "nodiratime": (True, MS_NODIRATIME), "diratime": (False, MS_NODIRATIME),
    "relatime": (True, MS_RELATIME), "norelatime": (False, MS_RELATIME),
    "strictatime": (True, MS_STRICTATIME), "nostrictatime": (False, MS_STRICTATIME),
}
# Propagation: every container mount is private already; accepted, no effect.
_PROPAGATION = {"private", "rprivate", "shared", "rshared", "slave", "rslave",
                "unbindable", "runbindable"}
# What Docker lets through to tmpfs itself (pkg/mount's validFlags).
_DATA_KEYS = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"}
# Docker's defaults, before the container's own options.
_TMPFS_DEFAULTS = "noexec,nosuid,nodev"


def tmpfs_options(options):
    """Docker's tmpfs option string -> (mount flags, data) with Docker's
    defaults (noexec,nosuid,nodev) first, a later option winning over an
    earlier one. ValueError names an option Docker would refuse."""
    flags, data = 0, {}
    for opt in (_TMPFS_DEFAULTS + "," + (options or "")).split(","):
        opt = opt.strip()
        if not opt or opt in _PROPAGATION:
            continue
        key, eq, value = opt.partition("=")
        if not eq and key in _FLAG_OPTIONS:
            setting, bit = _FLAG_OPTIONS[key]
            flags = flags | bit if setting else flags & ~bit
        elif eq and key in _DATA_KEYS and value:
            data[key] = value
        else:
            raise ValueError(f"invalid tmpfs option {opt!r}")
    return flags, ",".join(f"{k}={v}" for k, v in data.items())


def _at_or_under(path, parent):
    return path == parent or path.startswith(parent + "/")


def tmpfs_entries(tmpfs, binds):
    """[(target, flags, data, before_bind)] for the shim: each tmpfs goes just
    before the first bind mounted on or inside it (binds come parents first),
    and tmpfs mounts inside each other nest in order of depth."""
    out = []
    for target, options in tmpfs:
        target = posixpath.normpath(target)
        if target.startswith("//"):
            target = "/" + target.lstrip("/")  # normpath keeps POSIX's "//"
        if not target.startswith("/") or target == "/":
            raise ValueError(f"tmpfs target {target!r} must be an absolute path other than /")
        before = next((i for i, b in enumerate(binds) if _at_or_under(posixpath.normpath(b[1]), target)),
                      len(binds))
        out.append((target, *tmpfs_options(options), before))
    out.sort(key=lambda e: (e[3], e[0].count("/")))
    return out


def to_spec(plan: LaunchPlan) -> native.LaunchSpec:
    if plan.network not in NETWORKS:
        raise ValueError(f"unsupported network {plan.network!r}")
    storage = dict(plan.storage)
    binds = list(plan.mounts)
    # Privileged: every capability; the shim keeps those the kernel has.
    caps = capabilities.NAMES if plan.privileged else plan.caps
    mask = capabilities.mask(caps)
    program = b""
    if plan.seccomp is not None and not plan.privileged:
        program = seccomp.program_for(plan.seccomp, mask, native.syscall_nr, native.audit_arch())
    return native.LaunchSpec(
        rootfs=plan.rootfs, hostname=plan.hostname, argv=list(plan.argv), env=list(plan.env),
        cwd=plan.cwd or "/", uid=plan.uid, gid=plan.gid, groups=list(plan.groups),
        binds=binds, tty=plan.tty,
        lowerdirs=list(storage.pop("lowerdirs", ())), upperdir=storage.pop("upperdir", None),
        workdir=storage.pop("workdir", None), layers_dir=storage.pop("layers_dir", None),
        rootfs_source=storage.pop("rootfs_source", None),
        caps=mask, privileged=plan.privileged, no_new_privs=plan.no_new_privs, seccomp=program,
        readonly_rootfs=plan.readonly_rootfs, share_netns=plan.network == "host",
        netns_fd=plan.netns_fd if plan.network == "join" else None,
        tmpfs=tmpfs_entries(plan.tmpfs, binds), init=plan.init, **storage)
