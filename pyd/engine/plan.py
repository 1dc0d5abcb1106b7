"""A container and its image -> one LaunchPlan, resolved once per start:
the image's layers (computed by the caller, once), the user from the
image's own passwd and group, the environment, the mounts, the limits and
the storage driver's arguments. The runtime only turns the plan into the
shim's spec."""

from ..runtime import users
from ..runtime.plan import LaunchPlan
from . import caps, createconfig, etcfiles, launchopts, mounts

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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


def build(c, layers, view, driver, layers_dir, default_pids_limit=0):
    """`layers` are the image's layer dirs (top first); `view` is the
    container's filesystem as the driver shows it (top first).
    `default_pids_limit` caps a container whose PidsLimit is unset."""
    cfg, host = c.config, c.host
    privileged = bool(host.get("Privileged"))
    cpu_shares, cpu_quota, cpu_period = launchopts.cpu(host)
    no_new_privs, seccomp_profile = launchopts.security(host)
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
        network=launchopts.network(host),
        caps=caps.effective(host.get("CapAdd"), host.get("CapDrop"), privileged),
        privileged=privileged, readonly_rootfs=bool(host.get("ReadonlyRootfs")),
        init=bool(host.get("Init")), tmpfs=launchopts.tmpfs(host),
        pids_limit=pids_limit(host.get("PidsLimit"), default_pids_limit),
        cpu_shares=cpu_shares, cpu_quota=cpu_quota, cpu_period=cpu_period,
        no_new_privs=no_new_privs, seccomp=seccomp_profile)


def pids_limit(given, default):
    """The cgroup's pids.max: the daemon's default when PidsLimit is unset
    (null, or absent from an old record); 0 or -1 is unlimited (0 here), as
    in Docker's API."""
    if given is None:
        return max(default, 0)
    return given if given > 0 else 0
