"""User and group lookup in a container's own /etc/passwd and /etc/group.

The files are read from the container's layers by the daemon, never through
NSS, and never by following a symlink out of the layers.
"""

from .. import errors
from ..fs import layerfs

MAX_FILE = 4 << 20


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
    passwd = _parse(layerfs.read_file(layers, "etc/passwd", MAX_FILE), 7)
    group = _parse(layerfs.read_file(layers, "etc/group", MAX_FILE), 4)
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
            if p[0] == name_part or (_numeric(name_part) and p[2] == name_part):
                if not (_numeric(p[2]) and _numeric(p[3])):
                    continue    # a hostile or broken passwd line: its ids are not numbers
                match = p
                break
        if match:
            uname, uid, gid, home = match[0], int(match[2]), int(match[3]), match[5] or "/"
        elif _numeric(name_part):
            uid, uname = int(name_part), None
        else:
            raise errors.PydError(f"unable to find user {name_part}: no matching entries in passwd file")
    if group_part:
        if _numeric(group_part):
            gid = int(group_part)
        else:
            for g in group:
                if g[0] == group_part and _numeric(g[2]):
                    gid = int(g[2])
                    break
            else:
                raise errors.PydError(f"unable to find group {group_part}: no matching entries in group file")
    groups = sorted({int(g[2]) for g in group
                     if uname and uname in g[3].split(",") and _numeric(g[2])} - {gid})
    if uid >= 1 << 31 or gid >= 1 << 31 or any(g >= 1 << 31 for g in groups):
        raise errors.BadParameter(f"user {user!r} is out of range")
    return uid, gid, groups, home


def _numeric(text):
    """An id as passwd and Docker write them: ASCII digits, not too many
    ('²'.isdigit() is true, and int() refuses it)."""
    return 0 < len(text) <= 12 and all("0" <= ch <= "9" for ch in text)
