"""Every endpoint, as data. Paths are matched after the /vX.Y prefix is
stripped (api.versions). `{name}` matches one path segment; `{name:.*}`
matches the rest, since image names hold slashes (registry:5000/user/repo).

Api is what the http layer is given: negotiate a request's version and
surface, and match its route.
"""

import re

from .. import errors
from . import archive, containers, images, misc, versions

ROUTES = [
    ("GET",    "/_ping",                        misc.ping),
    ("HEAD",   "/_ping",                        misc.ping),
    ("GET",    "/version",                      misc.version),
    ("GET",    "/info",                         misc.info),

    ("GET",    "/containers/json",              containers.list_),
    ("GET",    "/containers/ps",                containers.list_),
    ("POST",   "/containers/create",            containers.create),
    ("GET",    "/containers/{id}/json",         containers.inspect),
    ("GET",    "/containers/{id}/top",          containers.top),
    ("GET",    "/containers/{id}/changes",      containers.changes),
    ("GET",    "/containers/{id}/export",       containers.export),
    ("POST",   "/containers/{id}/start",        containers.start),
    ("POST",   "/containers/{id}/stop",         containers.stop),
    ("POST",   "/containers/{id}/restart",      containers.restart),
    ("POST",   "/containers/{id}/kill",         containers.kill),
    ("POST",   "/containers/{id}/attach",       containers.attach),
    ("POST",   "/containers/{id}/resize",       containers.resize),
    ("POST",   "/containers/{id}/wait",         containers.wait),
    ("DELETE", "/containers/{id}",              containers.delete),
    ("POST",   "/commit",                       containers.commit),

    ("GET",    "/containers/{id}/archive",      archive.get),
    ("HEAD",   "/containers/{id}/archive",      archive.head),
    ("PUT",    "/containers/{id}/archive",      archive.put),

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


class Api:
    """The API as the http server sees it (pyd.http.server.App)."""

    advertised = versions.ADVERTISED

    def __init__(self, routes=ROUTES):
        self.router = Router(routes)
        self._surfaces = {}  # version -> surface: they hold nothing but their version

    def negotiate(self, path):
        """'/v1.3/x' -> ((1, 3), '/x', its surface); raises for unknown versions."""
        version, rest = versions.split(path)
        return version, rest, self._surface(version)

    def default_surface(self):
        return self._surface(versions.DEFAULT)

    def _surface(self, version):
        s = self._surfaces.get(version)
        if s is None:
            s = self._surfaces[version] = versions.surface_for(version)
        return s

    def match(self, method, path):
        return self.router.match(method, path)
