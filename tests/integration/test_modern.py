"""The modern surface (Engine API 1.24-1.41) over HTTP, against the real
daemon: versions and errors, names, HostConfig, the list and inspect
shapes, filters, wait conditions, logs, events, restart policies,
AutoRemove, volumes, prune, disk usage, commit and import changes.
The docker CLI and SDK drive the same paths in test_cli.py and test_sdk.py."""

import json
import os
import signal
import socket
import struct
import time
from urllib.parse import quote

import pytest

from tests.pydtest import inspect, wait_for

V = "/v1.41"


def create(api, cmd, name=None, **body):
    body = {"Image": "busybox", "Cmd": cmd, **body}
    r = api.post(f"{V}/containers/create" + (f"?name={name}" if name else ""), body)
    assert r.status == 201, r
    return r.json()["Id"]


def run(api, cmd, **body):
    cid = create(api, cmd, **body)
    assert api.post(f"{V}/containers/{cid}/start").status == 204
    r = api.post(f"{V}/containers/{cid}/wait", timeout=60)
    assert r.status == 200, r
    return cid, r.json()["StatusCode"]


def frames(data):
    """8-byte-header frames -> [(stream, bytes)]."""
    out = []
    while data:
        stream, n = struct.unpack(">BxxxI", data[:8])
        out.append((stream, data[8:8 + n]))
        data = data[8 + n:]
    return out


def q(obj):
    """A filters value as a client puts it in a query."""
    return quote(json.dumps(obj))


def remove(api, cid):
    api.delete(f"{V}/containers/{cid}?force=1&v=1")


# -- versions and errors ---------------------------------------------------------

def test_ping_advertises_141(api):
    for method in ("GET", "HEAD"):
        r = api.request(method, "/_ping")
        assert r.status == 200 and r.headers["API-Version"] == "1.41"
    assert api.get(f"{V}/_ping").headers["API-Version"] == "1.41"
    assert api.get("/v1.3/info").headers["API-Version"] == "1.41"  # every response carries it


@pytest.mark.parametrize("version", ["1.24", "1.30", "1.41"])
def test_modern_versions_get_modern_shapes(api, version):
    v = api.get(f"/v{version}/version").json()
    assert v["ApiVersion"] == "1.41" and v["MinAPIVersion"] == "1.24"
    assert v["Os"] == "linux" and v["KernelVersion"] == os.uname().release
    assert v["Components"][0]["Name"] == "Engine"


def test_modern_info_from_reality(daemon, api):
    info = api.get(f"{V}/info").json()
    assert info["NCPU"] == os.cpu_count() and info["KernelVersion"] == os.uname().release
    assert info["DockerRootDir"] == daemon.root and info["OSType"] == "linux"
    assert info["Containers"] == info["ContainersRunning"] + info["ContainersPaused"] + info["ContainersStopped"]
    assert info["MemTotal"] > 0 and info["ServerVersion"] and info["ID"]
    assert info["ID"] == api.get(f"{V}/info").json()["ID"]  # stable


def test_unversioned_version_lets_clients_negotiate(api):
    v = api.get("/version").json()
    assert v["ApiVersion"] == "1.41" and v["MinAPIVersion"] == "1.24"
    assert {"Version", "GitCommit", "GoVersion"} <= set(v)
    assert set(api.get("/v1.3/version").json()) == {"Version", "GitCommit", "GoVersion"}  # v1.3 exact


@pytest.mark.parametrize("version,word", [("1.42", "too new"), ("1.10", "not supported"), ("0.9", "too old")])
def test_versions_outside_the_ranges_are_refused(api, version, word):
    r = api.get(f"/v{version}/version")
    assert r.status == 400 and word in r.text


