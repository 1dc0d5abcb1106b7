"""The cgroup-backed container endpoints of the modern surface: pause,
unpause, stats, update (v1.3 had none of them). top with ps_args is
containers.top, which asks the surface which kind of top it serves."""

import json

from .. import errors
from ..http.messages import Reply, Stream
from . import stats_shape


def pause(req):
    req.engine.container_pause(req.params["id"])
    return Reply.empty(204)


def unpause(req):
    req.engine.container_unpause(req.params["id"])
    return Reply.empty(204)


def stats(req):
    """?stream=1 (default): one object a second until the client leaves or the
    container stops. ?stream=0: one object, its precpu_stats a second older
    (so a client can compute a cpu percentage), or at once with one-shot=1."""
    stream = req.arg_bool("stream", True)
    one_shot = req.arg_bool("one-shot")
    if stream and one_shot:
        raise errors.BadParameter("cannot have stream=true and one-shot=true")
    samples = req.engine.container_stats(req.params["id"], stream=stream or not one_shot)
    if not stream:
        try:
            first = next(samples)
            last = next(samples, first) if first["stats"] is not None and not one_shot else first
        finally:
            samples.close()
        return Reply.json(stats_shape.stats_json(last, first if last is not first else None))
    return Stream(_stream(samples), "application/json")


def _stream(samples):
    previous = None
    try:
        for sample in samples:
            yield json.dumps(stats_shape.stats_json(sample, previous)).encode() + b"\n"
            previous = sample
    finally:
        samples.close()


def update(req):
    body = req.json()
    if body is None:
        raise errors.BadParameter("missing update config in the request body")
    warnings = req.engine.container_update(req.params["id"], body)
    return Reply.json({"Warnings": warnings or None})  # dockerd: null when there are none
