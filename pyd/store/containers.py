"""Container records, in pyd's own schema, and the store that keeps them.

On disk: containers/<id>/container.json (docs/storage.md has the schema),
written atomically, beside the container's own files (upper/, work/,
rootfs/, hostname, hosts, resolv.conf, stdio.log). A corrupt record costs
that one container, never the daemon.

The store keeps records only: what a container is, not what it is doing
now (live processes belong to the runtime) and no wire shapes (the API
projects them). Only engine.lifecycle changes a record's state.
"""

import logging
import os
import re
import secrets
import threading

from .. import errors
from ..fs.tarsafe import remove_tree
from . import atomic

log = logging.getLogger(__name__)

RECORD = "container.json"

# The fields of a container's config that belong to the host it runs on;
# a record keeps them apart, in "host" (docs/storage.md). The first four
# are v1.3's; the rest are Engine API 1.41 HostConfig fields. Records
# written before a field existed lack it: readers use .get().
HOST_FIELDS = ("Memory", "MemorySwap", "Dns", "VolumesFrom",
               "Binds", "Mounts", "AutoRemove", "RestartPolicy", "NetworkMode", "ExtraHosts",
               "Privileged", "CapAdd", "CapDrop", "ReadonlyRootfs", "Init", "PidsLimit",
               "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "Tmpfs", "PortBindings",
               "PublishAllPorts", "DnsSearch", "DnsOptions", "ShmSize", "SecurityOpt", "LogConfig")

LEGACY_HOST_FIELDS = HOST_FIELDS[:4]

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")


class Container:
    """One container's record (`data`), its directory, and a lock with a
    condition that lifecycle notifies on every state change."""

    def __init__(self, data, path):
        self.data = data
        self.path = path          # containers/<id>
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.exits = 0            # exits seen by this daemon: live, for wait?condition=next-exit

    @property
    def id(self):
        return self.data["id"]

    @property
    def short_id(self):
        return self.id[:12]

    @property
    def config(self):
        return self.data["config"]

    @property
    def host(self):
        return self.data["host"]

    @property
    def state(self):
        return self.data["state"]

    @property
    def status(self):
        return self.data["state"]["status"]

    @property
    def image(self):
        return self.data["image"]

    @property
    def name(self):
        return self.data.get("name") or ""

    @property
    def running(self):
        """True while it has a process, paused or not (Docker's State.Running)."""
        return self.status in ("running", "paused")

    @property
    def paused(self):
        return self.status == "paused"

    def file(self, *names):
        return os.path.join(self.path, *names)


def new_id():
    while True:
        cid = secrets.token_hex(32)
        if not cid[:12].isdigit():  # a short id must not look like a number
            return cid


class ContainerStore:
    def __init__(self, config):
        self.dir = config.containers_dir
        self._lock = threading.RLock()
        self._by_id = {}
        self._names = {}  # name (no slash) -> id; a name is taken by create, before the record exists
        self.generation = 0  # bumped by every change: lets the API reuse a projection (api.memo)

    def load(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        loaded = []
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            try:
                data = atomic.read_json(os.path.join(path, RECORD))
                if data.get("id") != name:
                    raise ValueError("id mismatch")
            except FileNotFoundError:
                log.warning("removing container dir %s with no record", name[:12])
                remove_tree(path)
                continue
            except (OSError, ValueError) as e:
                log.warning("skipping broken container record %s: %s", name[:12], e)
                continue
            c = Container(data, path)
            with self._lock:
                self._by_id[c.id] = c
                if c.name:
                    if c.name in self._names:
                        log.warning("container %s: name %r is taken by %s; cleared", c.short_id,
                                    c.name, self._names[c.name][:12])
                        data["name"] = ""
                    else:
                        self._names[c.name] = c.id
            loaded.append(c)
        return loaded

    def path_for(self, cid):
        return os.path.join(self.dir, cid)

    def save(self, c, durable=True):
        with c.lock:
            atomic.write_json(c.file(RECORD), c.data, durable)
            self.generation += 1

    def add(self, c):
        with self._lock:
            self._by_id[c.id] = c
            self.generation += 1

    def discard(self, c):
        """Forget the container and remove its files. The record goes first, and
        durably: a crash midway leaves a directory without a record, which the
        next load removes, never a half container listed."""
        atomic.unlink_quiet(c.file(RECORD))
        atomic.fsync_dir(c.path)
        remove_tree(c.path)
        with self._lock:
            self._by_id.pop(c.id, None)
            if self._names.get(c.name) == c.id:
                del self._names[c.name]
            self.generation += 1

    # -- names -----------------------------------------------------------

    def reserve_name(self, name, cid):
        """Take `name` for container `cid` (a new one, or a rename); Conflict if taken."""
        with self._lock:
            owner = self._names.get(name)
            if owner is not None and owner != cid:
                raise errors.Conflict(
                    f'Conflict. The container name "/{name}" is already in use by container "{owner}". '
                    "You have to remove (or rename) that container to be able to reuse that name.")
            self._names[name] = cid

    def release_name(self, name, cid):
        with self._lock:
            if self._names.get(name) == cid:
                del self._names[name]

    def rename(self, c, new):
        """Give `c` the name `new` (already checked by check_name), durably."""
        with self._lock, c.lock:
            old = c.name
            self.reserve_name(new, c.id)
            c.data["name"] = new
            try:
                self.save(c)
            except BaseException:
                c.data["name"] = old
                self.release_name(new, c.id)
                raise
            if old and old != new:
                self.release_name(old, c.id)
        return old

    def all(self):
        """Newest first."""
        with self._lock:
            items = list(self._by_id.values())
        return sorted(items, key=lambda c: c.data["created"], reverse=True)

    def count(self):
        with self._lock:
            return len(self._by_id)

    def get(self, ref):
        """By exact name (with or without its slash), then full id, then unique prefix."""
        if not ref:
            raise errors.NotFound("No such container: (empty id)")
        with self._lock:
            cid = self._names.get(ref[1:] if ref.startswith("/") else ref)
            c = self._by_id.get(cid) if cid else None
            if c is None:
                c = self._by_id.get(ref)
            if c:
                return c
            hits = [c for cid, c in self._by_id.items() if cid.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise errors.BadParameter(f"ambiguous container id prefix {ref!r}: give more characters")
        raise errors.NotFound(f"No such container: {ref}")

    def using_image(self, image_id):
        """(id, running) of a container made from the image (a running one first), or None."""
        with self._lock:
            users = [c for c in self._by_id.values() if c.image == image_id]
        users.sort(key=lambda c: not c.running)
        return (users[0].id, users[0].running) if users else None


def check_name(name):
    """A client-given name, without its leading slash; BadParameter if unusable."""
    bare = name[1:] if name.startswith("/") else name
    if not NAME_RE.match(bare):
        raise errors.BadParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return bare
