"""docker save and docker load (issue 13): pyd's archives load back with the
same image ids (the layers' exact tars come from their tar splits), through
raw HTTP and the docker CLI, dockerd can load them and pyd can load
dockerd's, and a hostile archive stores nothing."""

import io
import json
import os
import subprocess
import tarfile

import pytest

from tests.pydtest import busybox_rootfs_tar, require_mark
from tests.pydtest import dockerd as dd

DOCKER = "/usr/local/bin/docker"
M = "/v1.41"


def load_busybox(api):
    r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_rootfs_tar(),
                 headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r


def image_id(api, name):
    r = api.get(f"{M}/images/{name}/json")
    assert r.status == 200, (name, r)
    return r.json()["Id"]


def commit_twice(api, repo):
    image = "busybox"
    for n in (1, 2):
        cid = api.post(f"{M}/containers/create", json.dumps({"Image": image, "Cmd": ["sh", "-c", f"echo {n} > /f{n}"]}).encode(),
                       headers={"Content-Type": "application/json"}).json()["Id"]
        assert api.post(f"{M}/containers/{cid}/start").status == 204
        assert api.post(f"{M}/containers/{cid}/wait").status == 200
        image = f"{repo}:{n}"
        assert api.post(f"{M}/commit?container={cid}&repo={repo}&tag={n}").status == 201
        assert api.delete(f"{M}/containers/{cid}").status == 204
    return image


@pytest.fixture
def two(new_daemon):
    a, b = new_daemon().start(), new_daemon().start()
    load_busybox(a.api)
    return a, b


def test_save_then_load_keeps_ids_tags_and_history(two):
    a, b = two
    top = commit_twice(a.api, "multi")
    # multi:1 too: history follows parents here, and a parent not saved is not loaded
    r = a.api.get(f"{M}/images/get?names=busybox&names=multi:1&names={top}")
    assert r.status == 200 and r.headers.get("Content-Type") == "application/x-tar", r
    with tarfile.open(fileobj=io.BytesIO(r.body)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
    assert sorted(t for m in manifest for t in m["RepoTags"] or []) == ["busybox:latest", "multi:1", top]
    loaded = b.api.post(f"{M}/images/load", r.body, headers={"Content-Type": "application/x-tar"})
    assert loaded.status == 200 and b"errorDetail" not in loaded.body, loaded
    assert b"Loaded image: multi:2" in loaded.body, loaded
    for name in ("busybox", top):
        assert image_id(a.api, name) == image_id(b.api, name), name
    ha = a.api.get(f"{M}/images/{top}/history").json()
    hb = b.api.get(f"{M}/images/{top}/history").json()
    assert [h["CreatedBy"] for h in ha] == [h["CreatedBy"] for h in hb] and len(hb) == 3
    out = b.api.post(f"{M}/containers/create", json.dumps({"Image": top, "Cmd": ["cat", "/f1", "/f2"]}).encode(),
                     headers={"Content-Type": "application/json"}).json()["Id"]
    b.api.post(f"{M}/containers/{out}/start")
    b.api.post(f"{M}/containers/{out}/wait")
    assert b"1\n" in b.api.get(f"{M}/containers/{out}/logs?stdout=1").body


def test_cli_save_and_load(two, tmp_path):
    a, b = two
    path = tmp_path / "bb.tar"
    env = dict(os.environ)
    p = subprocess.run([DOCKER, "-H", f"unix://{a.sock}", "save", "-o", str(path), "busybox"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([DOCKER, "-H", f"unix://{b.sock}", "load", "-i", str(path)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Loaded image: busybox:latest" in p.stdout, (p.stdout, p.stderr)
    assert image_id(a.api, "busybox") == image_id(b.api, "busybox")


def test_unknown_name_is_404_before_any_byte(two):
    a, _ = two
    assert a.api.get(f"{M}/images/nosuch/get").status == 404


def hostile(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("members", [
    [("../escape", b"x"), ("manifest.json", b"[]")],
    [("manifest.json", b"not json")],
    [("manifest.json", json.dumps([{"Config": "../../etc/passwd", "RepoTags": ["x:y"], "Layers": []}]).encode())],
])
def test_hostile_archives_store_nothing(two, members):
    _, b = two
    before = b.api.get(f"{M}/images/json?all=1").json()
    r = b.api.post(f"{M}/images/load", hostile(members), headers={"Content-Type": "application/x-tar"})
    assert r.status == 400 or b"errorDetail" in r.body, r
    assert b.api.get(f"{M}/images/json?all=1").json() == before
    assert not os.path.exists(os.path.join(os.path.dirname(b.root), "escape"))


@pytest.mark.differential
@require_mark(dd.installed() is not None, "dockerd (Debian's docker.io)")
def test_dockerd_round_trip_keeps_ids(new_daemon, tmp_path_factory):
    a = new_daemon().start()
    load_busybox(a.api)
    top = commit_twice(a.api, "rt")
    saved = a.api.get(f"{M}/images/get?names={top}")
    assert saved.status == 200
    d = dd.Dockerd(tmp_path_factory.mktemp("dd"))  # short: containerd's socket path has a bound
    d.start()
    try:
        r = d.unix_api.post(f"{M}/images/load", saved.body, headers={"Content-Type": "application/x-tar"})
        assert r.status == 200 and b"errorDetail" not in r.body, r
        assert image_id(d.unix_api, top) == image_id(a.api, top)
        back = d.unix_api.get(f"{M}/images/get?names={top}")
        assert back.status == 200
    finally:
        d.stop()
    b = new_daemon().start()
    r = b.api.post(f"{M}/images/load", back.body, headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b"errorDetail" not in r.body, r
    assert image_id(b.api, top) == image_id(a.api, top)
