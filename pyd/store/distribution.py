"""Where each layer is known to be in registries: diff id -> the blobs that
carry it, {digest, size, mediaType, registry, repo}, as Docker's v2
metadata service keeps them. A push asks the registry for these first
(HEAD, or a cross-repository mount) before compressing and uploading the
layer again; a pull records what it fetched.

On disk: distribution.json, {diff id: [descriptor, ...]}, the newest first,
a few per layer; written atomically. Losing it costs only re-uploads.
"""

import logging
import os
import threading

from . import atomic

log = logging.getLogger(__name__)

KEEP = 8


class DistributionStore:
    def __init__(self, config):
        self.path = os.path.join(config.root, "distribution.json")
        self._lock = threading.Lock()
        self._known = {}

    def load(self):
        try:
            data = atomic.read_json(self.path)
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as e:
            log.warning("distribution.json unreadable (%s); layers will be uploaded again", e)
            data = {}
        with self._lock:
            self._known = {k: [d for d in v if isinstance(d, dict) and d.get("digest")]
                           for k, v in data.items() if isinstance(v, list)}

    def blobs(self, diff_id):
        with self._lock:
            return [dict(d) for d in self._known.get(diff_id, [])]

    def record(self, diff_id, digest, size, media_type, registry, repo):
        entry = {"digest": digest, "size": size, "mediaType": media_type, "registry": registry, "repo": repo}
        with self._lock:
            old = self._known.get(diff_id, [])
            if old and old[0] == entry:
                return
            rest = [d for d in old if not (d["digest"] == digest and d.get("registry") == registry
                                           and d.get("repo") == repo)]
            self._known[diff_id] = ([entry] + rest)[:KEEP]
            atomic.write_json(self.path, self._known)

    def forget(self, live_diff_ids):
        """Drop the layers no longer stored."""
        with self._lock:
            gone = [k for k in self._known if k not in live_diff_ids]
            for k in gone:
                del self._known[k]
            if gone:
                atomic.write_json(self.path, self._known)
