"""Container filesystems through the HTTP API (Remote API v1.3 and NOTES-v1.3
"Containers"): binds and volumes, Dns, changes, export, top, commit; the
memory bound of exporting a large container.

Host directories live under tmp_path. Network: only 127.0.0.1.
"""

import http.client
import io
import os
import tarfile
import threading
import time
import uuid

import pytest

from tests.pydtest import BUSYBOX, CountingReader, inspect, kill, vm_rss, wait_for

MiB = 1024 * 1024


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def sh(script):
    return ["sh", "-c", script]


def uniq(prefix="fs"):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def run_ok(api, cmd, image="busybox", body=None, **config):
    code, out, cid = api.run(cmd, image, body, **config)
    assert code == 0, (code, out)
    return out, cid


def commit(api, cid, query="", body=None):
    r = api.post(f"/commit?container={cid}" + (f"&{query}" if query else ""), body)
    assert r.status == 201, r
    image_id = r.json()["Id"]
    assert image_id
    return image_id


def wait_logs(api, cid, text, timeout=20):
    return wait_for(lambda: text in api.logs(cid).decode(errors="replace"), timeout,
                    f"{text!r} in the logs of {cid[:12]}")


def members(body):
    """{normalized name: TarInfo}, plus the open tarfile for reading data.
    The archive must be complete: whole 512-byte blocks ending with the
    end-of-archive marker (Python's tarfile alone accepts a truncated one)."""
    assert len(body) % 512 == 0 and len(body) >= 1024, len(body)
    assert body[-1024:] == bytes(1024), "no end-of-archive marker: truncated tar"
    tf = tarfile.open(fileobj=io.BytesIO(body))
    return {m.name.lstrip("./").rstrip("/"): m for m in tf.getmembers()}, tf


def mount_points(pid="self"):
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line.split()[4] for line in f]


