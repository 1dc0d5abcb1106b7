"""engine.imagearchive without a daemon: moby's v1 ids (checked against the
archive dockerd 20.10.24 wrote when it saved images it had loaded from pyd),
Go's JSON and time spelling, plan_save's name rules, and load's reading of
hostile archives (BadParameter, nothing left behind, nothing stored).

Needs root for the layer extraction (tarsafe sets owners), as the test command runs.
"""

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from pyd import errors
from pyd.engine import imagearchive as ia


# Two configs as pyd wrote them (an import, then a commit with comment "c<x>"),
# and the layer `json` files dockerd 20.10.24 wrote for them in `docker save`.
BASE_ID = "48c74e9e281e3bbe663a6e8c936739335df04ce675a30eb000d6cff785dc51d2"
BASE = (
    b'{"architecture":"amd64","author":"","comment":"","config":{"AttachStderr":false,"AttachStdin":fa'
    b'lse,"AttachStdout":false,"Cmd":null,"Dns":null,"Entrypoint":null,"Env":null,"Hostname":"","Image'
    b'":"","Memory":0,"MemorySwap":0,"OpenStdin":false,"PortSpecs":null,"StdinOnce":false,"Tty":false,'
    b'"User":"","Volumes":null,"VolumesFrom":"","WorkingDir":""},"container":"","container_config":{"A'
    b'ttachStderr":false,"AttachStdin":false,"AttachStdout":false,"Cmd":null,"Dns":null,"Entrypoint":n'
    b'ull,"Env":null,"Hostname":"","Image":"","Memory":0,"MemorySwap":0,"OpenStdin":false,"PortSpecs":'
    b'null,"StdinOnce":false,"Tty":false,"User":"","Volumes":null,"VolumesFrom":"","WorkingDir":""},"c'
    b'reated":"2026-12-02T10:40:41.404219Z","docker_version":"pyd-0.2.0","history":[{"created":"2026-1'
    b'2-02T10:40:41.404219Z","created_by":"import"}],"os":"linux","rootfs":{"diff_ids":["sha256:684218'
    b'5fbb494aa6fae421757951552800df03ab1504fe79c3c532296b6d4d73"],"type":"layers"}}')
CHILD_ID = "c9feea9a7f5f1d8791c917c31c2c161a31dc7e15d87276e4bf6033bb86612631"
CHILD = (
    b'{"architecture":"amd64","author":"","comment":"c<x>","config":{"AttachStderr":false,"AttachStdin'
    b'":false,"AttachStdout":false,"Cmd":["sh","-c","echo hi > /x"],"Dns":null,"Domainname":"","Entryp'
    b'oint":null,"Env":null,"Hostname":"b87ac330b972","Image":"busybox","Memory":0,"MemorySwap":0,"Ope'
    b'nStdin":false,"PortSpecs":null,"StdinOnce":false,"StopSignal":"","Tty":false,"User":"","Volumes"'
    b':null,"VolumesFrom":"","WorkingDir":""},"container":"b87ac330b9727c9be1bc5c7dd48be849e78c320f109'
    b'348fcd23bf5aa53e1ac8c","container_config":{"AttachStderr":false,"AttachStdin":false,"AttachStdou'
    b't":false,"Cmd":["sh","-c","echo hi > /x"],"Dns":null,"Domainname":"","Entrypoint":null,"Env":nul'
    b'l,"Hostname":"b87ac330b972","Image":"busybox","Memory":0,"MemorySwap":0,"OpenStdin":false,"PortS'
    b'pecs":null,"StdinOnce":false,"StopSignal":"","Tty":false,"User":"","Volumes":null,"VolumesFrom":'
    b'"","WorkingDir":""},"created":"2026-12-02T10:40:41.434131Z","docker_version":"pyd-0.2.0","histor'
    b'y":[{"created":"2026-12-02T10:40:41.404219Z","created_by":"import"},{"comment":"c<x>","created":'
    b'"2026-12-02T10:40:41.434131Z","created_by":"sh -c echo hi > /x"}],"os":"linux","parent":"sha256:'
    b'48c74e9e281e3bbe663a6e8c936739335df04ce675a30eb000d6cff785dc51d2","rootfs":{"diff_ids":["sha256:'
    b'6842185fbb494aa6fae421757951552800df03ab1504fe79c3c532296b6d4d73","sha256:a42234e5e5fc20ce369b99'
    b'065eca839986e377fc1c564cfb12d6226e6dff7026"],"type":"layers"}}')
