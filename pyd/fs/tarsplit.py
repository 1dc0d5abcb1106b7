"""Tar splits: what it takes to give back a layer's tar byte for byte.

A layer is stored extracted (fs/tarsafe.py); its diff id is the sha256 of
the tar as it arrived. To send that tar again (push, save) pyd keeps, next
to the layer, the tar's *split*: every byte of the decompressed stream that
is not the content of a regular file (headers, GNU long names, PAX records,
padding, end blocks, whatever trails them), plus references to the regular
files' contents, which are in the layer directory already. Docker's
tar-split does the same.

Format (version 1): a gzip stream of

    MAGIC                        b"pyd-tar-split\\0" + version byte 1
    b"R" <n> <n bytes>           raw bytes of the tar, as they were
    b"F" <n> <path> <size>       the next <size> bytes are the content of the
                                 regular file <path> (n bytes, normalized:
                                 relative, "/"-separated, no "." or "..")
                                 in the layer directory
    b"E" <size> <32 bytes>       end: the tar's length and sha256

where <n> and <size> are unsigned LEB128 varints. A payload that the layer
directory does not hold as it was in the tar (a name that comes again later
in the tar and so holds the later content, a sparse file, a whiteout with
data, ...) is kept as raw bytes.

* ``Recorder`` -- made by tarsafe.extract(split=...): fed the decompressed
  stream and told about each member; writes the split.
* ``write(split_path, layer_dir, out, digest=None)`` -- replay: the tar
  onto ``out``, checked against the split's sha256 (and ``digest`` when
  given) before its last bytes go out. Files are opened below the layer
  directory component by component with O_NOFOLLOW.
* ``records(split_path)`` -- what a split holds (tests, debugging).
* ``CheckedWriter`` -- the hold-back-and-verify writer write() uses (also
  for regenerated tars, store/layers.py).

Errors while replaying are errors.PydError (the split or the layer does not
give back the tar it should).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
import zlib
from typing import BinaryIO, Callable, Dict, List, Optional, Tuple

from .. import errors

MAGIC = b"pyd-tar-split\0\x01"
CHUNK = 1 << 20
_LEVEL = 1                      # headers compress ~10x even at level 1

_O_DIR = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class SplitError(errors.PydError):
    """A split that cannot be replayed, or a replay that would not give the tar."""


# --------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class _GzipOut:
    """A gzip stream onto a binary file, written with zlib directly."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self._z = zlib.compressobj(_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def write(self, data) -> None:
        out = self._z.compress(data)
        if out:
            self._f.write(out)

    def close(self) -> None:
        self._f.write(self._z.flush())


