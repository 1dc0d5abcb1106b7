"""The data root's format version, and the migration of older roots.

format.json holds {"format": N}. This pyd reads format 3 (docs/storage.md) and
migrates format 2 (pyd 0.2.0 before the modern surface: container logs without
times, see _from_2) in place.
A root without format.json is either new (nothing in it: it gets the
current format) or was written by pyd 0.1.0 (format 1: images/<id>.json, layers/<image
id>/, repositories.json, containers/<id>/config.json), which is migrated in
place at start. A root with any other format is refused: it is never
guessed at or silently misread.

The migration keeps images, tags, containers, volumes and container logs,
and is atomic:
  1. Plan and write the format-2 records beside the old ones (nothing old is
     changed) and a journal of what is left to do (migrate.json). A failure
     here removes what this run wrote: the old root is as it was.
  2. Write format.json: from here on the root is format 2.
  3. Roll forward from the journal: rename layer directories into
     layers/sha256/, then remove the format-1 records. A crash in this step
     is finished at the next start, since the journal says what is left.
Image ids change (an id is now the digest of the image's config); tags,
parents and the images of containers are carried over.
"""

import hashlib
import json
import logging
import os
import struct

from .. import __version__
from ..fs import layerfs
from ..fs.tarsafe import remove_tree
from . import atomic
from .containers import HOST_FIELDS
from .images import encode_config
from .layers import HEX_RE

log = logging.getLogger(__name__)

FORMAT = 3
JOURNAL = "migrate.json"

# Status names of format 1 (its PydState) are those of format 2.
_V1_STATES = {"created", "starting", "running", "exited", "removing"}


class RootError(Exception):
    """The data root cannot be used by this pyd; the message says why."""


