"""docker save and docker load (Engine API 1.41 only; v1.3 had neither).

GET /images/get?names=a&names=b and GET /images/{name}/get answer the
docker-archive tar (application/x-tar); an unknown name is a 404 before it.
POST /images/load?quiet=0|1 takes the archive as the body and answers
dockerd's JSON stream: "Loading layer" progress (not with quiet), then
{"stream": "Loaded image: repo:tag\\n"} or {"stream": "Loaded image ID:
sha256:...\\n"}. A bad archive is an HTTP 400 before the stream; what fails
later (a layer that does not match its diff id) is an errorDetail in it.
"""

from .. import errors
from ..http.messages import Stream


def save_many(req):
    names = [n for n in (req.query.get("names") or []) if n]
    if not names:
        raise errors.BadParameter("missing parameter: names")
    return Stream(req.engine.image_save(names), "application/x-tar")


def save_one(req):
    return Stream(req.engine.image_save([req.params["name"]]), "application/x-tar")


def load(req):
    from ..engine.imagearchive import Messages, Progress, Text  # loaded on first use
    s = req.surface
    quiet = req.arg_bool("quiet")
    messages = req.engine.image_load(req.body, quiet)

    def chunks():
        for msg in messages:
            if isinstance(msg, Progress):
                yield s.progress_msg("Loading layer", msg.current, msg.total, msg.id)
            elif isinstance(msg, Text):
                yield s.stream_msg(msg.text)
    # close() runs the engine's cleanup even when the stream never started
    return Stream(Messages(chunks(), messages.close), "application/json", on_error=s.error_msg)
