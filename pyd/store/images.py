"""The image store: image configs by digest, and the refs (repo:tag) that name them.

On disk:
  images/sha256/<hex>.json   an image config, Docker's format (architecture,
                             os, created, config, container_config, history,
                             rootfs.diff_ids, parent, ...), byte for byte as
                             first written: the image id is the sha256 of
                             these bytes, so a config is never rewritten
  refs.json                  {"repositories": {repo: {tag: image id}}}

Layers live in the layer store (store.layers), keyed by diff id and shared.
An image is created after its layers are stored; a layer no image refers to
is removed when the last such image goes (collect). A config whose bytes do
not hash to its name, or whose layers or parent are missing, costs that one
image at load, never the daemon.
"""

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass

from .. import errors
from ..fs.tarsafe import remove_tree
from . import atomic
from .layers import hex_of
from ..refs import DEFAULT_TAG, ID_RE, familiar, split_name, validate_repo, validate_tag

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[a-f0-9]{1,64}\Z")


def short(image_id):
    return image_id[:12]


def check_id(image_id):
    """Anything used as a path component must be a full id."""
    if not ID_RE.match(image_id or ""):
        raise errors.BadParameter(f"invalid image id {image_id!r}")
    return image_id


def encode_config(config):
    """The canonical bytes of a config: what its id is the digest of."""
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Image:
    id: str          # sha256 hex of `raw`
    config: dict     # the parsed config: never mutate
    raw: bytes

    @property
    def parent(self):
        p = self.config.get("parent") or ""
        return p.partition(":")[2] if p.startswith("sha256:") else p

    @property
    def created(self):
        return self.config.get("created") or ""

    @property
    def diff_ids(self):
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def run_config(self):
        """The config a container made from this image starts from."""
        return self.config.get("config") or {}


