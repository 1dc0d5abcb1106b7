"""The one owner of container state. Every transition goes through here: it
checks the state machine, updates the record, persists it atomically,
wakes whoever waits on the container, and publishes an event. Nothing else
writes a record's "state".

    created -> starting -> running -> exited -> starting ...
    created | exited -> removing -> (removed)
    starting -> created | exited          (the start failed)
    running -> paused -> running | exited (the freezer; killed while paused)

Anything else raises Conflict, or NotModified where the container already
is where the client wants it.

Every move is persisted atomically (rename over the record), so a daemon
killed at any point finds each record whole. The moves whose loss a power
cut could hide are also fsynced (DURABLE): a created container must exist
after it was acknowledged, and an exit code must not turn into "killed by
the restart". The others are not worth a millisecond each: a power cut
kills every container, and a lost "starting" or "running" leaves the state
before it (created, or the previous exit), where recovery would have put
the container anyway but for its exit code; a "removing" record is followed
by the durable removal of the record itself (store.containers.discard).
"paused" is not durable either: its processes die with the power.

A paused container is still running (Container.running, as Docker's
State.Running): it can be signalled, stopped, inspected and attached to.
"""

import logging

from .. import errors, timefmt

log = logging.getLogger(__name__)

CREATED, STARTING, RUNNING, PAUSED, EXITED, REMOVING, REMOVED = (
    "created", "starting", "running", "paused", "exited", "removing", "removed")
ALIVE = (STARTING, RUNNING, PAUSED)  # a process exists or is being made

TRANSITIONS = {
    CREATED: {STARTING, REMOVING},
    STARTING: {RUNNING, CREATED, EXITED},
    RUNNING: {EXITED, PAUSED},
    PAUSED: {RUNNING, EXITED},
    EXITED: {STARTING, REMOVING},
    REMOVING: {REMOVED},
    REMOVED: set(),
}

DURABLE = {CREATED, EXITED}

# A move whose record cannot be written (a full disk): "starting" comes before
# the work, so it is undone and the start refused; every other move records
# what already happened (a process ran, exited, froze; a removal began), so
# it stands in memory, which is the truth, and the record is written again at
# the container's next save. A daemon killed meanwhile finds the older record,
# which recovery settles as after any crash.
UNDONE_WHEN_UNSAVED = {STARTING}

# The event each arrival publishes (Docker's action names where Docker has one).
ACTIONS = {CREATED: "create", STARTING: None, RUNNING: "start", PAUSED: "pause", EXITED: "die",
           REMOVING: None, REMOVED: "destroy"}
UNPAUSE = "unpause"  # the action of paused -> running


def new_state():
    return {"status": CREATED, "pid": 0, "exit_code": 0, "started_at": timefmt.ZERO_TIME,
            "finished_at": timefmt.ZERO_TIME, "oom_killed": False, "error": ""}


def refuse(c, old, new):
    """The error for a move the state machine forbids (Docker's words where it has them)."""
    if new == PAUSED:
        if old == PAUSED:
            return errors.Conflict(f"Container {c.id} is already paused")
        return errors.Conflict(f"Container {c.id} is not running")
    if new == STARTING and old == PAUSED:
        return errors.Conflict(f"cannot start a paused container {c.short_id}, try unpause instead")
    if new == REMOVING and old == PAUSED:
        return errors.Conflict(f"You cannot remove a paused container {c.id}. Unpause and then stop "
                               "the container before attempting removal or force remove")
    if new == STARTING and old in (RUNNING, STARTING):
        return errors.NotModified(f"container {c.short_id} is already running")
    if new == REMOVING and old in (RUNNING, STARTING):
        return errors.Conflict(f"you cannot remove a running container {c.short_id}: "
                               "stop it first (or use force=1)")
    if new == REMOVING:
        return errors.Conflict(f"container {c.short_id} is already being removed")
    return errors.Conflict(f"container {c.short_id} cannot go from {old} to {new}")


