"""HostConfig's launch options, read from a container's host fields (a
record's "host", or the flat config at create) for the launch plan, and
checked at create: tmpfs mounts, the network mode, the CPU numbers, the
capabilities (engine.caps). Fields missing from old records mean Docker's
defaults.

    launchopts.check(host)      # at create: BadParameter for what a start would refuse
"""

from .. import errors
from ..runtime import seccomp, spec
from ..runtime.cgroups import CFS_PERIOD_US
from . import caps
from .networking import mode_of


def network(host):
    """HostConfig.NetworkMode -> the plan's network before engine.networking
    wires it: the host's namespace, or a new one with loopback only (what
    `none` is, and what every other mode gets when networking is off)."""
    return "host" if mode_of(host) == "host" else "none"  # mode_of refuses a malformed mode


def _tmpfs_size(size):
    """Docker's ConvertTmpfsOptions: the largest unit that divides the size."""
    for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def tmpfs(host):
    """[(target, options)] from HostConfig.Tmpfs and Mounts of Type tmpfs,
    the latter's TmpfsOptions and ReadOnly as Docker writes them
    ("ro,mode=1777,size=64m"). BadParameter for a malformed entry."""
    out = []
    table = host.get("Tmpfs") or {}
    if not isinstance(table, dict):
        raise errors.BadParameter("Tmpfs must map container paths to option strings")
    for target, options in table.items():
        if not isinstance(options, str):
            raise errors.BadParameter(f"Tmpfs options for {target!r} must be a string")
        out.append((target, options))
    for m in host.get("Mounts") or []:
        if not isinstance(m, dict) or m.get("Type") != "tmpfs":
            continue
        target = m.get("Target")
        if not isinstance(target, str) or not target:
            raise errors.BadParameter("tmpfs mount: Target must be a path")
        if m.get("Source"):
            raise errors.BadParameter("invalid mount config for type \"tmpfs\": Source must not be specified")
        opts = m.get("TmpfsOptions") or {}
        if not isinstance(opts, dict):
            raise errors.BadParameter("tmpfs mount: TmpfsOptions must be an object")
        parts = ["ro"] if m.get("ReadOnly") else []
        mode, size = opts.get("Mode") or 0, opts.get("SizeBytes") or 0
        if not isinstance(mode, int) or not isinstance(size, int) or mode < 0 or size < 0:
            raise errors.BadParameter("tmpfs mount: Mode and SizeBytes must be non-negative integers")
        if mode:
            parts.append(f"mode={mode:o}")
        if size:
            parts.append(f"size={_tmpfs_size(size)}")
        out.append((target, ",".join(parts)))
    targets = [t for t, _ in out]
    for t in targets:
        if targets.count(t) > 1:
            raise errors.BadParameter(f"Duplicate mount point: {t}")
    try:
        spec.tmpfs_entries(out, [])
    except ValueError as e:
        raise errors.BadParameter(f"invalid mount config: {e}") from None
    return out


def cpu(host):
    """(shares, quota, period): NanoCpus becomes a quota over Docker's
    100 ms period; it and CpuQuota/CpuPeriod exclude each other, as in Docker."""
    nano = host.get("NanoCpus") or 0
    shares = host.get("CpuShares") or 0
    quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 0
    if quota == -1:
        quota = 0  # the kernel's "no quota"
    for name, v in (("NanoCpus", nano), ("CpuShares", shares), ("CpuQuota", quota),
                    ("CpuPeriod", period)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise errors.BadParameter(f"{name} must be a non-negative integer")
    # Docker's ranges (the kernel's CFS limits).
    if 0 < quota < 1000:
        raise errors.BadParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if period and not 1000 <= period <= 1000000:
        raise errors.BadParameter("CPU cfs period can not be less than 1ms (i.e. 1000) "
                                  "or larger than 1 second (i.e. 1000000)")
    if nano:
        if quota or period:
            raise errors.BadParameter("Conflicting options: Nano CPUs and CPU Period/Quota "
                                      "cannot both be set")
        return shares, nano * CFS_PERIOD_US // 10**9, CFS_PERIOD_US
    return shares, quota, period


def security(host):
    """(no_new_privs, seccomp profile or None for unconfined) from
    SecurityOpt, as dockerd reads it: "no-new-privileges[:=]true|false" (bare
    means true), "seccomp=unconfined", "seccomp=<profile JSON>" (the docker
    CLI sends a file's content), "apparmor=..." and "label=..." (accepted,
    nothing to apply here). pyd turns no_new_privs on by default, as
    dockerd's --no-new-privileges; a privileged container is unconfined."""
    nnp, profile = True, seccomp.DEFAULT_PROFILE
    for opt in host.get("SecurityOpt") or []:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        key = key.strip().lower()
        if key == "no-new-privileges":
            if value.strip().lower() in ("", "true", "1"):
                nnp = True
            elif value.strip().lower() in ("false", "0"):
                nnp = False
            else:
                raise errors.BadParameter(f"invalid --security-opt {opt!r}: no-new-privileges is true or false")
        elif key == "seccomp" and sep:
            profile = None if value.strip() == "unconfined" else seccomp.parse_profile(value)
        elif key in ("apparmor", "label", "systempaths", "mask", "unmask") and sep:
            continue
        else:
            raise errors.BadParameter(f"invalid --security-opt {opt[:80]!r}: expected no-new-privileges, "
                                      "seccomp=unconfined|<profile>, apparmor=... or label=...")
    if host.get("Privileged"):
        profile = None
    return nnp, profile


def check(host):
    """Everything about the launch options a create must refuse (400): unknown
    capabilities, malformed tmpfs, a malformed network mode, bad CPU values,
    an unknown SecurityOpt or a broken seccomp profile."""
    caps.check(host.get("CapAdd"), host.get("CapDrop"))
    tmpfs(host)
    network(host)
    cpu(host)
    security(host)