def test_modern_errors_are_json(api):
    r = api.get(f"{V}/containers/nosuchthing/json")
    assert r.status == 404
    assert r.headers["Content-Type"] == "application/json"
    assert "No such container" in r.json()["message"]
    r = api.get(f"{V}/no/such/route")
    assert r.status == 404 and r.json()["message"] == "page not found"
    r = api.post(f"{V}/containers/create", b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400 and "malformed JSON" in r.json()["message"]
    assert api.get("/containers/nosuchthing/json").headers["Content-Type"].startswith("text/plain")


def test_modern_only_endpoints_are_404_on_v13(api, busybox):
    assert api.get("/v1.3/volumes").status == 404
    assert api.get("/v1.3/system/df").status == 404
    assert api.get(f"{V}/volumes").status == 200


# -- names -------------------------------------------------------------------------

def test_names_lookup_conflict_and_rename(api, busybox):
    cid = create(api, ["true"], name="alpha")
    try:
        assert inspect(api, "alpha", V)["Id"] == cid
        assert inspect(api, "alpha", V)["Name"] == "/alpha"
        assert inspect(api, cid[:10], V)["Id"] == cid
        r = api.post(f"{V}/containers/create?name=alpha", {"Image": "busybox", "Cmd": ["true"]})
        assert r.status == 409 and "already in use" in r.json()["message"]
        r = api.post(f"{V}/containers/create?name=bad%20name", {"Image": "busybox", "Cmd": ["true"]})
        assert r.status == 400 and "Invalid container name" in r.json()["message"]
        assert api.post(f"{V}/containers/alpha/rename?name=beta").status == 204
        assert api.get(f"{V}/containers/alpha/json").status == 404
        assert inspect(api, "beta", V)["Id"] == cid
        rows = api.get(f"{V}/containers/json?all=1").json()
        assert ["/beta"] in [r["Names"] for r in rows]
        # the old name is free again; a leading slash is the same name
        other = create(api, ["true"], name="/alpha")
        assert inspect(api, "alpha", V)["Id"] == other
        remove(api, other)
    finally:
        remove(api, cid)


def test_generated_names_are_unique(api, busybox):
    ids = [create(api, ["true"]) for _ in range(5)]
    try:
        names = [inspect(api, i, V)["Name"] for i in ids]
        assert len(set(names)) == 5 and all(n.startswith("/") and "_" in n for n in names)
    finally:
        for i in ids:
            remove(api, i)


# -- create with HostConfig, inspect and list shapes ---------------------------------

def test_create_with_host_config_and_inspect_shape(api, busybox, tmp_path):
    (tmp_path / "f").write_text("from host\n")
    body = {"Image": "busybox", "Cmd": ["sh", "-c", "cat /b/f; cat /etc/hosts | grep myhost"],
            "Labels": {"app": "web", "tier": "1"},
            "HostConfig": {"Binds": [f"{tmp_path}:/b:ro"], "ExtraHosts": ["myhost:10.1.2.3"],
                           "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
                           "Memory": 64 << 20, "NetworkMode": "bridge"}}
    r = api.post(f"{V}/containers/create?name=hc", body)
    assert r.status == 201, r
    assert r.json()["Warnings"] == [], r.json()  # the bridge exists now: no loopback-only warning
    cid = r.json()["Id"]
    try:
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        assert api.post(f"{V}/containers/{cid}/wait").json()["StatusCode"] == 0
        d = inspect(api, cid, V)
        assert d["Name"] == "/hc" and d["Image"].startswith("sha256:")
        assert d["State"]["Status"] == "exited" and d["State"]["Running"] is False
        assert d["Config"]["Labels"] == {"app": "web", "tier": "1"}
        assert d["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        assert d["HostConfig"]["Memory"] == 64 << 20 and d["HostConfig"]["NetworkMode"] == "bridge"
        assert d["Mounts"][0]["Destination"] == "/b" and d["Mounts"][0]["RW"] is False
        r = api.get(f"{V}/containers/{cid}/logs?stdout=1&stderr=1")
        out = b"".join(d for _, d in frames(r.body))
        assert out == b"from host\n10.1.2.3\tmyhost\n"
    finally:
        remove(api, cid)


@pytest.mark.parametrize("host,word", [
    ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}}, "maximum retry count"),
    ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, "AutoRemove"),
    ({"NanoCpus": 5, "CpuQuota": 100}, "Conflicting options"),
    ({"ExtraHosts": ["nocolon"]}, "add-host"),
    ({"Binds": ["re/l:/x"]}, "invalid bind"),
    ({"Mounts": [{"Type": "bind", "Source": "/no/such/dir", "Target": "/x"}]}, "does not exist"),
    ({"Mounts": [{"Type": "weird", "Target": "/x"}]}, "mount type"),
])
def test_bad_host_config_is_400(api, busybox, host, word):
    r = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": host})
    assert r.status == 400, r
    assert word in r.json()["message"]


def test_unknown_network_is_404_and_privileged_is_refused(api, busybox):
    r = api.post(f"{V}/containers/create", {"Image": "busybox", "HostConfig": {"NetworkMode": "nonet"}})
    assert r.status == 404 and "network nonet not found" in r.json()["message"]
    r = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Privileged": True}})
    assert r.status == 403 and "--allow-privileged" in r.json()["message"]


def test_start_with_a_body_is_refused_on_modern_paths(api, busybox):
    cid = create(api, ["true"])
    try:
        r = api.post(f"{V}/containers/{cid}/start", {"Binds": ["/tmp:/x"]})
        assert r.status == 400 and "removed in v1.24" in r.json()["message"]
    finally:
        remove(api, cid)


