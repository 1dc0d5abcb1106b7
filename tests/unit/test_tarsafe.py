"""tarsafe: hostile tar streams, real files, real tar streams.

Needs root (mknod, trusted.* xattrs, chown), as CI and the test command run.
"""

import bz2
import gzip
import hashlib
import io
import lzma
import os
import random
import stat
import tarfile

import pytest

from pyd.fs import tarsafe
from pyd.fs.tarsafe import BadTar



# -- helpers ---------------------------------------------------------------

def member(name, type=tarfile.REGTYPE, data=b"", mode=0o644, linkname="", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.mode = mode
    ti.linkname = linkname
    ti.mtime = kw.pop("mtime", 1_600_000_000)
    for k, v in kw.items():
        setattr(ti, k, v)
    if type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        ti.size = len(data)
    return ti, data


def make_tar(members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def extract_bytes(raw, dest, **kw):
    return tarsafe.extract(io.BytesIO(raw), str(dest), **kw)


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "dest"
    d.mkdir()
    return d


@pytest.fixture
def canary(tmp_path):
    c = tmp_path / "canary"
    c.mkdir()
    (c / "file").write_text("original")
    return c


def snapshot(path):
    out = {}
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


class NonSeekable:
    """Only read(); returns short, random-sized chunks like a socket."""

    def __init__(self, data):
        self._data = data
        self._pos = 0
        self._rnd = random.Random(42)

    def read(self, n=-1):
        if n is None or n < 0:
            n = len(self._data)
        n = min(n, self._rnd.randint(1, 70000))
        chunk = self._data[self._pos:self._pos + n]
        self._pos += len(chunk)
        return chunk


# -- escapes ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "./../evil", "/../evil"])
def test_dotdot_member_refused(tmp_path, dest, name):
    raw = make_tar([member(name, data=b"x")])
    with pytest.raises(BadTar, match="escapes"):
        extract_bytes(raw, dest)
    assert not (tmp_path / "evil").exists()


def test_dotdot_inside_is_resolved_lexically(dest):
    raw = make_tar([member("a/b/../c", data=b"x")])
    extract_bytes(raw, dest)
    assert (dest / "a" / "c").read_bytes() == b"x"
    assert not (dest / "a" / "b").exists()


def test_absolute_member_is_made_relative(dest):
    raw = make_tar([member("/etc/x", data=b"hello")])
    res = extract_bytes(raw, dest)
    assert (dest / "etc" / "x").read_bytes() == b"hello"
    assert res.size == 5 and res.files == 1


def test_symlink_then_write_through_it(dest, canary):
    before = snapshot(canary)
    raw = make_tar([
        member("evil", tarfile.SYMTYPE, linkname=str(canary)),
        member("evil/pwned", data=b"owned"),
    ])
    with pytest.raises(BadTar, match="symlink"):
        extract_bytes(raw, dest)
    assert snapshot(canary) == before
    assert not (canary / "pwned").exists()
    # the symlink itself was created as-is, not resolved
    assert os.readlink(dest / "evil") == str(canary)


def test_symlink_overwrite_file_through_it(dest, canary):
    before = snapshot(canary)
    raw = make_tar([
        member("evil", tarfile.SYMTYPE, linkname=str(canary)),
        member("evil/file", data=b"owned"),
    ])
    with pytest.raises(BadTar):
        extract_bytes(raw, dest)
    assert (canary / "file").read_text() == "original"
    assert snapshot(canary) == before


def test_regular_file_replaces_symlink_without_following(dest, canary):
    raw = make_tar([
        member("x", tarfile.SYMTYPE, linkname=str(canary / "file")),
        member("x", data=b"new"),
    ])
    extract_bytes(raw, dest)
    assert (canary / "file").read_text() == "original"
    assert not os.path.islink(dest / "x")
    assert (dest / "x").read_bytes() == b"new"


def test_symlink_to_parent(tmp_path, dest):
    before = sorted(os.listdir(tmp_path))
    raw = make_tar([
        member("a", tarfile.SYMTYPE, linkname=".."),
        member("a/x", data=b"escaped"),
    ])
    with pytest.raises(BadTar, match="'a'"):
        extract_bytes(raw, dest)
    assert sorted(os.listdir(tmp_path)) == before
    assert not (tmp_path / "x").exists()


def test_hardlink_to_absolute_host_path_refused(dest):
    raw = make_tar([member("pw", tarfile.LNKTYPE, linkname="/etc/passwd")])
    with pytest.raises(BadTar, match="does not exist"):
        extract_bytes(raw, dest)
    assert not (dest / "pw").exists()


def test_hardlink_escaping_refused(tmp_path, dest):
    (tmp_path / "outside").write_text("secret")
    raw = make_tar([member("ln", tarfile.LNKTYPE, linkname="../outside")])
    with pytest.raises(BadTar, match="escapes"):
        extract_bytes(raw, dest)
    assert os.stat(tmp_path / "outside").st_nlink == 1


def test_hardlink_through_symlink_refused(dest, canary):
    raw = make_tar([
        member("evil", tarfile.SYMTYPE, linkname=str(canary)),
        member("ln", tarfile.LNKTYPE, linkname="evil/file"),
    ])
    with pytest.raises(BadTar):
        extract_bytes(raw, dest)
    assert os.stat(canary / "file").st_nlink == 1


def test_hardlink_inside_and_overwrite_semantics(dest):
    raw = make_tar([
        member("a", data=b"one"),
        member("dir/b", tarfile.LNKTYPE, linkname="/a"),
        member("c", tarfile.LNKTYPE, linkname="a"),
        member("c", data=b"two"),            # replaces the link, not the inode
    ])
    extract_bytes(raw, dest)
    assert os.stat(dest / "a").st_ino == os.stat(dest / "dir" / "b").st_ino
    assert (dest / "a").read_bytes() == b"one"
    assert (dest / "c").read_bytes() == b"two"


# -- header bounds ---------------------------------------------------------

def test_huge_pax_name_refused(dest):
    raw = make_tar([member("d/" + "a" * 100 + "/" * 0 + "x" * 100_000, data=b"")])
    with pytest.raises(BadTar, match="exceeds"):
        extract_bytes(raw, dest)
    assert os.listdir(dest) == []


def test_huge_gnu_longname_refused(dest):
    raw = make_tar([member("y" * 70_000, data=b"")], fmt=tarfile.GNU_FORMAT)
    with pytest.raises(BadTar, match="exceeds"):
        extract_bytes(raw, dest)


def test_long_component_and_path_refused(dest):
    with pytest.raises(BadTar, match="255"):
        extract_bytes(make_tar([member("a/" + "b" * 256, data=b"")]), dest)
    deep = "/".join(["c" * 100] * 45)       # ~4.5 KB, under the header limit
    with pytest.raises(BadTar, match="4096"):
        extract_bytes(make_tar([member(deep, data=b"")]), dest)


def test_unknown_member_type_refused(dest):
    ti, data = member("weird", type=b"Z", data=b"")
    raw = make_tar([(ti, data)])
    with pytest.raises(BadTar, match="unsupported"):
        extract_bytes(raw, dest)


# -- special files and whiteouts -------------------------------------------

def test_device_and_fifo_created_inside(dest):
    raw = make_tar([
        member("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        member("dev/loop9", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=9),
        member("run/fifo", tarfile.FIFOTYPE, mode=0o620),
    ])
    extract_bytes(raw, dest)
    st = os.lstat(dest / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == 0o666
    st = os.lstat(dest / "dev" / "loop9")
    assert stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(7, 9)
    st = os.lstat(dest / "run" / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o620


def test_file_replacing_device_does_not_write_into_it(dest):
    raw = make_tar([
        member("x", tarfile.CHRTYPE, devmajor=1, devminor=3),
        member("x", data=b"data"),
    ])
    extract_bytes(raw, dest)
    assert stat.S_ISREG(os.lstat(dest / "x").st_mode)
    assert (dest / "x").read_bytes() == b"data"


def test_old_style_whiteouts_translated(dest):
    raw = make_tar([
        member("etc/", tarfile.DIRTYPE, mode=0o755),
        member("etc/gone", data=b"x"),
        member("etc/.wh.gone"),
        member("etc/.wh.never-existed"),
        member("var/cache/.wh..wh..opq"),
        member("opq/", tarfile.DIRTYPE, mode=0o700),
        member("opq/.wh..wh..opq"),
        member("x/.wh..wh.plnk"),                 # aufs metadata: ignored
    ])
    extract_bytes(raw, dest)
    for name in ("etc/gone", "etc/never-existed"):
        st = os.lstat(dest / name)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not any(n.startswith(".wh.") for n in os.listdir(dest / "etc"))
    assert os.getxattr(dest / "var" / "cache", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert os.listdir(dest / "opq") == []
    assert not (dest / "x" / ".wh..wh.plnk").exists()


def test_tar_cannot_set_overlay_xattrs_directly(dest):
    ti, data = member("d", tarfile.DIRTYPE)
    ti.pax_headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc",
                      "SCHILY.xattr.user.ok": "yes"}
    extract_bytes(make_tar([(ti, data)]), dest)
    assert os.getxattr(dest / "d", "user.ok") == b"yes"
    with pytest.raises(OSError):
        os.getxattr(dest / "d", "trusted.overlay.redirect")


# -- metadata --------------------------------------------------------------

def test_modes_owners_xattrs_symlinks(dest):
    f, fd = member("bin/su", data=b"#!", mode=0o4755, uid=1000, gid=1001, mtime=1234567890)
    f.pax_headers = {"SCHILY.xattr.user.k": "v\udcff"}      # binary value
    raw = make_tar([
        (f, fd),
        member("link", tarfile.SYMTYPE, linkname="/abs/target", uid=5, gid=6),
    ])
    extract_bytes(raw, dest)
    st = os.lstat(dest / "bin" / "su")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert st.st_mtime == 1234567890
    assert os.getxattr(dest / "bin" / "su", "user.k") == b"v\xff"
    st = os.lstat(dest / "link")
    assert os.readlink(dest / "link") == "/abs/target"
    assert (st.st_uid, st.st_gid) == (5, 6)
    assert st.st_mtime == 1_600_000_000


def test_directory_mtimes_restored(dest):
    raw = make_tar([
        member("./", tarfile.DIRTYPE, mode=0o755, mtime=1_000_000_000),
        member("d/", tarfile.DIRTYPE, mode=0o750, mtime=1_100_000_000),
        member("d/sub/", tarfile.DIRTYPE, mode=0o555, mtime=1_200_000_000),
        member("d/sub/f", data=b"x", mtime=1_300_000_000),
        member("d/g", data=b"y"),
    ])
    extract_bytes(raw, dest)
    assert os.stat(dest).st_mtime == 1_000_000_000
    assert os.stat(dest / "d").st_mtime == 1_100_000_000
    assert stat.S_IMODE(os.stat(dest / "d").st_mode) == 0o750
    assert os.stat(dest / "d" / "sub").st_mtime == 1_200_000_000
    assert stat.S_IMODE(os.stat(dest / "d" / "sub").st_mode) == 0o555
    assert os.stat(dest / "d" / "sub" / "f").st_mtime == 1_300_000_000


def test_pax_subsecond_mtime(dest):
    ti, data = member("f", data=b"")
    ti.pax_headers = {"mtime": "1500000000.123456789"}
    extract_bytes(make_tar([(ti, data)]), dest)
    assert os.stat(dest / "f").st_mtime_ns == 1_500_000_000_123_456_789


def test_file_replaces_dir_and_dir_replaces_file(dest):
    raw = make_tar([
        member("a/", tarfile.DIRTYPE),
        member("a/child/", tarfile.DIRTYPE),
        member("a/child/f", data=b"1"),
        member("a", data=b"now a file"),          # dir -> file
        member("b", data=b"file"),
        member("b/", tarfile.DIRTYPE, mode=0o711),  # file -> dir
        member("b/in", data=b"2"),
        member("c/", tarfile.DIRTYPE),
        member("c/x", data=b"3"),
        member("c/", tarfile.DIRTYPE, mode=0o700),  # dir -> dir: merged
    ])
    extract_bytes(raw, dest)
    assert (dest / "a").read_bytes() == b"now a file"
    assert os.path.isdir(dest / "b") and (dest / "b" / "in").read_bytes() == b"2"
    assert stat.S_IMODE(os.stat(dest / "b").st_mode) == 0o711
    assert (dest / "c" / "x").read_bytes() == b"3"
    assert stat.S_IMODE(os.stat(dest / "c").st_mode) == 0o700


def test_component_is_a_file_refused(dest):
    raw = make_tar([member("f", data=b"x"), member("f/g", data=b"y")])
    with pytest.raises(BadTar, match="not a directory"):
        extract_bytes(raw, dest)


# -- stream handling -------------------------------------------------------

SAMPLE_SIZE = 1_500_017


def sample_tar():
    return make_tar([
        member("dir/", tarfile.DIRTYPE),
        # more than one 1 MiB chunk, so several decompressor calls
        member("dir/a", data=random.Random(1).randbytes(SAMPLE_SIZE)),
        member("dir/b", data=b"hello"),
    ])


@pytest.mark.parametrize("compress", [
    lambda b: b, gzip.compress, bz2.compress,
    lambda b: lzma.compress(b, format=lzma.FORMAT_XZ, preset=0),
], ids=["identity", "gzip", "bzip2", "xz"])
def test_compression_detection_and_digest(dest, compress):
    raw = sample_tar()
    res = tarsafe.extract(io.BytesIO(compress(raw)), str(dest))
    assert res.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert res.size == SAMPLE_SIZE + 5
    assert (dest / "dir" / "b").read_bytes() == b"hello"
    assert tarsafe.open_decompressed(io.BytesIO(compress(raw))).read() == raw


def test_concatenated_gzip_members():
    raw = sample_tar()
    data = gzip.compress(raw[:5000]) + gzip.compress(raw[5000:])
    assert tarsafe.open_decompressed(NonSeekable(data)).read() == raw


def test_digest_covers_trailing_padding(dest):
    raw = sample_tar() + b"\0" * 4096          # extra zero records after the end
    res = extract_bytes(raw, dest)
    assert res.digest == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_non_seekable_source(dest):
    raw = sample_tar()
    for src in (NonSeekable(raw), NonSeekable(gzip.compress(raw))):
        d = dest / str(id(src))
        d.mkdir()
        res = tarsafe.extract(src, str(d))
        assert res.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert (d / "dir" / "b").read_bytes() == b"hello"


@pytest.mark.parametrize("where", ["first-header", "data", "second-header"])
def test_truncated_tar_raises(dest, where):
    raw = make_tar([member("a", data=os.urandom(1_000_000)), member("b", data=b"x")])
    cut = {"first-header": 300,
           "data": 600_000,
           "second-header": raw.index(b"b\0", 1_000_000) + 100}[where]
    with pytest.raises(BadTar):
        extract_bytes(raw[:cut], dest)


def test_garbage_header_after_first_member_raises(dest):
    raw = bytearray(make_tar([member("a", data=b"x" * 10), member("b", data=b"y")]))
    raw[1024:1536] = b"\x07" * 512          # second header: bad checksum
    with pytest.raises(BadTar, match="invalid"):
        extract_bytes(bytes(raw), dest)


def test_missing_end_marker_is_accepted(dest):
    raw = make_tar([member("a", data=b"x" * 10)])
    res = extract_bytes(raw[:1024], dest)      # header + data, no zero blocks
    assert (dest / "a").read_bytes() == b"x" * 10
    assert res.digest == "sha256:" + hashlib.sha256(raw[:1024]).hexdigest()


def test_truncated_gzip_raises(dest):
    raw = gzip.compress(sample_tar())
    with pytest.raises(BadTar):
        extract_bytes(raw[: len(raw) // 2], dest)


def test_garbage_and_empty_input(dest):
    with pytest.raises(BadTar):
        extract_bytes(b"this is not a tar file at all" * 40, dest)
    with pytest.raises(BadTar):
        extract_bytes(b"", dest)
    res = extract_bytes(make_tar([]), dest)        # a valid empty archive
    assert res.files == 0 and res.size == 0


def test_progress_reported(dest):
    raw = make_tar([member("big", data=os.urandom(5 * 1024 * 1024))])
    seen = []
    tarsafe.extract(io.BytesIO(raw), str(dest), on_progress=seen.append)
    assert seen and seen[-1] == len(raw)
    assert seen == sorted(seen)
    assert len(seen) <= len(raw) // (1 << 20) + 2


# -- remove_tree and write_tar ---------------------------------------------

def test_remove_tree_odd_modes_and_symlinks(tmp_path, canary):
    t = tmp_path / "t"
    (t / "a" / "b").mkdir(parents=True)
    (t / "a" / "b" / "f").write_text("x")
    os.symlink(canary, t / "a" / "link")
    os.symlink(canary / "file", t / "flink")
    os.chmod(t / "a" / "b", 0)
    os.chmod(t / "a", 0)
    fd = os.open(t, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):                       # deeper than the recursion limit
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(fd)
    tarsafe.remove_tree(t)
    assert not t.exists()
    assert (canary / "file").read_text() == "original"
    tarsafe.remove_tree(t)                       # missing: no error


def test_write_tar_roundtrip(tmp_path, dest):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(2 * 1024 * 1024))
    ti_file = tarfile.TarInfo("data/big")
    ti_file.size = src.stat().st_size
    ti_b = tarfile.TarInfo("data/small")
    ti_d = tarfile.TarInfo("data")
    ti_d.type = tarfile.DIRTYPE
    ti_d.mode = 0o755
    out = io.BytesIO()
    tarsafe.write_tar(out, [(ti_d, None), (ti_file, str(src)), (ti_b, b"abc")])
    extract_bytes(out.getvalue(), dest)
    assert (dest / "data" / "big").read_bytes() == src.read_bytes()
    assert (dest / "data" / "small").read_bytes() == b"abc"


# -- docker cp options -------------------------------------------------------

def test_cp_options_keep_whiteout_names_as_files(tmp_path):
    (tmp_path / "x").write_text("x")
    tarsafe.extract(io.BytesIO(make_tar([member(".wh.x", data=b"w"),
                                         member(".wh..wh..opq", data=b"o")])),
                    tmp_path, whiteouts=False)
    assert (tmp_path / "x").read_text() == "x"
    assert (tmp_path / ".wh.x").read_bytes() == b"w"
    assert (tmp_path / ".wh..wh..opq").read_bytes() == b"o"


@pytest.mark.parametrize("existing,incoming", [("dir", "file"), ("file", "dir"), ("dir", "symlink")])
def test_cp_options_refuse_type_replacement(tmp_path, existing, incoming):
    if existing == "dir":
        (tmp_path / "n").mkdir()
        (tmp_path / "n" / "kept").write_text("k")
    else:
        (tmp_path / "n").write_text("k")
    m = {"file": member("n", data=b"f"), "dir": member("n", tarfile.DIRTYPE, mode=0o755),
         "symlink": member("n", tarfile.SYMTYPE, linkname="/")}[incoming]
    with pytest.raises(BadTar, match="cannot overwrite"):
        tarsafe.extract(io.BytesIO(make_tar([m])), tmp_path, replace_types=False)
    assert (tmp_path / "n").is_dir() == (existing == "dir")
    tarsafe.extract(io.BytesIO(make_tar([m])), tmp_path)   # the default replaces
    kind = stat.S_IFMT(os.lstat(tmp_path / "n").st_mode)
    assert kind == {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}[incoming]


def test_cp_options_root_attrs_and_owner(tmp_path):
    dest = tmp_path / "d"
    dest.mkdir(mode=0o1777)
    os.chmod(dest, 0o1777)
    data = make_tar([member(".", tarfile.DIRTYPE, mode=0o700), member("f", data=b"f", uid=1234, gid=4321)])
    tarsafe.extract(io.BytesIO(data), dest, root_attrs=False, owner=(7, 8))
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o1777
    st = os.stat(dest / "f")
    assert (st.st_uid, st.st_gid) == (7, 8)
    tarsafe.extract(io.BytesIO(data), dest)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    st = os.stat(dest / "f")
    assert (st.st_uid, st.st_gid) == (1234, 4321)


# -- sparse members are holes ------------------------------------------------------

def _gnu_sparse_tar(tmp_path, size, chunks):
    """A GNU tar (tar -S) of one sparse file of `size` bytes holding `chunks` {offset: bytes}."""
    import subprocess
    src = tmp_path / "sparse-src"
    src.mkdir()
    with open(src / "big", "wb") as f:
        f.truncate(size)
        for off, data in chunks.items():
            f.seek(off)
            f.write(data)
    out = tmp_path / "sparse.tar"
    subprocess.run(["tar", "-S", "-cf", str(out), "-C", str(src), "big"], check=True)
    return out.read_bytes()


def test_a_1tb_sparse_member_is_written_as_holes(tmp_path):
    size = 1 << 40
    data = _gnu_sparse_tar(tmp_path, size, {0: b"head", 1 << 39: b"tail"})
    assert len(data) < 64 << 10
    dest = tmp_path / "out"
    dest.mkdir()
    r = tarsafe.extract(io.BytesIO(data), dest)
    st = os.stat(dest / "big")
    assert st.st_size == size and r.size == size
    assert st.st_blocks * 512 < 1 << 20, st.st_blocks
    with open(dest / "big", "rb") as f:
        assert f.read(4) == b"head"
        f.seek(1 << 39)
        assert f.read(4) == b"tail"
        f.seek((1 << 39) - 4)
        assert f.read(4) == b"\0\0\0\0"
    assert r.digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_sparse_map_past_the_size_is_refused(tmp_path):
    data = bytearray(_gnu_sparse_tar(tmp_path, 1 << 20, {0: b"x" * 10, 1 << 19: b"y"}))
    ti = tarfile.TarInfo.frombuf(bytes(data[:512]), "utf-8", "surrogateescape")
    assert ti.type == tarfile.GNUTYPE_SPARSE
    # The real size (offset 483, 12 octal digits) made smaller than the map's last chunk.
    data[483:495] = b"%011o\0" % 1000
    chk = sum(data[:148]) + sum(data[156:512]) + 8 * 32
    data[148:156] = b"%06o\0 " % chk
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(BadTar, match="sparse map"):
        tarsafe.extract(io.BytesIO(bytes(data)), dest)
