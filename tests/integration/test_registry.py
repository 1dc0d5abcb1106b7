"""Images over the wire: pull, push, /auth and search against Debian's
docker-registry (distribution 2.8), started here on 127.0.0.1 (tests/pydtest/
registry.py), through the docker CLI and raw HTTP on both surfaces.

Image names are always 127.0.0.1:<port>/...: pyd, like dockerd, speaks plain
HTTP to localhost and 127.0.0.0/8 registries without --insecure-registry.
Each test has its own registry (its own port), so credentials that pyd keeps
in memory after one test's /auth never help another test.
"""

import http.server
import io
import json
import os
import re
import subprocess
import tarfile
import threading
import urllib.parse
import uuid

import pytest

from tests.pydtest import require_mark, store_entries
from tests.pydtest import registry as reglib
from tests.pydtest.registry import Front, Registry, TokenFront, registry_auth_header

DOCKER = "/usr/local/bin/docker"
V = "/v1.41"
USER, PASSWORD = "alice", "correct-horse-battery"

pytestmark = require_mark(reglib.available() and os.access(DOCKER, os.X_OK),
                          "docker-registry, htpasswd (apt: docker-registry apache2-utils) and the docker CLI")


# -- fixtures -------------------------------------------------------------

@pytest.fixture
def registry(tmp_path):
    r = Registry(tmp_path / "registry").start()
    yield r
    r.stop()


@pytest.fixture
def auth_registry(tmp_path):
    r = Registry(tmp_path / "registry-auth", auth="htpasswd", users={USER: PASSWORD}).start()
    yield r
    r.stop()


@pytest.fixture
def fresh(new_daemon):
    """A second, empty daemon: every layer it pulls comes over the wire."""
    return new_daemon().start()


# -- helpers --------------------------------------------------------------

def messages(body):
    """The JSON objects of a progress stream (newline separated or not)."""
    text, dec, out, i = body.decode(), json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


def stream_error(r):
    """The error of a pull or push: the body of a non-200 answer, or the first
    error in the stream; None when it worked."""
    if r.status != 200:
        try:
            return r.json().get("message") or r.text
        except ValueError:
            return r.text or f"status {r.status}"
    for m in messages(r.body):
        if m.get("error") or m.get("errorDetail"):
            return m.get("error") or m["errorDetail"].get("message", "")
    return None


def ok_stream(r):
    err = stream_error(r)
    assert err is None, f"{r.status}: {err}\n{r.body[-2000:]!r}"
    return messages(r.body)


