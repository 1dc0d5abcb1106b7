"""Views over overlay-format layer directories.

A layer is a plain directory in the format overlayfs uses for its lower and
upper dirs: a deleted path is a *whiteout*, a character device 0/0 with the
deleted name, and a directory whose lower contents are hidden carries the
xattr ``trusted.overlay.opaque=y``.  Layer lists are always given top-most
first (``[container_upper, image_layer_n, ..., base_layer]``).

Map of this module:

* ``union_walk(layers)`` -- the merged view as overlayfs would show it.
* ``export_tar(layers, out)`` -- the merged view as a tar stream.
* ``layer_tar(layer_dir, out)`` -- one layer as a tar, whiteouts converted
  back to ``.wh.`` entries (re-importable with ``tarsafe.extract``).
* ``changes(upper, lowers)`` -- Docker's ``changes`` list for an overlay
  upper dir.
* ``diff_copy(rootfs, lowers)`` / ``materialize_diff(rootfs, lowers, dest)``
  -- the same for the copy driver, where the container has a full rootfs.
* ``copy_union(layers, dest)`` -- materialize the merged view.
* ``du(path)`` -- apparent size of the regular files below ``path``.

Nothing here follows a symlink found inside a layer.  The opaque xattr on a
layer's *root* directory is ignored, as overlayfs ignores it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import tarfile
from typing import BinaryIO, Iterator, List, Optional, Tuple

from . import tarsafe

log = logging.getLogger(__name__)

__all__ = ["union_walk", "export_tar", "layer_tar", "changes", "diff_copy",
           "materialize_diff", "copy_union", "du", "is_whiteout", "is_opaque", "read_file",
           "merged_dir_layers", "resolve_path",
           "KIND_MODIFIED", "KIND_ADDED", "KIND_DELETED"]

KIND_MODIFIED, KIND_ADDED, KIND_DELETED = 0, 1, 2
OPAQUE_XATTR = tarsafe.OPAQUE_XATTR
_OVERLAY_XATTR_PREFIX = "trusted.overlay."

Change = Tuple[str, int]


# --------------------------------------------------------------------------
# overlay format primitives
# --------------------------------------------------------------------------

def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lstat(path: str) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _xattrs(path: str) -> dict:
    """xattrs of ``path`` (not followed), overlay's own ones excluded."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for name in names:
        if name.startswith(_OVERLAY_XATTR_PREFIX):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            pass
    return out


def _merge_dir(contrib: List[str]) -> dict:
    """Children of the merged directory made of ``contrib`` (top first):
    name -> (index into contrib, abs path, stat), or None when whited out."""
    decided: dict = {}
    for idx, d in enumerate(contrib):
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for entry in it:
                name = entry.name
                if name in decided:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # a live container removed it meanwhile
                    continue
                decided[name] = None if is_whiteout(st) else (idx, entry.path, st)
    return decided


def _child_contrib(contrib: List[str], idx: int, path: str, name: str) -> List[str]:
    """Layer dirs making up merged directory ``name``, whose top-most
    instance is ``path`` in ``contrib[idx]``."""
    out = [path]
    if is_opaque(path):
        return out
    for d in contrib[idx + 1:]:
        p = os.path.join(d, name)
        st = _lstat(p)
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):
            break                 # a non-dir (or whiteout) hides everything below
        out.append(p)
        if is_opaque(p):
            break
    return out


class _MergedView:
    """Random access to a merged view, with a cache of the layer dirs that
    make up each merged directory visited."""

    def __init__(self, layers):
        self.layers = [os.fspath(x) for x in layers]
        self._contrib: dict = {"": list(self.layers)}

    def lookup(self, rel: str):
        """(abs, stat) of the merged entry ``rel``, or None."""
        if not rel:
            return None
        parent, _, name = rel.rpartition("/")
        pc = self.contrib(parent)
        if not pc:
            return None
        for idx, d in enumerate(pc):
            p = os.path.join(d, name)
            st = _lstat(p)
            if st is None:
                continue
            if is_whiteout(st):
                return None
            return p, st, idx
        return None

    def contrib(self, rel: str) -> Optional[List[str]]:
        """Layer dirs making up merged directory ``rel``; None if ``rel`` is
        not a directory in the merged view."""
        if rel in self._contrib:
            return self._contrib[rel]
        parts = rel.split("/")
        i = len(parts) - 1
        while i > 0 and "/".join(parts[:i]) not in self._contrib:
            i -= 1
        cur = "/".join(parts[:i])
        for j in range(i, len(parts)):
            cur = _join(cur, parts[j])
            found = self.lookup(cur)
            if found is None or not stat.S_ISDIR(found[1].st_mode):
                res = None
            else:
                p, _, idx = found
                pc = self._contrib[cur.rpartition("/")[0]]
                res = _child_contrib(pc, idx, p, parts[j])
            self._contrib[cur] = res
            if res is None:
                return None
        return self._contrib[rel]

    def children(self, rel: str) -> dict:
        """name -> (abs, stat) of the visible children of merged dir ``rel``."""
        pc = self.contrib(rel)
        if not pc:
            return {}
        return {n: (v[1], v[2]) for n, v in _merge_dir(pc).items() if v is not None}