class Lifecycle:
    def __init__(self, store, bus):
        self.store = store
        self.bus = bus

    def _move(self, c, new, persist=True, **state):
        with c.lock:
            old = c.status
            if new not in TRANSITIONS[old]:
                raise refuse(c, old, new)
            before = dict(c.state)
            c.state.update(state, status=new)
            if persist:
                try:
                    self.store.save(c, durable=new in DURABLE)
                except OSError as e:
                    if new in UNDONE_WHEN_UNSAVED:
                        c.state.clear()
                        c.state.update(before)
                        raise
                    log.error("container %s is %s, but its record could not be written (%s); "
                              "it is written at its next change", c.short_id, new, e.strerror or e)
            if new == EXITED:
                c.exits += 1
            c.changed.notify_all()
        action = UNPAUSE if (old, new) == (PAUSED, RUNNING) else ACTIONS[new]
        if action:
            attrs = {"image": c.config.get("Image") or c.image, "name": c.name}
            attrs.update(c.config.get("Labels") or {})
            if new == EXITED:
                attrs["exitCode"] = c.state["exit_code"]
            self.bus.publish("container", action, c.id, **attrs)
        return old

    def check(self, c, new):
        """Raise what a move to `new` would raise now, without moving: for work
        that must not start unless the move will be allowed."""
        with c.lock:
            if new not in TRANSITIONS[c.status]:
                raise refuse(c, c.status, new)

    def created(self, c):
        """A new record: persist it and announce it."""
        with c.lock:
            c.data["state"] = new_state()
            self.store.save(c)
        self.bus.publish("container", ACTIONS[CREATED], c.id, image=c.config.get("Image") or c.image,
                         name=c.name, **(c.config.get("Labels") or {}))

    def starting(self, c, restart_count=0):
        """Returns the state to go back to if the start fails. A start clears a
        user's stop (engine.restart); `restart_count` counts starts by policy."""
        return self._move(c, STARTING, restart_count=restart_count, stopped_by_user=False)

    def health(self, c, health):
        """Record a health check's state (engine.health): not a move, and not
        worth an fsync; the next durable move carries it too."""
        with c.lock:
            c.state["health"] = health
            self._save_soft(c, durable=False)
            c.changed.notify_all()

    def stopped_by_user(self, c):
        """Record that a user stopped or killed `c`, for its restart policy. Not a
        move: persisted at once only when no exit will persist it."""
        with c.lock:
            if c.state.get("stopped_by_user"):
                return
            c.state["stopped_by_user"] = True
            if c.status not in ALIVE:
                self._save_soft(c)

    def _save_soft(self, c, durable=True):
        """A fact, not a move: a record that cannot be written (a full disk)
        must not fail the kill or the health check that came with it."""
        try:
            self.store.save(c, durable=durable)
        except OSError as e:
            log.error("container %s: its record could not be written (%s); it is written at its "
                      "next change", c.short_id, e.strerror or e)

    def start_failed(self, c, back_to, error):
        self._move(c, back_to, error=error)

    def running(self, c, pid, network=None):
        """`network`: what the container got (engine.networking's state:
        endpoints, published ports), kept in its state while it runs."""
        self._move(c, RUNNING, pid=pid, started_at=timefmt.now_iso(), exit_code=0,
                   finished_at=timefmt.ZERO_TIME, oom_killed=False, error="", network=network)

    def paused(self, c):
        """The freezer holds every process of the container (the caller froze it under c.lock)."""
        self._move(c, PAUSED)

    def check_unpause(self, c):
        """running is reachable from starting too: unpause asks for paused itself."""
        with c.lock:
            if c.status != PAUSED:
                raise errors.Conflict(f"Container {c.id} is not paused")

    def unpaused(self, c):
        """The freezer let go of the container's processes."""
        with c.lock:
            self.check_unpause(c)
            self._move(c, RUNNING)

    def exited(self, c, code, oom_killed=False, error=""):
        self._move(c, EXITED, pid=0, exit_code=code, finished_at=timefmt.now_iso(),
                   oom_killed=oom_killed, network=None, **({"error": error} if error else {}))
        log.info("%s exited with %d%s", c.short_id, code, " (out of memory)" if oom_killed else "")

    def removing(self, c):
        self._move(c, REMOVING)

    def removed(self, c):
        """The record is gone from disk: only the in-memory state moves."""
        self._move(c, REMOVED, persist=False)

    def wait_stopped(self, c, timeout=None):
        with c.lock:
            return c.changed.wait_for(lambda: c.status not in ALIVE, timeout)

    def wait_for(self, c, pred, timeout=None):
        """Block until pred(c) holds (checked at each move of `c`)."""
        with c.lock:
            return c.changed.wait_for(lambda: pred(c), timeout)