def with_file(tar_bytes, name, data):
    """The tar with one more regular file: an image whose layer no other test has."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isreg() else None)
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
        dst.addfile(ti, io.BytesIO(data))
    return out.getvalue()


def small_tar(files):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return out.getvalue()


def import_image(api, tar, ref):
    repo, _, tag = ref.rpartition(":")
    r = api.post(f"{V}/images/create?fromSrc=-&repo={repo}&tag={tag}", tar,
                 headers={"Content-Type": "application/x-tar"})
    ok_stream(r)
    return inspect_image(api, ref)["Id"]


def inspect_image(api, ref):
    r = api.get(f"{V}/images/{ref}/json")
    assert r.status == 200, r
    return r.json()


def image_missing(api, ref):
    return api.get(f"{V}/images/{ref}/json").status == 404


def tag(api, src, ref):
    repo, _, t = ref.rpartition(":")
    r = api.post(f"{V}/images/{src}/tag?repo={repo}&tag={t}")
    assert r.status == 201, r


def rmi(api, ref, force=False):
    r = api.delete(f"{V}/images/{ref}" + ("?force=1" if force else ""))
    assert r.status == 200, r
    return r.json()


def pull(api, ref, auth=None, timeout=300):
    """POST /v1.41/images/create?fromImage=..&tag=.. as the docker CLI sends it
    (a digest goes in `tag`)."""
    if "@" in ref:
        name, _, t = ref.partition("@")
    else:
        name, _, t = ref.rpartition(":")
    headers = {"X-Registry-Auth": auth} if auth else {}
    return api.post(f"{V}/images/create?fromImage={name}&tag={t}", headers=headers, timeout=timeout)


def push(api, ref, auth=None, timeout=300):
    name, _, t = ref.rpartition(":")
    headers = {"X-Registry-Auth": auth} if auth else {}
    return api.post(f"{V}/images/{name}/push?tag={t}", headers=headers, timeout=timeout)


def by_status(msgs, status):
    return {m.get("id") for m in msgs if m.get("status") == status}


def short(digest):
    return digest.partition(":")[2][:12]


def docker(daemon, *args, config_dir, timeout=300, stdin=None):
    """The real docker CLI against the daemon, with a private DOCKER_CONFIG."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(config_dir),
           "DOCKER_CONFIG": str(config_dir)}
    return subprocess.run([DOCKER, "-H", f"unix://{daemon.sock}", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, input=stdin)


def layer_dirs(daemon):
    return [e for e in store_entries(daemon.root, "layers") if re.fullmatch(r"[0-9a-f]{64}", e)]


def image_ids(api):
    r = api.get(f"{V}/images/json?all=1")
    assert r.status == 200, r
    return sorted(i["Id"] for i in r.json())


def auth_error(err):
    e = (err or "").lower()
    return any(w in e for w in ("unauthorized", "authentication required", "no basic auth credentials",
                                "denied", "401", "insufficient_scope"))


# -- push, delete, pull back, run ----------------------------------------

def test_cli_push_rmi_then_run_pulls_it_back(daemon, api, busybox, busybox_tar, registry, tmp_path):
    marker = uuid.uuid4().hex
    ref = f"{registry.addr}/cli/imported:v1"
    image_id = import_image(api, with_file(busybox_tar, "etc/marker", marker.encode()), ref)
    local = inspect_image(api, ref)

    p = docker(daemon, "push", ref, config_dir=tmp_path / "cfg")
    assert p.returncode == 0, p.stderr + p.stdout
    digest, manifest, _ = registry.manifest("cli/imported", "v1")
    raw = registry.manifest_bytes("cli/imported", "v1")
    # The CLI prints the digest the daemon reported: "<tag>: digest: sha256:... size: N".
    m = re.search(r"v1: digest: (sha256:[0-9a-f]{64}) size: (\d+)", p.stdout)
    assert m, p.stdout
    assert m.group(1) == digest and int(m.group(2)) == len(raw)
    assert manifest["config"]["digest"] == image_id
    config = json.loads(registry.blob("cli/imported", image_id))
    assert config["rootfs"]["diff_ids"] == local["RootFS"]["Layers"]
    assert [l["mediaType"] for l in manifest["layers"]] == ["application/vnd.docker.image.rootfs.diff.tar.gzip"]

    p = docker(daemon, "rmi", ref, config_dir=tmp_path / "cfg")
    assert p.returncode == 0, p.stderr
    assert image_missing(api, image_id)
    assert local["RootFS"]["Layers"][0].partition(":")[2] not in layer_dirs(daemon)

    # docker run: create -> 404 -> pull -> create.
    p = docker(daemon, "run", "--rm", ref, "cat", "/etc/marker", config_dir=tmp_path / "cfg")
    assert p.returncode == 0, p.stderr + p.stdout
    assert p.stdout.strip() == marker
    assert "Unable to find image" in p.stderr, p.stderr
    assert f"{short(manifest['layers'][0]['digest'])}: Pull complete" in p.stderr, p.stderr
    again = inspect_image(api, ref)
    assert again["Id"] == image_id
    assert again["RootFS"]["Layers"] == local["RootFS"]["Layers"]
    assert f"{registry.addr}/cli/imported@{digest}" in again["RepoDigests"]
    rmi(api, ref)


def legacy_messages(r):
    """A v1.3 progress stream: JSON objects with status, progress or error only."""
    assert r.status == 200, r
    msgs = messages(r.body)
    assert msgs, r.body
    for m in msgs:
        assert set(m) & {"status", "progress", "error"}, m
        assert not set(m) & {"progressDetail", "aux"}, m
    errs = [m["error"] for m in msgs if m.get("error")]
    assert not errs, errs
    return msgs


def test_legacy_push_and_pull_on_the_v13_paths(daemon, api, busybox, busybox_tar, registry):
    marker = uuid.uuid4().hex
    ref = f"{registry.addr}/legacy/bb:t"
    image_id = import_image(api, with_file(busybox_tar, "etc/marker", marker.encode()), ref)

    # v1.3 push: the authConfig in the body; every tag of the repository goes.
    legacy_messages(api.post(f"/images/{registry.addr}/legacy/bb/push", {}, timeout=300))
    digest, manifest, _ = registry.manifest("legacy/bb", "t")
    assert manifest["config"]["digest"] == image_id
    assert registry.tags("legacy/bb") == ["t"]

    rmi(api, ref)
    assert image_missing(api, image_id)
    legacy_messages(api.post(f"/images/create?fromImage={registry.addr}/legacy/bb&tag=t", timeout=300))
    assert inspect_image(api, ref)["Id"] == image_id
    code, out, cid = api.run(["cat", "/etc/marker"], image=ref)
    assert (code, out.strip()) == (0, marker)
    api.delete(f"/containers/{cid}")

    # v1.3's registry= parameter names the registry apart from the repository.
    rmi(api, ref)
    assert image_missing(api, image_id)
    legacy_messages(api.post(f"/images/create?fromImage=legacy/bb&tag=t&registry={registry.addr}", timeout=300))
    names = [n for n in (ref, "legacy/bb:t") if not image_missing(api, n)]
    assert names, "the pull with registry= tagged nothing"
    assert all(inspect_image(api, n)["Id"] == image_id for n in names)
    code, out, cid = api.run(["cat", "/etc/marker"], image=image_id.partition(":")[2])
    assert (code, out.strip()) == (0, marker)
    api.delete(f"/containers/{cid}")
    for n in names:
        rmi(api, n)


# -- a multi-layer image round-trips ------------------------------------------

def commit_on(api, image, path, content, ref):
    code, _, cid = api.run(["sh", "-c", f"echo {content} > {path}"], image=image)
    assert code == 0
    repo, _, t = ref.rpartition(":")
    r = api.post(f"{V}/commit?container={cid}&repo={repo}&tag={t}&comment=step-{t}")
    assert r.status == 201, r
    assert api.delete(f"{V}/containers/{cid}").status == 204
    return r.json()["Id"]


def history(api, ref):
    r = api.get(f"{V}/images/{ref}/history")
    assert r.status == 200, r
    return [(h["Created"], h["CreatedBy"], h["Comment"], h["Size"]) for h in r.json()]


def test_multi_layer_round_trip(daemon, api, busybox, registry, tmp_path):
    name = f"{registry.addr}/multi/img"
    one = uuid.uuid4().hex
    id1 = commit_on(api, "busybox", "/one", one, f"{name}:1")
    id2 = commit_on(api, f"{name}:1", "/two", "two-" + one, f"{name}:2")
    before = inspect_image(api, f"{name}:2")
    diff_ids = before["RootFS"]["Layers"]
    assert len(diff_ids) == 3
    hist = history(api, f"{name}:2")

    msgs1 = ok_stream(push(api, f"{name}:1"))
    msgs2 = ok_stream(push(api, f"{name}:2"))
    d1, m1, _ = registry.manifest("multi/img", "1")
    d2, m2, _ = registry.manifest("multi/img", "2")
    # The pushed digest is reported as the CLI reads it (aux Tag/Digest/Size).
    aux = [m["aux"] for m in msgs2 if "aux" in m]
    assert aux and aux[-1]["Tag"] == "2" and aux[-1]["Digest"] == d2
    assert aux[-1]["Size"] == len(registry.manifest_bytes("multi/img", "2"))
    assert [m["aux"]["Digest"] for m in msgs1 if "aux" in m][-1] == d1
    # The two layers :1 pushed are not sent again.
    assert len(by_status(msgs2, "Layer already exists")) == 2, msgs2
    assert m2["config"]["digest"] == id2 and m1["config"]["digest"] == id1
    assert json.loads(registry.blob("multi/img", id2))["rootfs"]["diff_ids"] == diff_ids
    assert [l["digest"] for l in m2["layers"]][:2] == [l["digest"] for l in m1["layers"]]
    blobs = [l["digest"] for l in m2["layers"]]

    rmi(api, id2, force=True)
    rmi(api, id1, force=True)
    assert image_missing(api, id1) and image_missing(api, id2)
    assert not {d.partition(":")[2] for d in diff_ids[1:]} & set(layer_dirs(daemon))

    # :1 first: busybox's layer is here already; then :2 needs only its own layer.
    msgs = ok_stream(pull(api, f"{name}:1"))
    assert by_status(msgs, "Already exists") == {short(blobs[0])}, msgs
    assert by_status(msgs, "Pull complete") == {short(blobs[1])}, msgs
    msgs = ok_stream(pull(api, f"{name}:2"))
    assert by_status(msgs, "Already exists") == {short(blobs[0]), short(blobs[1])}, msgs
    assert by_status(msgs, "Pull complete") == {short(blobs[2])}, msgs
    # Per-layer progress the CLI draws bars from: id, status, progressDetail{current,total}.
    size = m2["layers"][2]["size"]
    details = [m["progressDetail"] for m in msgs if m.get("id") == short(blobs[2]) and m.get("status") == "Downloading"]
    assert details and all(d.get("total") == size and 0 < d.get("current", 0) <= size for d in details), msgs
    assert any(m.get("status") == f"Digest: {d2}" for m in msgs), msgs
    assert any(m.get("status") == f"Status: Downloaded newer image for {name}:2" for m in msgs), msgs

    after = inspect_image(api, f"{name}:2")
    assert after["Id"] == id2
    assert after["RootFS"]["Layers"] == diff_ids
    assert f"{name}@{d2}" in after["RepoDigests"]
    assert inspect_image(api, f"{name}:1")["Id"] == id1
    assert history(api, f"{name}:2") == hist
    code, out, cid = api.run(["cat", "/one", "/two"], image=f"{name}:2")
    assert (code, out.split()) == (0, [one, "two-" + one])
    api.delete(f"/containers/{cid}")

    # By digest, through the CLI: the image comes back under name@digest.
    rmi(api, id2, force=True)
    p = docker(daemon, "pull", f"{name}@{d2}", config_dir=tmp_path / "cfg")
    assert p.returncode == 0, p.stderr + p.stdout
    assert f"{short(blobs[2])}: Pull complete" in p.stdout, p.stdout
    assert f"{short(blobs[1])}: Already exists" in p.stdout, p.stdout
    assert inspect_image(api, f"{name}@{d2}")["Id"] == id2
    assert f"{name}@{d2}" in inspect_image(api, id2)["RepoDigests"]
    rmi(api, id2, force=True)
    rmi(api, id1, force=True)


def test_pull_unknown_tag_is_a_clear_in_stream_error(daemon, api, busybox, registry):
    registry.put_image("known/img", "v1", [small_tar({"f": b"x"})])
    images, layers = image_ids(api), store_entries(daemon.root, "layers")
    for ref in (f"{registry.addr}/known/img:nope", f"{registry.addr}/unknown/img:v1"):
        r = pull(api, ref)
        assert r.status == 200, r
        errs = [m for m in messages(r.body) if "errorDetail" in m]
        assert errs, r.body
        msg = errs[-1]["errorDetail"]["message"]
        assert "unknown" in msg or "not found" in msg, msg
        assert errs[-1]["error"] == msg
        assert image_missing(api, ref)
    assert image_ids(api) == images
    assert store_entries(daemon.root, "layers") == layers


# -- htpasswd basic auth --------------------------------------------------------

def test_auth_endpoint(api, auth_registry):
    good = api.post(f"{V}/auth", {"username": USER, "password": PASSWORD, "serveraddress": auth_registry.addr})
    assert good.status == 200, good
    assert good.json().get("Status") == "Login Succeeded", good
    bad = api.post(f"{V}/auth", {"username": USER, "password": "wrong", "serveraddress": auth_registry.addr})
    assert bad.status == 401, bad
    assert bad.json()["message"], bad
    assert "wrong" not in bad.text
    nobody = api.post(f"{V}/auth", {"username": "mallory", "password": PASSWORD,
                                   "serveraddress": auth_registry.addr})
    assert nobody.status == 401, nobody


def test_docker_login_and_push(daemon, api, busybox, auth_registry, tmp_path):
    cfg = tmp_path / "docker-config"
    ref = f"{auth_registry.addr}/private/cli:v1"
    tag(api, "busybox", ref)
    p = docker(daemon, "push", ref, config_dir=cfg)
    assert p.returncode != 0, p.stdout
    assert auth_error(p.stderr + p.stdout), p.stderr
    assert auth_registry.tags("private/cli") == []

    p = docker(daemon, "login", auth_registry.addr, "-u", USER, "-p", "wrong", config_dir=cfg)
    assert p.returncode != 0, p.stdout
    assert "Login Succeeded" not in p.stdout
    assert "Error response from daemon" in p.stderr, p.stderr
    assert not os.path.exists(cfg / "config.json") or auth_registry.addr not in \
        json.loads((cfg / "config.json").read_text()).get("auths", {})

    p = docker(daemon, "login", auth_registry.addr, "-u", USER, "--password-stdin", config_dir=cfg,
               stdin=PASSWORD + "\n")
    assert p.returncode == 0, p.stderr
    assert "Login Succeeded" in p.stdout
    assert auth_registry.addr in json.loads((cfg / "config.json").read_text())["auths"]

    p = docker(daemon, "push", ref, config_dir=cfg)
    assert p.returncode == 0, p.stderr + p.stdout
    assert auth_registry.tags("private/cli") == ["v1"]
    rmi(api, ref)


def test_htpasswd_push_and_pull_with_and_without_credentials(api, busybox, auth_registry, fresh):
    ref = f"{auth_registry.addr}/private/bb:v1"
    tag(api, "busybox", ref)
    good = registry_auth_header(USER, PASSWORD, auth_registry.addr)
    bad = registry_auth_header(USER, "wrong", auth_registry.addr)

    err = stream_error(push(api, ref))
    assert err and auth_error(err), err
    err = stream_error(push(api, ref, auth=bad))
    assert err and auth_error(err), err
    assert auth_registry.tags("private/bb") == []
    ok_stream(push(api, ref, auth=good))
    digest, manifest, _ = auth_registry.manifest("private/bb", "v1")
    assert manifest["config"]["digest"] == "sha256:" + busybox
    rmi(api, ref)

    # Pull into a daemon that has never seen these credentials.
    fa = fresh.api
    err = stream_error(pull(fa, ref))
    assert err and auth_error(err), err
    err = stream_error(pull(fa, ref, auth=bad))
    assert err and auth_error(err), err
    assert image_ids(fa) == [] and layer_dirs(fresh) == []
    ok_stream(pull(fa, ref, auth=good))
    assert inspect_image(fa, ref)["Id"] == "sha256:" + busybox
    code, out, _ = fa.run(["cat", "/etc/motd"], image=ref)
    assert (code, out) == (0, "hello from the busybox test image\n")


def test_legacy_push_takes_credentials_from_the_body(api, busybox, auth_registry):
    ref = f"{auth_registry.addr}/private/legacy:t"
    tag(api, "busybox", ref)
    r = api.post(f"/images/{auth_registry.addr}/private/legacy/push", {}, timeout=300)
    err = stream_error(r)
    assert err and auth_error(err), r.body
    assert auth_registry.tags("private/legacy") == []
    body = {"username": USER, "password": PASSWORD, "email": "", "serveraddress": auth_registry.addr}
    legacy_messages(api.post(f"/images/{auth_registry.addr}/private/legacy/push", body, timeout=300))
    assert auth_registry.tags("private/legacy") == ["t"]
    rmi(api, ref)


# -- a token-auth registry ---------------------------------------------------------

def test_token_auth_pull_and_push(api, busybox, registry, fresh):
    with TokenFront(registry, {"bob": PASSWORD}) as front:
        ref = f"{front.addr}/tok/bb:v1"
        tag(api, "busybox", ref)
        good = registry_auth_header("bob", PASSWORD, front.addr)

        err = stream_error(push(api, ref))
        assert err and auth_error(err), err
        assert registry.tags("tok/bb") == []
        ok_stream(push(api, ref, auth=good))
        assert registry.tags("tok/bb") == ["v1"]
        assert registry.manifest("tok/bb", "v1")[1]["config"]["digest"] == "sha256:" + busybox
        # Tokens came from the realm, for this repository, with bob's password.
        assert any(u == "bob" and granted and "repository:tok/bb:pull,push" in scopes
                   for u, scopes, granted in front.token_requests), front.token_requests
        rmi(api, ref)

        fa = fresh.api
        err = stream_error(pull(fa, ref))
        assert err and auth_error(err), err
        assert image_ids(fa) == []
        ok_stream(pull(fa, ref, auth=good))
        assert inspect_image(fa, ref)["Id"] == "sha256:" + busybox

        good_auth = api.post(f"{V}/auth", {"username": "bob", "password": PASSWORD, "serveraddress": front.addr})
        assert good_auth.status == 200, good_auth
        assert good_auth.json().get("Status") == "Login Succeeded" or good_auth.json().get("IdentityToken")
        bad_auth = api.post(f"{V}/auth", {"username": "bob", "password": "nope", "serveraddress": front.addr})
        assert bad_auth.status == 401, bad_auth


def test_token_auth_anonymous_pull_only(api, busybox, registry, fresh):
    info = registry.put_image("anon/img", "v1", [small_tar({"hello": b"anonymous\n"})])
    with TokenFront(registry, {"bob": PASSWORD}, anonymous_pull=True) as front:
        fa = fresh.api
        ok_stream(pull(fa, f"{front.addr}/anon/img:v1"))
        assert inspect_image(fa, f"{front.addr}/anon/img:v1")["Id"] == info["config"]
        assert any(u is None and granted for u, _, granted in front.token_requests), front.token_requests
        ref = f"{front.addr}/anon/pushed:v1"
        tag(api, "busybox", ref)
        err = stream_error(push(api, ref))
        assert err and auth_error(err), err
        assert registry.tags("anon/pushed") == []
        rmi(api, ref)


# -- failures: a registry that dies, a blob that lies ------------------------------

def test_registry_killed_mid_pull_leaves_nothing_and_a_retry_works(registry, fresh, busybox_tar):
    marker = uuid.uuid4().hex.encode()
    info = registry.put_image("kill/img", "v1", [with_file(busybox_tar, "etc/marker", marker),
                                                   small_tar({"second": b"layer\n"})])
    fa = fresh.api
    with Front(registry) as front:
        ref = f"{front.addr}/kill/img:v1"
        big = max(info["layers"], key=lambda l: l["size"])
        assert big["size"] > 256 << 10
        front.cut_blob(128 << 10, registry.kill)
        err = stream_error(pull(fa, ref))
        assert front.cut_done() and registry.proc.poll() is not None, front.requests
        assert err, "the pull succeeded although the registry died"
        assert image_ids(fa) == []
        assert store_entries(fresh.root, "layers") == []
        assert image_missing(fa, ref)

        registry.start()
        ok_stream(pull(fa, ref))
        img = inspect_image(fa, ref)
        assert img["Id"] == info["config"] and img["RootFS"]["Layers"] == info["diff_ids"]
        code, out, _ = fa.run(["cat", "/etc/marker", "/second"], image=ref)
        assert (code, out) == (0, marker.decode() + "layer\n")


def test_tampered_blob_is_rejected(registry, fresh, busybox_tar):
    info = registry.put_image("tamper/img", "v1", [busybox_tar])
    registry.tamper_blob(info["layers"][0]["digest"])
    fa = fresh.api
    err = stream_error(pull(fa, f"{registry.addr}/tamper/img:v1"))
    assert err and "digest" in err.lower(), err
    assert image_ids(fa) == []
    assert store_entries(fresh.root, "layers") == []
    assert image_missing(fa, f"{registry.addr}/tamper/img:v1")


# -- search -----------------------------------------------------------------------

def test_search_falls_back_to_the_catalog(api, registry):
    for repo in ("searchme/alpha", "searchme/beta", "other/gamma"):
        registry.put_image(repo, "v1", [small_tar({"f": repo.encode()})])
    r = api.get(f"{V}/images/search?term={registry.addr}/searchme")
    assert r.status == 200, r
    found = r.json()
    assert isinstance(found, list)
    for hit in found:
        assert set(hit) == {"name", "description", "star_count", "is_official", "is_automated"}, hit
        assert isinstance(hit["star_count"], int) and isinstance(hit["is_official"], bool)
        assert isinstance(hit["is_automated"], bool) and isinstance(hit["description"], str)
    names = sorted(h["name"].removeprefix(registry.addr + "/") for h in found)
    assert names == ["searchme/alpha", "searchme/beta"], found

    r = api.get(f"{V}/images/search?term={registry.addr}/gam")
    assert r.status == 200, r
    assert [h["name"].removeprefix(registry.addr + "/") for h in r.json()] == ["other/gamma"]
    r = api.get(f"{V}/images/search?term={registry.addr}/nothing-matches-this")
    assert r.status == 200, r
    assert r.json() == []
    r = api.get(f"{V}/images/search?term={registry.addr}/searchme&limit=1")
    assert r.status == 200, r
    assert len(r.json()) == 1


# -- the CLI's progress --------------------------------------------------------------

def test_cli_pull_shows_per_layer_progress(daemon, api, busybox_tar, registry, tmp_path):
    marker = uuid.uuid4().hex.encode()
    info = registry.put_image("progress/img", "v1", [with_file(busybox_tar, "etc/marker", marker),
                                                       small_tar({"a": b"1\n"}), small_tar({"b": b"2\n"})])
    ref = f"{registry.addr}/progress/img:v1"
    p = docker(daemon, "pull", ref, config_dir=tmp_path / "cfg")
    assert p.returncode == 0, p.stderr + p.stdout
    lines = p.stdout.splitlines()
    assert lines[0] == "v1: Pulling from progress/img", p.stdout
    for layer in info["layers"]:
        assert f"{short(layer['digest'])}: Pull complete" in lines, p.stdout
    assert f"Digest: {info['digest']}" in lines, p.stdout
    assert f"Status: Downloaded newer image for {ref}" in lines, p.stdout
    assert lines[-1] == ref, p.stdout
    assert inspect_image(api, ref)["Id"] == info["config"]
    rmi(api, ref)


# -- the v1.3 paths of /auth and search; bad input ------------------------------------

def test_legacy_auth_and_search_shapes(api, auth_registry):
    good = api.post("/v1.3/auth", {"username": USER, "password": PASSWORD, "email": "a@b.c",
                                   "serveraddress": auth_registry.addr})
    assert good.status == 200, good
    assert good.json()["Status"] == "Login Succeeded"
    bad = api.post("/auth", {"username": USER, "password": "nope", "serveraddress": auth_registry.addr})
    assert bad.status == 401, bad
    assert "nope" not in bad.text and bad.text.strip(), bad
    # The login is kept in memory: search and push need no credentials of their own now.
    auth_registry.put_image("legacyfind/one", "v1", [small_tar({"f": b"1"})])
    r = api.get(f"/v1.3/images/search?term={auth_registry.addr}/legacyfind")
    assert r.status == 200, r
    assert r.json() == [{"Name": f"{auth_registry.addr}/legacyfind/one", "Description": ""}]
    r = api.get(f"/images/search?term={auth_registry.addr}/absent-name")
    assert (r.status, r.json()) == (200, [])


def test_credentials_are_kept_from_auth_for_pull_and_push(api, busybox, auth_registry, fresh):
    ref = f"{auth_registry.addr}/kept/bb:v1"
    tag(api, "busybox", ref)
    assert api.post(f"{V}/auth", {"username": USER, "password": PASSWORD,
                                  "serveraddress": auth_registry.addr}).status == 200
    ok_stream(push(api, ref))                     # no X-Registry-Auth: the login from /auth
    assert auth_registry.tags("kept/bb") == ["v1"]
    fa = fresh.api                                # another daemon knows nothing of it
    assert auth_error(stream_error(pull(fa, ref)))
    assert fa.post(f"{V}/auth", {"username": USER, "password": PASSWORD,
                                 "serveraddress": f"http://{auth_registry.addr}/v2/"}).status == 200
    ok_stream(pull(fa, ref))
    assert inspect_image(fa, ref)["Id"] == "sha256:" + busybox
    rmi(api, ref)


def test_pull_without_a_tag_takes_every_tag(api, busybox, registry, fresh):
    one = registry.put_image("every/tag", "a", [small_tar({"a": b"a\n"})])
    two = registry.put_image("every/tag", "b", [small_tar({"b": b"b\n"})])
    fa = fresh.api
    msgs = legacy_messages(fa.post(f"/v1.3/images/create?fromImage={registry.addr}/every/tag", timeout=300))
    assert inspect_image(fa, f"{registry.addr}/every/tag:a")["Id"] == one["config"]
    assert inspect_image(fa, f"{registry.addr}/every/tag:b")["Id"] == two["config"]
    assert image_missing(fa, f"{registry.addr}/every/tag:latest")
    assert any(m.get("status", "").startswith("Status: Downloaded newer image") for m in msgs), msgs


@pytest.mark.parametrize("prefix", ["", "/v1.3", V])
def test_bad_registry_input_is_refused_before_the_stream(api, busybox, registry, prefix):
    r = api.post(f"{prefix}/images/create?fromImage={registry.addr}/UPPER/case&tag=v1")
    assert r.status == 400, r
    r = api.post(f"{prefix}/images/create?fromImage={registry.addr}/x/y&tag=v1",
                 headers={"X-Registry-Auth": "%%%not-base64"})
    assert r.status == 400, r
    r = api.post(f"{prefix}/images/{registry.addr}/never/here/push?tag=v1")
    assert r.status == 404, r
    r = api.post(f"{prefix}/auth", b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400, r
    r = api.post(f"{prefix}/auth", {"username": "", "password": "", "serveraddress": registry.addr})
    assert r.status == 400, r
    r = api.get(f"{prefix}/images/search")
    assert r.status == 400, r
    r = api.get(f"{prefix}/images/search?term={registry.addr}/x&limit=1000")
    assert r.status == 400, r
    tag(api, "busybox", f"{registry.addr}/legacy/body:t")
    r = api.post(f"{prefix}/images/{registry.addr}/legacy/body/push", b"[1, 2]",
                 headers={"Content-Type": "application/json"})
    assert r.status == 400, r
    rmi(api, f"{registry.addr}/legacy/body:t")
    assert registry.tags("legacy/body") == []


# -- build pulls its base image -------------------------------------------------------

def test_build_pulls_a_missing_base_and_pull_1_asks_again(registry, fresh, busybox_tar):
    info = registry.put_image("base/bb", "v1", [busybox_tar])
    base = f"{registry.addr}/base/bb:v1"
    fa = fresh.api
    ctx = small_tar({"Dockerfile": f"FROM {base}\nRUN echo built > /built\n".encode()})
    r = fa.post(f"{V}/build?t=built:1", ctx, headers={"Content-Type": "application/x-tar"}, timeout=300)
    text = "".join(m.get("stream", "") for m in ok_stream(r))
    assert f"Status: Downloaded newer image for {base}" in text, text
    assert inspect_image(fa, base)["Id"] == info["config"]
    code, out, _ = fa.run(["cat", "/built"], image="built:1")
    assert (code, out) == (0, "built\n")
    # pull=1: the registry is asked again even though the base is here.
    r = fa.post(f"{V}/build?t=built:2&pull=1", ctx, headers={"Content-Type": "application/x-tar"}, timeout=300)
    text = "".join(m.get("stream", "") for m in ok_stream(r))
    assert f"Status: Image is up to date for {base}" in text, text
    # A base that no registry has: a clear error, nothing built.
    bad = small_tar({"Dockerfile": f"FROM {registry.addr}/base/absent:v1\n".encode()})
    r = fa.post(f"{V}/build?t=built:3", bad, headers={"Content-Type": "application/x-tar"}, timeout=300)
    err = stream_error(r)
    assert err and "not found" in err and "base/absent" in err, err
    assert image_missing(fa, "built:3")


# -- search through a registry's /v1/search (the Hub's index speaks it) -----------------

class _Index(http.server.BaseHTTPRequestHandler):
    """A search index on 127.0.0.1 speaking the Hub's /v1/search."""
    seen = []

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/v1/search":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        q = urllib.parse.parse_qs(url.query)
        self.seen.append((q.get("q"), q.get("n")))
        body = json.dumps({"num_results": 2, "query": q["q"][0], "results": [
            {"name": "team/sshd", "description": "an sshd", "star_count": 7, "is_official": False,
             "is_automated": True},
            {"name": "sshd", "description": "", "star_count": 90, "is_official": True, "is_automated": False},
        ]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_search_uses_v1_search_where_the_registry_has_it(api):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        addr = f"127.0.0.1:{srv.server_address[1]}"
        r = api.get(f"{V}/images/search?term={addr}/sshd&limit=5")
        assert r.status == 200, r
        assert r.json() == [
            {"name": "team/sshd", "description": "an sshd", "star_count": 7, "is_official": False,
             "is_automated": True},
            {"name": "sshd", "description": "", "star_count": 90, "is_official": True, "is_automated": False}]
        assert _Index.seen[-1] == (["sshd"], ["5"])
        r = api.get(f"/images/search?term={addr}/sshd")
        assert r.status == 200, r
        assert r.json() == [{"Name": "team/sshd", "Description": "an sshd"}, {"Name": "sshd", "Description": ""}]
        assert _Index.seen[-1] == (["sshd"], ["25"])
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_zstd_layer_pulls_and_runs(registry, fresh, busybox_tar):
    marker = uuid.uuid4().hex.encode()
    info = registry.put_image("zstd/img", "v1", [with_file(busybox_tar, "etc/marker", marker)], compression="zstd")
    fa = fresh.api
    msgs = ok_stream(pull(fa, f"{registry.addr}/zstd/img:v1"))
    assert by_status(msgs, "Pull complete") == {short(info["layers"][0]["digest"])}, msgs
    img = inspect_image(fa, f"{registry.addr}/zstd/img:v1")
    assert img["Id"] == info["config"] and img["RootFS"]["Layers"] == info["diff_ids"]
    code, out, _ = fa.run(["cat", "/etc/marker"], image=f"{registry.addr}/zstd/img:v1")
    assert (code, out) == (0, marker.decode())
