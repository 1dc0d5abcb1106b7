"""Container endpoints (and /commit): parse, call the engine, shape through the surface."""

from .. import errors
from ..http.messages import Reply, Stream
from . import cgroupops


def list_(req):
    views = req.engine.container_list(all_=req.arg_bool("all"), limit=req.arg_int("limit"),
                                      since=req.arg("since") or None, before=req.arg("before") or None,
                                      size=req.arg_bool("size"))
    return Reply.json(req.surface.container_rows(views))


def create(req):
    body = req.json()
    if body is None:
        raise errors.BadParameter("missing container config in the request body")
    if not isinstance(body, dict):
        raise errors.BadParameter("the container config must be a JSON object")
    cid, warnings = req.engine.container_create(req.surface.create_config(body))
    return Reply.json({"Id": cid, "Warnings": warnings}, status=201)


def inspect(req):
    return Reply.json(req.surface.container_inspect(req.engine.container_inspect(req.params["id"])))


def start(req):
    req.engine.container_get(req.params["id"])  # 404 before the body is looked at
    host_config = req.json()
    if host_config is not None and not isinstance(host_config, dict):
        raise errors.BadParameter("the start body must be a JSON object (HostConfig)")
    req.engine.container_start(req.params["id"], (host_config or {}).get("Binds"))
    return Reply.empty(204)


def stop(req):
    req.engine.container_stop(req.params["id"], req.arg_int("t"))
    return Reply.empty(204)


def restart(req):
    req.engine.container_restart(req.params["id"], req.arg_int("t"))
    return Reply.empty(204)


def kill(req):
    req.engine.container_kill(req.params["id"], req.arg("signal"))
    return Reply.empty(204)


def wait(req):
    return Reply.json({"StatusCode": req.engine.container_wait(req.params["id"])})


def delete(req):
    req.engine.container_delete(req.params["id"], req.arg_bool("v"), req.arg_bool("force"))
    return Reply.empty(204)


def attach(req):
    cid = req.engine.container_get(req.params["id"])
    opts = {k: req.arg_bool(k) for k in ("logs", "stream", "stdin", "stdout", "stderr")}
    conn = req.hijack()  # nothing can be refused after this line
    req.engine.container_attach(cid, conn, framed=req.surface.framed_output,
                                error_format=req.surface.text_stream_error, **opts)


def resize(req):
    h, w = req.arg_int("h"), req.arg_int("w")
    if h is None or w is None or not (0 <= h < 65536 and 0 <= w < 65536):
        raise errors.BadParameter("h and w must be given as integers from 0 to 65535")
    req.engine.container_resize(req.params["id"], h, w)
    return Reply.empty(200)


def changes(req):
    return Reply.json(req.surface.changes(req.engine.container_changes(req.params["id"])))


def export(req):
    work = req.engine.container_export(req.params["id"])  # 404 before the stream starts
    return Stream(work, "application/octet-stream")


def top(req):
    if req.surface.top_runs_ps:  # 1.4 and later: {Titles, Processes} from the host's ps
        return cgroupops.top(req)
    return Reply.json(req.surface.top(req.engine.container_top(req.params["id"]), req.arg("ps_args")))


def commit(req):
    ref = req.arg("container")
    if not ref:
        raise errors.BadParameter("missing parameter: container")
    config = req.json()
    if config is not None and not isinstance(config, dict):
        raise errors.BadParameter("the commit body must be a JSON object (a container config)")
    image_id = req.engine.commit(ref, req.arg("repo") or "", req.arg("tag") or None,
                                 req.arg("comment") or req.arg("m") or "", req.arg("author") or "",
                                 req.surface.create_config(config) if config else None)
    return Reply.json({"Id": image_id}, status=201)