def under(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


@pytest.fixture
def ctrs(api):
    """Containers to remove (force, v=1) at the end of a test."""
    made = []
    yield made
    for cid in made:
        api.delete(f"/containers/{cid}?force=1&v=1")


# --------------------------------------------------------------------------
# binds
# --------------------------------------------------------------------------

def test_bind_write_appears_on_host_and_inspect(api, busybox, tmp_path, ctrs):
    host = tmp_path / "h"
    host.mkdir()
    # /data is not in Config.Volumes: the bind applies anyway.
    out, cid = run_ok(api, sh("echo from-container > /data/f && cat /data/f"),
                      body={"Binds": [f"{host}:/data"]})
    ctrs.append(cid)
    assert "from-container" in out
    assert (host / "f").read_text() == "from-container\n"
    rec = inspect(api, cid)
    assert rec["Volumes"] == {"/data": str(host)}
    assert rec["VolumesRW"] == {"/data": True}
    assert not (rec["Config"].get("Volumes") or {})


def test_bind_explicit_rw_mode(api, busybox, tmp_path, ctrs):
    host = tmp_path / "h"
    host.mkdir()
    out, cid = run_ok(api, sh("echo rw > /data/f"), body={"Binds": [f"{host}:/data:rw"]})
    ctrs.append(cid)
    assert (host / "f").read_text() == "rw\n"
    assert inspect(api, cid)["VolumesRW"] == {"/data": True}


def test_bind_read_only_refuses_writes(api, busybox, tmp_path, ctrs):
    host = tmp_path / "h"
    host.mkdir()
    (host / "f").write_text("original\n")
    code, out, cid = api.run(sh("cat /data/f; echo changed > /data/f"),
                             body={"Binds": [f"{host}:/data:ro"]})
    ctrs.append(cid)
    assert code != 0, out
    assert "original" in out  # readable
    code2, out2, cid2 = api.run(sh("touch /data/new"), body={"Binds": [f"{host}:/data:ro"]})
    ctrs.append(cid2)
    assert code2 != 0, out2
    assert (host / "f").read_text() == "original\n"
    assert sorted(os.listdir(host)) == ["f"]
    rec = inspect(api, cid)
    assert rec["Volumes"] == {"/data": str(host)}
    assert rec["VolumesRW"] == {"/data": False}


def test_bind_missing_host_dir_is_created(api, busybox, tmp_path, ctrs):
    host = tmp_path / "does" / "not" / "exist"
    out, cid = run_ok(api, sh("echo made > /data/f"), body={"Binds": [f"{host}:/data"]})
    ctrs.append(cid)
    assert (host / "f").read_text() == "made\n"


def test_binds_kept_across_restart_and_bodyless_start(api, busybox, tmp_path, ctrs):
    host = tmp_path / "h"
    host.mkdir()
    (host / "f").write_text("first-run\n")
    cid = api.create(sh("cat /data/f"))
    ctrs.append(cid)
    api.start(cid, {"Binds": [f"{host}:/data:ro"]})
    assert api.wait(cid) == 0
    assert "first-run" in api.logs(cid).decode()

    (host / "f").write_text("after-restart\n")
    r = api.post(f"/containers/{cid}/restart?t=1")
    assert r.status == 204, r
    assert api.wait(cid) == 0
    assert "after-restart" in api.logs(cid).decode()

    (host / "f").write_text("no-body-start\n")
    api.start(cid)  # no body at all
    assert api.wait(cid) == 0
    assert "no-body-start" in api.logs(cid).decode()

    (host / "f").write_text("empty-object-start\n")
    api.start(cid, {})  # a body without Binds
    assert api.wait(cid) == 0
    assert "empty-object-start" in api.logs(cid).decode()

    rec = inspect(api, cid)
    assert rec["Volumes"] == {"/data": str(host)}
    assert rec["VolumesRW"] == {"/data": False}
    assert rec["HostConfig"]["Binds"] == [f"{host}:/data:ro"]


@pytest.mark.parametrize("spec,hint", [
    ("{h}:/", ("root", "'/'", '"/"')),
    ("{h}://", ("root", "'//'", '"//"')),
    ("rel/path:/data", ("rel/path",)),
    ("{h}:/proc/x", ("/proc",)),
    ("{h}:/proc", ("/proc",)),
    ("{h}:/sys/kernel", ("/sys",)),
    ("{h}:/d:xx", ("xx",)),
    ("{h}:relative-target", ("relative-target",)),
    ("{h}", ("{h}",)),
    ("{h}:/a:ro:extra", ("extra", ":ro:")),
])
def test_bad_bind_refused_at_start(api, busybox, tmp_path, ctrs, spec, hint):
    h = str(tmp_path / "h")
    spec = spec.format(h=h)
    cid = api.create(["true"])
    ctrs.append(cid)
    r = api.post(f"/containers/{cid}/start", {"Binds": [spec]})
    assert r.status in (400, 500), r
    msg = r.body.decode(errors="replace")
    assert msg.strip(), "empty error message"
    assert any(x.format(h=h) in msg for x in hint), msg
    rec = inspect(api, cid)
    assert rec["State"]["Running"] is False
    assert rec["State"]["StartedAt"].startswith("0001-01-01")
    assert not os.path.exists(h)  # nothing was prepared for a refused bind


@pytest.mark.parametrize("binds", ["/tmp:/data", {"/tmp": "/data"}, 5, [5]])
def test_non_list_binds_is_400(api, busybox, ctrs, binds):
    cid = api.create(["true"])
    ctrs.append(cid)
    r = api.post(f"/containers/{cid}/start", {"Binds": binds})
    assert r.status == 400, r
    assert b"Binds" in r.body or b"bind" in r.body, r
    assert inspect(api, cid)["State"]["Running"] is False


def test_bad_bind_does_not_replace_saved_binds(api, busybox, tmp_path, ctrs):
    host = tmp_path / "h"
    host.mkdir()
    (host / "f").write_text("saved\n")
    cid = api.create(sh("cat /data/f"))
    ctrs.append(cid)
    api.start(cid, {"Binds": [f"{host}:/data"]})
    assert api.wait(cid) == 0
    r = api.post(f"/containers/{cid}/start", {"Binds": [f"{host}:/"]})
    assert r.status in (400, 500), r
    (host / "f").write_text("still-saved\n")
    api.start(cid)
    assert api.wait(cid) == 0
    assert "still-saved" in api.logs(cid).decode()


def test_bind_through_symlink_in_image_stays_in_container(api, daemon, busybox, tmp_path, ctrs):
    """An image whose /evil is a symlink to a host path: binding onto /evil
    must land inside the container's root, never on the host path."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("untouched\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "payload").write_text("bind-payload\n")

    _, maker = run_ok(api, ["ln", "-s", str(victim), "/evil"])
    ctrs.append(maker)
    image = commit(api, maker)

    cid = api.create(sh("cat /evil/payload; echo written > /evil/written; echo ready; sleep 100"), image=image)
    ctrs.append(cid)
    api.start(cid, {"Binds": [f"{src}:/evil"]})
    try:
        wait_logs(api, cid, "ready")
        pid = inspect(api, cid)["State"]["Pid"]
        assert pid > 0
        for who in ("self", str(daemon.server_pid())):
            assert not [m for m in mount_points(who) if under(m, str(victim))], who
        out = api.logs(cid).decode()
        assert "bind-payload" in out  # the bind landed inside the container, seen through /evil
    finally:
        kill(api, cid)
    assert not [m for m in mount_points() if under(m, str(victim))]
    assert sorted(os.listdir(victim)) == ["keep"]
    assert (victim / "keep").read_text() == "untouched\n"
    assert (src / "written").read_text() == "written\n"


@pytest.mark.parametrize("style", ["absolute", "relative"])
def test_bind_through_symlinked_parent_stays_in_container(api, busybox, tmp_path, ctrs, style):
    """/evil -> host dir (absolute, or climbing with ../..), bind target /evil/sub."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("untouched\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "payload").write_text("nested-payload\n")
    link = str(victim) if style == "absolute" else "../../../../../.." + str(victim)
    _, maker = run_ok(api, ["ln", "-s", link, "/evil"])
    ctrs.append(maker)
    image = commit(api, maker)
    out, cid = run_ok(api, sh("cat /evil/sub/payload && echo w > /evil/sub/written && echo x > /evil/top"),
                      image=image, body={"Binds": [f"{src}:/evil/sub"]})
    ctrs.append(cid)
    assert "nested-payload" in out
    assert sorted(os.listdir(victim)) == ["keep"]
    assert (victim / "keep").read_text() == "untouched\n"
    assert (src / "written").read_text() == "w\n"
    assert not [m for m in mount_points() if under(m, str(victim))]


