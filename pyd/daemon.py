"""The backend facade: one method per operation. Handlers call only this.

It owns the stores and the runtime, and the rules that span them (an image
in use by a container cannot be deleted, and so on).
"""

import logging
import os
import posixpath

from . import __version__, errors, sysinfo, tarsafe
from .fetch import open_url
from .images import ImageStore, clean_tmp, empty_config, short, split_name

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config):
        self.config = config
        self.images = ImageStore(config)
        self.containers = None  # set by start() once the runtime lands

    # -- life ------------------------------------------------------------

    def start(self):
        os.makedirs(self.config.tmp_dir, mode=0o700, exist_ok=True)
        clean_tmp(self.config)
        self.images.load()

    def shutdown(self):
        pass

    def image_in_use(self, image_id):
        return None

    # -- misc ------------------------------------------------------------

    def version(self):
        return {"Version": __version__, "GitCommit": sysinfo.git_commit(),
                "GoVersion": sysinfo.runtime_version()}

    def info(self):
        from . import cgroups
        return {
            "Containers": 0,
            "Images": self.images.count(),
            "Debug": self.config.debug,
            "NFd": sysinfo.open_fds(),
            "NGoroutines": sysinfo.threads(),
            "MemoryLimit": cgroups.memory_limit_supported(),
            "SwapLimit": cgroups.swap_limit_supported(),
            "EventsListeners": "0",
            "LXCVersion": "",
            "KernelVersion": sysinfo.kernel_version(),
            "Driver": "overlay2",
        }

    # -- images ----------------------------------------------------------

    def image_import(self, fileobj, total, repo, tag, progress, comment=""):
        """Import a tar (any compression) as a new base image; returns its record."""
        work = self.images.new_work_dir("import")
        try:
            layer = os.path.join(work, "layer")
            os.mkdir(layer, 0o755)
            try:
                result = tarsafe.extract(fileobj, layer, on_progress=lambda n: progress("Importing", n, total))
            except tarsafe.BadTar as e:
                raise errors.BadParameter(f"invalid tar: {e}") from None
            rec = self.images.register(layer, result.size, result.digest, comment=comment)
        finally:
            tarsafe.remove_tree(work)
        if repo:
            self.images.set_tag(rec["id"], repo, tag)
        return rec

    def image_insert(self, name, path, url, progress):
        """Download `url` to `path` in a new layer on top of image `name`."""
        parent = self.images.resolve(name)
        dest = posixpath.normpath("/" + path)
        if dest == "/" or path.endswith("/"):
            dest = posixpath.join(dest, posixpath.basename(url.rstrip("/")) or "index")
        resp, total = open_url(url)
        work = self.images.new_work_dir("insert")
        try:
            layer = os.path.join(work, "layer")
            target_dir = os.path.join(layer, posixpath.dirname(dest).lstrip("/"))
            os.makedirs(target_dir, 0o755)
            done = 0
            with resp, open(os.path.join(layer, dest.lstrip("/")), "wb") as out:
                os.fchmod(out.fileno(), 0o755)
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    progress("Inserting", done, total)
            config = dict(parent.get("config") or empty_config())
            cc = dict(config, Cmd=["/bin/sh", "-c", f"#(nop) ADD {url} in {dest}"])
            rec = self.images.register(layer, done, "", parent=parent["id"], config=config,
                                       container_config=cc)
        finally:
            tarsafe.remove_tree(work)
        return rec

    def image_list(self, all_, filter_):
        return self.images.list_rows(all_, filter_)

    def image_viz(self):
        return self.images.viz()

    def image_inspect(self, name):
        rec = dict(self.images.resolve(name))
        rec.pop("layer_digest", None)
        return rec

    def image_history(self, name):
        return self.images.history(name)

    def image_tag(self, name, repo, tag, force):
        if not repo:
            raise errors.BadParameter("missing parameter: repo")
        if tag is None:
            repo, tag = split_name(repo)
        self.images.set_tag(self.images.resolve(name)["id"], repo, tag, force)

    def image_delete(self, name):
        return self.images.delete(name, self.image_in_use)
