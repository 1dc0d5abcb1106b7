"""docker pull: an image from a registry into the stores, all or nothing.

1. The manifest by tag or digest; a manifest list or OCI index picks the
   host's platform (or `platform=`), and the chosen manifest is fetched by
   its digest. Every digest is checked against the bytes.
2. The config blob, checked; its digest is the image id. An image already
   here is "up to date".
3. Each layer the store lacks (by diff id) is streamed from the registry
   through a digest check and the decompressor into the hostile-tar-safe
   extractor, several at a time; its diff id must be the config's.
4. Only when every layer is verified are they moved in, with the config
   exactly as its bytes came (ImageStore.create_raw), then the tag and the
   RepoDigest. A pull that fails or is cut short stores nothing; the next
   one starts over.

Pull.run() yields Status and Progress messages (per layer, with the short
blob digest as id, as dockerd, so the CLI draws its bars) and None ticks.
"""

import hashlib
import json
import logging
import os
import queue
import threading
from typing import NamedTuple, Optional

from .. import errors
from ..fs import tarsafe
from ..registry import client as reg
from . import fsops, workers

log = logging.getLogger(__name__)

WORKERS = 3                 # layers at a time, as dockerd's max-concurrent-downloads
MAX_CONFIG = 8 << 20
_CHUNK = 1 << 20

_LISTS = ("application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json")
_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+prettyjws",
            "application/vnd.docker.distribution.manifest.v1+json")


class Status(NamedTuple):
    text: str
    id: Optional[str] = None


class Progress(NamedTuple):
    status: str
    current: int
    total: Optional[int]
    id: Optional[str] = None


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(data, want, what):
    if want and digest_of(data) != want:
        raise errors.PydError(f"{what}: digest mismatch (want {want}, got {digest_of(data)})")


def platform_of(spec):
    """'linux/arm64/v8' -> ('linux', 'arm64', 'v8')."""
    parts = (spec or "").split("/")
    return (parts[0] or "linux", parts[1] if len(parts) > 1 else fsops.architecture(),
            parts[2] if len(parts) > 2 else None)


def pick(index, platform):
    """The manifest of `index` for `platform` (os, arch, variant or None)."""
    want_os, want_arch, want_variant = platform
    best = None
    for m in index.get("manifests") or []:
        p = m.get("platform") or {}
        if p.get("os") != want_os or p.get("architecture") != want_arch:
            continue
        if want_variant and p.get("variant") not in (None, want_variant):
            continue
        if best is None or (want_variant and p.get("variant") == want_variant):
            best = m
    if best is None:
        raise errors.NotFound(f"no matching manifest for {'/'.join(x for x in platform if x)} "
                              "in the manifest list entries")
    return best


class _Verified:
    """A blob stream read through its digest and size check; `done()` says
    whether all of it came and matched."""

    def __init__(self, resp, digest, size, on_bytes):
        self._resp, self._want, self._size, self._on = resp, digest, size, on_bytes
        self._h = hashlib.sha256()
        self.count = 0
        self.eof = False

    def read(self, n=-1):
        if self.eof:
            return b""
        data = self._resp.read(_CHUNK if n is None or n < 0 else min(n, _CHUNK))
        if not data:
            self.eof = True
            return b""
        self.count += len(data)
        if self._size and self.count > self._size:
            raise errors.PydError(f"blob {self._want[:19]}: more bytes than the manifest's {self._size}")
        self._h.update(data)
        self._on(self.count)
        return data

    def finish(self):
        while self.read(_CHUNK):
            pass
        got = "sha256:" + self._h.hexdigest()
        if got != self._want:
            raise errors.PydError(f"blob {self._want}: digest mismatch (got {got}): "
                                  "the registry sent other bytes than the manifest names")
        if self._size and self.count != self._size:
            raise errors.PydError(f"blob {self._want[:19]}: {self.count} bytes, the manifest says {self._size}")


