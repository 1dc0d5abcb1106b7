"""The engine's facade: one method per operation. API handlers call only this.

It owns the stores, the runtime and the event bus, and the rules that span
them (an image in use by a container cannot be deleted, and so on). Every
container state change goes through `self.lifecycle`. Methods return
records' views (engine.views) or plain facts; the API projects them.
"""

import errno
import logging
import os
import signal as signals
import socket
import sys
import threading
import time

from .. import __version__, errors, sysinfo, timefmt
from ..fs import drivers
from ..fs.fsopt import mark_topdir
from ..fs.layerfs import du
from ..fs.tarsafe import remove_tree
from ..native import StepError
from ..runtime import attach as attaching, cgroups, execs as exec_runtime
from ..runtime.process import Runtime
from ..runtime.stdio import STDERR, STDOUT
from ..store import format as data_format
from ..store.containers import Container, ContainerStore, check_name, new_id
from ..store.distribution import DistributionStore
from ..store.images import ImageStore, short
from ..store.layers import LayerStore
from ..store.volumes import VolumeStore
from ..refs import parse_repo_tag, split_name
from .registries import Registries
from . import createconfig, etcfiles, execs, filters as flt, fsops
from . import lifecycle as lc, mounts
from . import health, logconfig, logs, plan as plans, ports, resources
from .networking import Networking, initial_endpoints, networks_of
from .events import Bus, Overflow
from .names import random_name
from .restart import Restarts, wants_restart
from .fetch import open_url
from .views import ImageRow, ImageView, container_view

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, config):
        self.config = config
        self.events = Bus()
        self.layers = LayerStore(config)
        self.images = ImageStore(config, self.layers)
        self.distribution = DistributionStore(config)
        self.registries = Registries(config)
        self.containers = ContainerStore(config)
        self.volumes = VolumeStore(config)
        self.net = Networking(config, self.containers, self.events)
        self.lifecycle = lc.Lifecycle(self.containers, self.events)
        self.runtime = Runtime(config)
        self.restarts = Restarts(self._restart)
        self._health_runs = {}  # container id -> Event set when its run ends
        self.execs = execs.ExecStore()
        self.exec_runtime = exec_runtime.Execs()
        self.driver = None  # chosen at start: overlay2, or vfs where overlayfs cannot work
        self.started_at = time.time()
        self.shutting_down = False

    # -- life ------------------------------------------------------------

    def start(self):
        """Open the data root: check its format (migrating a 0.1.0 root), load
        the stores, and settle containers a dead daemon left behind."""
        data_format.open_root(self.config)
        # Only a root this daemon accepted is touched (a refused one stays as it was).
        if os.stat(self.config.root).st_mode & 0o077:
            os.chmod(self.config.root, 0o700)
        for d in (self.config.tmp_dir, self.config.volumes_dir, self.config.containers_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
            mark_topdir(d)
        # The frozen binary may have unpacked itself here (TMPDIR pointing into
        # the data root, as on an appliance whose only writable place it is).
        running_from = os.path.dirname(os.path.realpath(sys.executable))
        for name in os.listdir(self.config.tmp_dir):
            path = os.path.join(self.config.tmp_dir, name)
            if not (running_from + "/").startswith(os.path.realpath(path) + "/"):
                remove_tree(path)
        self.driver = drivers.choose(self.config.storage_driver, self.config.tmp_dir)
        log.info("storage driver: %s", self.driver.name)
        if sysinfo.read_only("/"):
            log.info("the root filesystem is read-only: pyd writes only under %s", self.config.root)
        self.layers.load()
        self.images.load()
        self.distribution.load()
        for c in self.containers.load():
            self._recover(c)
        self.net.start()
        # Restart policies apply across daemon starts too, in the background so
        # that the API answers at once.
        due = [c for c in self.containers.all()
               if c.status in (lc.EXITED, lc.CREATED) and c.state.get("started_at", timefmt.ZERO_TIME)
               != timefmt.ZERO_TIME and wants_restart(c, c.state.get("exit_code", 0), at_daemon_start=True)]
        if due:
            threading.Thread(target=self._restart_all, args=(due,), name="restart-at-start", daemon=True).start()

    def _restart_all(self, due):
        for c in due:
            self._restart(c.id)

    def _recover(self, c):
        """A container recorded as running belonged to a daemon that died. Its
        process lost its output pipes with that daemon and nothing can reap
        it: kill what is left in its cgroup and record the exit, as dockerd
        does without live restore."""
        if c.status == lc.REMOVING:
            self._remove_files(c, remove_volumes=False)
            return
        self.runtime.reap_orphan(c.id)
        if c.status in lc.ALIVE:
            code = 128 if c.status == lc.STARTING else 137
            self.lifecycle.exited(c, code, error="daemon restarted while the container was running")
            log.info("container %s was running when the daemon stopped; recorded as exited", c.short_id)
            if c.host.get("AutoRemove") and not wants_restart(c, code, at_daemon_start=True):
                self.lifecycle.removing(c)
                self._remove_files(c, remove_volumes=True)

    def shutdown(self):
        """Stop running containers, in parallel, each with the default grace."""
        self.shutting_down = True
        self.restarts.cancel_all()
        running = [c for c in self.containers.all() if c.running]
        threads = [threading.Thread(target=self._stop_quiet, args=(c,), name=f"stop-{c.short_id}")
                   for c in running]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.net.shutdown()

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
                "runtime": sysinfo.runtime_version(), "kernel": sysinfo.kernel_version(),
                "build_time": sysinfo.build_time()}

    def info(self):
        states = {"running": 0, "paused": 0, "stopped": 0}
        for c in self.containers.all():
            key = c.status if c.status in ("running", "paused") else "stopped"
            states[key] += 1
        os_name, os_version = sysinfo.os_release()
        cg = cgroups.support()
        return {
            "version": __version__,
            "containers": self.containers.count(),
            "states": states,
            "images": self.images.count(),
            "debug": self.config.debug,
            "fds": sysinfo.open_fds(),
            "threads": sysinfo.threads(),
            "memory_limit": cg["memory"], "swap_limit": cg["swap"], "cpu_cfs": cg["cpu_cfs"],
            "cpu_shares": cg["cpu_shares"], "pids_limit": cg["pids"], "freezer": cg["freezer"],
            "cgroup_version": str(cgroups.version() or 1),
            "kernel": sysinfo.kernel_version(),
            "driver": self.driver.name,
            "backing_fs": sysinfo.fs_type(self.config.root),
            "events_listeners": self.events.listeners(),
            "id": sysinfo.daemon_id(self.config.root),
            "ip_forward": sysinfo.ip_forward(),
            "os_name": os_name, "os_version": os_version,
            "mem_total": sysinfo.mem_total(),
            "root": self.config.root,
            "hostname": socket.gethostname(),
            "security_options": ["name=seccomp,profile=default", "name=no-new-privileges"],
            "warnings": self._warnings(cg),
            "system_status": [["Root filesystem", "read-only"]] if sysinfo.read_only("/") else [],
        }

    @staticmethod
    def _warnings(cg):
        """dockerd's /info warnings for what the host's cgroups lack."""
        out = []
        for feature, text in (("memory", "No memory limit support"), ("swap", "No swap limit support"),
                              ("cpu_cfs", "No cpu cfs quota support"), ("cpu_cfs", "No cpu cfs period support"),
                              ("cpu_shares", "No cpu shares support"), ("pids", "No pids limit support"),
                              ("freezer", "No freezer support: pause is refused"),
                              ("devices", "No device cgroup support")):
            if not cg[feature]:
                out.append("WARNING: " + text)
        return out

    # -- images ----------------------------------------------------------

    def _image_view(self, img):
        return ImageView(img, self.images.own_size(img), self.images.virtual_size(img),
                         self.images.tags_of(img.id), self.images.layer_dirs(img), self.images.digests_of(img.id))

    def check_repo_tag(self, repo, tag):
        return parse_repo_tag(repo, tag)

    def image_import(self, fileobj, total, repo, tag, progress, comment="", changes=None):
        """Import a tar (any compression) as a new base image; returns its id.
        `changes`: Dockerfile-style lines (CMD, ENV...) set in its config."""
        from . import dockerfile_changes
        overrides = dockerfile_changes.apply(createconfig.empty_config(), changes) if changes else None
        img = fsops.import_tar(self.images, self.config.tmp_dir, fileobj, total, progress, comment,
                               run_config=overrides, max_bytes=self.config.max_layer_size)
        self.events.publish("image", "import", "sha256:" + img.id)
        if repo:
            self._tag(img.id, repo, tag, force=True)  # an import moves the tag, as in Docker
        return img.id

    def image_import_url(self, url, repo, tag, progress, comment="", changes=None):
        resp, total = open_url(url)
        with resp:
            return self.image_import(resp, total, repo, tag, progress, comment, changes)

    def image_insert(self, name, path, url, progress):
        """Download `url` to `path` in a new layer on top of image `name`; returns its id."""
        img = fsops.insert_url(self.images, self.config.tmp_dir, self.images.resolve(name), path, url, progress)
        self.events.publish("image", "insert", img.id)
        return img.id

    # -- images: registries ------------------------------------------------

    def image_pull(self, name, tag=None, registry=None, platform=None, auth=None):
        """A generator of pull messages (pull.Status, pull.Progress, None
        ticks) for one tag or digest, or for every tag of the repository
        when neither is given (as Docker). `auth`: the request's credentials
        ({} for none)."""
        from . import pull as pulling
        from ..registry import reference
        all_tags = not tag and "@" not in name and ":" not in name.rsplit("/", 1)[-1]
        ref = reference.parse(name, tag or None, registry)
        candidates = self.registries.for_pull(ref, auth)
        if not all_tags:
            return pulling.Pull(self, candidates, ref, platform).run()
        return self._pull_all(ref, candidates, platform)

    def _pull_all(self, ref, candidates, platform):
        from . import pull as pulling
        tags = sorted(candidates[-1].tags(ref.path))
        if not tags:
            raise errors.NotFound(f"{ref.repo}: the registry lists no tags")
        for t in tags:
            yield from pulling.Pull(self, candidates, ref._replace(tag=t), platform).run()

    def image_push(self, name, tag=None, registry=None, auth=None):
        """A generator of push messages (pull.Status, pull.Progress,
        push.Pushed, None ticks) for `name`'s one tag, or all its tags."""
        from . import push as pushing
        from ..registry import reference
        ref = reference.parse(name, None, registry)
        if ref.digest:
            raise errors.BadParameter("cannot push a digest reference")
        local = ref.repo
        if tag:
            targets = [(tag, self.images.resolve(f"{local}:{tag}"))]
        else:
            targets = sorted((t, self.images.get(i)) for repo, t, i in self.images.refs() if repo == local)
        if not targets:
            raise errors.NotFound(f"An image does not exist locally with the tag: {local}")
        return pushing.Push(self, self.registries.client(ref.registry, auth), ref, targets).run()

    def registry_login(self, auth):
        """POST /auth: check and keep the credentials; returns the status text."""
        return self.registries.login(auth)

    def image_search(self, term, limit=None, auth=None):
        return self.registries.search(term, limit, auth)

    def image_resolve(self, name):
        return self.images.resolve(name).id

    def image_list(self, all_=False, filter_=None, filters=None):
        """One row per repo:tag, plus untagged images (leaves only unless all_).
        `filter_` is v1.3's repository name; `filters` the modern ones
        (dangling, label, reference, before, since)."""
        f = filters or {}
        dangling = flt.check_bool("dangling", f["dangling"]) if "dangling" in f else None
        before = self.images.resolve(f["before"][-1]).created if f.get("before") else None
        since = self.images.resolve(f["since"][-1]).created if f.get("since") else None
        rows, tagged = [], set()
        for repo, tag, image_id in self.images.refs():
            tagged.add(image_id)
            if filter_ and repo != filter_:
                continue
            if "reference" in f and not any(flt.reference_match(p, repo, tag) for p in f["reference"]):
                continue
            rows.append(ImageRow(repo, tag, self._image_view(self.images.get(image_id))))
        if not filter_ and "reference" not in f:
            images = self.images.all()
            parents = {img.parent for img in images}
            for img in images:
                if img.id not in tagged and (all_ or img.id not in parents or dangling):
                    rows.append(ImageRow(None, None, self._image_view(img)))
        if dangling is not None:
            rows = [r for r in rows if (r.repo is None) == dangling]
        if "label" in f:
            rows = [r for r in rows if flt.labels_match((r.image.config.get("config") or {}).get("Labels"),
                                                        f["label"])]
        if before is not None:
            rows = [r for r in rows if timefmt.iso_to_time(r.image.created) < timefmt.iso_to_time(before)]
        if since is not None:
            rows = [r for r in rows if timefmt.iso_to_time(r.image.created) > timefmt.iso_to_time(since)]
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
        self.events.publish("image", "tag", "sha256:" + image_id, name=f"{repo}:{tag or 'latest'}")

    def image_delete(self, name, force=False, prune=True):
        """[("untagged", id, "repo:tag") | ("deleted", id, "")], in order."""
        out = self.images.delete(name, self.containers.using_image, force=force, prune=prune)
        for what, image_id, ref in out:
            self.events.publish("image", "untag" if what == "untagged" else "delete", "sha256:" + image_id,
                                name=ref or "sha256:" + image_id)
        if any(what == "deleted" for what, _, _ in out):
            self.distribution.forget(self.layers.ids())
        return out

    def images_prune(self, filters=None):
        """Delete dangling images (all unused ones with dangling=false); returns
        (what image_delete returns, for all of them; bytes reclaimed)."""
        f = filters or {}
        only_dangling = flt.check_bool("dangling", f["dangling"]) if "dangling" in f else True
        until = _until(f)
        out, reclaimed = [], 0
        used = {c.image for c in self.containers.all()}
        for img in sorted(self.images.all(), key=lambda i: i.created, reverse=True):
            if not self.images.exists(img.id) or img.id in used or self.images.children(img.id):
                continue
            tagged = bool(self.images.tags_of(img.id))
            if (only_dangling and tagged) or (until is not None and timefmt.iso_to_time(img.created) >= until):
                continue
            if not _labels_ok((img.config.get("config") or {}).get("Labels"), f):
                continue
            size = self.images.own_size(img)
            try:
                if tagged:
                    for repo, tag in self.images.tags_of(img.id):
                        out += self.image_delete(f"{repo}:{tag}")
                else:
                    out += self.image_delete(img.id)
            except errors.PydError:
                continue
            reclaimed += size
        self.events.publish("image", "prune", "", reclaimed=reclaimed)
        return out, reclaimed

    # -- containers: create and inspect ----------------------------------

    def container_create(self, flat, name=None):
        """Create from a flat config (createconfig); returns (id, warnings)."""
        flat = dict(flat)
        endpoints = _endpoints_config(flat.pop("EndpointsConfig", None))
        cfg = createconfig.check(flat)
        if cfg.get("Privileged") and not self.config.allow_privileged:
            raise errors.Forbidden("privileged containers are disabled on this daemon: start pyd with "
                                   "--allow-privileged to allow them")
        if str(cfg.get("NetworkMode") or "").startswith("container:"):
            # dockerd's runconfig checks, on what the client gave (not the image's EXPOSE).
            if cfg.get("PortBindings") or cfg.get("PublishAllPorts") or cfg.get("PortSpecs"):
                raise errors.BadParameter("conflicting options: port publishing and the container type network mode")
            if cfg.get("ExposedPorts"):
                raise errors.BadParameter("conflicting options: port exposing and the container type network mode")
        image = self.images.resolve(cfg["Image"])
        cfg = createconfig.merge(cfg, image.run_config)
        warnings = []
        config, host = createconfig.split(cfg)
        ports.check(config, host)
        self.net.check_create(host, endpoints)
        mode = host.get("NetworkMode") or "default"
        if mode == "host" and ports.wanted(config, host):
            warnings.append("Published ports are discarded when using host network mode")
        elif mode in ("default", "bridge") and not self.net.enabled:
            warnings.append("networking is off on this daemon (-b none): the container gets loopback only")
        warnings += resources.discard_unsupported(cfg, cgroups.support())
        # As dockerd: the daemon's --log-driver/--log-opt fill a LogConfig the client left out.
        cfg["LogConfig"] = logconfig.check(cfg.get("LogConfig")) or self.config.log_config
        if not createconfig.argv(cfg):
            raise errors.BadParameter("No command specified")
        cid = new_id()
        if name:
            name = check_name(name)
            self.containers.reserve_name(name, cid)
        else:
            for attempt in range(20):
                try:
                    name = random_name(attempt)
                    self.containers.reserve_name(name, cid)
                    break
                except errors.Conflict:
                    continue
        try:
            return self._create(cid, name, cfg, image, warnings, endpoints)
        except BaseException:
            self.containers.release_name(name, cid)
            raise

    def _create(self, cid, name, cfg, image, warnings, endpoints=None):
        argv = createconfig.argv(cfg)
        host_net = cfg.get("NetworkMode") == "host"
        if not cfg.get("Hostname"):
            # On the host's network a container also takes its name, as in Docker.
            cfg["Hostname"] = socket.gethostname() if host_net else cid[:12]
        config, host = createconfig.split(cfg)
        path = self.containers.path_for(cid)
        data = {"id": cid, "name": name, "created": timefmt.now_iso(), "image": image.id,
                "driver": self.driver.name, "argv": argv, "config": config, "host": host,
                "state": lc.new_state(), "mounts": []}
        data["endpoints_config"] = initial_endpoints(host, endpoints)
        os.makedirs(path, 0o700)
        try:
            c = Container(data, path)
            self.driver.create(path, self.images.layer_dirs(image))
            etcfiles.write(path, cfg["Hostname"], cfg.get("Dns"), cfg.get("ExtraHosts"),
                           cfg.get("DnsSearch"), cfg.get("DnsOptions"), host_network=host_net)
            self.lifecycle.created(c)
        except BaseException:
            remove_tree(path)
            raise
        self.containers.add(c)
        log.info("created %s from %s", c.short_id, short(image.id))
        return cid, warnings

    def _view(self, c, **extra):
        return container_view(c, restarting=self.restarts.pending(c.id),
                              exec_ids=self._exec_ids(c.id), **extra)

    def _exec_ids(self, cid):
        return self.execs.ids_of(cid)

    def container_inspect(self, ref, size=False):
        c = self.containers.get(ref)
        extra = {}
        if size:
            layers, driver, _ = self._stack(c)
            rw = driver.size_rw(c.path, layers)
            extra.update(size_rw=rw, size_rootfs=rw + self.images.virtual_size(self.images.get(c.image)))
        return self._view(c, **extra)

    def container_rename(self, ref, new):
        c = self.containers.get(ref)
        if not new:
            raise errors.BadParameter("Neither old nor new names may be empty")
        new = check_name(new)
        if new == c.name:
            raise errors.BadParameter("Renaming a container with the same name as its current name")
        old = self.containers.rename(c, new)
        self.events.publish("container", "rename", c.id, oldName="/" + old, name=new, image=c.config.get("Image"))

    def list_generation(self):
        """Changes whenever a container or image list could: the API's memo key."""
        return (self.containers.generation, self.images.generation, self.restarts.generation)

    def container_list(self, all_=False, limit=None, since=None, before=None, size=False, filters=None):
        f = filters or {}
        if "status" in f:
            flt.check_statuses(f["status"])
        since = since or (f.get("since") or [None])[-1]
        before = before or (f.get("before") or [None])[-1]
        since_id = self.containers.get(since).id if since else None
        before_id = self.containers.get(before).id if before else None
        n = -1 if limit is None or limit <= 0 else limit
        out, found_before = [], False
        ancestors = self._ancestor_ids(f.get("ancestor"))
        exited = flt.check_ints("exited", f["exited"]) if "exited" in f else None
        for c in self.containers.all():
            if not c.running and not all_ and n == -1 and not since_id and not before_id and not f:
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
            if f and not self._container_matches(c, f, ancestors, exited, all_):
                continue
            extra = {"image_ref": self._image_ref(c.image)}
            if size:
                layers, driver, _ = self._stack(c)
                rw = driver.size_rw(c.path, layers)
                extra.update(size_rw=rw, size_rootfs=rw + self.images.virtual_size(self.images.get(c.image)))
            out.append(self._view(c, **extra))
        return out

    def _ancestor_ids(self, refs):
        """Image ids that `ancestor=` filters name, with all their descendants."""
        if not refs:
            return None
        roots = set()
        for ref in refs:
            try:
                roots.add(self.images.resolve(ref).id)
            except errors.NotFound:
                pass
        return {img.id for img in self.images.all()
                if any(a.id in roots for a in self.images.chain(img.id))}

    def _container_matches(self, c, f, ancestors, exited, all_):
        status = "restarting" if self.restarts.pending(c.id) else \
            ("created" if c.status == lc.STARTING else c.status)
        if "status" in f:
            if status not in f["status"]:
                return False
        elif not all_ and not c.running:
            return False
        if "name" in f and not any(n.lstrip("/") in c.name for n in f["name"]):
            return False
        if "id" in f and not any(c.id.startswith(i) for i in f["id"]):
            return False
        if "label" in f and not flt.labels_match(c.config.get("Labels"), f["label"]):
            return False
        if ancestors is not None and c.image not in ancestors:
            return False
        if exited is not None and (c.status != lc.EXITED or c.state.get("exit_code") not in exited):
            return False
        if "health" in f and ((c.state.get("health") or {}).get("Status") or "none") not in f["health"]:
            return False
        if "volume" in f and not any(m["target"] in f["volume"] or m["source"] in f["volume"]
                                     or os.path.basename(m["source"]) in f["volume"]
                                     for m in c.data.get("mounts") or []):
            return False
        if "network" in f and not self._on_networks(c, f["network"]):
            return False
        return True

    def _on_networks(self, c, refs):
        mode = (c.host.get("NetworkMode") or "bridge").replace("default", "bridge")
        names = set(networks_of(c.data)) | {mode}
        for ref in refs:
            try:
                rec = self.net.get(ref)
            except errors.NotFound:
                continue
            if rec["Name"] in names or rec["Id"] in names:
                return True
        return False

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

    def container_start(self, ref, binds=None, by_policy=False):
        """Start a created or exited container; `binds` (a list or None) replace the saved ones."""
        c = self.containers.get(ref)
        mounts.validate_binds(binds)
        if not by_policy:
            self.restarts.cancel(c.id, forget=True)
        with c.lock:
            self.lifecycle.check(c, lc.STARTING)  # before any volume is made for it
            layers, driver, view = self._stack(c)
            effective = binds if binds is not None else c.host.get("Binds")
            c.data["mounts"] = mounts.prepare(c, view, self.volumes, layers, effective,
                                              self.containers)
            if binds is not None:
                c.host["Binds"] = binds
            count = (c.state.get("restart_count") or 0) + 1 if by_policy else 0
            back_to = self.lifecycle.starting(c, restart_count=count)
        output = self._output(c)
        try:
            plan = plans.build(c, layers, view, driver, self.config.layers_dir, self.config.default_pids_limit)
            got = self.net.attach(c)
            plan.network, plan.netns_fd = got.kind, got.netns_fd
            proc = self.runtime.start(plan, output)
        except BaseException as e:
            self.net.release(c.id)
            self.lifecycle.start_failed(c, back_to, (e.strerror or str(e)) if isinstance(e, OSError) else str(e))
            # Clients attached before this start see their stream end (once, here). After
            # start_failed: an attach that came while the state still said "starting"
            # is ended too; one that comes later waits for the next start, as in dockerd.
            output.end()
            if c.host.get("AutoRemove") and not by_policy:
                # As dockerd: an AutoRemove container that cannot start goes, and
                # `docker run --rm`, waiting for condition=removed, returns.
                try:
                    self.container_delete(c.id, remove_volumes=True)
                except errors.PydError as gone:
                    log.info("auto-remove of %s after a failed start: %s", c.short_id, gone)
            if isinstance(e, OSError):
                raise errors.PydError(f"Cannot start container {c.short_id}: {e.strerror or e}") from e
            raise
        self.lifecycle.running(c, proc.pid, network=self.net.state_of(c.id))
        self._volume_events(c, "mount")
        self._start_health(c)
        threading.Thread(target=self._watch, args=(c, proc), name=f"monitor-{c.short_id}",
                         daemon=True).start()

    def _watch(self, c, proc):
        """The container's monitor: pump its output until it exits, then record
        the exit, and apply the restart policy or AutoRemove."""
        started = time.monotonic()
        ex = proc.monitor()
        stop_health = self._health_runs.pop(c.id, None)
        if stop_health is not None:
            stop_health.set()
        self.net.release(c.id)
        with c.lock:
            if ex.oom_killed:
                self.events.publish("container", "oom", c.id, image=c.config.get("Image"), name=c.name)
            self.lifecycle.exited(c, ex.code, ex.oom_killed)
            self.runtime.release(proc)
            self._volume_events(c, "unmount")
            again = not self.shutting_down and wants_restart(c, ex.code)
        if again:
            self.restarts.schedule(c, time.monotonic() - started)
        elif c.host.get("AutoRemove") and not self.shutting_down:
            try:
                self.container_delete(c.id, remove_volumes=True)
            except errors.PydError as e:
                log.info("auto-remove of %s: %s", c.short_id, e)

    def _restart(self, cid):
        """A restart by policy (engine.restart): quietly skipped if the container
        went away or someone else started it meanwhile."""
        try:
            self.container_start(cid, by_policy=True)
        except (errors.NotFound, errors.NotModified, errors.Conflict):
            pass
        except Exception as e:
            log.warning("restart of %s failed: %s", cid[:12], e)
            try:
                c = self.containers.get(cid)
            except errors.NotFound:
                return
            if wants_restart(c, 128):
                self.restarts.schedule(c, 0)  # the back-off grows: a start that keeps failing backs off

    def _signal(self, c, sig, event=True):
        with c.lock:
            if not c.running:
                raise errors.Conflict(f"Container {c.id} is not running")
            self._process(c).signal(sig)
            if c.paused and sig in (signals.SIGKILL, stop_signal(c)):
                # As dockerd: the signal waits in the frozen processes; thawing delivers it.
                try:
                    self._thaw(c)
                except errors.PydError as e:
                    log.warning("%s", e)
        if event:
            self.events.publish("container", "kill", c.id, image=c.config.get("Image"), name=c.name,
                                signal=str(sig))

    def _manual_stop(self, c):
        """A user stopped it: no restart by policy until a user starts it (persisted,
        since unless-stopped honours it across daemon starts)."""
        cancelled = self.restarts.cancel(c.id, forget=True)
        self.lifecycle.stopped_by_user(c)
        return cancelled

    def _stop(self, c, timeout, manual=True):
        """The stop signal, then SIGKILL after `timeout` seconds; returns when it has exited."""
        cancelled = self._manual_stop(c) if manual else False
        with c.lock:
            if not c.running:
                if cancelled:
                    return
                raise errors.NotModified(f"container {c.short_id} is not running")
        try:
            self._signal(c, stop_signal(c), event=False)
        except errors.Conflict:
            return
        if not self.lifecycle.wait_stopped(c, max(timeout, 0)):
            self._kill(c, signals.SIGKILL, manual=False)
        self.events.publish("container", "stop", c.id, image=c.config.get("Image"), name=c.name)

    def _kill(self, c, sig, manual=True):
        if manual and sig in (signals.SIGKILL, signals.SIGTERM, signals.SIGINT):
            self._manual_stop(c)
        self._signal(c, sig)
        if sig == signals.SIGKILL:
            self.lifecycle.wait_stopped(c, 30)

    def _default_timeout(self, c, timeout):
        if timeout is not None:
            return timeout
        st = c.config.get("StopTimeout")
        return 10 if st is None else st

    def container_stop(self, ref, timeout=None):
        c = self.containers.get(ref)
        self._stop(c, self._default_timeout(c, timeout))

    def container_restart(self, ref, timeout=None):
        c = self.containers.get(ref)
        self.restarts.cancel(c.id, forget=True)
        if c.running:
            self._stop(c, self._default_timeout(c, timeout))
        self.container_start(c.id)
        self.events.publish("container", "restart", c.id, image=c.config.get("Image"), name=c.name)

    def container_kill(self, ref, sig=None):
        c = self.containers.get(ref)
        n = parse_signal(sig)
        if not c.running and self.restarts.pending(c.id):
            self._manual_stop(c)
            return
        self._kill(c, n)

    def container_wait(self, ref, condition="not-running"):
        """Start waiting now; returns wait() -> (exit code, error or None), which
        blocks until `condition` holds (not-running, next-exit or removed)."""
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise errors.BadParameter(f"invalid condition: {condition!r}")
        c = self.containers.get(ref)
        base = c.exits

        def done(c):
            if condition == "next-exit":
                return c.exits > base
            if condition == "removed":
                return c.status == lc.REMOVED
            return c.status not in lc.ALIVE and not self.restarts.pending(c.id)

        def wait(timeout=None):
            """(code, error), or None when `timeout` seconds passed first."""
            while not self.lifecycle.wait_for(c, done, timeout=1.0 if timeout is None else min(timeout, 1.0)):
                if timeout is not None:
                    timeout -= 1.0
                    if timeout <= 0:
                        return None
            err = c.state.get("error") or None
            return c.state.get("exit_code", 0), err
        return wait

    # -- containers: delete ---------------------------------------------

    def container_delete(self, ref, remove_volumes=False, force=False):
        c = self.containers.get(ref)
        self.restarts.cancel(c.id, forget=True)
        if force and c.running:
            self._kill(c, signals.SIGKILL, manual=False)
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

    def containers_prune(self, filters=None):
        """Remove every stopped container (matching `filters`: until, label);
        returns (ids, bytes reclaimed)."""
        until = _until(filters)
        ids, reclaimed = [], 0
        for c in self.containers.all():
            if c.running or c.status not in (lc.EXITED, lc.CREATED):
                continue
            if until is not None and timefmt.iso_to_time(c.data["created"]) >= until:
                continue
            if not _labels_ok(c.config.get("Labels"), filters):
                continue
            try:
                layers, driver, _ = self._stack(c)
                size = driver.size_rw(c.path, layers)
                self.container_delete(c.id)
            except errors.PydError:
                continue
            ids.append(c.id)
            reclaimed += size
        self.events.publish("container", "prune", "", reclaimed=reclaimed)
        return ids, reclaimed

    # -- containers: attach, resize, top ----------------------------------

    def container_get(self, ref):
        """Check that the container exists (before a hijack); returns its id."""
        return self.containers.get(ref).id

    def container_attach(self, ref, hijack, logs, stream, stdin, stdout, stderr, framed, error_format):
        """Serve an attach session until it ends. `hijack()` takes the connection
        over and returns its duplex Conn: it is called only once the subscription
        is in place, so a client that starts the container as soon as it has the
        head (docker run does) cannot start it, or fail to, before we listen."""
        c = self.containers.get(ref)
        streams = [s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on]
        output = self._output(c)
        held = []  # the Conn, once there is one: a subscriber cut off before that has nothing to abort
        with c.lock:
            waiting = c.status in (lc.CREATED, lc.STARTING)
            live = stream and (c.running or waiting)
            replay, sub = output.subscribe(streams, logs, live, wait_for_start=waiting,
                                           on_drop=lambda: held and held[0].abort())
            target = None
            if stdin and stream and c.config.get("OpenStdin") and (c.running or waiting):
                min_run = self.runtime.runs(c.id) + (1 if waiting else 0)
                target = attaching.StdinTarget(self.runtime, c.id, min_run, bool(c.config.get("StdinOnce")))
        try:
            conn = hijack()
            held.append(conn)
            self._event(c, "attach")
            if attaching.run(conn, c.short_id, replay, sub, target, bool(c.config.get("Tty")), framed,
                             error_format):
                self._event(c, "detach")
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
        self._event(c, "resize", height=h, width=w)

    def container_top(self, ref):
        c = self.containers.get(ref)
        with c.lock:
            p = self._process(c)
        out = p.processes()
        self._event(c, "top")
        return out

    def _start_health(self, c):
        """The container's health monitor (engine.health), when its config has a check."""
        check = c.config.get("Healthcheck") or {}
        if not health.argv_of(check.get("Test")):
            return
        run_over = threading.Event()
        self._health_runs[c.id] = run_over
        self.lifecycle.health(c, health.initial())
        health.Monitor(c, check, self._probe, self._health_result, run_over).start()

    def _probe(self, c, argv, timeout):
        return self.exec_capture(c.id, argv, timeout)

    def _health_result(self, c, state, changed_to):
        self.lifecycle.health(c, state)
        if changed_to:
            self._event(c, f"health_status: {changed_to}")

    def _volume_events(self, c, action):
        """dockerd's volume mount/unmount events, for the volumes (not binds) of `c`."""
        for m in c.data.get("mounts") or []:
            name = self.volumes.name_of(m["source"])
            if name and m["kind"] != "bind":
                attrs = {"container": c.id, "driver": "local"}
                if action == "mount":
                    attrs.update(destination=m["target"], propagation="", **{"read/write": str(m["rw"]).lower()})
                self.events.publish("volume", action, name, **attrs)

    def _event(self, c, action, **attrs):
        self.events.publish("container", action, c.id, image=c.config.get("Image") or c.image, name=c.name,
                            **attrs)

    def _output(self, c):
        """The container's Output, bounded by its LogConfig."""
        limits = logconfig.limits(c.host.get("LogConfig"), self.config.log_max_size, self.config.log_max_file)
        return self.runtime.output(c.id, c.path, limits)

    def container_logs(self, ref, stdout=True, stderr=True, follow=False, tail=None, since=None, until=None):
        """(tty, generator of (stream, line bytes, ns)); since/until in epoch seconds."""
        c = self.containers.get(ref)
        if not logconfig.keeps_logs(c.host.get("LogConfig")):
            raise errors.Unsupported("configured logging driver does not support reading")
        output = self._output(c)
        with c.lock:
            running = c.running or c.status == lc.STARTING
            gen = logs.select(output, stdout, stderr, follow, tail,
                              None if since is None else int(since * 1e9),
                              None if until is None else int(until * 1e9), running)
        return bool(c.config.get("Tty")), gen

    # -- events ------------------------------------------------------------

    def events_stream(self, since=None, until=None, filters=None):
        """A generator of engine events: the kept ones from `since`, then live
        ones until `until` (epoch seconds) or the client leaves. A listener
        that falls behind is dropped (events.Overflow ends the generator)."""
        match = _event_matcher(filters or {}, self)
        now = time.time()
        live = until is None or until > now
        sub = self.events.subscribe(since=since, until=until, match=match, live=live)

        def gen():
            try:
                while True:
                    ev = sub.get(timeout=1.0)
                    if ev is None:
                        if sub.closed:
                            return
                        if until is not None and time.time() > until:
                            return
                        yield None  # a tick: lets the stream notice a client that left
                        continue
                    if until is not None and ev.time > until:
                        return
                    yield ev
            except Overflow:
                log.info("events listener too slow: dropped")
            finally:
                sub.close()
        return gen()

    # -- volumes -----------------------------------------------------------

    def _volume_users(self):
        """{volume path: [container ids]}: the volumes mounted at the last start,
        and the named ones a container's HostConfig asks for (made at its start)."""
        users = {}
        for c in self.containers.all():
            paths = {m["source"] for m in c.data.get("mounts") or []}
            for b in c.host.get("Binds") or []:
                src = b.split(":", 1)[0]
                if not src.startswith("/"):
                    paths.add(self.volumes.path(src))
            for m in c.host.get("Mounts") or []:
                if m["Type"] == "volume" and m.get("Source"):
                    paths.add(self.volumes.path(m["Source"]))
            for p in paths:
                users.setdefault(p, []).append(c.id)
        return users

    def volume_create(self, name=None, labels=None, driver=None, options=None):
        if driver not in (None, "", "local"):
            raise errors.NotFound(f"error looking up volume plugin {driver}: plugin \"{driver}\" not found")
        if options:
            raise errors.BadParameter("pyd's local volumes take no driver options")
        if labels is not None and not (isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())):
            raise errors.BadParameter("Labels must be an object of string values")
        existed = bool(name) and os.path.isdir(self.volumes.path(name))
        path = self.volumes.create(name or None, labels)
        v = self.volumes.get(os.path.basename(path))
        if not existed:
            self.events.publish("volume", "create", v["name"], driver="local")
        return v

    def volume_inspect(self, name):
        return self.volumes.get(name)

    def volume_list(self, filters=None, usage=False):
        f = filters or {}
        users = self._volume_users()
        dangling = flt.check_bool("dangling", f["dangling"]) if "dangling" in f else None
        out = []
        for v in self.volumes.all():
            refs = len(users.get(v["path"], []))
            if dangling is not None and (refs == 0) != dangling:
                continue
            if "name" in f and not any(n in v["name"] for n in f["name"]):
                continue
            if "driver" in f and "local" not in f["driver"]:
                continue
            if "label" in f and not flt.labels_match(v["labels"], f["label"]):
                continue
            if usage:
                v = dict(v, refs=refs, size=du(v["path"]))
            out.append(v)
        return out

    def volume_delete(self, name, force=False):
        v = self.volumes.get(name)
        users = self._volume_users().get(v["path"])
        if users:
            raise errors.Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self.volumes.remove(v["path"])
        self.events.publish("volume", "destroy", name, driver="local")

    def volumes_prune(self, filters=None):
        names, reclaimed = [], 0
        for v in self.volume_list(dict(filters or {}, dangling=["true"])):
            if not _labels_ok(v["labels"], filters):
                continue
            size = du(v["path"])
            try:
                self.volume_delete(v["name"])
            except errors.PydError:
                continue
            names.append(v["name"])
            reclaimed += size
        self.events.publish("volume", "prune", "", reclaimed=reclaimed)
        return names, reclaimed

    # -- networks --------------------------------------------------------

    def network_create(self, name, driver=None, subnet=None, gateway=None, labels=None, options=None,
                       internal=False, attachable=False):
        if not isinstance(name, str) or not name:
            raise errors.BadParameter("network name is required")
        return self.net.create(name, driver, subnet, gateway, labels=labels, options=options,
                               internal=internal, attachable=attachable)

    def network_list(self, filters=None):
        f = filters or {}
        dangling = flt.check_bool("dangling", f["dangling"]) if "dangling" in f else None
        out = []
        for rec in self.net.all():
            builtin = rec["Name"] in ("bridge", "host", "none")
            if "name" in f and not any(n in rec["Name"] for n in f["name"]):
                continue
            if "id" in f and not any(rec["Id"].startswith(i) for i in f["id"]):
                continue
            if "driver" in f and rec["Driver"] not in f["driver"]:
                continue
            if "scope" in f and "local" not in f["scope"]:
                continue
            if "type" in f and ("builtin" if builtin else "custom") not in f["type"]:
                continue
            if "label" in f and not flt.labels_match(rec.get("Labels") or {}, f["label"]):
                continue
            if dangling is not None and (builtin or self.net.in_use(rec["Id"]) or
                                         self._network_users(rec)) == dangling:
                continue
            out.append(rec)
        return out

    def network_inspect(self, ref):
        rec = self.net.get(ref)
        return rec, self.net.members(rec["Id"])

    def _network_users(self, rec):
        """Containers (any state) configured for the network."""
        return [c for c in self.containers.all()
                if any(n in (rec["Name"], rec["Id"]) for n in networks_of(c.data))]

    def network_delete(self, ref):
        self.net.delete(ref)

    def networks_prune(self, filters=None):
        until = _until(filters)
        gone = []
        for rec in self.net.all():
            if rec["Name"] in ("bridge", "host", "none") or self.net.in_use(rec["Id"]):
                continue
            if until is not None and timefmt.iso_to_time(rec["Created"]) > until:
                continue
            if not _labels_ok(rec.get("Labels") or {}, filters):
                continue
            try:
                self.net.delete(rec["Id"])
            except errors.PydError as e:
                log.info("prune of network %s: %s", rec["Name"], e)
                continue
            gone.append(rec["Name"])
        return gone

    def network_connect(self, ref, container, endpoint_config=None):
        c = self.containers.get(container)
        self.net.get(ref)  # 404 for the network before anything changes
        endpoint_config = next(iter(_endpoints_config({ref: endpoint_config or {}}).values()))  # checked as at create
        with c.lock:
            if c.status in (lc.REMOVING, lc.REMOVED):
                raise errors.Conflict(f"container {c.short_id} is marked for removal and cannot be connected")
            state = self.net.connect(c, ref, endpoint_config)
            if state is not None:
                c.state["network"] = state
            self.containers.save(c)

    def network_disconnect(self, ref, container, force=False):
        c = self.containers.get(container)
        with c.lock:
            state = self.net.disconnect(c, ref, force)
            if state is not None:
                c.state["network"] = state
            self.containers.save(c)

    def disk_usage(self):
        """The facts of /system/df."""
        image_containers = {}
        for c in self.containers.all():
            image_containers["sha256:" + c.image] = image_containers.get("sha256:" + c.image, 0) + 1
        return {"layers_size": sum(self.layers.size(d) for d in self.layers.ids()),
                "images": self.image_list(all_=True),
                "image_containers": image_containers,
                "containers": self.container_list(all_=True, size=True),
                "volumes": self.volume_list(usage=True)}

    # -- containers: filesystem -------------------------------------------

    def container_changes(self, ref):
        """[(path, kind)] with kind 0 modified, 1 added, 2 deleted."""
        c = self.containers.get(ref)
        layers, driver, _ = self._stack(c)
        return fsops.changes(driver, c, layers)

    def container_export(self, ref):
        """A producer that writes the container's filesystem as a tar."""
        c = self.containers.get(ref)
        producer = fsops.export(self._stack(c)[2])
        self._event(c, "export")
        return producer

    def commit(self, ref, repo, tag, comment, author, body, changes=None, pause=False):
        """Commit a container's changes as a new image; returns its id.
        `changes`: Dockerfile-style lines laid over the config (after `body`)."""
        from . import dockerfile_changes
        c = self.containers.get(ref)
        if repo:
            repo, tag = parse_repo_tag(repo, tag)
        if changes:
            base = createconfig.join(c.config, c.host)
            if body:
                base.update({k: v for k, v in body.items() if v not in (None, "", [], {})})
            body = dockerfile_changes.apply(base, changes)
        layers, driver, _ = self._stack(c)
        paused_here = pause and self._pause_for_commit(c)
        try:
            img = fsops.commit(self.images, c, layers, driver, body, comment, author, self.config.tmp_dir)
        finally:
            if paused_here:
                self._unpause_after_commit(c)
        self._event(c, "commit", comment=comment, imageID="sha256:" + img.id)
        if repo:
            self._tag(img.id, repo, tag, force=True)
        log.info("committed %s as image %s", c.short_id, short(img.id))
        return img.id

    # -- save and load -------------------------------------------------------

    def image_save(self, names):
        """A producer writing the images `names` as `docker save` does (the
        docker-archive tar); an unknown name is NotFound here, before any byte."""
        from . import imagearchive
        plan = imagearchive.plan_save(self.images, names)

        def produce(send):
            with fsops.ChunkWriter(send) as out:
                imagearchive.save(plan, self.layers, self.config.tmp_dir, out)
            for item in plan.items:
                self.events.publish("image", "save", "sha256:" + item.image.id, name="sha256:" + item.image.id)
        return produce

    def image_load(self, body, quiet=False):
        """Read a `docker save` archive (or an OCI layout) from `body`; what is
        wrong with the archive itself fails here, before any output. Returns
        the generator of its messages (imagearchive.Progress, Text) that
        stores the layers and images; the archive's files go when it ends."""
        from . import imagearchive
        loader = imagearchive.Loader(self.images, self.layers, self.config.tmp_dir, body,
                                     self.config.max_layer_size)

        def messages():
            try:
                for msg in loader.messages(quiet):
                    if isinstance(msg, imagearchive.Loaded):
                        self.events.publish("image", "load", "sha256:" + msg.image_id,
                                            name="sha256:" + msg.image_id)
                        continue
                    yield msg
            finally:
                loader.close()
        return imagearchive.Messages(messages(), loader.close)

    # -- build ---------------------------------------------------------------

    def image_build(self, body, opts, remote=None):
        """Read the context (`body`, or the `remote` URL: a tar, or a lone
        Dockerfile) and check the Dockerfile; returns a generator of the
        build's messages (engine.builder). What fails here fails before any
        output; the context's directory goes when the generator ends."""
        from . import buildcontext, buildcopy, builder
        work = fsops.new_work_dir(self.config.tmp_dir, "build")
        try:
            ctx = os.path.join(work, "context")
            os.mkdir(ctx, 0o755)
            if remote:
                fetched = buildcopy.download(remote, work, self.config.max_build_download, open_url)
                if buildcopy.is_archive(fetched):
                    with open(fetched, "rb") as f:
                        text = buildcontext.load(f, ctx, opts.dockerfile, self.config.max_build_context)
                else:
                    opts.dockerfile = buildcontext.lone_dockerfile(fetched, ctx, opts.dockerfile)
                    text = buildcontext.load_dir(ctx, opts.dockerfile)
            else:
                text = buildcontext.load(body, ctx, opts.dockerfile, self.config.max_build_context)
            plan = builder.prepare(text, opts)
        except BaseException:
            remove_tree(work)
            raise
        run = builder.Build(self, ctx, plan, opts).run()

        def messages():
            try:
                yield from run
            finally:
                run.close()
                remove_tree(work)
        return messages()

    # -- exec --------------------------------------------------------------

    def exec_create(self, ref, cmd, env=None, user="", workdir="", tty=False, stdin=False,
                    stdout=False, stderr=False, detach_keys="", privileged=False):
        """A new exec record for a running container; returns its id."""
        c = self.containers.get(ref)
        argv, env = execs.check_create(cmd, env, user, workdir, detach_keys)
        with c.lock:
            if not c.running:
                raise errors.Conflict(f"Container {c.id} is not running")
            self._refuse_if_paused(c)
            if privileged and not c.host.get("Privileged"):
                raise errors.Conflict(f"cannot run a privileged exec in container {c.short_id}: "
                                      "the container itself is not privileged")
        live = {x.id for x in self.containers.all()}
        rec = self.execs.add(dict(container_id=c.id, entrypoint=argv[0], arguments=argv[1:], tty=bool(tty),
                                  privileged=bool(privileged), user=user, open_stdin=bool(stdin),
                                  open_stdout=bool(stdout), open_stderr=bool(stderr),
                                  detach_keys=detach_keys, working_dir=workdir, env=env), live)
        self.events.publish("container", f"exec_create: {rec.command}", c.id, execID=rec.id,
                            image=c.config.get("Image"), name=c.name)
        return rec.id

    def exec_inspect(self, exec_id):
        """A copy of the record (engine.execs.ExecRecord)."""
        return self.execs.get(exec_id)

    def exec_check_start(self, exec_id):
        """404 or 409 now, before a hijack, for an exec that cannot start."""
        self.execs.check_startable(exec_id)

    def exec_start(self, exec_id, conn=None, framed=False, error_format=None):
        """Start the exec. Detached (conn None): returns once it runs. Else
        serve its session on `conn` (hijacked) until its output ends."""
        started = self._exec_launch(exec_id, conn, framed)
        if started is None or conn is None:
            return
        rec, proc, plan = started
        # The exec's stdin closes at the client's EOF (stdin_once), as with Docker.
        target = attaching.StdinTarget(proc, rec.id, 0, True) if plan.open_stdin else None
        try:
            if attaching.run(conn, f"exec {rec.id[:12]}", (), proc.feed, target, rec.tty, framed, error_format):
                self.events.publish("container", "exec_detach", rec.container_id, execID=rec.id)
        finally:
            proc.feed.end()  # a client that left must not hold the process up

    def exec_capture(self, ref, argv, timeout):
        """Run `argv` in the running container as an exec and collect its output
        (at most 4 KiB kept); returns (exit code, bytes). Past `timeout`
        seconds the process is killed and the code is -1 (health checks)."""
        exec_id = self.exec_create(ref, argv, stdout=True, stderr=True)
        rec, proc, _ = self._exec_launch(exec_id, None, False, attached=True)
        deadline = time.monotonic() + timeout
        out = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.signal(signals.SIGKILL)
                proc.feed.end()
                return -1, f"Health check exceeded timeout ({timeout:g}s)".encode()
            item = proc.feed.get(timeout=min(left, 1.0))
            if item is None:
                break
            if item[0] != "timeout" and len(out) < 4096:
                out += item[1][:4096 - len(out)]
        # _watch_exec records the exit code before it ends the feed.
        code = self.execs.get(exec_id).exit_code
        self.execs.drop(exec_id)  # a probe every few seconds must not pile up records
        return code, bytes(out)

    def _exec_launch(self, exec_id, conn, framed, attached=None):
        """Start the exec's process: (record, process, plan), or None when the
        failure went in-band to `conn` (raises when there is no conn)."""
        attached = conn is not None if attached is None else attached
        rec = self.execs.get(exec_id)
        try:
            c = self.containers.get(rec.container_id)
        except errors.NotFound:
            self.execs.drop(exec_id)
            raise errors.NotFound(f"No such exec instance: {exec_id}") from None
        with c.lock:
            init = self.runtime.process(c.id) if c.running else None
            if init is None:
                raise errors.Conflict(f"Container {c.id} is not running")
            self._refuse_if_paused(c)
            rec = self.execs.claim(exec_id)
            plan = self._exec_plan(c, init, rec, attached=attached)
            try:
                proc = self.exec_runtime.start(plan)
            except Exception as e:
                failed = self._exec_failed(rec, e)
                if conn is None:
                    raise failed from e
            else:
                failed = None
                self.execs.update(exec_id, running=True, pid=proc.pid)
        if failed is not None:
            # As dockerd: after the hijack the reason goes in-band, on stdout
            # (framed like the output would have been), on every API version.
            text = f"{failed}\r\n".encode()
            try:
                conn.write(attaching.frame(STDOUT, text) if framed and not rec.tty else text)
            except OSError:
                pass
            conn.close_write()
            return None
        self.events.publish("container", f"exec_start: {rec.command}", c.id, execID=rec.id,
                            image=c.config.get("Image"), name=c.name)
        threading.Thread(target=self._watch_exec, args=(c, rec, proc), name=f"exec-{rec.id[:12]}",
                         daemon=True).start()
        return rec, proc, plan

    def _exec_plan(self, c, init, rec, attached):
        """The container's Env, User and WorkingDir under the exec's own."""
        cfg = c.config
        return exec_runtime.ExecPlan(
            exec_id=rec.id, cid=c.id, container=init, argv=rec.argv,
            env=execs.environment(cfg, cfg.get("Hostname") or c.short_id, rec.tty, rec.env),
            cwd=rec.working_dir or cfg.get("WorkingDir") or "/", user=rec.user or cfg.get("User") or "",
            tty=rec.tty, open_stdin=rec.open_stdin and attached, privileged=rec.privileged,
            attached=attached,
            streams=[s for s, on in ((STDOUT, rec.open_stdout), (STDERR, rec.open_stderr)) if on])

    def _exec_failed(self, rec, e):
        """Record the exit code of an exec that could not start (Docker's: 127
        for a command not found, 126 otherwise); returns the error to report."""
        missing = isinstance(e, StepError) and e.step == "exec" and e.errno == errno.ENOENT
        self.execs.update(rec.id, exit_code=127 if missing else 126)
        if isinstance(e, (errors.PydError, OSError)):
            log.info("exec %s in %s failed: %s", rec.id[:12], rec.container_id[:12], e)
        else:
            log.exception("exec %s in %s failed", rec.id[:12], rec.container_id[:12])
        if isinstance(e, errors.PydError):
            return e
        if isinstance(e, OSError):
            return errors.PydError(f"exec failed: {e.strerror or e}")
        return errors.PydError(f"exec failed: internal error: {type(e).__name__}: {e}")

    def _watch_exec(self, c, rec, proc):
        """The exec's monitor: record its exit, then end its session's stream."""
        code = proc.monitor()
        self.execs.update(rec.id, running=False, exit_code=code)
        self.exec_runtime.release(proc)
        self.events.publish("container", "exec_die", c.id, execID=rec.id, exitCode=str(code),
                            image=c.config.get("Image"), name=c.name)
        proc.feed.end()  # after the exit code is recorded: the client asks for it next

    def exec_resize(self, exec_id, h, w):
        rec = self.execs.get(exec_id)
        proc = self.exec_runtime.get(rec.id)
        if proc is None:
            raise errors.Conflict(f"Exec {exec_id} is not running")
        proc.resize(h, w)

    # -- archive ------------------------------------------------------------
    # docker cp (GET/HEAD/PUT /containers/{id}/archive); engine.archive does
    # the work and docs/archive.md says where the files are.

    def _archive_open(self, c, write=False):
        """The container's root (engine.archive.Opened); the caller holds c.lock."""
        from . import archive
        layers = self.images.layer_dirs(self.images.get(c.image))
        return archive.open_root(c, self.runtime, layers, write)

    def container_stat_path(self, ref, path):
        """Docker's ContainerPathStat of `path` (a dict), for HEAD."""
        from . import archive
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
        from . import archive
        c = self.containers.get(ref)
        with c.lock:
            opened = self._archive_open(c)
        try:
            st, node = archive.stat_path(opened, path, ref)
        except BaseException:
            opened.close()
            raise
        self._event(c, "archive-path", path=path)
        return st, archive.producer(opened, node, path)

    def container_extract(self, ref, path, body, copy_uid_gid=False, no_overwrite_dir_non_dir=False):
        """Extract the tar `body` under directory `path`. The lock is held
        throughout: a stopped container's upper dir may be in use by one
        mount only, so it cannot start meanwhile."""
        from . import archive
        c = self.containers.get(ref)
        with c.lock, self._archive_open(c, write=True) as opened:
            archive.extract(c, opened, path, ref, body, self._stack(c)[2], copy_uid_gid,
                            no_overwrite_dir_non_dir)
        self._event(c, "extract-to-dir", path=path)

    # -- cgroups: pause, stats, update ---------------------------------------

    def container_pause(self, ref):
        """Freeze every process of a running container (the cgroup freezer)."""
        c = self.containers.get(ref)
        with c.lock:
            self.lifecycle.check(c, lc.PAUSED)
            try:
                self._process(c).freeze()
            except OSError as e:
                raise errors.PydError(f"Cannot pause container {c.id}: {e.strerror or e}") from e
            self.lifecycle.paused(c)

    def container_unpause(self, ref):
        c = self.containers.get(ref)
        with c.lock:
            self.lifecycle.check_unpause(c)
            self._thaw(c)

    def _thaw(self, c):
        """Thaw a paused container (c.lock held) and record it running again."""
        try:
            self._process(c).thaw()
        except OSError as e:
            raise errors.PydError(f"Cannot unpause container {c.id}: {e.strerror or e}") from e
        self.lifecycle.unpaused(c)

    def container_stats(self, ref, stream=False, interval=1.0):
        """Samples of a container's counters, as an iterator of dicts
        {"id", "name", "read": RFC 3339 time, "stats": cgroups.Cgroup.stats()
        or None when the container is not running}. One sample without
        `stream`; with it, one per `interval` seconds until the container
        stops (one last sample with stats None, then the end). Looks the
        container up now, so a 404 comes before any output."""
        c = self.containers.get(ref)
        return self._stats_samples(c, stream, interval)

    def _stats_samples(self, c, stream, interval):
        while True:
            with c.lock:
                p = self.runtime.process(c.id) if c.running else None
            stats = p.stats() if p is not None else None
            yield {"id": c.id, "name": c.name, "read": timefmt.now_iso(), "stats": stats}
            if not stream or stats is None:
                return
            # Wakes at once when the container stops: its last sample says so.
            self.lifecycle.wait_stopped(c, interval)

    def container_update(self, ref, body):
        """Docker's update: new resource limits and restart policy, stored in
        the record and applied at once to a running container's cgroup.
        Returns the warnings: a limit this host cannot carry is discarded."""
        c = self.containers.get(ref)
        with c.lock:
            if c.status in (lc.REMOVING, lc.REMOVED):
                raise errors.Conflict(f'Cannot update container {c.id}: container is marked for '
                                      'removal and cannot be "update"')
            changes, limits = resources.check_update(body, c.host, len(os.sched_getaffinity(0)))
            asked = dict(changes)
            warnings = resources.discard_unsupported(changes, cgroups.support())
            for key, limit in resources.LIMIT_OF.items():
                if key in asked and changes.get(key) != asked[key]:
                    changes.pop(key, None)
                    limits[limit] = None
            before = dict(c.host)
            c.host.update(changes)
            self.containers.save(c)
            p = self.runtime.process(c.id) if c.running else None
            if p is not None:
                try:
                    p.update(**limits)
                except OSError as e:
                    c.host.clear()
                    c.host.update(before)
                    self.containers.save(c)
                    raise errors.PydError(f"Cannot update container {c.id}: {e.strerror or e}") from e
        self._event(c, "update")
        return warnings

    def _pause_for_commit(self, c):
        """As dockerd: a running container is paused while its changes are read,
        so the image is one moment of it. True if this call paused it."""
        with c.lock:
            if c.status != lc.RUNNING:
                return False
            self.container_pause(c.id)
            return True

    def _unpause_after_commit(self, c):
        try:
            self.container_unpause(c.id)
        except errors.Conflict:
            pass  # killed (and so thawed) meanwhile, or unpaused by a client

    def _refuse_if_paused(self, c):
        """An exec cannot start in a paused container (c.lock held): its process
        would join the frozen cgroup and freeze midway through its setup."""
        if c.paused:
            raise errors.Conflict(f"Container {c.id} is paused, unpause the container before exec")

    def container_ps(self, ref, ps_args=None):
        """The modern top: (titles, rows) of the host's ps, for the container's processes."""
        c = self.containers.get(ref)
        with c.lock:
            if not c.running:
                raise errors.Conflict(f"Container {c.id} is not running")
            p = self._process(c)
        out = p.top(ps_args)
        self._event(c, "top")
        return out


