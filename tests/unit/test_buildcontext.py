"""pyd.engine.buildcontext: the POST /build body (compression, bounds,
hostile members, .dockerignore), the Dockerfile's place, ADD/COPY sources
and their content hash. Tars are built here; everything lives in tmp_path."""

import bz2
import gzip
import io
import lzma
import os
import tarfile

import pytest

from pyd import errors
from pyd.engine import buildcontext as bc
from pyd.fs.tarsafe import remove_tree
from pyd.engine.dockerignore import Matcher

DOCKERFILE = b"FROM scratch\nCOPY . /\n"


def make_tar(members):
    """members: (name, kind, value): kind 'file' (bytes), 'dir', 'symlink' or
    'hardlink' (target), 'chr' (a device)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, value in members:
            ti = tarfile.TarInfo(name)
            ti.mode = 0o644
            if kind == "file":
                ti.size = len(value)
                tf.addfile(ti, io.BytesIO(value))
                continue
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, value
            elif kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, value
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            tf.addfile(ti)
    return buf.getvalue()


SIMPLE = [("Dockerfile", "file", DOCKERFILE), ("app", "dir", None), ("app/main.py", "file", b"print(1)\n")]

COMPRESS = {
    "identity": lambda b: b,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lambda b: lzma.compress(b, format=lzma.FORMAT_XZ),
}


class Trickle(io.RawIOBase):
    """A body that hands out at most 3 bytes a read, as a slow socket may."""

    def __init__(self, data):
        self._f = io.BytesIO(data)

    def read(self, n=-1):
        return self._f.read(min(3, n if n and n > 0 else 3))


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_each_compression_is_detected_and_extracted(tmp_path, kind):
    body = COMPRESS[kind](make_tar(SIMPLE))
    ctx = bc.open_context(Trickle(body), 1 << 20)
    assert ctx.compression == kind
    facts = bc.extract_context(ctx, str(tmp_path))
    assert facts == bc.Extracted(files=3, bytes=len(DOCKERFILE) + 9, ignored=0)
    assert (tmp_path / "app" / "main.py").read_bytes() == b"print(1)\n"


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_decompressed_size_over_the_bound_is_too_large(tmp_path, kind):
    body = COMPRESS[kind](make_tar([("big", "file", b"\0" * 200_000)]))
    with pytest.raises(errors.TooLarge):
        bc.extract_context(io.BytesIO(body), str(tmp_path), max_bytes=100_000)


def test_a_body_just_under_the_bound_is_fine(tmp_path):
    tar = make_tar(SIMPLE)
    assert bc.extract_context(io.BytesIO(tar), str(tmp_path), max_bytes=len(tar)).files == 3


@pytest.mark.parametrize("body,what", [
    (gzip.compress(make_tar(SIMPLE))[:40], "truncated gzip"),
    (b"\x1f\x8b" + b"\xff" * 200, "corrupt gzip"),
    (b"BZh9" + b"\x00" * 100, "corrupt bzip2"),
    (make_tar([("big", "file", b"x" * 5000)])[:2048], "truncated tar"),
    (b"this is not a tar archive at all" * 20, "garbage"),
])
def test_broken_bodies_are_bad_parameter(tmp_path, body, what):
    with pytest.raises(errors.BadParameter, match="build context"):
        bc.extract_context(io.BytesIO(body), str(tmp_path), max_bytes=1 << 20)


@pytest.mark.parametrize("members", [
    [("../escape", "file", b"x")],
    [("a/../../escape", "file", b"x")],
    [("out", "symlink", "/"), ("out/escape", "file", b"x")],
    [("out", "symlink", ".."), ("out/escape", "file", b"x")],
    [("hl", "hardlink", "../../etc/passwd")],
    [("dev", "chr", None), ("Dockerfile", "file", DOCKERFILE)],
], ids=["dotdot", "nested-dotdot", "symlink-abs-then-write", "symlink-up-then-write",
        "hardlink-out", "device"])
def test_hostile_members_are_refused(tmp_path, members):
    dest = tmp_path / "ctx"
    dest.mkdir()
    outside = set(os.listdir(tmp_path))
    with pytest.raises(errors.BadParameter):
        bc.extract_context(io.BytesIO(make_tar(members)), str(dest), max_bytes=1 << 20)
    assert set(os.listdir(tmp_path)) == outside
    assert not (tmp_path / "escape").exists()


def test_a_very_deep_context_is_walked_without_recursion(tmp_path):
    deep = "/".join(["d"] * 1500)       # past Python's recursion limit, within PATH_MAX
    (tmp_path / "ctx").mkdir()
    try:
        facts = bc.extract_context(io.BytesIO(make_tar([(deep + "/f", "file", b"x")])), str(tmp_path / "ctx"),
                                   Matcher(["nothing"]), max_bytes=1 << 22)
        assert facts == bc.Extracted(files=1501, bytes=1, ignored=0)
    finally:
        # pytest's own cleanup (shutil.rmtree) recurses and would overflow on this tree
        remove_tree(tmp_path / "ctx")


def test_absolute_member_names_land_inside(tmp_path):
    bc.extract_context(io.BytesIO(make_tar([("/abs/file", "file", b"x")])), str(tmp_path), max_bytes=1 << 20)
    assert (tmp_path / "abs" / "file").read_bytes() == b"x"


def test_dockerignore_is_applied_and_build_files_are_kept(tmp_path):
    members = SIMPLE + [
        (".dockerignore", "file", b"*\n!app\n"), ("secret", "file", b"pw"),
        ("build", "dir", None), ("build/out.o", "file", b"o" * 10),
        ("docs", "dir", None), ("docs/a.md", "file", b"a"), ("docs/README.md", "file", b"r"),
    ]
    ignore = Matcher(["*", "!app", "!docs/README.md"], keep=[".dockerignore", "Dockerfile"])
    facts = bc.extract_context(io.BytesIO(make_tar(members)), str(tmp_path), ignore, max_bytes=1 << 20)
    left = sorted(os.path.relpath(os.path.join(t, n), tmp_path)
                  for t, ds, fs in os.walk(tmp_path) for n in ds + fs)
    assert left == [".dockerignore", "Dockerfile", "app", "app/main.py", "docs", "docs/README.md"]
    assert facts.files == 6
    assert facts.ignored == 3     # secret, build (whole), docs/a.md


@pytest.mark.parametrize("name,expect", [
    (None, "Dockerfile"),
    ("sub/Build.df", "sub/Build.df"),
    ("/sub/Build.df", "sub/Build.df"),
    ("sub/../Dockerfile", "Dockerfile"),
    ("inlink", "sub/Build.df"),                 # a symlink that stays inside
])
def test_resolve_dockerfile_inside(tmp_path, name, expect):
    (tmp_path / "Dockerfile").write_bytes(DOCKERFILE)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Build.df").write_bytes(DOCKERFILE)
    os.symlink("sub/Build.df", tmp_path / "inlink")
    got = bc.resolve_dockerfile(str(tmp_path)) if name is None else bc.resolve_dockerfile(str(tmp_path), name)
    assert os.path.realpath(got) == os.path.realpath(tmp_path / expect)


@pytest.mark.parametrize("name,error", [
    ("../Dockerfile", errors.BadParameter),
    ("sub/../../Dockerfile", errors.BadParameter),
    ("outlink", errors.BadParameter),           # symlink to a file outside
    ("dirlink/Dockerfile", errors.BadParameter),  # through a symlinked directory outside
    ("missing", errors.NotFound),
    ("sub", errors.BadParameter),               # a directory
])
def test_resolve_dockerfile_refused(tmp_path, name, error):
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (tmp_path / "Dockerfile").write_bytes(DOCKERFILE)      # the host file an escape would reach
    os.symlink(str(tmp_path / "Dockerfile"), ctx / "outlink")
    os.symlink("..", ctx / "dirlink")
    with pytest.raises(error):
        bc.resolve_dockerfile(str(ctx), name)


@pytest.fixture
def context(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "src" / "pkg").mkdir(parents=True)
    (ctx / "src" / "a.go").write_bytes(b"package a\n")
    (ctx / "src" / "b.go").write_bytes(b"package b\n")
    (ctx / "src" / "pkg" / "c.go").write_bytes(b"package c\n")
    (ctx / "notes.txt").write_bytes(b"notes\n")
    (ctx / "file1").write_bytes(b"1")
    (ctx / "file2").write_bytes(b"2")
    (ctx / "filex").write_bytes(b"x")
    (tmp_path / "host-secret").write_bytes(b"secret")
    os.symlink("/etc", ctx / "evil")
    os.symlink("../host-secret", ctx / "up")
    os.symlink("src/a.go", ctx / "alias.go")
    return ctx


def rels(sources):
    return [s.rel for s in sources]


@pytest.mark.parametrize("patterns,expect", [
    (["notes.txt"], ["notes.txt"]),
    (["/notes.txt"], ["notes.txt"]),            # absolute: the context's root, as moby
    (["./notes.txt"], ["notes.txt"]),
    (["src/../notes.txt"], ["notes.txt"]),
    (["src"], ["src"]),
    (["."], ["."]),
    (["src/*.go"], ["src/a.go", "src/b.go"]),
    (["/src/*/*.go"], ["src/pkg/c.go"]),
    (["*.txt", "file[0-9]"], ["notes.txt", "file1", "file2"]),
    (["file?"], ["file1", "file2", "filex"]),
    (["file[^0-9]"], ["filex"]),
    (["s*"], ["src"]),                          # a matched directory is taken whole
    (["alias.go"], ["alias.go"]),               # a symlink inside, followed
])
def test_context_sources(context, patterns, expect):
    got = bc.context_sources(str(context), patterns)
    assert rels(got) == expect
    for s in got:
        assert os.path.realpath(s.path).startswith(os.path.realpath(context))


def test_a_symlink_source_resolves_to_its_target_inside(context):
    [s] = bc.context_sources(str(context), ["alias.go"])
    assert os.path.realpath(s.path) == os.path.realpath(context / "src" / "a.go")


@pytest.mark.parametrize("patterns,error", [
    (["../host-secret"], errors.BadParameter),
    (["src/../../host-secret"], errors.BadParameter),
    (["/../host-secret"], errors.BadParameter),
    (["evil/passwd"], errors.BadParameter),     # evil -> /etc
    (["up"], errors.BadParameter),              # up -> ../host-secret
    (["e*"], errors.BadParameter),              # a glob matching the link out
    (["missing"], errors.NotFound),
    (["*.none"], errors.NotFound),
    (["src/[.go"], errors.BadParameter),        # a malformed glob
])
def test_context_sources_refused(context, patterns, error):
    with pytest.raises(error):
        bc.context_sources(str(context), patterns)


def test_source_hash_ignores_mtime_and_sees_one_byte(context):
    sources = bc.context_sources(str(context), ["src", "notes.txt"])
    before = bc.source_hash(sources)
    assert before.startswith("sha256:") and len(before) == 7 + 64
    for path in (context / "src" / "pkg" / "c.go", context / "notes.txt"):
        os.utime(path, (1, 1))                          # touched, unchanged
    assert bc.source_hash(sources) == before
    (context / "src" / "pkg" / "c.go").write_bytes(b"package d\n")   # one byte
    changed = bc.source_hash(sources)
    assert changed != before
    (context / "src" / "pkg" / "c.go").write_bytes(b"package c\n")
    assert bc.source_hash(sources) == before


@pytest.mark.parametrize("change", ["mode", "rename", "add"])
def test_source_hash_sees_mode_names_and_new_files(context, change):
    sources = bc.context_sources(str(context), ["src"])
    before = bc.source_hash(sources)
    if change == "mode":
        os.chmod(context / "src" / "a.go", 0o755)
    elif change == "rename":
        os.rename(context / "src" / "a.go", context / "src" / "z.go")
    else:
        (context / "src" / "new").write_bytes(b"")
    assert bc.source_hash(sources) != before


def test_source_hash_depends_on_the_source_names(context):
    a = bc.source_hash(bc.context_sources(str(context), ["file1"]))
    assert a != bc.source_hash([bc.Source("other", str(context / "file1"))])
    assert a == bc.source_hash(bc.context_sources(str(context), ["file1"]))
