"""Every endpoint, as data. Paths are matched after the /vX.Y prefix is
stripped (api.versions). `{name}` matches one path segment; `{name:.*}`
matches the rest, since image names hold slashes (registry:5000/user/repo).

Api is what the http layer is given: negotiate a request's version and
surface, and match its route.
"""

import re

from .. import errors
from . import imagearchive, registry
from . import archive, build, cgroupops, containers, execs, images, legacy, misc, modern, networks, versions, volumes
from .memo import Memo

# A fourth column limits a route to one surface: MODERN endpoints did not
# exist in v1.3 and are 404 there, as in a daemon of that time.
MODERN = "modern"

ROUTES = [
    ("GET",    "/_ping",                        misc.ping),
    ("HEAD",   "/_ping",                        misc.ping),
    ("GET",    "/version",                      misc.version),
    ("GET",    "/info",                         misc.info),
    ("GET",    "/events",                       misc.events),
    ("GET",    "/system/df",                    misc.disk_usage,            MODERN),

    ("GET",    "/containers/json",              containers.list_),
    ("GET",    "/containers/ps",                containers.list_),
    ("POST",   "/containers/create",            containers.create),
    ("POST",   "/containers/prune",             containers.prune,           MODERN),
    ("GET",    "/containers/{id}/json",         containers.inspect),
    ("GET",    "/containers/{id}/top",          containers.top),
    ("GET",    "/containers/{id}/changes",      containers.changes),
    ("GET",    "/containers/{id}/export",       containers.export),
    ("GET",    "/containers/{id}/logs",         containers.logs,            MODERN),
    ("POST",   "/containers/{id}/start",        containers.start),
    ("POST",   "/containers/{id}/stop",         containers.stop),
    ("POST",   "/containers/{id}/restart",      containers.restart),
    ("POST",   "/containers/{id}/kill",         containers.kill),
    ("POST",   "/containers/{id}/rename",       containers.rename,          MODERN),
    ("POST",   "/containers/{id}/attach",       containers.attach),
    ("POST",   "/containers/{id}/resize",       containers.resize),
    ("POST",   "/containers/{id}/wait",         containers.wait),
    ("DELETE", "/containers/{id}",              containers.delete),
    ("POST",   "/commit",                       containers.commit),

    ("POST",   "/containers/{id}/exec",         execs.create,               MODERN),
    ("POST",   "/exec/{id}/start",              execs.start,                MODERN),
    ("POST",   "/exec/{id}/resize",             execs.resize,               MODERN),
    ("GET",    "/exec/{id}/json",               execs.inspect,              MODERN),

    ("GET",    "/containers/{id}/archive",      archive.get,                MODERN),
    ("HEAD",   "/containers/{id}/archive",      archive.head,               MODERN),
    ("PUT",    "/containers/{id}/archive",      archive.put,                MODERN),

    # cgroups: pause, stats, update (top with ps_args is containers.top's modern branch)
    ("POST",   "/containers/{id}/pause",        cgroupops.pause,            MODERN),
    ("POST",   "/containers/{id}/unpause",      cgroupops.unpause,          MODERN),
    ("GET",    "/containers/{id}/stats",        cgroupops.stats,            MODERN),
    ("POST",   "/containers/{id}/update",       cgroupops.update,           MODERN),

    ("GET",    "/images/json",                  images.list_json),
    ("GET",    "/images/viz",                   images.list_viz),
    ("POST",   "/images/create",                images.create),
    ("POST",   "/images/prune",                 images.prune,               MODERN),
    ("POST",   "/images/{name:.+}/insert",      images.insert),
    ("GET",    "/images/search",                registry.search),
    ("POST",   "/images/{name:.+}/push",        registry.push),
    ("POST",   "/auth",                         registry.auth),
    ("GET",    "/images/get",                   imagearchive.save_many,     MODERN),
    ("GET",    "/images/{name:.+}/get",         imagearchive.save_one,      MODERN),
    ("POST",   "/images/load",                  imagearchive.load,          MODERN),
    ("GET",    "/images/{name:.+}/json",        images.inspect),
    ("GET",    "/images/{name:.+}/history",     images.history),
    ("POST",   "/images/{name:.+}/tag",         images.tag),
    ("DELETE", "/images/{name:.+}",             images.delete),
    ("POST",   "/build",                        build.build),

    ("GET",    "/volumes",                      volumes.list_,              MODERN),
    ("POST",   "/volumes/create",               volumes.create,             MODERN),
    ("POST",   "/volumes/prune",                volumes.prune,              MODERN),
    ("GET",    "/volumes/{name}",               volumes.inspect,            MODERN),
    ("DELETE", "/volumes/{name}",               volumes.delete,             MODERN),

    ("GET",    "/networks",                     networks.list_,             MODERN),
    ("POST",   "/networks/create",              networks.create,            MODERN),
    ("POST",   "/networks/prune",               networks.prune,             MODERN),
    ("GET",    "/networks/{id}",                networks.inspect,           MODERN),
    ("DELETE", "/networks/{id}",                networks.delete,            MODERN),
    ("POST",   "/networks/{id}/connect",        networks.connect,           MODERN),
    ("POST",   "/networks/{id}/disconnect",     networks.disconnect,        MODERN),
]


def _compile(pattern):
    def group(m):
        name, _, rx = m.group(1).partition(":")
        return f"(?P<{name}>{rx or '[^/]+'})"
    return re.compile("^" + re.sub(r"\{([^}]+)\}", group, pattern) + r"/?\Z")


class Router:
    def __init__(self, routes=ROUTES):
        self._table = [(r[0], _compile(r[1]), r[2], r[3] if len(r) > 3 else None) for r in routes]

    def match(self, method, path, surface=None):
        for m, rx, fn, only in self._table:
            if m == method and (only is None or surface is None or only == surface):
                hit = rx.match(path)
                if hit:
                    return fn, hit.groupdict()
        raise errors.NotFound("page not found")


class Api:
    """The API as the http server sees it (pyd.http.server.App)."""

    advertised = versions.ADVERTISED

    def __init__(self, routes=ROUTES):
        self.router = Router(routes)
        self.memo = Memo()
        self._surfaces = {}  # version -> surface: they hold nothing but their version

    def negotiate(self, path):
        """'/v1.3/x' -> ((1, 3), '/x', its surface); raises for unknown versions
        (the error carries the surface to say it in: `e.surface`)."""
        version, rest = versions.split(path)
        if version is None:
            return versions.DEFAULT, rest, self.default_surface()
        try:
            return version, rest, self._surface(version)
        except errors.PydError as e:
            e.surface = self._surface(modern.MAX if version > legacy.MAX else legacy.MAX)
            raise

    def default_surface(self):
        """What unversioned paths get: the legacy shapes, plus what negotiating clients need."""
        s = self._surfaces.get(None)
        if s is None:
            s = self._surfaces[None] = legacy.Legacy(versions.DEFAULT, negotiate=(
                "%d.%d" % modern.MIN, "%d.%d" % modern.MAX))
        return s

    def _surface(self, version):
        s = self._surfaces.get(version)
        if s is None:
            s = self._surfaces[version] = versions.surface_for(version)
        return s

    def match(self, method, path, surface=None):
        return self.router.match(method, path, surface.name if surface is not None else None)