def open_root(config):
    root = config.root
    try:
        with open(config.format_path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raw = None
    if raw is not None:
        try:
            fmt = json.loads(raw)["format"]
        except (ValueError, KeyError, TypeError) as e:
            raise RootError(f"the data root {root} has an unreadable {config.format_path} ({e}); "
                            "refusing to guess its format") from e
        if fmt == 2:
            _roll_forward(root)
            _from_2(config)
            return
        if fmt != FORMAT:
            raise RootError(
                f"the data root {root} has format {fmt!r}, which this pyd ({__version__}) does not "
                f"support: it reads format {FORMAT} and migrates formats 1 (pyd 0.1.0) and 2. "
                f"A newer pyd wrote it? Run that pyd, or give this one another data root with -g.")
        _roll_forward(root)
        return
    if not _written_by_010(root):
        if _holds_format2(root):
            raise RootError(f"the data root {root} holds format {FORMAT} records but its "
                            f"{config.format_path} is missing; refusing to guess. If this pyd wrote "
                            f"it, restore the file with the content {{\"format\": {FORMAT}}}")
        atomic.write_json(config.format_path, {"format": FORMAT})
        return
    log.info("migrating the data root %s from format 1 (pyd 0.1.0) to format %d", root, FORMAT)
    try:
        plan = _write_format2(config)
    except Exception as e:
        raise RootError(f"migrating the data root {root} from format 1 (pyd 0.1.0) to format {FORMAT} "
                        f"failed, and the root was left as it was: {e}") from e
    atomic.write_json(config.format_path, {"format": 2})
    _roll_forward(root)
    log.info("migrated %d images, %d tags and %d containers", plan["images"], plan["tags"], plan["containers"])
    _from_2(config)


# -- format 2 -> 3 ---------------------------------------------------------------

_OLD_LOG, _NEW_LOG = "output.log", "stdio.log"


def _from_2(config):
    """Format 3 keeps the time of each chunk in a container's log (stdio.log:
    16-byte headers, stream, length and nanoseconds; runtime/stdio.py).
    Format 2's output.log (8-byte headers, no time) is rewritten with its
    file's mtime as the time of every record, the best that is known. Each
    file is written beside the old one and renamed over its new name before
    the old one goes, so a crash midway is finished by the next start (still
    format 2 until format.json says 3). The other additions of format 3
    (Engine API fields in records, volumes/.meta) are optional: nothing to do."""
    n = 0
    for cid in _listdir(config.containers_dir):
        cdir = os.path.join(config.containers_dir, cid)
        for suffix in (".1", ""):
            old = os.path.join(cdir, _OLD_LOG + suffix)
            if not os.path.isfile(old):
                continue
            new = os.path.join(cdir, _NEW_LOG + suffix)
            if not os.path.exists(new):
                atomic.write_bytes(new, _retimed(old), durable=True)
            os.unlink(old)
            n += 1
    atomic.write_json(config.format_path, {"format": FORMAT})
    log.info("data root %s: format 2 -> %d (%d container logs given times)", config.root, FORMAT, n)


def _retimed(path):
    ns = os.stat(path).st_mtime_ns
    out = []
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i + 8 <= len(data):
        stream, length = struct.unpack_from(">BxxxI", data, i)
        body = data[i + 8:i + 8 + length]
        if len(body) < length:
            break  # a record cut short by a crash: what is whole is kept
        out.append(struct.pack(">BxxxIQ", stream, length, ns) + body)
        i += 8 + length
    return b"".join(out)


def _listdir(path):
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _written_by_010(root):
    """Any of 0.1.0's records. (A run of step 1 cut short by a crash may have
    left format-2 files beside them: step 1 writes them again.)"""
    if os.path.exists(os.path.join(root, "repositories.json")):
        return True
    if any(n.endswith(".json") and HEX_RE.match(n[:-5]) for n in _listdir(os.path.join(root, "images"))):
        return True
    if any(HEX_RE.match(n) for n in _listdir(os.path.join(root, "layers"))):
        return True
    cdir = os.path.join(root, "containers")
    return any(os.path.exists(os.path.join(cdir, n, "config.json")) for n in _listdir(cdir))


def _holds_format2(root):
    cdir = os.path.join(root, "containers")
    return (os.path.exists(os.path.join(root, "refs.json"))
            or bool(_listdir(os.path.join(root, "images", "sha256")))
            or bool(_listdir(os.path.join(root, "layers", "sha256")))
            or any(os.path.exists(os.path.join(cdir, n, "container.json")) for n in _listdir(cdir)))


# -- step 1: the format-2 records, beside the old ones -------------------------

class _Writer:
    """Writes new files and remembers them, to take them back on failure."""

    def __init__(self):
        self.made = []

    def mkdir(self, path):
        if not os.path.isdir(path):
            os.mkdir(path, 0o700)  # fails on anything in the way: the root stays as it was
            self.made.append(path)

    def json(self, path, obj):
        if not os.path.exists(path):
            self.made.append(path)
        atomic.write_json(path, obj)

    def bytes(self, path, data):
        if not os.path.exists(path):
            self.made.append(path)
        atomic.write_bytes(path, data)

    def undo(self):
        for path in reversed(self.made):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except OSError as e:
                log.warning("could not take back %s: %s", path, e)


def _v1_images(root):
    recs = {}
    d = os.path.join(root, "images")
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
        if not name.endswith(".json") or not HEX_RE.match(name[:-5]):
            continue
        try:
            rec = atomic.read_json(os.path.join(d, name))
            if rec.get("id") != name[:-5] or not os.path.isdir(os.path.join(root, "layers", name[:-5])):
                raise ValueError("id mismatch or layer missing")
        except (OSError, ValueError) as e:
            log.warning("format 1 image %s is broken (%s); 0.1.0 dropped it too", name[:12], e)
            continue
        recs[rec["id"]] = rec
    # Parents first; an image whose parent is missing was dropped by 0.1.0 too.
    order, done = [], set()

    def visit(i, seen=()):
        if i in done or i in seen:
            return i in done
        p = recs[i].get("parent") or ""
        if p and (p not in recs or not visit(p, seen + (i,))):
            return False
        done.add(i)
        order.append(i)
        return True

    for i in sorted(recs):
        visit(i)
    return recs, order


def _write_format2(config):
    root = config.root
    w = _Writer()
    try:
        return _migrate(config, root, w)
    except BaseException:
        w.undo()
        raise


def _migrate(config, root, w):
    recs, order = _v1_images(root)
    for d in (os.path.join(root, "images"), config.images_dir, os.path.join(root, "layers"), config.layers_dir):
        w.mkdir(d)
    new_id, configs, renames, remove, layers_done = {}, {}, [], [], set()
    for old in order:
        rec = recs[old]
        src = os.path.join(root, "layers", old)
        digest = rec.get("layer_digest") or ""
        if not (digest.startswith("sha256:") and HEX_RE.match(digest[7:])):
            digest = layerfs.layer_digest(src)  # insert layers had no digest in 0.1.0
        parent = configs.get(rec.get("parent") or "")
        cc = rec.get("container_config") or {}
        history = list(parent["history"]) if parent else []
        history.append({"created": rec.get("created") or "", "created_by": " ".join(cc.get("Cmd") or [])})
        cfg = {
            "architecture": rec.get("architecture") or "amd64",
            "os": rec.get("os") or "linux",
            "created": rec.get("created") or "",
            "author": rec.get("author") or "",
            "comment": rec.get("comment") or "",
            "config": rec.get("config") or {},
            "container": rec.get("container") or "",
            "container_config": cc,
            "docker_version": rec.get("docker_version") or "",
            "history": history,
            "rootfs": {"type": "layers", "diff_ids": (parent["rootfs"]["diff_ids"] if parent else []) + [digest]},
        }
        if parent:
            cfg["parent"] = "sha256:" + new_id[rec["parent"]]
        raw = encode_config(cfg)
        image_id = hashlib.sha256(raw).hexdigest()
        new_id[old], configs[old] = image_id, cfg
        w.bytes(os.path.join(config.images_dir, image_id + ".json"), raw)
        dest = os.path.join(config.layers_dir, digest[7:])
        if digest in layers_done:
            remove.append(src)  # the same tar imported twice: one layer from now on
        else:
            layers_done.add(digest)
            w.json(dest + ".json", {"diff_id": digest, "size": int(rec.get("Size") or 0)})
            renames.append([src, dest])
        remove.append(os.path.join(root, "images", old + ".json"))
    # Tags.
    tags = 0
    repos = {}
    old_refs = os.path.join(root, "repositories.json")
    if os.path.exists(old_refs):
        for repo, ts in (atomic.read_json(old_refs).get("Repositories") or {}).items():
            kept = {t: new_id[i] for t, i in ts.items() if i in new_id}
            if kept:
                repos[repo] = kept
                tags += len(kept)
        remove.append(old_refs)
    w.json(config.refs_path, {"repositories": repos})
    # Containers: their directories stay; only the record is rewritten.
    n = 0
    cdir = config.containers_dir
    for name in sorted(os.listdir(cdir)) if os.path.isdir(cdir) else ():
        old_path = os.path.join(cdir, name, "config.json")
        if not os.path.exists(old_path):
            continue
        try:
            rec = atomic.read_json(old_path)
            if rec.get("Id") != name:
                raise ValueError("id mismatch")
        except (OSError, ValueError) as e:
            log.warning("format 1 container %s is broken (%s); 0.1.0 skipped it too", name[:12], e)
            continue
        w.json(os.path.join(cdir, name, "container.json"), _container(rec, new_id, config))
        remove.append(old_path)
        n += 1
    w.json(os.path.join(root, JOURNAL), {"from": 1, "renames": renames, "remove": remove})
    return {"images": len(new_id), "tags": tags, "containers": n}


def _container(rec, new_id, config):
    """A format-1 container record (the v1.3 inspect shape plus PydState) in
    format 2's schema (docs/storage.md)."""
    flat = rec.get("Config") or {}
    host = {k: flat.get(k) for k in HOST_FIELDS}
    host["Binds"] = (rec.get("HostConfig") or {}).get("Binds")
    st = rec.get("State") or {}
    status = rec.get("PydState")
    if status not in _V1_STATES:
        status = "running" if st.get("Running") else "exited"
    bound = {os.path.normpath(b.split(":")[1]) for b in host["Binds"] or [] if b.count(":") in (1, 2)}
    declared = set(flat.get("Volumes") or {})
    vols, rw = rec.get("Volumes") or {}, rec.get("VolumesRW") or {}
    mounts = []
    for target in sorted(vols, key=lambda p: p.count("/")):
        source = vols[target]
        kind = ("bind" if target in bound else
                "volume" if target in declared and source.startswith(config.volumes_dir + "/") else "from")
        mounts.append({"target": target, "source": source, "rw": bool(rw.get(target, True)), "kind": kind})
    return {
        "id": rec["Id"], "name": "", "created": rec.get("Created") or "",
        "image": new_id.get(rec.get("Image") or "", rec.get("Image") or ""),
        "driver": rec.get("Driver") or "overlay2",
        "argv": [rec.get("Path") or ""] + list(rec.get("Args") or []),
        "config": {k: v for k, v in flat.items() if k not in HOST_FIELDS},
        "host": host,
        "state": {"status": status, "pid": st.get("Pid") or 0, "exit_code": st.get("ExitCode") or 0,
                  "started_at": st.get("StartedAt") or "", "finished_at": st.get("FinishedAt") or "",
                  "oom_killed": bool(st.get("OOMKilled")), "error": st.get("Error") or ""},
        "mounts": mounts,
    }


# -- step 3: roll forward ------------------------------------------------------

def _roll_forward(root):
    path = os.path.join(root, JOURNAL)
    try:
        journal = atomic.read_json(path)
    except FileNotFoundError:
        return
    for src, dest in journal.get("renames", []):
        if os.path.exists(src) and not os.path.exists(dest):
            os.rename(src, dest)
    for p in journal.get("remove", []):
        if os.path.isdir(p) and not os.path.islink(p):
            remove_tree(p)
        else:
            atomic.unlink_quiet(p)
    os.unlink(path)
    atomic.fsync_dir(root)
    log.info("data root %s: format 1 leftovers removed", root)
