"""docker cp through the API: GET, HEAD and PUT /containers/{id}/archive on
running and stopped containers, and hostile paths and tars that must stay
inside the container (docs/archive.md).

Host directories live under tmp_path. Network: only 127.0.0.1.
"""

import base64
import gzip
import io
import json
import os
import subprocess
import tarfile
import time
import uuid
from urllib.parse import quote

import pytest

from tests.pydtest import kill, require, wait_for

GO_DIR, GO_SYMLINK = 1 << 31, 1 << 27


def sh(script):
    return ["sh", "-c", script]


def uniq(prefix="cp"):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ctrs(api):
    made = []
    yield made
    for cid in made:
        api.delete(f"/containers/{cid}?force=1&v=1")


def wait_logs(api, cid, text, timeout=20):
    return wait_for(lambda: text in api.logs(cid).decode(errors="replace"), timeout,
                    f"{text!r} in the logs of {cid[:12]}")


SETUP = ("mkdir -p /d/sub && echo one > /d/x && echo two > /d/sub/y && echo hi > /f; "
         "ln -s /loop /loop; ln -s /f/under /underfile; "
         "ln -s ../../../../etc/shadow /rel; ln -s /etc/shadow /abs; ln -s / /rootlink; "
         "ln -s ../../.. /uplink; ln -s d /dlink; cp /etc/passwd /passwd.copy; ")


@pytest.fixture(params=["stopped", "running"])
def box(request, api, busybox, ctrs):
    """A container with SETUP done, stopped or running (sleeping)."""
    cid = api.create(sh(SETUP + "echo ready; sleep 300"))
    ctrs.append(cid)
    api.start(cid)
    wait_logs(api, cid, "ready")
    if request.param == "stopped":
        kill(api, cid)
    yield cid
    if request.param == "running":
        kill(api, cid)


def archive_url(cid, path, **query):
    q = "&".join([f"path={quote(path)}"] + [f"{k}={v}" for k, v in query.items()])
    return f"/v1.41/containers/{cid}/archive?{q}"


def get_tar(api, cid, path):
    r = api.get(archive_url(cid, path))
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/x-tar"
    tf = tarfile.open(fileobj=io.BytesIO(r.body))
    return {m.name.rstrip("/"): m for m in tf.getmembers()}, tf, decode_stat(r)


def decode_stat(r):
    return json.loads(base64.b64decode(r.headers["X-Docker-Container-Path-Stat"]))


def put(api, cid, path, data, **query):
    return api.request("PUT", archive_url(cid, path, **query), body=data,
                       headers={"Content-Type": "application/x-tar"})