def test_volume_on_symlink_to_host_dir_stays_in_container(api, daemon, busybox, tmp_path, ctrs):
    """Config.Volumes on a path the image made a symlink to a host directory:
    the volume is neither seeded from nor mounted on the host directory."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("untouched\n")
    _, maker = run_ok(api, ["ln", "-s", str(victim), "/evil"])
    ctrs.append(maker)
    image = commit(api, maker)
    out, cid = run_ok(api, sh("ls /evil; echo vol > /evil/written"), image=image, Volumes={"/evil": {}})
    ctrs.append(cid)
    host = inspect(api, cid)["Volumes"]["/evil"]
    assert host.startswith(os.path.join(daemon.root, "volumes") + "/")
    assert "keep" not in os.listdir(host)  # not seeded through the link
    assert open(os.path.join(host, "written")).read() == "vol\n"
    assert sorted(os.listdir(victim)) == ["keep"]


@pytest.mark.parametrize("link,target,probe", [
    ("/proc", "/p/sys", "/proc/sys/marker"),
    ("/proc", "/p", "/proc/marker"),
    ("/sys", "/p/fs", "/sys/fs/marker"),
])
def test_bind_target_symlinked_into_proc(api, busybox, tmp_path, ctrs, link, target, probe):
    """An image's /p -> /proc makes a bind on /p/sys a bind under /proc: refused,
    or at least never over the container's /proc or /sys."""
    # Regression test; this once failed: the /proc and /sys rule for bind targets is checked on the request's
    # path only (volumes.clean_target); the shim then resolves the target inside
    # the root, following the image's symlinks, and mounts on /proc/sys, on the
    # whole /proc, or on /sys/fs of the container. Reproduction: commit a
    # container that ran `ln -s /proc /p`, start a container of that image with
    # {"Binds": ["/h:/p"]}: its /proc is the host dir /h (no procfs at all).
    # Expected: refuse (400/500) when the resolved target is under /proc or /sys.
    host = tmp_path / "h"
    host.mkdir()
    (host / "marker").write_text("m\n")
    _, maker = run_ok(api, ["ln", "-s", link, "/p"])
    ctrs.append(maker)
    image = commit(api, maker)
    cid = api.create(sh(f"cat {probe} 2>/dev/null && echo OVER-PROC; true"), image=image)
    ctrs.append(cid)
    r = api.post(f"/containers/{cid}/start", {"Binds": [f"{host}:{target}"]})
    if r.status == 204:
        api.wait(cid)
        assert "OVER-PROC" not in api.logs(cid).decode()
    else:
        assert r.status in (400, 500), r
        assert inspect(api, cid)["State"]["Running"] is False


def test_bind_a_single_file(api, busybox, tmp_path, ctrs):
    f = tmp_path / "conf.txt"
    f.write_text("file-bind\n")
    out, cid = run_ok(api, sh("cat /etc/app.conf && echo appended >> /etc/app.conf"),
                      body={"Binds": [f"{f}:/etc/app.conf"]})
    ctrs.append(cid)
    assert "file-bind" in out
    assert f.read_text() == "file-bind\nappended\n"


def test_bind_and_volume_inside_it(api, busybox, tmp_path, ctrs):
    host = tmp_path / "h"
    host.mkdir()
    out, cid = run_ok(api, sh("echo top > /data/top && echo inner > /data/sub/inner"),
                      body={"Binds": [f"{host}:/data"]}, Volumes={"/data/sub": {}})
    ctrs.append(cid)
    vols = inspect(api, cid)["Volumes"]
    assert vols["/data"] == str(host)
    assert (host / "top").read_text() == "top\n"
    assert open(os.path.join(vols["/data/sub"], "inner")).read() == "inner\n"
    assert not (host / "sub" / "inner").exists()


# --------------------------------------------------------------------------
# volumes
# --------------------------------------------------------------------------

def test_volume_dir_survives_restart_and_volumes_from(api, daemon, busybox, ctrs):
    vols_root = os.path.join(daemon.root, "volumes")
    cid = api.create(sh("cat /vol/f 2>/dev/null; echo data >> /vol/f"), Volumes={"/vol": {}})
    ctrs.append(cid)
    api.start(cid)
    assert api.wait(cid) == 0
    rec = inspect(api, cid)
    host = rec["Volumes"]["/vol"]
    assert os.path.dirname(host) == vols_root
    assert rec["VolumesRW"] == {"/vol": True}
    assert open(os.path.join(host, "f")).read() == "data\n"

    r = api.post(f"/containers/{cid}/restart?t=1")
    assert r.status == 204, r
    assert api.wait(cid) == 0
    assert inspect(api, cid)["Volumes"]["/vol"] == host
    assert open(os.path.join(host, "f")).read() == "data\ndata\n"
    assert "data" in api.logs(cid).decode()

    out, cid2 = run_ok(api, sh("cat /vol/f; echo more >> /vol/f"), VolumesFrom=cid)
    ctrs.append(cid2)
    assert "data\ndata" in out
    assert open(os.path.join(host, "f")).read() == "data\ndata\nmore\n"
    rec2 = inspect(api, cid2)
    assert rec2["Volumes"]["/vol"] == host
    assert rec2["VolumesRW"]["/vol"] is True


def test_volumes_from_keeps_read_only_flag(api, busybox, tmp_path, ctrs):
    host = tmp_path / "h"
    host.mkdir()
    (host / "f").write_text("ro-data\n")
    _, first = run_ok(api, ["true"], body={"Binds": [f"{host}:/data:ro"]})
    ctrs.append(first)
    code, out, second = api.run(sh("cat /data/f; echo x > /data/f"), VolumesFrom=first)
    ctrs.append(second)
    assert "ro-data" in out
    assert code != 0, out
    assert (host / "f").read_text() == "ro-data\n"
    rec = inspect(api, second)
    assert rec["Volumes"]["/data"] == str(host)
    assert rec["VolumesRW"]["/data"] is False


def test_volume_is_seeded_from_image(api, daemon, busybox, ctrs):
    _, maker = run_ok(api, sh("mkdir /seed && echo seeded > /seed/file && chmod 0750 /seed"))
    ctrs.append(maker)
    image = commit(api, maker)
    out, cid = run_ok(api, sh("cat /seed/file; echo added > /seed/other"), image=image,
                      Volumes={"/seed": {}})
    ctrs.append(cid)
    assert "seeded" in out
    host = inspect(api, cid)["Volumes"]["/seed"]
    assert host.startswith(os.path.join(daemon.root, "volumes") + "/")
    assert open(os.path.join(host, "file")).read() == "seeded\n"
    assert open(os.path.join(host, "other")).read() == "added\n"
    assert os.stat(host).st_mode & 0o777 == 0o750