def read_file(layers, rel: str, limit: int) -> Optional[bytes]:
    """The first `limit` bytes of regular file `rel` in the merged view of
    `layers` (top first), or None when it is absent or not a regular file.
    Nothing on the way is followed through a symlink."""
    found = _MergedView(layers).lookup(rel.strip("/"))
    if found is None or not stat.S_ISREG(found[1].st_mode):
        return None
    try:
        fd = os.open(found[0], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def merged_dir_layers(layers, rel: str) -> List[str]:
    """The layer directories that make up merged directory `rel`, top first
    (empty when `rel` is not a directory in the merged view)."""
    rel = rel.strip("/")
    return list(_MergedView(layers).contrib(rel) or []) if rel else list(layers)


def resolve_path(layers, path: str, max_hops: int = 40) -> str:
    """Resolve ``path`` in the merged view of ``layers`` as the container will
    see it: symlinks are followed, always inside the root ("/.." is "/").
    Missing components are kept as they are. Returns an absolute path."""
    view = _MergedView(layers)
    todo = [p for p in path.split("/") if p]
    done: List[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        found = view.lookup("/".join(done + [part]))
        if found is not None and stat.S_ISLNK(found[1].st_mode):
            hops += 1
            if hops > max_hops:
                raise OSError(errno.ELOOP, f"too many levels of symbolic links in {path}")
            target = os.readlink(found[0])
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p] + todo
            continue
        done.append(part)
    return "/" + "/".join(done)


# --------------------------------------------------------------------------
# merged view
# --------------------------------------------------------------------------

def union_walk(layers) -> Iterator[Tuple[str, str, os.stat_result]]:
    """Yield ``(relpath, abs_path, lstat)`` for every entry of the merged
    view of ``layers`` (top-most first), as overlayfs would show it.

    The root comes first as relpath ``""`` (abs_path is the top layer).
    Then entries in depth-first order with siblings sorted by name, so a
    parent always precedes its children.  relpaths have no leading slash.
    Whiteouts hide lower entries and are not shown; an opaque directory
    hides lower contents; a non-directory hides a lower directory.
    Symlinks are reported, never followed.
    """
    layers = [os.fspath(x) for x in layers]
    if not layers:
        return
    yield "", layers[0], os.lstat(layers[0])
    stack = [_level("", layers)]
    while stack:
        try:
            rel, path, st, sub = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        yield rel, path, st
        if sub is not None:
            stack.append(_level(rel, sub))


def _level(rel: str, contrib: List[str]):
    merged = _merge_dir(contrib)
    for name in sorted(merged):
        v = merged[name]
        if v is None:
            continue
        idx, path, st = v
        sub = _child_contrib(contrib, idx, path, name) if stat.S_ISDIR(st.st_mode) else None
        yield _join(rel, name), path, st, sub


def _walk_one(top: str) -> Iterator[Tuple[str, str, os.stat_result]]:
    """Depth-first, sorted walk of one directory (root not included)."""
    stack = [iter(_sorted_entries(top, ""))]
    while stack:
        try:
            rel, path, st = next(stack[-1])
        except StopIteration:
            stack.pop()
            continue
        yield rel, path, st
        if stat.S_ISDIR(st.st_mode):
            stack.append(iter(_sorted_entries(path, rel)))


def _sorted_entries(path: str, rel: str):
    """Sorted (rel, path, lstat) of a directory's entries. The directory may be
    a running container's and change under us: what vanishes is skipped."""
    entries = []
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    entries.append((e.name, e.path, e.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries.sort()
    return [(_join(rel, n), p, st) for n, p, st in entries]


# --------------------------------------------------------------------------
# tar output
# --------------------------------------------------------------------------

def _tar_entries(walk, *, whiteouts: bool):
    """(TarInfo, data) pairs for ``tarsafe.write_tar`` from a walk.  With
    ``whiteouts`` overlay markers are turned into .wh. entries (layer
    tars); otherwise they cannot occur (merged views)."""
    links: dict = {}
    for rel, path, st in walk:
        if not rel:
            continue
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            log.debug("skipping socket %s", path)
            continue
        if whiteouts and is_whiteout(st):
            parent, _, name = rel.rpartition("/")
            ti = tarfile.TarInfo(_join(parent, tarsafe.WHITEOUT_PREFIX + name))
            ti.type, ti.mode, ti.size = tarfile.REGTYPE, 0o600, 0
            ti.uid, ti.gid, ti.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
            yield ti, None
            continue
        if stat.S_ISREG(mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = links.get(key)
            if first is not None:
                ti = tarsafe.tarinfo_from_stat(rel, st, xattrs=_xattrs(path))
                ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, first, 0
                yield ti, None
                continue
            links[key] = rel
        try:
            linkname = os.readlink(path) if stat.S_ISLNK(mode) else ""
        except FileNotFoundError:  # gone while we walked a live container
            continue
        ti = tarsafe.tarinfo_from_stat(rel, st, linkname=linkname, xattrs=_xattrs(path))
        yield ti, (path if stat.S_ISREG(mode) else None)
        if whiteouts and stat.S_ISDIR(mode) and is_opaque(path):
            wo = tarfile.TarInfo(_join(rel, tarsafe.WHITEOUT_OPAQUE))
            wo.type, wo.mode, wo.size = tarfile.REGTYPE, stat.S_IMODE(mode) & 0o777, 0
            wo.uid, wo.gid, wo.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
            yield wo, None


def export_tar(layers, out: BinaryIO) -> None:
    """Write the merged filesystem of ``layers`` as a tar stream onto
    ``out``.  Memory stays bounded: file data is streamed in chunks."""
    tarsafe.write_tar(out, _tar_entries(union_walk(layers), whiteouts=False))


def layer_tar(layer_dir, out: BinaryIO) -> None:
    """Write one overlay-format layer as a Docker layer tar onto ``out``:
    whiteouts become ``.wh.<name>`` and opaque dirs get a
    ``.wh..wh..opq`` entry right after the directory."""
    tarsafe.write_tar(out, _tar_entries(_walk_one(os.fspath(layer_dir)), whiteouts=True))


class _HashSink:
    def __init__(self):
        self.sha = hashlib.sha256()

    def write(self, data):
        self.sha.update(data)
        return len(data)

    def flush(self):
        pass


def layer_digest(layer_dir) -> str:
    """The diff id of a layer directory: "sha256:<hex>" of its layer tar."""
    sink = _HashSink()
    layer_tar(layer_dir, sink)
    return "sha256:" + sink.sha.hexdigest()


# --------------------------------------------------------------------------
# changes
# --------------------------------------------------------------------------

def _same_time(a: os.stat_result, b: os.stat_result) -> bool:
    """Like Docker's sameFsTime: equal, or equal seconds when either side
    has no sub-second part (e.g. extracted from a tar)."""
    if a.st_mtime_ns == b.st_mtime_ns:
        return True
    sa, na = divmod(a.st_mtime_ns, 1_000_000_000)
    sb, nb = divmod(b.st_mtime_ns, 1_000_000_000)
    return sa == sb and (na == 0 or nb == 0)


def _dir_unchanged(a: os.stat_result, b: os.stat_result) -> bool:
    return (stat.S_ISDIR(a.st_mode) and stat.S_ISDIR(b.st_mode)
            and a.st_mode == b.st_mode and a.st_size == b.st_size and _same_time(a, b))


def changes(upper, lowers) -> List[Change]:
    """Docker's changes for an overlay upper dir over ``lowers`` (top
    first): ``[("/path", kind)]`` sorted by path, kind 0 modified, 1 added,
    2 deleted.

    * a whiteout is a deletion if the path exists in the lowers;
    * an entry absent from the lowers is added, and so is everything below
      an added directory;
    * an entry present in both is modified, except a directory whose size,
      mode and mtime are unchanged;
    * an opaque directory that existed below is modified; its lower
      children missing from the upper are deleted, its upper children are
      added.
    """
    upper = os.fspath(upper)
    lower = _MergedView(lowers)
    out: List[Change] = []
    # stack of (rel dir, lower hidden?) ; iterate dirs in the upper
    stack = [("", False)]
    while stack:
        rel, hidden = stack.pop()
        dpath = os.path.join(upper, rel) if rel else upper
        for crel, path, st in _sorted_entries(dpath, rel):
            if is_whiteout(st):
                if not hidden and lower.lookup(crel) is not None:
                    out.append(("/" + crel, KIND_DELETED))
                continue
            found = None if hidden else lower.lookup(crel)
            isdir = stat.S_ISDIR(st.st_mode)
            opaque = isdir and is_opaque(path)
            if found is None:
                out.append(("/" + crel, KIND_ADDED))
            elif opaque or not _dir_unchanged(st, found[1]):
                out.append(("/" + crel, KIND_MODIFIED))
            if not isdir:
                continue
            lower_is_dir = found is not None and stat.S_ISDIR(found[1].st_mode)
            if opaque and lower_is_dir:
                present = {n.rpartition("/")[2] for n, _, est in _sorted_entries(path, crel)
                           if not is_whiteout(est)}
                for name in lower.children(crel):
                    if name not in present:
                        out.append(("/" + _join(crel, name), KIND_DELETED))
            stack.append((crel, hidden or not lower_is_dir or opaque))
    out.sort()
    return out


def _differs(a_path: str, a: os.stat_result, b_path: str, b: os.stat_result) -> bool:
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return True
    if a.st_mode != b.st_mode or a.st_uid != b.st_uid or a.st_gid != b.st_gid:
        return True
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(a_path) != os.readlink(b_path)
    if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        return a.st_rdev != b.st_rdev
    if stat.S_ISREG(a.st_mode) or stat.S_ISDIR(a.st_mode):
        return a.st_size != b.st_size or not _same_time(a, b)
    return False


def _diff_walk(rootfs: str, lower: _MergedView):
    """Yield (rel, kind, abs path in rootfs or None) parents first."""
    stack = [("", True)]
    while stack:
        rel, lower_dir = stack.pop()
        dpath = os.path.join(rootfs, rel) if rel else rootfs
        below = lower.children(rel) if lower_dir else {}
        entries = _sorted_entries(dpath, rel)
        names = set()
        subdirs = []
        for crel, path, st in entries:
            names.add(crel.rpartition("/")[2])
            lw = below.get(crel.rpartition("/")[2])
            if lw is None:
                yield crel, KIND_ADDED, path, st
            elif _differs(path, st, lw[0], lw[1]):
                yield crel, KIND_MODIFIED, path, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((crel, lw is not None and stat.S_ISDIR(lw[1].st_mode)))
        for name in sorted(set(below) - names):
            yield _join(rel, name), KIND_DELETED, None, None
        # reversed so that the stack pops them in sorted order
        stack.extend(reversed(subdirs))


def diff_copy(rootfs, lowers) -> List[Change]:
    """changes() for the copy driver: compare the full ``rootfs`` with the
    merged ``lowers`` (type, mode, owner, size, mtime, link target, device
    number).  Same ``[("/path", kind)]`` format, sorted by path.  Only the
    top-most path of a deleted subtree is listed."""
    out = [("/" + rel, kind) for rel, kind, _, _ in
           _diff_walk(os.fspath(rootfs), _MergedView(lowers))]
    out.sort()
    return out


def materialize_diff(rootfs, lowers, dest) -> List[Change]:
    """Write the difference between ``rootfs`` and the merged ``lowers`` as
    an overlay-format layer into the directory ``dest`` (created if
    missing): changed/added entries are copied, deletions become
    whiteouts, unchanged parent directories are recreated with the
    rootfs's attributes.  Returns the same list as ``diff_copy``."""
    rootfs, dest = os.fspath(rootfs), os.fspath(dest)
    os.makedirs(dest, exist_ok=True)
    made = {""}
    dirs = []
    out: List[Change] = []

    def ensure_parent(rel: str) -> None:
        parent = rel.rpartition("/")[0]
        missing = []
        while parent not in made:
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        for p in reversed(missing):
            src = os.path.join(rootfs, p)
            st = os.lstat(src)
            _copy_node(src, st, os.path.join(dest, p), dirs)
            made.add(p)

    for rel, kind, path, st in _diff_walk(rootfs, _MergedView(lowers)):
        out.append(("/" + rel, kind))
        ensure_parent(rel)
        target = os.path.join(dest, rel)
        if kind == KIND_DELETED:
            os.mknod(target, stat.S_IFCHR, 0)
            continue
        _copy_node(path, st, target, dirs)
        if stat.S_ISDIR(st.st_mode):
            made.add(rel)
    _finish_dirs(dirs)
    out.sort()
    return out


# --------------------------------------------------------------------------
# copying
# --------------------------------------------------------------------------

def _copy_data(src_fd: int, dst_fd: int, size: int) -> None:
    remaining = size
    try:
        while remaining > 0:
            n = os.copy_file_range(src_fd, dst_fd, min(remaining, 1 << 30))
            if n == 0:
                break
            remaining -= n
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    os.lseek(src_fd, size - remaining, os.SEEK_SET)
    os.lseek(dst_fd, size - remaining, os.SEEK_SET)
    while True:
        buf = os.read(src_fd, tarsafe.CHUNK)
        if not buf:
            break
        view = memoryview(buf)
        while view:
            view = view[os.write(dst_fd, view):]


def _copy_node(src: str, st: os.stat_result, dst: str, dirs: list) -> None:
    """Create ``dst`` as a copy of ``src`` (not followed).  Directory
    attributes are queued in ``dirs`` (set them last with _finish_dirs)."""
    mode = st.st_mode
    xattrs = _xattrs(src)
    if stat.S_ISDIR(mode):
        try:
            os.mkdir(dst, 0o700)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(dst).st_mode):
                raise
        dirs.append((dst, st, xattrs))
        return
    if stat.S_ISREG(mode):
        sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o600)
            try:
                _copy_data(sfd, dfd, st.st_size)
                os.fchown(dfd, st.st_uid, st.st_gid)
                os.fchmod(dfd, stat.S_IMODE(mode))
                for k, v in xattrs.items():
                    _try_setxattr(dfd, k, v)
                os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        return
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(dst, stat.S_IFMT(mode) | 0o600, st.st_rdev)
    else:
        log.debug("not copying %s (socket or unknown type)", src)
        return
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(mode):
        os.chmod(dst, stat.S_IMODE(mode))
    for k, v in xattrs.items():
        _try_setxattr(dst, k, v)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _try_setxattr(target, key: str, value: bytes) -> None:
    try:
        if isinstance(target, int):
            os.setxattr(target, key, value)
        else:
            os.setxattr(target, key, value, follow_symlinks=False)
    except OSError as e:
        log.debug("setxattr %s on %s: %s", key, target, e)


def _finish_dirs(dirs: list) -> None:
    """Apply queued directory attributes, deepest first (children's changes
    would otherwise bump the parents' mtimes)."""
    for dst, st, xattrs in sorted(dirs, key=lambda d: d[0].count("/"), reverse=True):
        fd = os.open(dst, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            for k, v in xattrs.items():
                _try_setxattr(fd, k, v)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)


def copy_union(layers, dest) -> None:
    """Materialize the merged view of ``layers`` into ``dest`` (created if
    missing): modes, owners, xattrs, mtimes, symlinks, devices and fifos
    preserved; hardlinks become separate files; sockets are skipped."""
    dest = os.fspath(dest)
    os.makedirs(dest, exist_ok=True)
    dirs = []
    for rel, path, st in union_walk(layers):
        if not rel:
            dirs.append((dest, st, _xattrs(path)))
            continue
        _copy_node(path, st, os.path.join(dest, rel), dirs)
    _finish_dirs(dirs)


def du(path) -> int:
    """Apparent size (sum of st_size) of the regular files below ``path``,
    each inode counted once; symlinks are not followed; 0 if missing."""
    path = os.fspath(path)
    st = _lstat(path)
    if st is None:
        return 0
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    if not stat.S_ISDIR(st.st_mode):
        return 0
    total = 0
    seen = set()
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False):
                    est = e.stat(follow_symlinks=False)
                    if est.st_nlink > 1:
                        key = (est.st_dev, est.st_ino)
                        if key in seen:
                            continue
                        seen.add(key)
                    total += est.st_size
    return total
