"""LaunchPlan -> native.LaunchSpec: a pure function, no I/O, so it is unit
tested without root. The stdio fds are filled in by runtime.process."""

from .. import native
from .plan import LaunchPlan


def to_spec(plan: LaunchPlan) -> native.LaunchSpec:
    if plan.network != "loopback":
        raise ValueError(f"unsupported network {plan.network!r}")
    storage = dict(plan.storage)
    return native.LaunchSpec(
        rootfs=plan.rootfs, hostname=plan.hostname, argv=list(plan.argv), env=list(plan.env),
        cwd=plan.cwd or "/", uid=plan.uid, gid=plan.gid, groups=list(plan.groups),
        binds=list(plan.mounts), tty=plan.tty,
        lowerdirs=list(storage.pop("lowerdirs", ())), upperdir=storage.pop("upperdir", None),
        workdir=storage.pop("workdir", None), layers_dir=storage.pop("layers_dir", None),
        rootfs_source=storage.pop("rootfs_source", None), **storage)
