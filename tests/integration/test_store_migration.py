"""The data-root migration from release 0.1.0's layout to format 2.

A real 0.1.0 root is built once per session by the 0.1.0 code itself, taken
from git history (tests.pydtest.legacy_root). Each test starts the current
daemon on a fresh `cp -a` copy, since the first start migrates in place.
The copy is made at the path the root was built at: 0.1.0 records volumes
by absolute host path under its data root, and a moved root would not find
them (0.1.0 itself would make fresh ones).

What the tests rely on: the API, format.json's "format" value, and the
images/sha256 path (a regular file planted there makes the migration fail).
No other path of format 2 is asserted.

Network: only 127.0.0.1.
"""

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import types

import pytest

from tests.pydtest import Daemon, inspect
from tests.pydtest.legacy_root import build_root_010

FORMAT = 3  # 0.1.0's root is migrated to format 2, then 3
# The daemon's own files in the root (the test harness puts its log and socket there).
NOT_COMPARED = {"daemon.log", "pyd.lock", "pyd.pid", "pyd.sock"}
PLANTED = os.path.join("images", "sha256")


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def root_010(tmp_path_factory):
    """The manifest of a 0.1.0 root; the root itself is kept at m["pristine"]."""
    base = tmp_path_factory.mktemp("pyd-0.1.0")
    m = build_root_010(base / "root", base / "work")
    m["pristine"] = str(base / "root.pristine")
    os.rename(m["root"], m["pristine"])
    return m


@pytest.fixture
def legacy(root_010):
    """A fresh copy of the 0.1.0 root at its original path, and a factory of
    current daemons on it; all stopped and the copy removed at the end."""
    root = root_010["root"]
    if os.path.lexists(root):
        shutil.rmtree(root)
    subprocess.run(["cp", "-a", root_010["pristine"], root], check=True)
    made = []

    def daemon(r=root):
        d = Daemon(r)
        made.append(d)
        return d

    yield types.SimpleNamespace(root=root, m=root_010, daemon=daemon)
    for d in made:
        d.stop()
    shutil.rmtree(root)


@pytest.fixture
def fresh_daemons():
    made = []

    def daemon(root):
        d = Daemon(root)
        made.append(d)
        return d

    yield daemon
    for d in made:
        d.stop()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def describe(path):
    st = os.lstat(path)
    xattrs = tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False))
                          for n in os.listxattr(path, follow_symlinks=False)))
    head = (st.st_mode, st.st_uid, st.st_gid, xattrs)
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return head + (st.st_size, h.hexdigest())
    if stat.S_ISLNK(st.st_mode):
        return head + (os.readlink(path),)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return head + (st.st_rdev,)
    return head  # directories (their entries are in the map), fifos, sockets


