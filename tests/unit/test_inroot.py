"""fs.inroot: resolution inside a root on a plain directory tree full of
links that try to leave it; archive entries of such a tree."""

import os
import stat

import pytest

from pyd.fs import inroot


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("inside\n")
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "f").write_text("f\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("OUTSIDE\n")
    links = {"abs": "/", "up": "../../../..", "rel_etc": "../../../etc", "host": str(outside),
             "loop": "loop", "d/back": "../..", "dlink": "d"}
    for name, target in links.items():
        os.symlink(target, root / name)
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield inroot.Root(fd), root, outside
    os.close(fd)


def read(node):
    fd = node.reopen(os.O_RDONLY)
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["/etc/passwd", "abs/etc/passwd", "up/etc/passwd", "../../etc/passwd",
                                  "rel_etc/passwd", "d/back/etc/passwd", "d/sub/../../../etc/passwd",
                                  "dlink/back/up/abs/etc/passwd"])
def test_every_way_up_stops_at_the_root(tree, path):
    root, _, _ = tree
    with root.lookup(path) as node:
        assert read(node) == b"inside\n"
        assert node.path == "/etc/passwd"


def test_links_to_host_paths_are_container_paths(tree):
    root, _, outside = tree
    with pytest.raises(FileNotFoundError):
        root.lookup("host/passwd")
    assert root.real_path("host") == str(outside)   # as a container path: it does not exist there
    with root.lookup("host") as node:               # not followed
        assert stat.S_ISLNK(node.st.st_mode)


def test_final_link_followed_only_when_asked(tree):
    root, _, _ = tree
    with root.lookup("dlink") as node:
        assert stat.S_ISLNK(node.st.st_mode)
    with root.lookup("dlink", follow=True) as node:
        assert stat.S_ISDIR(node.st.st_mode) and node.path == "/d"
    assert root.real_path("up/d/back/nowhere/x") == "/nowhere/x"
    assert root.real_path("nowhere/../d/f/x") == "/d/f/x"       # under a file: kept as it is


def test_loops_and_non_dirs(tree):
    root, _, _ = tree
    with pytest.raises(OSError) as e:
        root.lookup("loop/x")
    assert e.value.errno == 40  # ELOOP
    with pytest.raises(NotADirectoryError):
        root.lookup("d/f/x")


def test_tar_entries_archive_links_as_links(tree):
    root, _, _ = tree
    with root.lookup("/") as node:
        entries = {ti.name: ti for ti, _ in root.tar_entries(node, "/")}
    assert entries["/abs"].issym() and entries["/abs"].linkname == "/"
    assert entries["/host"].issym() and not [n for n in entries if n.startswith(("/host/", "/up/"))]
    assert "/etc/passwd" in entries and "/" in entries
    with root.lookup("/d") as node:
        assert sorted(ti.name for ti, _ in root.tar_entries(node, "d")) == ["d", "d/back", "d/f", "d/sub"]