def make_tar(*entries):
    """entries: (name, kind, payload) with kind file|dir|sym|hard."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_600_000_000
            if kind == "file":
                ti.size, ti.mode = len(payload), 0o644
                tf.addfile(ti, io.BytesIO(payload))
                continue
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
            tf.addfile(ti)
    return buf.getvalue()


def content(api, cid, path):
    names, tf, _ = get_tar(api, cid, path)
    (m,) = names.values()
    return tf.extractfile(m).read()


def host_snapshot(*dirs):
    out = {}
    for d in dirs:
        for dirpath, dirnames, files in os.walk(d):
            for n in dirnames + files:
                p = os.path.join(dirpath, n)
                out[p] = os.lstat(p).st_mtime_ns
    return out


# --------------------------------------------------------------------------
# GET and HEAD
# --------------------------------------------------------------------------

def test_get_file(api, box):
    names, tf, st = get_tar(api, box, "/f")
    assert list(names) == ["f"]
    assert tf.extractfile(names["f"]).read() == b"hi\n"
    assert st["name"] == "f" and st["size"] == 3 and st["linkTarget"] == ""
    assert st["mode"] & 0o777 == names["f"].mode & 0o777 and not st["mode"] & GO_DIR
    assert st["mtime"].endswith("Z") and st["mtime"][:4].isdigit()


def test_get_dir_has_its_name_on_top(api, box):
    names, tf, st = get_tar(api, box, "/d")
    assert set(names) == {"d", "d/x", "d/sub", "d/sub/y"}
    assert names["d"].isdir() and tf.extractfile(names["d/sub/y"]).read() == b"two\n"
    assert st["name"] == "d" and st["mode"] & GO_DIR


def test_get_dir_dot_copies_contents(api, box):
    names, _, st = get_tar(api, box, "/d/.")
    assert set(names) == {".", "./x", "./sub", "./sub/y"}
    assert st["name"] == "."


def test_symlinks_are_archived_not_followed(api, box):
    for path, target in (("/rel", "../../../../etc/shadow"), ("/abs", "/etc/shadow")):
        names, _, st = get_tar(api, box, path)
        assert list(names) == [path[1:]]
        m = names[path[1:]]
        assert m.issym() and m.linkname == target and m.size == 0
        assert st["mode"] & GO_SYMLINK
        # resolved inside the container: /etc/shadow there, whatever the host has
        assert st["linkTarget"] == "/etc/shadow"


def test_odd_links_still_have_a_stat(api, box):
    r = api.request("HEAD", archive_url(box, "/loop"))
    assert r.status == 200 and decode_stat(r)["linkTarget"] == "/loop"
    assert api.get(archive_url(box, "/loop/")).status == 400  # following it loops
    r = api.request("HEAD", archive_url(box, "/underfile"))
    assert r.status == 200 and decode_stat(r)["linkTarget"] == "/f/under"
    names, _, _ = get_tar(api, box, "/loop")
    assert names["loop"].issym() and names["loop"].linkname == "/loop"


def test_trailing_slash_follows_a_dir_link(api, box):
    names, tf, st = get_tar(api, box, "/dlink/")
    assert set(names) == {"dlink", "dlink/x", "dlink/sub", "dlink/sub/y"}
    assert st["name"] == "dlink" and st["mode"] & GO_DIR


@pytest.mark.parametrize("via", ["/rootlink", "/uplink", "/rootlink/../..", "/../../.."])
def test_paths_through_links_to_the_root_stay_inside(api, box, via):
    # /etc/passwd of the container (busybox's), never the host's
    ours = content(api, box, "/passwd.copy")
    assert content(api, box, via + "/etc/passwd") == ours
    with open("/etc/passwd", "rb") as f:
        assert f.read() != ours


def test_link_to_a_host_path_is_not_followed_to_the_host(api, busybox, ctrs, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host only\n")
    cid = api.create(sh(f"ln -s {tmp_path} /hostdir; ln -s {secret} /hostfile"))
    ctrs.append(cid)
    api.start(cid)
    assert api.wait(cid) == 0
    for path in ("/hostdir/secret", "/hostfile/", f"/uplink/../..{secret}"):
        r = api.get(archive_url(cid, path))
        assert r.status == 404, (path, r)
    r = api.request("HEAD", archive_url(cid, "/hostfile"))
    assert r.status == 200 and decode_stat(r)["linkTarget"] == str(secret)  # a container path
    assert put(api, cid, "/hostdir", make_tar(("x", "file", b"x"))).status == 404
    assert os.listdir(tmp_path) == ["secret"]


def test_head_gives_the_stat_only(api, box):
    r = api.request("HEAD", archive_url(box, "/d"))
    assert r.status == 200 and r.body == b""
    st = decode_stat(r)
    assert st["name"] == "d" and st["mode"] & GO_DIR and st["mode"] & 0o777 == 0o755
    r = api.request("HEAD", archive_url(box, "/abs"))
    assert decode_stat(r)["mode"] & GO_SYMLINK


def test_unknown_container_and_path(api, busybox, box):
    nobody = "0" * 64
    for method in ("GET", "HEAD"):
        assert api.request(method, archive_url(nobody, "/f")).status == 404
        r = api.request(method, archive_url(box, "/no/such/file"))
        assert r.status == 404, r
    r = api.get(archive_url(box, "/nonexistent"))
    assert b"Could not find the file /nonexistent in container" in r.body
    assert api.get(archive_url(box, "/f/x")).status == 404  # a file as a directory
    assert api.get(archive_url(box, "/f/")).status == 404
    assert api.request("HEAD", archive_url(box, "/abs/.")).status == 404  # a link to a missing file
    assert put(api, nobody, "/d", make_tar(("z", "file", b"z"))).status == 404
    assert put(api, box, "/no/such", make_tar(("z", "file", b"z"))).status == 404
    assert api.get(f"/v1.41/containers/{box}/archive").status == 400  # no path
    # not an endpoint of v1.3 (it came with 1.20): 404 there, like other modern ones
    assert api.get(f"/v1.3/containers/{box}/archive?path=/f").status == 404


# --------------------------------------------------------------------------
# PUT
# --------------------------------------------------------------------------

def test_put_a_file_and_a_dir(api, box):
    data = make_tar(("new.txt", "file", b"new\n"), ("nd", "dir", None), ("nd/in", "file", b"in\n"))
    r = put(api, box, "/d", data)
    assert r.status == 200, r
    assert content(api, box, "/d/new.txt") == b"new\n"
    assert content(api, box, "/d/nd/in") == b"in\n"
    assert content(api, box, "/d/x") == b"one\n"  # what was there stays


def test_put_compressed(api, box):
    r = put(api, box, "/", gzip.compress(make_tar(("gz.txt", "file", b"gz\n"))))
    assert r.status == 200, r
    assert content(api, box, "/gz.txt") == b"gz\n"


def test_put_to_a_file_is_400(api, box):
    r = put(api, box, "/f", make_tar(("z", "file", b"z")))
    assert r.status == 400 and b"not a directory" in r.body, r


def test_put_through_a_dir_link(api, box):
    assert put(api, box, "/dlink", make_tar(("vialink", "file", b"v\n"))).status == 200
    assert content(api, box, "/d/vialink") == b"v\n"


@pytest.mark.parametrize("via", ["/rootlink/tmp", "/uplink/tmp", "/../../../tmp"])
def test_put_through_links_to_the_root_stays_inside(api, box, via):
    name = uniq("inside")
    assert put(api, box, via, make_tar((name, "file", b"ok\n"))).status == 200
    assert content(api, box, f"/tmp/{name}") == b"ok\n"
    assert not os.path.exists(f"/tmp/{name}")


def test_put_no_overwrite_dir_non_dir(api, box):
    r = put(api, box, "/", make_tar(("d", "file", b"file over dir")), noOverwriteDirNonDir="true")
    assert r.status == 400, r
    assert get_tar(api, box, "/d")[2]["mode"] & GO_DIR
    r = put(api, box, "/", make_tar(("f", "dir", None)), noOverwriteDirNonDir="1")
    assert r.status == 400, r
    # allowed without the flag, as in Docker
    assert put(api, box, "/", make_tar(("f", "dir", None))).status == 200
    assert get_tar(api, box, "/f")[2]["mode"] & GO_DIR


def test_put_keeps_whiteout_names_as_files(api, box):
    assert put(api, box, "/d", make_tar((".wh.x", "file", b"w\n"))).status == 200
    assert content(api, box, "/d/x") == b"one\n"
    assert content(api, box, "/d/.wh.x") == b"w\n"


def test_put_copy_uid_gid(api, box):
    data = make_tar(("owned", "file", b"o"))
    ti = tarfile.open(fileobj=io.BytesIO(data)).getmembers()[0]
    assert put(api, box, "/tmp", data, copyUIDGID="1").status == 200
    m = get_tar(api, box, "/tmp/owned")[0]["owned"]
    assert (m.uid, m.gid) == (0, 0) and ti.uid == 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        t = tarfile.TarInfo("ids")
        t.uid, t.gid, t.size = 1234, 4321, 1
        tf.addfile(t, io.BytesIO(b"i"))
    assert put(api, box, "/tmp", buf.getvalue()).status == 200
    m = get_tar(api, box, "/tmp/ids")[0]["ids"]
    assert (m.uid, m.gid) == (1234, 4321)
    assert put(api, box, "/tmp", buf.getvalue(), copyUIDGID="1").status == 200
    m = get_tar(api, box, "/tmp/ids")[0]["ids"]
    assert (m.uid, m.gid) == (0, 0)  # the container's user: root


HOSTILE = {
    "dotdot": lambda host: [(f"../../../../..{host}/dotdot", "file", b"x")],
    "absolute": lambda host: [(f"{host}/absolute", "file", b"x")],
    "symlink-then-file": lambda host: [("esc", "sym", host), ("esc/through", "file", b"x")],
    "relative-symlink-then-file": lambda host: [("esc2", "sym", "../../../../../.." + host),
                                                ("esc2/through", "file", b"x")],
    "hardlink-absolute": lambda host: [("hl", "hard", "/etc/passwd")],
    "hardlink-dotdot": lambda host: [("hl2", "hard", "../../../../../../etc/passwd")],
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_tars_leave_the_host_alone(api, box, tmp_path, kind):
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep").write_text("keep\n")
    before = host_snapshot(str(host))
    passwd = os.stat("/etc/passwd")
    r = put(api, box, "/d", make_tar(*HOSTILE[kind](str(host))))
    assert r.status in (200, 400), r
    assert host_snapshot(str(host)) == before
    after = os.stat("/etc/passwd")
    assert (after.st_nlink, after.st_mtime_ns) == (passwd.st_nlink, passwd.st_mtime_ns)
    if kind == "absolute":  # a leading / is dropped: contained
        assert r.status == 200
        assert content(api, box, f"/d{host}/absolute") == b"x"
    elif kind.startswith("hardlink") or kind == "dotdot" or "symlink" in kind:
        assert r.status == 400, r


# --------------------------------------------------------------------------
# mounts: volumes of a stopped container, read-only binds
# --------------------------------------------------------------------------

def test_put_into_a_stopped_containers_volume(api, busybox, ctrs):
    cid = api.create(sh("cat /vol/f 2>/dev/null; echo run"), Volumes={"/vol": {}})
    ctrs.append(cid)
    api.start(cid)
    assert api.wait(cid) == 0
    assert put(api, cid, "/vol", make_tar(("f", "file", b"in the volume\n"))).status == 200
    assert content(api, cid, "/vol/f") == b"in the volume\n"
    names, _, st = get_tar(api, cid, "/")
    assert "/vol/f" in names and "/bin/busybox" in names and st["name"] == "/"  # as dockerd names them
    # from above the volume, entries inside it land in it too (it is mounted)
    assert put(api, cid, "/", make_tar(("vol/g", "file", b"from the top\n"))).status == 200
    source = [m["Source"] for m in inspect_mounts(api, cid) if m["Destination"] == "/vol"]
    api.start(cid)
    assert api.wait(cid) == 0
    assert "in the volume" in api.logs(cid).decode()
    assert source, inspect_mounts(api, cid)
    with open(os.path.join(source[0], "g"), "rb") as f:
        assert f.read() == b"from the top\n"


def test_put_into_a_read_only_bind_is_refused(api, busybox, ctrs, tmp_path):
    host = tmp_path / "ro"
    host.mkdir()
    cid = api.create(sh("echo ready; sleep 300"))
    ctrs.append(cid)
    api.start(cid, {"Binds": [f"{host}:/ro:ro"]})
    try:
        wait_logs(api, cid, "ready")
        r = put(api, cid, "/ro", make_tar(("x", "file", b"x")))
        assert r.status == 400 and b"read-only" in r.body, r
        assert os.listdir(host) == []
    finally:
        kill(api, cid)
    r = put(api, cid, "/ro", make_tar(("x", "file", b"x")))  # stopped: the same rule
    assert r.status == 400, r
    for state in ("stopped", "running"):  # from above the bind: the mount is read-only
        if state == "running":
            api.start(cid)
            wait_logs(api, cid, "ready")
        r = put(api, cid, "/", make_tar(("ro/y", "file", b"y")))
        assert r.status == 400 and b"read-only" in r.body, (state, r)
        assert os.listdir(host) == []
    kill(api, cid)


def inspect_mounts(api, cid):
    """[{Source, Destination}] from inspect, whichever surface shape it has."""
    info = api.get(f"/containers/{cid}/json").json()
    mounts = info.get("Mounts")
    if mounts:
        return mounts
    return [{"Source": src, "Destination": dst} for dst, src in (info.get("Volumes") or {}).items()]


def test_etc_files_of_a_stopped_container(api, busybox, ctrs):
    cid = api.create(["true"], Hostname="cphost")
    ctrs.append(cid)
    assert content(api, cid, "/etc/hostname") == b"cphost\n"


def test_stopped_overlay_leaves_no_mount(api, box):
    get_tar(api, box, "/d")
    put(api, box, "/d", make_tar(("m", "file", b"m")))
    with open("/proc/self/mountinfo") as f:
        assert box[:12] not in f.read()


# --------------------------------------------------------------------------
# the vfs driver (a full copy per container)
# --------------------------------------------------------------------------

def test_vfs_driver_stopped_and_running(new_daemon, busybox_tar):
    d = new_daemon(extra_args=["-s", "vfs"]).start()
    api = d.api
    r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                 headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r
    assert api.get("/info").json()["Driver"] == "vfs"
    cid = api.create(sh("ln -s / /rootlink; echo ready; sleep 300"))
    api.start(cid)
    wait_logs(api, cid, "ready")
    assert put(api, cid, "/rootlink/tmp", make_tar(("live", "file", b"live\n"))).status == 200
    assert content(api, cid, "/tmp/live") == b"live\n"
    kill(api, cid)
    assert content(api, cid, "/tmp/live") == b"live\n"
    assert put(api, cid, "/tmp", make_tar(("cold", "file", b"cold\n"))).status == 200
    names, tf, st = get_tar(api, cid, "/tmp")
    assert tf.extractfile(names["tmp/cold"]).read() == b"cold\n" and st["mode"] & GO_DIR
    r = put(api, cid, "/", make_tar(("esc", "sym", "/"), ("esc/tmp/x", "file", b"x")))
    assert r.status == 400, r
    assert api.delete(f"/containers/{cid}?force=1").status == 204


# --------------------------------------------------------------------------
# the docker CLI (docker cp both ways)
# --------------------------------------------------------------------------

DOCKER = "/usr/local/bin/docker"


@pytest.fixture
def docker(daemon, busybox):
    if not os.access(DOCKER, os.X_OK):
        require(False, "the docker CLI at " + DOCKER)

    def run(*args, ok=True):
        p = subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{daemon.port}", *args],
                           capture_output=True, timeout=120)
        if ok:
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p
    return run


def test_docker_cp_both_ways(api, box, docker, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "sub" / "deep.txt").write_text("deep\n")
    docker("cp", str(src / "top.txt"), f"{box}:/tmp/")
    docker("cp", str(src), f"{box}:/tmp/")
    assert content(api, box, "/tmp/top.txt") == b"top\n"
    assert content(api, box, "/tmp/src/sub/deep.txt") == b"deep\n"
    out = tmp_path / "out"
    out.mkdir()
    docker("cp", f"{box}:/tmp/src", str(out))
    assert (out / "src" / "sub" / "deep.txt").read_text() == "deep\n"
    docker("cp", f"{box}:/d/.", str(out / "dcopy"))
    assert (out / "dcopy" / "x").read_text() == "one\n"
    assert (out / "dcopy" / "sub" / "y").read_text() == "two\n"


def test_docker_cp_symlinks_pointing_outside(api, box, docker, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    docker("cp", f"{box}:/abs", str(out / "abs"))
    assert os.readlink(out / "abs") == "/etc/shadow"          # the link, not the host's file
    # The daemon sends the relative link as it is; the CLI itself refuses to
    # make, on the host, a link that climbs out of the destination.
    names, _, _ = get_tar(api, box, "/rel")
    assert names["rel"].linkname == "../../../../etc/shadow"
    p = docker("cp", f"{box}:/rel", str(out / "rel"), ok=False)
    assert p.returncode != 0 and b"invalid symlink" in p.stderr, p
    assert not os.path.lexists(out / "rel")
    shadow = os.stat("/etc/shadow")
    (tmp_path / "payload").write_text("payload\n")
    docker("cp", str(tmp_path / "payload"), f"{box}:/abs")    # the CLI follows it, in the container
    assert content(api, box, "/etc/shadow") == b"payload\n"
    after = os.stat("/etc/shadow")
    assert (after.st_mtime_ns, after.st_size) == (shadow.st_mtime_ns, shadow.st_size)
    docker("cp", str(tmp_path / "payload"), f"{box}:/uplink/tmp/")
    assert content(api, box, "/tmp/payload") == b"payload\n"
    p = docker("cp", f"{box}:/no/such", str(out), ok=False)
    assert p.returncode != 0 and b"Could not find the file" in p.stderr


# --------------------------------------------------------------------------
# a running container swapping links under the copy
# --------------------------------------------------------------------------

def test_links_swapped_during_copies_stay_inside(api, busybox, ctrs, tmp_path):
    name = uniq("race")
    target = tmp_path / "target"
    target.mkdir()
    cid = api.create(sh(f"mkdir -p /race; echo ready; while true; do rm -rf /race/t; ln -s {target} /race/t; "
                        f"rm -f /race/t; mkdir /race/t; rm -rf /race/t; ln -s / /race/t; done"))
    ctrs.append(cid)
    api.start(cid)
    try:
        wait_logs(api, cid, "ready")
        statuses = set()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for path, data in (("/race", make_tar((f"t/{name}", "file", b"x"))),
                               ("/race/t", make_tar((name, "file", b"x")))):
                statuses.add(put(api, cid, path, data).status)
            statuses.add(api.get(archive_url(cid, "/race/t/")).status)
        assert statuses <= {200, 400, 404}, statuses
        assert os.listdir(target) == []
        assert not os.path.exists(f"/{name}")
    finally:
        kill(api, cid)


def test_read_only_rootfs(api, busybox, ctrs):
    r = api.post("/v1.41/containers/create", {"Image": "busybox", "Cmd": sh("echo ready; sleep 300"),
                                              "Volumes": {"/rw": {}},
                                              "HostConfig": {"ReadonlyRootfs": True}})
    assert r.status == 201, r
    cid = r.json()["Id"]
    ctrs.append(cid)
    api.start(cid)
    try:
        wait_logs(api, cid, "ready")
        r = put(api, cid, "/tmp", make_tar(("x", "file", b"x")))
        assert r.status == 400 and b"container rootfs is marked read-only" in r.body, r
        assert put(api, cid, "/rw", make_tar(("x", "file", b"x"))).status == 200
    finally:
        kill(api, cid)
    r = put(api, cid, "/tmp", make_tar(("x", "file", b"x")))
    assert r.status == 400 and b"read-only" in r.body, r
    assert put(api, cid, "/rw", make_tar(("y", "file", b"y"))).status == 200
    assert content(api, cid, "/rw/x") == b"x" and content(api, cid, "/rw/y") == b"y"
    assert api.get(archive_url(cid, "/tmp/x")).status == 404


def test_read_only_rootfs_with_a_tmpfs(api, busybox, ctrs):
    r = api.post("/v1.41/containers/create", {"Image": "busybox", "Cmd": sh("echo ready; sleep 300"),
                                              "HostConfig": {"ReadonlyRootfs": True, "Tmpfs": {"/tmp": ""}}})
    assert r.status == 201, r
    cid = r.json()["Id"]
    ctrs.append(cid)
    api.start(cid)
    try:
        wait_logs(api, cid, "ready")
        assert put(api, cid, "/tmp", make_tar(("t", "file", b"t"))).status == 200  # the tmpfs is writable
        assert content(api, cid, "/tmp/t") == b"t"
        assert put(api, cid, "/etc", make_tar(("t", "file", b"t"))).status == 400
    finally:
        kill(api, cid)
    # stopped, there is no tmpfs: /tmp is the read-only rootfs
    assert put(api, cid, "/tmp", make_tar(("t", "file", b"t"))).status == 400


def test_docker_cp_the_root_of_a_stopped_container(api, busybox, docker, ctrs, tmp_path):
    cid = api.create(sh("echo at-root > /f"))
    ctrs.append(cid)
    api.start(cid)
    assert api.wait(cid) == 0
    docker("cp", f"{cid}:/", str(tmp_path / "newdir"))      # a new directory named after the dest
    assert (tmp_path / "newdir" / "f").read_text() == "at-root\n"
    assert (tmp_path / "newdir" / "bin" / "busybox").is_file()
    (tmp_path / "existing").mkdir()
    docker("cp", f"{cid}:/", str(tmp_path / "existing"))    # into an existing one: the contents
    assert (tmp_path / "existing" / "f").read_text() == "at-root\n"


def test_put_is_seen_by_the_running_containers_processes(api, busybox, ctrs):
    cid = api.create(sh("echo ready; sleep 300"), Volumes={"/vol": {}})
    ctrs.append(cid)
    api.start(cid)
    try:
        wait_logs(api, cid, "ready")
        data = make_tar(("seen/a", "file", b"root fs\n"), ("vol/b", "file", b"volume\n"))
        assert put(api, cid, "/", data).status == 200
        r = api.post(f"/v1.41/containers/{cid}/exec",
                     {"Cmd": sh("cat /seen/a /vol/b > /seen/out"), "AttachStdout": False})
        assert r.status == 201, r
        assert api.post(f"/v1.41/exec/{r.json()['Id']}/start", {"Detach": True}).status in (200, 204)
        wait_for(lambda: api.get(archive_url(cid, "/seen/out")).status == 200, 10, "/seen/out")
        wait_for(lambda: content(api, cid, "/seen/out") == b"root fs\nvolume\n", 10, "its content")
    finally:
        kill(api, cid)
