"""docker cp: GET, HEAD and PUT /containers/{id}/archive?path=... The stat
travels base64-encoded in X-Docker-Container-Path-Stat, as in Docker."""

import base64
import json

from .. import errors
from ..http.messages import Reply, Stream

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _stat_header(st):
    """{name, size, mode, mtime, linkTarget} as Docker sends it: base64 of the JSON."""
    return STAT_HEADER, base64.b64encode(json.dumps(st).encode()).decode()


def _path(req):
    path = req.arg("path")
    if not path:
        raise errors.BadParameter("path is required")
    return path


def head(req):
    st = req.engine.container_stat_path(req.params["id"], _path(req))
    return Reply(200, b"", None, [_stat_header(st)])


def get(req):
    st, produce = req.engine.container_archive(req.params["id"], _path(req))
    return Stream(produce, "application/x-tar", headers=[_stat_header(st)])


def put(req):
    req.engine.container_extract(req.params["id"], _path(req), req.body,
                                 copy_uid_gid=req.arg_bool("copyUIDGID"),
                                 no_overwrite_dir_non_dir=req.arg_bool("noOverwriteDirNonDir"))
    return Reply.empty(200)
