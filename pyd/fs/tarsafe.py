"""Safe, streaming tar extraction and writing.  Tar is hostile input.

Map of this module:

* ``open_decompressed(fileobj)`` -- sniff gzip / bzip2 / xz magic on a
  (possibly non-seekable) stream and return a reader of the decompressed
  bytes.  Never runs an external program.
* ``extract(fileobj, dest, ...)`` -- apply a tar stream to the directory
  ``dest`` entry by entry.  Every operation is relative to directory file
  descriptors obtained with ``O_NOFOLLOW``, so no symlink is ever followed
  while resolving a member's parent directories.  Old-style AUFS whiteouts
  (``.wh.name`` and ``.wh..wh..opq``) are converted to the overlayfs format
  (a 0/0 character device, and the ``trusted.overlay.opaque=y`` xattr).
  Returns an ``ExtractResult(size, files, digest)``.
* ``remove_tree(path)`` -- delete a tree without following symlinks; copes
  with directories whose mode is 000 and with very deep trees.
* ``write_tar(out, entries)`` and ``tarinfo_from_stat(...)`` -- a streaming
  PAX tar writer whose memory use does not grow with file size.

Errors: anything wrong with the archive itself raises ``BadTar`` (a
``ValueError``) naming the member; host problems (disk full, I/O errors)
are raised as the original ``OSError``.
"""

from __future__ import annotations

import bz2
import errno
import hashlib
import io
import logging
import lzma
import os
import queue
import stat
import tarfile
import threading
import zlib
from typing import BinaryIO, Callable, Iterable, NamedTuple, Optional, Tuple, Union

from . import tarsplit

log = logging.getLogger(__name__)

__all__ = [
    "BadTar",
    "ExtractResult",
    "open_decompressed",
    "extract",
    "remove_tree",
    "write_tar",
    "tarinfo_from_stat",
    "OPAQUE_XATTR",
    "WHITEOUT_PREFIX",
    "WHITEOUT_OPAQUE",
]

CHUNK = 1 << 20                  # copy / progress granularity
MAX_PATH = 4096                  # bytes, whole member path
MAX_COMPONENT = 255              # bytes, one path component
DEFAULT_MAX_MEMBER_HEADER = 64 * 1024

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_PAX_PREFIX = "SCHILY.xattr."

_O_DIR_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_O_DIR_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_O_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# errnos that describe the host, not the archive: re-raised untouched.
_HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS,
                          errno.ENOMEM, errno.EMFILE, errno.ENFILE})

_SUPPORTED_TYPES = frozenset({
    tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE,
    tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.DIRTYPE,
    tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE,
})
_HEADER_TYPES = frozenset({tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                           tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE})


class BadTar(ValueError):
    """The archive is malformed or tries something unsafe."""


class ExtractResult(NamedTuple):
    size: int      # sum of the sizes of the regular files written
    files: int     # number of tar members applied (all types, whiteouts included)
    digest: str    # "sha256:<hex>" of the whole decompressed tar stream


# --------------------------------------------------------------------------
# Decompression over non-seekable streams
# --------------------------------------------------------------------------

class _Peekable(io.RawIOBase):
    """Reader with a look-ahead buffer over any ``read(n)`` source.  Reads
    the source in large chunks (few syscalls) and hands out slices; counts
    the raw bytes read and reports them to ``on_progress`` at most every
    ``CHUNK`` bytes."""

    def __init__(self, src: BinaryIO, on_progress: Optional[Callable[[int], None]] = None):
        super().__init__()
        self._src = src
        self._buf = b""
        self._off = 0
        self._eof = False
        self.count = 0
        self._on_progress = on_progress
        self._reported = 0

    def readable(self) -> bool:
        return True

    def _fill(self, n: int) -> bytes:
        data = self._src.read(n)
        if not data:
            self._eof = True
            return b""
        self.count += len(data)
        if self._on_progress is not None and self.count - self._reported >= CHUNK:
            self._reported = self.count
            self._on_progress(self.count)
        return data

    def peek(self, n: int) -> bytes:
        avail = self._buf[self._off:]
        while len(avail) < n and not self._eof:
            avail += self._fill(max(n - len(avail), CHUNK))
        self._buf, self._off = avail, 0
        return avail[:n]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._buf[self._off:]]
            self._buf, self._off = b"", 0
            while not self._eof:
                parts.append(self._fill(CHUNK))
            return b"".join(parts)
        if self._off >= len(self._buf):
            if self._eof:
                return b""
            if n >= CHUNK:
                return self._fill(n)
            self._buf, self._off = self._fill(CHUNK), 0
        off = self._off
        if off == 0 and n >= len(self._buf):
            data, self._buf = self._buf, b""
            return data
        data = self._buf[off:off + n]
        self._off = off + len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def report(self) -> None:
        if self._on_progress is not None and self.count != self._reported:
            self._reported = self.count
            self._on_progress(self.count)


