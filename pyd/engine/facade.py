"""The engine's facade: one method per operation. API handlers call only this.

It owns the stores, the runtime and the event bus, and the rules that span
them (an image in use by a container cannot be deleted, and so on). Every
container state change goes through `self.lifecycle`. Methods return
records' views (engine.views) or plain facts; the API projects them.
"""

import logging
import os
import signal as signals
import threading

from .. import __version__, errors, sysinfo, timefmt
from ..fs import drivers
from ..fs.fsopt import mark_topdir
from ..fs.tarsafe import remove_tree
from ..runtime import attach as attaching, cgroups
from ..runtime.process import Runtime
from ..runtime.stdio import STDERR, STDOUT
from ..store import format as data_format
from ..store.containers import Container, ContainerStore, new_id
from ..store.images import ImageStore, short
from ..store.layers import LayerStore
from ..store.volumes import VolumeStore
from ..store.refs import parse_repo_tag, split_name
from . import archive, createconfig, etcfiles, fsops, lifecycle as lc, mounts, plan as plans
from .events import Bus
from .fetch import open_url
from .views import ImageRow, ImageView, container_view

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, config):
        self.config = config
        self.events = Bus()
        self.layers = LayerStore(config)
        self.images = ImageStore(config, self.layers)
        self.containers = ContainerStore(config)
        self.volumes = VolumeStore(config)
        self.lifecycle = lc.Lifecycle(self.containers, self.events)
        self.runtime = Runtime(config)
        self.driver = None  # chosen at start: overlay2, or vfs where overlayfs cannot work

    # -- life ------------------------------------------------------------

    def start(self):
        """Open the data root: check its format (migrating a 0.1.0 root), load
        the stores, and settle containers a dead daemon left behind."""
        data_format.open_root(self.config)
        for d in (self.config.tmp_dir, self.config.volumes_dir, self.config.containers_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
            mark_topdir(d)
        for name in os.listdir(self.config.tmp_dir):
            remove_tree(os.path.join(self.config.tmp_dir, name))
        self.driver = drivers.choose(self.config.storage_driver, self.config.tmp_dir)
        log.info("storage driver: %s", self.driver.name)
        self.layers.load()
        self.images.load()
        for c in self.containers.load():
            self._recover(c)

    def _recover(self, c):
        """A container recorded as running belonged to a daemon that died. Its
        process lost its output pipes with that daemon and nothing can reap
        it: kill what is left in its cgroup and record the exit, as dockerd
        does without live restore."""
        if c.status == lc.REMOVING:
            self._remove_files(c, remove_volumes=False)
            return
        self.runtime.reap_orphan(c.id)
        if c.status in (lc.RUNNING, lc.STARTING):
            code = 137 if c.status == lc.RUNNING else 128
            self.lifecycle.exited(c, code, error="daemon restarted while the container was running")
            log.info("container %s was running when the daemon stopped; recorded as exited", c.short_id)

    def shutdown(self):
        """Stop running containers, in parallel, each with the default grace."""
        running = [c for c in self.containers.all() if c.running]
        threads = [threading.Thread(target=self._stop_quiet, args=(c,), name=f"stop-{c.short_id}")
                   for c in running]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _stop_quiet(self, c):
        try:
            self._stop(c, self.config.shutdown_grace)
        except errors.PydError:
            pass
        except Exception:
            log.exception("stopping %s at shutdown", c.short_id)

    # -- facts -----------------------------------------------------------

    def version(self):
        return {"version": __version__, "git_commit": sysinfo.git_commit(),
                "runtime": sysinfo.runtime_version(), "kernel": sysinfo.kernel_version()}

    def info(self):
        return {
            "containers": self.containers.count(),
            "images": self.images.count(),
            "debug": self.config.debug,
            "fds": sysinfo.open_fds(),
            "threads": sysinfo.threads(),
            "memory_limit": cgroups.memory_limit_supported(),
            "swap_limit": cgroups.swap_limit_supported(),
            "kernel": sysinfo.kernel_version(),
            "driver": self.driver.name,
        }

    # -- images ----------------------------------------------------------

    def _image_view(self, img):
        return ImageView(img, self.images.own_size(img), self.images.virtual_size(img),
                         self.images.tags_of(img.id))

    def check_repo_tag(self, repo, tag):
        return parse_repo_tag(repo, tag)

    def image_import(self, fileobj, total, repo, tag, progress, comment=""):
        """Import a tar (any compression) as a new base image; returns its id."""
        img = fsops.import_tar(self.images, self.config.tmp_dir, fileobj, total, progress, comment)
        self.events.publish("image", "import", img.id)
        if repo:
            self._tag(img.id, repo, tag, force=True)  # an import moves the tag, as in Docker
        return img.id

    def image_import_url(self, url, repo, tag, progress, comment=""):
        resp, total = open_url(url)
        with resp:
            return self.image_import(resp, total, repo, tag, progress, comment)

    def image_insert(self, name, path, url, progress):
        """Download `url` to `path` in a new layer on top of image `name`; returns its id."""
        img = fsops.insert_url(self.images, self.config.tmp_dir, self.images.resolve(name), path, url, progress)
        self.events.publish("image", "insert", img.id)
        return img.id

    def image_resolve(self, name):
        return self.images.resolve(name).id

    def image_list(self, all_=False, filter_=None):
        """One row per repo:tag, plus untagged images (leaves only unless all_)."""
        rows, tagged = [], set()
        for repo, tag, image_id in self.images.refs():
            tagged.add(image_id)
            if filter_ and repo != filter_:
                continue
            rows.append(ImageRow(repo, tag, self._image_view(self.images.get(image_id))))
        if not filter_:
            images = self.images.all()
            parents = {img.parent for img in images}
            for img in images:
                if img.id not in tagged and (all_ or img.id not in parents):
                    rows.append(ImageRow(None, None, self._image_view(img)))
        return rows

    def image_all(self):
        return [self._image_view(img) for img in self.images.all()]

    def image_inspect(self, name):
        return self._image_view(self.images.resolve(name))

    def image_history(self, name):
        """The image and its ancestors, child first."""
        return [self._image_view(img) for img in self.images.chain(self.images.resolve(name).id)]

    def image_tag(self, name, repo, tag, force):
        if not repo:
            raise errors.BadParameter("missing parameter: repo")
        if tag is None:
            repo, tag = split_name(repo)
        self._tag(self.images.resolve(name).id, repo, tag, force)

    def _tag(self, image_id, repo, tag, force):
        self.images.set_tag(image_id, repo, tag, force)
        self.events.publish("image", "tag", image_id, name=f"{repo}:{tag or 'latest'}")

    def image_delete(self, name):
        """[("untagged", id, "repo:tag") | ("deleted", id, "")], in order."""
        out = self.images.delete(name, self.containers.using_image)
        for what, image_id, ref in out:
            self.events.publish("image", "untag" if what == "untagged" else "delete", image_id,
                                **({"name": ref} if ref else {}))
        return out

    # -- containers: create and inspect ----------------------------------

    def container_create(self, flat):
        """Create from a flat config (createconfig); returns (id, warnings)."""
        cfg = createconfig.check(flat)
        image = self.images.resolve(cfg["Image"])
        cfg = createconfig.merge(cfg, image.run_config)
        warnings = []
        if cfg["Memory"] and not cgroups.memory_limit_supported():
            warnings.append("Your kernel does not support memory limit capabilities. Limitation discarded.")
            cfg["Memory"] = cfg["MemorySwap"] = 0
        if cfg["Memory"] and not cgroups.swap_limit_supported() and cfg["MemorySwap"]:
            warnings.append("Your kernel does not support swap limit capabilities. Limitation discarded.")
        argv = createconfig.argv(cfg)
        if not argv:
            raise errors.BadParameter("No command specified")
        cid = new_id()
        if not cfg.get("Hostname"):
            cfg["Hostname"] = cid[:12]
        config, host = createconfig.split(cfg)
        host["Binds"] = None
        path = self.containers.path_for(cid)
        data = {"id": cid, "name": "", "created": timefmt.now_iso(), "image": image.id,
                "driver": self.driver.name, "argv": argv, "config": config, "host": host,
                "state": lc.new_state(), "mounts": []}
        os.makedirs(path, 0o700)
        try:
            c = Container(data, path)
            self.driver.create(path, self.images.layer_dirs(image))
            etcfiles.write(path, cfg["Hostname"], cfg.get("Dns"))
            self.lifecycle.created(c)
        except BaseException:
            remove_tree(path)
            raise
        self.containers.add(c)
        log.info("created %s from %s", c.short_id, short(image.id))
        return cid, warnings

    def container_inspect(self, ref):
        return container_view(self.containers.get(ref))

    def container_list(self, all_=False, limit=None, since=None, before=None, size=False):
        since_id = self.containers.get(since).id if since else None
        before_id = self.containers.get(before).id if before else None
        n = -1 if limit is None or limit <= 0 else limit
        out, found_before = [], False
        for c in self.containers.all():
            if not c.running and not all_ and n == -1 and not since_id and not before_id:
                continue
            if before_id:
                if c.id == before_id:
                    found_before = True
                    continue
                if not found_before:
                    continue
            if len(out) == n:
                break
            if c.id == since_id:
                break
            extra = {"image_ref": self._image_ref(c.image)}
            if size:
                layers, driver, _ = self._stack(c)
                rw = driver.size_rw(c.path, layers)
                extra.update(size_rw=rw, size_rootfs=rw + self.images.virtual_size(self.images.get(c.image)))
            out.append(container_view(c, **extra))
        return out

    def _image_ref(self, image_id):
        tags = self.images.tags_of(image_id) if self.images.exists(image_id) else []
        return f"{tags[0][0]}:{tags[0][1]}" if tags else ""

    # -- containers: start, stop, kill, wait ------------------------------

    def _stack(self, c):
        """The container's image layers (top first), its driver and its view:
        resolved once per operation."""
        layers = self.images.layer_dirs(self.images.get(c.image))
        driver = drivers.by_name(c.data["driver"])
        return layers, driver, driver.view(c.path, layers)

    def container_start(self, ref, binds=None):
        """Start a created or exited container; `binds` (a list or None) replace the saved ones."""
        c = self.containers.get(ref)
        mounts.validate_binds(binds)
        with c.lock:
            self.lifecycle.check(c, lc.STARTING)  # before any volume is made for it
            layers, driver, view = self._stack(c)
            effective = binds if binds is not None else c.host.get("Binds")
            c.data["mounts"] = mounts.prepare(c, view, self.volumes, layers, effective,
                                              self.containers)
            if binds is not None:
                c.host["Binds"] = binds
            back_to = self.lifecycle.starting(c)
        output = self.runtime.output(c.id, c.path)
        try:
            plan = plans.build(c, layers, view, driver, self.config.layers_dir)
            proc = self.runtime.start(plan, output)
        except BaseException as e:
            output.end()  # clients attached before this start see their stream end (once, here)
            self.lifecycle.start_failed(c, back_to, str(e))
            if isinstance(e, OSError):
                raise errors.PydError(f"Cannot start container {c.short_id}: {e.strerror or e}") from e
            raise
        self.lifecycle.running(c, proc.pid)
        threading.Thread(target=self._watch, args=(c, proc), name=f"monitor-{c.short_id}",
                         daemon=True).start()

    def _watch(self, c, proc):
        """The container's monitor: pump its output until it exits, then record the exit."""
        ex = proc.monitor()
        with c.lock:
            self.lifecycle.exited(c, ex.code, ex.oom_killed)
            self.runtime.release(proc)

    def _signal(self, c, sig):
        with c.lock:
            if not c.running:
                raise errors.Conflict(f"container {c.short_id} is not running")
            self._process(c).signal(sig)

    def _stop(self, c, timeout):
        """SIGTERM, then SIGKILL after `timeout` seconds; returns when it has exited."""
        with c.lock:
            if not c.running:
                raise errors.NotModified(f"container {c.short_id} is not running")
        try:
            self._signal(c, signals.SIGTERM)
        except errors.Conflict:
            return
        if not self.lifecycle.wait_stopped(c, max(timeout, 0)):
            self._kill(c, signals.SIGKILL)

    def _kill(self, c, sig):
        self._signal(c, sig)
        if sig == signals.SIGKILL:
            self.lifecycle.wait_stopped(c, 30)

    def container_stop(self, ref, timeout=None):
        self._stop(self.containers.get(ref), 10 if timeout is None else timeout)

    def container_restart(self, ref, timeout=None):
        c = self.containers.get(ref)
        if c.running:
            self._stop(c, 10 if timeout is None else timeout)
        self.container_start(c.id)

    def container_kill(self, ref, sig=None):
        self._kill(self.containers.get(ref), parse_signal(sig))

    def container_wait(self, ref):
        c = self.containers.get(ref)
        self.lifecycle.wait_stopped(c)
        return c.state.get("exit_code", 0)

    # -- containers: delete ---------------------------------------------

    def container_delete(self, ref, remove_volumes=False, force=False):
        c = self.containers.get(ref)
        if force and c.running:
            self._kill(c, signals.SIGKILL)
        self.lifecycle.removing(c)
        self._remove_files(c, remove_volumes)

    def _remove_files(self, c, remove_volumes):
        self.runtime.remove_cgroup(c.id)
        if remove_volumes:
            mounts.remove_owned(c, self.volumes, self.containers.all())
        self.containers.discard(c)
        self.runtime.forget(c.id)
        self.lifecycle.removed(c)
        log.info("removed %s", c.short_id)

    # -- containers: attach, resize, top ----------------------------------

    def container_get(self, ref):
        """Check that the container exists (before a hijack); returns its id."""
        return self.containers.get(ref).id

    def container_attach(self, ref, conn, logs, stream, stdin, stdout, stderr, framed, error_format):
        """Serve an attach session on `conn` (a duplex Conn) until it ends."""
        c = self.containers.get(ref)
        streams = [s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on]
        output = self.runtime.output(c.id, c.path)
        with c.lock:
            waiting = c.status in (lc.CREATED, lc.STARTING)
            live = stream and (c.running or waiting)
            replay, sub = output.subscribe(streams, logs, live, wait_for_start=waiting, on_drop=conn.abort)
            target = None
            if stdin and stream and c.config.get("OpenStdin") and (c.running or waiting):
                min_run = self.runtime.runs(c.id) + (1 if waiting else 0)
                target = attaching.StdinTarget(self.runtime, c.id, min_run, bool(c.config.get("StdinOnce")))
        try:
            attaching.run(conn, c.short_id, replay, sub, target, bool(c.config.get("Tty")), framed,
                          error_format)
        finally:
            if sub is not None:
                output.unsubscribe(sub)

    def _process(self, c):
        p = self.runtime.process(c.id)
        if p is None:
            raise errors.Conflict(f"container {c.short_id} is not running")
        return p

    def container_resize(self, ref, h, w):
        c = self.containers.get(ref)
        with c.lock:
            self._process(c).resize(h, w)

    def container_top(self, ref):
        c = self.containers.get(ref)
        with c.lock:
            p = self._process(c)
        return p.processes()

    # -- containers: filesystem -------------------------------------------

    def container_changes(self, ref):
        """[(path, kind)] with kind 0 modified, 1 added, 2 deleted."""
        c = self.containers.get(ref)
        layers, driver, _ = self._stack(c)
        return fsops.changes(driver, c, layers)

    def container_export(self, ref):
        """A producer that writes the container's filesystem as a tar."""
        c = self.containers.get(ref)
        return fsops.export(self._stack(c)[2])

    def commit(self, ref, repo, tag, comment, author, body):
        """Commit a container's changes as a new image; returns its id."""
        c = self.containers.get(ref)
        if repo:
            repo, tag = parse_repo_tag(repo, tag)
        layers, driver, _ = self._stack(c)
        img = fsops.commit(self.images, c, layers, driver, body, comment, author, self.config.tmp_dir)
        self.events.publish("container", "commit", c.id, image=img.id)
        if repo:
            self._tag(img.id, repo, tag, force=True)
        log.info("committed %s as image %s", c.short_id, short(img.id))
        return img.id

    # -- archive ------------------------------------------------------------
    # docker cp (GET/HEAD/PUT /containers/{id}/archive); engine.archive does
    # the work and docs/archive.md says where the files are.

    def _archive_open(self, c, write=False):
        """The container's root (engine.archive.Opened); the caller holds c.lock."""
        layers = self.images.layer_dirs(self.images.get(c.image))
        return archive.open_root(c, self.runtime, layers, write)

    def container_stat_path(self, ref, path):
        """Docker's ContainerPathStat of `path` (a dict), for HEAD."""
        c = self.containers.get(ref)
        with c.lock, self._archive_open(c) as opened:
            st, node = archive.stat_path(opened, path, ref)
            node.close()
        return st

    def container_archive(self, ref, path):
        """(stat, producer): the stat (404 before any byte is sent) and a
        Stream producer writing the tar of what the stat describes. The lock
        is held only while the root is opened: an open root stays valid
        without it (a stopped container's read-only mount does not use its
        upper dir as one, so it may start meanwhile)."""
        c = self.containers.get(ref)
        with c.lock:
            opened = self._archive_open(c)
        try:
            st, node = archive.stat_path(opened, path, ref)
        except BaseException:
            opened.close()
            raise
        self.events.publish("container", "archive-path", c.id)
        return st, archive.producer(opened, node, path)

    def container_extract(self, ref, path, body, copy_uid_gid=False, no_overwrite_dir_non_dir=False):
        """Extract the tar `body` under directory `path`. The lock is held
        throughout: a stopped container's upper dir may be in use by one
        mount only, so it cannot start meanwhile."""
        c = self.containers.get(ref)
        with c.lock, self._archive_open(c, write=True) as opened:
            archive.extract(c, opened, path, ref, body, self._stack(c)[2], copy_uid_gid,
                            no_overwrite_dir_non_dir)
        self.events.publish("container", "extract-to-dir", c.id)


def parse_signal(sig):
    if sig in (None, ""):
        return signals.SIGKILL
    if isinstance(sig, int) or sig.isdigit():
        n = int(sig)
    else:
        name = sig.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        n = getattr(signals.Signals, name, None)
        if n is None:
            raise errors.BadParameter(f"invalid signal {sig!r}")
    if not 0 < int(n) < 65:
        raise errors.BadParameter(f"invalid signal {sig!r}")
    return int(n)
