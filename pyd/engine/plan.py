"""A container and its image -> one LaunchPlan, resolved once per start:
the image's layers (computed by the caller, once), the user from the
image's own passwd and group, the environment, the mounts, the limits and
the storage driver's arguments. The runtime only turns the plan into the
shim's spec."""

from .. import errors
from ..runtime import spec, users
from ..runtime.plan import LaunchPlan
from . import caps, createconfig, etcfiles, mounts

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's CFS period when NanoCpus is set (microseconds).
NANO_CPU_PERIOD = 100000


def environment(config, hostname, home):
    """Docker's order: PATH, HOSTNAME, HOME (and TERM with a tty), then the
    config's Env, a later entry replacing an earlier one of the same name."""
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": home}
    if config.get("Tty"):
        env["TERM"] = "xterm"
    for item in config.get("Env") or []:
        k, sep, v = item.partition("=")
        if sep:
            env[k] = v
    return [f"{k}={v}" for k, v in env.items()]


def network(host):
    """HostConfig.NetworkMode -> the plan's network. Until pyd has networks,
    bridge, default and named networks are a private loopback namespace."""
    mode = host.get("NetworkMode") or "default"
    if not isinstance(mode, str):
        raise errors.BadParameter(f"invalid NetworkMode {mode!r}")
    if mode in ("host", "none"):
        return mode
    if mode.startswith("container:"):
        raise errors.BadParameter(f"network mode {mode!r} is not supported")
    return "loopback"


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
    for name, v in (("NanoCpus", nano), ("CpuShares", shares), ("CpuQuota", quota),
                    ("CpuPeriod", period)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise errors.BadParameter(f"{name} must be a non-negative integer")
    if nano:
        if quota or period:
            raise errors.BadParameter("Conflicting options: Nano CPUs and CPU Period/Quota "
                                      "cannot both be set")
        return shares, nano * NANO_CPU_PERIOD // 10**9, NANO_CPU_PERIOD
    return shares, quota, period


def check(host):
    """Everything about the launch options a create must refuse (400): unknown
    capabilities, malformed tmpfs, an unsupported network mode, bad CPU values."""
    caps.check(host.get("CapAdd"), host.get("CapDrop"))
    tmpfs(host)
    network(host)
    cpu(host)


def build(c, layers, view, driver, layers_dir):
    """`layers` are the image's layer dirs (top first); `view` is the
    container's filesystem as the driver shows it (top first)."""
    cfg, host = c.config, c.host
    privileged = bool(host.get("Privileged"))
    cpu_shares, cpu_quota, cpu_period = cpu(host)
    uid, gid, groups, home = users.resolve(cfg.get("User") or "", view)
    env = environment(cfg, cfg.get("Hostname") or c.short_id, home)
    # The process's hostname is its HOSTNAME, which Env may override (as in Docker 0.6).
    hostname = [e for e in env if e.startswith("HOSTNAME=")][-1][len("HOSTNAME="):]
    return LaunchPlan(
        cid=c.id, rootfs=c.file("rootfs"), argv=createconfig.argv(cfg),
        env=env, cwd=cfg.get("WorkingDir") or "/", hostname=hostname,
        uid=uid, gid=gid, groups=groups,
        mounts=etcfiles.mounts(c.path) + mounts.launch_mounts(c.data.get("mounts") or []),
        tty=bool(cfg.get("Tty")), open_stdin=bool(cfg.get("OpenStdin")),
        memory=host.get("Memory") or 0, memory_swap=host.get("MemorySwap") or 0,
        storage=driver.launch_args(c.path, layers, layers_dir),
        network=network(host),
        caps=caps.effective(host.get("CapAdd"), host.get("CapDrop"), privileged),
        privileged=privileged, readonly_rootfs=bool(host.get("ReadonlyRootfs")),
        init=bool(host.get("Init")), tmpfs=tmpfs(host),
        pids_limit=max(host.get("PidsLimit") or 0, 0),
        cpu_shares=cpu_shares, cpu_quota=cpu_quota, cpu_period=cpu_period)
