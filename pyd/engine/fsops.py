"""Filesystem operations on images and containers: import a tar, insert a
download, commit a container's changes, list its changes, export it.

Every new image adds exactly one layer to its parent's (none for an
import), and its config is Docker's image format: rootfs.diff_ids and
history grow by one entry, `parent` names the image it was made from.
"""

import logging
import os
import posixpath
import threading
import uuid

from .. import __version__, errors, timefmt
from ..fs import layerfs, tarsafe
from . import createconfig
from .fetch import open_url

log = logging.getLogger(__name__)


def new_work_dir(tmp_dir, purpose):
    path = os.path.join(tmp_dir, f"{purpose}-{uuid.uuid4().hex}")
    os.makedirs(path, mode=0o700)
    return path


def architecture():
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def image_config(parent, diff_id, run_config, container="", container_config=None, comment="",
                 author="", created_by=""):
    """A new image config: `parent`'s layers (an Image, or None) plus
    `diff_id`; with diff_id None it adds no layer (a build's metadata step,
    marked empty_layer in its history entry, as Docker does)."""
    created = timefmt.now_iso()
    entry = {"created": created, "created_by": created_by}
    if diff_id is None:
        entry["empty_layer"] = True
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    cfg = {
        "architecture": architecture(),
        "os": "linux",
        "created": created,
        "author": author or "",
        "comment": comment or "",
        "config": run_config or createconfig.empty_config(),
        "container": container or "",
        "container_config": container_config or createconfig.empty_config(),
        "docker_version": "pyd-" + __version__,
        "history": (list(parent.config.get("history") or []) if parent else []) + [entry],
        "rootfs": {"type": "layers",
                   "diff_ids": (parent.diff_ids if parent else []) + ([diff_id] if diff_id else [])},
    }
    if parent:
        cfg["parent"] = "sha256:" + parent.id
    return cfg


def import_tar(images, tmp_dir, fileobj, total, progress, comment="", run_config=None, max_bytes=None):
    """A tar (any compression) as a new base image; returns the Image.
    `run_config`: the image's config (from import's changes), or none;
    `max_bytes`: the bound on the decompressed tar (tarsafe.extract)."""
    work = new_work_dir(tmp_dir, "import")
    try:
        layer = os.path.join(work, "layer")
        split = os.path.join(work, "layer.split")
        os.mkdir(layer, 0o755)
        try:
            with open(split, "wb") as split_file:
                result = tarsafe.extract(fileobj, layer, on_progress=lambda n: progress("Importing", n, total),
                                         split=split_file, max_bytes=max_bytes)
        except tarsafe.BadTar as e:
            raise errors.BadParameter(f"invalid tar: {e}") from e
        return images.create_with_layer(
            layer, result.digest, result.size,
            lambda d: image_config(None, d, run_config, comment=comment, created_by="import"), split=split)
    finally:
        tarsafe.remove_tree(work)


def insert_url(images, tmp_dir, parent, path, url, progress):
    """Download `url` to `path` in a new layer on top of `parent` (an Image)."""
    dest = posixpath.normpath("/" + path)
    if dest == "/" or path.endswith("/"):
        dest = posixpath.join(dest, posixpath.basename(url.rstrip("/")) or "index")
    resp, total = open_url(url)
    work = new_work_dir(tmp_dir, "insert")
    try:
        tree = os.path.join(work, "tree")
        target_dir = os.path.join(tree, posixpath.dirname(dest).lstrip("/"))
        os.makedirs(target_dir, 0o755)
        done = 0
        with resp, open(os.path.join(tree, dest.lstrip("/")), "wb") as out:
            os.fchmod(out.fileno(), 0o755)
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                progress("Inserting", done, total)
        run_config = dict(parent.run_config or createconfig.empty_config())
        cmd = ["/bin/sh", "-c", f"#(nop) ADD {url} in {dest}"]
        cc = dict(run_config, Cmd=cmd)
        # through the extractor, as a commit is, for the layer's tar split
        layer, split = os.path.join(work, "layer"), os.path.join(work, "layer.split")
        os.mkdir(layer, 0o755)
        result = copy_layer(tree, layer, split)
        return images.create_with_layer(
            layer, result.digest, done,
            lambda d: image_config(parent, d, run_config, container_config=cc, created_by=" ".join(cmd)),
            split=split)
    finally:
        tarsafe.remove_tree(work)


