"""HostConfig's CapAdd, CapDrop and Privileged -> the container's capability
set, by Docker's rules (moby's oci/caps): names are case-insensitive, with
or without "CAP_"; "ALL" in CapAdd means every capability but the dropped
ones, "ALL" in CapDrop means only the added ones; Privileged means all.

    caps.check(cap_add, cap_drop)                 # at create: BadParameter
    caps.effective(cap_add, cap_drop, privileged) # at start: ["CAP_CHOWN", ...]
"""

from .. import errors
from ..runtime import caps as capabilities

ALL = "ALL"


def _normalize(names):
    """Docker's NormalizeLegacyCapabilities: 'net_admin' -> 'CAP_NET_ADMIN'."""
    if names is None:
        return []
    if not isinstance(names, (list, tuple)):
        raise errors.BadParameter(f"capabilities must be a list of names, not {names!r}")
    known = capabilities.known()
    out = []
    for name in names:
        if not isinstance(name, str):
            raise errors.BadParameter(f"unknown capability: {name!r}")
        name = name.strip().upper()
        if name == ALL:
            out.append(ALL)
            continue
        if not name.startswith("CAP_"):
            name = "CAP_" + name
        if name not in known:
            raise errors.BadParameter(f'unknown capability: "{name}"')
        out.append(name)
    return out


def check(cap_add, cap_drop):
    """Refuse an unknown capability name (BadParameter), as Docker's create."""
    _normalize(cap_add)
    _normalize(cap_drop)


def effective(cap_add, cap_drop, privileged):
    """The capability names the container's process gets, in Docker's order
    (defaults first, then the added ones)."""
    if privileged:
        return capabilities.supported()
    add, drop = _normalize(cap_add), _normalize(cap_drop)
    if not add and not drop:
        return list(capabilities.DEFAULT)
    if ALL in add:
        return [c for c in capabilities.supported() if c not in drop]
    if ALL in drop:
        base = []
    else:
        base = [c for c in capabilities.DEFAULT if c not in drop]
    return base + [c for c in add if c not in base]
