"""Volumes: directories that outlive the containers that mount them.

On disk: volumes/<name>/ is the volume's content, mounted as it is, and
volumes/.meta/<name>.json its record (created, labels, driver options),
written atomically. Anonymous volumes, made for a container's
Config.Volumes, are named by 64 hex digits; named ones by the client
(`docker volume create`, or a bind "name:/path"). A 0.1.0/0.2.0 volume
directory without a record is an anonymous volume created at its mtime.

A volume is removed only when asked (DELETE ?v=1 of the container that
made it, DELETE /volumes/{name}, prune) and never while a container uses
it; pyd never removes a path it did not make (a bind's host directory).
"""

import os
import re
import secrets
import threading

from .. import errors, timefmt
from ..fs.tarsafe import remove_tree
from . import atomic

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+\Z")
ANONYMOUS_RE = re.compile(r"^[0-9a-f]{64}\Z")


def check_name(name):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise errors.BadParameter(f'create {name}: "{name}" includes invalid characters for a local volume '
                                  'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to '
                                  'pass a host directory, use absolute path')
    return name


class VolumeStore:
    def __init__(self, config):
        self.dir = config.volumes_dir
        self.meta_dir = os.path.join(self.dir, ".meta")
        self._lock = threading.Lock()

    def path(self, name):
        return os.path.join(self.dir, name)

    def _meta_path(self, name):
        return os.path.join(self.meta_dir, name + ".json")

    def create(self, name=None, labels=None, options=None):
        """Make a volume (a fresh anonymous one without `name`); an existing
        named volume is returned as it is, as Docker does. Returns its path."""
        name = check_name(name) if name else secrets.token_hex(32)
        path = self.path(name)
        with self._lock:
            if os.path.isdir(path):
                return path
            os.makedirs(self.meta_dir, 0o700, exist_ok=True)
            atomic.write_json(self._meta_path(name), {"name": name, "created": timefmt.now_iso(),
                                                      "labels": labels or {}, "options": options or {}})
            os.makedirs(path, 0o755)
        return path

    def owns(self, path):
        """True for a volume pyd made, that still exists."""
        return os.path.dirname(path) == self.dir and not os.path.basename(path).startswith(".") \
            and os.path.isdir(path)

    def name_of(self, path):
        return os.path.basename(path) if self.owns(path) else None

    def anonymous(self, path):
        return bool(ANONYMOUS_RE.match(os.path.basename(path)))

    def get(self, name):
        """{name, path, created, labels, options}; NotFound if there is none."""
        path = self.path(name)
        if not NAME_RE.match(name or "") or not os.path.isdir(path):
            raise errors.NotFound(f"get {name}: no such volume")
        try:
            meta = atomic.read_json(self._meta_path(name))
        except (OSError, ValueError):
            meta = {"created": timefmt.time_to_iso(os.stat(path).st_mtime), "labels": {}, "options": {}}
        return {"name": name, "path": path, "created": meta.get("created") or timefmt.ZERO_TIME,
                "labels": meta.get("labels") or {}, "options": meta.get("options") or {}}

    def all(self):
        try:
            names = sorted(n for n in os.listdir(self.dir) if not n.startswith(".") and NAME_RE.match(n))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            try:
                out.append(self.get(n))
            except errors.NotFound:
                pass  # removed meanwhile
        return out

    def remove(self, path):
        if self.owns(path):
            name = os.path.basename(path)
            atomic.unlink_quiet(self._meta_path(name))
            remove_tree(path)