def _endpoints_config(value):
    """NetworkingConfig.EndpointsConfig: {network: {Aliases, IPAMConfig{IPv4Address}}}, checked."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.BadParameter("EndpointsConfig must be an object of {network: endpoint settings}")
    out = {}
    for net, ep in value.items():
        net = "bridge" if net == "default" else net  # the docker CLI names the default network so
        ep = ep or {}
        if not isinstance(ep, dict):
            raise errors.BadParameter(f"invalid endpoint settings for network {net}")
        aliases = ep.get("Aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise errors.BadParameter(f"Aliases of network {net} must be a list of strings")
        ipam_cfg = ep.get("IPAMConfig") or {}
        if not isinstance(ipam_cfg, dict):
            raise errors.BadParameter(f"invalid IPAMConfig for network {net}")
        out[net] = {"Aliases": aliases, "IPAMConfig": {"IPv4Address": ipam_cfg.get("IPv4Address") or ""}
                    if ipam_cfg.get("IPv4Address") else None}
    return out


def stop_signal(c):
    """The signal stop sends first: the config's StopSignal, else SIGTERM."""
    try:
        return parse_signal(c.config.get("StopSignal") or "SIGTERM")
    except errors.BadParameter:
        return signals.SIGTERM


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


def _until(filters):
    values = (filters or {}).get("until")
    if not values:
        return None
    try:
        return timefmt.parse_time(values[-1])
    except ValueError as e:
        raise errors.BadParameter(f"invalid filter 'until={values[-1]}': {e}") from e