def test_delete_v_removes_volume_dir_and_not_without(api, busybox, ctrs):
    _, a = run_ok(api, sh("echo a > /vol/f"), Volumes={"/vol": {}})
    _, b = run_ok(api, sh("echo b > /vol/f"), Volumes={"/vol": {}})
    ha, hb = inspect(api, a)["Volumes"]["/vol"], inspect(api, b)["Volumes"]["/vol"]
    assert ha != hb and os.path.isdir(ha) and os.path.isdir(hb)

    r = api.delete(f"/containers/{a}?v=1")
    assert r.status == 204, r
    assert not os.path.exists(ha)

    r = api.delete(f"/containers/{b}")
    assert r.status == 204, r
    assert os.path.isdir(hb)
    assert open(os.path.join(hb, "f")).read() == "b\n"
    assert api.get(f"/containers/{b}/json").status == 404


def test_delete_v_keeps_volume_used_by_another_container(api, busybox, ctrs):
    _, a = run_ok(api, sh("echo shared > /vol/f"), Volumes={"/vol": {}})
    host = inspect(api, a)["Volumes"]["/vol"]
    _, b = run_ok(api, ["cat", "/vol/f"], VolumesFrom=a)
    ctrs.append(b)
    r = api.delete(f"/containers/{a}?v=1")
    assert r.status == 204, r
    assert open(os.path.join(host, "f")).read() == "shared\n"
    assert inspect(api, b)["Volumes"]["/vol"] == host


def test_start_after_volumes_from_source_deleted(api, busybox, ctrs):
    # Regression test; this once failed: starting B again after its VolumesFrom source A was deleted answers
    # 404 "No such container: <A's id>" to POST /containers/<B>/start, although
    # B exists: a client reads that as "B is gone". Expected: B starts with the
    # volumes it already has (its record holds them), or a non-404 error that
    # says the volume source is missing.
    _, a = run_ok(api, sh("echo shared > /vol/f"), Volumes={"/vol": {}})
    _, b = run_ok(api, ["cat", "/vol/f"], VolumesFrom=a)
    ctrs.append(b)
    assert api.delete(f"/containers/{a}").status == 204
    r = api.post(f"/containers/{b}/start")
    assert r.status != 404, r
    if r.status == 204:
        assert api.wait(b) == 0
        assert "shared" in api.logs(b).decode()
    else:
        assert a[:12] in r.body.decode() and inspect(api, b)["State"]["Running"] is False, r


def test_delete_v_never_removes_bind_host_path(api, busybox, tmp_path):
    host = tmp_path / "keepme"
    host.mkdir()
    (host / "precious").write_text("keep\n")
    _, cid = run_ok(api, sh("echo also > /data/new"), body={"Binds": [f"{host}:/data"]},
                    Volumes={"/vol": {}})
    vol = inspect(api, cid)["Volumes"]["/vol"]
    r = api.delete(f"/containers/{cid}?v=1")
    assert r.status == 204, r
    assert (host / "precious").read_text() == "keep\n"
    assert (host / "new").read_text() == "also\n"
    assert not os.path.exists(vol)


def test_volume_seed_follows_image_layers(api, daemon, busybox, ctrs):
    """Seeding shows the merged image: a later layer's deletion and addition count."""
    _, m1 = run_ok(api, sh("mkdir /seed && echo a > /seed/a && echo b > /seed/b"))
    ctrs.append(m1)
    img1 = commit(api, m1)
    _, m2 = run_ok(api, sh("rm /seed/b && echo c > /seed/c"), image=img1)
    ctrs.append(m2)
    img2 = commit(api, m2)
    _, cid = run_ok(api, ["true"], image=img2, Volumes={"/seed": {}})
    ctrs.append(cid)
    host = inspect(api, cid)["Volumes"]["/seed"]
    assert sorted(os.listdir(host)) == ["a", "c"]

    _, m3 = run_ok(api, sh("rm -rf /seed && mkdir /seed && echo d > /seed/d"), image=img2)
    ctrs.append(m3)
    img3 = commit(api, m3)
    out, cid = run_ok(api, ["ls", "/seed"], image=img3, Volumes={"/seed": {}})
    ctrs.append(cid)
    host = inspect(api, cid)["Volumes"]["/seed"]
    assert sorted(os.listdir(host)) == ["d"]
    assert out.split() == ["d"]


def test_delete_v_of_borrower_keeps_owner_volume(api, busybox, ctrs):
    _, a = run_ok(api, sh("echo owned > /vol/f"), Volumes={"/vol": {}})
    ctrs.append(a)
    host = inspect(api, a)["Volumes"]["/vol"]
    _, b = run_ok(api, ["cat", "/vol/f"], VolumesFrom=a)
    assert api.delete(f"/containers/{b}?v=1").status == 204
    assert open(os.path.join(host, "f")).read() == "owned\n"
    assert api.delete(f"/containers/{a}?v=1").status == 204
    assert not os.path.exists(host)


def test_volumes_from_unknown_container_refused(api, busybox, ctrs):
    cid = api.create(["true"], VolumesFrom="0" * 64)
    ctrs.append(cid)
    r = api.post(f"/containers/{cid}/start")
    assert r.status in (400, 404, 500), r
    assert inspect(api, cid)["State"]["Running"] is False


# --------------------------------------------------------------------------
# Dns
# --------------------------------------------------------------------------

def test_dns_from_config(api, busybox, ctrs):
    out, cid = run_ok(api, ["cat", "/etc/resolv.conf"], Dns=["1.2.3.4", "5.6.7.8"])
    ctrs.append(cid)
    lines = out.splitlines()
    assert "nameserver 1.2.3.4" in lines
    assert "nameserver 5.6.7.8" in lines