def test_list_shape_and_filters(api, busybox):
    a = create(api, ["sleep", "30"], name="flt-run", Labels={"role": "a"})
    b = create(api, ["sh", "-c", "exit 3"], name="flt-exit", Labels={"role": "b"})
    c = create(api, ["true"], name="flt-new")
    try:
        assert api.post(f"{V}/containers/{a}/start").status == 204
        run_b = api.post(f"{V}/containers/{b}/start")
        assert run_b.status == 204
        assert api.post(f"{V}/containers/{b}/wait").json()["StatusCode"] == 3

        def names(filters, all_=1):
            r = api.get(f"{V}/containers/json?all={all_}&filters={q(filters)}")
            assert r.status == 200, r
            return sorted(n for row in r.json() for n in row["Names"] if n.startswith("/flt-"))
        assert names({"status": ["running"]}) == ["/flt-run"]
        assert names({"status": ["exited"]}) == ["/flt-exit"]
        assert names({"status": ["created"]}) == ["/flt-new"]
        assert names({"exited": ["3"]}) == ["/flt-exit"]
        assert names({"label": ["role=a"]}) == ["/flt-run"]
        assert names({"label": ["role"]}) == ["/flt-exit", "/flt-run"]
        assert names({"name": ["flt-e"]}) == ["/flt-exit"]
        assert names({"id": [c[:12]]}) == ["/flt-new"]
        assert names({"ancestor": ["busybox"]}) == ["/flt-exit", "/flt-new", "/flt-run"]
        assert names({"status": {"running": True}}) == ["/flt-run"]  # the old map spelling
        assert names({"before": ["flt-new"]}) == ["/flt-exit", "/flt-run"]
        assert names({"since": ["flt-run"]}) == ["/flt-exit", "/flt-new"]
        assert api.get(f"{V}/containers/json?filters=" + q({"colour": ["x"]})).status == 400
        assert api.get(f"{V}/containers/json?filters=" + q({"status": ["dancing"]})).status == 400
        row = [r for r in api.get(f"{V}/containers/json").json() if r["Id"] == a][0]
        assert row["Names"] == ["/flt-run"] and row["State"] == "running" and row["Status"].startswith("Up ")
        assert row["ImageID"].startswith("sha256:") and row["Labels"] == {"role": "a"}
        assert isinstance(row["Ports"], list) and isinstance(row["Mounts"], list)
        row_b = [r for r in api.get(f"{V}/containers/json?all=1").json() if r["Id"] == b][0]
        assert row_b["Status"].startswith("Exited (3) ")
        row_c = [r for r in api.get(f"{V}/containers/json?all=1").json() if r["Id"] == c][0]
        assert row_c["Status"] == "Created" and row_c["State"] == "created"
    finally:
        for x in (a, b, c):
            remove(api, x)


# -- wait, attach, logs ---------------------------------------------------------------

def _request_head(api, method, path, extra=b""):
    s = socket.create_connection(("127.0.0.1", api.port), timeout=30)
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n".encode() + extra + b"\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return s, buf


def _read_rest(s, buf, timeout=30):
    s.settimeout(timeout)
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    s.close()
    return buf


def test_wait_next_exit_flushes_its_head_before_the_start(api, busybox):
    cid = create(api, ["sh", "-c", "exit 5"])
    try:
        s, head = _request_head(api, "POST", f"{V}/containers/{cid}/wait?condition=next-exit")
        assert head.startswith(b"HTTP/1.1 200"), head  # before the container even started
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        body = _read_rest(s, head)
        assert b'"StatusCode": 5' in body and b'"Error": null' in body
        # not-running on a stopped container answers at once
        r = api.post(f"{V}/containers/{cid}/wait")
        assert r.json() == {"StatusCode": 5, "Error": None}
        assert api.post(f"{V}/containers/{cid}/wait?condition=sometime").status == 400
    finally:
        remove(api, cid)


def test_wait_removed_with_auto_remove(api, busybox):
    cid = create(api, ["sh", "-c", "sleep 0.3; exit 2"], HostConfig={"AutoRemove": True})
    s, head = _request_head(api, "POST", f"{V}/containers/{cid}/wait?condition=removed")
    assert head.startswith(b"HTTP/1.1 200")
    assert api.post(f"{V}/containers/{cid}/start").status == 204
    body = _read_rest(s, head)
    assert b'"StatusCode": 2' in body
    wait_for(lambda: api.get(f"{V}/containers/{cid}/json").status == 404, what="auto-removed")


