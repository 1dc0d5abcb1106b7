"""Container endpoints (and /commit): parse, call the engine, shape through the surface."""

import json

from .. import errors, timefmt
from ..engine import filters as flt
from ..http.messages import Reply, Stream


def list_(req):
    def make():
        views = req.engine.container_list(all_=req.arg_bool("all"), limit=req.arg_int("limit"),
                                          since=req.arg("since") or None, before=req.arg("before") or None,
                                          size=size, filters=flt.parse(req.arg("filters"), flt.CONTAINER))
        return json.dumps(req.surface.container_rows(views)).encode()
    size = req.arg_bool("size")
    if size:  # sizes come from the disk, not the records: never reused
        body = make()
    else:
        key = ("containers", req.surface.name, req.version, req.query_key(), req.engine.list_generation())
        body = req.api.memo.get(key, make)
    return Reply(200, body, "application/json")


def create(req):
    body = req.json()
    if body is None:
        raise errors.BadParameter("missing container config in the request body")
    if not isinstance(body, dict):
        raise errors.BadParameter("the container config must be a JSON object")
    cid, warnings = req.engine.container_create(req.surface.create_config(body), name=req.arg("name") or None)
    return Reply.json({"Id": cid, "Warnings": warnings}, status=201)


def inspect(req):
    view = req.engine.container_inspect(req.params["id"], size=req.arg_bool("size"))
    return Reply.json(req.surface.container_inspect(view))


def start(req):
    req.engine.container_get(req.params["id"])  # 404 before the body is looked at
    host_config = req.json()
    if host_config is not None and not isinstance(host_config, dict):
        raise errors.BadParameter("the start body must be a JSON object (HostConfig)")
    if host_config and not req.surface.start_takes_host_config:
        raise errors.BadParameter("starting container with non-empty request body was deprecated since API "
                                  "v1.22 and removed in v1.24")
    req.engine.container_start(req.params["id"], (host_config or {}).get("Binds"))
    return Reply.empty(204)


def rename(req):
    req.engine.container_rename(req.params["id"], req.arg("name") or "")
    return Reply.empty(204)


def prune(req):
    ids, reclaimed = req.engine.containers_prune(flt.parse(req.arg("filters"), flt.PRUNE))
    return Reply.json(req.surface.containers_pruned(ids, reclaimed))


def logs(req):
    """GET /containers/{id}/logs: lines framed (no Tty) or raw, optionally timestamped."""
    stdout, stderr = req.arg_bool("stdout"), req.arg_bool("stderr")
    if not (stdout or stderr):
        raise errors.BadParameter("Bad parameters: you must choose at least one stream")
    tail = req.arg("tail")
    if tail in (None, "", "all"):
        tail = None
    else:
        try:
            tail = int(tail)
        except ValueError:
            raise errors.BadParameter(f"bad value for tail: {tail!r} (a number or all)") from None
    since, until = req.arg_time("since"), req.arg_time("until")
    timestamps = req.arg_bool("timestamps")
    tty, lines = req.engine.container_logs(req.params["id"], stdout, stderr, req.arg_bool("follow"), tail,
                                           since or None, until or None)
    framed = req.surface.framed_output and not tty

    def chunks():
        for item in lines:
            if item is None:
                yield None  # a tick while a follow waits (http.messages.Stream)
                continue
            stream, data, ns = item
            if timestamps:
                data = timefmt.ns_to_iso(ns).encode() + b" " + data
            yield frame(stream, data) if framed else data
    ctype = "application/vnd.docker.multiplexed-stream" if framed else "application/vnd.docker.raw-stream"
    return Stream(chunks(), ctype)


def frame(stream, data):
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


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
    wait_for = req.engine.container_wait(req.params["id"], req.arg("condition") or "not-running")
    if not req.surface.wait_flushes_head:
        while True:
            done = wait_for(timeout=1.0)
            if done is not None:
                return Reply.json({"StatusCode": done[0]})
            if req.client_gone():   # a client that left must not hold a thread and an fd
                raise ConnectionAbortedError("the client went away during wait")

    def chunks():
        # The head goes out before the first chunk: `docker run` waits on it
        # (condition=next-exit) before it starts the container.
        yield b""
        while True:
            done = wait_for(timeout=1.0)
            if done is not None:
                break
            yield None  # a tick: a client that left must not hold this thread
        code, err = done
        yield json.dumps({"StatusCode": code, "Error": {"Message": err} if err else None}).encode() + b"\n"
    return Stream(chunks(), "application/json")


def delete(req):
    req.engine.container_delete(req.params["id"], req.arg_bool("v"), req.arg_bool("force"))
    return Reply.empty(204)


def attach(req):
    cid = req.engine.container_get(req.params["id"])
    req.arg("detachKeys")  # the default (Ctrl-P Ctrl-Q) is the only one pyd knows
    opts = {k: req.arg_bool(k) for k in ("logs", "stream", "stdin", "stdout", "stderr")}
    # The engine hijacks (after which nothing can be refused) once it listens.
    req.engine.container_attach(cid, req.hijack, framed=req.surface.framed_output,
                                error_format=req.surface.text_stream_error, **opts)


def resize(req):
    h, w = req.arg_tty_size()
    req.engine.container_resize(req.params["id"], h, w)
    return Reply.empty(200)


def changes(req):
    return Reply.json(req.surface.changes(req.engine.container_changes(req.params["id"])))


def export(req):
    work = req.engine.container_export(req.params["id"])  # 404 before the stream starts
    return Stream(work, "application/octet-stream")


def top(req):
    cid, ps_args = req.params["id"], req.arg("ps_args")
    # 1.4 and later run the host's ps with ps_args; v1.3 lists the processes from /proc.
    procs = req.engine.container_ps(cid, ps_args) if req.surface.top_runs_ps else req.engine.container_top(cid)
    return Reply.json(req.surface.top(procs, ps_args))


def commit(req):
    ref = req.arg("container")
    if not ref:
        raise errors.BadParameter("missing parameter: container")
    config = req.json()
    if config is not None and not isinstance(config, dict):
        raise errors.BadParameter("the commit body must be a JSON object (a container config)")
    image_id = req.engine.commit(ref, req.arg("repo") or "", req.arg("tag") or None,
                                 req.arg("comment") or req.arg("m") or "", req.arg("author") or "",
                                 req.surface.create_config(config) if config else None,
                                 changes=req.query.get("changes"), pause=req.arg_bool("pause", True))
    return Reply.json(req.surface.committed(image_id), status=201)
