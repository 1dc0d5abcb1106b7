"""docker save and docker load: the docker-archive format as dockerd 20.10
writes and reads it (moby image/tarexport), and the OCI image layout on load.

An archive holds, for every image saved:
  manifest.json        [{"Config": "<id>.json", "RepoTags": [...] | null,
                         "Layers": ["<v1 id>/layer.tar", ...], "Parent"?: "sha256:<id>"}]
  repositories         {"repo": {"tag": "<v1 id of the top layer>"}} (tags only)
  <id>.json            the image config, its bytes as stored (their sha256 is the id)
  <v1 id>/VERSION      "1.0"
  <v1 id>/json         the layer's v1 compatibility config
  <v1 id>/layer.tar    the layer's tar, byte for byte (its sha256 is the diff id);
                       a layer saved already is a symlink to ../<v1 id>/layer.tar

The v1 ids are moby's v1.CreateID chain: the sha256 of a Go-encoded V1Image
with layer_id (the chain id) and parent (the v1 id below) added. They are
only names inside the archive, but a dockerd that loads ours and saves it
again writes the same names, so they are computed exactly (Go's struct field
order, omitempty rules, HTML escaping and time format included).

Map:
  plan_save(images, names)                 -> SavePlan (NotFound before any byte)
  save(plan, layers, tmp_dir, out)         write the archive on the binary `out`
  Loader(images, layers, tmp_dir, body)    spool and read an archive (BadParameter)
  Loader.messages(quiet)                   store it; yields Progress and Text
  v1_layer_configs(config)                 [(v1 id, json bytes)] per layer
"""

import hashlib
import json
import logging
import os
import stat
import tarfile
import time
from dataclasses import dataclass, field
from typing import List, Optional

from .. import errors, timefmt
from ..fs import inroot, tarsafe
from ..store.layers import HEX_RE, hex_of
from ..refs import DEFAULT_TAG, ID_RE, familiar, split_name, validate_repo, validate_tag
from . import fsops

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
REPOSITORIES = "repositories"
OCI_LAYOUT = "oci-layout"
OCI_INDEX = "index.json"
MAX_META = 4 << 20          # manifest.json, index.json, an OCI manifest, repositories
MAX_CONFIG = 8 << 20        # one image config
MAX_CONFIGS = 64 << 20      # every config of one archive together
MAX_DEPTH = 4               # nested OCI indexes

_MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_ANN_IMAGE_NAME = "io.containerd.image.name"
_ANN_REF_NAME = "org.opencontainers.image.ref.name"


# -- Go's encoding/json, as moby's v1 ids need it --------------------------------

_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_string(s):
    out = ['"']
    for ch in s:
        esc = _GO_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        elif 0xD800 <= ord(ch) <= 0xDFFF:   # a lone surrogate: Go writes U+FFFD
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class GoStruct(dict):
    """A dict encoded in insertion order (a Go struct); plain dicts are Go
    maps, encoded with their keys sorted."""


def go_json(value):
    """`value` as Go's json.Marshal writes it (compact, HTML-escaped)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, GoStruct):
        return "{" + ",".join(_go_string(k) + ":" + go_json(v) for k, v in value.items()) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(_go_string(k) + ":" + go_json(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__}")


def go_time(text):
    """An RFC 3339 time re-written as Go's time.Time marshals it (RFC3339Nano:
    trailing zeros of the fraction dropped, a zero offset as Z). Go's zero
    time for a missing one."""
    if text is None:
        return "0001-01-01T00:00:00Z"
    if not isinstance(text, str) or len(text) < 20 or text[10] not in "Tt":
        raise ValueError(f"invalid time {text!r}")
    date, clock = text[:10], text[11:]
    secs, rest = clock[:8], clock[8:]
    frac = ""
    if rest.startswith("."):
        i = 1
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, rest = rest[1:i][:9].rstrip("0"), rest[i:]
    if rest in ("Z", "z"):
        zone = "Z"
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
        zone = "Z" if rest[1:] == "00:00" else rest
    else:
        raise ValueError(f"invalid time {text!r}")
    if len(date) != 10 or date[4] != "-" or date[7] != "-" or len(secs) != 8 or secs[2] != ":" or secs[5] != ":":
        raise ValueError(f"invalid time {text!r}")
    return f"{date}T{secs}{'.' + frac if frac else ''}{zone}"


def _fold(obj):
    """A JSON object's keys matched as Go matches struct fields: case-insensitively, the last one winning."""
    if not isinstance(obj, dict):
        return {}
    out = {}
    for k, v in obj.items():
        out[k.lower()] = v
    return out


