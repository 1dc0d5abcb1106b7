"""layerfs: merged views, changes and tar round trips over real
overlay-format layer directories.  Needs root (mknod, trusted.* xattrs)."""

import io
import os
import stat
import tarfile

import pytest

from pyd.fs import layerfs, tarsafe


T0 = 1_600_000_000


# -- helpers ---------------------------------------------------------------

def put(layer, rel, data=b"", mode=0o644, mtime=T0):
    p = os.path.join(layer, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)
    os.utime(p, (mtime, mtime))
    return p


def mkdir(layer, rel, mode=0o755, mtime=T0, opaque=False):
    p = os.path.join(layer, rel)
    os.makedirs(p, exist_ok=True)
    os.chmod(p, mode)
    if opaque:
        os.setxattr(p, "trusted.overlay.opaque", b"y")
    os.utime(p, (mtime, mtime))
    return p


def whiteout(layer, rel):
    p = os.path.join(layer, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.mknod(p, stat.S_IFCHR, 0)
    return p


def fix_dir_times(layer, mtime=T0):
    """Directory mtimes deterministic after populating a layer."""
    for root, dirs, _ in os.walk(layer):
        for d in dirs:
            os.utime(os.path.join(root, d), (mtime, mtime))
    os.utime(layer, (mtime, mtime))


def merged(layers):
    return {rel: st for rel, _, st in layerfs.union_walk(layers)}


def tree(path):
    """Comparable description of a layer dir (type, mode, owner, size,
    mtime s, content / link target / rdev, opaque)."""
    out = {}
    for rel, p, st in layerfs.union_walk([path]):
        if not rel:
            continue
        extra = None
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                extra = f.read()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(p)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            extra = st.st_rdev
        opq = stat.S_ISDIR(st.st_mode) and layerfs.is_opaque(p)
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime), extra, opq)
    return out


def layer_entries(path):
    """Like tree() but also lists whiteouts (union_walk hides them)."""
    out = {}
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, path)
            extra = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = f.read()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            opq = stat.S_ISDIR(st.st_mode) and layerfs.is_opaque(p)
            mt = None if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 else int(st.st_mtime)
            out[rel] = (st.st_mode, st.st_uid, st.st_gid, mt, extra, opq)
    return out


