"""Network records: networks/<id>.json, one per network pyd made, written
atomically. They hold what the network is (name, driver, subnet, gateway,
its bridge, labels, options), never who is attached: endpoints live with
the running containers, so a daemon that died leaves no stale allocation.

The predefined "bridge" network is a record too (its subnet is chosen once
and kept across restarts); "host" and "none" are not stored: they are
the same on every start (engine.networking makes their views).
"""

import os
import re
import secrets
import threading

from .. import errors, timefmt
from . import atomic

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")


def new_id():
    return secrets.token_hex(32)


class NetworkStore:
    def __init__(self, config):
        self.dir = os.path.join(config.root, "networks")
        self._lock = threading.Lock()
        self._by_id = {}

    def load(self):
        os.makedirs(self.dir, 0o700, exist_ok=True)
        with self._lock:
            self._by_id = {}
            for name in sorted(os.listdir(self.dir)):
                if not name.endswith(".json") or name.startswith("."):
                    continue
                try:
                    rec = atomic.read_json(os.path.join(self.dir, name))
                except (OSError, ValueError):
                    continue  # a torn write cannot happen (atomic); a hand-edited file is skipped
                if isinstance(rec, dict) and rec.get("Id") == name[:-5]:
                    self._by_id[rec["Id"]] = rec
        return list(self._by_id.values())

    def all(self):
        with self._lock:
            return [dict(r) for r in self._by_id.values()]

    def get(self, ref):
        """By exact name, full id, or unique id prefix (Docker's order)."""
        with self._lock:
            recs = list(self._by_id.values())
        for r in recs:
            if r["Name"] == ref:
                return dict(r)
        for r in recs:
            if r["Id"] == ref:
                return dict(r)
        hits = [r for r in recs if ref and r["Id"].startswith(ref)]
        if len(hits) == 1:
            return dict(hits[0])
        if len(hits) > 1:
            raise errors.NotFound(f"network {ref} is ambiguous ({len(hits)} matches found based on ID prefix)")
        raise errors.NotFound(f"network {ref} not found")

    def add(self, rec):
        """Store a new record; Conflict if its name is taken."""
        if not isinstance(rec.get("Name"), str) or not NAME_RE.match(rec["Name"]):
            raise errors.BadParameter(f"invalid network name {rec.get('Name')!r}: only "
                                      "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        rec.setdefault("Created", timefmt.now_iso())
        with self._lock:
            if any(r["Name"] == rec["Name"] for r in self._by_id.values()):
                raise errors.Conflict(f"network with name {rec['Name']} already exists")
            atomic.write_json(os.path.join(self.dir, rec["Id"] + ".json"), rec)
            self._by_id[rec["Id"]] = rec
        return dict(rec)

    def remove(self, net_id):
        with self._lock:
            atomic.unlink_quiet(os.path.join(self.dir, net_id + ".json"))
            self._by_id.pop(net_id, None)
