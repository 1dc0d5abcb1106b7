"""The image store: image records, their layers, and the tags that name them.

On disk, under the data root:
  images/<id>.json     the image record (Docker's v1 image JSON, plus Size)
  layers/<id>/         the layer, a directory in overlayfs format (whiteouts
                       are 0/0 char devices) usable directly as a lower dir
  repositories.json    {"Repositories": {repo: {tag: id}}}
  tmp/                 work in progress; wiped at start

An image is registered in two steps: its finished layer is renamed into
layers/, then its record is written atomically. A layer without a record is
debris from a crash and is removed at start; so is anything in tmp/.
IDs are content addressed: the sha256 of the record without its id.
"""

import hashlib
import json
import logging
import os
import re
import threading
import uuid

from . import atomic, errors
from .tarsafe import remove_tree
from .timefmt import iso_to_time, now_iso

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[a-f0-9]{64}$")
_HEX = re.compile(r"^[a-f0-9]{1,64}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(r"^" + _COMPONENT + r"(?:/" + _COMPONENT + r")*$")
_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DEFAULT_TAG = "latest"


def short(image_id):
    return image_id[:12]


def iso_to_unix(text):
    return int(iso_to_time(text))


def split_name(name):
    """'host:5000/user/repo:tag' -> ('host:5000/user/repo', 'tag'); tag None if absent."""
    repo, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag
    return name, None


def _valid_repo(repo):
    first, sep, rest = repo.partition("/")
    # The first component is a registry host only if it looks like one (Docker's rule).
    if sep and ("." in first or ":" in first or first == "localhost"):
        return bool(_HOST_RE.match(first)) and bool(_PATH_RE.match(rest))
    return bool(_PATH_RE.match(repo))


def validate_repo(repo):
    if not repo or len(repo) > 255 or not _valid_repo(repo):
        raise errors.BadParameter(
            f"invalid repository name {repo!r}: use lowercase letters, digits and . _ -, "
            "optionally prefixed by a registry host[:port]/")
    if ID_RE.match(repo):
        raise errors.BadParameter(f"invalid repository name {repo!r}: it cannot be a 64-character hex id")


def validate_tag(tag):
    if not _TAG_RE.match(tag):
        raise errors.BadParameter(f"invalid tag {tag!r}: use up to 128 of A-Z a-z 0-9 _ . -")


def parse_repo_tag(repo, tag=None):
    """Validated (repo, tag) from a repo that may carry ':tag'; tag None if none given."""
    if tag is None:
        repo, tag = split_name(repo)
    validate_repo(repo)
    if tag:
        validate_tag(tag)
    return repo, tag


def check_id(image_id):
    """Anything used as a path component must be a full id."""
    if not ID_RE.match(image_id or ""):
        raise errors.BadParameter(f"invalid image id {image_id!r}")
    return image_id


class ImageStore:
    def __init__(self, config):
        self.config = config
        self._lock = threading.RLock()
        self._images = {}  # id -> record
        self._repos = {}   # repo -> {tag: id}

    # -- loading and recovery ----------------------------------------------

    def load(self):
        c = self.config
        for d in (c.images_dir, c.layers_dir, c.tmp_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        with self._lock:
            self._images.clear()
            for name in os.listdir(c.images_dir):
                if not name.endswith(".json"):
                    if name.endswith(".tmp"):
                        _unlink(os.path.join(c.images_dir, name))
                    continue
                image_id = name[:-5]
                path = os.path.join(c.images_dir, name)
                try:
                    rec = atomic.read_json(path)
                    if not ID_RE.match(image_id) or rec.get("id") != image_id:
                        raise ValueError("id mismatch")
                    if not os.path.isdir(self.layer_path(image_id)):
                        raise ValueError("layer missing")
                except (OSError, ValueError) as e:
                    log.warning("dropping broken image record %s: %s", name, e)
                    _unlink(path)
                    continue
                self._images[image_id] = rec
            # Parents must exist; drop orphans (cannot happen short of disk damage).
            for image_id, rec in list(self._images.items()):
                if rec.get("parent") and rec["parent"] not in self._images:
                    log.warning("image %s has a missing parent; dropping it", short(image_id))
                    del self._images[image_id]
            for name in os.listdir(c.layers_dir):
                if name not in self._images:
                    log.info("removing unregistered layer %s", name[:20])
                    remove_tree(os.path.join(c.layers_dir, name))
            self._repos = {}
            try:
                repos = atomic.read_json(c.repositories_path).get("Repositories", {})
            except FileNotFoundError:
                repos = {}
            except (OSError, ValueError) as e:
                log.warning("repositories.json unreadable (%s); starting with no tags", e)
                repos = {}
            for repo, tags in repos.items():
                kept = {t: i for t, i in tags.items() if i in self._images}
                if kept:
                    self._repos[repo] = kept

    def _save_repos(self):
        atomic.write_json(self.config.repositories_path, {"Repositories": self._repos})

    # -- paths and lookups -------------------------------------------------

    def layer_path(self, image_id):
        return os.path.join(self.config.layers_dir, check_id(image_id))

    def record_path(self, image_id):
        return os.path.join(self.config.images_dir, check_id(image_id) + ".json")

    def count(self):
        with self._lock:
            return len(self._images)

    def get(self, image_id):
        with self._lock:
            rec = self._images.get(image_id)
        if rec is None:
            raise errors.NotFound(f"No such image: {image_id}")
        return rec

    def exists(self, image_id):
        with self._lock:
            return image_id in self._images

    def resolve(self, name):
        """Unique id prefix, then repo[:tag] (default tag latest)."""
        if not name:
            raise errors.NotFound("No such image: (empty name)")
        with self._lock:
            ambiguous = False
            if _HEX.match(name):
                hits = [i for i in self._images if i.startswith(name)]
                if len(hits) == 1:
                    return self._images[hits[0]]
                ambiguous = len(hits) > 1
            repo, tag = split_name(name)
            image_id = self._repos.get(repo, {}).get(tag or DEFAULT_TAG)
            if image_id:
                return self._images[image_id]
        if ambiguous:
            raise errors.BadParameter(f"ambiguous image id prefix {name!r}: give more characters")
        raise errors.NotFound(f"No such image: {name}")

    def chain(self, image_id):
        """The image and its ancestors, child first."""
        out = []
        with self._lock:
            while image_id:
                rec = self._images.get(image_id)
                if rec is None:
                    raise errors.NotFound(f"No such image: {image_id}")
                out.append(rec)
                image_id = rec.get("parent") or ""
        return out

    def layer_dirs(self, image_id):
        return [self.layer_path(r["id"]) for r in self.chain(image_id)]

    def children(self, image_id):
        with self._lock:
            return [i for i, r in self._images.items() if r.get("parent") == image_id]

    def tags_of(self, image_id):
        with self._lock:
            return sorted((repo, tag) for repo, tags in self._repos.items()
                          for tag, i in tags.items() if i == image_id)

    def virtual_size(self, image_id):
        return sum(r.get("Size", 0) for r in self.chain(image_id))

    # -- creating images ---------------------------------------------------

    def new_work_dir(self, purpose):
        path = os.path.join(self.config.tmp_dir, f"{purpose}-{uuid.uuid4().hex}")
        os.makedirs(path, mode=0o700)
        return path

    def register(self, layer_dir, size, digest, parent="", config=None, container="",
                 container_config=None, comment="", author=""):
        """Move a finished layer into the store and write its record. Returns the record."""
        if parent:
            self.get(parent)
        rec = {
            "parent": parent or "",
            "created": now_iso(),
            "container": container or "",
            "container_config": container_config or empty_config(),
            "config": config or empty_config(),
            "docker_version": "pyd-" + __import__("pyd").__version__,
            "architecture": _arch(),
            "os": "linux",
            "comment": comment or "",
            "author": author or "",
            "layer_digest": digest,
            "Size": size,
        }
        body = json.dumps(rec, sort_keys=True).encode()
        rec["id"] = hashlib.sha256(body).hexdigest()
        with self._lock:
            if rec["id"] in self._images:  # same content, same second: reuse
                remove_tree(layer_dir)
                return self._images[rec["id"]]
            os.rename(layer_dir, self.layer_path(rec["id"]))
            atomic.write_json(self.record_path(rec["id"]), rec)
            self._images[rec["id"]] = rec
        log.info("registered image %s (parent %s)", short(rec["id"]), short(parent) or "-")
        return rec

    # -- tags --------------------------------------------------------------

    def set_tag(self, image_id, repo, tag=None, force=False):
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

    # -- listing -----------------------------------------------------------

    def list_rows(self, all_=False, filter_=None):
        """One row per repo:tag, plus untagged images (leaves only unless all_)."""
        with self._lock:
            tagged = set()
            rows = []
            for repo, tags in self._repos.items():
                for tag, image_id in tags.items():
                    tagged.add(image_id)
                    if filter_ and repo != filter_:
                        continue
                    rows.append((repo, tag, self._images[image_id]))
            if not filter_:
                parents = {r.get("parent") for r in self._images.values()}
                for image_id, rec in self._images.items():
                    if image_id in tagged:
                        continue
                    if all_ or image_id not in parents:
                        rows.append(("<none>", "<none>", rec))
        out = [{"Repository": repo, "Tag": tag, "Id": short(rec["id"]),
                "Created": iso_to_unix(rec["created"]), "Size": rec.get("Size", 0),
                "VirtualSize": self.virtual_size(rec["id"])} for repo, tag, rec in rows]
        out.sort(key=lambda r: (-r["Created"], r["Repository"], r["Tag"]))
        return out

    def viz(self):
        lines = ["digraph docker {"]
        with self._lock:
            images = sorted(self._images.values(), key=lambda r: r["id"])
            for rec in images:
                if rec.get("parent"):
                    lines.append(f' "{short(rec["parent"])}" -> "{short(rec["id"])}"')
                else:
                    lines.append(f' base -> "{short(rec["id"])}" [style=invis]')
            for rec in images:
                tags = self.tags_of(rec["id"])
                if tags:
                    label = "\\n".join([short(rec["id"])] + [f"{r}:{t}" for r, t in tags])
                    lines.append(f' "{short(rec["id"])}" [label="{label}",shape=box,'
                                 f'fillcolor="paleturquoise",style="filled,rounded"];')
        lines += [" base [style=invisible]", "}"]
        return "\n".join(lines) + "\n"

    def history(self, name):
        return [{"Id": short(r["id"]), "Created": iso_to_unix(r["created"]),
                 "CreatedBy": " ".join((r.get("container_config") or {}).get("Cmd") or [])}
                for r in self.chain(self.resolve(name)["id"])]

    # -- deleting ----------------------------------------------------------

    def delete(self, name, in_use=lambda image_id: None):
        """Untag and delete per Docker's rules. `in_use(id)` returns the id of a
        container using the image, or None. Returns [{"Untagged"|"Deleted": id12}]."""
        out = []
        with self._lock:
            rec = self.resolve(name)
            image_id = rec["id"]
            repo, tag = split_name(name)
            by_tag = self._repos.get(repo, {}).get(tag or DEFAULT_TAG) == image_id and not image_id.startswith(name)
            if by_tag:
                tags_left = [t for t in self.tags_of(image_id) if t != (repo, tag or DEFAULT_TAG)]
                if not tags_left:
                    self._check_deletable(image_id, in_use)
                self._untag(repo, tag or DEFAULT_TAG)
                self._save_repos()
                out.append({"Untagged": short(image_id)})
                if tags_left:
                    return out
            else:
                tags = self.tags_of(image_id)
                if len({r for r, _ in tags}) > 1:
                    raise errors.Conflict(
                        f"image {short(image_id)} is tagged in several repositories "
                        f"({', '.join(sorted({r for r, _ in tags}))}); delete it by name")
                self._check_deletable(image_id, in_use)
                if self.children(image_id):
                    raise errors.Conflict(f"image {short(image_id)} has children images; delete them first")
                for r, t in tags:
                    self._untag(r, t)
                    out.append({"Untagged": short(image_id)})
                if tags:
                    self._save_repos()
            if self.children(image_id):
                if by_tag:
                    return out
                raise errors.Conflict(f"image {short(image_id)} has children images; delete them first")
            # Delete it, then prune untagged parents left without children.
            while image_id:
                parent = self._images[image_id].get("parent") or ""
                self._remove(image_id)
                out.append({"Deleted": short(image_id)})
                if not parent or self.tags_of(parent) or self.children(parent) or in_use(parent):
                    break
                image_id = parent
        return out

    def _check_deletable(self, image_id, in_use):
        user = in_use(image_id)
        if user:
            raise errors.Conflict(f"image {short(image_id)} is in use by container {user[:12]}; remove the container first")

    def _remove(self, image_id):
        _unlink(self.record_path(image_id))
        self._images.pop(image_id, None)
        # The record is gone first: a crash here leaves a layer the next start removes.
        trash = os.path.join(self.config.tmp_dir, f"deleted-{image_id}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.layer_path(image_id), trash)
        except OSError:
            trash = self.layer_path(image_id)
        remove_tree(trash)
        log.info("deleted image %s", short(image_id))


def empty_config():
    return {"Hostname": "", "User": "", "Memory": 0, "MemorySwap": 0, "AttachStdin": False,
            "AttachStdout": False, "AttachStderr": False, "PortSpecs": None, "Tty": False,
            "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None, "Dns": None,
            "Image": "", "Volumes": None, "VolumesFrom": "", "Entrypoint": None, "WorkingDir": ""}


def _arch():
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def clean_tmp(config):
    for name in os.listdir(config.tmp_dir):
        remove_tree(os.path.join(config.tmp_dir, name))
