"""Volumes and binds: where each container path comes from on the host.

A container's record keeps `mounts`, a list of {"target", "source", "rw",
"kind"} (kind: bind, volume or from), parents before children. Sources, at
start:
  - Binds from the start body ("/host:/ctr[:ro|rw]"), saved in HostConfig;
  - VolumesFrom: every volume of another container, with its mode;
  - Config.Volumes: a fresh directory under <root>/volumes/<id>, seeded with
    the image's content at that path, as Docker does.
The mounts themselves are made by the native shim, which resolves each
target inside the container's root (never through a symlink out of it).
"""

import os
import posixpath
import stat

from .. import errors
from ..fs import layerfs

FORBIDDEN_PREFIXES = ("/proc", "/sys")


def clean_target(path, what="volume"):
    if not isinstance(path, str) or not path.startswith("/"):
        raise errors.BadParameter(f"invalid {what} target {path!r}: it must be an absolute path")
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm == "/":
        raise errors.BadParameter(f"invalid {what} target {path!r}: it cannot be the root directory /")
    for p in FORBIDDEN_PREFIXES:
        if norm == p or norm.startswith(p + "/"):
            raise errors.BadParameter(f"invalid {what} target {path!r}: it cannot be under {p}")
    return norm


def parse_bind(spec):
    """'/host:/ctr[:ro|rw]' -> (host, ctr, writable)."""
    if not isinstance(spec, str):
        raise errors.BadParameter(f"invalid bind {spec!r}: expected a string /host:/container[:ro|rw]")
    parts = spec.split(":")
    if len(parts) == 2:
        host, ctr, mode = parts[0], parts[1], "rw"
    elif len(parts) == 3:
        host, ctr, mode = parts
    else:
        raise errors.BadParameter(f"invalid bind {spec!r}: expected /host:/container[:ro|rw]")
    if mode not in ("ro", "rw"):
        raise errors.BadParameter(f"invalid bind {spec!r}: mode must be ro or rw, not {mode!r}")
    if not host.startswith("/"):
        raise errors.BadParameter(f"invalid bind {spec!r}: the host path {host!r} must be absolute")
    return posixpath.normpath(host), clean_target(ctr, "bind"), mode == "rw"


def validate_binds(binds):
    if binds is None:
        return None
    if not isinstance(binds, list):
        raise errors.BadParameter("Binds must be a list of strings")
    for b in binds:
        parse_bind(b)
    return binds


def _seed(dest, layers, target):
    """Copy the image's content at `target` into the new volume `dest`."""
    subs = layerfs.merged_dir_layers(layers, target)
    if subs:
        layerfs.copy_union(subs, dest)
        top = os.lstat(subs[0])
        os.chmod(dest, stat.S_IMODE(top.st_mode))
        os.chown(dest, top.st_uid, top.st_gid)


def check_resolved(view, target, what):
    """Refuse a target that the image's symlinks lead to /, /proc or /sys."""
    try:
        real = layerfs.resolve_path(view, target)
    except OSError as e:
        raise errors.BadParameter(f"invalid {what} target {target!r}: {e.strerror}") from e
    if real != target:
        clean_target(real, what)


def volumes_of(data):
    """{target: (source, rw)} of a container record."""
    return {m["target"]: (m["source"], m["rw"]) for m in data.get("mounts") or []}


def prepare(c, view, volumes, layers, binds, containers):
    """The container's mounts for this start: a list of {"target", "source",
    "rw", "kind"}. `view` is the container's filesystem (top layer first),
    `layers` the image's. Makes (in `volumes`, a store.volumes.VolumeStore)
    and seeds new volumes. Raises on bad input."""
    out = {}  # target -> mount
    bound = set()
    parsed = [parse_bind(spec) for spec in binds or []]
    for host, ctr, writable in parsed:
        check_resolved(view, ctr, "bind")
    for c_path in (c.config.get("Volumes") or {}):
        check_resolved(view, clean_target(c_path), "volume")
    for host, ctr, writable in parsed:
        if not os.path.exists(host):
            os.makedirs(host, 0o755)
        out[ctr] = {"target": ctr, "source": host, "rw": writable, "kind": "bind"}
        bound.add(ctr)
    src_ref = c.host.get("VolumesFrom") or ""
    old = volumes_of(c.data)
    for ref in [r for r in src_ref.split(",") if r.strip()]:
        ref, _, mode = ref.strip().partition(":")
        try:
            other = containers.get(ref)
        except errors.NotFound as e:
            # The source is gone: keep what this container already shared from it.
            if not old:
                raise errors.BadParameter(f"VolumesFrom: no such container {ref}") from e
            for p, (h, rw) in old.items():
                if p not in out and p not in bound and os.path.isdir(h):
                    out[p] = {"target": p, "source": h, "rw": rw, "kind": "from"}
            continue
        if other.id == c.id:
            raise errors.BadParameter("a container cannot take volumes from itself")
        for path, (host, writable) in volumes_of(other.data).items():
            if path in bound:
                continue
            out[path] = {"target": path, "source": host, "rw": writable and mode != "ro", "kind": "from"}
    for path in (c.config.get("Volumes") or {}):
        target = clean_target(path)
        if target in out:
            continue
        host = (old.get(target) or ("", True))[0]
        if host and volumes.owns(host):
            out[target] = {"target": target, "source": host, "rw": True, "kind": "volume"}  # kept across restarts
            continue
        host = volumes.create()
        _seed(host, layers, target)
        out[target] = {"target": target, "source": host, "rw": True, "kind": "volume"}
    return [out[p] for p in sorted(out, key=lambda p: p.count("/"))]


def launch_mounts(mounts):
    """[(host, target, readonly)] for the launch plan, parents before children."""
    return [(m["source"], m["target"], not m["rw"]) for m in mounts]


def remove_owned(c, volumes, others):
    """Delete the volumes this container created, unless another container uses them."""
    in_use = {h for o in others if o.id != c.id for h, _ in volumes_of(o.data).values()}
    for host, _ in volumes_of(c.data).values():
        if volumes.owns(host) and host not in in_use:
            volumes.remove(host)
