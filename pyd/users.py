"""User and group lookup in a container's own /etc/passwd and /etc/group.

The files are read from the container's layers by the daemon, never through
NSS, and never by following a symlink out of the layers.
"""

import os
import stat

from . import errors

MAX_FILE = 4 << 20


def _open_in_layer(layer, rel):
    """Open layer/rel without following any symlink; None if absent."""
    parts = [p for p in rel.split("/") if p]
    fd = os.open(layer, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError:  # ELOOP: a symlink; treat as unreadable
                return None
            os.close(fd)
            fd = nfd
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        data = os.read(fd, MAX_FILE)
        return data
    finally:
        os.close(fd)


def _hidden(layer, rel):
    """True if `layer` whites out rel or makes one of its parents opaque."""
    parts = [p for p in rel.split("/") if p]
    path = layer
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return True
        if i < len(parts) - 1 and stat.S_ISDIR(st.st_mode):
            try:
                if os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y":
                    return "opaque"
            except OSError:
                pass
    return False


def read_union_file(layers, rel):
    """The content of `rel` as the merged view (top-most layer first) shows it, or None."""
    for layer in layers:
        data = _open_in_layer(layer, rel)
        if data is not None:
            return data
        hidden = _hidden(layer, rel)
        if hidden:
            return None
    return None


def _parse(data, fields):
    out = []
    for line in (data or b"").decode(errors="replace").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields:
            out.append(parts)
    return out


def resolve(user, layers):
    """User spec ('', name, uid, name:group, uid:gid) -> (uid, gid, groups, home)."""
    passwd = _parse(read_union_file(layers, "etc/passwd"), 7)
    group = _parse(read_union_file(layers, "etc/group"), 4)
    name_part, _, group_part = (user or "").partition(":")
    uid, gid, home, uname = 0, 0, "/", "root"
    if not name_part:
        for p in passwd:
            if p[2] == "0":
                home, uname = p[5] or "/", p[0]
                break
        else:
            home = "/root" if not passwd else "/"
    else:
        match = None
        for p in passwd:
            if p[0] == name_part or (name_part.isdigit() and p[2] == name_part):
                match = p
                break
        if match:
            uname, uid, gid, home = match[0], int(match[2]), int(match[3]), match[5] or "/"
        elif name_part.isdigit():
            uid, uname = int(name_part), None
        else:
            raise errors.PydError(f"unable to find user {name_part}: no matching entries in passwd file")
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            for g in group:
                if g[0] == group_part:
                    gid = int(g[2])
                    break
            else:
                raise errors.PydError(f"unable to find group {group_part}: no matching entries in group file")
    groups = sorted({int(g[2]) for g in group
                     if uname and uname in g[3].split(",") and g[2].isdigit()} - {gid})
    if uid >= 1 << 31 or gid >= 1 << 31:
        raise errors.BadParameter(f"user {user!r} is out of range")
    return uid, gid, groups, home
