"""/_ping, /version, /info."""

from ..http.messages import Reply


def ping(req):
    return Reply.text("OK")


def version(req):
    return Reply.json(req.surface.daemon_version(req.engine.version()))


def info(req):
    return Reply.json(req.surface.daemon_info(req.engine.info()))
