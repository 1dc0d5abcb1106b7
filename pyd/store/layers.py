"""Layers, keyed by diff id: the sha256 of the layer's uncompressed tar
stream. A layer is stored once however many images use it.

On disk:
  layers/sha256/<hex>/        the layer, a directory in overlayfs format
                              (whiteouts are 0/0 char devices), used as it
                              is as an overlay lower dir
  layers/sha256/<hex>.split   its tar split (fs/tarsplit.py): the tar's bytes
                              other than file contents, so that write_tar
                              gives back the tar exactly as it came; absent
                              for layers stored before pyd kept splits
  layers/sha256/<hex>.json    its record: {"diff_id": "sha256:<hex>", "size": n}

A layer is added in steps: its finished directory is renamed in, then its
split, then its record is written atomically. A directory or a split
without a record is debris from a crash and is removed at load. Layers have
no owner here: the image store removes the ones no image refers to
(ImageStore.collect).
"""

import logging
import os
import re
import threading
import uuid

from .. import errors
from ..fs import layerfs, tarsplit
from ..fs.tarsafe import remove_tree
from .. import native
from . import atomic

log = logging.getLogger(__name__)

HEX_RE = re.compile(r"^[a-f0-9]{64}\Z")


def hex_of(diff_id):
    """'sha256:<hex>' -> '<hex>', refusing anything that is not a sha256 digest."""
    algo, _, hexpart = (diff_id or "").partition(":")
    if algo != "sha256" or not HEX_RE.match(hexpart):
        raise ValueError(f"invalid layer digest {diff_id!r}")
    return hexpart


class LayerStore:
    def __init__(self, config):
        self.dir = config.layers_dir
        self.tmp_dir = config.tmp_dir
        self._lock = threading.Lock()
        self._size = {}  # diff id -> size in bytes

    def load(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        sizes = {}
        names = os.listdir(self.dir)
        for name in names:
            if name.endswith(".tmp"):
                atomic.unlink_quiet(os.path.join(self.dir, name))
            if not name.endswith(".json"):
                continue
            try:
                rec = atomic.read_json(os.path.join(self.dir, name))
                if hex_of(rec.get("diff_id")) != name[:-5]:
                    raise ValueError("digest mismatch")
                if not os.path.isdir(os.path.join(self.dir, name[:-5])):
                    raise ValueError("layer directory missing")
                sizes[rec["diff_id"]] = int(rec.get("size") or 0)
            except (OSError, ValueError) as e:
                log.warning("dropping broken layer record %s: %s", name[:20], e)
                atomic.unlink_quiet(os.path.join(self.dir, name))
        for name in names:
            if HEX_RE.match(name) and "sha256:" + name not in sizes:
                log.info("removing unregistered layer %s", name[:20])
                remove_tree(os.path.join(self.dir, name))
            elif name.endswith(".split") and "sha256:" + name[:-6] not in sizes:
                log.info("removing the tar split of unregistered layer %s", name[:20])
                atomic.unlink_quiet(os.path.join(self.dir, name))
        with self._lock:
            self._size = sizes

    def path(self, diff_id):
        return os.path.join(self.dir, hex_of(diff_id))

    def exists(self, diff_id):
        with self._lock:
            return diff_id in self._size

    def size(self, diff_id):
        with self._lock:
            return self._size.get(diff_id, 0)

    def ids(self):
        with self._lock:
            return set(self._size)

    def add(self, src_dir, diff_id, size, split=None):
        """Move the finished layer `src_dir` into the store, with `split`, the
        path of its tar split (tarsafe.extract(split=...)), if any. A layer
        with the same diff id already stored wins and `src_dir` is removed;
        it takes `split` if it has none (the same tar gives the same files)."""
        dest = self.path(diff_id)
        # The files reach the disk before the record that names them (a power
        # cut must not leave a record of a layer whose data was lost); outside
        # the lock, which lookups share.
        if os.path.isdir(src_dir):
            native.syncfs(src_dir)
        with self._lock:
            if diff_id in self._size:
                remove_tree(src_dir)
                if split is not None:
                    if os.path.exists(dest + ".split"):
                        atomic.unlink_quiet(split)
                    else:
                        os.rename(split, dest + ".split")
                        log.info("layer %s now has a tar split", diff_id[7:19])
                return diff_id
            os.rename(src_dir, dest)
            if split is not None:
                os.rename(split, dest + ".split")
            atomic.write_json(dest + ".json", {"diff_id": diff_id, "size": size})
            self._size[diff_id] = size
        log.info("stored layer %s (%d bytes)", diff_id[7:19], size)
        return diff_id

    def detach(self, diff_id):
        """Unregister a layer and move its directory to tmp/; returns that path
        for the caller to remove_tree (outside its locks). The record goes
        first: a crash afterwards leaves a directory the next load removes."""
        path = self.path(diff_id)
        with self._lock:
            self._size.pop(diff_id, None)
            atomic.unlink_quiet(path + ".json")
            atomic.unlink_quiet(path + ".split")
        trash = os.path.join(self.tmp_dir, f"deleted-{hex_of(diff_id)[:16]}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, trash)
        except OSError:
            trash = path
        log.info("removed layer %s", diff_id[7:19])
        return trash

    def has_split(self, diff_id):
        return os.path.exists(self.path(diff_id) + ".split")

    def write_tar(self, diff_id, out):
        """Write the layer's tar onto the binary file `out`: the bytes it came
        as, from its split; for a layer stored without one, regenerated
        (layerfs.layer_tar). Either way its sha256 is checked against the
        diff id while writing, and a mismatch raises errors.PydError before
        the last bytes go out. Returns the digest."""
        if not self.exists(diff_id):
            raise errors.NotFound(f"No such layer: {diff_id}")
        path = self.path(diff_id)
        if os.path.exists(path + ".split"):
            return tarsplit.write(path + ".split", path, out, digest=diff_id)
        checked = tarsplit.CheckedWriter(out)
        layerfs.layer_tar(path, checked)
        try:
            return checked.finish(diff_id, f"layer {diff_id}")
        except errors.PydError:
            raise errors.PydError(
                f"layer {diff_id} cannot be reproduced exactly (stored before pyd kept tar splits); "
                "re-import or re-pull the image") from None