V1_BASE = "2cd98ebd759125ca19fc28455a8a64bedb7d1b812f8201adc822bcc5d61d2386"
V1_LOW = "57142a95fc9f3577042ef4f5fa8a080709b0b1cbdce6f17fb246caa37d098666"
V1_TOP = "f0e48de474750a7871ffbf7d2d6fccaa4e2e1ad84e3357f2f4bf801fb68e0b44"
JSON_BASE = (
    b'{"id":"2cd98ebd759125ca19fc28455a8a64bedb7d1b812f8201adc822bcc5d61d2386","created":"2026-12-02T1'
    b'0:40:41.404219Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false'
    b',"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env"'
    b':null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Lab'
    b'els":null},"docker_version":"pyd-0.2.0","config":{"Hostname":"","Domainname":"","User":"","Attac'
    b'hStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce'
    b'":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBui'
    b'ld":null,"Labels":null},"architecture":"amd64","os":"linux"}')
JSON_LOW = (
    b'{"id":"57142a95fc9f3577042ef4f5fa8a080709b0b1cbdce6f17fb246caa37d098666","created":"1970-01-01T0'
    b'0:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"Attac'
    b'hStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"'
    b'Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":nu'
    b'll},"os":"linux"}')
JSON_TOP = (
    b'{"id":"f0e48de474750a7871ffbf7d2d6fccaa4e2e1ad84e3357f2f4bf801fb68e0b44","parent":"57142a95fc9f3'
    b'577042ef4f5fa8a080709b0b1cbdce6f17fb246caa37d098666","comment":"c\\u003cx\\u003e","created":"202'
    b'6-12-02T10:40:41.434131Z","container":"b87ac330b9727c9be1bc5c7dd48be849e78c320f109348fcd23bf5aa5'
    b'3e1ac8c","container_config":{"Hostname":"b87ac330b972","Domainname":"","User":"","AttachStdin":f'
    b'alse,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"'
    b'Env":null,"Cmd":["sh","-c","echo hi \\u003e /x"],"Image":"busybox","Volumes":null,"WorkingDir":"'
    b'","Entrypoint":null,"OnBuild":null,"Labels":null},"docker_version":"pyd-0.2.0","config":{"Hostna'
    b'me":"b87ac330b972","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStd'
    b'err":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["sh","-c","echo hi '
    b'\\u003e /x"],"Image":"busybox","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"'
    b'Labels":null},"architecture":"amd64","os":"linux"}')


def test_vectors_are_what_they_say():
    assert hashlib.sha256(BASE).hexdigest() == BASE_ID
    assert hashlib.sha256(CHILD).hexdigest() == CHILD_ID


def test_v1_ids_and_json_as_dockerd_wrote_them():
    assert ia.v1_layer_configs(json.loads(BASE)) == [(V1_BASE, JSON_BASE)]
    assert ia.v1_layer_configs(json.loads(CHILD)) == [(V1_LOW, JSON_LOW), (V1_TOP, JSON_TOP)]


def test_chain_ids():
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert ia.chain_ids([a, b, c]) == [a, ab, abc]
    assert ia.chain_ids([]) == []


def test_go_json_escapes_as_go_does():
    assert ia.go_json({"b": 1, "a": [True, None, "x<y>&z"]}) == '{"a":[true,null,"x\\u003cy\\u003e\\u0026z"],"b":1}'
    assert ia.go_json("\b\f\n\u2028é\x01") == '"\\u0008\\u000c\\n\\u2028é\\u0001"'
    assert ia.go_json(ia.GoStruct(z=1, a=2)) == '{"z":1,"a":2}'   # a struct keeps its field order


