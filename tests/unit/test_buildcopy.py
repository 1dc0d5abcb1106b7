"""pyd.engine.buildcopy and the builder's pure parts: where ADD/COPY
sources land (moby's copy rules), what ADD takes for an archive, the cache
text, the plan of a Dockerfile (steps, target, labels, unknown
instructions), and the context loader (.dockerignore, a compressed context
whose first member looks like a bzip2 header)."""

import gzip
import io
import os
import tarfile

import pytest

from pyd import errors
from pyd.engine import buildcontext as bc, buildcopy, builder
from pyd.engine.buildcontext import Source


def make_tar(members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.size = 0o644, len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("dest, workdir, expect", [
    ("/x", "", "/x"),
    ("x", "/app", "/app/x"),
    ("x/", "/app", "/app/x/"),
    (".", "/app", "/app/"),
    ("./", "", "/"),
    ("../../x", "/a", "/x"),
    ("/", "/app", "/"),
])
def test_dest_path(dest, workdir, expect):
    assert buildcopy.dest_path(dest, workdir) == expect


@pytest.fixture
def files(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"f")
    (tmp_path / "g.txt").write_bytes(b"g")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "in").write_bytes(b"i")
    (tmp_path / "t.tar.gz").write_bytes(gzip.compress(make_tar([("inner", b"x")])))
    (tmp_path / "plain.tar").write_bytes(make_tar([("inner", b"x")]))
    (tmp_path / "fake.gz").write_bytes(b"\x1f\x8bnot really gzip")
    return tmp_path


def src(root, rel):
    return Source(rel, str(root / rel))


def names(items):
    return [(os.path.basename(i.path), i.name, i.extract) for i in items]


def test_a_file_to_a_path_is_renamed(files):
    directory, items = buildcopy.layout([src(files, "f.txt")], "/etc/conf", False, add=False)
    assert directory == "/etc" and names(items) == [("f.txt", "conf", False)]


def test_a_file_to_an_existing_directory_keeps_its_name(files):
    directory, items = buildcopy.layout([src(files, "f.txt")], "/etc", True, add=False)
    assert directory == "/etc" and names(items) == [("f.txt", "f.txt", False)]


def test_a_directory_copies_its_contents(files):
    directory, items = buildcopy.layout([src(files, "d")], "/app", False, add=False)
    assert directory == "/app" and names(items) == [("d", ".", False)]


def test_several_sources_need_a_slash(files):
    with pytest.raises(errors.BadParameter, match="must be a directory and end with a /"):
        buildcopy.layout([src(files, "f.txt"), src(files, "g.txt")], "/app", True, add=False)
    directory, items = buildcopy.layout([src(files, "f.txt"), src(files, "g.txt")], "/app/", False, add=False)
    assert directory == "/app" and [i.name for i in items] == ["f.txt", "g.txt"]


def test_add_extracts_local_archives_and_copy_does_not(files):
    for name in ("t.tar.gz", "plain.tar"):
        _, items = buildcopy.layout([src(files, name)], "/x/", False, add=True)
        assert items[0].extract, name
        _, items = buildcopy.layout([src(files, name)], "/x/", False, add=False)
        assert not items[0].extract, name


def test_not_every_magic_is_an_archive(files):
    assert not buildcopy.is_archive(str(files / "fake.gz"))
    assert not buildcopy.is_archive(str(files / "f.txt"))
    assert buildcopy.is_archive(str(files / "t.tar.gz"))


def test_a_downloaded_archive_is_not_extracted(files):
    path = str(files / "t.tar.gz")
    _, items = buildcopy.layout([Source("t.tar.gz", path)], "/x/", False, add=True, url_paths={path})
    assert not items[0].extract and items[0].name == "t.tar.gz"