def test_dns_default_drops_loopback_servers(api, busybox, ctrs):
    out, cid = run_ok(api, ["cat", "/etc/resolv.conf"])
    ctrs.append(cid)
    servers = [ln.split()[1] for ln in out.splitlines() if ln.split()[:1] == ["nameserver"]]
    assert servers, out
    assert not [s for s in servers if s.startswith("127.") or s == "::1"], out
    try:
        host_lines = open("/etc/resolv.conf").read().splitlines()
    except OSError:
        host_lines = []
    host_servers = [ln.split()[1] for ln in host_lines if ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1]
    kept = [s for s in host_servers if not (s.startswith("127.") or s == "::1")]
    if kept:
        assert servers == kept, (servers, host_servers)
    else:
        assert servers == ["8.8.8.8", "8.8.4.4"], (servers, host_servers)


# --------------------------------------------------------------------------
# changes
# --------------------------------------------------------------------------

def test_changes_added_deleted_modified(api, busybox, ctrs):
    _, cid = run_ok(api, sh("echo x > /newfile; rm /bin/true; echo changed >> /etc/motd; "
                            "mkdir -p /newdir/sub && echo y > /newdir/sub/f"))
    ctrs.append(cid)
    r = api.get(f"/containers/{cid}/changes")
    assert r.status == 200, r
    assert r.headers["Content-Type"].startswith("application/json")
    changes = r.json()
    assert all(set(c) == {"Path", "Kind"} for c in changes), changes
    kinds = {c["Path"]: c["Kind"] for c in changes}
    assert len(kinds) == len(changes), "duplicate paths"
    assert kinds.get("/newfile") == 1, changes
    assert kinds.get("/bin/true") == 2, changes
    assert kinds.get("/etc/motd") == 0, changes
    assert kinds.get("/newdir") == 1 and kinds.get("/newdir/sub") == 1 and kinds.get("/newdir/sub/f") == 1
    for p in ("/etc", "/bin"):
        assert kinds.get(p, 0) == 0, changes
    # untouched image content is not listed
    assert "/etc/passwd" not in kinds and "/bin/busybox" not in kinds, changes


def test_changes_opaque_directory(api, busybox, ctrs):
    _, cid = run_ok(api, sh("rm -rf /home/user && mkdir -p /home/user && touch /home/user/new"))
    ctrs.append(cid)
    r = api.get(f"/containers/{cid}/changes")
    assert r.status == 200, r
    kinds = {c["Path"]: c["Kind"] for c in r.json()}
    assert kinds.get("/home/user/new") == 1, kinds
    assert kinds.get("/home/user") in (0, 1), kinds


def test_changes_of_fresh_container_is_empty_list(api, busybox, ctrs):
    cid = api.create(["true"])
    ctrs.append(cid)
    r = api.get(f"/containers/{cid}/changes")
    assert r.status == 200, r
    assert r.json() == []


def test_changes_deleted_directory_and_metadata_change(api, busybox, ctrs):
    _, cid = run_ok(api, sh("rm -rf /home && chmod 600 /etc/passwd"))
    ctrs.append(cid)
    kinds = {c["Path"]: c["Kind"] for c in api.get(f"/containers/{cid}/changes").json()}
    assert kinds.get("/home") == 2, kinds
    assert "/home/user" not in kinds, kinds
    assert kinds.get("/etc/passwd") == 0, kinds


def test_changes_bind_contents_not_listed(api, busybox, tmp_path, ctrs):
    host = tmp_path / "h"
    host.mkdir()
    _, cid = run_ok(api, sh("echo in-bind > /data/f; echo hosts >> /etc/hosts"),
                    body={"Binds": [f"{host}:/data"]})
    ctrs.append(cid)
    kinds = {c["Path"]: c["Kind"] for c in api.get(f"/containers/{cid}/changes").json()}
    assert "/data/f" not in kinds, kinds
    assert "/etc/hosts" not in kinds, kinds


def test_changes_while_files_churn(api, busybox, ctrs):
    # Regression test; this once failed: GET /containers/<id>/changes of a running container answers 500
    # (FileNotFoundError from os.scandir / DirEntry.stat in layerfs.changes)
    # when a file or directory of its upper layer vanishes during the walk;
    # ~20% of calls in probes. Expected: 200, with vanished entries skipped.
    cid = churning(api, ctrs, "vanish")
    try:
        statuses = [api.get(f"/containers/{cid}/changes").status for _ in range(100)]
    finally:
        kill(api, cid)
    assert statuses.count(200) == 100, {s: statuses.count(s) for s in set(statuses)}


def test_commit_while_files_churn(api, busybox, ctrs):
    # Regression test; this once failed: POST /commit of a running container whose files vanish during the
    # copy answers 500 "internal error: BadTar: not a tar archive: empty file"
    # (the layer_tar writer thread dies on FileNotFoundError and the extractor
    # reports the truncated pipe); ~25% of commits in probes. Expected: 201
    # (vanished entries skipped), or at least an error that names the cause.
    cid = churning(api, ctrs, "vanish")
    try:
        results = [api.post(f"/commit?container={cid}") for _ in range(20)]
    finally:
        kill(api, cid)
    failed = [r for r in results if r.status != 201]
    assert not failed, f"{len(failed)}/20 commits failed: {failed[:2]}"


@pytest.mark.parametrize("prefix", ["", "/v1.3"])
def test_changes_unknown_is_404(api, prefix):
    r = api.get(f"{prefix}/containers/{'0' * 64}/changes")
    assert r.status == 404, r


# --------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------

