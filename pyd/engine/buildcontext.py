"""The build context of POST /build: its body, its files, and what ADD and
COPY may take from it.

Map:
  open_context(fileobj, max_bytes)          -> Context: the decompressed tar, bounded
  extract_context(stream, dest, ignore, max_bytes) -> Extracted(files, bytes, ignored)
  resolve_dockerfile(context_dir, name)     -> host path of the Dockerfile, inside the context
  context_sources(context_dir, patterns)    -> [Source(rel, path)] for ADD/COPY
  source_hash(sources)                      -> "sha256:..." of names, modes and contents
  walk(root)                                -> (rel, path, lstat), iterative, links not followed
  load(body, dest, dockerfile, max_bytes)   -> the Dockerfile's text, .dockerignore applied

The body is hostile: it is extracted by fs.tarsafe (no member escapes,
no link is followed), and every later lookup goes through fs.inroot, so a
symlink in the context resolves inside it, as Docker's
FollowSymlinkInScope does. A symlink whose target points out of the
context is refused outright, with a message, rather than quietly
resolved to a same-named file inside it.
"""

import errno
import hashlib
import os
import posixpath
import stat
from typing import NamedTuple

from pyd import errors
from pyd.engine import dockerignore
from pyd.fs import inroot, tarsafe

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))
_CHUNK = 1 << 20
MAX_DOCKERFILE = 1 << 20


class Context:
    """A reader of the decompressed context tar. `compression` is what the
    magic bytes said ('identity', 'gzip', 'bzip2', 'xz'); reading more
    than `max_bytes` of tar raises TooLarge, corrupt compressed data
    BadParameter."""

    def __init__(self, fileobj, max_bytes):
        self._raw = fileobj
        self._head = b""
        while len(self._head) < 6:      # a pipe may hand out fewer bytes than asked
            data = fileobj.read(6 - len(self._head))
            if not data:
                break
            self._head += data
        self.compression = next((k for m, k in _MAGIC if self._head.startswith(m)), "identity")
        self.max_bytes = max_bytes
        self.count = 0
        if self.compression == "identity":
            self._reader = self._read_raw
        else:
            self._reader = tarsafe.open_decompressed(_Prefixed(self._head, fileobj)).read

    def _read_raw(self, n):
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._raw.read(n)

    def read(self, n=-1):
        if n is None or n < 0:
            n = _CHUNK
        try:
            data = self._reader(n)
        except tarsafe.BadTar as e:
            raise errors.BadParameter(f"build context: {e}") from e
        self.count += len(data)
        if self.count > self.max_bytes:
            raise errors.TooLarge(f"build context is larger than {self.max_bytes} bytes")
        return data


class _Prefixed:
    """The bytes already read for sniffing, then the rest of the body."""

    def __init__(self, head, src):
        self._head, self._src = head, src

    def read(self, n=-1):
        if not self._head:
            return self._src.read(n)
        if n is None or n < 0:
            n = len(self._head)
        data, self._head = self._head[:n], self._head[n:]
        return data


def open_context(fileobj, max_bytes):
    """The decompressed context tar of the body `fileobj` (only read(n) is
    used: a socket body works). Decompression is in-process and streamed."""
    return Context(fileobj, max_bytes)


class Extracted(NamedTuple):
    files: int      # entries left in the context (files, links, directories)
    bytes: int      # bytes of the regular files left in it
    ignored: int    # entries removed by .dockerignore


def extract_context(stream, dest_dir, ignore=None, max_bytes=None):
    """Apply the context tar `stream` (a Context, or a raw body: it is then
    opened with open_context and `max_bytes`) to the empty directory
    `dest_dir`, then remove what `ignore` (a dockerignore.Matcher) leaves
    out. Ignored members are still checked by tarsafe: a hostile member
    fails the build even where it would have been ignored, and so does a
    device node.

    BadParameter for a broken or hostile tar, TooLarge over the bound; on
    error dest_dir may hold a partial tree (the caller removes it)."""
    if not isinstance(stream, Context):
        if max_bytes is None:
            raise ValueError("max_bytes is required for a raw body")
        stream = open_context(stream, max_bytes)
    try:
        # The context is data, never a rootfs: what it holds belongs to the
        # daemon (ADD and COPY set ownership themselves, to 0:0 or --chown).
        # The Context has decompressed already: tarsafe must not sniff again
        # (a first member named "BZh..." would be taken for bzip2).
        tarsafe.extract(stream, dest_dir, whiteouts=False, root_attrs=False,
                        owner=(os.getuid(), os.getgid()), decompress=False)
    except tarsafe.BadTar as e:
        raise errors.BadParameter(f"build context: {e}") from e
    try:
        _refuse_devices(dest_dir)
        ignored = apply_ignore(dest_dir, ignore) if ignore is not None and ignore.patterns else 0
        files = size = 0
        for _, _, st in walk(dest_dir):
            files += 1
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        raise errors.BadParameter(f"build context: a path is too long: {e.filename}") from e
    return Extracted(files, size, ignored)