class _GzipIn:
    """Exact reads from a gzip stream (one member; trailing bytes refused)."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._buf = b""
        self._off = 0

    def _more(self) -> bool:
        while True:
            if self._z.eof:
                return False
            tail = self._z.unconsumed_tail
            data = tail or self._f.read(1 << 16)
            if not data:
                raise SplitError("tar split is truncated")
            try:
                out = self._z.decompress(data, CHUNK)
            except zlib.error as e:
                raise SplitError(f"tar split is corrupt: {e}") from e
            if out:
                self._buf = self._buf[self._off:] + out
                self._off = 0
                return True

    def read(self, n: int) -> bytes:
        """Up to n bytes (fewer only at the end of the stream)."""
        while len(self._buf) - self._off < n:
            if not self._more():
                break
        data = self._buf[self._off:self._off + n]
        self._off += len(data)
        return data

    def exact(self, n: int) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise SplitError("tar split is truncated")
        return data

    def varint(self) -> int:
        n = shift = 0
        for _ in range(10):
            b = self.exact(1)[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7
        raise SplitError("tar split is corrupt: bad number")

    def at_end(self) -> bool:
        if self.read(1):
            return False
        return not self._z.unused_data and not self._f.read(1)


class _Records:
    """Writes records onto a gzip stream; raw bytes are batched."""

    def __init__(self, f: BinaryIO):
        self._gz = _GzipOut(f)
        self._gz.write(MAGIC)
        self._raw: List[bytes] = []
        self._raw_len = 0
        self.refs = 0                   # F records written

    def raw(self, data) -> None:
        if not data:
            return
        self._raw.append(bytes(data))
        self._raw_len += len(data)
        if self._raw_len >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._raw_len:
            data = b"".join(self._raw)
            self._gz.write(b"R" + _varint(len(data)))
            self._gz.write(data)
            self._raw, self._raw_len = [], 0

    def ref(self, path: bytes, size: int) -> int:
        self._flush()
        self._gz.write(b"F" + _varint(len(path)) + path + _varint(size))
        self.refs += 1
        return self.refs - 1

    def end(self, size: int, sha: bytes) -> None:
        self._flush()
        self._gz.write(b"E" + _varint(size) + sha)
        self._gz.close()


def _read_records(gz: _GzipIn):
    """Yield ("R", bytes) / ("F", path bytes, size) / ("E", size, sha)."""
    if gz.read(len(MAGIC)) != MAGIC:
        raise SplitError("not a pyd tar split (or an unknown version)")
    while True:
        tag = gz.exact(1)
        if tag == b"R":
            n = gz.varint()
            while n:
                piece = gz.exact(min(n, CHUNK))
                n -= len(piece)
                yield ("R", piece)
        elif tag == b"F":
            path = gz.exact(gz.varint())
            yield ("F", path, gz.varint())
        elif tag == b"E":
            size = gz.varint()
            sha = gz.exact(32)
            if not gz.at_end():
                raise SplitError("tar split has data after its end")
            yield ("E", size, sha)
            return
        else:
            raise SplitError(f"tar split is corrupt: record {tag!r}")


def records(split_path):
    """What a split holds, for tests and debugging: ("R", n bytes),
    ("F", path, size) and ("E", size, "sha256:<hex>") in order."""
    with open(split_path, "rb") as f:
        for rec in _read_records(_GzipIn(f)):
            if rec[0] == "R":
                yield ("R", len(rec[1]))
            elif rec[0] == "F":
                yield ("F", os.fsdecode(rec[1]), rec[2])
            else:
                yield ("E", rec[1], "sha256:" + rec[2].hex())


# --------------------------------------------------------------------------
# recording
# --------------------------------------------------------------------------

class Recorder:
    """Records the split of one tar stream while tarsafe extracts it.

    tarsafe calls ``feed(data)`` with every decompressed byte in order
    (tarfile reads ahead, so bytes arrive before the member they belong to
    is known), ``member(offset_data, size, next_offset, path)`` when
    tarfile returns a member (``path`` is the normalized name when its
    payload may be referenced, else None), ``cleared(parts, is_dir, open_file)``
    before extraction removes something (so a referenced file about to be
    replaced is copied aside first), and ``finish(size, sha)`` at the end.
    Bytes wait in memory only between the last member's end and what has
    been read ahead (bounded by the reading chunk plus one header).

    The records go to a temporary file first: a payload referenced early may
    have to be turned into raw bytes when a later member replaces its file.
    ``finish`` writes the split onto ``out``.
    """

    def __init__(self, out: BinaryIO, tmp_dir: Optional[str] = None):
        self._out = out
        if tmp_dir is None:
            name = getattr(out, "name", None)
            if isinstance(name, str) and os.path.isabs(name):
                tmp_dir = os.path.dirname(name)
        self._tmp_dir = tmp_dir
        self._rec_file = tempfile.TemporaryFile(dir=tmp_dir)
        self._rec = _Records(self._rec_file)
        self._buf = bytearray()     # stream bytes; _buf[_start:] are from self._base on
        self._start = 0
        self._base = 0              # stream offset of _buf[_start]
        self._settled = 0           # no payload to reference starts below this offset
        self._fed = 0               # stream bytes seen
        self._skip = 0              # bytes below this offset are referenced payload
        self._live: Dict[tuple, Tuple[int, int]] = {}   # parts -> (ref index, size)
        self._spill_file = None
        self._spills: Dict[int, Tuple[int, int]] = {}   # ref index -> (offset, size)
        self._spill_len = 0

    # -- the stream ----------------------------------------------------
    def feed(self, data: bytes) -> None:
        start = self._fed
        self._fed += len(data)
        if self._fed <= self._skip:
            return
        if start < self._skip:
            data = memoryview(data)[self._skip - start:]
            start = self._skip
        if self._start == len(self._buf):
            self._buf.clear()
            self._start = 0
            self._base = start
        elif self._start >= CHUNK:
            del self._buf[:self._start]
            self._start = 0
        self._buf += data
        if self._base < self._settled:
            self._emit_raw_until(self._settled)     # a long inline payload: no need to hold it

    def _drop(self, n: int) -> None:
        self._start += n
        self._base += n

    def _emit_raw_until(self, offset: int) -> None:
        """Everything buffered below ``offset`` goes out as raw bytes."""
        n = min(offset, self._fed) - self._base
        if n > 0:
            with memoryview(self._buf) as view:
                self._rec.raw(view[self._start:self._start + n])
            self._drop(n)

    def member(self, offset_data: int, size: int, next_offset: int,
               parts: Optional[tuple]) -> Optional[int]:
        """A member whose payload is [offset_data, offset_data + size) and
        after which the next header begins at ``next_offset``. Returns the
        reference index when the payload is referenced (``parts`` given and
        the bytes not yet written out), else None; register() it once the
        file is in place."""
        ref = None
        if parts is not None and size > 0 and offset_data >= self._base:
            self._emit_raw_until(offset_data)
            path = "/".join(parts).encode("utf-8", "surrogateescape")
            ref = self._rec.ref(path, size)
            end = offset_data + size
            # drop the payload bytes read ahead already; skip the rest as it comes
            if self._fed >= end:
                self._drop(end - self._base)
            else:
                self._buf.clear()
                self._start = 0
                self._base = end
            self._skip = end
        self._settled = max(self._settled, next_offset)
        self._emit_raw_until(next_offset)
        return ref

    def register(self, parts: tuple, ref: int, size: int) -> None:
        self._live[parts] = (ref, size)

    # -- replaced files ----------------------------------------------------
    def cleared(self, parts: tuple, is_dir: bool,
                open_file: Callable[[tuple], int]) -> None:
        """Extraction is about to remove ``parts`` (a directory and all below
        it when ``is_dir``). Referenced files there are copied aside, to be
        written into the split as raw bytes."""
        if not self._live:
            return
        if is_dir:
            n = len(parts)
            hit = [p for p in self._live if len(p) > n and p[:n] == parts]
        else:
            hit = [parts] if parts in self._live else []
        for p in hit:
            ref, size = self._live.pop(p)
            self._spill(ref, size, open_file(p))

    def _spill(self, ref: int, size: int, fd: int) -> None:
        try:
            if self._spill_file is None:
                self._spill_file = tempfile.TemporaryFile(dir=self._tmp_dir)
            offset = self._spill_len
            left = size
            while left:
                data = os.read(fd, min(CHUNK, left))
                if not data:
                    raise OSError(errno.EIO, "extracted file shrank while extracting")
                self._spill_file.write(data)
                left -= len(data)
        finally:
            os.close(fd)
        self._spills[ref] = (offset, size)
        self._spill_len += size

    # -- the end -------------------------------------------------------
    def finish(self, size: int, sha_hex: str) -> None:
        if size != self._fed:
            raise ValueError(f"tar split: {self._fed} bytes recorded of {size}")
        self._emit_raw_until(self._fed)
        self._rec.end(size, bytes.fromhex(sha_hex))
        self._rec_file.flush()
        self._rec_file.seek(0)
        if not self._spills:
            while True:
                data = self._rec_file.read(CHUNK)
                if not data:
                    break
                self._out.write(data)
        else:
            self._rewrite()
        self._out.flush()
        self.close()

    def _rewrite(self) -> None:
        """Copy the records onto the output, the spilled references as raw."""
        self._spill_file.flush()
        out = _Records(self._out)
        index = 0
        for rec in _read_records(_GzipIn(self._rec_file)):
            if rec[0] == "R":
                out.raw(rec[1])
            elif rec[0] == "F":
                spilled = self._spills.get(index)
                if spilled is None:
                    out.ref(rec[1], rec[2])
                else:
                    offset, left = spilled
                    self._spill_file.seek(offset)
                    while left:
                        data = self._spill_file.read(min(CHUNK, left))
                        if not data:
                            raise OSError(errno.EIO, "tar split: spill file is short")
                        out.raw(data)
                        left -= len(data)
                index += 1
            else:
                out.end(rec[1], rec[2])

    def close(self) -> None:
        for f in (self._rec_file, self._spill_file):
            if f is not None:
                f.close()
        self._spill_file = None


# --------------------------------------------------------------------------
# replaying
# --------------------------------------------------------------------------

class CheckedWriter:
    """Writes onto ``out`` while hashing, always holding the latest piece
    back: ``finish(expect)`` checks the sha256 (and the length) and only
    then lets the last piece go, so a reader never gets a complete-looking
    tar whose digest is wrong."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._sha = hashlib.sha256()
        self._held = b""
        self.count = 0

    def write(self, data) -> int:
        if not data:
            return 0
        data = bytes(data)
        self._sha.update(data)
        self.count += len(data)
        if self._held:
            self._out.write(self._held)
        self._held = data
        return len(data)

    def flush(self) -> None:
        pass

    def digest(self) -> str:
        return "sha256:" + self._sha.hexdigest()

    def finish(self, expect: Optional[str], what: str = "tar") -> str:
        got = self.digest()
        if expect is not None and got != expect:
            raise SplitError(f"{what}: sha256 mismatch (got {got}, want {expect})")
        if self._held:
            self._out.write(self._held)
            self._held = b""
        flush = getattr(self._out, "flush", None)
        if flush is not None:
            flush()
        return got