def test_export_stopped_container(api, busybox, ctrs):
    _, cid = run_ok(api, sh("echo exported > /newfile; rm /etc/motd"))
    ctrs.append(cid)
    r = api.get(f"/containers/{cid}/export")
    assert r.status == 200, r
    assert r.headers["Content-Type"] == "application/octet-stream"
    names, tf = members(r.body)
    bb = names.get("bin/busybox")
    assert bb is not None and bb.isfile(), sorted(names)[:20]
    assert bb.size == os.path.getsize(BUSYBOX)
    with open(BUSYBOX, "rb") as f:
        assert tf.extractfile(bb).read() == f.read()
    assert names["bin/sh"].issym()
    assert tf.extractfile(names["newfile"]).read() == b"exported\n"
    assert "etc/motd" not in names
    assert "etc/passwd" in names and names["etc"].isdir()
    assert not [n for n in names if ".wh." in n]


def test_export_running_container(api, busybox, ctrs):
    cid = api.create(sh("echo live > /live; rm /etc/motd; echo ready; sleep 100"))
    ctrs.append(cid)
    api.start(cid)
    try:
        wait_logs(api, cid, "ready")
        r = api.get(f"/containers/{cid}/export")
        assert r.status == 200, r
        names, tf = members(r.body)
        assert tf.extractfile(names["live"]).read() == b"live\n"
        assert names["bin/busybox"].size == os.path.getsize(BUSYBOX)
        assert "etc/motd" not in names
        assert inspect(api, cid)["State"]["Running"] is True
    finally:
        kill(api, cid)


def test_export_special_entries(api, busybox, ctrs):
    long_dir = "/" + "/".join(["d" * 60] * 3)
    _, cid = run_ok(api, sh(f"mkdir -p {long_dir} && echo deep > {long_dir}/file.txt; "
                            "echo h > /hl1 && ln /hl1 /hl2; mkfifo /fifo; "
                            "ln -s /etc/passwd /plink; echo u > /caf\u00e9"))
    ctrs.append(cid)
    r = api.get(f"/containers/{cid}/export")
    assert r.status == 200, r
    names, tf = members(r.body)
    deep = long_dir.lstrip("/") + "/file.txt"
    assert tf.extractfile(names[deep]).read() == b"deep\n"
    assert names["plink"].issym() and names["plink"].linkname == "/etc/passwd"
    assert names["fifo"].isfifo()
    hl = [names["hl1"], names["hl2"]]
    assert sum(m.islnk() for m in hl) == 1 and sum(m.isfile() for m in hl) == 1
    assert "caf\u00e9" in names


CHURN = {
    # files appear and vanish
    "vanish": "mkdir /churn; echo ready; i=0; while [ $i -lt 200000 ]; do "
              "for j in 1 2 3 4 5 6 7 8 9 10; do mkdir -p /churn/d$j; echo x > /churn/d$j/f; done; "
              "rm -rf /churn/*; i=$((i+1)); done",
    # a file is rewritten from empty (it shrinks)
    "shrink": "echo ready; i=0; while [ $i -lt 200000 ]; do "
              "head -c 200000 /dev/zero > /shrink; : > /shrink; i=$((i+1)); done",
}


def churning(api, ctrs, kind):
    cid = api.create(sh(CHURN[kind]))
    ctrs.append(cid)
    api.start(cid)
    wait_logs(api, cid, "ready")
    time.sleep(0.2)
    return cid


@pytest.mark.parametrize("kind", sorted(CHURN))
def test_export_while_files_churn(api, busybox, ctrs, kind):
    # Regression test; this once failed: exporting a running container whose files vanish or shrink during the
    # export fails mid-stream in the daemon (FileNotFoundError from the union
    # walk, or OSError "unexpected end of data" from tarfile for a shrunk file),
    # yet the client gets a normal 200 with a clean chunked end: a truncated tar
    # without end-of-archive marker and no error signal (Python's tarfile
    # accepts it silently). In probes ~17% (vanish) and ~37% (shrink) of
    # exports were truncated. Expected: skip vanished entries and pad a shrunk
    # file (as GNU tar does), or at least abort the connection so the client
    # sees an incomplete response.
    cid = churning(api, ctrs, kind)
    try:
        bad = []
        for i in range(30):
            r = api.get(f"/containers/{cid}/export")
            assert r.status == 200, r
            try:
                names, tf = members(r.body)
                assert names["bin/busybox"].size == os.path.getsize(BUSYBOX)
                for m in names.values():
                    if m.isfile():
                        assert len(tf.extractfile(m).read()) == m.size
            except (AssertionError, tarfile.TarError, KeyError) as e:
                bad.append(f"export {i}: {type(e).__name__}: {e}")
        assert not bad, f"{len(bad)}/30 exports broken: {bad[:3]}"
    finally:
        kill(api, cid)


@pytest.mark.parametrize("prefix", ["", "/v1.3"])
def test_export_unknown_is_404(api, prefix):
    r = api.get(f"{prefix}/containers/{'0' * 64}/export")
    assert r.status == 404, r


# --------------------------------------------------------------------------
# top
# --------------------------------------------------------------------------

def test_top_running_then_stopped(api, busybox, ctrs):
    cid = api.create(["sleep", "100"])
    ctrs.append(cid)
    api.start(cid)
    try:
        r = api.get(f"/containers/{cid}/top")
        assert r.status == 200, r
        procs = r.json()
        assert isinstance(procs, list) and procs, procs
        for p in procs:
            assert set(p) == {"PID", "Tty", "Time", "Cmd"}, p
            assert all(isinstance(v, str) for v in p.values()), p
        sleeps = [p for p in procs if p["Cmd"] == "sleep"]
        assert len(sleeps) == 1, procs
        assert int(sleeps[0]["PID"]) == inspect(api, cid)["State"]["Pid"]
        assert sleeps[0]["Tty"] == "?"
        assert sleeps[0]["Time"].count(":") == 2
    finally:
        kill(api, cid)
    r = api.get(f"/containers/{cid}/top")
    assert 400 <= r.status < 500, r
    assert r.status == 409, r


