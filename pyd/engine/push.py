"""docker push: an image's layers, config and manifest to a registry.

Per layer (by diff id), in order of cost:
1. a blob this registry is known to have for it (store.distribution, from
   earlier pulls and pushes): HEAD says so -> "Layer already exists";
2. a blob of the same registry in another repository: a cross-repository
   mount (POST ...?mount=&from=) -> "Mounted from <repo>";
3. else the layer's exact tar (LayerStore.write_tar) compressed as gzip and
   streamed up in one PATCH of a chunked body, then PUT ?digest=.
   Compression runs on a small pool of threads, in fixed-size pieces, each
   a gzip member of its own (a multi-member gzip: valid for every client),
   so the same layer always gives the same blob and pushing it again is a
   HEAD.
Then the config (the image's raw bytes: the image id stays its digest) and
a schema 2 manifest under the tag; the manifest's digest becomes a
RepoDigest and is reported as the CLI expects (`<tag>: digest: ... size:`
and the aux {Tag, Digest, Size}).
"""

import collections
import concurrent.futures
import hashlib
import json
import logging
import os
import queue
import threading
import zlib
from typing import NamedTuple

from .. import errors
from ..registry import client as reg
from ..registry.reference import HUB
from . import workers
from .pull import Progress, Status

log = logging.getLogger(__name__)

LAYER_MEDIA = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONFIG_MEDIA = "application/vnd.docker.container.image.v1+json"
MANIFEST_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"
PIECE = 4 << 20          # uncompressed bytes per gzip member
COMPRESSORS = 2          # gzip threads per layer
UPLOADERS = 3            # layers at a time
LEVEL = 6                # gzip's default, as dockerd's


class Pushed(NamedTuple):
    tag: str
    digest: str
    size: int


def _gzip_member(data):
    """One gzip member of `data`: a fixed header (mtime 0, no name) so the
    same bytes always compress to the same blob."""
    c = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = c.compress(data) + c.flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = (zlib.crc32(data) & 0xffffffff).to_bytes(4, "little") + (len(data) & 0xffffffff).to_bytes(4, "little")
    return header + body + trailer


class _Compressed:
    """The gzip blob of a layer as an iterator of byte chunks, with its
    sha256 and size once exhausted. The tar comes from write_tar on a
    thread through a pipe; pieces are compressed on COMPRESSORS threads
    and handed out in order."""

    def __init__(self, write_tar, on_bytes, cancel):
        self._write_tar, self._on, self._cancel = write_tar, on_bytes, cancel
        self.sha = hashlib.sha256()
        self.size = 0
        self.failure = []

    def __iter__(self):
        r, w = os.pipe()

        def writer():
            try:
                with os.fdopen(w, "wb") as out:
                    self._write_tar(out)
            except Exception as e:
                self.failure.append(e)

        t = threading.Thread(target=writer, name="push-tar", daemon=True)
        t.start()
        done = 0
        try:
            with os.fdopen(r, "rb") as src, \
                    concurrent.futures.ThreadPoolExecutor(COMPRESSORS, thread_name_prefix="push-gzip") as pool:
                pending = collections.deque()
                eof = False
                while True:
                    if self._cancel.is_set():
                        raise errors.PydError("push cancelled")
                    while not eof and len(pending) < COMPRESSORS * 2:
                        data = src.read(PIECE)
                        if not data:
                            eof = True
                            break
                        pending.append((len(data), pool.submit(_gzip_member, data)))
                    if not pending:
                        break
                    n, fut = pending.popleft()
                    out = fut.result()
                    self.sha.update(out)
                    self.size += len(out)
                    done += n
                    self._on(done)
                    yield out
        finally:
            t.join()
        if self.failure:
            raise self.failure[0]

    @property
    def digest(self):
        return "sha256:" + self.sha.hexdigest()