def commit(images, c, layers, driver, body, comment, author, tmp_dir):
    """The container's changes as one new layer on its image; returns the Image."""
    base = createconfig.join(c.config, c.host)
    run_config = createconfig.for_commit(base, body)
    parent = images.get(c.image)
    work = new_work_dir(tmp_dir, "commit")
    try:
        layer, split = os.path.join(work, "layer"), os.path.join(work, "layer.split")
        os.mkdir(layer, 0o755)
        result = copy_layer(driver.diff_source(c.path, layers, work), layer, split)
        return images.create_with_layer(
            layer, result.digest, result.size,
            lambda d: image_config(parent, d, run_config, container=c.id, container_config=base,
                                   comment=comment, author=author,
                                   created_by=" ".join(createconfig.argv(c.config))),
            split=split)
    finally:
        tarsafe.remove_tree(work)


def commit_step(images, c, layers, driver, parent, run_config, container_config, tmp_dir, author=""):
    """A build step's image: container `c`'s changes as a layer on `parent`
    (an Image, or None for scratch) with the step's own configs; no layer
    at all when the step changed nothing (history's empty_layer)."""
    work = new_work_dir(tmp_dir, "build")
    try:
        layer, split = os.path.join(work, "layer"), os.path.join(work, "layer.split")
        os.mkdir(layer, 0o755)
        result = copy_layer(driver.diff_source(c.path, layers, work), layer, split)

        def make(diff_id):
            return image_config(parent, diff_id, run_config, container=c.id, container_config=container_config,
                                author=author, created_by=" ".join(container_config.get("Cmd") or []))
        if not result.files:
            return images.create(make(None))
        return images.create_with_layer(layer, result.digest, result.size, make, split=split)
    finally:
        tarsafe.remove_tree(work)


def commit_dir(images, tree, parent, run_config, container_config, tmp_dir, author=""):
    """A layer made from the plain directory `tree` on `parent` (a build
    step on an image with no filesystem yet: FROM scratch)."""
    work = new_work_dir(tmp_dir, "build")
    try:
        layer, split = os.path.join(work, "layer"), os.path.join(work, "layer.split")
        os.mkdir(layer, 0o755)
        result = copy_layer(tree, layer, split)
        return images.create_with_layer(
            layer, result.digest, result.size,
            lambda d: image_config(parent, d, run_config, container_config=container_config, author=author,
                                   created_by=" ".join(container_config.get("Cmd") or [])),
            split=split)
    finally:
        tarsafe.remove_tree(work)


def commit_config(images, parent, run_config, container_config, author=""):
    """A build's metadata step: a new config on `parent`'s layers, no layer."""
    return images.create(image_config(parent, None, run_config, container_config=container_config,
                                      author=author, created_by=" ".join(container_config.get("Cmd") or [])))


def changes(driver, c, layers):
    return driver.changes(c.path, layers)


def export(view):
    """A producer that writes the filesystem `view` (top layer first) as a tar."""
    def produce(send):
        with ChunkWriter(send) as out:
            layerfs.export_tar(view, out)
    return produce


class ChunkWriter:
    """A file-like object that hands the stream writer 256 KiB pieces."""

    def __init__(self, send, size=256 << 10):
        self._send, self._size, self._buf = send, size, bytearray()

    def write(self, data):
        self._buf += data
        if len(self._buf) >= self._size:
            self._send(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def flush(self):
        if self._buf:
            self._send(bytes(self._buf))
            self._buf.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.flush()


def copy_layer(upper, dest, split=None):
    """Copy an overlay-format dir into a new layer, whiteouts and opaque dirs kept,
    by streaming it as a tar into the hostile-tar extractor (one code path for
    both). The result's digest is the new layer's diff id. `split`: a path to
    write the layer's tar split to (for LayerStore.add), or None."""
    def extract(src):
        if split is None:
            return tarsafe.extract(src, dest)
        with open(split, "wb") as split_file:
            return tarsafe.extract(src, dest, split=split_file)
    return piped(lambda out: layerfs.layer_tar(upper, out), extract, "commit-tar")


def piped(write, read, name):
    """`write(out)` on a thread into a pipe that `read(src)` reads here;
    returns what read returns. A writer's failure is the cause when the
    reader failed too (it only saw the stream cut short), unless the writer
    broke on the pipe the reader had closed."""
    r, w = os.pipe()
    failure = []

    def writer():
        try:
            with os.fdopen(w, "wb") as out:
                write(out)
        except Exception as e:
            failure.append(e)

    t = threading.Thread(target=writer, name=name, daemon=True)
    t.start()
    try:
        with os.fdopen(r, "rb") as src:
            try:
                result = read(src)
            except BaseException:
                src.close()  # unblocks a writer still writing (EPIPE)
                raise
    except Exception as e:
        t.join()
        if failure and not isinstance(failure[0], BrokenPipeError):
            raise failure[0] from e
        raise
    finally:
        t.join()
    if failure:
        raise failure[0]
    return result