def test_top_lists_every_process(api, busybox, ctrs):
    cid = api.create(sh("sleep 100 & sleep 101 & echo ready; wait"))
    ctrs.append(cid)
    api.start(cid)
    try:
        wait_logs(api, cid, "ready")
        procs = wait_for(lambda: (lambda p: p if [x for x in p if x["Cmd"] == "sleep"][1:] else None)(
            api.get(f"/containers/{cid}/top").json()), what="two sleeps in top")
        cmds = sorted(p["Cmd"] for p in procs)
        assert cmds == ["sh", "sleep", "sleep"], procs
    finally:
        kill(api, cid)


def test_top_tty_container(api, busybox, ctrs):
    cid = api.create(["sleep", "100"], Tty=True)
    ctrs.append(cid)
    api.start(cid)
    try:
        procs = api.get(f"/containers/{cid}/top").json()
        sleeps = [p for p in procs if p["Cmd"] == "sleep"]
        assert len(sleeps) == 1 and sleeps[0]["Tty"].startswith("pts/"), procs
    finally:
        kill(api, cid)


def test_top_unknown_is_404(api):
    r = api.get(f"/containers/{'0' * 64}/top")
    assert r.status == 404, r


# --------------------------------------------------------------------------
# commit
# --------------------------------------------------------------------------

def test_commit_with_repo_tag_message_author(api, busybox, ctrs):
    _, cid = run_ok(api, sh("echo committed-data > /hello"))
    ctrs.append(cid)
    r = api.post(f"/commit?container={cid}&repo=committed&tag=v1&m=msg&author=me")
    assert r.status == 201, r
    image_id = r.json()["Id"]
    assert image_id

    rows = api.get("/images/json").json()
    row = [x for x in rows if x["Repository"] == "committed" and x["Tag"] == "v1"]
    assert len(row) == 1, rows
    assert image_id.startswith(row[0]["Id"]) or row[0]["Id"].startswith(image_id)

    img = api.get("/images/committed:v1/json")
    assert img.status == 200, img
    info = img.json()
    assert info["id"].startswith(image_id) or image_id.startswith(info["id"])
    assert info["parent"] == busybox
    assert info["container"] == cid
    assert info["comment"] == "msg"
    assert info["author"] == "me"

    out, cid2 = run_ok(api, ["cat", "/hello"], image="committed:v1")
    ctrs.append(cid2)
    assert out == "committed-data\n"


def test_commit_comment_alias(api, busybox, ctrs):
    _, cid = run_ok(api, ["true"])
    ctrs.append(cid)
    image = commit(api, cid, "comment=via-comment&author=someone")
    info = api.get(f"/images/{image}/json").json()
    assert info["comment"] == "via-comment"
    assert info["author"] == "someone"


def test_commit_keeps_cmd_and_body_overrides(api, busybox, ctrs):
    _, maker = run_ok(api, sh("echo hi-there > /hello"))
    ctrs.append(maker)
    base = commit(api, maker)

    _, cat = run_ok(api, ["cat", "/hello"], image=base, Env=["KEEP=yes"])
    ctrs.append(cat)
    kept = commit(api, cat)
    out, c1 = run_ok(api, None, image=kept)  # no Cmd: the committed CMD runs
    ctrs.append(c1)
    assert out == "hi-there\n"
    assert inspect(api, c1)["Config"]["Cmd"] == ["cat", "/hello"]

    over = commit(api, cat, body={"Cmd": ["echo", "from-body"]})
    out, c2 = run_ok(api, None, image=over)
    ctrs.append(c2)
    assert out == "from-body\n"
    cfg = api.get(f"/images/{over}/json").json()["config"]
    assert cfg["Cmd"] == ["echo", "from-body"]
    assert "KEEP=yes" in (cfg.get("Env") or [])  # set at create, survives the override
    out, c3 = run_ok(api, sh('echo "keep=$KEEP"'), image=over)
    ctrs.append(c3)
    assert "keep=yes" in out


def test_commit_of_committed_image_and_delete(api, busybox, ctrs):
    _, first = run_ok(api, sh("echo one > /one"))
    ctrs.append(first)
    a = commit(api, first)
    repo = uniq("recommit")
    _, second = run_ok(api, sh("cat /one && echo two > /two"), image=a)
    b = commit(api, second, f"repo={repo}")
    info = api.get(f"/images/{repo}/json").json()
    assert info["parent"] == a
    out, third = run_ok(api, sh("cat /one /two"), image=repo)
    assert out == "one\ntwo\n"

    # in use by `third`: refused
    r = api.delete(f"/images/{repo}")
    assert r.status == 409, r
    for cid in (third, second):
        assert api.delete(f"/containers/{cid}").status == 204
    r = api.delete(f"/images/{repo}")
    assert r.status == 200, r
    assert {"Deleted": b[:12]} in r.json(), r.json()
    assert api.get(f"/images/{b}/json").status == 404
    # `a` is untagged, has no other child and no container runs it: pruned too.
    assert {"Deleted": a[:12]} in r.json(), r.json()
    assert api.get(f"/images/{a}/json").status == 404
    assert api.get("/images/busybox/json").status == 200


