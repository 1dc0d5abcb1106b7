"""Every endpoint, as data. Paths are matched after the /vX.Y prefix is
stripped (api.versions). `{name}` matches one path segment; `{name:.*}`
matches the rest, since image names hold slashes (registry:5000/user/repo).
"""

import re

from . import errors
from .api import images, misc

ROUTES = [
    ("GET",    "/_ping",                        misc.ping),
    ("HEAD",   "/_ping",                        misc.ping),
    ("GET",    "/version",                      misc.version),
    ("GET",    "/info",                         misc.info),

    ("GET",    "/images/json",                  images.list_json),
    ("GET",    "/images/viz",                   images.list_viz),
    ("POST",   "/images/create",                images.create),
    ("POST",   "/images/{name:.+}/insert",      images.insert),
    ("GET",    "/images/{name:.+}/json",        images.inspect),
    ("GET",    "/images/{name:.+}/history",     images.history),
    ("POST",   "/images/{name:.+}/tag",         images.tag),
    ("DELETE", "/images/{name:.+}",             images.delete),
]


def _compile(pattern):
    def group(m):
        name, _, rx = m.group(1).partition(":")
        return f"(?P<{name}>{rx or '[^/]+'})"
    return re.compile("^" + re.sub(r"\{([^}]+)\}", group, pattern) + "/?$")


class Router:
    def __init__(self, routes=ROUTES):
        self._table = [(method, _compile(pattern), fn) for method, pattern, fn in routes]

    def match(self, method, path):
        for m, rx, fn in self._table:
            if m == method:
                hit = rx.match(path)
                if hit:
                    return fn, hit.groupdict()
        raise errors.NotFound(f"404 page not found: {method} {path}")
