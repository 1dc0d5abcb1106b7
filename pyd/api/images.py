"""Image endpoints: parse, call the engine, shape through the surface."""

from .. import errors
from ..engine import filters as flt
from ..engine.fetch import check_url
from ..http.messages import Reply, Stream
from . import registry


def _progress_stream(req, work):
    """Run `work(progress, send)` as a JSON progress stream; errors go into the stream."""
    s = req.surface

    def produce(send):
        def progress(status, current, total):
            send(s.progress_msg(status, current, total))
        for msg in work(progress, send):
            send(msg)

    return Stream(produce, "application/json", on_error=s.error_msg)


def create(req):
    """POST /images/create: import (fromSrc) or pull (fromImage)."""
    src = req.arg("fromSrc")
    image = req.arg("fromImage")
    repo, tag = req.arg("repo") or "", req.arg("tag") or None
    s = req.surface
    if src:
        if src != "-":
            check_url(src)
        if repo:
            repo, tag = req.engine.check_repo_tag(repo, tag)
        message = req.arg("message") or ""
        changes = req.query.get("changes")

        def work(progress, send):
            if src == "-":
                image_id = req.engine.image_import(req.body, _length(req), repo, tag, progress, message, changes)
            else:
                send(s.status_msg(f"Downloading from {src}"))
                image_id = req.engine.image_import_url(src, repo, tag, progress, message, changes)
            yield s.imported_msg(image_id)
        return _progress_stream(req, work)
    if image:
        return registry.pull(req, image)
    raise errors.BadParameter("missing parameter: fromSrc or fromImage")


def _length(req):
    try:
        return int(req.headers.get("Content-Length") or 0) or None
    except ValueError:
        return None


def insert(req):
    path, url = req.arg("path"), req.arg("url")
    if not path or not url:
        raise errors.BadParameter("missing parameter: path and url are both required")
    check_url(url)
    req.engine.image_resolve(req.params["name"])  # 404 before the stream starts
    s = req.surface

    def work(progress, send):
        send(s.status_msg("Inserting..."))
        image_id = req.engine.image_insert(req.params["name"], path, url, progress)
        yield s.status_msg(image_id[:12])
    return _progress_stream(req, work)


def list_json(req):
    rows = req.engine.image_list(req.arg_bool("all"), req.arg("filter") or None,
                                 flt.parse(req.arg("filters"), flt.IMAGE))
    req.arg_bool("digests")  # RepoDigests are always in the rows
    return Reply.json(req.surface.image_rows(rows))


def list_viz(req):
    req.arg_bool("all")
    return Reply.text(req.surface.image_viz(req.engine.image_all()))


def inspect(req):
    return Reply.json(req.surface.image_inspect(req.engine.image_inspect(req.params["name"])))


def history(req):
    return Reply.json(req.surface.image_history(req.engine.image_history(req.params["name"])))


def tag(req):
    # Since API 1.10 a tag moves without force; v1.3 clients still ask for it.
    force = req.arg_bool("force") or not req.surface.tag_needs_force
    req.engine.image_tag(req.params["name"], req.arg("repo"), req.arg("tag"), force)
    return Reply.empty(201)


def delete(req):
    out = req.engine.image_delete(req.params["name"], force=req.arg_bool("force"),
                                  prune=not req.arg_bool("noprune"))
    return Reply.json(req.surface.image_deleted(out))


def prune(req):
    out, reclaimed = req.engine.images_prune(flt.parse(req.arg("filters"), flt.PRUNE + ("dangling",)))
    return Reply.json(req.surface.images_pruned(out, reclaimed))