@pytest.fixture
def stack(tmp_path):
    """base <- mid <- upper, the classic scenario."""
    base, mid, upper = (str(tmp_path / n) for n in ("base", "mid", "upper"))
    for d in (base, mid, upper):
        os.mkdir(d)
    put(base, "etc/hosts", b"127.0.0.1")
    put(base, "etc/passwd", b"root")
    put(base, "etc/gone", b"bye")
    put(base, "var/cache/a", b"a")
    put(base, "var/cache/b", b"b")
    put(base, "var/cache/sub/c", b"c")
    put(base, "opt/tool/bin", b"bin")
    os.symlink("/etc/hosts", os.path.join(base, "hostlink"))
    mkdir(base, "dev")
    os.mknod(os.path.join(base, "dev/null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))
    fix_dir_times(base)
    # mid: deletes etc/gone, replaces dir opt/tool by a file, adds usr/x
    whiteout(mid, "etc/gone")
    put(mid, "opt/tool", b"now a file")
    put(mid, "usr/x", b"x")
    fix_dir_times(mid)
    mkdir(mid, "etc")                         # same attrs as base's etc
    return tmp_path, base, mid, upper


# -- union_walk ------------------------------------------------------------

def test_union_walk_whiteouts_and_opaque(stack):
    _, base, mid, upper = stack
    mkdir(upper, "var/cache", opaque=True)
    put(upper, "var/cache/new", b"n")
    whiteout(upper, "etc/passwd")
    put(upper, "etc/hosts", b"changed")
    view = merged([upper, mid, base])
    assert "" in view and list(view)[0] == ""
    rels = list(view)
    assert "etc/passwd" not in view and "etc/gone" not in view
    assert "etc/hosts" in view and view["etc/hosts"].st_size == len(b"changed")
    assert "var/cache/new" in view
    assert not any(r in view for r in ("var/cache/a", "var/cache/b", "var/cache/sub"))
    assert stat.S_ISREG(view["opt/tool"].st_mode) and "opt/tool/bin" not in view
    assert stat.S_ISLNK(view["hostlink"].st_mode)
    assert view["dev/null"].st_rdev == os.makedev(1, 3)
    assert "usr/x" in view
    # parents before children, siblings sorted
    for i, r in enumerate(rels[1:], 1):
        parent = r.rpartition("/")[0]
        if parent:
            assert rels.index(parent) < i
    assert list(merged([upper, mid, base])) == rels


def test_union_walk_upper_dir_over_lower_file(tmp_path):
    lo, up = str(tmp_path / "lo"), str(tmp_path / "up")
    put(lo, "x", b"file")
    put(lo, "y/keep", b"k")
    put(up, "x/inner", b"i")
    put(up, "y/add", b"a")
    view = merged([up, lo])
    assert stat.S_ISDIR(view["x"].st_mode) and "x/inner" in view
    assert "y/keep" in view and "y/add" in view


# -- changes ---------------------------------------------------------------

def test_changes_kinds(stack):
    _, base, mid, upper = stack
    lowers = [mid, base]
    mkdir(upper, "etc")
    put(upper, "etc/hosts", b"modified")       # modified (0)
    whiteout(upper, "etc/passwd")               # deleted (2)
    whiteout(upper, "etc/never")                # not below: skipped
    put(upper, "newdir/sub/file", b"n")         # added tree (1)
    mkdir(upper, "var")
    mkdir(upper, "var/cache", opaque=True)      # opaque: 0, lower children 2
    put(upper, "var/cache/b", b"again")         # upper child of opaque: 1
    put(upper, "var/cache/new", b"n")
    mkdir(upper, "dev", mtime=T0)               # unchanged dir: left out
    os.utime(os.path.join(upper, "var"), (T0 + 5, T0 + 5))
    os.utime(os.path.join(upper, "etc"), (T0 + 5, T0 + 5))
    os.utime(os.path.join(upper, "newdir"), (T0, T0))
    ch = layerfs.changes(upper, lowers)
    assert ch == sorted(ch)
    d = dict(ch)
    assert d == {
        "/etc": 0,
        "/etc/hosts": 0,
        "/etc/passwd": 2,
        "/newdir": 1,
        "/newdir/sub": 1,
        "/newdir/sub/file": 1,
        "/var": 0,
        "/var/cache": 0,
        "/var/cache/a": 2,
        "/var/cache/sub": 2,
        "/var/cache/b": 1,
        "/var/cache/new": 1,
    }
    assert len(ch) == len(d)


def test_changes_whiteout_of_already_deleted_path_skipped(stack):
    _, base, mid, upper = stack
    whiteout(upper, "etc/gone")                 # already deleted by mid
    whiteout(upper, "opt/tool/bin")             # hidden by mid's file
    ch = layerfs.changes(upper, [mid, base])
    assert ("/etc/gone", 2) not in ch and ("/opt/tool/bin", 2) not in ch


# -- tars ------------------------------------------------------------------

def test_layer_tar_roundtrip(stack):
    tmp, base, mid, upper = stack
    mkdir(upper, "var/cache", opaque=True)
    put(upper, "var/cache/new", b"n", mode=0o600)
    whiteout(upper, "etc/passwd")
    put(upper, "bin/su", b"#!", mode=0o4755)
    os.chown(os.path.join(upper, "bin/su"), 1000, 1001)
    os.setxattr(os.path.join(upper, "bin/su"), "user.k", b"v")
    os.link(os.path.join(upper, "bin/su"), os.path.join(upper, "bin/su2"))
    os.symlink("../x", os.path.join(upper, "bin/rel"))
    os.mkfifo(os.path.join(upper, "fifo"))
    fix_dir_times(upper, T0 + 7)
    os.setxattr(os.path.join(upper, "var/cache"), "trusted.overlay.opaque", b"y")
    out = io.BytesIO()
    layerfs.layer_tar(upper, out)
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert "etc/.wh.passwd" in names
    assert names.index("var/cache/.wh..wh..opq") == names.index("var/cache") + 1
    again = tmp / "again"
    again.mkdir()
    tarsafe.extract(io.BytesIO(out.getvalue()), str(again))
    assert layer_entries(str(again)) == layer_entries(upper)
    assert os.stat(again / "bin/su").st_ino == os.stat(again / "bin/su2").st_ino
    assert os.getxattr(again / "bin/su", "user.k") == b"v"


def test_export_tar_merged(stack):
    _, base, mid, upper = stack
    whiteout(upper, "etc/passwd")
    put(upper, "etc/hosts", b"changed")
    big = os.path.join(upper, "big")
    with open(big, "wb") as f:
        f.truncate(3 * 1024 * 1024)
    out = io.BytesIO()
    layerfs.export_tar([upper, mid, base], out)
    tf = tarfile.open(fileobj=io.BytesIO(out.getvalue()))
    members = {m.name: m for m in tf.getmembers()}
    assert "etc/passwd" not in members and "etc/gone" not in members
    assert "opt/tool/bin" not in members and members["opt/tool"].isreg()
    assert tf.extractfile("etc/hosts").read() == b"changed"
    assert tf.extractfile("var/cache/a").read() == b"a"
    assert members["hostlink"].issym() and members["hostlink"].linkname == "/etc/hosts"
    assert members["dev/null"].ischr() and members["dev/null"].devminor == 3
    assert members["big"].size == 3 * 1024 * 1024
    assert not any(".wh." in n for n in members)


# -- copy driver -----------------------------------------------------------

def test_copy_union_and_diff_copy_roundtrip(stack):
    tmp, base, mid, upper = stack
    lowers = [mid, base]
    rootfs = str(tmp / "rootfs")
    layerfs.copy_union(lowers, rootfs)
    assert layerfs.diff_copy(rootfs, lowers) == []
    assert os.readlink(os.path.join(rootfs, "hostlink")) == "/etc/hosts"
    assert os.lstat(os.path.join(rootfs, "dev/null")).st_rdev == os.makedev(1, 3)
    assert not os.path.exists(os.path.join(rootfs, "etc/gone"))

    # container activity
    with open(os.path.join(rootfs, "etc/hosts"), "wb") as f:
        f.write(b"different length")
    os.unlink(os.path.join(rootfs, "etc/passwd"))
    tarsafe.remove_tree(os.path.join(rootfs, "var/cache/sub"))
    put(rootfs, "srv/new/file", b"n")
    os.chmod(os.path.join(rootfs, "usr/x"), 0o600)
    os.unlink(os.path.join(rootfs, "opt/tool"))
    put(rootfs, "opt/tool/again", b"dir again")
    for d in ("etc", "var/cache", "opt"):
        os.utime(os.path.join(rootfs, d), (T0 + 9, T0 + 9))

    ch = layerfs.diff_copy(rootfs, lowers)
    assert ch == sorted(ch)
    assert dict(ch) == {
        "/etc": 0, "/etc/hosts": 0, "/etc/passwd": 2,
        "/var/cache": 0, "/var/cache/sub": 2,
        "/srv": 1, "/srv/new": 1, "/srv/new/file": 1,
        "/usr/x": 0,
        "/opt": 0, "/opt/tool": 0, "/opt/tool/again": 1,
    }

    layer = str(tmp / "newlayer")
    assert layerfs.materialize_diff(rootfs, lowers, layer) == ch
    st = os.lstat(os.path.join(layer, "etc/passwd"))
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    # the new layer on top of the lowers reproduces the rootfs
    again = str(tmp / "again")
    layerfs.copy_union([layer] + lowers, again)
    assert tree(again) == tree(rootfs)
    assert layerfs.diff_copy(again, [layer] + lowers) == []


def test_du(tmp_path):
    d = str(tmp_path / "d")
    put(d, "a", b"x" * 1000)
    put(d, "sub/b", b"y" * 24)
    os.link(os.path.join(d, "a"), os.path.join(d, "sub/a-link"))      # counted once
    os.symlink("/etc/passwd", os.path.join(d, "link"))                 # not followed
    os.symlink("/usr", os.path.join(d, "dirlink"))
    whiteout(d, "gone")
    assert layerfs.du(d) == 1024
    assert layerfs.du(tmp_path / "missing") == 0
