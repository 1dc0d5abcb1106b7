"""Container endpoints of the v1.3 document (and /commit)."""

from .. import errors
from ..server import Reply, Stream


def list_(req):
    rows = req.daemon.container_list(all_=req.arg_bool("all"), limit=req.arg_int("limit"),
                                     since=req.arg("since") or None, before=req.arg("before") or None,
                                     size=req.arg_bool("size"))
    return Reply.json(rows)


def create(req):
    body = req.json()
    if body is None:
        raise errors.BadParameter("missing container config in the request body")
    return Reply.json(req.daemon.container_create(body), status=201)


def inspect(req):
    return Reply.json(req.daemon.container_inspect(req.params["id"]))


def start(req):
    req.daemon.container_start(req.params["id"], req.json())
    return Reply.empty(204)


def stop(req):
    req.daemon.container_stop(req.params["id"], req.arg_int("t"))
    return Reply.empty(204)


def restart(req):
    req.daemon.container_restart(req.params["id"], req.arg_int("t"))
    return Reply.empty(204)


def kill(req):
    req.daemon.container_kill(req.params["id"], req.arg("signal"))
    return Reply.empty(204)


def wait(req):
    return Reply.json({"StatusCode": req.daemon.container_wait(req.params["id"])})


def delete(req):
    req.daemon.container_delete(req.params["id"], req.arg_bool("v"), req.arg_bool("force"))
    return Reply.empty(204)


def attach(req):
    c = req.daemon.container(req.params["id"])
    opts = {k: req.arg_bool(k) for k in ("logs", "stream", "stdin", "stdout", "stderr")}
    hijack = req.hijack()  # nothing can be refused after this line
    req.daemon.container_attach(c, hijack, framed=req.surface.framed_output,
                                error_format=req.surface.text_stream_error, **opts)


def resize(req):
    h, w = req.arg_int("h"), req.arg_int("w")
    if h is None or w is None or not (0 <= h < 65536 and 0 <= w < 65536):
        raise errors.BadParameter("h and w must be given as integers from 0 to 65535")
    req.daemon.container_resize(req.params["id"], h, w)
    return Reply.empty(200)


def changes(req):
    return Reply.json(req.daemon.container_changes(req.params["id"]))


def export(req):
    work = req.daemon.container_export(req.params["id"])  # 404 before the stream starts
    return Stream(work, "application/octet-stream")


def top(req):
    return Reply.json(req.surface.top(req.daemon.container_top(req.params["id"]), req.arg("ps_args")))


def commit(req):
    ref = req.arg("container")
    if not ref:
        raise errors.BadParameter("missing parameter: container")
    config = req.json()
    if config is not None and not isinstance(config, dict):
        raise errors.BadParameter("the commit body must be a JSON object (a container config)")
    image_id = req.daemon.commit(ref, req.arg("repo") or "", req.arg("tag") or None,
                                 req.arg("comment") or req.arg("m") or "", req.arg("author") or "", config)
    return Reply.json({"Id": image_id}, status=201)