class Pull:
    def __init__(self, engine, registries, ref, platform=None):
        """`registries`: the client.Registry endpoints to try in order (mirrors
        first); the first that has the manifest serves the whole pull."""
        self.engine = engine
        self.candidates = list(registries)
        self.registry = self.candidates[-1]
        self.ref = ref
        self.platform = platform_of(platform)
        self.cancel = threading.Event()
        self.events = queue.Queue()

    # -- manifest and config ---------------------------------------------------------

    def _first_manifest(self):
        """The manifest from the first endpoint that has it; a mirror that fails
        or lacks it is passed over, as dockerd does."""
        for registry in self.candidates[:-1]:
            try:
                got = registry.manifest(self.ref.path, self.ref.ref)
            except reg.RegistryError as e:
                log.info("mirror %s: %s; trying the next endpoint", registry.host, e)
                continue
            self.registry = registry
            return got
        self.registry = self.candidates[-1]
        try:
            return self.registry.manifest(self.ref.path, self.ref.ref)
        except reg.NotFoundError as e:
            raise reg.NotFoundError(f"manifest for {self.ref} not found: {_why(e)}", 404) from None

    def _manifest(self):
        path = self.ref.path
        media, raw, header = self._first_manifest()
        if self.ref.digest:
            check_digest(raw, self.ref.digest, f"{self.ref}: the manifest")
        try:
            doc = json.loads(raw)
        except ValueError as e:
            raise errors.PydError(f"{self.ref}: the manifest is not JSON: {e}") from e
        media = media or doc.get("mediaType") or ""
        if media in _SCHEMA1 or doc.get("schemaVersion") == 1:
            raise errors.PydError(f"{self.ref}: the registry has only a schema 1 manifest, which pyd does "
                                  "not pull (push it again with a current client)")
        digest = self.ref.digest or digest_of(raw)
        if media in _LISTS or "manifests" in doc:
            chosen = pick(doc, self.platform)
            media, raw, _ = self.registry.manifest(path, chosen["digest"])
            check_digest(raw, chosen["digest"], f"{self.ref}: the platform manifest")
            doc = json.loads(raw)
            digest = chosen["digest"]
        if "config" not in doc or "layers" not in doc:
            raise errors.PydError(f"{self.ref}: unsupported manifest type {media or '(none)'}")
        return doc, digest

    def _config(self, doc):
        desc = doc["config"]
        if int(desc.get("size") or 0) > MAX_CONFIG:
            raise errors.PydError(f"{self.ref}: the image config is too large")
        with self.registry.blob(self.ref.path, desc["digest"]) as resp:
            raw = resp.read(MAX_CONFIG + 1)
        check_digest(raw, desc["digest"], f"{self.ref}: the image config")
        return raw

    # -- layers -------------------------------------------------------------------------

    def _fetch_layer(self, work, i, desc, diff_id):
        """Download, verify and extract one layer into work/<i>; returns
        (dir, diff id, size)."""
        short = desc["digest"].partition(":")[2][:12]
        total = int(desc.get("size") or 0) or None
        dest = os.path.join(work, f"layer{i}")
        os.mkdir(dest, 0o755)
        last = [0]

        def on_bytes(n):
            if self.cancel.is_set():
                raise errors.PydError("pull cancelled")
            if n - last[0] >= 512 << 10 or n == total:
                last[0] = n
                self.events.put(Progress("Downloading", n, total, short))

        split = dest + ".split"
        with self.registry.blob(self.ref.path, desc["digest"]) as resp:
            src = _Verified(resp, desc["digest"], total, on_bytes)
            stream = _decompressor(desc.get("mediaType") or "", src)
            try:
                with open(split, "wb") as split_file:
                    result = tarsafe.extract(stream, dest, split=split_file,
                                             max_bytes=self.engine.config.max_layer_size)
            except tarsafe.BadTar as e:
                raise errors.PydError(f"layer {short}: {e}") from e
            src.finish()
        self.events.put(Status("Verifying Checksum", short))
        self.events.put(Status("Download complete", short))
        if result.digest != diff_id:
            raise errors.PydError(f"layer {short}: its content is {result.digest}, the image config says "
                                  f"{diff_id}")
        self.events.put(Status("Pull complete", short))
        return dest, diff_id, result.size, split

    def _layers(self, work, doc, diff_ids):
        """A generator: runs the downloads on WORKERS threads, yields their
        messages (and ticks), returns the finished layers in order."""
        todo = []
        for i, (desc, diff_id) in enumerate(zip(doc["layers"], diff_ids)):
            short = desc["digest"].partition(":")[2][:12]
            if self.engine.layers.exists(diff_id) or diff_id in diff_ids[:i]:
                yield Status("Already exists", short)
            else:
                yield Status("Pulling fs layer", short)
                todo.append((i, desc, diff_id))
        results = yield from workers.run(todo, lambda job: self._fetch_layer(work, *job), WORKERS,
                                         self.cancel, self.events, "pull")
        return [results[k] for k in range(len(todo))]

    # -- the whole pull ---------------------------------------------------------------------

    def run(self):
        """Yields messages; returns the image id."""
        ref = self.ref
        yield Status(f"Pulling from {ref.path}", ref.tag or ref.digest)
        doc, manifest_digest = self._manifest()
        raw = self._config(doc)
        image_id = digest_of(raw).partition(":")[2]
        try:
            config = json.loads(raw)
            diff_ids = list(config["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError) as e:
            raise errors.PydError(f"{ref}: invalid image config: {e}") from e
        layers = list(doc["layers"])
        if len(layers) != len(diff_ids):
            raise errors.PydError(f"{ref}: the manifest has {len(layers)} layers, its config {len(diff_ids)}")
        fresh = not self.engine.images.exists(image_id)
        if fresh:
            work = fsops.new_work_dir(self.engine.config.tmp_dir, "pull")
            try:
                new_layers = yield from self._layers(work, doc, diff_ids)
                self.engine.images.create_raw(raw, new_layers)
            finally:
                tarsafe.remove_tree(work)
        else:
            for desc in layers:
                yield Status("Already exists", desc["digest"].partition(":")[2][:12])
        for desc, diff_id in zip(layers, diff_ids):
            self.engine.distribution.record(diff_id, desc["digest"], int(desc.get("size") or 0),
                                            desc.get("mediaType") or "", ref.registry, ref.path)
        name = ref.repo
        self.engine.images.set_digest(image_id, name, manifest_digest)
        if ref.tag:
            self.engine._tag(image_id, name, ref.tag, force=True)
        yield Status(f"Digest: {manifest_digest}")
        shown = f"{name}:{ref.tag}" if ref.tag else f"{name}@{manifest_digest}"
        yield Status(f"Status: {'Downloaded newer image' if fresh else 'Image is up to date'} for {shown}")
        self.engine.events.publish("image", "pull", shown)
        log.info("pulled %s as %s", shown, image_id[:12])
        return image_id


def _why(error):
    """The registry's reason, without the URL the client put before it."""
    text = str(error)
    return text.split(": ", 1)[1] if ": " in text else text


def _decompressor(media, src):
    """The tar stream of a layer blob: tarsafe sniffs gzip itself (and plain
    tars); zstd goes through libzstd (fs.zstd)."""
    if media.endswith("+zstd") or media.endswith(".zstd"):
        from ..fs import zstd
        return zstd.Reader(src)
    return src
