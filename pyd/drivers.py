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

from . import layerfs, native

log = logging.getLogger(__name__)


class Overlay:
    name = "overlay2"

    def create(self, c, layers):
        for d in ("upper", "work", "rootfs"):
            os.mkdir(c.file(d), 0o755)

    def launch_args(self, c, layers, layers_dir):
        return dict(lowerdirs=layers, upperdir=c.file("upper"), workdir=c.file("work"),
                    layers_dir=layers_dir)

    def view(self, c, layers):
        """The container's filesystem as a stack of overlay-format dirs, top first."""
        return [c.file("upper")] + layers

    def changes(self, c, layers):
        return layerfs.changes(c.file("upper"), layers)

    def diff_source(self, c, layers, work):
        """A directory in overlay format holding just the container's changes."""
        return c.file("upper")

    def size_rw(self, c, layers):
        return layerfs.du(c.file("upper"))


class Copy:
    name = "vfs"

    def create(self, c, layers):
        os.mkdir(c.file("rootfs"), 0o755)
        layerfs.copy_union(layers, c.file("rootfs"))

    def launch_args(self, c, layers, layers_dir):
        return dict(rootfs_source=c.file("rootfs"))

    def view(self, c, layers):
        return [c.file("rootfs")]

    def changes(self, c, layers):
        return layerfs.diff_copy(c.file("rootfs"), layers)

    def diff_source(self, c, layers, work):
        dest = os.path.join(work, "diff")
        os.mkdir(dest, 0o755)
        layerfs.materialize_diff(c.file("rootfs"), layers, dest)
        return dest

    def size_rw(self, c, layers):
        total = 0
        for path, kind in self.changes(c, layers):
            if kind != 2:
                st = os.lstat(c.file("rootfs", path.lstrip("/")))
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
        from .tarsafe import remove_tree
        remove_tree(base)


def choose(name, tmp_dir):
    if name == "vfs":
        return Copy()
    if name == "overlay2":
        return Overlay()
    return Overlay() if overlay_works(tmp_dir) else Copy()