def _check_path(path: bytes) -> Tuple[str, ...]:
    if not path or b"\0" in path:
        raise SplitError("tar split is corrupt: bad path")
    parts = tuple(os.fsdecode(path).split("/"))
    if any(p in ("", ".", "..") for p in parts):
        raise SplitError("tar split is corrupt: bad path")
    return parts


class _Payloads:
    """Opens files below a layer directory without following any symlink;
    keeps the fd of the last directory used."""

    def __init__(self, root: str):
        self._root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dir: Tuple[tuple, Optional[int]] = ((), None)

    def open(self, parts: tuple) -> int:
        where = "/".join(parts)
        dparts = parts[:-1]
        if self._dir[0] != dparts or (dparts and self._dir[1] is None):
            self._close_dir()
            fd = None
            try:
                base = self._root
                for comp in dparts:
                    nfd = os.open(comp, _O_DIR, dir_fd=base)
                    if fd is not None:
                        os.close(fd)
                    fd = base = nfd
            except OSError as e:
                if fd is not None:
                    os.close(fd)
                raise SplitError(f"payload {where!r} cannot be opened in the layer: {e.strerror}") from e
            self._dir = (dparts, fd)
        base = self._dir[1] if dparts else self._root
        try:
            return os.open(parts[-1], _O_FILE, dir_fd=base)
        except OSError as e:
            raise SplitError(f"payload {where!r} cannot be opened in the layer: {e.strerror}") from e

    def _close_dir(self) -> None:
        if self._dir[1] is not None:
            os.close(self._dir[1])
        self._dir = ((), None)

    def close(self) -> None:
        self._close_dir()
        os.close(self._root)