class _Decompressor(io.RawIOBase):
    """Streaming decompression with the stdlib codecs.  Handles concatenated
    members/streams and bounds the output of each call (no bombs in RAM)."""

    def __init__(self, src: _Peekable, kind: str):
        super().__init__()
        self._src = src
        self._kind = kind
        self._d = self._new()
        self._tail = b""       # zlib: input not yet consumed
        self._done = False

    def readable(self) -> bool:
        return True

    def _new(self):
        if self._kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._kind == "bzip2":
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)

    def _next_member(self) -> bool:
        """Current stream ended; start another one if more input follows."""
        rest = self._d.unused_data
        while True:
            rest = rest.lstrip(b"\0")          # allowed padding between members
            if rest:
                break
            rest = self._src.read(CHUNK)
            if not rest:
                self._done = True
                return False
        self._d = self._new()
        self._tail = rest
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while True:
                d = self.read(CHUNK)
                if not d:
                    return b"".join(parts)
                parts.append(d)
        if n == 0:
            return b""
        try:
            while not self._done:
                d = self._d
                if d.eof:
                    if not self._next_member():
                        return b""
                    continue
                if self._kind == "gzip":
                    data = self._tail or self._src.read(CHUNK)
                    if not data:
                        raise BadTar("compressed stream is truncated")
                    out = d.decompress(data, n)
                    self._tail = d.unconsumed_tail
                else:
                    if self._tail:
                        data, self._tail = self._tail, b""
                    elif d.needs_input:
                        data = self._src.read(CHUNK)
                        if not data:
                            raise BadTar("compressed stream is truncated")
                    else:
                        data = b""
                    out = d.decompress(data, n)
                if out:
                    return out
            return b""
        except (zlib.error, lzma.LZMAError, EOFError) as e:
            raise BadTar(f"invalid {self._kind} data: {e}") from e
        except OSError as e:
            if e.errno is None:     # bz2 reports corrupt data as a bare OSError
                raise BadTar(f"invalid {self._kind} data: {e}") from e
            raise

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)


def _open_decompressed(src: _Peekable) -> io.RawIOBase:
    magic = src.peek(6)
    if magic[:2] == b"\x1f\x8b":
        return _Decompressor(src, "gzip")
    if magic[:3] == b"BZh":
        return _Decompressor(src, "bzip2")
    if magic[:6] == b"\xfd7zXZ\x00":
        return _Decompressor(src, "xz")
    return src


def open_decompressed(fileobj: BinaryIO) -> io.RawIOBase:
    """Return a reader of the decompressed bytes of ``fileobj``.

    Only ``fileobj.read(n)`` is used, so any non-seekable stream works.
    gzip, bzip2 and xz are detected from their magic bytes; anything else is
    passed through unchanged.  Corrupt compressed data raises BadTar.
    """
    if isinstance(fileobj, (_Peekable, _Decompressor)):
        return fileobj
    return _open_decompressed(_Peekable(fileobj))


class _Hasher:
    """Pass-through reader that hashes everything it hands out.

    The source is read in ``CHUNK`` pieces; each piece is hashed on a
    helper thread (hashlib releases the GIL), so hashing overlaps with the
    writes done by the extracting thread.  Small slices are served to
    tarfile from the current piece.
    """

    def __init__(self, src):
        self._src = src
        self._buf = b""
        self._off = 0
        self.count = 0
        self._sha = hashlib.sha256()
        self._queue: Optional[queue.Queue] = None
        self._thread: Optional[threading.Thread] = None
        self.on_data: Optional[Callable[[bytes], None]] = None   # sees every byte, in order
        self.limit: Optional[int] = None    # decompressed bytes allowed (extract's max_bytes)

    def _hash_loop(self) -> None:
        q, sha = self._queue, self._sha
        while True:
            data = q.get()
            if data is None:
                return
            sha.update(data)

    def _hash(self, data: bytes) -> None:
        if self._thread is None:
            # bounded: reading may not run more than a few MiB ahead of hashing
            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(target=self._hash_loop, name="tar-sha256",
                                            daemon=True)
            self._thread.start()
        self._queue.put(data)

    def read(self, n: int = -1) -> bytes:
        if self._off >= len(self._buf):
            data = self._src.read(CHUNK)
            if not data:
                return b""
            self._hash(data)
            self.count += len(data)
            if self.limit is not None and self.count > self.limit:
                raise BadTar(f"the tar is larger than {self.limit} bytes uncompressed, the bound "
                             "set for one layer (pyd --max-layer-size)")
            if self.on_data is not None:
                self.on_data(data)
            self._buf, self._off = data, 0
        off = self._off
        if n is None or n < 0 or (off == 0 and n >= len(self._buf)):
            data = self._buf[off:] if off else self._buf
            self._buf, self._off = b"", 0
            return data
        data = self._buf[off:off + n]
        self._off = off + len(data)
        return data

    def drain(self) -> int:
        extra = 0
        while True:
            data = self.read(CHUNK)
            if not data:
                return extra
            extra += len(data)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()


