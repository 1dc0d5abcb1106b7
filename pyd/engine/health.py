"""Health checks: Config.Healthcheck run on its interval while the container
runs, as dockerd does (daemon/health.go).

  Test      ["CMD", argv...], ["CMD-SHELL", "command"] (run by /bin/sh -c), ["NONE"]
  Interval  between the end of a probe and the next (default 30 s)
  Timeout   a probe that runs longer is killed and counts as a failure (default 30 s)
  StartPeriod  failures in this first stretch do not count (default 0)
  Retries   consecutive failures before "unhealthy" (default 3)

State.Health is {Status: starting|healthy|unhealthy, FailingStreak, Log: the
last 5 probes {Start, End, ExitCode, Output (at most 4 KiB)}}, kept in the
record through lifecycle.health (it survives the daemon, as dockerd's
does). A change of Status publishes `health_status: <status>`. Probes run
through exec (engine.execs), in the container's namespaces, cgroup and
user: `probe(c, argv, timeout)` gives (exit code, output bytes).
"""

import logging
import threading
import time

from .. import timefmt

log = logging.getLogger(__name__)

NS = 1_000_000_000
DEFAULT_INTERVAL = 30 * NS
DEFAULT_TIMEOUT = 30 * NS
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096


def argv_of(test):
    """The probe's command, or None for no check."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:]) or None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return None


def initial():
    return {"Status": "starting", "FailingStreak": 0, "Log": []}


class Monitor:
    """One thread per running container with a check; ends with the run."""

    def __init__(self, c, check, probe, record, run_over):
        self.c = c
        self.argv = argv_of(check.get("Test"))
        self.interval = (check.get("Interval") or DEFAULT_INTERVAL) / NS
        self.timeout = (check.get("Timeout") or DEFAULT_TIMEOUT) / NS
        self.start_period = (check.get("StartPeriod") or 0) / NS
        self.retries = check.get("Retries") or DEFAULT_RETRIES
        self.probe = probe            # probe(c, argv, timeout) -> (code, bytes)
        self.record = record          # record(c, health, changed_to or None): lifecycle + event
        self.run_over = run_over      # an Event set when the run ends
        self.started = time.monotonic()

    def start(self):
        t = threading.Thread(target=self._loop, name=f"health-{self.c.short_id}", daemon=True)
        t.start()
        return t

    def _loop(self):
        while not self.run_over.wait(self.interval):
            if self.c.paused:  # as dockerd: no probes while the container is paused
                continue
            began = timefmt.time_to_iso(time.time())
            try:
                code, out = self.probe(self.c, self.argv, self.timeout)
            except Exception as e:  # the container went away under the probe
                if self.run_over.is_set():
                    return
                code, out = -1, str(e).encode()
            if self.run_over.is_set():
                return
            self._result(began, code, out)

    def _result(self, began, code, out):
        with self.c.lock:
            health = dict(self.c.state.get("health") or initial())
        entry = {"Start": began, "End": timefmt.time_to_iso(time.time()), "ExitCode": code,
                 "Output": out[:MAX_OUTPUT].decode(errors="replace")}
        health["Log"] = (list(health.get("Log") or []) + [entry])[-MAX_LOG:]
        old = health.get("Status")
        if code == 0:
            health["Status"], health["FailingStreak"] = "healthy", 0
        elif time.monotonic() - self.started >= self.start_period or old != "starting":
            health["FailingStreak"] = (health.get("FailingStreak") or 0) + 1
            if health["FailingStreak"] >= self.retries:
                health["Status"] = "unhealthy"
        self.record(self.c, health, health["Status"] if health["Status"] != old else None)
