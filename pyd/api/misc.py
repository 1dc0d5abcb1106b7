"""/_ping, /version, /info, /events, /system/df."""

import json

from .. import errors
from ..engine import filters as flt
from ..http.messages import Reply, Stream


def ping(req):
    return Reply(200, b"OK", "text/plain; charset=utf-8",
                 headers=[("Cache-Control", "no-cache, no-store, must-revalidate"), ("Pragma", "no-cache")])


def version(req):
    return Reply.json(req.surface.daemon_version(req.engine.version()))


def info(req):
    return Reply.json(req.surface.daemon_info(req.engine.info()))


def events(req):
    """A stream of JSON events: the kept ones from `since`, then live ones
    until `until` or until the client leaves."""
    since, until = req.arg_time("since"), req.arg_time("until")
    if since is not None and until is not None and until < since:
        raise errors.BadParameter("`since` time must be before `until` time")
    gen = req.engine.events_stream(since, until, flt.parse(req.arg("filters"), flt.EVENT))
    shape = req.surface.event

    def chunks():
        yield b""  # the head at once: clients wait on it before they act
        for ev in gen:
            if ev is None:
                yield None  # a tick (http.messages.Stream)
                continue
            obj = shape(ev)
            if obj is not None:
                yield json.dumps(obj).encode() + b"\n"
    return Stream(chunks(), "application/json")


def disk_usage(req):
    return Reply.json(req.surface.disk_usage(req.engine.disk_usage()))