def test_cache_text_names_kind_content_owner_and_dest(files):
    one = buildcopy.cache_text("COPY", [src(files, "f.txt")], "", "/x")
    assert one.startswith("COPY file:") and one.endswith(" in /x ")
    assert buildcopy.cache_text("COPY", [src(files, "d")], "", "/x").startswith("COPY dir:")
    assert buildcopy.cache_text("ADD", [src(files, "f.txt"), src(files, "g.txt")], "", "/x/").startswith("ADD multi:")
    assert "--chown=1:2 " in buildcopy.cache_text("COPY", [src(files, "f.txt")], "1:2", "/x")
    (files / "f.txt").write_bytes(b"F")
    assert buildcopy.cache_text("COPY", [src(files, "f.txt")], "", "/x") != one


@pytest.mark.parametrize("url, name", [
    ("http://127.0.0.1:1/a/b.tgz", "b.tgz"),
    ("http://127.0.0.1:1/a/", "a"),
    ("http://127.0.0.1:1", "index.html"),
])
def test_url_name(url, name):
    assert buildcopy.url_name(url) == name


# -- the plan ------------------------------------------------------------------

def opts(**kw):
    return builder.Options(**kw)


def test_steps_count_meta_args_from_lines_and_instructions():
    plan = builder.prepare("ARG V=1\nFROM busybox AS a\nRUN x\nFROM a\nCMD y\n", opts())
    assert plan.total == 5 and [s.name for s in plan.stages] == ["a", None]
    assert plan.globals == {"V": "1"}


def test_a_build_arg_overrides_a_global_default():
    assert builder.prepare("ARG V=1\nFROM x\n", opts(build_args={"V": "2"})).globals == {"V": "2"}


def test_unknown_instructions_fail_on_modern_paths_only():
    with pytest.raises(errors.BadParameter, match="line 2: unknown instruction: FOO"):
        builder.prepare("FROM x\nFOO bar\n", opts())
    assert builder.prepare("FROM x\nFOO bar\n", opts(legacy=True)).total == 2


def test_target_stops_at_its_stage():
    plan = builder.prepare("FROM x AS one\nRUN a\nFROM y AS two\nRUN b\n", opts(target="ONE"))
    assert [s.name for s in plan.stages] == ["one"] and plan.total == 2
    with pytest.raises(errors.BadParameter, match="failed to reach build target nope"):
        builder.prepare("FROM x AS one\n", opts(target="nope"))


def test_labels_are_a_last_label_step():
    plan = builder.prepare("FROM x\n", opts(labels={"a b": "c", "z": "1"}))
    last = plan.stages[-1].instructions[-1]
    assert last.cmd == "LABEL" and plan.total == 2
    from pyd.engine import dockerfile
    assert dockerfile.instruction_args(last) == [("a b", "c"), ("z", "1")]


# -- the context loader ------------------------------------------------------------

def test_a_gzip_context_whose_first_member_looks_like_bzip2(tmp_path):
    body = gzip.compress(make_tar([("BZh91AY&SY", b"not bzip2"), ("Dockerfile", b"FROM x\n")],
                                  fmt=tarfile.USTAR_FORMAT))
    text = bc.load(io.BytesIO(body), str(tmp_path), "Dockerfile", 1 << 20)
    assert text == "FROM x\n" and (tmp_path / "BZh91AY&SY").read_bytes() == b"not bzip2"


def test_ignored_dockerfile_and_dockerignore_are_read_then_dropped(tmp_path):
    body = make_tar([("Dockerfile", b"FROM x\n"), (".dockerignore", b"Dockerfile\n.dockerignore\n*.log\n"),
                     ("a.log", b"l"), ("keep", b"k")])
    assert bc.load(io.BytesIO(body), str(tmp_path), "Dockerfile", 1 << 20) == "FROM x\n"
    assert sorted(os.listdir(tmp_path)) == ["keep"]


def test_kept_build_files_stay(tmp_path):
    body = make_tar([("sub/Dockerfile.alt", b"FROM y\n"), (".dockerignore", b"*.log\n"), ("a.log", b"l")])
    assert bc.load(io.BytesIO(body), str(tmp_path), "sub/Dockerfile.alt", 1 << 20) == "FROM y\n"
    assert sorted(os.listdir(tmp_path)) == [".dockerignore", "sub"]
