"""Restart policies: after an exit, whether and when the daemon starts the
container again (Docker's restartmanager).

  no              never
  always          after every exit, unless a user stopped it (then at the
                  next daemon start)
  unless-stopped  as always, but a user's stop also holds across daemon starts
  on-failure[:N]  after a non-zero exit, at most N times (0: no bound)

Back-off as in Docker: the first restart waits 100 ms, each next one twice
as long, up to a minute; a run that lasted 10 s or more resets it. While a
restart is pending the container is "restarting": a stop, kill, start or
remove cancels it. The count is kept in the record's state
(restart_count), so inspect shows it and it survives the daemon.
"""

import logging
import threading

log = logging.getLogger(__name__)

FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


def policy_of(c):
    rp = c.host.get("RestartPolicy") or {}
    return rp.get("Name") or "no", rp.get("MaximumRetryCount") or 0


def wants_restart(c, code, at_daemon_start=False):
    """Whether the policy restarts `c` after exiting with `code`."""
    name, limit = policy_of(c)
    stopped = c.state.get("stopped_by_user", False)
    if name == "always":
        return at_daemon_start or not stopped
    if name == "unless-stopped":
        return not stopped
    if name == "on-failure":
        return code != 0 and not stopped and (limit == 0 or (c.state.get("restart_count") or 0) < limit)
    return False


class Restarts:
    """Pending restarts, one timer per container at most."""

    def __init__(self, start):
        self._start = start       # start(container id): the engine's restart
        self._lock = threading.Lock()
        self._timers = {}         # id -> Timer
        self._delays = {}         # id -> the next delay
        self.generation = 0       # bumped when a restart is scheduled or ends: "restarting" changes

    def pending(self, cid):
        with self._lock:
            return cid in self._timers

    def schedule(self, c, ran_for):
        """Start `c` again after its back-off."""
        with self._lock:
            delay = FIRST_DELAY if ran_for >= RESET_AFTER else self._delays.get(c.id, FIRST_DELAY)
            self._delays[c.id] = min(delay * 2, MAX_DELAY)
            old = self._timers.pop(c.id, None)
            if old:
                old.cancel()
            t = threading.Timer(delay, self._fire, args=(c.id,))
            t.name = f"restart-{c.short_id}"
            t.daemon = True
            self._timers[c.id] = t
            self.generation += 1
        log.info("restarting %s in %.1fs (policy %s)", c.short_id, delay, policy_of(c)[0])
        t.start()

    def _fire(self, cid):
        with self._lock:
            if self._timers.pop(cid, None) is None:
                return  # cancelled
            self.generation += 1
        self._start(cid)

    def cancel(self, cid, forget=False):
        with self._lock:
            t = self._timers.pop(cid, None)
            self.generation += t is not None
            if forget:
                self._delays.pop(cid, None)
        if t:
            t.cancel()
        return t is not None

    def cancel_all(self):
        with self._lock:
            timers, self._timers = list(self._timers.values()), {}
        for t in timers:
            t.cancel()
