"""The in-process event bus. Every container transition (engine.lifecycle)
and every image change is published here; /events (a later surface) and
restart policies subscribe.

A subscriber has a bounded queue. The publisher never blocks: a subscriber
that falls `maxlen` events behind is cut off (its next get() raises
Overflow), as dockerd evicts slow event listeners. The bus also keeps the
last `history` events, so a subscriber can start from a point in time.
"""

import collections
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    type: str          # "container" or "image"
    action: str        # create, start, die, destroy, ... (docs/design.md lists them)
    id: str
    time_ns: int       # nanoseconds since the epoch
    attributes: dict = field(default_factory=dict)

    @property
    def time(self):
        return self.time_ns / 1e9


class Overflow(Exception):
    """The subscriber fell too far behind and was cut off."""


class Subscription:
    def __init__(self, bus, maxlen, match):
        self._bus = bus
        self._q = collections.deque()
        self._maxlen = maxlen
        self._match = match
        self._cond = threading.Condition()
        self.overflowed = False
        self.closed = False

    def _push(self, ev):
        if self._match is not None and not self._match(ev):
            return
        with self._cond:
            if self.closed:
                return
            if len(self._q) >= self._maxlen:
                self.overflowed, self.closed = True, True
                self._q.clear()
            else:
                self._q.append(ev)
            self._cond.notify()

    def get(self, timeout=None):
        """The next event; None on timeout or once closed. Raises Overflow."""
        with self._cond:
            if not self._q and not self.closed:
                self._cond.wait(timeout)
            if self.overflowed:
                raise Overflow()
            return self._q.popleft() if self._q else None

    def close(self):
        self._bus.unsubscribe(self)
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Bus:
    def __init__(self, history=1024, maxlen=1024):
        self._lock = threading.Lock()
        self._subs = []
        self._history = collections.deque(maxlen=history)
        self._maxlen = maxlen

    def publish(self, type_, action, id_, **attributes):
        ev = Event(type_, action, id_, time.time_ns(), attributes)
        with self._lock:
            self._history.append(ev)
            subs = list(self._subs)
        for s in subs:
            s._push(ev)
        return ev

    def subscribe(self, since=None, match=None, maxlen=None, until=None, live=True):
        """A new subscription; with `since` (epoch seconds) it first holds the
        kept events from that time on (up to `until`); `live=False` takes only
        that replay, and the subscription is closed after it."""
        sub = Subscription(self, maxlen or self._maxlen, match)
        with self._lock:
            if since is not None:
                for ev in self._history:
                    if ev.time >= since and (until is None or ev.time <= until):
                        sub._push(ev)
            if live:
                self._subs.append(sub)
            else:
                sub.closed = True
        return sub

    def listeners(self):
        with self._lock:
            return len(self._subs)

    def unsubscribe(self, sub):
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def recent(self):
        with self._lock:
            return list(self._history)
