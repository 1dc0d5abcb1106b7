"""/_ping, /version, /info."""

from ..server import Reply


def ping(req):
    return Reply.text("OK")


def version(req):
    return Reply.json(req.daemon.version())


def info(req):
    return Reply.json(req.daemon.info())
