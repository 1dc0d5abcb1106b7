"""Version negotiation: which surface serves a request, from its /vX.Y prefix.
Handlers never compare version numbers themselves: they ask the surface."""

import re

from ..errors import BadParameter
from . import legacy

# The version announced in the API-Version header and by /version.
ADVERTISED = "1.3"
DEFAULT = legacy.MAX  # unversioned paths: old Docker treated them as its own version

_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def split(path):
    """'/v1.3/containers/json' -> ((1, 3), '/containers/json')."""
    m = _PREFIX.match(path)
    if not m:
        return DEFAULT, path
    return (int(m.group(1)), int(m.group(2))), m.group(3)


def surface_for(version):
    if legacy.MIN <= version <= legacy.MAX:
        return legacy.Legacy(version)
    v = "%d.%d" % version
    if version > legacy.MAX:
        raise BadParameter(f"client version {v} is too new. Maximum supported API version is {ADVERTISED}")
    raise BadParameter(f"client version {v} is too old. Minimum supported API version is 1.0")