def walk(root, skip=None):
    """(rel, host path, lstat) of everything below `root`, links not
    followed, each directory's entries in name order before any of them is
    entered. Iterative: a hostile tar may nest 2000 directories deep, past
    Python's recursion limit (os.walk recurses in 3.11). A directory whose
    rel is put in the set `skip` when it is yielded is not entered."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            st = e.stat(follow_symlinks=False)
            yield rel, e.path, st
            if stat.S_ISDIR(st.st_mode) and not (skip and rel in skip):
                subdirs.append(rel)
        stack.extend(reversed(subdirs))


def _refuse_devices(root):
    """A device node is fine in an image layer but not in a build context:
    ADD, COPY and the content hash read what the context holds, and
    reading a node such as 8:0 would read the host's disk."""
    for rel, _, st in walk(root):
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            raise errors.BadParameter(f"build context: {rel!r}: device files are not allowed")


def apply_ignore(root, ignore):
    """Remove the excluded entries, walking as the docker client's tar
    walk does: an excluded directory goes whole when can_skip_dir says so,
    else it stays for what an exception re-includes below it."""
    removed = 0
    gone = set()
    for rel, path, st in walk(root, gone):
        if stat.S_ISDIR(st.st_mode):
            if ignore.can_skip_dir(rel):
                tarsafe.remove_tree(path)
                gone.add(rel)
                removed += 1
        elif ignore.excluded(rel):
            os.unlink(path)
            removed += 1
    return removed


# --------------------------------------------------------------------------
# Paths inside the context
# --------------------------------------------------------------------------

def _climbs(path):
    """Whether `path`, taken relative to the context root, goes above it."""
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _check_links(context_dir, rel, follow_last=True):
    """Refuse a path that passes through a symlink pointing out of the
    context (an absolute target, or '..' above the root). Walks lexically
    on names the daemon itself extracted; the lookup that follows is done
    by inroot, which never leaves the root whatever this says."""
    todo = [p for p in rel.split("/") if p not in ("", ".")]
    here = []
    hops = 0
    while todo:
        name = todo.pop(0)
        if name == "..":
            if here:
                here.pop()
            continue
        path = os.path.join(context_dir, *here, name)
        try:
            st = os.lstat(path)
        except OSError:
            return                      # missing: the lookup reports it
        if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
            target = os.readlink(path)
            hops += 1
            if hops > inroot.MAX_HOPS:
                raise errors.BadParameter(f"too many levels of symbolic links in {rel}")
            if target.startswith("/") or _climbs("/".join(here + [target])):
                shown = "/".join(here + [name])
                raise errors.BadParameter(
                    f"forbidden path outside the build context: {rel} "
                    f"({shown} is a symlink to {target})")
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        here.append(name)