def _copy_payload(fd: int, size: int, out: CheckedWriter, where: str) -> None:
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SplitError(f"payload {where!r} is no longer a regular file")
        if st.st_size != size:
            raise SplitError(f"payload {where!r} changed: {st.st_size} bytes, the tar had {size}")
        left = size
        while left:
            data = os.read(fd, min(CHUNK, left))
            if not data:
                raise SplitError(f"payload {where!r} changed: shorter than {size} bytes")
            out.write(data)
            left -= len(data)
    finally:
        os.close(fd)


def write(split_path, layer_dir, out: BinaryIO, digest: Optional[str] = None) -> str:
    """Write the tar recorded in ``split_path`` onto ``out``, payloads read
    from ``layer_dir``. Returns its digest ("sha256:<hex>"). Raises
    SplitError (a PydError) when the split is damaged, a payload file is
    missing or changed, or the bytes do not hash to the split's digest (or
    to ``digest``): the last piece is then never written."""
    checked = CheckedWriter(out)
    with open(split_path, "rb") as f:
        payloads = _Payloads(os.fspath(layer_dir))
        try:
            for rec in _read_records(_GzipIn(f)):
                if rec[0] == "R":
                    checked.write(rec[1])
                elif rec[0] == "F":
                    parts = _check_path(rec[1])
                    _copy_payload(payloads.open(parts), rec[2], checked, "/".join(parts))
                else:
                    size, sha = rec[1], rec[2]
                    if checked.count != size:
                        raise SplitError(f"tar split gives {checked.count} bytes, not {size}")
                    want = "sha256:" + sha.hex()
                    if digest is not None and digest != want:
                        raise SplitError(f"tar split is of {want}, not of {digest}")
                    return checked.finish(want, "tar from split")
        finally:
            payloads.close()
    raise SplitError("tar split has no end")  # pragma: no cover - _read_records ends with E