class ImageStore:
    def __init__(self, config, layers):
        self.generation = 0  # bumped by every change: lets the API reuse a projection (api.memo)
        self.dir = config.images_dir
        self.refs_path = config.refs_path
        self.layers = layers
        self._lock = threading.RLock()
        self._images = {}  # id -> Image
        self._repos = {}   # repo -> {tag: id}
        self._digests = {}  # repo -> {manifest digest: id}: RepoDigests, from pulls and pushes

    # -- loading -----------------------------------------------------------

    def load(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        images = {}
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            if name.endswith(".tmp"):
                atomic.unlink_quiet(path)
                continue
            if not name.endswith(".json"):
                continue
            try:
                with open(path, "rb") as f:
                    raw = f.read()
                image_id = name[:-5]
                if not ID_RE.match(image_id) or hashlib.sha256(raw).hexdigest() != image_id:
                    raise ValueError("its bytes do not match its id")
                config = json.loads(raw)
                img = Image(image_id, config, raw)
                missing = [d for d in img.diff_ids if not self.layers.exists(d)]
                if missing:
                    raise ValueError(f"layer {missing[0][:19]} is missing")
            except (OSError, ValueError) as e:
                log.warning("dropping broken image %s: %s", name[:12], e)
                atomic.unlink_quiet(path)
                continue
            images[image_id] = img
        # A parent may be absent: an image loaded or pulled without the image it
        # was committed on (its config names a parent only this host knew).
        try:
            refs = atomic.read_json(self.refs_path)
        except FileNotFoundError:
            refs = {}
        except (OSError, ValueError) as e:
            log.warning("refs.json unreadable (%s); starting with no tags", e)
            refs = {}
        repos = refs.get("repositories", {})
        with self._lock:
            self._images = images
            self._digests = {repo: {d: i for d, i in by.items() if i in images}
                             for repo, by in (refs.get("digests") or {}).items()}
            self._repos = {}
            for repo, tags in repos.items():
                kept = {t: i for t, i in tags.items() if i in images}
                if kept:
                    # A 0.2.0-dev daemon could keep Docker Hub's long form
                    # ("docker.io/library/x"); the short one wins a clash.
                    short_form = self._repos.setdefault(familiar(repo), {})
                    for t, i in kept.items():
                        if repo == familiar(repo) or t not in short_form:
                            short_form[t] = i
        self.collect()

    def _save_repos(self):
        digests = {repo: by for repo, by in self._digests.items() if by}
        atomic.write_json(self.refs_path, {"repositories": self._repos, **({"digests": digests} if digests else {})})
        self.generation += 1

    def set_digest(self, image_id, repo, digest):
        """Record that `repo@digest` (a registry's manifest digest) is this image."""
        with self._lock:
            self.get(image_id)
            self._digests.setdefault(familiar(repo), {})[digest] = image_id
            self._save_repos()

    def digests_of(self, image_id):
        """["repo@sha256:..."]: RepoDigests."""
        with self._lock:
            return sorted(f"{repo}@{d}" for repo, by in self._digests.items() for d, i in by.items()
                          if i == image_id)

    # -- lookups -----------------------------------------------------------

    def count(self):
        with self._lock:
            return len(self._images)

    def all(self):
        with self._lock:
            return list(self._images.values())

    def get(self, image_id):
        with self._lock:
            img = self._images.get(image_id)
        if img is None:
            raise errors.NotFound(f"No such image: {image_id}")
        return img

    def exists(self, image_id):
        with self._lock:
            return image_id in self._images

    def resolve(self, name):
        """Unique id prefix (or sha256:<id>), then repo[:tag] (default tag latest)."""
        if not name:
            raise errors.NotFound("No such image: (empty name)")
        ref = name[7:] if name.startswith("sha256:") else name
        with self._lock:
            if "@" in name:
                repo, _, digest = name.partition("@")
                image_id = self._digests.get(familiar(repo), {}).get(digest)
                if image_id in self._images:
                    return self._images[image_id]
                raise errors.NotFound(f"No such image: {name}")
            # As moby: a full id, then a name, then an id prefix; so a repository
            # named like a prefix ("abc123") is never shadowed by an image id.
            if ref in self._images:
                return self._images[ref]
            repo, tag = split_name(name)
            image_id = self._repos.get(repo, {}).get(tag or DEFAULT_TAG)
            if image_id:
                return self._images[image_id]
            ambiguous = False
            if _HEX.match(ref):
                hits = [i for i in self._images if i.startswith(ref)]
                if len(hits) == 1:
                    return self._images[hits[0]]
                ambiguous = len(hits) > 1
        if ambiguous:
            raise errors.BadParameter(f"ambiguous image id prefix {name!r}: give more characters")
        raise errors.NotFound(f"No such image: {name}")

    def chain(self, image_id):
        """The image and its ancestors, child first."""
        out = []
        with self._lock:
            if image_id not in self._images:
                raise errors.NotFound(f"No such image: {image_id}")
            while image_id in self._images:     # ends at the root, or at a parent not here
                img = self._images[image_id]
                out.append(img)
                image_id = img.parent
        return out

    def children(self, image_id):
        with self._lock:
            return [i for i, img in self._images.items() if img.parent == image_id]

    def tags_of(self, image_id):
        with self._lock:
            return sorted((repo, tag) for repo, tags in self._repos.items()
                          for tag, i in tags.items() if i == image_id)

    def refs(self):
        """[(repo, tag, image id)] for every tag."""
        with self._lock:
            return [(repo, tag, i) for repo, tags in self._repos.items() for tag, i in tags.items()]

    def layer_dirs(self, image):
        """The image's layer directories, top first, as overlay lower dirs. A
        diff id that occurs twice (two empty commits) is kept at its top-most
        place only: the lower copy is hidden by the upper one anyway."""
        seen, out = set(), []
        for d in reversed(image.diff_ids):
            if d not in seen:
                seen.add(d)
                out.append(self.layers.path(d))
        return out

    def own_size(self, image):
        """Bytes of the layers this image adds to its parent's."""
        parent = self.get(image.parent).diff_ids if image.parent and self.exists(image.parent) else []
        return sum(self.layers.size(d) for d in image.diff_ids[len(parent):])

    def virtual_size(self, image):
        return sum(self.layers.size(d) for d in set(image.diff_ids))

    # -- creating ----------------------------------------------------------

    def create_with_layer(self, layer_dir, diff_id, size, make_config, split=None):
        """Store a finished layer (with its tar split, a path, if any) and the
        image that adds it, as one step that collect() cannot come between.
        `make_config(diff_id)` gives the config."""
        with self._lock:
            self.layers.add(layer_dir, diff_id, size, split)
            return self.create(make_config(diff_id))

    def create(self, config):
        """Store a new image config (its layers stored already). Returns the Image."""
        return self._store(encode_config(config))

    def create_raw(self, raw, new_layers=()):
        """Store a config exactly as its bytes came (a pull or a load: the
        image id is then the registry's config digest), after moving in the
        finished `new_layers` [(dir, diff_id, size[, split path])], all under the store lock
        so that collect() cannot take a layer in between. Returns the Image."""
        try:
            config = json.loads(raw)
            diff_ids = config["rootfs"]["diff_ids"] if isinstance(config, dict) else None
            if not isinstance(diff_ids, list):
                raise ValueError("no rootfs.diff_ids list")
            for d in diff_ids:
                hex_of(d)
        except (ValueError, KeyError, TypeError) as e:
            raise errors.BadParameter(f"invalid image config: {e}") from e
        with self._lock:
            for layer in new_layers:
                if len(layer) not in (3, 4):
                    raise ValueError(f"new_layers: (dir, diff_id, size[, split]), not {layer!r}")
                self.layers.add(*layer)
            return self._store(bytes(raw))

    def _store(self, raw):
        image_id = hashlib.sha256(raw).hexdigest()
        img = Image(image_id, json.loads(raw), raw)
        for d in img.diff_ids:
            if not self.layers.exists(d):
                raise errors.NotFound(f"No such layer: {d}")
        with self._lock:
            if image_id in self._images:  # the same config twice: one image
                return self._images[image_id]
            atomic.write_bytes(os.path.join(self.dir, check_id(image_id) + ".json"), raw)
            self._images[image_id] = img
            self.generation += 1
        log.info("created image %s (parent %s)", short(image_id), short(img.parent) or "-")
        return img

    # -- tags --------------------------------------------------------------

    def set_tag(self, image_id, repo, tag=None, force=False):
        repo = familiar(repo)
        tag = tag or DEFAULT_TAG
        validate_repo(repo)
        validate_tag(tag)
        with self._lock:
            self.get(image_id)
            old = self._repos.get(repo, {}).get(tag)
            if old and old != image_id and not force:
                raise errors.Conflict(f"tag {repo}:{tag} is already set to image {short(old)}; use force=1 to move it")
            self._repos.setdefault(repo, {})[tag] = image_id
            self._save_repos()

    def _untag(self, repo, tag):
        tags = self._repos.get(repo, {})
        tags.pop(tag, None)
        if not tags:
            self._repos.pop(repo, None)

    # -- deleting ----------------------------------------------------------

    def delete(self, name, in_use=lambda image_id: None, force=False, prune=True):
        """Untag and delete per Docker's rules. `in_use(id)` returns (container
        id, running) of a container using the image, or None. With `force`, an
        image tagged in several repositories loses all its tags, and one in use
        by a container is only untagged (the container still needs its layers).
        Without `prune`, untagged parents are kept. Returns what happened, in
        order: [("untagged", id, "repo:tag") | ("deleted", id, "")]."""
        out = []
        with self._lock:
            image_id = self.resolve(name).id
            repo, tag = split_name(name)
            tag = tag or DEFAULT_TAG
            by_tag = self._repos.get(repo, {}).get(tag) == image_id and not image_id.startswith(name)
            if by_tag:
                tags_left = [t for t in self.tags_of(image_id) if t != (repo, tag)]
                if not tags_left and not force:
                    self._check_deletable(image_id, in_use, name)
                self._untag(repo, tag)
                self._save_repos()
                out.append(("untagged", image_id, f"{repo}:{tag}"))
                if tags_left:
                    return out
            else:
                tags = self.tags_of(image_id)
                if len({r for r, _ in tags}) > 1 and not force:
                    raise errors.Conflict(
                        f"conflict: unable to delete {short(image_id)} (must be forced) - image is referenced "
                        f"in multiple repositories ({', '.join(sorted({r for r, _ in tags}))})")
                user = in_use(image_id)
                if user and user[1]:
                    raise errors.Conflict(f"conflict: unable to delete {short(image_id)} (cannot be forced) - "
                                          f"image is being used by running container {short(user[0])}")
                if not force:
                    self._check_deletable(image_id, in_use, name)
                if self.children(image_id):
                    raise errors.Conflict(f"conflict: unable to delete {short(image_id)} (cannot be forced) - "
                                          "image has dependent child images")
                for r, t in tags:
                    self._untag(r, t)
                    out.append(("untagged", image_id, f"{r}:{t}"))
                if tags:
                    self._save_repos()
            if self.children(image_id) or in_use(image_id):
                return out
            # Delete it, then prune untagged parents left without children.
            while image_id:
                parent = self._images[image_id].parent
                self._remove(image_id)
                out.append(("deleted", image_id, ""))
                if not prune or parent not in self._images or self.tags_of(parent) or self.children(parent) \
                        or in_use(parent):
                    break
                image_id = parent
        self.collect()
        return out

    def _check_deletable(self, image_id, in_use, name):
        user = in_use(image_id)
        if user:
            state = "running" if user[1] else "stopped"
            raise errors.Conflict(f"conflict: unable to delete {name} ({'cannot' if user[1] else 'must'} be forced)"
                                  f" - image is being used by {state} container {short(user[0])}")

    def _remove(self, image_id):
        atomic.unlink_quiet(os.path.join(self.dir, check_id(image_id) + ".json"))
        self._images.pop(image_id, None)
        if any(image_id in by.values() for by in self._digests.values()):
            for by in self._digests.values():
                for d in [d for d, i in by.items() if i == image_id]:
                    del by[d]
            self._save_repos()
        self.generation += 1
        log.info("deleted image %s", short(image_id))

    def collect(self):
        """Remove the layers that no image refers to any more."""
        with self._lock:
            used = {d for img in self._images.values() for d in img.diff_ids}
            trash = [self.layers.detach(d) for d in self.layers.ids() - used]
        for path in trash:
            remove_tree(path)
