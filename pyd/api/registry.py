"""Registry endpoints: pull (POST /images/create?fromImage=), push, /auth
and search. Credentials come from X-Registry-Auth (base64url JSON, as every
client since Docker 0.6.5 sends them) or, on push, from v1.3's authConfig
body; the engine never sees them in any other shape."""

from .. import errors
from ..http.messages import Reply, Stream
from ..registry import credentials


def _auth(req, body=None):
    header = credentials.decode_header(req.headers.get("X-Registry-Auth"))
    return header or body or {}


def _stream(req, messages):
    """Pull and push messages through the surface; a failure after the 200
    is in the stream, as the document's {"error": ...}."""
    from ..engine.pull import Progress, Status  # the registry code loads on first use
    from ..engine.push import Pushed
    s = req.surface

    def chunks():
        try:
            for msg in messages:
                if msg is None:
                    yield None
                elif isinstance(msg, Progress):
                    yield s.progress_msg(msg.status, msg.current, msg.total, msg.id)
                elif isinstance(msg, Status):
                    yield s.status_msg(msg.text, msg.id)
                elif isinstance(msg, Pushed):
                    out = s.pushed_msg(msg.tag, msg.digest, msg.size)
                    if out:
                        yield out
                else:
                    raise TypeError(f"unknown registry message {msg!r}")
        finally:
            messages.close()
    return Stream(chunks(), "application/json", on_error=s.error_msg)


def pull(req, image):
    """fromImage=name, with tag= (a tag or a digest), v1.3's registry= and platform=.
    A reference that cannot be parsed is a 400; whatever the registry says
    comes in the stream."""
    if not image.strip():
        raise errors.BadParameter("fromImage: an image name is needed")
    messages = req.engine.image_pull(image, req.arg("tag") or "", req.arg("registry") or None,
                                     req.arg("platform") or None, _auth(req))
    return _stream(req, messages)


def push(req):
    body = req.json(default={})      # v1.3's authConfig (may be empty)
    if not isinstance(body, dict):
        raise errors.BadParameter("invalid authConfig: a JSON object is needed")
    messages = req.engine.image_push(req.params["name"], req.arg("tag") or None, req.arg("registry") or None,
                                     _auth(req, body))
    return _stream(req, messages)


def auth(req):
    body = req.json(default=None)
    if not isinstance(body, dict):
        raise errors.BadParameter("the body must be a JSON object of username, password and serveraddress")
    status = req.engine.registry_login(body)
    return Reply.json({"Status": status, "IdentityToken": ""})


def search(req):
    term = req.arg("term")
    if not term:
        raise errors.BadParameter("missing parameter: term")
    hits = req.engine.image_search(term, req.arg_int("limit"), _auth(req))
    return Reply.json(req.surface.search_results(hits))
