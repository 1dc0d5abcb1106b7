"""Container records, their state machine, and the store that keeps them.

On disk: containers/<id>/config.json, written atomically (atomic.write_json).
A corrupt record costs that one container, never the daemon.

States and the moves allowed between them (anything else raises Conflict,
or NotModified where the container is already where the client wants it):

    created  -> starting -> running -> exited -> starting ...
    created | exited -> removing          starting -> created | exited (start failed)
"""

import logging
import os
import secrets
import threading
import time

from . import atomic, errors
from .timefmt import iso_to_time

log = logging.getLogger(__name__)

CREATED, STARTING, RUNNING, EXITED, REMOVING = "created", "starting", "running", "exited", "removing"

TRANSITIONS = {
    CREATED: {STARTING, REMOVING},
    STARTING: {RUNNING, CREATED, EXITED},
    RUNNING: {EXITED},
    EXITED: {STARTING, REMOVING},
    REMOVING: set(),
}




class Container:
    """One container: its record (`rec`, the inspect shape) plus live runtime state."""

    def __init__(self, rec, path):
        self.rec = rec
        self.path = path          # containers/<id>
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.runtime = None       # runtime.Running while a process exists
        self.state_name = rec.get("PydState") or (RUNNING if rec["State"].get("Running") else EXITED)

    @property
    def id(self):
        return self.rec["Id"]

    @property
    def short_id(self):
        return self.id[:12]

    @property
    def config(self):
        return self.rec["Config"]

    @property
    def state(self):
        return self.rec["State"]

    @property
    def running(self):
        return self.state_name == RUNNING

    def file(self, *names):
        return os.path.join(self.path, *names)

    def move(self, new):
        """Apply a state transition, or raise if the state machine forbids it."""
        with self.lock:
            old = self.state_name
            if new not in TRANSITIONS[old]:
                if new == STARTING and old in (RUNNING, STARTING):
                    raise errors.NotModified(f"container {self.short_id} is already running")
                if new == REMOVING and old in (RUNNING, STARTING):
                    raise errors.Conflict(f"you cannot remove a running container {self.short_id}: "
                                          "stop it first (or use force=1)")
                if new == REMOVING:
                    raise errors.Conflict(f"container {self.short_id} is already being removed")
                raise errors.Conflict(f"container {self.short_id} cannot go from {old} to {new}")
            self.state_name = new
            self.rec["PydState"] = new
            self.changed.notify_all()
            return old

    def save(self):
        with self.lock:
            atomic.write_json(self.file("config.json"), self.rec)


def new_id():
    while True:
        cid = secrets.token_hex(32)
        if not cid[:12].isdigit():  # a short id must not look like a number
            return cid


class ContainerStore:
    def __init__(self, config):
        self.config = config
        self._lock = threading.RLock()
        self._by_id = {}

    def load(self):
        os.makedirs(self.config.containers_dir, mode=0o700, exist_ok=True)
        loaded = []
        for name in os.listdir(self.config.containers_dir):
            path = os.path.join(self.config.containers_dir, name)
            try:
                rec = atomic.read_json(os.path.join(path, "config.json"))
                if rec.get("Id") != name:
                    raise ValueError("id mismatch")
            except FileNotFoundError:
                log.warning("removing container dir %s with no record", name[:12])
                from .tarsafe import remove_tree
                remove_tree(path)
                continue
            except (OSError, ValueError) as e:
                log.warning("skipping broken container record %s: %s", name[:12], e)
                continue
            c = Container(rec, path)
            with self._lock:
                self._by_id[c.id] = c
            loaded.append(c)
        return loaded

    def add(self, c):
        with self._lock:
            self._by_id[c.id] = c

    def remove(self, c):
        with self._lock:
            self._by_id.pop(c.id, None)

    def all(self):
        """Newest first."""
        with self._lock:
            items = list(self._by_id.values())
        return sorted(items, key=lambda c: c.rec["Created"], reverse=True)

    def count(self):
        with self._lock:
            return len(self._by_id)

    def get(self, ref):
        """By full id, then unique prefix."""
        if not ref:
            raise errors.NotFound("No such container: (empty id)")
        with self._lock:
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
        with self._lock:
            for c in self._by_id.values():
                if c.rec.get("Image") == image_id:
                    return c.id
        return None


def human_duration(seconds):
    """Docker's HumanDuration, used in container Status strings."""
    s = int(seconds)
    if seconds < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = s // 3600
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 3:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def status_string(c, now=None):
    st = c.state
    if c.running:
        return "Up " + human_duration((now or time.time()) - iso_to_time(st["StartedAt"]))
    if st.get("Ghost"):
        return "Ghost"
    return f"Exit {st.get('ExitCode', 0)}"