# --------------------------------------------------------------------------
# Bounded header parsing
# --------------------------------------------------------------------------

# How a header read ended, for telling a clean end of archive from truncation.
_END_KINDS = ((tarfile.EOFHeaderError, "eof"), (tarfile.EmptyHeaderError, "empty"),
              (tarfile.TruncatedHeaderError, "truncated"), (tarfile.InvalidHeaderError, "invalid"))


class _BoundedTarInfo(tarfile.TarInfo):
    """TarInfo that refuses over-long GNU/PAX headers *before* tarfile reads
    them into memory, and remembers how the archive ended.

    A subclass is made per extract() call so that the limit and the end
    state live on that call, not in a global.
    """

    max_header = DEFAULT_MAX_MEMBER_HEADER
    end_state: dict = {}

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            for kind, name in _END_KINDS:
                if isinstance(e, kind):
                    cls.end_state["end"] = name
            raise

    def _proc_member(self, tarfile_):
        if self.type in _HEADER_TYPES and self.size > self.max_header:
            raise BadTar(f"{self.name!r}: extended header of {self.size} bytes "
                         f"exceeds the limit of {self.max_header}")
        return super()._proc_member(tarfile_)


def _bounded_tarinfo_class(max_header: int) -> type:
    return type("_BoundedTarInfoCall", (_BoundedTarInfo,),
                {"max_header": max_header, "end_state": {"end": None}})


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

def _fsbytes_len(s: str) -> int:
    return len(os.fsencode(s))


def _normalize(name: str, what: str, member: str) -> tuple:
    """Split a member name into safe components.  A leading '/' is
    stripped (Docker treats names as relative); '.' and empty components
    are dropped; '..' is resolved lexically and may never climb above the
    root."""
    if "\0" in name:
        raise BadTar(f"{member!r}: {what} contains a NUL byte")
    if _fsbytes_len(name) > MAX_PATH:
        raise BadTar(f"{member!r}: {what} is longer than {MAX_PATH} bytes")
    parts = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise BadTar(f"{member!r}: {what} escapes the destination")
            parts.pop()
            continue
        if _fsbytes_len(comp) > MAX_COMPONENT:
            raise BadTar(f"{member!r}: {what} has a component longer than "
                         f"{MAX_COMPONENT} bytes")
        parts.append(comp)
    return tuple(parts)


def _mtime_ns(ti: tarfile.TarInfo) -> int:
    raw = ti.pax_headers.get("mtime")
    if raw:
        try:
            sec, _, frac = raw.partition(".")
            neg = sec.startswith("-")
            ns = abs(int(sec)) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
            return -ns if neg else ns
        except ValueError:
            pass
    if isinstance(ti.mtime, float):
        return int(ti.mtime * 1_000_000_000)
    return int(ti.mtime) * 1_000_000_000


def _xattrs(ti: tarfile.TarInfo) -> list:
    out = []
    for key, value in ti.pax_headers.items():
        if key.startswith(_XATTR_PAX_PREFIX):
            name = key[len(_XATTR_PAX_PREFIX):]
            if name.startswith("trusted.overlay."):
                # overlay metadata only ever comes from whiteout entries;
                # a redirect/metacopy xattr from a tar could point overlayfs
                # at other paths.
                log.debug("ignoring xattr %s on %s", name, ti.name)
                continue
            out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


# --------------------------------------------------------------------------
# fd-relative helpers
# --------------------------------------------------------------------------

def _lstat_at(dir_fd: int, name: str) -> Optional[os.stat_result]:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _setxattr_at(dir_fd: int, name: Optional[str], key: str, value: bytes) -> None:
    """setxattr on ``name`` inside ``dir_fd`` (or on the directory itself
    when name is None) without following a symlink at ``name``.  Python has
    no dir_fd for xattrs, so go through the /proc magic link of the
    (already safely opened) parent directory."""
    if name is None:
        # the magic link itself must be followed: it is the directory
        os.setxattr(f"/proc/self/fd/{dir_fd}", key, value)
    else:
        os.setxattr(f"/proc/self/fd/{dir_fd}/{name}", key, value, follow_symlinks=False)