def _labels_ok(labels, filters):
    f = filters or {}
    if "label" in f and not flt.labels_match(labels, f["label"]):
        return False
    if "label!" in f and any(flt.labels_match(labels, [w]) for w in f["label!"]):
        return False
    return True


def _event_matcher(f, engine):
    """filters -> match(Event) (type, event, container, image, label, volume, network, daemon, scope)."""
    if not f:
        return None
    containers = set(f.get("container") or [])
    images = set(f.get("image") or [])

    def match(ev):
        a = ev.attributes
        if "type" in f and ev.type not in f["type"]:
            return False
        if "event" in f and not any(ev.action == e or ev.action.startswith(e + ":") for e in f["event"]):
            return False
        if containers and not (ev.type == "container" and
                               any(ev.id.startswith(x) or a.get("name") == x.lstrip("/") for x in containers)):
            return False
        if images:
            names = {a.get("image"), a.get("name"), ev.id if ev.type == "image" else None}
            names |= {n.split(":")[0] for n in names if n and ":" in n and not n.startswith("sha256")}
            if not any(i in names or (ev.type == "image" and ev.id.startswith(i)) for i in images):
                return False
        if "label" in f and not flt.labels_match(a, f["label"]):
            return False
        if "volume" in f and not (ev.type == "volume" and ev.id in f["volume"]):
            return False
        if "network" in f and not (ev.type == "network" and ev.id in f["network"]):
            return False
        if "scope" in f and "local" not in f["scope"]:
            return False
        if "daemon" in f and not (ev.type == "daemon"):
            return False
        return True
    return match