def _str(v):
    if v is None:
        return ""
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _bool(v):
    if v is None:
        return False
    if not isinstance(v, bool):
        raise ValueError(f"expected a boolean, got {v!r}")
    return v


def _int(v):
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(f"expected an integer, got {v!r}")
    return int(v)


def _strings(v):
    if v is None:
        return None
    if not isinstance(v, list):
        raise ValueError(f"expected a list of strings, got {v!r}")
    return [_str(x) for x in v]


def _strslice(v):
    """moby's strslice.StrSlice: a list, or one string."""
    if isinstance(v, str):
        return [v]
    return _strings(v)


def _set(v):
    """map[string]struct{}"""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ValueError(f"expected an object, got {v!r}")
    return {k: GoStruct() for k in v}


def _str_map(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise ValueError(f"expected an object, got {v!r}")
    return {k: _str(x) for k, x in v.items()}


def _health(v):
    if v is None:
        return None
    f = _fold(v)
    out = GoStruct()
    for name, conv in (("Test", _strings), ("Interval", _int), ("Timeout", _int),
                       ("StartPeriod", _int), ("Retries", _int)):
        value = conv(f.get(name.lower()))
        if value:  # every field is omitempty
            out[name] = value
    return out


# api/types/container.Config of moby 20.10: (name, decoder, omitempty)
_CONFIG_FIELDS = (
    ("Hostname", _str, False), ("Domainname", _str, False), ("User", _str, False),
    ("AttachStdin", _bool, False), ("AttachStdout", _bool, False), ("AttachStderr", _bool, False),
    ("ExposedPorts", _set, True), ("Tty", _bool, False), ("OpenStdin", _bool, False),
    ("StdinOnce", _bool, False), ("Env", _strings, False), ("Cmd", _strslice, False),
    ("Healthcheck", _health, True), ("ArgsEscaped", _bool, True), ("Image", _str, False),
    ("Volumes", _set, False), ("WorkingDir", _str, False), ("Entrypoint", _strslice, False),
    ("NetworkDisabled", _bool, True), ("MacAddress", _str, True), ("OnBuild", _strings, False),
    ("Labels", _str_map, False), ("StopSignal", _str, True), ("StopTimeout", None, True),
    ("Shell", _strslice, True),
)


def _empty(value):
    return value in (None, False, 0, "") or (isinstance(value, (list, dict)) and not value)


def go_container_config(obj):
    """A container config as moby's container.Config marshals it."""
    f = _fold(obj)
    out = GoStruct()
    for name, conv, omitempty in _CONFIG_FIELDS:
        raw = f.get(name.lower())
        if name == "StopTimeout":  # *int: present when set, even to 0
            if raw is not None:
                out[name] = _int(raw)
            continue
        value = conv(raw)
        if name == "Healthcheck":
            if value is not None:
                out[name] = value
            continue
        if omitempty and _empty(value):
            continue
        out[name] = value
    return out


def v1_image(config):
    """moby's image.V1Image decoded from an image config, as a GoStruct in
    its field order (id, parent, comment, created, container,
    container_config, docker_version, author, config, architecture, variant,
    os, Size), omitempty fields left out when empty."""
    f = _fold(config)
    out = GoStruct()
    for name in ("id", "parent", "comment"):
        value = _str(f.get(name))
        if value:
            out[name] = value
    out["created"] = go_time(f.get("created"))
    container = _str(f.get("container"))
    if container:
        out["container"] = container
    out["container_config"] = go_container_config(f.get("container_config"))
    for name in ("docker_version", "author"):
        value = _str(f.get(name))
        if value:
            out[name] = value
    if isinstance(f.get("config"), dict):
        out["config"] = go_container_config(f["config"])
    elif f.get("config") is not None:
        raise ValueError("config is not an object")
    for name in ("architecture", "variant", "os"):
        value = _str(f.get(name))
        if value:
            out[name] = value
    size = _int(f.get("size"))
    if size:
        out["Size"] = size
    return out


def _with_id(v1, v1_id, parent):
    """The V1Image with ID (first field) and, when given, Parent set."""
    out = GoStruct(id=v1_id)
    if parent:
        out["parent"] = parent
    elif v1.get("parent"):
        out["parent"] = v1["parent"]
    for k, v in v1.items():
        if k not in ("id", "parent"):
            out[k] = v
    return out


def chain_ids(diff_ids):
    """Layer chain ids: the first diff id, then sha256("<chain below> <diff id>")."""
    out = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def create_v1_id(v1, chain_id, parent):
    """moby's v1.CreateID: "sha256:<hex>"."""
    body = {k: v for k, v in v1.items() if k != "id"}
    body["layer_id"] = chain_id
    if parent:
        body["parent"] = parent
    return "sha256:" + hashlib.sha256(go_json(body).encode()).hexdigest()


_LOWER_V1 = GoStruct(created="1970-01-01T00:00:00Z", container_config=go_container_config({}))


def v1_layer_configs(config):
    """[(v1 id hex, the layer's `json` bytes)] for each of the config's layers,
    bottom first, as moby's saveImage makes them: the lower layers get an
    empty V1Image created at the epoch, the top one the image's own; the
    image's os is set in every one after its id is made."""
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    top = v1_image(config)
    out, parent = [], ""
    for i, chain in enumerate(chain_ids(diff_ids)):
        v1 = top if i == len(diff_ids) - 1 else _LOWER_V1
        v1_id = create_v1_id(v1, chain, parent)
        shown = _with_id(v1, v1_id[7:], parent[7:] if parent else "")
        if top.get("os") and "os" not in shown:  # set after the id is made (dockerd 20.10.24)
            shown["os"] = top["os"]
        out.append((v1_id[7:], go_json(shown).encode()))
        parent = v1_id
    return out


# -- save --------------------------------------------------------------------------

@dataclass
class SaveItem:
    image: object                 # store.images.Image
    tags: List[str] = field(default_factory=list)   # "repo:tag", familiar


@dataclass
class SavePlan:
    items: List[SaveItem]


def _tag_string(repo, tag):
    return f"{repo}:{tag}"


def plan_save(images, names):
    """The images `names` stand for, as moby's parseNames: a repo without a tag
    is all its tags, repo:tag that one, an id (or its prefix) the image with
    no tag. Raises NotFound / BadParameter before anything is written."""
    if not names:
        raise errors.BadParameter("no image names given")
    by_id, order = {}, []

    def add(img, tag=None):
        item = by_id.get(img.id)
        if item is None:
            item = by_id[img.id] = SaveItem(img)
            order.append(item)
        if tag and tag not in item.tags:
            item.tags.append(tag)

    for name in names:
        if not name or len(name) > 1024:
            raise errors.BadParameter(f"invalid reference format: {name!r}")
        if "@" in name:
            raise errors.NotFound(f"No such image: {name}")
        bare = name[7:] if name.startswith("sha256:") else name
        if ID_RE.match(bare):
            add(images.get(bare))
            continue
        repo, tag = split_name(name)
        if tag is None:
            hits = sorted((t, i) for r, t, i in images.refs() if r == repo)
            if hits:
                for t, i in hits:
                    add(images.get(i), _tag_string(repo, t))
                continue
            add(images.resolve(name))      # an id prefix, or NotFound
            continue
        add(images.resolve(name), _tag_string(repo, tag))
    for item in order:
        if not item.image.diff_ids:
            raise errors.BadParameter("empty export - not implemented")   # dockerd's words
        if (item.image.config.get("os") or "linux") != "linux":
            raise errors.BadParameter(f"os {item.image.config.get('os')!r} is not supported")
        try:
            v1_layer_configs(item.image.config)
        except (ValueError, TypeError) as e:
            raise errors.BadParameter(f"image {item.image.id[:12]}: its config cannot be saved: {e}") from e
    return SavePlan(order)


def _layer_tar(layers, diff_id, out):
    """The layer's tar, byte for byte, on `out` (checked against the diff id by the store)."""
    layers.write_tar(diff_id, out)


class _Spool:
    """A temporary file under tmp_dir that hashes what is written to it."""

    def __init__(self, tmp_dir):
        self.path = os.path.join(tmp_dir, f"save-{os.urandom(8).hex()}.tar")
        self.f = open(self.path, "w+b")
        self.size = 0

    def write(self, data):
        self.f.write(data)
        self.size += len(data)
        return len(data)

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _mtime(created):
    t = timefmt.iso_to_time(created or "")
    return int(t) if t > 0 else 0


def _ti(name, kind, mtime, size=0, mode=0o644, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mtime, ti.size, ti.linkname = kind, mtime, size, linkname
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else mode
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _save_entries(plan, layers, tmp_dir):
    """(TarInfo, data) pairs of the archive, each layer spooled to a file while
    its entry is written (a tar header needs the size first)."""
    manifest, repos = [], {}
    saved_v1, diff_paths = set(), {}
    for item in plan.items:
        img = item.image
        mtime = _mtime(img.created)
        paths = []
        for (v1_id, v1_json), diff_id in zip(v1_layer_configs(img.config), img.diff_ids):
            paths.append(f"{v1_id}/layer.tar")
            if v1_id in saved_v1:
                continue
            saved_v1.add(v1_id)
            yield _ti(v1_id, tarfile.DIRTYPE, mtime), None
            yield _ti(f"{v1_id}/VERSION", tarfile.REGTYPE, mtime, 3), b"1.0"
            yield _ti(f"{v1_id}/json", tarfile.REGTYPE, mtime, len(v1_json)), v1_json
            if diff_id in diff_paths:
                yield _ti(f"{v1_id}/layer.tar", tarfile.SYMTYPE, mtime,
                          linkname=f"../{diff_paths[diff_id]}/layer.tar"), None
                continue
            spool = _Spool(tmp_dir)
            try:
                _layer_tar(layers, diff_id, spool)
                spool.flush()
                spool.f.seek(0)
                yield _ti(f"{v1_id}/layer.tar", tarfile.REGTYPE, mtime, spool.size), spool.f
            finally:
                spool.close()
            diff_paths[diff_id] = v1_id
        yield _ti(f"{img.id}.json", tarfile.REGTYPE, mtime, len(img.raw)), img.raw
        for t in item.tags:
            repo, tag = split_name(t)
            repos.setdefault(repo, {})[tag] = paths[-1].split("/")[0]
        entry = GoStruct(Config=f"{img.id}.json", RepoTags=list(item.tags) or None, Layers=paths)
        if img.parent and any(other.image.id == img.parent for other in plan.items if other is not item):
            entry["Parent"] = "sha256:" + img.parent
        manifest.append(entry)
    if repos:
        data = (go_json(repos) + "\n").encode()
        yield _ti(REPOSITORIES, tarfile.REGTYPE, 0, len(data)), data
    data = (go_json(manifest) + "\n").encode()
    yield _ti(MANIFEST, tarfile.REGTYPE, 0, len(data)), data


def save(plan, layers, tmp_dir, out):
    """Write the archive of `plan` on the binary file `out`."""
    tarsafe.write_tar(out, _save_entries(plan, layers, tmp_dir))


# -- load --------------------------------------------------------------------------

@dataclass
class Progress:
    id: str          # 12 hex digits of the diff id
    current: int
    total: int


@dataclass
class Text:
    text: str


@dataclass
class _Entry:
    raw: bytes
    image_id: str
    config: dict
    layer_files: List[str]          # paths inside the archive, bottom first
    tags: List[tuple]               # (repo, tag)
    parent: str = ""                # the manifest's Parent, an image id


def _bad(message):
    return errors.BadParameter(f"invalid archive: {message}")


def _clean_name(name, what):
    if not isinstance(name, str) or not name or len(name) > 4096 or "\x00" in name:
        raise _bad(f"{what}: invalid path {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or not parts or ".." in parts:
        raise _bad(f"{what}: path {name!r} leaves the archive")
    return "/".join(parts)


def _parse_tag(text):
    """A RepoTags entry: repo:tag, familiar form; BadParameter otherwise."""
    if not isinstance(text, str):
        raise _bad(f"invalid tag {text!r}")
    repo, tag = split_name(text)
    if not tag:
        raise _bad(f"invalid tag {text!r}")
    try:
        validate_repo(repo)
        validate_tag(tag)
    except errors.BadParameter as e:
        raise _bad(f"invalid tag {text!r}: {e}") from None
    return familiar(repo), tag


class Loader:
    """One load: the archive spooled into a work dir (tarsafe, names never
    trusted), its manifest read and checked, all before the reply starts;
    then messages() extracts and verifies the layers and stores the images.
    close() removes the work dir whatever happened."""

    def __init__(self, images, layers, tmp_dir, body, max_size=None):
        self.images, self.layers, self.tmp_dir = images, layers, tmp_dir
        self.max_size = max_size    # the archive's, and each layer's, decompressed bytes
        self.work = fsops.new_work_dir(tmp_dir, "load")
        self.root_fd = None
        try:
            self.root = os.path.join(self.work, "archive")
            os.mkdir(self.root, 0o700)
            try:
                tarsafe.extract(body, self.root, whiteouts=False, replace_types=False, root_attrs=False,
                                owner=(0, 0), max_bytes=max_size)
            except tarsafe.BadTar as e:
                raise _bad(str(e)) from e
            self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.entries = self._read_entries()
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.root_fd is not None:
            os.close(self.root_fd)
            self.root_fd = None
        if self.work:
            tarsafe.remove_tree(self.work)
            self.work = None

    # reading files of the archive, inside it

    def _open(self, name, what, follow=False):
        """A reading file object of archive member `name`: a regular file
        reached inside the archive (symlinks followed, inside it, only where
        dockerd writes them: layer.tar)."""
        path = _clean_name(name, what)
        try:
            node = inroot.Root(self.root_fd).lookup(path, follow=follow)
        except FileNotFoundError:
            raise _bad(f"{what} {path!r} is missing") from None
        except OSError as e:
            raise _bad(f"{what} {path!r}: {e.strerror or e}") from None
        with node:
            if not stat.S_ISREG(node.st.st_mode):
                raise _bad(f"{what} {path!r} is not a regular file")
            return os.fdopen(node.reopen(os.O_RDONLY), "rb")

    def _exists(self, name):
        try:
            with inroot.Root(self.root_fd).lookup(name):
                return True
        except OSError:
            return False

    def _read(self, name, what, limit):
        with self._open(name, what) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise _bad(f"{what} {name!r} is over {limit} bytes")
        return data

    def _json(self, name, what, limit=MAX_META):
        try:
            return json.loads(self._read(name, what, limit))
        except (ValueError, UnicodeDecodeError) as e:
            raise _bad(f"{what} {name!r} is not JSON: {e}") from None

    # the manifest, docker-archive or OCI

    def _read_entries(self):
        if self._exists(MANIFEST):
            entries = self._docker_entries()
        elif self._exists(OCI_INDEX):
            entries = self._oci_entries()
        else:
            raise _bad(f"no {MANIFEST} (a docker save archive) and no {OCI_INDEX} (an OCI image layout) in it")
        if not entries:
            raise _bad("it holds no image")
        total = sum(len(e.raw) for e in entries)
        if total > MAX_CONFIGS:
            raise _bad(f"its image configs total {total} bytes, over {MAX_CONFIGS}")
        return _parents_first(entries)

    def _config(self, name, expect_id=None):
        raw = self._read(name, "image config", MAX_CONFIG)
        image_id = hashlib.sha256(raw).hexdigest()
        if expect_id and image_id != expect_id:
            raise _bad(f"image config {name!r} has digest sha256:{image_id}, not sha256:{expect_id}")
        try:
            config = json.loads(raw)
            diff_ids = config["rootfs"]["diff_ids"]
            if not isinstance(diff_ids, list):
                raise ValueError("rootfs.diff_ids is not a list")
            for d in diff_ids:
                hex_of(d)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise _bad(f"image config {name!r}: {e}") from None
        os_ = config.get("os") or ""
        if os_ not in ("", "linux"):
            raise errors.BadParameter(f"cannot load {os_} image on linux")
        return raw, image_id, config

    def _docker_entries(self):
        manifest = self._json(MANIFEST, "manifest")
        if not isinstance(manifest, list):
            raise _bad(f"{MANIFEST} is not a list")
        entries = []
        for m in manifest:
            if not isinstance(m, dict):
                raise _bad(f"{MANIFEST}: an entry is not an object")
            layers = m.get("Layers")
            if not isinstance(m.get("Config"), str) or not isinstance(layers, list):
                raise _bad(f"{MANIFEST}: an entry has no Config or Layers")
            raw, image_id, config = self._config(m["Config"])
            diff_ids = config["rootfs"]["diff_ids"]
            if len(layers) != len(diff_ids):
                raise errors.BadParameter(f"invalid manifest, layers length mismatch: expected {len(layers)}, "
                                          f"got {len(diff_ids)}")
            files = [_clean_name(p, "layer") for p in layers]
            tags = [_parse_tag(t) for t in (m.get("RepoTags") or [])]
            parent = m.get("Parent") or ""
            parent = parent[7:] if isinstance(parent, str) and parent.startswith("sha256:") else ""
            entries.append(_Entry(raw, image_id, config, files, tags, parent if ID_RE.match(parent) else ""))
        return entries

    def _blob(self, digest, what):
        algo, _, hexpart = (digest or "").partition(":") if isinstance(digest, str) else ("", "", "")
        if algo != "sha256" or not HEX_RE.match(hexpart):
            raise _bad(f"{what}: unsupported digest {digest!r}")
        return f"blobs/sha256/{hexpart}", hexpart

    def _oci_json(self, desc, what):
        path, hexpart = self._blob(desc.get("digest"), what)
        data = self._read(path, what, MAX_META)
        if hashlib.sha256(data).hexdigest() != hexpart:
            raise _bad(f"{what} {path!r} does not match its digest")
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise _bad(f"{what} {path!r} is not JSON: {e}") from None

    def _oci_entries(self):
        index = self._json(OCI_INDEX, "index")
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise _bad(f"{OCI_INDEX} has no manifests list")
        entries = []
        for desc in index["manifests"]:
            if not isinstance(desc, dict):
                raise _bad(f"{OCI_INDEX}: a descriptor is not an object")
            ann = desc.get("annotations") if isinstance(desc.get("annotations"), dict) else {}
            manifest = self._oci_manifest(desc, 0)
            entry = self._oci_entry(manifest)
            tag = _oci_tag(ann)
            same = next((e for e in entries if e.image_id == entry.image_id), None)
            if same is None:
                entries.append(entry)
                same = entry
            if tag and tag not in same.tags:
                same.tags.append(tag)
        return entries

    def _oci_manifest(self, desc, depth):
        """The image manifest `desc` leads to; an index picks linux and this machine's architecture."""
        if depth > MAX_DEPTH:
            raise _bad("OCI indexes nested too deep")
        doc = self._oci_json(desc, "OCI manifest")
        if not isinstance(doc, dict):
            raise _bad("an OCI manifest is not an object")
        mt = doc.get("mediaType") or desc.get("mediaType") or ""
        if mt in (_MT_OCI_INDEX, _MT_DOCKER_LIST) or ("manifests" in doc and "layers" not in doc):
            subs = [d for d in (doc.get("manifests") or []) if isinstance(d, dict)]
            arch = fsops.architecture()
            pick = [d for d in subs if (d.get("platform") or {}).get("os") == "linux"
                    and (d.get("platform") or {}).get("architecture") == arch]
            if not pick:
                raise errors.BadParameter(f"the archive has no image for linux/{arch}")
            return self._oci_manifest(pick[0], depth + 1)
        if mt not in (_MT_OCI_MANIFEST, _MT_DOCKER_MANIFEST, ""):
            raise _bad(f"unsupported manifest media type {mt!r}")
        return doc

    def _oci_entry(self, manifest):
        cfg, layers = manifest.get("config"), manifest.get("layers")
        if not isinstance(cfg, dict) or not isinstance(layers, list):
            raise _bad("an OCI manifest has no config or layers")
        path, hexpart = self._blob(cfg.get("digest"), "image config")
        raw, image_id, config = self._config(path, hexpart)
        diff_ids = config["rootfs"]["diff_ids"]
        if len(layers) != len(diff_ids):
            raise errors.BadParameter(f"invalid manifest, layers length mismatch: expected {len(layers)}, "
                                      f"got {len(diff_ids)}")
        files = []
        for d in layers:
            if not isinstance(d, dict):
                raise _bad("a layer descriptor is not an object")
            mt = d.get("mediaType") or ""
            if "zstd" in mt:
                raise errors.BadParameter(f"zstd-compressed layers are not supported by pyd ({mt})")
            files.append(self._blob(d.get("digest"), "layer")[0])
        return _Entry(raw, image_id, config, files, [])

    # storing

    def messages(self, quiet=False):
        """Extract and verify every new layer (nothing is stored until all
        are good), then store the images and their tags. Yields Progress
        (unless quiet) and Text messages; returns the loaded image ids."""
        work_layers = {}   # diff id -> (dir, size)
        n = 0
        for e in self.entries:
            for i, (name, diff_id) in enumerate(zip(e.layer_files, e.config["rootfs"]["diff_ids"])):
                if diff_id in work_layers or self.layers.exists(diff_id):
                    continue
                n += 1
                dest = os.path.join(self.work, f"layer-{n}")
                split = dest + ".split"
                os.mkdir(dest, 0o755)
                with self._open(name, "layer", follow=True) as f:
                    total = os.fstat(f.fileno()).st_size
                    short_id = hex_of(diff_id)[:12]
                    if not quiet:
                        yield Progress(short_id, 0, total)
                    try:
                        with open(split, "wb") as split_file:
                            result = tarsafe.extract(f, dest, split=split_file, max_bytes=self.max_size)
                    except tarsafe.BadTar as err:
                        raise errors.BadParameter(f"invalid layer {i} ({name}): {err}") from err
                    if not quiet:
                        yield Progress(short_id, total, total)
                if result.digest != diff_id:
                    raise errors.BadParameter(f'invalid diffID for layer {i}: expected "{diff_id}", '
                                              f'got "{result.digest}"')
                work_layers[diff_id] = (dest, result.size, split)
        loaded, ids_text, tag_count = [], "", 0
        for e in self.entries:
            mine = []
            for diff_id in e.config["rootfs"]["diff_ids"]:
                if diff_id in work_layers and not self.layers.exists(diff_id):
                    dest, size, split = work_layers.pop(diff_id)
                    mine.append((dest, diff_id, size, split))
            img = self.images.create_raw(e.raw, mine)
            loaded.append(img.id)
            ids_text += f"Loaded image ID: sha256:{img.id}\n"
            tag_count = 0
            for repo, tag in e.tags:
                old = next((i for r, t, i in self.images.refs() if r == repo and t == tag), None)
                if old and old != img.id:
                    yield Text(f"The image {repo}:{tag} already exists, renaming the old one with ID "
                               f"sha256:{old} to empty string\n")
                self.images.set_tag(img.id, repo, tag, force=True)
                yield Text(f"Loaded image: {repo}:{tag}\n")
                tag_count += 1
            yield Loaded(img.id)
        if tag_count == 0:   # dockerd's rule: the ids when the last image had no tag
            yield Text(ids_text)


class Messages:
    """An iterator over `gen` whose close() also runs `on_close`: a generator
    closed before it started runs none of its finally clauses."""

    def __init__(self, gen, on_close):
        self._gen, self._on_close = gen, on_close

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)

    def close(self):
        try:
            self._gen.close()
        finally:
            self._on_close()


@dataclass
class Loaded:
    """An image stored (for the engine's event; not shown)."""
    image_id: str


def _oci_tag(ann):
    name = ann.get(_ANN_IMAGE_NAME) or ""
    if not name:
        ref = ann.get(_ANN_REF_NAME) or ""
        name = ref if ("/" in ref or ":" in ref) and not ref.startswith(":") else ""
    if not isinstance(name, str) or not name:
        return None
    try:
        return _parse_tag(name)
    except errors.BadParameter:
        return None


def _parents_first(entries):
    """Order the entries so that an image comes after its parent in the archive
    (pyd keeps the parent in the config: it must be stored first)."""
    ids = {e.image_id for e in entries}
    done, out = set(), []
    pending = list(entries)
    for _ in range(len(entries) + 1):
        if not pending:
            break
        rest = []
        for e in pending:
            p = _config_parent(e.config)
            if p and p in ids and p not in done and p != e.image_id:
                rest.append(e)
            else:
                out.append(e)
                done.add(e.image_id)
        if len(rest) == len(pending):   # a cycle: keep the given order
            out += rest
            rest = []
        pending = rest
    return out


def _config_parent(config):
    p = config.get("parent") or ""
    return p[7:] if isinstance(p, str) and p.startswith("sha256:") else ""