def _lookup(context_dir, rel):
    """(host path, lstat) of context path `rel`, links followed inside."""
    _check_links(context_dir, rel)
    fd = os.open(context_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        root = inroot.Root(fd)
        try:
            real = root.real_path(rel)
            with root.lookup(real, follow=False) as node:
                st = node.st
        except FileNotFoundError:
            raise errors.NotFound(f"{rel}: file not found in build context or excluded by .dockerignore")
        except NotADirectoryError as e:
            raise errors.NotFound(f"{rel}: {e.strerror}")
    finally:
        os.close(fd)
    return os.path.join(context_dir, real.lstrip("/")) if real != "/" else context_dir, st


def resolve_dockerfile(context_dir, name="Dockerfile"):
    """The host path of the Dockerfile `name` (the `dockerfile=` parameter,
    relative to the context). It must be a regular file inside the
    context: BadParameter for '../x' or a symlink out, NotFound if absent."""
    name = name or "Dockerfile"
    if _climbs(name.lstrip("/")):
        raise errors.BadParameter(f"the Dockerfile ({name}) must be within the build context")
    rel = posixpath.normpath(name).lstrip("/") or "."
    try:
        path, st = _lookup(context_dir, rel)
    except errors.BadParameter as e:
        raise errors.BadParameter(f"the Dockerfile ({name}) must be within the build context: {e}") from e
    except errors.NotFound:
        raise errors.NotFound(f"Cannot locate specified Dockerfile: {name}")
    if not stat.S_ISREG(st.st_mode):
        raise errors.BadParameter(f"the Dockerfile ({name}) is not a regular file")
    return path


class Source(NamedTuple):
    rel: str        # the context path the source was named by (or matched as)
    path: str       # host path it resolves to, inside the context


_WILDCARDS = set("*?[")


def _has_wildcards(pattern):
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern[i] in _WILDCARDS:
            return True
        i += 1
    return False


def context_sources(context_dir, patterns):
    """The ADD/COPY sources `patterns` (each a context path or a Go glob)
    as Sources, in the order named, globs' matches sorted. As moby's
    calcCopyInfo: a leading '/' and './' are dropped, so an absolute path
    names a file of the context; '..' above the root and symlinks out are
    BadParameter; a path that is absent, or a glob that matches nothing,
    NotFound."""
    out = []
    for pattern in patterns:
        if _climbs(pattern.lstrip("/")):
            raise errors.BadParameter(f"forbidden path outside the build context: {pattern}")
        rel = pattern.lstrip("/")
        while rel.startswith("./"):
            rel = rel[2:]
        if _has_wildcards(rel):
            found = _glob(context_dir, rel)
            if not found:
                raise errors.NotFound(f"no source files were specified: {pattern} matches nothing")
            out += found
            continue
        rel = posixpath.normpath(rel or ".")
        path, _ = _lookup(context_dir, rel)
        out.append(Source(rel, path))
    return out


def _glob(context_dir, pattern):
    """Walk the context (links not followed, as filepath.Walk) matching each
    path with filepath.Match; a matched directory is taken whole."""
    dockerignore.go_match(pattern, ".")     # a bad pattern fails even with no files
    pattern = posixpath.normpath(pattern)
    found = []
    for rel, _, _ in walk(context_dir):
        if dockerignore.go_match(pattern, rel):
            path, _ = _lookup(context_dir, rel)
            found.append(Source(rel, path))
    found.sort()
    return found


# --------------------------------------------------------------------------
# Content hash for the build cache
# --------------------------------------------------------------------------

def source_hash(sources):
    """"sha256:<hex>" of the sources: for each, its name, and below a
    directory every entry's path relative to it, its file type and
    permission bits, a file's content and a symlink's target. mtime,
    ownership and inode numbers are left out, so touching a file keeps the
    hash and changing one byte changes it. Items are Sources or host paths
    (named by their base name)."""
    h = hashlib.sha256()
    for item in sources:
        rel, path = (item.rel, item.path) if isinstance(item, Source) else (os.path.basename(item), item)
        st = os.lstat(path)     # a Source's links were resolved inside already; a bare path's are not followed
        _hash_entry(h, rel, path, st)
        if stat.S_ISDIR(st.st_mode):
            for sub, full, sub_st in walk(path):
                _hash_entry(h, f"{rel}/{sub}", full, sub_st)
    return "sha256:" + h.hexdigest()


def _hash_entry(h, name, path, st):
    h.update(b"name\0" + os.fsencode(name) + b"\0")
    h.update(b"mode\0%o\0" % st.st_mode)
    if stat.S_ISREG(st.st_mode):
        h.update(b"size\0%d\0" % st.st_size)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, "rb", buffering=0) as f:
            while True:
                data = f.read(_CHUNK)
                if not data:
                    break
                h.update(data)
    elif stat.S_ISLNK(st.st_mode):
        h.update(b"link\0" + os.fsencode(os.readlink(path)) + b"\0")


# --------------------------------------------------------------------------
# The whole context of one build
# --------------------------------------------------------------------------

def load(body, dest_dir, dockerfile_name, max_bytes):
    """Extract the context `body` into the empty `dest_dir`, apply its
    .dockerignore as Docker's rules say (the Dockerfile and .dockerignore
    are read first, and then go too if the patterns exclude them, as in
    moby's removeDockerfile), and return the Dockerfile's text, read before
    anything was removed."""
    extract_context(body, dest_dir, max_bytes=max_bytes)
    return load_dir(dest_dir, dockerfile_name)


def load_dir(dest_dir, dockerfile_name):
    """load() for a context already in `dest_dir`."""
    name = dockerfile_name or "Dockerfile"
    path = resolve_dockerfile(dest_dir, name)
    with open(path, "rb") as f:
        data = f.read(MAX_DOCKERFILE + 1)
    if len(data) > MAX_DOCKERFILE:
        raise errors.BadParameter(f"the Dockerfile is larger than {MAX_DOCKERFILE} bytes")
    ignore_path = os.path.join(dest_dir, ".dockerignore")
    if os.path.isfile(ignore_path) and not os.path.islink(ignore_path):
        with open(ignore_path, "rb") as f:
            lines = dockerignore.read_lines(f.read(MAX_DOCKERFILE).decode("utf-8", errors="replace"))
        rel = posixpath.normpath(name.lstrip("/"))
        apply_ignore(dest_dir, dockerignore.Matcher(lines, keep=(".dockerignore", rel)))
        plain = dockerignore.Matcher(lines)
        for kept in (rel, ".dockerignore"):
            if plain.excluded(kept) and os.path.lexists(os.path.join(dest_dir, kept)):
                os.unlink(os.path.join(dest_dir, kept))
    return data.decode("utf-8", errors="replace")


def lone_dockerfile(path, dest_dir, dockerfile_name):
    """A `remote` that is a Dockerfile, not a tar: the context is that file alone."""
    name = posixpath.basename((dockerfile_name or "Dockerfile").rstrip("/")) or "Dockerfile"
    os.replace(path, os.path.join(dest_dir, name))
    return name
