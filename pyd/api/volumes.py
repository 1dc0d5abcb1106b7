"""Named volumes: /volumes (Engine API 1.41)."""

from .. import errors
from ..engine import filters as flt
from ..http.messages import Reply


def list_(req):
    return Reply.json(req.surface.volumes(req.engine.volume_list(flt.parse(req.arg("filters"), flt.VOLUME))))


def create(req):
    body = req.json(default={})
    if not isinstance(body, dict):
        raise errors.BadParameter("the volume config must be a JSON object")
    v = req.engine.volume_create(body.get("Name") or None, body.get("Labels"), body.get("Driver"),
                                 body.get("DriverOpts"))
    return Reply.json(req.surface.volume(v), status=201)


def inspect(req):
    return Reply.json(req.surface.volume(req.engine.volume_inspect(req.params["name"])))


def delete(req):
    req.engine.volume_delete(req.params["name"], req.arg_bool("force"))
    return Reply.empty(204)


def prune(req):
    names, reclaimed = req.engine.volumes_prune(flt.parse(req.arg("filters"), flt.PRUNE))
    return Reply.json(req.surface.volumes_pruned(names, reclaimed))
