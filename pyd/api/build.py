"""POST /build: read the params, hand the context to the engine, and write
the builder's messages through the surface (build_step, build_text...).

Legacy (v1.3) paths get Docker 0.6's plain text, every failure included,
after the 200, as `Error build: ...`. Modern paths get dockerd's JSON
stream; a failure found before the build starts (the context, the
Dockerfile, the params) is an HTTP error, as in dockerd, and a later one
is in the stream. See docs/build.md.
"""

import json

from .. import errors
from ..engine.fetch import check_url
from ..http.messages import Stream
from ..registry import credentials


def _json_object(req, name):
    raw = req.arg(name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise errors.BadParameter(f"invalid {name} JSON: {e}") from e
    if not isinstance(value, dict):
        raise errors.BadParameter(f"invalid {name}: a JSON object is needed")
    # The clients send null for an arg named without a value whose variable
    # is unset on their side: it is then not set at all.
    return {str(k): str(v) for k, v in value.items() if v is not None}


def options(req):
    """The build's Options from the query; tags checked here, before any output."""
    from ..engine.builder import Options  # the builder loads on the first build
    s = req.surface
    if req.arg("version") == "2":
        raise errors.BadParameter("BuildKit is not supported by pyd: use the classic builder "
                                  "(DOCKER_BUILDKIT=0 docker build)")
    if req.arg_bool("squash"):
        raise errors.BadParameter("squash is only supported with experimental mode")  # as dockerd says
    tags = []
    for t in req.query.get("t") or []:
        if t:
            repo, tag = req.engine.check_repo_tag(t, None)
            tags.append((repo, tag or "latest"))
    return Options(
        tags=tags,
        quiet=req.arg_bool("q"),
        nocache=req.arg_bool("nocache"),
        rm=req.arg_bool("rm", default=s.build_rm_default),
        forcerm=req.arg_bool("forcerm"),
        pull=req.arg_bool("pull"),
        build_args=_json_object(req, "buildargs"),
        labels=_json_object(req, "labels"),
        target=req.arg("target") or "",
        memory=req.arg_int("memory", 0) or 0,
        memswap=req.arg_int("memswap", 0) or 0,
        network_mode=req.arg("networkmode") or "",
        dockerfile=req.arg("dockerfile") or "Dockerfile",
        legacy=s.name == "legacy",
        registry_auth=_registry_config(req),
    )


def _registry_config(req):
    """X-Registry-Config: {server address: authConfig}, for pulling base images."""
    given = credentials.decode_header(req.headers.get("X-Registry-Config"))
    return {credentials.server_host(k): v for k, v in given.items() if isinstance(v, dict)}


def _remote(req):
    remote = req.arg("remote") or ""
    if remote and (remote.startswith("git://") or remote.startswith("git@") or remote.endswith(".git")):
        raise errors.BadParameter("git build contexts are not supported by pyd: send the context as a "
                                  "tar, or give an http(s) URL of a tar or of a Dockerfile")
    return check_url(remote) if remote else None


def _project(s, msg):
    from ..engine.builder import Built, Step, Tagged, Text
    if isinstance(msg, Step):
        return s.build_step(msg.n, msg.total, msg.text)
    if isinstance(msg, Text):
        return s.build_text(msg.text)
    if isinstance(msg, Built):
        return s.build_built(msg.image_id)
    if isinstance(msg, Tagged):
        return s.build_tagged(msg.repo, msg.tag)
    raise TypeError(f"unknown build message {msg!r}")


def build(req):
    from ..engine.builder import BuildError, Built
    s = req.surface
    try:
        opts = options(req)
        messages = req.engine.image_build(req.body, opts, _remote(req))
    except errors.PydError as e:
        if not s.build_errors_in_stream:
            raise
        return Stream([s.build_error(str(e))], s.build_content_type)

    quiet_id = opts.quiet and s.build_quiet_id_only

    def chunks():
        try:
            for msg in messages:
                if msg is None:
                    yield None
                elif quiet_id:
                    # dockerd's q=1 writes the image id alone (the CLI prints it)
                    if isinstance(msg, Built):
                        yield s.build_built(msg.image_id) + s.build_text("sha256:" + msg.image_id + "\n")
                else:
                    yield _project(s, msg)
        except BuildError as e:
            yield s.build_error(str(e), e.code)
        except errors.PydError as e:
            yield s.build_error(str(e))
        finally:
            messages.close()
    return Stream(chunks(), s.build_content_type, on_error=s.build_error)