def test_attach_upgrades_and_frames(api, busybox):
    cid = create(api, ["sh", "-c", "echo out; echo err >&2"], AttachStdout=True, AttachStderr=True)
    try:
        s, head = _request_head(api, "POST", f"{V}/containers/{cid}/attach?stream=1&stdout=1&stderr=1",
                                b"Connection: Upgrade\r\nUpgrade: tcp\r\n")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED"), head
        assert b"Upgrade: tcp" in head and b"application/vnd.docker.raw-stream" in head
        rest = head.split(b"\r\n\r\n", 1)[1]
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        body = _read_rest(s, rest)
        got = frames(body)
        assert (1, b"out\n") in got and (2, b"err\n") in got
    finally:
        remove(api, cid)


def test_logs_tail_timestamps_since_and_follow(api, busybox):
    cid, code = run(api, ["sh", "-c", "for i in 1 2 3 4; do echo l$i; done; echo e >&2"])
    try:
        assert code == 0
        r = api.get(f"{V}/containers/{cid}/logs?stdout=1&stderr=1")
        assert frames(r.body) == [(1, b"l1\n"), (1, b"l2\n"), (1, b"l3\n"), (1, b"l4\n"), (2, b"e\n")]
        r = api.get(f"{V}/containers/{cid}/logs?stdout=1&tail=2")
        assert frames(r.body) == [(1, b"l3\n"), (1, b"l4\n")]
        r = api.get(f"{V}/containers/{cid}/logs?stdout=1&tail=1&timestamps=1")
        (stream, line), = frames(r.body)
        stamp, _, text = line.partition(b" ")
        assert text == b"l4\n" and stamp.endswith(b"Z") and len(stamp) == 30
        future = int(time.time()) + 3600
        assert api.get(f"{V}/containers/{cid}/logs?stdout=1&since={future}").body == b""
        assert api.get(f"{V}/containers/{cid}/logs?stdout=1&until=1000").body == b""
        assert api.get(f"{V}/containers/{cid}/logs").status == 400  # no stream chosen
        assert api.get(f"{V}/containers/{cid}/logs?stdout=1&tail=x").status == 400
    finally:
        remove(api, cid)
    # follow: the live output, then the end when the container stops
    cid = create(api, ["sh", "-c", "echo one; sleep 1; echo two"])
    try:
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        r = api.get(f"{V}/containers/{cid}/logs?stdout=1&follow=1", timeout=30)
        assert [d for _, d in frames(r.body)] == [b"one\n", b"two\n"]
    finally:
        remove(api, cid)


def test_tty_logs_are_raw(api, busybox):
    cid, _ = run(api, ["echo", "tty"], Tty=True)
    try:
        assert api.get(f"{V}/containers/{cid}/logs?stdout=1").body == b"tty\r\n"
    finally:
        remove(api, cid)


# -- events ---------------------------------------------------------------------------

def _events(api, query, prefix=V):
    r = api.get(f"{prefix}/events?{query}", timeout=30)
    assert r.status == 200, r
    return [json.loads(line) for line in r.body.splitlines() if line.strip()]


def test_events_modern_and_legacy_with_since_until_filters(api, busybox):
    t0 = time.time() - 1
    cid = create(api, ["true"], name="evt", Labels={"ev": "yes"})
    assert api.post(f"{V}/containers/{cid}/start").status == 204
    assert api.post(f"{V}/containers/{cid}/wait").status == 200
    remove(api, cid)
    time.sleep(1.1)
    until = int(time.time()) + 1
    evs = [e for e in _events(api, f"since={t0}&until={until}") if e.get("Actor", {}).get("ID") == cid]
    assert [e["Action"] for e in evs] == ["create", "start", "die", "destroy"]
    e = evs[2]
    assert e["Type"] == "container" and e["scope"] == "local" and e["status"] == "die"
    assert e["Actor"]["Attributes"]["exitCode"] == "0" and e["Actor"]["Attributes"]["name"] == "evt"
    assert e["Actor"]["Attributes"]["ev"] == "yes" and e["Actor"]["Attributes"]["image"] == "busybox"
    assert isinstance(e["timeNano"], int) and e["time"] == e["timeNano"] // 10**9
    only_die = _events(api, f"since={t0}&until={until}&filters=" + q({"event": ["die"]}))
    assert only_die and all(x["Action"] == "die" for x in only_die)
    by_label = _events(api, f"since={t0}&until={until}&filters=" + q({"label": ["ev=yes"]}))
    assert {x["Actor"]["ID"] for x in by_label} == {cid}
    by_name = _events(api, f"since={t0}&until={until}&filters=" + q({"container": ["evt"]}))
    assert {x["Actor"]["ID"] for x in by_name} == {cid}
    images = _events(api, f"since={t0}&until={until}&filters=" + q({"type": ["image"]}))
    assert all(x["Type"] == "image" for x in images)
    legacy = [e for e in _events(api, f"since={int(t0)}&until={until}", prefix="") if e["id"] == cid[:12]]
    assert [e["status"] for e in legacy] == ["create", "start", "die", "destroy"]
    assert set(legacy[0]) == {"status", "id", "time"}
    assert api.get(f"{V}/events?since=10&until=5").status == 400
    assert api.get(f"{V}/events?filters=" + q({"colour": ["x"]})).status == 400