def _chmod_at(dir_fd: int, name: str, mode: int) -> None:
    """chmod a just-created non-symlink node. The destination may be a live
    container's (docker cp), whose processes can swap the node for a symlink
    at any moment: never chmod by a path that could be followed, only the
    inode an O_PATH|O_NOFOLLOW fd holds."""
    try:
        os.chmod(name, mode, dir_fd=dir_fd, follow_symlinks=False)
    except (NotImplementedError, ValueError):
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            if not stat.S_ISLNK(os.fstat(fd).st_mode):
                os.chmod(f"/proc/self/fd/{fd}", mode)
        finally:
            os.close(fd)


def _rmtree_at(parent_fd: int, name: str) -> None:
    """Remove ``name`` (any type) inside ``parent_fd``; never follows
    symlinks; iterative, so depth is bounded by fds, not by recursion."""
    st = _lstat_at(parent_fd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return
    # stack of [dir fd, parent fd, name in parent, subdirs still to remove]
    stack = [[_open_dir_for_removal(parent_fd, name), parent_fd, name, None]]
    try:
        while stack:
            top = stack[-1]
            if top[3] is None:
                subdirs = []
                with os.scandir(top[0]) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False):
                            subdirs.append(entry.name)
                            continue
                        try:
                            os.unlink(entry.name, dir_fd=top[0])
                        except FileNotFoundError:
                            pass
                top[3] = subdirs
            if top[3]:
                sub = top[3].pop()
                stack.append([_open_dir_for_removal(top[0], sub), top[0], sub, None])
                continue
            fd, pfd, nm, _ = stack.pop()
            os.close(fd)
            os.rmdir(nm, dir_fd=pfd)
    finally:
        for item in stack:
            os.close(item[0])


def _open_dir_for_removal(parent_fd: int, name: str) -> int:
    try:
        return os.open(name, _O_DIR_READ, dir_fd=parent_fd)
    except PermissionError:
        # e.g. a mode 000 directory when not root: make it usable first
        os.chmod(name, 0o700, dir_fd=parent_fd, follow_symlinks=False)
        return os.open(name, _O_DIR_READ, dir_fd=parent_fd)


