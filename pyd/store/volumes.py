"""Volumes: the directories pyd makes for a container's Config.Volumes.

On disk: volumes/<64 hex>/. A volume belongs to no record of its own: the
containers' mounts name it by path (store.containers). pyd removes one only
when asked (DELETE ?v=1) and no other container mounts it, and never a
path it did not make (a bind's host directory)."""

import os
import secrets

from ..fs.tarsafe import remove_tree


class VolumeStore:
    def __init__(self, config):
        self.dir = config.volumes_dir

    def create(self):
        """A new, empty volume directory; returns its path."""
        path = os.path.join(self.dir, secrets.token_hex(32))
        os.makedirs(path, 0o755)
        return path

    def owns(self, path):
        """True for a volume pyd made, that still exists."""
        return path.startswith(self.dir + "/") and os.path.isdir(path)

    def remove(self, path):
        if path.startswith(self.dir + "/"):
            remove_tree(path)
