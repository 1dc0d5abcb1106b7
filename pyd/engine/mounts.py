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
import re
import stat

from .. import errors
from ..fs import layerfs

FORBIDDEN_PREFIXES = ("/proc", "/sys")
VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")


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
    """'/host:/ctr[:ro|rw]' -> (host, ctr, writable); 'name:/ctr[:mode]' ->
    (name, ctr, writable) for a named volume (made at start if missing)."""
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
        if not VOLUME_NAME_RE.match(host):
            raise errors.BadParameter(f"invalid bind {spec!r}: {host!r} is neither an absolute host path "
                                      "nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)")
        return host, clean_target(ctr, "bind"), mode == "rw"
    return posixpath.normpath(host), clean_target(ctr, "bind"), mode == "rw"


MOUNT_TYPES = ("bind", "volume", "tmpfs")


def check_mounts(items):
    """HostConfig.Mounts, checked: [{Type, Source, Target, ReadOnly, ...}] with
    clean targets; None when not given."""
    if items is None:
        return None
    if not isinstance(items, list) or not all(isinstance(m, dict) for m in items):
        raise errors.BadParameter("Mounts must be a list of objects")
    out, seen = [], set()
    for m in items:
        kind = m.get("Type") or ""
        if kind not in MOUNT_TYPES:
            raise errors.BadParameter(f"mount type unknown: {kind!r} (pyd supports bind, volume and tmpfs)")
        target = clean_target(m.get("Target"), kind)
        if target in seen:
            raise errors.BadParameter(f"Duplicate mount point: {target}")
        seen.add(target)
        src = m.get("Source") or ""
        if not isinstance(src, str):
            raise errors.BadParameter("Mount Source must be a string")
        if kind == "bind":
            if not src.startswith("/"):
                raise errors.BadParameter(f"invalid mount config for type \"bind\": invalid mount path: "
                                          f"'{src}' mount path must be absolute")
            if not os.path.exists(src):
                raise errors.BadParameter(f"invalid mount config for type \"bind\": bind source path does "
                                          f"not exist: {src}")
            src = posixpath.normpath(src)
        elif kind == "volume" and src and not VOLUME_NAME_RE.match(src):
            raise errors.BadParameter(f"invalid mount config for type \"volume\": invalid volume name {src!r}")
        elif kind == "tmpfs" and src:
            raise errors.BadParameter("invalid mount config for type \"tmpfs\": Source must not be specified")
        opts = m.get("TmpfsOptions") or {}
        if not isinstance(opts, dict):
            raise errors.BadParameter("TmpfsOptions must be an object")
        out.append({"Type": kind, "Source": src, "Target": target, "ReadOnly": bool(m.get("ReadOnly")),
                    **({"TmpfsOptions": {k: opts[k] for k in ("SizeBytes", "Mode") if k in opts}}
                       if kind == "tmpfs" else {})})
    return out


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
    for m in c.host.get("Mounts") or []:
        if m["Type"] != "tmpfs":
            check_resolved(view, m["Target"], m["Type"])
    for host, ctr, writable in parsed:
        if host.startswith("/"):
            if not os.path.exists(host):
                os.makedirs(host, 0o755)
            out[ctr] = {"target": ctr, "source": host, "rw": writable, "kind": "bind"}
        else:
            out[ctr] = _named(volumes, host, ctr, writable, layers)
        bound.add(ctr)
    for m in c.host.get("Mounts") or []:
        ctr, writable = m["Target"], not m["ReadOnly"]
        if m["Type"] == "bind":
            out[ctr] = {"target": ctr, "source": m["Source"], "rw": writable, "kind": "bind"}
        elif m["Type"] == "volume":
            old_src = volumes_of(c.data).get(ctr, ("", True))[0]
            if not m["Source"] and old_src and volumes.owns(old_src):
                out[ctr] = {"target": ctr, "source": old_src, "rw": writable, "kind": "volume"}
            else:
                out[ctr] = _named(volumes, m["Source"] or None, ctr, writable, layers)
        else:
            continue  # tmpfs: made by the shim from the launch plan
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


def _named(volumes, name, target, writable, layers):
    """A named volume (made and seeded from the image when new), or a new anonymous one."""
    fresh = not name or not os.path.isdir(volumes.path(name))
    host = volumes.create(name)
    if fresh:
        _seed(host, layers, target)
    return {"target": target, "source": host, "rw": writable, "kind": "volume"}


def launch_mounts(mounts):
    """[(host, target, readonly)] for the launch plan, parents before children."""
    return [(m["source"], m["target"], not m["rw"]) for m in mounts]


def remove_owned(c, volumes, others):
    """Delete the anonymous volumes of this container, unless another container
    uses them; named volumes stay, as in Docker."""
    in_use = {h for o in others if o.id != c.id for h, _ in volumes_of(o.data).values()}
    for host, _ in volumes_of(c.data).values():
        if volumes.owns(host) and volumes.anonymous(host) and host not in in_use:
            volumes.remove(host)
