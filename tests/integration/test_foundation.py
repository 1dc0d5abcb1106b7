"""The daemon, its HTTP core and its command line, over TCP and a unix socket."""

import json
import os
import socket
import subprocess
import time

import pytest

from tests.pydtest import daemon_cmd, free_port


@pytest.mark.parametrize("prefix", ["", "/v1.3", "/v1.0"])
def test_version_fields(api, prefix):
    r = api.get(prefix + "/version")
    assert r.status == 200
    assert r.headers["Content-Type"] == "application/json"
    v = r.json()
    # Unversioned paths also say which API versions the daemon speaks, so that
    # negotiating clients (the docker SDK) can choose (docs/api-choices.md).
    extra = {"ApiVersion", "MinAPIVersion"} if not prefix else set()
    assert set(v) == {"Version", "GitCommit", "GoVersion"} | extra
    assert v["GoVersion"].startswith("cpython3.")
    assert v["Version"]


def test_info_fields_from_reality(daemon, api):
    info = api.get("/info").json()
    assert set(info) >= {"Containers", "Images", "Debug", "NFd", "NGoroutines", "MemoryLimit",
                         "SwapLimit", "EventsListeners", "LXCVersion", "KernelVersion"}
    assert info["KernelVersion"] == os.uname().release
    assert info["Debug"] is True  # tests start the daemon with -D
    real_fds = len(os.listdir(f"/proc/{daemon.server_pid()}/fd"))
    assert abs(info["NFd"] - real_fds) <= 8
    assert info["NGoroutines"] >= 2
    assert info["MemoryLimit"] is os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") or \
        os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def test_ping_get_and_head(api):
    r = api.get("/_ping")
    assert (r.status, r.body) == (200, b"OK")
    r = api.request("HEAD", "/_ping")
    assert r.status == 200 and r.body == b""
    assert r.headers["API-Version"] == "1.41"  # the newest surface served (v1.3 stays at /v1.3)


def test_unix_socket_serves_the_same(daemon):
    assert daemon.unix_api.get("/_ping").body == b"OK"
    assert set(daemon.unix_api.get("/v1.3/info").json()) >= {"Containers", "KernelVersion"}


def test_the_unix_socket_is_0660_and_its_group_pyd_or_docker(daemon):
    import grp
    import stat as st
    info = os.stat(daemon.sock)
    assert st.S_ISSOCK(info.st_mode) and st.S_IMODE(info.st_mode) == 0o660
    assert info.st_uid == 0
    groups = {}
    for name in ("pyd", "docker"):
        try:
            groups[name] = grp.getgrnam(name).gr_gid
        except KeyError:
            pass
    want = groups.get("pyd", groups.get("docker", 0))
    assert info.st_gid == want, (info.st_gid, groups)


def test_the_data_root_is_0700_and_a_loose_one_is_tightened(daemon, new_daemon, tmp_path):
    import stat as st
    assert st.S_IMODE(os.stat(daemon.root).st_mode) == 0o700
    loose = tmp_path / "loose-root"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    d = new_daemon(root=loose).start()
    assert st.S_IMODE(os.stat(loose).st_mode) == 0o700   # nothing under it is reachable then
    d.stop()


def test_curl_over_tcp_and_unix(daemon):
    out = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{daemon.port}/v1.3/version"],
                         capture_output=True, check=True).stdout
    assert set(json.loads(out)) == {"Version", "GitCommit", "GoVersion"}
    out = subprocess.run(["curl", "-sf", "--unix-socket", daemon.sock, "http://x/info"],
                         capture_output=True, check=True).stdout
    assert "KernelVersion" in json.loads(out)


def test_unknown_path_is_404_plain_text(api):
    r = api.get("/no/such/thing")
    assert r.status == 404
    assert r.headers["Content-Type"].startswith("text/plain")
    assert b"not found" in r.body


def test_wrong_method_is_404(api):
    assert api.request("DELETE", "/version").status == 404


def test_unsupported_version_is_400(api):
    r = api.get("/v9.99/version")
    assert r.status == 400
    assert b"too new" in r.body


def test_bad_boolean_is_400(api, busybox):
    r = api.get("/images/json?all=maybe")
    assert r.status == 400
    assert r.headers["Content-Type"].startswith("text/plain")
    assert b"all" in r.body


