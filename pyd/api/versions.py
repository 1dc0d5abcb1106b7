"""Version negotiation: which surface serves a request, from its /vX.Y prefix.
Handlers never compare version numbers themselves: they ask the surface.

  unversioned, /v1.0 - /v1.3    legacy (the v1.3 document's shapes)
  /v1.24 - /v1.41               modern (Engine API 1.41, dockerd 20.10's)

Versions between the two ranges were never served by anything pyd could
be compared with, so they are refused like versions outside both
(docs/api-choices.md).
"""

import re

from ..errors import BadParameter
from . import legacy, modern

# The version announced in the API-Version header and by /version.
ADVERTISED = "%d.%d" % modern.MAX
DEFAULT = legacy.MAX  # unversioned paths: old Docker treated them as its own version

_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)\Z")


def split(path):
    """'/v1.3/containers/json' -> ((1, 3), '/containers/json'); None for no prefix."""
    m = _PREFIX.match(path)
    if not m:
        return None, path
    return (int(m.group(1)), int(m.group(2))), m.group(3)


def surface_for(version):
    if legacy.MIN <= version <= legacy.MAX:
        return legacy.Legacy(version)
    if modern.MIN <= version <= modern.MAX:
        return modern.Modern(version)
    v = "%d.%d" % version
    if version > modern.MAX:
        raise BadParameter(f"client version {v} is too new. Maximum supported API version is {ADVERTISED}")
    if version < legacy.MIN:
        raise BadParameter(f"client version {v} is too old. Minimum supported API version is 1.0")
    raise BadParameter(f"client version {v} is not supported: pyd serves API versions 1.0 to 1.3 "
                       f"and 1.24 to {ADVERTISED}")