class Push:
    def __init__(self, engine, registry, ref, tags):
        """`ref`: the registry Reference (its tag unused); `tags`: [(tag, image)]."""
        self.engine = engine
        self.registry = registry
        self.ref = ref
        self.tags = tags
        self.scope = f"repository:{ref.path}:pull,push"
        self.cancel = threading.Event()
        self.events = queue.Queue()

    def run(self):
        shown = f"docker.io/{self.ref.path}" if self.ref.registry == HUB else self.ref.repo
        yield Status(f"The push refers to repository [{shown}]")
        for tag, image in self.tags:
            pushed = yield from self._one(tag, image)
            yield Status(f"{tag}: digest: {pushed.digest} size: {pushed.size}")
            yield pushed

    def _one(self, tag, image):
        diff_ids = image.diff_ids
        unique = list(dict.fromkeys(diff_ids))
        for d in reversed(unique):
            yield Status("Preparing", _short(d))
        blobs = yield from self._layers(list(reversed(unique)))
        raw = image.raw
        config_digest = "sha256:" + image.id
        if not self.registry.has_blob(self.ref.path, config_digest):
            self._upload_bytes(raw, config_digest)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA,
            "config": {"mediaType": CONFIG_MEDIA, "size": len(raw), "digest": config_digest},
            "layers": [{"mediaType": blobs[d]["mediaType"], "size": blobs[d]["size"], "digest": blobs[d]["digest"]}
                       for d in diff_ids],
        }
        body = json.dumps(manifest, indent=3).encode()
        with self.registry.request("PUT", f"/v2/{self.ref.path}/manifests/{tag}", scope=self.scope,
                                   headers={"Content-Type": MANIFEST_MEDIA, "Content-Length": str(len(body))},
                                   body=body, ok=(200, 201, 202)) as resp:
            resp.read(65536)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.engine.images.set_digest(image.id, self.ref.repo, digest)
        self.engine.events.publish("image", "push", f"{self.ref.repo}:{tag}")
        log.info("pushed %s:%s (%s)", self.ref.repo, tag, digest[:19])
        return Pushed(tag, digest, len(body))

    # -- the layers -------------------------------------------------------------------

    def _layers(self, diff_ids):
        """A generator: pushes the layers on UPLOADERS threads (as dockerd's
        max-concurrent-uploads), yields their messages as they come (and
        ticks), returns {diff id: blob descriptor}. The first failure stops
        the others; so does the client going away (the generator's close)."""
        results = yield from workers.run(diff_ids, self._layer, UPLOADERS, self.cancel, self.events, "push")
        return {d: results[k] for k, d in enumerate(diff_ids)}

    def _layer(self, diff_id):
        """One layer, on a worker thread: a known blob (HEAD, or a mount), else
        compressed and uploaded. Its messages go to self.events."""
        short = _short(diff_id)
        dist = self.engine.distribution
        here = self.ref.registry
        for known in dist.blobs(diff_id):
            if known.get("registry") != here:
                continue
            if self.registry.has_blob(self.ref.path, known["digest"]):
                self.events.put(Status("Layer already exists", short))
            elif known.get("repo") != self.ref.path and self._mount(known):
                self.events.put(Status(f"Mounted from {known['repo']}", short))
            else:
                continue
            dist.record(diff_id, known["digest"], known["size"], known["mediaType"], here, self.ref.path)
            return known
        total = self.engine.layers.size(diff_id) or None
        last = [0]

        def on_bytes(n):
            if n - last[0] >= (1 << 20) or (total and n >= total):
                last[0] = n
                self.events.put(Progress("Pushing", n, total, short))

        blob = _Compressed(lambda out: self.engine.layers.write_tar(diff_id, out), on_bytes, self.cancel)
        self._upload_stream(blob)
        desc = {"digest": blob.digest, "size": blob.size, "mediaType": LAYER_MEDIA}
        dist.record(diff_id, blob.digest, blob.size, LAYER_MEDIA, here, self.ref.path)
        self.events.put(Status("Pushed", short))
        return desc

    def _mount(self, known):
        path = f"/v2/{self.ref.path}/blobs/uploads/?mount={known['digest']}&from={known['repo']}"
        try:
            with self.registry.request("POST", path, scope=self.scope, headers={"Content-Length": "0"},
                                       body=b"", ok=(201, 202)) as resp:
                resp.read(65536)
                if resp.status == 201:
                    return True
                location = resp.headers.get("Location")
            if location:  # no mount: the session it opened instead is not needed
                try:
                    self.registry.request_url("DELETE", location, scope=self.scope, ok=(200, 202, 204, 404)).close()
                except reg.RegistryError:
                    pass
        except reg.AuthError:
            return False
        return False

    def _start_upload(self):
        with self.registry.request("POST", f"/v2/{self.ref.path}/blobs/uploads/", scope=self.scope,
                                   headers={"Content-Length": "0"}, body=b"", ok=(202,)) as resp:
            resp.read(65536)
            location = resp.headers.get("Location")
        if not location:
            raise reg.RegistryError(f"{self.registry.host}: no upload Location")
        return location

    def _finish(self, location, digest):
        sep = "&" if "?" in location else "?"
        with self.registry.request_url("PUT", f"{location}{sep}digest={digest}", scope=self.scope,
                                       headers={"Content-Length": "0"}, body=b"", ok=(201, 204)) as resp:
            resp.read(65536)

    def _upload_bytes(self, data, digest):
        location = self._start_upload()
        sep = "&" if "?" in location else "?"
        with self.registry.request_url("PUT", f"{location}{sep}digest={digest}", scope=self.scope,
                                       headers={"Content-Type": "application/octet-stream",
                                                "Content-Length": str(len(data))},
                                       body=data, ok=(201, 204)) as resp:
            resp.read(65536)

    def _upload_stream(self, blob):
        location = self._start_upload()
        with self.registry.request_url("PATCH", location, scope=self.scope,
                                       headers={"Content-Type": "application/octet-stream"},
                                       body=iter(blob), ok=(202, 204)) as resp:
            resp.read(65536)
            location = resp.headers.get("Location") or location
        self._finish(location, blob.digest)


def _short(diff_id):
    return diff_id.partition(":")[2][:12]
