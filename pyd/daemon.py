"""The backend facade: one method per operation. Handlers call only this.

It owns the stores and the runtime, and the rules that span them (an image
in use by a container cannot be deleted, and so on).
"""

import ipaddress
import logging
import os
import re
import posixpath
import signal as signals
import threading
import time

from . import __version__, containers as cs, drivers, errors, layerfs, sysinfo, tarsafe, timefmt, volumes
from .containers import Container, ContainerStore
from .fetch import open_url
from .images import ImageStore, clean_tmp, empty_config, parse_repo_tag, short, split_name
from .runtime import Runtime

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config):
        self.config = config
        self.images = ImageStore(config)
        self.containers = ContainerStore(config)
        self.runtime = Runtime(config, self.images, volumes.mounts, self.driver_of)
        self.driver = None  # chosen at start: overlay2, or vfs where overlayfs cannot work
        self._drivers = {"overlay2": drivers.Overlay(), "vfs": drivers.Copy()}

    # -- life ------------------------------------------------------------

    def start(self):
        from .fsopt import mark_topdir
        for d in (self.config.tmp_dir, self.config.volumes_dir, self.config.containers_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
            mark_topdir(d)
        clean_tmp(self.config)
        self.driver = drivers.choose(self.config.storage_driver, self.config.tmp_dir)
        log.info("storage driver: %s", self.driver.name)
        self.images.load()
        for c in self.containers.load():
            if c.state_name == cs.REMOVING:
                self._remove_files(c, remove_volumes=False)
                continue
            self.runtime.recover(c)

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
            self.runtime.stop(c, self.config.shutdown_grace)
        except errors.PydError:
            pass
        except Exception:
            log.exception("stopping %s at shutdown", c.short_id)

    def image_in_use(self, image_id):
        return self.containers.using_image(image_id)

    def driver_of(self, c):
        return self._drivers[c.rec.get("Driver") or "overlay2"]

    def _layers(self, c):
        return self.images.layer_dirs(c.rec["Image"])

    # -- misc ------------------------------------------------------------

    def version(self):
        return {"Version": __version__, "GitCommit": sysinfo.git_commit(),
                "GoVersion": sysinfo.runtime_version()}

    def info(self):
        from . import cgroups
        return {
            "Containers": self.containers.count(),
            "Images": self.images.count(),
            "Debug": self.config.debug,
            "NFd": sysinfo.open_fds(),
            "NGoroutines": sysinfo.threads(),
            "MemoryLimit": cgroups.memory_limit_supported(),
            "SwapLimit": cgroups.swap_limit_supported(),
            "EventsListeners": "0",
            "LXCVersion": "",
            "KernelVersion": sysinfo.kernel_version(),
            "Driver": self.driver.name,
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
            self.images.set_tag(rec["id"], repo, tag, force=True)  # an import moves the tag, as in Docker
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

    def check_repo_tag(self, repo, tag):
        return parse_repo_tag(repo, tag)

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

    # -- containers ------------------------------------------------------

    def container_create(self, body):
        cfg = _check_config(body)
        image = self.images.resolve(cfg["Image"])
        cfg = merge_config(cfg, image.get("config") or {})
        warnings = []
        from . import cgroups
        if cfg["Memory"] and not cgroups.memory_limit_supported():
            warnings.append("Your kernel does not support memory limit capabilities. Limitation discarded.")
            cfg["Memory"] = cfg["MemorySwap"] = 0
        if cfg["Memory"] and not cgroups.swap_limit_supported() and cfg["MemorySwap"]:
            warnings.append("Your kernel does not support swap limit capabilities. Limitation discarded.")
        if not (cfg.get("Cmd") or cfg.get("Entrypoint")):
            raise errors.BadParameter("No command specified")
        cid = cs.new_id()
        path = os.path.join(self.config.containers_dir, cid)
        argv = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        rec = {
            "Id": cid,
            "Created": timefmt.now_iso(),
            "Path": argv[0],
            "Args": argv[1:],
            "Config": cfg,
            "State": {"Running": False, "Pid": 0, "ExitCode": 0, "StartedAt": timefmt.ZERO_TIME,
                      "FinishedAt": timefmt.ZERO_TIME, "Ghost": False},
            "Image": image["id"],
            "NetworkSettings": empty_network(),
            "SysInitPath": "",
            "ResolvConfPath": os.path.join(path, "resolv.conf"),
            "HostnamePath": os.path.join(path, "hostname"),
            "HostsPath": os.path.join(path, "hosts"),
            "Volumes": {},
            "VolumesRW": {},
            "HostConfig": {"Binds": None},
            "Driver": self.driver.name,
            "PydState": cs.CREATED,
        }
        if not cfg.get("Hostname"):
            cfg["Hostname"] = cid[:12]
        os.makedirs(path, 0o700)
        try:
            c = Container(rec, path)
            self.driver.create(c, self.images.layer_dirs(image["id"]))
            _write_file(os.path.join(path, "hostname"), cfg["Hostname"] + "\n")
            _write_file(os.path.join(path, "hosts"),
                        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                        f"127.0.1.1\t{cfg['Hostname']}\n")
            _write_file(os.path.join(path, "resolv.conf"), resolv_conf(cfg.get("Dns")))
            c.save()
        except BaseException:
            tarsafe.remove_tree(path)
            raise
        self.containers.add(c)
        log.info("created %s from %s", c.short_id, short(image["id"]))
        return {"Id": cid, "Warnings": warnings}

    def container(self, ref):
        return self.containers.get(ref)

    def container_start(self, ref, host_config):
        c = self.containers.get(ref)
        if host_config is not None and not isinstance(host_config, dict):
            raise errors.BadParameter("the start body must be a JSON object (HostConfig)")
        binds = (host_config or {}).get("Binds")
        volumes.validate_binds(binds)
        with c.lock:
            if c.running or c.state_name == cs.STARTING:
                raise errors.NotModified(f"container {c.short_id} is already running")
            if binds is not None:
                c.rec["HostConfig"]["Binds"] = binds
            layers = self._layers(c)
            volumes.prepare(c, self.driver_of(c).view(c, layers), self.config.volumes_dir,
                            layers, c.rec["HostConfig"].get("Binds"), self.containers)
        try:
            self.runtime.start(c)
        except OSError as e:
            with c.lock:
                c.state["Error"] = str(e)
                c.save()
            raise errors.PydError(f"Cannot start container {c.short_id}: {e.strerror or e}") from None

    def container_stop(self, ref, timeout):
        self.runtime.stop(self.containers.get(ref), 10 if timeout is None else timeout)

    def container_restart(self, ref, timeout):
        c = self.containers.get(ref)
        if c.running:
            self.runtime.stop(c, 10 if timeout is None else timeout)
        self.container_start(c.id, None)

    def container_kill(self, ref, sig):
        self.runtime.kill(self.containers.get(ref), parse_signal(sig))

    def container_wait(self, ref):
        c = self.containers.get(ref)
        self.runtime.wait_stopped(c)
        return c.state.get("ExitCode", 0)

    def container_delete(self, ref, remove_volumes=False, force=False):
        c = self.containers.get(ref)
        if force and c.running:
            self.runtime.kill(c)
        c.move(cs.REMOVING)
        c.save()
        self._remove_files(c, remove_volumes)

    def _remove_files(self, c, remove_volumes):
        from . import cgroups
        cgroups.Cgroup(c.id).remove()
        if remove_volumes:
            volumes.remove_owned(c, self.config.volumes_dir, self.containers.all())
        # The record goes first so a crash mid-way never leaves a half container listed.
        try:
            os.unlink(c.file("config.json"))
        except FileNotFoundError:
            pass
        tarsafe.remove_tree(c.path)
        self.containers.remove(c)
        self.runtime.forget(c)
        log.info("removed %s", c.short_id)

    def container_list(self, all_=False, limit=None, since=None, before=None, size=False):
        since_id = self.containers.get(since).id if since else None
        before_id = self.containers.get(before).id if before else None
        n = -1 if limit is None or limit <= 0 else limit
        out, found_before, now = [], False, time.time()
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
            row = {"Id": c.short_id, "Image": self.image_name(c.rec["Image"]),
                   "Command": " ".join([c.rec["Path"]] + list(c.rec["Args"])),
                   "Created": int(timefmt.iso_to_time(c.rec["Created"])),
                   "Status": cs.status_string(c, now), "Ports": ""}
            if size:
                row["SizeRw"] = self.driver_of(c).size_rw(c, self._layers(c))
                row["SizeRootFs"] = row["SizeRw"] + self.images.virtual_size(c.rec["Image"])
            out.append(row)
        return out

    def image_name(self, image_id):
        tags = self.images.tags_of(image_id) if self.images.exists(image_id) else []
        return f"{tags[0][0]}:{tags[0][1]}" if tags else image_id[:12]

    def container_inspect(self, ref):
        c = self.containers.get(ref)
        with c.lock:
            rec = {k: v for k, v in c.rec.items() if k != "PydState"}
            rec["State"] = dict(rec["State"])
        return rec

    def container_attach(self, c, hijack, logs, stream, stdin, stdout, stderr, framed, error_format):
        from . import attach
        attach.run(c, self.runtime, hijack, logs, stream, stdin, stdout, stderr, framed, error_format)

    def container_resize(self, ref, h, w):
        import fcntl
        import struct
        import termios
        c = self.containers.get(ref)
        with c.lock:
            r = c.runtime
            if r is None:
                raise errors.Conflict(f"container {c.short_id} is not running")
            if r.pty_master is not None:
                fcntl.ioctl(r.pty_master, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))

    def container_changes(self, ref):
        c = self.containers.get(ref)
        return [{"Path": path, "Kind": kind}
                for path, kind in self.driver_of(c).changes(c, self._layers(c))]

    def container_export(self, ref):
        """Returns a producer that writes the container's filesystem as a tar."""
        c = self.containers.get(ref)
        layers = self.driver_of(c).view(c, self._layers(c))

        def produce(send):
            with _ChunkWriter(send) as out:
                layerfs.export_tar(layers, out)
        return produce

    def container_top(self, ref):
        from . import procs
        c = self.containers.get(ref)
        with c.lock:
            r = c.runtime
            if r is None:
                raise errors.Conflict(f"container {c.short_id} is not running")
            pids = r.cgroup.pids()
        return procs.describe(pids)

    def commit(self, ref, repo, tag, comment, author, config):
        c = self.containers.get(ref)
        if repo:
            repo, tag = parse_repo_tag(repo, tag)
        merged = dict(c.config)
        if config:
            over = _check_config(dict(config, Image=config.get("Image") or c.config["Image"]))
            for k, v in over.items():
                if k in config and v not in (None, "", [], {}, 0, False):
                    merged[k] = v
        work = self.images.new_work_dir("commit")
        try:
            layer = os.path.join(work, "layer")
            os.mkdir(layer, 0o755)
            result = _copy_layer(self.driver_of(c).diff_source(c, self._layers(c), work), layer)
            rec = self.images.register(layer, result.size, result.digest, parent=c.rec["Image"],
                                       config=merged, container=c.id, container_config=c.config,
                                       comment=comment, author=author)
        finally:
            tarsafe.remove_tree(work)
        if repo:
            self.images.set_tag(rec["id"], repo, tag, force=True)
        log.info("committed %s as image %s", c.short_id, short(rec["id"]))
        return rec["id"]


class _ChunkWriter:
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


def _copy_layer(upper, dest):
    """Copy an overlay-format dir into a new layer, whiteouts and opaque dirs kept,
    by streaming it as a tar into the hostile-tar extractor (one code path for both)."""
    r, w = os.pipe()
    failure = []

    def writer():
        try:
            with os.fdopen(w, "wb") as out:
                layerfs.layer_tar(upper, out)
        except Exception as e:  # surfaces as a truncated tar on the reading side
            failure.append(e)

    t = threading.Thread(target=writer, name="commit-tar", daemon=True)
    t.start()
    try:
        with os.fdopen(r, "rb") as src:
            result = tarsafe.extract(src, dest)
    except tarsafe.BadTar:
        t.join()
        if failure:  # the reader only saw the writer's failure: report its cause
            raise failure[0] from None
        raise
    finally:
        t.join()
    if failure:
        raise failure[0]
    return result


def _write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def empty_network():
    return {"IPAddress": "", "IpAddress": "", "IPPrefixLen": 0, "IpPrefixLen": 0, "Gateway": "",
            "Bridge": "", "PortMapping": None}


def resolv_conf(dns):
    """The container's resolv.conf: its Dns list, or the host's without loopback servers."""
    if dns:
        return "".join(f"nameserver {d}\n" for d in dns)
    try:
        with open("/etc/resolv.conf") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    kept = [ln for ln in lines if not (ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1
                                       and _is_loopback(ln.split()[1]))]
    if not any(ln.split()[:1] == ["nameserver"] for ln in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]  # Docker's fallback
    return "\n".join(kept) + "\n"


def _is_loopback(addr):
    return addr.startswith("127.") or addr == "::1"


_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$")
_LIST_FIELDS = ("Cmd", "Entrypoint", "Env", "Dns", "PortSpecs")
_BOOL_FIELDS = ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce")
_STR_FIELDS = ("Hostname", "User", "VolumesFrom", "WorkingDir", "Image")


def _check_config(body):
    if not isinstance(body, dict):
        raise errors.BadParameter("the container config must be a JSON object")
    cfg = dict(empty_config())
    for k, v in body.items():
        cfg[k] = v
    if not isinstance(cfg.get("Image"), str) or not cfg["Image"]:
        raise errors.BadParameter("missing Image in the container config")
    for k in _STR_FIELDS:
        if cfg.get(k) is None:
            cfg[k] = ""
        elif not isinstance(cfg[k], str):
            raise errors.BadParameter(f"{k} must be a string")
    for k in _BOOL_FIELDS:
        if not isinstance(cfg.get(k) or False, bool):
            raise errors.BadParameter(f"{k} must be true or false")
        cfg[k] = bool(cfg.get(k))
    for k in _LIST_FIELDS:
        v = cfg.get(k)
        if isinstance(v, str) and k in ("Cmd", "Entrypoint"):
            v = cfg[k] = [v]
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise errors.BadParameter(f"{k} must be a list of strings")
    for k in ("Memory", "MemorySwap"):
        v = cfg.get(k) or 0
        if not isinstance(v, int) or isinstance(v, bool):
            raise errors.BadParameter(f"{k} must be an integer")
        cfg[k] = v
    if cfg["Memory"] < 0 or cfg["MemorySwap"] < -1:
        raise errors.BadParameter("Memory and MemorySwap must not be negative (MemorySwap -1 means unlimited)")
    from .cgroups import MIN_MEMORY
    if 0 < cfg["Memory"] < MIN_MEMORY:
        raise errors.BadParameter(f"Minimum memory limit allowed is {MIN_MEMORY >> 20}MB")
    if cfg["Memory"] and cfg["MemorySwap"] == 0:
        cfg["MemorySwap"] = 2 * cfg["Memory"]  # Docker's default: as much swap as memory
    if cfg["MemorySwap"] > 0 and cfg["MemorySwap"] < cfg["Memory"]:
        raise errors.BadParameter("MemorySwap must be at least Memory (it is the total of memory and swap)")
    if cfg["WorkingDir"] and not cfg["WorkingDir"].startswith("/"):
        raise errors.BadParameter(f"the working directory {cfg['WorkingDir']!r} is invalid: it must be an absolute path")
    if cfg.get("Volumes") is not None:
        if not isinstance(cfg["Volumes"], dict):
            raise errors.BadParameter("Volumes must be an object of {path: {}}")
        for p in cfg["Volumes"]:
            volumes.clean_target(p)
    if cfg["Hostname"] and not _HOSTNAME_RE.match(cfg["Hostname"]):
        raise errors.BadParameter(f"invalid Hostname {cfg['Hostname']!r}: use letters, digits, '-' and '.', "
                                  "up to 63 characters")
    for server in cfg.get("Dns") or []:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise errors.BadParameter(f"invalid Dns server {server!r}: expected an IP address") from None
    for item in cfg.get("Env") or []:
        if "=" not in item or item.startswith("=") or "\0" in item:
            raise errors.BadParameter(f"invalid Env entry {item!r}: expected NAME=value")
    return cfg


def merge_config(user, image):
    """Fill what the request left unset from the image's config (Docker's MergeConfig)."""
    out = dict(user)
    for k in ("Hostname", "User", "WorkingDir"):
        if not out.get(k) and image.get(k):
            out[k] = image[k]
    for k in ("Memory", "MemorySwap"):
        if not out.get(k) and image.get(k):
            out[k] = image[k]
    if not out.get("Cmd") and not out.get("Entrypoint"):
        out["Cmd"] = image.get("Cmd")
    if not out.get("Entrypoint") and image.get("Entrypoint"):
        out["Entrypoint"] = image["Entrypoint"]
        if not user.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
    if not out.get("Dns") and image.get("Dns"):
        out["Dns"] = image["Dns"]
    if image.get("PortSpecs"):
        out["PortSpecs"] = list(dict.fromkeys((image["PortSpecs"] or []) + (out.get("PortSpecs") or [])))
    if image.get("Env"):
        keys = {e.partition("=")[0] for e in out.get("Env") or []}
        out["Env"] = [e for e in image["Env"] if e.partition("=")[0] not in keys] + list(out.get("Env") or [])
    if image.get("Volumes"):
        vols = dict(image["Volumes"])
        vols.update(out.get("Volumes") or {})
        out["Volumes"] = vols
    for k in ("Tty", "OpenStdin", "StdinOnce"):
        if k not in user and image.get(k):
            out[k] = image[k]
    return out


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
