"""The host's device nodes, as a privileged container gets them in its /dev
(Docker's, through runc's devices.HostDevices)."""

import os
import stat

# Not walked: mounts of their own in the container (pts, shm, mqueue), the
# fd symlinks, and runc's list of directories of other runtimes.
_SKIP_DIRS = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}


def host_devices(root="/dev"):
    """[(container path, st_mode, major, minor, uid, gid)] of every character
    and block device under `root`, parents first, symlinks not followed.
    /dev/console is left out: a container never gets the host's console."""
    out = []

    def walk(path, rel):
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:  # vanished or unreadable: udev changes /dev under us
            return
        for e in entries:
            sub = rel + "/" + e.name
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if e.name not in _SKIP_DIRS:
                    walk(e.path, sub)
            elif (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and sub != "/dev/console":
                out.append((sub, st.st_mode, os.major(st.st_rdev), os.minor(st.st_rdev),
                            st.st_uid, st.st_gid))

    walk(root, "/dev")
    return out
