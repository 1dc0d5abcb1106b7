"""The content-addressed store (docs/storage.md), seen through the API and
on disk: layers by diff id, shared between images; image ids that are the
digest of their config; one layer per commit."""

import hashlib
import io
import json
import os
import tarfile
import uuid

from tests.pydtest import image_config, layer_dir, layer_path, store_entries


def small_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = uuid.uuid4().hex.encode() * 100
        ti = tarfile.TarInfo("etc/unique")
        ti.size, ti.mtime = len(data), 1700000000
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def import_as(api, data, repo):
    r = api.post(f"/images/create?fromSrc=-&repo={repo}", data, headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r
    return api.get(f"/images/{repo}/json").json()["id"]


def layer_dirs(root):
    return [n for n in store_entries(root, "layers") if not n.endswith((".json", ".split"))]


def test_the_same_tar_twice_under_two_names_is_one_layer(api, daemon):
    data = small_tar()
    before = layer_dirs(daemon.root)
    a = import_as(api, data, f"same{uuid.uuid4().hex[:8]}")
    b = import_as(api, data, f"same{uuid.uuid4().hex[:8]}")
    assert a != b  # two imports, two images (each config has its own created time)...
    ca, cb = image_config(daemon.root, a), image_config(daemon.root, b)
    assert ca["rootfs"]["diff_ids"] == cb["rootfs"]["diff_ids"]  # ...on one layer
    diff_id = ca["rootfs"]["diff_ids"][0]
    assert diff_id == "sha256:" + hashlib.sha256(data).hexdigest()  # the digest of the tar stream
    added = sorted(set(layer_dirs(daemon.root)) - set(before))
    assert added == [diff_id[7:]]
    # The layer lives while one image uses it, and goes with the last.
    assert api.delete(f"/images/{a}").status == 200
    assert os.path.isdir(layer_path(daemon.root, diff_id))
    assert api.delete(f"/images/{b}").status == 200
    assert not os.path.exists(layer_path(daemon.root, diff_id))
    assert layer_dirs(daemon.root) == before


def test_image_id_is_the_digest_of_its_stored_config(api, daemon, busybox):
    for image_id in [busybox] + [n[:-5] for n in store_entries(daemon.root, "images")]:
        with open(os.path.join(daemon.root, "images", "sha256", image_id + ".json"), "rb") as f:
            raw = f.read()
        assert hashlib.sha256(raw).hexdigest() == image_id
        cfg = json.loads(raw)
        assert cfg["rootfs"]["type"] == "layers" and cfg["rootfs"]["diff_ids"]
        assert len(cfg["history"]) == len(cfg["rootfs"]["diff_ids"])
    # The v1.3 surface shows the same id, 64 hex or 12.
    assert api.get(f"/images/{busybox[:12]}/json").json()["id"] == busybox


def test_a_commit_adds_exactly_one_layer_holding_its_changes(api, daemon, busybox):
    code, _, cid = api.run(["sh", "-c", "echo new > /etc/added; rm /etc/motd; mkdir -p /srv/x"])
    assert code == 0
    r = api.post(f"/commit?container={cid}&repo=onelayer{uuid.uuid4().hex[:8]}")
    assert r.status == 201, r
    image_id = r.json()["Id"]
    parent, child = image_config(daemon.root, busybox), image_config(daemon.root, image_id)
    assert child["parent"] == "sha256:" + busybox
    assert child["rootfs"]["diff_ids"][:-1] == parent["rootfs"]["diff_ids"]
    assert len(child["rootfs"]["diff_ids"]) == len(parent["rootfs"]["diff_ids"]) + 1
    assert len(child["history"]) == len(parent["history"]) + 1
    layer = layer_dir(daemon.root, image_id)
    names = set()
    for dirpath, dirnames, filenames in os.walk(layer):
        for n in dirnames + filenames:
            names.add(os.path.relpath(os.path.join(dirpath, n), layer))
    # The changes and nothing else: the new file, the whiteout, the new dirs
    # (and their parents, which overlay copies up).
    assert names == {"etc", "etc/added", "etc/motd", "srv", "srv/x"}, names
    st = os.lstat(os.path.join(layer, "etc", "motd"))
    assert st.st_rdev == 0 and (st.st_mode & 0o170000) == 0o020000  # a whiteout: 0/0 char device
    with open(os.path.join(layer, "etc", "added"), "rb") as f:
        assert f.read() == b"new\n"
    # The diff id is the digest of that layer as a tar.
    from pyd.fs.layerfs import layer_digest
    assert layer_digest(layer) == child["rootfs"]["diff_ids"][-1]
    # And the image runs with the change.
    code, out, _ = api.run(["sh", "-c", "cat /etc/added; test -e /etc/motd || echo gone"], image=image_id)
    assert (code, out) == (0, "new\ngone\n")
    assert api.delete(f"/containers/{cid}").status == 204