@pytest.mark.parametrize("text,go", [
    ("2026-12-02T10:40:41.404219Z", "2026-12-02T10:40:41.404219Z"),
    ("2026-12-02T10:40:41.404219000Z", "2026-12-02T10:40:41.404219Z"),
    ("2026-12-02T10:40:41.000Z", "2026-12-02T10:40:41Z"),
    ("2026-12-02T10:40:41.123456789123Z", "2026-12-02T10:40:41.123456789Z"),
    ("2026-12-02T10:40:41+00:00", "2026-12-02T10:40:41Z"),
    ("2026-12-02T10:40:41.5+02:00", "2026-12-02T10:40:41.5+02:00"),
    (None, "0001-01-01T00:00:00Z"),
])
def test_go_time(text, go):
    assert ia.go_time(text) == go


def test_go_time_refuses_garbage():
    for bad in ("yesterday", "2026-12-02", 5, "2026-12-02T10:40:41"):
        with pytest.raises(ValueError):
            ia.go_time(bad)


def test_container_config_field_rules():
    got = ia.go_container_config({"cmd": "echo hi", "ExposedPorts": {}, "Labels": {"b": "1", "a": "2"},
                                   "StopTimeout": 0, "Healthcheck": {"Test": ["CMD", "true"], "Retries": 0},
                                   "Shell": [], "Memory": 5})
    assert list(got) == ["Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
                         "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "Image", "Volumes", "WorkingDir",
                         "Entrypoint", "OnBuild", "Labels", "StopTimeout"]
    assert got["Cmd"] == ["echo hi"]            # strslice: one string is a list of one
    assert got["Healthcheck"] == {"Test": ["CMD", "true"]}
    assert ia.go_json(got["Labels"]) == '{"a":"2","b":"1"}'
    assert got["StopTimeout"] == 0              # a pointer: kept when set, even to 0


def test_v1_image_refuses_a_config_go_cannot_decode():
    with pytest.raises(ValueError):
        ia.v1_image({"created": "2026-12-02T10:40:41Z", "config": {"Env": "not a list"}})


# -- plan_save ---------------------------------------------------------------------

class FakeImage:
    def __init__(self, raw):
        self.raw = raw
        self.id = hashlib.sha256(raw).hexdigest()
        self.config = json.loads(raw)

    @property
    def diff_ids(self):
        return self.config["rootfs"]["diff_ids"]

    @property
    def parent(self):
        return (self.config.get("parent") or "")[7:]

    @property
    def created(self):
        return self.config.get("created")


class FakeImages:
    """What imagearchive uses of store.images.ImageStore."""

    def __init__(self, images=(), tags=()):
        self.by_id = {i.id: i for i in images}
        self.tags = dict(tags)    # (repo, tag) -> id
        self.created = []

    def get(self, image_id):
        if image_id not in self.by_id:
            raise errors.NotFound(f"No such image: {image_id}")
        return self.by_id[image_id]

    def resolve(self, name):
        hits = [i for i in self.by_id if i.startswith(name)]
        if len(hits) == 1:
            return self.by_id[hits[0]]
        repo, _, tag = name.partition(":")
        if (repo, tag or "latest") in self.tags:
            return self.by_id[self.tags[(repo, tag or "latest")]]
        raise errors.NotFound(f"No such image: {name}")

    def refs(self):
        return [(r, t, i) for (r, t), i in sorted(self.tags.items())]

    def create_raw(self, raw, new_layers=()):
        img = FakeImage(raw)
        self.created.append((img.id, [tuple(x[:3]) for x in new_layers]))
        self.by_id[img.id] = img
        return img

    def set_tag(self, image_id, repo, tag=None, force=False):
        self.tags[(repo, tag)] = image_id


