"""Exec endpoints (API 1.41): create, start (hijacked, or detached), resize,
inspect. The record's wire shape is projected here (`inspect_shape`)."""

from .. import errors
from ..http.messages import Reply

_CREATE_FIELDS = {"AttachStdin": bool, "AttachStdout": bool, "AttachStderr": bool, "Tty": bool,
                  "Privileged": bool, "DetachKeys": str, "User": str, "WorkingDir": str}


def _body(req, what):
    body = req.json()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise errors.BadParameter(f"the {what} body must be a JSON object")
    return body


def create(req):
    cid = req.engine.container_get(req.params["id"])  # 404 before the body is looked at
    body = _body(req, "exec create")
    for name, kind in _CREATE_FIELDS.items():
        if body.get(name) is not None and not isinstance(body[name], kind):
            raise errors.BadParameter(f"{name} must be a {'boolean' if kind is bool else 'string'}")
    exec_id = req.engine.exec_create(
        cid, body.get("Cmd"), env=body.get("Env"), user=body.get("User") or "",
        workdir=body.get("WorkingDir") or "", tty=bool(body.get("Tty")),
        stdin=bool(body.get("AttachStdin")), stdout=bool(body.get("AttachStdout")),
        stderr=bool(body.get("AttachStderr")), detach_keys=body.get("DetachKeys") or "",
        privileged=bool(body.get("Privileged")))
    return Reply.json({"Id": exec_id}, status=201)


def start(req):
    exec_id = req.params["id"]
    body = _body(req, "exec start")
    if not isinstance(body.get("Detach", False), bool) or not isinstance(body.get("Tty", False), bool):
        raise errors.BadParameter("Detach and Tty must be booleans")
    req.engine.exec_check_start(exec_id)  # 404 and 409 while a status can still be sent
    if body.get("Detach"):
        req.engine.exec_start(exec_id)
        return Reply(200)  # dockerd answers a detached start with an empty 200
    conn = req.hijack()  # nothing can be refused after this line
    req.engine.exec_start(exec_id, conn, framed=req.surface.framed_output,
                          error_format=req.surface.text_stream_error)


def resize(req):
    h, w = req.arg_tty_size()
    req.engine.exec_resize(req.params["id"], h, w)
    return Reply.empty(200)


def inspect(req):
    return Reply.json(req.surface.exec_inspect(req.engine.exec_inspect(req.params["id"])))