def test_events_stream_live_and_info_counts_listeners(api, busybox):
    s, head = _request_head(api, "GET", f"{V}/events?filters=" + q({"type": ["container"]}))
    assert head.startswith(b"HTTP/1.1 200")
    try:
        assert wait_for(lambda: api.get(f"{V}/info").json()["NEventsListener"] >= 1, what="listener counted")
        assert int(api.get("/v1.3/info").json()["EventsListeners"]) >= 1
        cid = create(api, ["true"], name="live-evt")
        s.settimeout(10)
        buf = head
        deadline = time.monotonic() + 10
        while b'"live-evt"' not in buf and time.monotonic() < deadline:
            buf += s.recv(65536)
        assert b'"create"' in buf and b'"live-evt"' in buf
        remove(api, cid)
    finally:
        s.close()
    # a follower that left is noticed on a quiet stream, and let go
    wait_for(lambda: api.get(f"{V}/info").json()["NEventsListener"] == 0, timeout=10, what="listener gone")


def test_a_refused_request_with_a_body_does_not_poison_keep_alive(api):
    """The body of a request refused before its handler (unknown route or
    version) must not be read as the next request on the same connection."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        c.request("POST", f"{V}/no/such/route", body=b"GET /_ping HTTP/1.1\r\n\r\n")
        r = c.getresponse()
        assert r.status == 404
        r.read()
        c.request("GET", f"{V}/version")
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["ApiVersion"] == "1.41"
    finally:
        c.close()


# -- restart policies and AutoRemove ---------------------------------------------------

def _host_pid(api, cid):
    return inspect(api, cid, V)["State"]["Pid"]


def test_restart_always_after_kill_9_and_daemon_restart(new_daemon, busybox_tar):
    d = new_daemon().start()
    api = d.api
    r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar)
    assert r.status == 200
    cid = create(api, ["sleep", "300"], name="always",
                 HostConfig={"RestartPolicy": {"Name": "always"}})
    unless = create(api, ["sleep", "300"], name="unless",
                    HostConfig={"RestartPolicy": {"Name": "unless-stopped"}})
    for c in (cid, unless):
        assert api.post(f"{V}/containers/{c}/start").status == 204
    pid = _host_pid(api, cid)
    os.kill(pid, signal.SIGKILL)  # from the host, as an OOM killer or an operator would
    wait_for(lambda: inspect(api, cid, V)["State"]["Running"] and _host_pid(api, cid) not in (0, pid),
             what="restart after kill -9")
    assert inspect(api, cid, V)["RestartCount"] == 1
    # a user's stop holds: unless-stopped stays down across a daemon restart, always comes back
    assert api.post(f"{V}/containers/{unless}/stop?t=1").status == 204
    d.stop()
    d.start()
    wait_for(lambda: inspect(d.api, cid, V)["State"]["Running"], what="always restarted with the daemon")
    time.sleep(0.5)
    assert inspect(d.api, unless, V)["State"]["Running"] is False
    # a stop cancels the policy
    assert d.api.post(f"{V}/containers/{cid}/stop?t=1").status == 204
    time.sleep(0.5)
    assert inspect(d.api, cid, V)["State"]["Running"] is False


def test_on_failure_stops_after_its_count_with_back_off(api, busybox):
    cid = create(api, ["sh", "-c", "exit 9"], HostConfig={"RestartPolicy": {"Name": "on-failure",
                                                                            "MaximumRetryCount": 2}})
    try:
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        wait_for(lambda: inspect(api, cid, V)["RestartCount"] == 2 and
                 not inspect(api, cid, V)["State"]["Running"] and
                 inspect(api, cid, V)["State"]["Status"] == "exited", timeout=30, what="two retries")
        time.sleep(1)
        d = inspect(api, cid, V)
        assert d["RestartCount"] == 2 and d["State"]["ExitCode"] == 9
        # a success is not a failure: no restart
        ok = create(api, ["true"], HostConfig={"RestartPolicy": {"Name": "on-failure"}})
        assert api.post(f"{V}/containers/{ok}/start").status == 204
        api.post(f"{V}/containers/{ok}/wait")
        time.sleep(0.5)
        assert inspect(api, ok, V)["RestartCount"] == 0
        remove(api, ok)
    finally:
        remove(api, cid)


# -- volumes, prune, disk usage ---------------------------------------------------------

def test_named_volumes(api, busybox):
    r = api.post(f"{V}/volumes/create", {"Name": "data1", "Labels": {"k": "v"}})
    assert r.status == 201 and r.json()["Name"] == "data1" and r.json()["Labels"] == {"k": "v"}
    assert api.post(f"{V}/volumes/create", {"Name": "bad/name"}).status == 400
    cid, code = run(api, ["sh", "-c", "echo kept > /data/f"], HostConfig={"Binds": ["data1:/data"]})
    assert code == 0
    mount = inspect(api, cid, V)["Mounts"][0]
    assert mount["Type"] == "volume" and mount["Name"] == "data1"
    r = api.delete(f"{V}/volumes/data1")
    assert r.status == 409 and "in use" in r.json()["message"]
    remove(api, cid)  # v=1 keeps named volumes
    cid2, _ = run(api, ["cat", "/data/f"], HostConfig={"Mounts": [{"Type": "volume", "Source": "data1",
                                                                   "Target": "/data"}]})
    assert b"kept" in api.get(f"{V}/containers/{cid2}/logs?stdout=1").body
    remove(api, cid2)
    vols = api.get(f"{V}/volumes").json()["Volumes"]
    assert "data1" in [v["Name"] for v in vols]
    v = api.get(f"{V}/volumes/data1").json()
    assert v["Driver"] == "local" and os.path.isdir(v["Mountpoint"])
    assert api.get(f"{V}/volumes?filters=" + q({"label": ["k=v"]})).json()["Volumes"][0]["Name"] == "data1"
    assert api.delete(f"{V}/volumes/data1").status == 204
    assert api.get(f"{V}/volumes/data1").status == 404
    assert api.delete(f"{V}/volumes/data1").status == 404
    # a container that names a volume uses it before its first start, too
    api.post(f"{V}/volumes/create", {"Name": "data2"})
    waiting = create(api, ["true"], HostConfig={"Binds": ["data2:/x"]})
    assert api.delete(f"{V}/volumes/data2").status == 409
    remove(api, waiting)
    assert api.delete(f"{V}/volumes/data2").status == 204


def test_prunes_and_disk_usage(api, busybox):
    keep = create(api, ["sleep", "30"], name="prune-keep")
    assert api.post(f"{V}/containers/{keep}/start").status == 204
    gone, _ = run(api, ["true"])
    api.post(f"{V}/volumes/create", {"Name": "loose"})
    try:
        df = api.get(f"{V}/system/df").json()
        assert set(df) >= {"LayersSize", "Images", "Containers", "Volumes", "BuildCache"}
        assert any(c["Id"] == keep for c in df["Containers"])
        assert any(v["Name"] == "loose" and v["UsageData"]["RefCount"] == 0 for v in df["Volumes"])
        r = api.post(f"{V}/containers/prune")
        assert r.status == 200
        assert gone in r.json()["ContainersDeleted"] and keep not in r.json()["ContainersDeleted"]
        assert api.get(f"{V}/containers/{keep}/json").status == 200
        r = api.post(f"{V}/volumes/prune")
        assert "loose" in r.json()["VolumesDeleted"]
        # a dangling image goes, a tagged one stays
        c2, _ = run(api, ["touch", "/y"])
        img = api.post(f"{V}/commit?container={c2}").json()["Id"]
        remove(api, c2)
        r = api.post(f"{V}/images/prune")
        assert r.status == 200 and {"Deleted": img} in r.json()["ImagesDeleted"]
        assert api.get(f"{V}/images/busybox/json").status == 200
    finally:
        remove(api, keep)


# -- images -------------------------------------------------------------------------------

def test_image_shapes_and_delete_rules(api, busybox):
    img = api.get(f"{V}/images/busybox/json").json()
    assert img["Id"] == "sha256:" + busybox and "busybox:latest" in img["RepoTags"]
    assert img["RootFS"]["Type"] == "layers" and img["RootFS"]["Layers"][0].startswith("sha256:")
    assert isinstance(img["Size"], int) and img["Os"] == "linux"
    assert api.get(f"{V}/images/sha256:{busybox}/json").status == 200
    rows = api.get(f"{V}/images/json").json()
    row = [r for r in rows if r["Id"] == "sha256:" + busybox][0]
    assert "busybox:latest" in row["RepoTags"]
    assert api.post(f"{V}/images/busybox/tag?repo=docker.io/library/extra&tag=t1").status == 201
    # on 1.41 a tag moves without force=1 (v1.3 still asks for it)
    c0, _ = run(api, ["true"])
    other = api.post(f"{V}/commit?container={c0}").json()["Id"]
    assert api.post(f"/images/{other}/tag?repo=extra&tag=t1").status == 409
    assert api.post(f"{V}/images/{other}/tag?repo=extra&tag=t1").status == 201
    assert api.get(f"{V}/images/extra:t1/json").json()["Id"] == other
    assert api.post(f"{V}/images/busybox/tag?repo=extra&tag=t1").status == 201
    remove(api, c0)
    api.delete(f"{V}/images/{other}")
    assert "extra:t1" in api.get(f"{V}/images/busybox/json").json()["RepoTags"]  # familiar names
    # in use by a running container: untag only with force, never delete
    cid = create(api, ["sleep", "30"])
    assert api.post(f"{V}/containers/{cid}/start").status == 204
    try:
        r = api.delete(f"{V}/images/{busybox}")
        assert r.status == 409, r
        r = api.delete(f"{V}/images/extra:t1")
        assert r.status == 200 and r.json() == [{"Untagged": "extra:t1"}]
    finally:
        remove(api, cid)
    rows = [r for r in api.get(f"{V}/images/json?filters=" + q({"reference": ["busy*"]})).json()]
    assert [r["RepoTags"] for r in rows] == [["busybox:latest"]]
    assert api.get(f"{V}/images/json?filters=" + q({"dangling": ["maybe"]})).status == 400


def test_commit_and_import_with_changes(api, busybox, busybox_tar):
    cid, _ = run(api, ["sh", "-c", "echo hi > /greeting"])
    try:
        q = "&".join(["container=" + cid, "repo=changed", "tag=v1", "comment=why",
                      "changes=" + "CMD%20%5B%22cat%22%2C%22%2Fgreeting%22%5D",
                      "changes=ENV%20MODE%3Dtest", "changes=LABEL%20team%3Dcore", "changes=WORKDIR%20%2Ftmp"])
        r = api.post(f"{V}/commit?{q}")
        assert r.status == 201 and r.json()["Id"].startswith("sha256:")
        img = api.get(f"{V}/images/changed:v1/json").json()
        assert img["Config"]["Cmd"] == ["cat", "/greeting"] and "MODE=test" in img["Config"]["Env"]
        assert img["Config"]["Labels"] == {"team": "core"} and img["Config"]["WorkingDir"] == "/tmp"
        assert img["Comment"] == "why"
        c2, code = run(api, None, Image="changed:v1")
        assert code == 0 and b"hi" in api.get(f"{V}/containers/{c2}/logs?stdout=1").body
        remove(api, c2)
        r = api.post(f"{V}/commit?container={cid}&changes=FROM%20x")
        assert r.status == 400 and "not a valid change" in r.json()["message"]
        r = api.post(f"{V}/images/create?fromSrc=-&repo=imported&tag=c&message=imp&changes=CMD%20echo%20x",
                     busybox_tar)
        assert r.status == 200 and b"sha256:" in r.body
        img = api.get(f"{V}/images/imported:c/json").json()
        assert img["Config"]["Cmd"] == ["/bin/sh", "-c", "echo x"] and img["Comment"] == "imp"
        api.delete(f"{V}/images/imported:c")
        api.delete(f"{V}/images/changed:v1")
    finally:
        remove(api, cid)


def test_delete_force_of_a_running_container(api, busybox):
    cid = create(api, ["sleep", "60"])
    assert api.post(f"{V}/containers/{cid}/start").status == 204
    r = api.delete(f"{V}/containers/{cid}")
    assert r.status == 409 and "stop it first" in r.json()["message"]
    assert api.delete(f"{V}/containers/{cid}?force=1").status == 204
    assert api.get(f"{V}/containers/{cid}/json").status == 404


# -- health checks ----------------------------------------------------------------------

def test_health_check_runs_through_exec(api, busybox):
    t0 = time.time()
    ms = 1_000_000
    cid = create(api, ["sleep", "60"], Healthcheck={"Test": ["CMD-SHELL", "test -f /tmp/ok && echo fine"],
                                                    "Interval": 200 * ms, "Timeout": 2000 * ms, "Retries": 2})
    try:
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        assert inspect(api, cid, V)["State"]["Health"]["Status"] == "starting"
        wait_for(lambda: inspect(api, cid, V)["State"]["Health"]["Status"] == "unhealthy", what="unhealthy")
        h = inspect(api, cid, V)["State"]["Health"]
        assert h["FailingStreak"] >= 2 and h["Log"][-1]["ExitCode"] == 1
        row = [r for r in api.get(f"{V}/containers/json").json() if r["Id"] == cid][0]
        assert row["Status"].endswith("(unhealthy)")
        r = api.post(f"{V}/containers/{cid}/exec", {"Cmd": ["touch", "/tmp/ok"]})
        assert r.status == 201
        assert api.post(f"{V}/exec/{r.json()['Id']}/start", {"Detach": True}).status in (200, 204)
        wait_for(lambda: inspect(api, cid, V)["State"]["Health"]["Status"] == "healthy", what="healthy")
        h = inspect(api, cid, V)["State"]["Health"]
        assert h["FailingStreak"] == 0 and h["Log"][-1]["Output"] == "fine\n" and len(h["Log"]) <= 5
        evs = _events(api, f"since={t0}&until={time.time() + 0.1}&filters=" +
                      q({"container": [cid], "event": ["health_status"]}))
        assert [e["Action"] for e in evs][:2] == ["health_status: unhealthy", "health_status: healthy"]
        assert [r["Id"] for r in api.get(f"{V}/containers/json?filters=" + q({"health": ["healthy"]})).json()] == [cid]
    finally:
        remove(api, cid)


def test_reused_list_replies_see_every_change_at_once(api, busybox):
    """The list reply is memoized (api.memo) for identical requests; any change
    of a record must show in the very next request, on both surfaces."""
    for prefix in (V, ""):
        before = api.get(f"{prefix}/containers/json?all=1").body
        assert api.get(f"{prefix}/containers/json?all=1").body == before  # served again
        cid = create(api, ["true"], name="memo-a")
        ids = [r["Id"] for r in api.get(f"{prefix}/containers/json?all=1").json()]
        assert cid in ids or cid[:12] in ids
        api.post(f"{V}/containers/{cid}/rename?name=memo-b")
        if prefix == V:
            rows = api.get(f"{prefix}/containers/json?all=1").json()
            assert ["/memo-b"] in [r["Names"] for r in rows]
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        api.post(f"{V}/containers/{cid}/wait")
        rows = api.get(f"{prefix}/containers/json?all=1").json()
        row = [r for r in rows if cid.startswith(r["Id"])][0]
        assert row["Status"].startswith("Exit")
        remove(api, cid)
        ids = [r["Id"] for r in api.get(f"{prefix}/containers/json?all=1").json()]
        assert cid not in ids and cid[:12] not in ids


def test_auto_remove_container_that_cannot_start_is_removed(api, busybox):
    """As dockerd: `docker run --rm` of a missing command must not leave the
    client waiting for condition=removed forever."""
    cid = create(api, ["no-such-command"], HostConfig={"AutoRemove": True})
    s, head = _request_head(api, "POST", f"{V}/containers/{cid}/wait?condition=removed")
    assert head.startswith(b"HTTP/1.1 200")
    r = api.post(f"{V}/containers/{cid}/start")
    assert r.status >= 400 and "executable file not found" in r.json()["message"]
    body = _read_rest(s, head)
    assert b'"StatusCode"' in body and b"executable file not found" in body
    assert api.get(f"{V}/containers/{cid}/json").status == 404


def test_detach_keys_end_the_session_with_attach_and_detach_events(api, busybox):
    t0 = time.time()
    cid = create(api, ["cat"], Tty=True, OpenStdin=True, AttachStdin=True, AttachStdout=True)
    try:
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        s, head = _request_head(api, "POST", f"{V}/containers/{cid}/attach?stream=1&stdin=1&stdout=1",
                                b"Connection: Upgrade\r\nUpgrade: tcp\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        s.sendall(b"hi\n")
        time.sleep(0.3)
        s.sendall(b"\x10\x11")
        _read_rest(s, b"", timeout=10)  # the daemon ends the session
        assert inspect(api, cid, V)["State"]["Running"]  # the container goes on
        evs = _events(api, f"since={t0}&until={time.time() + 0.05}&filters=" + q({"container": [cid]}))
        actions = [e["Action"] for e in evs]
        assert "attach" in actions and "detach" in actions and actions.index("attach") < actions.index("detach")
    finally:
        remove(api, cid)