def test_malformed_request_line_then_still_serving(api):
    out = api.raw(b"GARBAGE\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    assert api.get("/_ping").status == 200


def test_request_line_over_limit_is_414(api):
    out = api.raw(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414")
    assert api.get("/_ping").status == 200


def test_header_over_limit_is_431(api):
    out = api.raw(b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431")
    assert api.get("/_ping").status == 200


def test_too_many_headers_is_431(api):
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    out = api.raw(b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n" + hdrs + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431")


def test_oversized_json_body_is_413(api, busybox):
    body = b'{"Image": "busybox", "Cmd": ["true"], "Pad": "' + b"x" * (2 << 20) + b'"}'
    r = api.post("/containers/create", body, headers={"Content-Type": "application/json"})
    assert r.status == 413
    assert api.get("/_ping").status == 200


def test_bad_content_length_is_400(api):
    out = api.raw(b"POST /containers/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")


def test_keep_alive_serves_several_requests_on_one_connection(daemon):
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    try:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 3)
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            data += s.recv(65536)
        assert data.count(b"HTTP/1.1 200 OK") == 3
    finally:
        s.close()


def test_200_idle_connections_do_not_block_a_new_client(daemon, api):
    idle = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=10))
        # Half of them send half a request and stall.
        for s in idle[:100]:
            s.sendall(b"GET /_ping HTTP/1.1\r\n")
        t0 = time.monotonic()
        r = api.get("/version", timeout=10)
        assert r.status == 200
        assert time.monotonic() - t0 < 5
    finally:
        for s in idle:
            s.close()


def test_cors_headers_and_options(new_daemon):
    d = new_daemon(extra_args=["--api-enable-cors"]).start()
    r = d.api.get("/version")
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, DELETE, PUT, OPTIONS"
    assert "Content-Type" in r.headers["Access-Control-Allow-Headers"]
    assert d.api.request("OPTIONS", "/containers/json").status == 200
    d.stop()


def test_no_cors_without_flag(api):
    r = api.get("/version")
    assert "Access-Control-Allow-Origin" not in r.headers


def test_second_daemon_on_same_root_refuses(daemon, tmp_path):
    argv = daemon_cmd() + ["-H", f"tcp://127.0.0.1:{free_port()}", "-g", daemon.root,
                           "-p", str(tmp_path / "other.pid")]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "already running" in p.stderr


def test_second_daemon_on_same_pidfile_refuses(daemon, tmp_path):
    argv = daemon_cmd() + ["-H", f"tcp://127.0.0.1:{free_port()}", "-g", str(tmp_path / "r"),
                           "-p", daemon.pidfile]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "already running" in p.stderr


def test_sigterm_removes_socket_and_pidfile(new_daemon):
    d = new_daemon().start()
    assert os.path.exists(d.sock) and os.path.exists(d.pidfile)
    with open(d.pidfile) as f:
        assert int(f.read()) == d.proc.pid
    assert d.stop() == 0
    assert not os.path.exists(d.sock)
    assert not os.path.exists(d.pidfile)


def test_sigint_also_stops_cleanly(new_daemon):
    import signal
    d = new_daemon().start()
    assert d.stop(signal.SIGINT) == 0
    assert not os.path.exists(d.sock)


def test_non_loopback_tcp_warns(tmp_path):
    argv = daemon_cmd() + ["-H", f"tcp://0.0.0.0:{free_port()}", "-g", str(tmp_path / "w"),
                           "-p", str(tmp_path / "w.pid")]
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 20
        while "WARNING" not in line and time.monotonic() < deadline:
            line = p.stderr.readline()
            if not line:
                break
        assert "WARNING" in line and "root" in line
    finally:
        p.terminate()
        p.wait(20)


def test_version_flag():
    p = subprocess.run(daemon_cmd() + ["--version"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    assert p.stdout.startswith("pyd version ")


def test_stale_socket_is_replaced(new_daemon, tmp_path):
    d = new_daemon()
    os.makedirs(d.root, exist_ok=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(d.sock)
    s.close()  # a socket file nobody listens on, as a crashed daemon leaves
    d.start()
    assert d.unix_api.get("/_ping").status == 200
