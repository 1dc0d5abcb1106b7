"""Reuse of a projected reply for identical requests in quick succession.

A container list is the hottest read (monitoring loops, `docker ps` in
scripts, compose): projecting 50 records costs about a millisecond of
Python, the HTTP round trip a tenth of that. A reply is kept for `ttl`
seconds under a key that holds the engine's list generation
(Engine.list_generation: bumped by every record, image and restart-policy
change), so a change is seen by the very next request. Only the time-derived
text ("Up 5 seconds") can be up to `ttl` old.
"""

import threading
import time

TTL = 0.25
MAX_ENTRIES = 16


class Memo:
    def __init__(self, ttl=TTL, max_entries=MAX_ENTRIES):
        self.ttl = ttl
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries = {}  # key -> (expires, value)

    def get(self, key, make):
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = make()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        return value