def test_plan_save_names():
    base, child = FakeImage(BASE), FakeImage(CHILD)
    images = FakeImages([base, child], {("busybox", "latest"): base.id, ("busybox", "old"): base.id,
                                        ("snap", "1"): child.id})
    plan = ia.plan_save(images, ["busybox"])                    # a repo: all its tags
    assert [(i.image.id, i.tags) for i in plan.items] == [(base.id, ["busybox:latest", "busybox:old"])]
    plan = ia.plan_save(images, ["snap:1", "sha256:" + base.id])  # by id: no tag
    assert [(i.image.id, i.tags) for i in plan.items] == [(child.id, ["snap:1"]), (base.id, [])]
    plan = ia.plan_save(images, [child.id[:10], "snap:1"])      # one image once, its tags gathered
    assert [(i.image.id, i.tags) for i in plan.items] == [(child.id, ["snap:1"])]
    with pytest.raises(errors.NotFound):
        ia.plan_save(images, ["busybox", "nosuch:latest"])
    with pytest.raises(errors.BadParameter):
        ia.plan_save(images, [])


def test_plan_save_refuses_an_image_without_layers():
    raw = json.dumps({"created": "2026-12-02T10:40:41Z", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    img = FakeImage(raw)
    with pytest.raises(errors.BadParameter, match="empty export"):
        ia.plan_save(FakeImages([img]), [img.id])


# -- load: archives built here -------------------------------------------------

def tar_of(members):
    """members: (name, bytes) for files, (name, None, linkname) for symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for m in members:
            ti = tarfile.TarInfo(m[0])
            if m[1] is None:
                ti.type, ti.linkname = tarfile.SYMTYPE, m[2]
                tf.addfile(ti)
            else:
                ti.size = len(m[1])
                tf.addfile(ti, io.BytesIO(m[1]))
    return buf.getvalue()


def layer(files):
    return tar_of([(n, d) for n, d in files])


def image_archive(layer_tars, tags=("img:1",), diff_ids=None, gz=False):
    diff_ids = diff_ids or ["sha256:" + hashlib.sha256(t).hexdigest() for t in layer_tars]
    raw = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-12-02T10:40:41Z",
                      "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
                      "history": [{"created": "2026-12-02T10:40:41Z"} for _ in diff_ids]}).encode()
    image_id = hashlib.sha256(raw).hexdigest()
    members, names = [(image_id + ".json", raw)], []
    for i, t in enumerate(layer_tars):
        members.append((f"l{i}/layer.tar", gzip.compress(t) if gz else t))
        names.append(f"l{i}/layer.tar")
    manifest = [{"Config": image_id + ".json", "RepoTags": list(tags) or None, "Layers": names}]
    members.append(("manifest.json", json.dumps(manifest).encode()))
    return tar_of(members), image_id, diff_ids


class FakeLayers:
    def __init__(self, have=()):
        self.have = set(have)

    def exists(self, diff_id):
        return diff_id in self.have


def load(tmp_path, data, images=None, layers=None, quiet=True):
    images = images or FakeImages()
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    loader = ia.Loader(images, layers or FakeLayers(), str(tmp), io.BytesIO(data))
    try:
        return images, list(loader.messages(quiet))
    finally:
        loader.close()
        assert os.listdir(tmp) == [], "the load left files behind"


def texts(msgs):
    return "".join(m.text for m in msgs if isinstance(m, ia.Text))


def test_load_a_docker_archive(tmp_path):
    l1, l2 = layer([("a", b"1")]), layer([("b", b"2")])
    data, image_id, diff_ids = image_archive([l1, l2], gz=True)   # a gzip layer: allowed
    images, msgs = load(tmp_path, data, quiet=False)
    assert [i for i, _ in images.created] == [image_id]
    assert [x[1] for x in images.created[0][1]] == diff_ids
    assert images.tags == {("img", "1"): image_id}
    assert texts(msgs) == "Loaded image: img:1\n"
    assert [m.id for m in msgs if isinstance(m, ia.Progress)] == [diff_ids[0][7:19]] * 2 + [diff_ids[1][7:19]] * 2
    assert [m for m in msgs if isinstance(m, ia.Loaded)] == [ia.Loaded(image_id)]


def test_load_skips_layers_it_has_and_says_ids_without_tags(tmp_path):
    l1, l2 = layer([("a", b"1")]), layer([("b", b"2")])
    data, image_id, diff_ids = image_archive([l1, l2], tags=())
    images, msgs = load(tmp_path, data, layers=FakeLayers([diff_ids[0]]))
    assert [x[1] for x in images.created[0][1]] == [diff_ids[1]]
    assert texts(msgs) == f"Loaded image ID: sha256:{image_id}\n"


def test_load_moves_a_tag_and_says_so(tmp_path):
    data, image_id, _ = image_archive([layer([("a", b"1")])], tags=("busybox:latest",))
    images = FakeImages([FakeImage(BASE)], {("busybox", "latest"): BASE_ID})
    _, msgs = load(tmp_path, data, images)
    assert texts(msgs) == (f"The image busybox:latest already exists, renaming the old one with ID sha256:{BASE_ID} "
                           f"to empty string\nLoaded image: busybox:latest\n")
    assert images.tags[("busybox", "latest")] == image_id


def test_load_refuses_a_layer_that_is_not_its_diff_id(tmp_path):
    real = layer([("a", b"1")])
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    data, _, _ = image_archive([real], diff_ids=[wrong])
    images = FakeImages()
    with pytest.raises(errors.BadParameter, match="invalid diffID for layer 0"):
        load(tmp_path, data, images)
    assert images.created == [] and images.tags == {}


def test_load_of_two_images_stores_none_when_the_second_is_bad(tmp_path):
    good, _, _ = image_archive([layer([("a", b"1")])], tags=("a:1",))
    bad_layer = layer([("b", b"2")])
    bad, _, _ = image_archive([bad_layer], tags=("b:1",), diff_ids=["sha256:" + "0" * 64])
    members = []
    for data in (good, bad):
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            members.append({m.name: tf.extractfile(m).read() for m in tf.getmembers()})
    manifest = json.loads(members[0].pop("manifest.json")) + json.loads(members[1].pop("manifest.json"))
    manifest[1]["Layers"] = ["m0/layer.tar"]
    files = list(members[0].items()) + [(k, v) for k, v in members[1].items() if k.endswith(".json")]
    files += [("m0/layer.tar", bad_layer), ("manifest.json", json.dumps(manifest).encode())]
    images = FakeImages()
    with pytest.raises(errors.BadParameter, match="invalid diffID"):
        load(tmp_path, tar_of(files), images)
    assert images.created == []


def test_load_follows_dockerds_layer_symlink_inside_the_archive(tmp_path):
    l1 = layer([("a", b"1")])
    data, image_id, diff_ids = image_archive([l1, l1])    # the same layer twice
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        files = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if m.name != "l1/layer.tar"]
    files.append(("l1/layer.tar", None, "../l0/layer.tar"))
    images, _ = load(tmp_path, tar_of(files))
    assert [x[1] for x in images.created[0][1]] == [diff_ids[0]]


HOSTILE = {
    "dot-dot name": [("../evil", b"x")],
    "absolute name": [("/tmp/evil", b"x")],
    "no manifest": [("x", b"y")],
    "symlinked manifest": [("manifest.json", None, "/etc/passwd")],
    "symlinked manifest inside": [("real.json", b"[]"), ("manifest.json", None, "real.json")],
    "manifest not a list": [("manifest.json", b'{"Config": "x"}')],
    "manifest not json": [("manifest.json", b"[{")],
    "huge manifest": [("manifest.json", b"[" + b" " * (ia.MAX_META + 10) + b"]")],
    "config leaving the archive": [("manifest.json", b'[{"Config": "../../etc/passwd", "Layers": []}]')],
    "config missing": [("manifest.json", b'[{"Config": "nope.json", "Layers": []}]')],
    "config a symlink out": [("c.json", None, "/etc/passwd"), ("manifest.json", b'[{"Config": "c.json", "Layers": []}]')],
    "config not a config": [("c.json", b"{}"), ("manifest.json", b'[{"Config": "c.json", "Layers": []}]')],
    "bad tag": [("c.json", b'{"rootfs": {"diff_ids": []}}'),
                ("manifest.json", b'[{"Config": "c.json", "Layers": [], "RepoTags": ["Bad Name:1"]}]')],
    "tag without a tag": [("c.json", b'{"rootfs": {"diff_ids": []}}'),
                          ("manifest.json", b'[{"Config": "c.json", "Layers": [], "RepoTags": ["x"]}]')],
    "layer count": [("c.json", b'{"rootfs": {"diff_ids": ["sha256:' + b"a" * 64 + b'"]}}'),
                    ("manifest.json", b'[{"Config": "c.json", "Layers": []}]')],
    "windows image": [("c.json", b'{"os": "windows", "rootfs": {"diff_ids": []}}'),
                      ("manifest.json", b'[{"Config": "c.json", "Layers": []}]')],
    "empty manifest": [("manifest.json", b"[]")],
}


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_hostile_archives_are_bad_parameters_and_leave_nothing(tmp_path, what):
    images = FakeImages()
    with pytest.raises(errors.BadParameter):
        load(tmp_path, tar_of(HOSTILE[what]), images)
    assert images.created == []
    assert not os.path.exists("/tmp/evil")


def test_a_layer_path_leaving_the_archive_is_refused(tmp_path):
    data, image_id, diff_ids = image_archive([layer([("a", b"1")])])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
    files["manifest.json"] = json.dumps([{"Config": image_id + ".json", "RepoTags": None,
                                          "Layers": ["../../../etc/passwd"]}]).encode()
    with pytest.raises(errors.BadParameter, match="leaves the archive"):
        load(tmp_path, tar_of(list(files.items())))


def test_a_layer_symlink_out_of_the_archive_finds_nothing(tmp_path):
    data, image_id, diff_ids = image_archive([layer([("a", b"1")])])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        files = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if m.name != "l0/layer.tar"]
    files.append(("l0/layer.tar", None, "/etc/passwd"))     # resolved inside the archive: missing
    with pytest.raises(errors.BadParameter, match="missing"):
        load(tmp_path, tar_of(files))


# -- OCI layout --------------------------------------------------------------------

def oci_archive(layer_tar, name="docker.io/library/ocibox:2", nested=False):
    def blob(data):
        return "sha256:" + hashlib.sha256(data).hexdigest(), data
    diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
    gz = gzip.compress(layer_tar)
    raw = json.dumps({"architecture": ia.fsops.architecture(), "os": "linux", "created": "2026-12-02T10:40:41Z",
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cfg_d, _ = blob(raw)
    lay_d, _ = blob(gz)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d,
                                      "size": len(raw)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": lay_d, "size": len(gz)}]}).encode()
    man_d, _ = blob(manifest)
    files = {cfg_d: raw, lay_d: gz, man_d: manifest}
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_d, "size": len(manifest),
           "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "2"}}
    if nested:
        inner = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [dict(top, platform={"os": "linux", "architecture": "s390x"}),
                                          dict(top, platform={"os": "linux",
                                                               "architecture": ia.fsops.architecture()})]}).encode()
        idx_d, _ = blob(inner)
        files[idx_d] = inner
        top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx_d, "size": len(inner),
               "annotations": top["annotations"]}
    index = json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()
    members = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
    members += [(f"blobs/sha256/{d[7:]}", data) for d, data in files.items()]
    return tar_of(members), hashlib.sha256(raw).hexdigest(), diff_id


@pytest.mark.parametrize("nested", [False, True])
def test_load_an_oci_layout(tmp_path, nested):
    data, image_id, diff_id = oci_archive(layer([("f", b"oci")]), nested=nested)
    images, msgs = load(tmp_path, data)
    assert [(i, [x[1] for x in new]) for i, new in images.created] == [(image_id, [diff_id])]
    assert images.tags == {("ocibox", "2"): image_id}
    assert texts(msgs) == "Loaded image: ocibox:2\n"


def test_an_oci_blob_that_is_not_its_digest_is_refused(tmp_path):
    data, _, _ = oci_archive(layer([("f", b"oci")]))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        files = [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]
    index = json.loads(dict(files)["index.json"])
    man = index["manifests"][0]["digest"][7:]
    files = [(n, d + b" " if n.endswith(man) else d) for n, d in files]
    with pytest.raises(errors.BadParameter, match="does not match its digest"):
        load(tmp_path, tar_of(files))
