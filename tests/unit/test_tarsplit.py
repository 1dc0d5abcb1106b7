"""Tar splits: a layer stored extracted gives back its tar byte for byte.

Each round trip extracts a tar with tarsafe.extract(split=...), stores the
layer in a real LayerStore, writes it back with write_tar and compares the
bytes and the sha256 with the original. Needs root (mknod for whiteouts,
chown, trusted.* xattrs), as the unit suite runs.
"""

import gzip
import hashlib
import io
import os
import random
import stat
import subprocess
import tarfile

import pytest

from pyd import errors
from pyd.config import Config
from pyd.engine import fsops
from pyd.fs import layerfs, tarsafe, tarsplit
from pyd.store.images import ImageStore
from pyd.store.layers import LayerStore


# -- helpers ---------------------------------------------------------------

def reg(name, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = kw.pop("mode", 0o644)
    ti.mtime = kw.pop("mtime", 1_600_000_000)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti, data


def node(name, type, linkname="", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.linkname = linkname
    ti.mode = kw.pop("mode", 0o755 if type == tarfile.DIRTYPE else 0o644)
    ti.mtime = kw.pop("mtime", 1_600_000_000)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti, None


def make_tar(members, fmt=tarfile.PAX_FORMAT, **kw):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path):
    cfg = Config(root=str(tmp_path / "root"))
    os.makedirs(cfg.tmp_dir)
    layers = LayerStore(cfg)
    layers.load()
    return layers


def extract_with_split(tmp_path, stream, name="work"):
    work = tmp_path / name
    work.mkdir()
    layer, split = work / "layer", work / "layer.split"
    layer.mkdir()
    with open(split, "wb") as f:
        result = tarsafe.extract(stream, layer, split=f)
    return layer, split, result


def refs(split):
    return [(r[1], r[2]) for r in tarsplit.records(split) if r[0] == "F"]


def roundtrip(store, tmp_path, tar, stream=None, name="work", referenced=None):
    """extract -> store -> write_tar; returns (bytes written, split size).
    `referenced`: the (path, size) payload references the split must hold."""
    layer, split, result = extract_with_split(tmp_path, stream or io.BytesIO(tar), name)
    assert result.digest == sha(tar)
    split_size = os.path.getsize(split)
    if referenced is not None:
        assert refs(split) == referenced
    store.add(str(layer), result.digest, result.size, str(split))
    assert os.path.exists(store.path(result.digest) + ".split")
    out = io.BytesIO()
    assert store.write_tar(result.digest, out) == result.digest
    got = out.getvalue()
    assert len(got) == len(tar)
    assert got == tar
    assert sha(got) == result.digest
    return got, split_size


def tree_members():
    """Directories, files (empty, odd sizes, exactly 512*k), symlinks, hardlinks."""
    rnd = random.Random(13)
    return [
        node("etc", tarfile.DIRTYPE),
        reg("etc/empty"),
        reg("etc/one", b"1"),
        reg("etc/block", rnd.randbytes(512)),
        reg("etc/blocks", rnd.randbytes(512 * 7)),
        reg("etc/odd", rnd.randbytes(1000)),
        node("etc/link", tarfile.SYMTYPE, linkname="odd"),
        node("etc/hard", tarfile.LNKTYPE, linkname="etc/odd"),
        node("var/lib/deep", tarfile.DIRTYPE, mode=0o700),
        reg("var/lib/deep/x", b"x" * 10240, uid=1000, gid=1000, uname="someone", gname="them"),
        node("dev-null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        node("fifo", tarfile.FIFOTYPE),
    ]


# -- round trips -------------------------------------------------------------

@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_formats_round_trip_exactly_and_payloads_are_referenced(store, tmp_path, fmt):
    big = random.Random(1).randbytes(3 << 20 | 17)      # larger than tarsafe's read-ahead chunk
    tar = make_tar(tree_members() + [reg("big", big)], fmt)
    _, split_size = roundtrip(store, tmp_path, tar, referenced=[
        ("etc/one", 1), ("etc/block", 512), ("etc/blocks", 3584), ("etc/odd", 1000),
        ("var/lib/deep/x", 10240), ("big", len(big))])
    # the contents are in the layer, not in the split
    assert split_size < 32 << 10
    with open(os.path.join(store.path(sha(tar)), "big"), "rb") as f:
        assert f.read() == big


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_names_and_long_link_names(store, tmp_path, fmt):
    deep = "/".join(["d" * 60] * 5)                      # 304 bytes: beyond ustar's 100+155
    target = "t" * 150 + "/" + "u" * 40
    tar = make_tar([
        node(deep, tarfile.DIRTYPE),
        reg(deep + "/" + "f" * 200, b"long name content"),
        node("sym", tarfile.SYMTYPE, linkname="/" + "/".join(["x" * 90] * 3)),
        node(target, tarfile.DIRTYPE),
        reg("hard-target-" + "h" * 110, b"linked"),
        node("hl", tarfile.LNKTYPE, linkname="hard-target-" + "h" * 110),
    ], fmt)
    if fmt == tarfile.GNU_FORMAT:
        assert b"././@LongLink" in tar
    roundtrip(store, tmp_path, tar)


def test_pax_headers_with_xattrs_and_fractional_times(store, tmp_path):
    a, data = reg("file", b"with xattrs")
    a.pax_headers = {"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.security.capability": "\x01\x02",
                     "mtime": "1600000000.123456789", "comment": "kept as it came"}
    d, _ = node("dir", tarfile.DIRTYPE)
    d.pax_headers = {"SCHILY.xattr.user.dir": "yes"}
    tar = make_tar([(a, data), (d, None), reg("dir/inner", b"\0" * 513)])
    roundtrip(store, tmp_path, tar)
    assert os.getxattr(os.path.join(store.path(sha(tar)), "file"), "user.note") == b"hello"


def test_a_global_pax_header_is_kept(store, tmp_path):
    tar = make_tar([reg("a", b"aaa"), reg("b", b"bbbb")], tarfile.PAX_FORMAT,
                   pax_headers={"comment": "global"})
    assert b"comment=global" in tar
    roundtrip(store, tmp_path, tar)


def test_names_that_repeat_keep_the_earlier_payload(store, tmp_path):
    rnd = random.Random(2)
    first_big = rnd.randbytes((2 << 20) + 5)
    tar = make_tar([
        reg("same", b"first version, longer than the second"),
        reg("big", first_big),
        reg("linked", b"shared inode"),
        node("alias", tarfile.LNKTYPE, linkname="linked"),
        node("dir", tarfile.DIRTYPE),
        reg("dir/a", b"under a directory that a file replaces"),
        node("dir/sub", tarfile.DIRTYPE),
        reg("dir/sub/b", b"deeper"),
        reg("same", b"second"),
        reg("big", b"small now"),
        reg("linked", b"replaced"),
        reg("dir", b"a file where the directory was"),
        reg("same", b"third"),
    ])
    # the replaced ones are inline; what the layer holds is referenced
    _, split_size = roundtrip(store, tmp_path, tar, referenced=[
        ("big", 9), ("linked", 8), ("dir", 30), ("same", 5)])
    layer = store.path(sha(tar))
    with open(os.path.join(layer, "same"), "rb") as f:
        assert f.read() == b"third"
    with open(os.path.join(layer, "alias"), "rb") as f:
        assert f.read() == b"shared inode"
    assert split_size > len(gzip.compress(first_big, 1)) // 2    # the first big one is inline


def test_whiteouts_and_opaque_dirs(store, tmp_path):
    tar = make_tar([
        node("gone-dir", tarfile.DIRTYPE),
        reg(".wh.gone-file"),
        reg("gone-dir/.wh..wh..opq"),
        reg("gone-dir/kept", b"kept"),
        reg("sub/.wh.x", b"a whiteout with data"),          # no file holds this: inline
        reg(".wh..wh.plnk"),                                 # aufs metadata: skipped
    ])
    roundtrip(store, tmp_path, tar, referenced=[("gone-dir/kept", 4)])
    layer = store.path(sha(tar))
    st = os.lstat(os.path.join(layer, "gone-file"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(os.path.join(layer, "gone-dir"), "trusted.overlay.opaque") == b"y"
    assert stat.S_ISCHR(os.lstat(os.path.join(layer, "sub", "x")).st_mode)


def test_a_gzip_body_gives_back_the_uncompressed_tar(store, tmp_path):
    tar = make_tar(tree_members())
    got, _ = roundtrip(store, tmp_path, tar, stream=io.BytesIO(gzip.compress(tar)))
    assert got[:2] != b"\x1f\x8b"


def test_gnu_tar_records_and_garbage_after_the_end(store, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"gnu " * 1000)
    (src / "empty").write_bytes(b"")
    (src / "blk").write_bytes(b"\x07" * 1024)
    os.symlink("d/f", src / "l")
    os.link(src / "d" / "f", src / "hl")
    gnu = subprocess.run(["tar", "-C", str(src), "-cf", "-", "--sort=name", "."],
                         check=True, capture_output=True).stdout
    assert len(gnu) % 10240 == 0                        # GNU tar's 20-block records
    tar = gnu + b"\0" * 2048 + b"trailing garbage" * 40  # and junk after them
    roundtrip(store, tmp_path, tar)


def test_gnu_sparse_files_keep_their_payload_inline(store, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
        f.seek(5000)
        f.write(b"middle")
    tar = subprocess.run(["tar", "-C", str(src), "--sparse", "--format=gnu", "-cf", "-", "sparse"],
                         check=True, capture_output=True).stdout
    roundtrip(store, tmp_path, tar, referenced=[])
    with open(os.path.join(store.path(sha(tar)), "sparse"), "rb") as f:
        data = f.read()
    assert len(data) == (1 << 20) + 3 and data[5000:5006] == b"middle"


def test_no_end_marker(store, tmp_path):
    tar = make_tar([reg("a", b"abc"), reg("b", b"x" * 600)])
    cut = tar[:512 + 512 + 512 + 1024]                   # both members, no end blocks
    roundtrip(store, tmp_path, cut)


# -- a split that no longer matches its layer ------------------------------

def stored(store, tmp_path, members):
    tar = make_tar(members)
    layer, split, result = extract_with_split(tmp_path, io.BytesIO(tar))
    store.add(str(layer), result.digest, result.size, str(split))
    return tar, result.digest, store.path(result.digest)


@pytest.mark.parametrize("change", ["content", "size", "removed", "symlink", "directory"])
def test_a_changed_payload_file_is_an_error_before_the_last_bytes(store, tmp_path, change):
    tar, diff_id, layer = stored(store, tmp_path, [reg("a", b"a" * 700), reg("z", b"last file")])
    path = os.path.join(layer, "a")
    if change == "content":
        with open(path, "r+b") as f:
            f.write(b"b")
    elif change == "size":
        with open(path, "ab") as f:
            f.write(b"more")
    elif change == "removed":
        os.unlink(path)
    elif change == "symlink":
        outside = tmp_path / "outside"
        outside.write_bytes(b"a" * 700)                  # the same bytes: still refused
        os.unlink(path)
        os.symlink(str(outside), path)
    else:
        os.unlink(path)
        os.mkdir(path)
    out = io.BytesIO()
    with pytest.raises(errors.PydError):
        store.write_tar(diff_id, out)
    assert len(out.getvalue()) < len(tar)


def test_a_symlinked_parent_directory_is_not_followed(store, tmp_path):
    tar, diff_id, layer = stored(store, tmp_path, [node("d", tarfile.DIRTYPE), reg("d/f", b"in d")])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f").write_bytes(b"in d")
    os.rename(os.path.join(layer, "d"), str(tmp_path / "moved"))
    os.symlink(str(elsewhere), os.path.join(layer, "d"))
    with pytest.raises(errors.PydError, match="cannot be opened"):
        store.write_tar(diff_id, io.BytesIO())


def test_a_corrupt_split_is_an_error(store, tmp_path):
    tar, diff_id, layer = stored(store, tmp_path, [reg("a", b"abc")])
    with open(layer + ".split", "r+b") as f:
        f.truncate(os.path.getsize(layer + ".split") - 4)
    with pytest.raises(errors.PydError, match="split"):
        store.write_tar(diff_id, io.BytesIO())


def test_the_split_names_its_own_digest(tmp_path):
    tar = make_tar([reg("a", b"abc")])
    layer, split, result = extract_with_split(tmp_path, io.BytesIO(tar))
    out = io.BytesIO()
    with pytest.raises(errors.PydError, match="not of"):
        tarsplit.write(split, layer, out, digest="sha256:" + "0" * 64)
    assert len(out.getvalue()) < len(tar)
    out = io.BytesIO()
    assert tarsplit.write(split, layer, out) == result.digest and out.getvalue() == tar


def test_a_failed_extraction_writes_no_split(tmp_path):
    tar = make_tar([reg("a", b"abc"), reg("../escape", b"x")])
    work = tmp_path / "w"
    work.mkdir()
    (work / "layer").mkdir()
    with open(work / "layer.split", "wb") as f:
        with pytest.raises(tarsafe.BadTar):
            tarsafe.extract(io.BytesIO(tar), work / "layer", split=f)
    assert os.path.getsize(work / "layer.split") == 0
    assert sorted(os.listdir(work)) == ["layer", "layer.split"]   # no temporary files left


# -- the layer store -----------------------------------------------------------

def test_load_drops_stray_splits_and_removal_removes_the_split(tmp_path):
    cfg = Config(root=str(tmp_path / "root"))
    os.makedirs(cfg.tmp_dir)
    layers = LayerStore(cfg)
    layers.load()
    images = ImageStore(cfg, layers)
    images.load()
    tar = make_tar([reg("a", b"abc")])
    layer, split, result = extract_with_split(tmp_path, io.BytesIO(tar))
    raw = ('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}'
           % result.digest).encode()
    img = images.create_raw(raw, [(str(layer), result.digest, result.size, str(split))])
    kept = layers.path(result.digest) + ".split"
    assert os.path.exists(kept)
    stray = os.path.join(layers.dir, "f" * 64 + ".split")
    with open(stray, "wb") as f:
        f.write(b"debris")
    again = LayerStore(cfg)
    again.load()
    assert not os.path.exists(stray) and os.path.exists(kept)
    out = io.BytesIO()
    again.write_tar(result.digest, out)
    assert out.getvalue() == tar
    images.delete(img.id)
    assert not os.path.exists(kept) and not layers.exists(result.digest)


def test_storing_the_same_tar_again_gives_an_old_layer_its_split(store, tmp_path):
    tar = make_tar([reg("a", b"abc", uname="someone"), node("d", tarfile.DIRTYPE, mtime=1_234_567_890)],
                   tarfile.GNU_FORMAT)                # not what layer_tar would write
    layer, split, result = extract_with_split(tmp_path, io.BytesIO(tar), "one")
    os.unlink(split)
    store.add(str(layer), result.digest, result.size)        # as before splits existed
    with pytest.raises(errors.PydError, match="cannot be reproduced exactly"):
        store.write_tar(result.digest, io.BytesIO())
    layer2, split2, _ = extract_with_split(tmp_path, io.BytesIO(tar), "two")
    store.add(str(layer2), result.digest, result.size, str(split2))
    assert not os.path.exists(layer2) and not os.path.exists(split2)
    out = io.BytesIO()
    store.write_tar(result.digest, out)
    assert out.getvalue() == tar


def test_a_layer_without_split_is_regenerated_when_that_matches(store, tmp_path):
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_bytes(b"made by pyd")
    diff_id = layerfs.layer_digest(str(tree))
    store.add(str(tree), diff_id, 11)
    out = io.BytesIO()
    assert store.write_tar(diff_id, out) == diff_id
    assert sha(out.getvalue()) == diff_id


def test_write_tar_of_an_unknown_layer(store):
    with pytest.raises(errors.NotFound):
        store.write_tar("sha256:" + "a" * 64, io.BytesIO())


# -- commit path --------------------------------------------------------------

def test_copy_layer_round_trip_with_whiteouts_and_opaque_dirs(store, tmp_path):
    upper = tmp_path / "upper"
    (upper / "opaque").mkdir(parents=True)
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque" / "new").write_bytes(b"new file")
    os.mknod(upper / "deleted", stat.S_IFCHR | 0o600, 0)
    (upper / "big").write_bytes(random.Random(3).randbytes((1 << 20) + 512))
    os.symlink("big", upper / "link")
    os.link(upper / "big", upper / "hard")
    work = tmp_path / "commit"
    work.mkdir()
    dest, split = work / "layer", work / "layer.split"
    dest.mkdir()
    result = fsops.copy_layer(str(upper), str(dest), str(split))
    assert os.path.getsize(split) < 16 << 10
    expected = io.BytesIO()
    layerfs.layer_tar(str(upper), expected)
    assert sha(expected.getvalue()) == result.digest
    store.add(str(dest), result.digest, result.size, str(split))
    out = io.BytesIO()
    assert store.write_tar(result.digest, out) == result.digest
    assert out.getvalue() == expected.getvalue()
    assert b".wh.deleted" in out.getvalue() and b"opaque/.wh..wh..opq" in out.getvalue()