def test_commit_keeps_whiteouts(api, busybox, ctrs):
    _, cid = run_ok(api, sh("rm /etc/motd && rm -rf /home/user && echo n > /etc/new"))
    ctrs.append(cid)
    image = commit(api, cid)
    out, cid2 = run_ok(api, sh("test -e /etc/motd && echo motd-present || echo motd-absent; "
                               "test -e /home/user && echo user-present || echo user-absent; "
                               "cat /etc/new /etc/passwd | head -2"), image=image)
    ctrs.append(cid2)
    assert "motd-absent" in out and "user-absent" in out, out
    assert out.splitlines()[2:4] == ["n", "root:x:0:0:root:/root:/bin/sh"], out
    r = api.get(f"/containers/{cid2}/export")
    names, _ = members(r.body)
    assert "etc/motd" not in names and "etc/new" in names and "home/user" not in names


def test_commit_errors(api, busybox):
    r = api.post("/commit")
    assert r.status == 400, r
    r = api.post("/commit?container=")
    assert r.status == 400, r
    r = api.post(f"/commit?container={'0' * 64}")
    assert r.status == 404, r


def test_commit_of_running_container(api, busybox, ctrs):
    cid = api.create(sh("echo live > /livefile; echo ready; sleep 100"))
    ctrs.append(cid)
    api.start(cid)
    try:
        wait_logs(api, cid, "ready")
        image = commit(api, cid)
    finally:
        kill(api, cid)
    out, cid2 = run_ok(api, ["cat", "/livefile"], image=image)
    ctrs.append(cid2)
    assert out == "live\n"


def test_commit_leaves_out_volumes_and_etc_hosts(api, busybox, ctrs):
    _, cid = run_ok(api, sh("echo in-vol > /vol/f; echo '10.9.9.9 extra' >> /etc/hosts; "
                            "echo layer > /layerfile"), Volumes={"/vol": {}})
    ctrs.append(cid)
    image = commit(api, cid)
    out, cid2 = run_ok(api, sh("cat /layerfile; echo ---; ls -A /vol; echo ---; cat /etc/hosts"), image=image)
    ctrs.append(cid2)
    layer, vol, hosts = out.split("---\n")
    assert layer == "layer\n"
    assert vol == ""  # the volume's content is not in the layer
    assert "localhost" in hosts and "extra" not in hosts
    # the image keeps the Volumes config: the new container gets its own volume
    vols = inspect(api, cid2)["Volumes"]
    assert "/vol" in vols and vols["/vol"] != inspect(api, cid)["Volumes"]["/vol"]


@pytest.mark.parametrize("query,body", [
    ("repo=UPPER", None),
    ("repo=ok&tag=bad:tag", None),
    ("", ["not", "an", "object"]),
    ("", {"Cmd": 5}),
    ("", {"Env": ["NOEQUALS"]}),
])
def test_commit_bad_parameters_are_400(api, busybox, ctrs, query, body):
    _, cid = run_ok(api, ["true"])
    ctrs.append(cid)
    before = len(api.get("/images/json?all=1").json())
    r = api.post(f"/commit?container={cid}" + (f"&{query}" if query else ""), body)
    assert r.status == 400, r
    assert len(api.get("/images/json?all=1").json()) == before


def test_commit_repo_with_tag_in_name(api, busybox, ctrs):
    _, cid = run_ok(api, sh("echo t > /t"))
    ctrs.append(cid)
    repo = uniq("withtag")
    image = commit(api, cid, f"repo={repo}:v9")
    rows = [x for x in api.get("/images/json").json() if x["Repository"] == repo]
    assert [(x["Tag"]) for x in rows] == ["v9"]
    assert image.startswith(rows[0]["Id"]) or rows[0]["Id"].startswith(image)


def test_delete_busybox_in_use_is_409(new_daemon, busybox_tar):
    d = new_daemon().start()
    r = d.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                   headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r
    image_id = d.api.get("/images/busybox/json").json()["id"]
    cid = d.api.create(["true"])
    for ref in ("busybox", "busybox:latest", image_id, image_id[:12]):
        r = d.api.delete(f"/images/{ref}")
        assert r.status == 409, (ref, r)
    assert d.api.get("/images/busybox/json").status == 200
    assert d.api.delete(f"/containers/{cid}").status == 204
    r = d.api.delete("/images/busybox")
    assert r.status == 200, r
    assert d.api.get(f"/images/{image_id}/json").status == 404


# --------------------------------------------------------------------------
# export memory bound
# --------------------------------------------------------------------------

def export_rss_growth(port, pid, cid, interval=0.01):
    """Stream GET /containers/<cid>/export through tarfile's stream mode;
    returns (max VmRSS growth, bytes, {name: size}, baseline)."""
    baseline = vm_rss(pid)
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], vm_rss(pid))
            time.sleep(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    sizes = {}
    try:
        conn.request("GET", f"/containers/{cid}/export")
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        src = CountingReader(resp)
        with tarfile.open(fileobj=src, mode="r|") as tf:
            for m in tf:
                sizes[m.name.lstrip("./")] = m.size
        while src.read(MiB):  # the end-of-archive padding
            pass
    finally:
        done.set()
        t.join()
        conn.close()
    peak[0] = max(peak[0], vm_rss(pid))
    return peak[0] - baseline, src.count, sizes, baseline


def test_export_large_file_bounded_daemon_memory(api, daemon, busybox, ctrs):
    _, cid = run_ok(api, ["dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=200"])
    ctrs.append(cid)
    growth, total, sizes, baseline = export_rss_growth(daemon.port, daemon.server_pid(), cid)
    assert sizes.get("big") == 200 * MiB, sizes.get("big")
    assert sizes.get("bin/busybox") == os.path.getsize(BUSYBOX)
    assert total >= 200 * MiB and total % 512 == 0
    assert growth < 30 * MiB, f"daemon RSS grew {growth / MiB:.1f} MiB (baseline {baseline / MiB:.1f} MiB)"