def tree_map(root, exclude=()):
    """{relative path: (mode, uid, gid, xattrs, size and sha256 | link target | rdev)}
    of everything under root, root itself as '.', without NOT_COMPARED and `exclude`."""
    skip = NOT_COMPARED | set(exclude)
    out = {".": describe(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames) + filenames:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if rel not in skip:
                out[rel] = describe(os.path.join(dirpath, name))
        dirnames[:] = [n for n in dirnames if os.path.relpath(os.path.join(dirpath, n), root) not in skip]
    return out


def assert_same_tree(before, after):
    changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    assert not (changed or added or removed), (
        f"the root changed: changed {changed[:20]}, added {added[:20]}, removed {removed[:20]}")


def start_fails(d):
    """Start `d`; it must exit by itself with a non-zero status. Returns its log."""
    with pytest.raises(RuntimeError) as ei:
        d.start(timeout=20)
    rc = d.proc.returncode
    d.stop()
    assert "daemon exited with" in str(ei.value), f"the daemon did not exit by itself: {ei.value}"
    assert rc not in (None, 0), f"exit status {rc}"
    return d.log()


def read_format(root):
    with open(os.path.join(root, "format.json")) as f:
        return json.load(f)["format"]


def same_id(a, b):
    """Ids compare by prefix: listings give 12 characters, inspect 64."""
    return bool(a) and bool(b) and (a.startswith(b) or b.startswith(a))


def logs(api, cid, stdout=1, stderr=1):
    return api.logs(cid, stdout, stderr).decode(errors="replace")


def check_images(api, m):
    """The 0.1.0 images and tags serve and run. Returns {name: id} as the daemon reports them now."""
    ids = {}
    for name in ("busybox", "busybox:latest", "busybox:old", "committed:v1"):
        r = api.get(f"/images/{name}/json")
        assert r.status == 200, (name, r)
        ids[name] = r.json()["id"]
    assert ids["busybox"] == ids["busybox:latest"] == ids["busybox:old"], ids
    assert ids["committed:v1"] != ids["busybox"], ids
    r = api.get("/images/committed:v1/history")
    assert r.status == 200, r
    assert len(r.json()) == m["history"]["committed:v1"] == 2, r.json()
    r = api.get("/images/json")
    assert r.status == 200, r
    tags = {(i["Repository"], i["Tag"]) for i in r.json()}
    assert {("busybox", "latest"), ("busybox", "old"), ("committed", "v1")} <= tags, tags

    code, out, _ = api.run(["cat", "/marker"], image="committed:v1")
    assert (code, out) == (0, "layer\n")
    code, out, _ = api.run(["true"], image="busybox")
    assert (code, out) == (0, "")
    return ids


def check_listed(api, m):
    r = api.get("/containers/json?all=1")
    assert r.status == 200, r
    listed = [c["Id"] for c in r.json()]
    for role, c in m["containers"].items():
        assert any(same_id(i, c["id"]) for i in listed), (role, c["id"], listed)


def check_containers(api, m, root, ids):
    """The 0.1.0 containers are listed, keep their logs, and run again."""
    cs = m["containers"]
    check_listed(api, m)

    # Stopped containers: state and output as 0.1.0 left them, both streams apart.
    st = cs["stopped"]
    info = inspect(api, st["id"])
    assert not info["State"]["Running"]
    assert info["State"]["ExitCode"] == st["exit"] == 3
    assert logs(api, st["id"]) == st["logs"]
    assert logs(api, st["id"], stdout=1, stderr=0) == st["stdout"]
    assert logs(api, st["id"], stdout=0, stderr=1) == st["stderr"]
    mc = cs["marker_check"]
    assert inspect(api, mc["id"])["State"]["ExitCode"] == 0
    assert logs(api, mc["id"]) == mc["logs"] == "layer\n"

    # The volume container: its image, its output, its volume on the host.
    vc = cs["volume"]
    info = inspect(api, vc["id"])
    assert not info["State"]["Running"] and info["State"]["ExitCode"] == 0
    assert same_id(api.get(f"/images/{info['Image']}/json").json()["id"], ids["busybox"]), info["Image"]
    assert logs(api, vc["id"]) == vc["logs"] == "hello-from-010\n"
    host = info["Volumes"]["/data"]
    assert os.path.realpath(host).startswith(os.path.realpath(root) + os.sep), host
    with open(os.path.join(host, "f")) as f:
        assert f.read() == "keep\n"

    # Run it again: the command prints /data/f before writing it.
    api.start(vc["id"])
    assert api.wait(vc["id"]) == 0
    assert logs(api, vc["id"]) == "hello-from-010\n" + "hello-from-010\nkeep\n"
    info = inspect(api, vc["id"])
    assert info["Volumes"]["/data"] == host
    with open(os.path.join(host, "f")) as f:
        assert f.read() == "keep\n"

    # Created by 0.1.0, never started: it starts now.
    cr = cs["created"]
    info = inspect(api, cr["id"])
    assert not info["State"]["Running"] and info["State"]["Pid"] == 0
    assert logs(api, cr["id"]) == ""
    api.start(cr["id"])
    assert api.wait(cr["id"]) == cr["exit"] == 0
    assert logs(api, cr["id"]) == cr["logs_after_start"]


# --------------------------------------------------------------------------
# a 0.1.0 root is migrated
# --------------------------------------------------------------------------

def test_fixture_root_is_010_layout(root_010):
    """Guards the fixture: what 0.1.0 wrote is the layout of its docs/storage.md."""
    p, m = root_010["pristine"], root_010
    assert not os.path.exists(os.path.join(p, "format.json"))
    for image_id in m["images"].values():
        assert os.path.isfile(os.path.join(p, "images", image_id + ".json"))
        assert os.path.isdir(os.path.join(p, "layers", image_id))
    with open(os.path.join(p, "repositories.json")) as f:
        assert json.load(f)["Repositories"] == {
            "busybox": {"latest": m["images"]["busybox"], "old": m["images"]["busybox"]},
            "committed": {"v1": m["images"]["committed"]}}
    for c in m["containers"].values():
        assert os.path.isfile(os.path.join(p, "containers", c["id"], "config.json"))


def test_migrated_root_is_format_2(legacy):
    d = legacy.daemon().start()
    assert read_format(legacy.root) == FORMAT
    check_images(d.api, legacy.m)
    assert d.stop() == 0, d.log()
    assert read_format(legacy.root) == FORMAT


def test_migrated_images_serve_and_run(legacy):
    d = legacy.daemon().start()
    check_images(d.api, legacy.m)
    assert d.stop() == 0, d.log()


def test_migrated_containers_keep_logs_volumes_and_run(legacy):
    d = legacy.daemon().start()
    ids = check_images(d.api, legacy.m)
    check_containers(d.api, legacy.m, legacy.root, ids)
    assert d.stop() == 0, d.log()


def test_second_start_on_migrated_root_is_the_same(legacy):
    d = legacy.daemon().start()
    assert d.stop() == 0, d.log()
    assert read_format(legacy.root) == FORMAT
    with open(os.path.join(legacy.root, "format.json"), "rb") as f:
        fmt = f.read()

    d = legacy.daemon().start()
    ids = check_images(d.api, legacy.m)
    check_containers(d.api, legacy.m, legacy.root, ids)
    assert d.stop() == 0, d.log()
    with open(os.path.join(legacy.root, "format.json"), "rb") as f:
        assert f.read() == fmt

    # And once more after the first run's changes (restart, new containers).
    d = legacy.daemon().start()
    check_images(d.api, legacy.m)
    check_listed(d.api, legacy.m)
    vc = legacy.m["containers"]["volume"]
    assert logs(d.api, vc["id"]) == "hello-from-010\nhello-from-010\nkeep\n"
    assert logs(d.api, legacy.m["containers"]["stopped"]["id"]) == legacy.m["containers"]["stopped"]["logs"]
    assert d.stop() == 0, d.log()
    assert read_format(legacy.root) == FORMAT


# --------------------------------------------------------------------------
# a failed migration, a future format
# --------------------------------------------------------------------------

def test_failed_migration_keeps_the_old_root(legacy):
    planted = os.path.join(legacy.root, PLANTED)
    with open(planted, "wb") as f:
        f.write(b"not a directory\n")
    before = tree_map(legacy.root, exclude={PLANTED})

    log = start_fails(legacy.daemon())
    assert re.search(r"migrat", log, re.I), log
    assert_same_tree(before, tree_map(legacy.root, exclude={PLANTED}))
    assert not os.path.lexists(os.path.join(legacy.root, "format.json"))
    with open(planted, "rb") as f:
        assert f.read() == b"not a directory\n"

    os.unlink(planted)
    d = legacy.daemon().start()
    assert read_format(legacy.root) == FORMAT
    check_images(d.api, legacy.m)
    check_listed(d.api, legacy.m)
    assert d.stop() == 0, d.log()


def check_future_format_refused(d, root):
    with open(os.path.join(root, "format.json"), "w") as f:
        json.dump({"format": 99}, f)
    before = tree_map(root)

    log = start_fails(d)
    said = "\n".join(line for line in log.splitlines() if "format" in line.lower())
    assert re.search(r"\b99\b", said), log
    assert re.search(r"support", said, re.I) and re.search(rf"\b{FORMAT}\b", said), log
    assert_same_tree(before, tree_map(root))
    assert read_format(root) == 99


def test_future_format_is_refused_on_an_empty_root(tmp_path, fresh_daemons):
    root = tmp_path / "root"
    root.mkdir()
    check_future_format_refused(fresh_daemons(root), str(root))


def test_future_format_is_refused_on_a_010_root(legacy):
    check_future_format_refused(legacy.daemon(), legacy.root)


def test_a_format_2_root_without_its_format_file_is_refused(legacy):
    d = legacy.daemon().start()
    assert d.stop() == 0, d.log()
    os.unlink(os.path.join(legacy.root, "format.json"))
    before = tree_map(legacy.root)
    log = start_fails(legacy.daemon())
    assert re.search(r"format.json is missing", log), log
    assert_same_tree(before, tree_map(legacy.root))
