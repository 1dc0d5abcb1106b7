"""Storage drivers: how a container's root filesystem is made from its image.

overlay2  the image's layers are overlay lower dirs; the container writes to
          its own upper dir (containers/<id>/upper). Nothing is copied.
vfs       the fallback when overlayfs cannot be mounted on the data root
          (for example a root on overlayfs itself, or a kernel without it):
          the merged image is copied into containers/<id>/rootfs at create,
          and changes are found by comparing that copy with the layers.

Layers are stored in overlay format either way, so images are the same for
both drivers and a data root can move between them.
"""

import logging
import os
import stat
import uuid

from .. import native
from . import layerfs
from .tarsafe import remove_tree

log = logging.getLogger(__name__)


def _in(cdir, *names):
    return os.path.join(cdir, *names)


class Overlay:
    name = "overlay2"

    def create(self, cdir, layers):
        for d in ("upper", "work", "rootfs"):
            os.mkdir(_in(cdir, d), 0o755)

    def launch_args(self, cdir, layers, layers_dir):
        return dict(lowerdirs=layers, upperdir=_in(cdir, "upper"), workdir=_in(cdir, "work"),
                    layers_dir=layers_dir)

    def view(self, cdir, layers):
        """The container's filesystem as a stack of overlay-format dirs, top first."""
        return [_in(cdir, "upper")] + layers

    def changes(self, cdir, layers):
        return layerfs.changes(_in(cdir, "upper"), layers)

    def diff_source(self, cdir, layers, work):
        """A directory in overlay format holding just the container's changes."""
        return _in(cdir, "upper")

    def size_rw(self, cdir, layers):
        return layerfs.du(_in(cdir, "upper"))


class Copy:
    name = "vfs"

    def create(self, cdir, layers):
        os.mkdir(_in(cdir, "rootfs"), 0o755)
        layerfs.copy_union(layers, _in(cdir, "rootfs"))

    def launch_args(self, cdir, layers, layers_dir):
        return dict(rootfs_source=_in(cdir, "rootfs"))

    def view(self, cdir, layers):
        return [_in(cdir, "rootfs")]

    def changes(self, cdir, layers):
        return layerfs.diff_copy(_in(cdir, "rootfs"), layers)

    def diff_source(self, cdir, layers, work):
        dest = os.path.join(work, "diff")
        os.mkdir(dest, 0o755)
        layerfs.materialize_diff(_in(cdir, "rootfs"), layers, dest)
        return dest

    def size_rw(self, cdir, layers):
        total = 0
        for path, kind in self.changes(cdir, layers):
            if kind != 2:
                st = os.lstat(_in(cdir, "rootfs", path.lstrip("/")))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
        return total


def overlay_works(tmp_dir):
    """Mount a tiny overlay under the data root and take it down again."""
    base = os.path.join(tmp_dir, f"probe-{uuid.uuid4().hex[:8]}")
    dirs = {k: os.path.join(base, k) for k in ("lower", "upper", "work", "merged")}
    try:
        for d in dirs.values():
            os.makedirs(d)
        native.mount("overlay", dirs["merged"], "overlay", 0,
                     f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}")
        native.umount(dirs["merged"])
        return True
    except OSError as e:
        log.warning("overlayfs is not usable on %s (%s): using the vfs driver, which copies", tmp_dir, e)
        return False
    finally:
        remove_tree(base)


def choose(name, tmp_dir):
    if name == "vfs":
        return Copy()
    if name == "overlay2":
        return Overlay()
    return Overlay() if overlay_works(tmp_dir) else Copy()


def by_name(name):
    """The driver a container was made with (each container records its own)."""
    return {"overlay2": Overlay, "vfs": Copy}[name]()