def remove_tree(path: Union[str, os.PathLike]) -> None:
    """Delete ``path`` and everything below it.  Symlinks are removed, never
    followed; odd modes (000 directories) and deep trees are handled.  A
    missing path is not an error."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path.rstrip("/") or "/")
    if not name:
        raise ValueError("refusing to remove /")
    try:
        pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        _rmtree_at(pfd, name)
    finally:
        os.close(pfd)


# --------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------

class _Extractor:
    """Applies members below one root fd.  Holds a bounded cache of O_PATH
    fds of parent directories, keyed by their component tuple."""

    MAX_CACHED = 128

    def __init__(self, root_fd: int, whiteouts: bool = True, replace_types: bool = True,
                 root_attrs: bool = True):
        self.root_fd = root_fd
        self.whiteouts = whiteouts          # .wh. names are overlay markers, not files
        self.replace_types = replace_types  # a dir may replace a non-dir and vice versa
        self.root_attrs = root_attrs        # a "." member sets the destination's attributes
        self.cache: dict = {}
        self.dirs: dict = {}     # parts -> (mode, uid, gid, mtime_ns, xattrs)
        self.size = 0
        self.files = 0
        self.chown = os.geteuid() == 0
        self.recorder: Optional[tarsplit.Recorder] = None   # extract(split=...)

    # -- cache ---------------------------------------------------------
    def close(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()

    def trim(self) -> None:
        if len(self.cache) > self.MAX_CACHED:
            self.close()

    def invalidate(self, parts: tuple) -> None:
        """``parts`` (a directory) was removed: forget fds and pending
        attributes at or below it."""
        n = len(parts)
        for key in [k for k in self.cache if k[:n] == parts]:
            os.close(self.cache.pop(key))
        for key in [k for k in self.dirs if k[:n] == parts]:
            del self.dirs[key]

    def dir_fd(self, parts: tuple, member: str, create: bool = True) -> Optional[int]:
        """fd of directory ``parts`` below the root, opened component by
        component with O_NOFOLLOW.  Missing directories are created (0755)
        when ``create``; otherwise None is returned."""
        if not parts:
            return self.root_fd
        fd = self.cache.get(parts)
        if fd is not None:
            return fd
        i = len(parts) - 1
        while i > 0 and parts[:i] not in self.cache:
            i -= 1
        base = self.cache[parts[:i]] if i > 0 else self.root_fd
        for j in range(i, len(parts)):
            name = parts[j]
            try:
                fd = os.open(name, _O_DIR_PATH, dir_fd=base)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(name, 0o755, dir_fd=base)
                fd = os.open(name, _O_DIR_PATH, dir_fd=base)
            except OSError as e:
                if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                st = _lstat_at(base, name)
                where = "/".join(parts[:j + 1])
                if st is not None and stat.S_ISLNK(st.st_mode):
                    raise BadTar(f"{member!r}: path component {where!r} is a symlink; "
                                 "refusing to follow it") from e
                raise BadTar(f"{member!r}: path component {where!r} is not a directory") from e
            self.cache[parts[:j + 1]] = fd
            base = fd
        return base

    def clear_name(self, pfd: int, parts: tuple,
                   keep_dir: bool = False) -> Optional[os.stat_result]:
        """Remove whatever is at ``parts`` (inside ``pfd``).  With
        ``keep_dir`` an existing directory is left alone and its stat is
        returned."""
        name = parts[-1]
        st = _lstat_at(pfd, name)
        if st is None:
            return None
        if not self.replace_types and stat.S_ISDIR(st.st_mode) != keep_dir:
            what = ("directory", "non-directory") if keep_dir else ("non-directory", "directory")
            raise BadTar(f"{'/'.join(parts)!r}: cannot overwrite {what[1]} with {what[0]}")
        if stat.S_ISDIR(st.st_mode) and keep_dir:
            return st
        if self.recorder is not None:
            # a file whose payload the split references is about to go
            self.recorder.cleared(parts, stat.S_ISDIR(st.st_mode), self._open_recorded)
        if stat.S_ISDIR(st.st_mode):
            self.invalidate(parts)
            _rmtree_at(pfd, name)
        else:
            os.unlink(name, dir_fd=pfd)
        return None

    def _open_recorded(self, parts: tuple) -> int:
        pfd = self.dir_fd(parts[:-1], "/".join(parts), create=False)
        if pfd is None:
            raise OSError(errno.ENOENT, f"{'/'.join(parts)}: extracted file vanished")
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)

    def referenceable(self, ti: tarfile.TarInfo) -> Optional[tuple]:
        """The normalized name of a member whose payload ends up, as it
        is, in a regular file of that name (for a tar split); else None."""
        if not ti.isreg() or ti.type == tarfile.GNUTYPE_SPARSE or ti.sparse is not None:
            return None
        parts = _normalize(ti.name, "name", ti.name)
        if not parts or (self.whiteouts and parts[-1].startswith(WHITEOUT_PREFIX)):
            return None
        return parts

    # -- members -------------------------------------------------------
    def apply(self, tf: tarfile.TarFile, ti: tarfile.TarInfo) -> None:
        member = ti.name
        parts = _normalize(ti.name, "name", member)
        if self.whiteouts and parts and parts[-1].startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, ti)
            return
        if not parts:
            if not ti.isdir():
                raise BadTar(f"{member!r}: a non-directory member names the root")
            if self.root_attrs:
                self.dirs[()] = (ti.mode & 0o7777, ti.uid, ti.gid, _mtime_ns(ti), _xattrs(ti))
            return
        pfd = self.dir_fd(parts[:-1], member)
        name = parts[-1]
        if ti.isreg():
            self.regular(tf, ti, pfd, parts)
        elif ti.isdir():
            if self.clear_name(pfd, parts, keep_dir=True) is None:
                os.mkdir(name, 0o700, dir_fd=pfd)
            self.dirs[parts] = (ti.mode & 0o7777, ti.uid, ti.gid, _mtime_ns(ti), _xattrs(ti))
        elif ti.issym():
            if not ti.linkname:
                raise BadTar(f"{member!r}: symlink with an empty target")
            if "\0" in ti.linkname or _fsbytes_len(ti.linkname) >= MAX_PATH:
                raise BadTar(f"{member!r}: invalid symlink target")
            self.clear_name(pfd, parts)
            os.symlink(ti.linkname, name, dir_fd=pfd)
            self.finish_node(pfd, name, ti, chmod=False)
        elif ti.islnk():
            self.hardlink(ti, pfd, parts)
        elif ti.ischr() or ti.isblk() or ti.isfifo():
            fmt = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK if ti.isblk() else stat.S_IFIFO
            dev = os.makedev(ti.devmajor, ti.devminor) if fmt != stat.S_IFIFO else 0
            self.clear_name(pfd, parts)
            os.mknod(name, fmt | 0o600, dev, dir_fd=pfd)
            self.finish_node(pfd, name, ti)
        else:  # pragma: no cover - filtered earlier
            raise BadTar(f"{member!r}: unsupported member type {ti.type!r}")
        self.files += 1

    def regular(self, tf, ti, pfd: int, parts: tuple) -> None:
        name = parts[-1]
        try:
            fd = os.open(name, _O_NEW_FILE, 0o600, dir_fd=pfd)
        except FileExistsError:
            self.clear_name(pfd, parts)
            fd = os.open(name, _O_NEW_FILE, 0o600, dir_fd=pfd)
        try:
            if ti.sparse is not None:
                self.sparse(tf, ti, fd)
            elif ti.size:
                stream = tf.fileobj
                if stream.tell() == ti.offset_data:
                    src = stream        # contiguous data: skip two copies
                else:
                    src = tf.extractfile(ti)
                remaining = ti.size
                while remaining > 0:
                    buf = src.read(min(CHUNK, remaining))
                    if not buf:
                        raise BadTar(f"{ti.name!r}: unexpected end of data")
                    remaining -= len(buf)
                    view = memoryview(buf)
                    while view:
                        view = view[os.write(fd, view):]
                self.size += ti.size
            if self.chown:
                os.fchown(fd, ti.uid, ti.gid)
            os.fchmod(fd, ti.mode & 0o7777)
            for key, value in _xattrs(ti):
                try:
                    os.setxattr(fd, key, value)
                except OSError as e:
                    log.debug("setxattr %s on %s: %s", key, ti.name, e)
            mt = _mtime_ns(ti)
            os.utime(fd, ns=(mt, mt))
        finally:
            os.close(fd)

    def sparse(self, tf, ti, fd: int) -> None:
        """A GNU sparse member: its data chunks written at their offsets and
        the rest left as holes (ftruncate), so a 10 KB tar naming a 1 TB file
        costs 10 KB of disk, not 1 TB of zeros."""
        stream = tf.fileobj
        if stream.tell() != ti.offset_data:
            stream.seek(ti.offset_data)
        end = 0
        for offset, numbytes in ti.sparse:
            if numbytes == 0:
                continue    # GNU tar ends the map with (size, 0) and pads it with (0, 0)
            if offset < end or offset + numbytes > ti.size:
                raise BadTar(f"{ti.name!r}: sparse map out of order or past the file's size")
            end = offset + numbytes
            while numbytes > 0:
                buf = stream.read(min(CHUNK, numbytes))
                if not buf:
                    raise BadTar(f"{ti.name!r}: unexpected end of data")
                view = memoryview(buf)
                while view:
                    n = os.pwrite(fd, view, offset)
                    offset += n
                    view = view[n:]
                numbytes -= len(buf)
        os.ftruncate(fd, ti.size)
        self.size += ti.size

    def finish_node(self, pfd: int, name: str, ti, chmod: bool = True) -> None:
        if self.chown:
            os.chown(name, ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:
            _chmod_at(pfd, name, ti.mode & 0o7777)
        for key, value in _xattrs(ti):
            try:
                _setxattr_at(pfd, name, key, value)
            except OSError as e:
                log.debug("setxattr %s on %s: %s", key, ti.name, e)
        mt = _mtime_ns(ti)
        os.utime(name, ns=(mt, mt), dir_fd=pfd, follow_symlinks=False)

    def hardlink(self, ti, pfd: int, parts: tuple) -> None:
        member = ti.name
        target = _normalize(ti.linkname, "hardlink target", member)
        if not target:
            raise BadTar(f"{member!r}: hardlink to the root directory")
        if target == parts:
            return                      # a link to itself: nothing to do
        self.clear_name(pfd, parts)     # may invalidate cached fds below parts
        tpfd = self.dir_fd(target[:-1], member, create=False)
        tst = _lstat_at(tpfd, target[-1]) if tpfd is not None else None
        if tst is None:
            raise BadTar(f"{member!r}: hardlink target {ti.linkname!r} does not exist "
                         "in the destination")
        if stat.S_ISDIR(tst.st_mode):
            raise BadTar(f"{member!r}: hardlink target {ti.linkname!r} is a directory")
        pfd = self.dir_fd(parts[:-1], member)
        os.link(target[-1], parts[-1], src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)

    def whiteout(self, parts: tuple, ti) -> None:
        base = parts[-1]
        member = ti.name
        if base == WHITEOUT_OPAQUE:
            fd = self.dir_fd(parts[:-1], member)
            _setxattr_at(fd, None, OPAQUE_XATTR, b"y")
        elif base.startswith(WHITEOUT_META_PREFIX):
            log.debug("skipping aufs metadata entry %s", member)
            return
        else:
            real = base[len(WHITEOUT_PREFIX):]
            if real in ("", ".", ".."):
                raise BadTar(f"{member!r}: invalid whiteout name")
            target = parts[:-1] + (real,)
            pfd = self.dir_fd(parts[:-1], member)
            self.clear_name(pfd, target)
            os.mknod(real, stat.S_IFCHR, 0, dir_fd=pfd)
            if self.chown:
                os.chown(real, ti.uid, ti.gid, dir_fd=pfd, follow_symlinks=False)
        self.files += 1

    def finish_dirs(self) -> None:
        """Apply deferred directory attributes, deepest first, re-opening
        each directory with O_NOFOLLOW (a later member may have replaced it
        with something else)."""
        self.close()
        for parts in sorted(self.dirs, key=len, reverse=True):
            mode, uid, gid, mt, xattrs = self.dirs[parts]
            if parts:
                try:
                    pfd = self.dir_fd(parts[:-1], "/".join(parts), create=False)
                    fd = os.open(parts[-1], _O_DIR_READ, dir_fd=pfd) if pfd is not None else None
                except (OSError, BadTar):
                    fd = None
                if fd is None:
                    continue
            else:
                fd = os.dup(self.root_fd)
            try:
                if self.chown:
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                for key, value in xattrs:
                    try:
                        os.setxattr(fd, key, value)
                    except OSError as e:
                        log.debug("setxattr %s on %s: %s", key, "/".join(parts), e)
                os.utime(fd, ns=(mt, mt))
            finally:
                os.close(fd)
            self.trim()
        self.close()


def _check_member(ti: tarfile.TarInfo, max_header: int) -> None:
    if ti.type not in _SUPPORTED_TYPES:
        raise BadTar(f"{ti.name!r}: unsupported member type {ti.type!r}")
    if len(ti.name) > max_header or len(ti.linkname) > max_header:
        raise BadTar(f"{ti.name[:200]!r}...: name or link target exceeds {max_header} bytes")
    total = sum(len(k) + len(v) for k, v in ti.pax_headers.items())
    if total > max_header:
        raise BadTar(f"{ti.name!r}: PAX headers total {total} bytes, limit {max_header}")


def extract(fileobj: BinaryIO, dest: Union[str, os.PathLike], *,
            max_member_header: int = DEFAULT_MAX_MEMBER_HEADER,
            on_progress: Optional[Callable[[int], None]] = None,
            whiteouts: bool = True, replace_types: bool = True, root_attrs: bool = True,
            owner: Optional[Tuple[int, int]] = None, decompress: bool = True,
            split: Optional[BinaryIO] = None, max_bytes: Optional[int] = None) -> ExtractResult:
    """Apply the tar stream ``fileobj`` (raw, gzip, bzip2 or xz) to the
    existing directory ``dest``.

    The defaults apply an image layer. Copying into a container (docker cp)
    differs: ``whiteouts=False`` keeps ``.wh.`` names as ordinary files;
    ``replace_types=False`` refuses to replace a directory with a
    non-directory or the reverse (BadTar); ``root_attrs=False`` ignores a
    ``.`` member, leaving ``dest`` as it is; ``owner=(uid, gid)`` owns
    everything written by that user instead of the members' own ids.

    ``decompress=False`` takes the stream as a plain tar: for a stream that
    was decompressed already, whose first member's name may begin with a
    compression magic ("BZh...").

    ``on_progress(n)`` receives the number of bytes read so far from
    ``fileobj`` (compressed bytes if compressed), at most every ~1 MiB and
    once at the end.  On error the exception propagates and ``dest`` may
    hold a partial result: the caller removes it (see ``remove_tree``).

    ``max_bytes`` bounds the decompressed stream (BadTar past it): what is
    written is never more than what is read (sparse holes cost nothing), so
    no tar, however well it compresses, writes more than that.

    ``split``, a binary file open for writing, receives the tar split of
    the decompressed stream (fs/tarsplit.py): with it and ``dest``,
    tarsplit.write gives back the stream byte for byte.  Written only on
    success; temporary files go beside it (its directory, when it has a
    name) and are gone when this returns.
    """
    peek = fileobj if isinstance(fileobj, _Peekable) else _Peekable(fileobj, on_progress)
    hasher = _Hasher(_open_decompressed(peek) if decompress else peek)
    hasher.limit = max_bytes
    info_cls = _bounded_tarinfo_class(max_member_header)
    root_fd = os.open(os.fspath(dest), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ex = _Extractor(root_fd, whiteouts, replace_types, root_attrs)
    rec = None
    ti = None
    try:
        if split is not None:
            rec = ex.recorder = tarsplit.Recorder(split)
            hasher.on_data = rec.feed
        try:
            tf = tarfile.open(fileobj=hasher, mode="r|", tarinfo=info_cls)
        except tarfile.ReadError as e:
            raise BadTar(f"not a tar archive: {e}") from e
        while True:
            try:
                ti = tf.next()
            except tarfile.ReadError as e:
                after = f" after {ti.name!r}" if ti is not None else ""
                raise BadTar(f"corrupt tar{after}: {e}") from e
            if ti is None:
                break
            tf.members.clear()      # stream mode: do not accumulate members
            _check_member(ti, max_member_header)
            if owner is not None:
                ti.uid, ti.gid = owner
            ex.trim()
            try:
                ref = parts = None
                if rec is not None:
                    parts = ex.referenceable(ti)
                    ref = rec.member(ti.offset_data, ti.size if ti.isreg() else 0, tf.offset, parts)
                ex.apply(tf, ti)
                if ref is not None:
                    rec.register(parts, ref, ti.size)
            except BadTar:
                raise
            except tarfile.ReadError as e:
                raise BadTar(f"{ti.name!r}: {e}") from e
            except (OverflowError, ValueError) as e:
                raise BadTar(f"{ti.name!r}: {e}") from e
            except OSError as e:
                if e.errno in _HOST_ERRNOS:
                    raise
                raise BadTar(f"{ti.name!r}: {e.strerror or e}") from e
        end = info_cls.end_state["end"]
        if end in ("truncated", "invalid"):
            raise BadTar(f"tar stream is {end} (bad header after the last member)")
        if end == "empty":
            log.warning("tar stream has no end-of-archive marker")
        hasher.drain()
        ex.finish_dirs()
        hexdigest = hasher.hexdigest()
        if rec is not None:
            rec.finish(hasher.count, hexdigest)
    finally:
        ex.close()
        os.close(root_fd)
        hasher.close()
        if rec is not None:
            rec.close()
    peek.report()
    return ExtractResult(ex.size, ex.files, "sha256:" + hexdigest)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def tarinfo_from_stat(arcname: str, st: os.stat_result, *, linkname: str = "",
                      xattrs: Optional[dict] = None) -> tarfile.TarInfo:
    """Build a TarInfo for ``arcname`` from an lstat result.  ``linkname``
    is the symlink target for symlinks; ``xattrs`` maps name -> bytes."""
    ti = tarfile.TarInfo(arcname)
    mode = st.st_mode
    ti.mode = stat.S_IMODE(mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    if stat.S_ISREG(mode):
        ti.type, ti.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, linkname
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    else:
        raise ValueError(f"{arcname}: cannot archive a socket or unknown file type")
    for key, value in (xattrs or {}).items():
        ti.pax_headers[_XATTR_PAX_PREFIX + key] = value.decode("utf-8", "surrogateescape")
    return ti


Data = Union[None, bytes, str, os.PathLike, BinaryIO]


class _Exactly:
    """Reads exactly `size` bytes from `f`: zeros after an early EOF, or
    after a read error (the header is out already; sysfs files of a live
    container fail with EIO or EINVAL, and the archive must stay whole)."""

    def __init__(self, f, size):
        self._f, self._left = f, size

    def read(self, n=-1):
        if n is None or n < 0 or n > self._left:
            n = self._left
        try:
            data = (self._f.read(n) or b"") if n else b""
        except OSError as e:
            if e.errno in _HOST_ERRNOS - {errno.EIO}:
                raise
            log.debug("reading for the archive: %s; padding with zeros", e)
            data, self._f = b"", io.BytesIO(b"")
        if len(data) < n:
            data += bytes(n - len(data))
        self._left -= len(data)
        return data


def write_tar(out: BinaryIO, entries: Iterable[Tuple[tarfile.TarInfo, Data]]) -> None:
    """Write a PAX tar stream onto the writable binary ``out``.

    ``entries`` yields ``(tarinfo, data)`` pairs.  ``data`` is None for
    members without content, ``bytes``, a path (opened with O_NOFOLLOW only
    when it is written, so that a large iterator does not hold fds), or a
    readable binary file object.  A regular file that changed size while
    being archived is padded/truncated to the size recorded in tarinfo by
    tarfile (a shrunk file raises OSError).  ``out`` is not closed.
    """
    tf = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                      bufsize=CHUNK, copybufsize=CHUNK)
    # On error the end-of-archive marker is deliberately not written, so a
    # reader sees a truncated archive rather than a complete-looking one.
    for ti, data in entries:
        if not ti.isreg() or data is None:
            tf.addfile(ti)
        elif isinstance(data, bytes):
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        elif isinstance(data, (str, os.PathLike)):
            # A live container's files may vanish or shrink while we archive
            # them: skip what vanished and pad what shrank (as GNU tar does),
            # so the archive stays whole.
            try:
                # O_NONBLOCK: a live container may have put a FIFO there
                # since it was listed; opening that must not hang us.
                fd = os.open(data, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                # vanished, swapped for a symlink (ELOOP), or unreadable even
                # to root (some sysfs and securityfs files): left out, as
                # Docker's tarballer leaves out what it cannot add
                if e.errno not in (errno.ENOENT, errno.ELOOP, errno.EACCES, errno.EPERM, errno.ENXIO):
                    raise
                log.debug("left out of the archive: %s", e)
                continue
            with open(fd, "rb", buffering=0) as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    f = io.BytesIO(b"")    # no longer a file: zeros, as for a shrunk one
                tf.addfile(ti, _Exactly(f, ti.size))
        else:
            tf.addfile(ti, data)
        tf.members.clear()          # do not accumulate TarInfo objects
    tf.close()
