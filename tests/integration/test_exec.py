"""docker exec against the real daemon: create, start (hijacked and
detached), output with and without a tty, framing, exit codes, stdin, user,
working directory, environment, resize, inspect, the 400/404/409 paths, and
that an exec process cannot escape its container: same namespaces, cgroups,
root and capabilities as the container's init, seen from the host and from
inside, and the docker CLI against it."""

import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.parse

import pytest

from tests.pydtest import kill_quiet, nfds, poll, proc_status, require

DOCKER = "/usr/local/bin/docker"
NAMESPACES = ("ipc", "uts", "net", "pid", "mnt", "cgroup")


# -- the surface, a hijacked exec client -------------------------------------

@pytest.fixture(scope="module")
def modern(api):
    """Exec is an API 1.41 endpoint: the daemon must serve that surface."""
    assert api.get("/v1.41/_ping").status == 200
    return True


@pytest.fixture(scope="module")
def prefix(modern):
    return "/v1.41"


@pytest.fixture
def box(api, busybox, prefix):
    """A running container (sleeping init) for the test to exec into."""
    cid = api.create(["sleep", "300"], Env=["FROM_CONTAINER=1", "SHADOWED=container"])
    api.start(cid)
    yield cid
    kill_quiet(api, cid)
    api.delete(f"/containers/{cid}?force=1")


def create_exec(api, prefix, cid, cmd, **body):
    body.setdefault("AttachStdout", True)
    body.setdefault("AttachStderr", True)
    r = api.post(f"{prefix}/containers/{cid}/exec", dict(body, Cmd=cmd))
    assert r.status == 201, r
    eid = r.json()["Id"]
    assert len(eid) == 64 and all(ch in "0123456789abcdef" for ch in eid)
    return eid


class Session:
    """POST /exec/{id}/start on a raw socket, as the docker CLI sends it."""

    def __init__(self, port, prefix, eid, body=None, stdin=b"", timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        data = json.dumps(body or {"Detach": False, "Tty": False}).encode()
        head = (f"POST {prefix}/exec/{eid}/start HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        self.sock.sendall(head + data + stdin)
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, f"no response head: {self.buf!r}"
            self.buf += chunk
        self.head, _, self.buf = self.buf.partition(b"\r\n\r\n")

    @property
    def status(self):
        return int(self.head.split(b" ", 2)[1])

    def send(self, data):
        self.sock.sendall(data)

    def shut_wr(self):
        self.sock.shutdown(socket.SHUT_WR)

    def read_until(self, needle, timeout=15):
        deadline = time.monotonic() + timeout
        while needle not in self.buf and time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            self.buf += chunk
        return self.buf

    def read_all(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"the exec's stream did not end: {self.buf!r}"
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                self.sock.close()
                return self.buf
            self.buf += chunk


def deframe(data):
    """8-byte-header frames -> [(stream, bytes)]; asserts nothing is left over."""
    out = []
    while data:
        assert len(data) >= 8, data
        stream, n = struct.unpack(">BxxxI", data[:8])
        out.append((stream, data[8:8 + n]))
        assert len(data) >= 8 + n, data
        data = data[8 + n:]
    return out


def run_exec(daemon, api, prefix, cid, cmd, stdin=None, **body):
    """Create and start an attached exec; returns (stdout, stderr, inspect)."""
    if stdin is not None:
        body["AttachStdin"] = True
    eid = create_exec(api, prefix, cid, cmd, **body)
    s = Session(daemon.port, prefix, eid, {"Detach": False, "Tty": bool(body.get("Tty"))}, stdin=stdin or b"")
    assert s.status == 101, s.head
    if stdin is not None:
        s.shut_wr()
    raw = s.read_all()
    if not body.get("Tty"):
        frames = deframe(raw)
        out = b"".join(d for st, d in frames if st == 1)
        err = b"".join(d for st, d in frames if st == 2)
    else:
        out, err = raw, b""
    info = api.get(f"{prefix}/exec/{eid}/json")
    assert info.status == 200, info
    return out.decode(), err.decode(), info.json()


def init_pid(api, prefix, cid):
    pid = api.get(f"{prefix}/containers/{cid}/json").json()["State"]["Pid"]
    assert pid > 0
    return pid


def status_fields(text, names=("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")):
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k in names:
            out[k] = v.strip()
    return out


def host_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return f.read()


# -- output, exit codes ------------------------------------------------------

def test_output_and_exit_code(daemon, api, prefix, box):
    out, err, info = run_exec(daemon, api, prefix, box,
                              ["sh", "-c", "echo to-out; echo to-err >&2; exit 7"])
    assert out == "to-out\n" and err == "to-err\n"
    assert info["ExitCode"] == 7 and info["Running"] is False
    assert info["ProcessConfig"] == {"arguments": ["-c", "echo to-out; echo to-err >&2; exit 7"],
                                     "entrypoint": "sh", "privileged": False, "tty": False}


def test_framed_output_and_upgrade_head(daemon, api, prefix, box):
    eid = create_exec(api, prefix, box, ["sh", "-c", "printf a; printf b >&2; printf c"])
    s = Session(daemon.port, prefix, eid)
    assert s.status == 101
    head = s.head.decode().lower()
    assert "content-type: application/vnd.docker.raw-stream" in head
    assert "connection: upgrade" in head and "upgrade: tcp" in head
    frames = deframe(s.read_all())
    assert {st for st, _ in frames} <= {1, 2}
    assert b"".join(d for st, d in frames if st == 1) == b"ac"
    assert b"".join(d for st, d in frames if st == 2) == b"b"


def test_only_the_asked_streams_are_sent(daemon, api, prefix, box):
    out, err, _ = run_exec(daemon, api, prefix, box, ["sh", "-c", "echo o; echo e >&2"],
                           AttachStderr=False)
    assert out == "o\n" and err == ""


def test_tty(daemon, api, prefix, box):
    out, _, info = run_exec(daemon, api, prefix, box,
                            ["sh", "-c", "tty; echo $TERM; echo err >&2; exit 3"], Tty=True)
    lines = out.split("\r\n")  # a tty turns \n into \r\n, and nothing is framed
    assert lines[0].startswith("/dev/pts/"), out
    assert lines[1] == "xterm" and lines[2] == "err", out
    assert info["ExitCode"] == 3 and info["ProcessConfig"]["tty"] is True


def test_tty_resize(daemon, api, prefix, box):
    eid = create_exec(api, prefix, box, ["sh", "-c", "read line; stty size"], Tty=True, AttachStdin=True)
    s = Session(daemon.port, prefix, eid, {"Detach": False, "Tty": True})
    poll(lambda: api.get(f"{prefix}/exec/{eid}/json").json()["Running"])
    r = api.post(f"{prefix}/exec/{eid}/resize?h=33&w=101")
    assert r.status == 200, r
    s.send(b"go\r")
    assert b"33 101" in s.read_all()
    assert api.post(f"{prefix}/exec/{eid}/resize?h=x&w=1").status == 400


def test_stdin_piped(daemon, api, prefix, box):
    data = b"".join(b"line %d\n" % i for i in range(2000))
    out, _, info = run_exec(daemon, api, prefix, box, ["sh", "-c", "cat; echo done"], stdin=data)
    assert out.encode() == data + b"done\n"
    assert info["ExitCode"] == 0 and info["OpenStdin"] is True


def test_not_found_and_not_executable(daemon, api, prefix, box):
    out, _, info = run_exec(daemon, api, prefix, box, ["no-such-command"])
    assert "executable file not found" in out and info["ExitCode"] == 127
    out, _, info = run_exec(daemon, api, prefix, box, ["/etc/passwd"])
    assert "permission denied" in out and info["ExitCode"] == 126


# -- user, working directory, environment ------------------------------------

def test_user(daemon, api, prefix, box):
    out, _, info = run_exec(daemon, api, prefix, box, ["sh", "-c", "id; echo $HOME"], User="user")
    assert out == "uid=1000(user) gid=1000(user) groups=50(staff)\n/home/user\n", out
    assert info["ProcessConfig"]["user"] == "user"
    out, _, _ = run_exec(daemon, api, prefix, box, ["id"], User="1234:50")
    assert out == "uid=1234 gid=50(staff)\n", out
    out, _, info = run_exec(daemon, api, prefix, box, ["id"], User="nosuchuser")
    assert "unable to find user nosuchuser" in out and info["ExitCode"] == 126


def test_non_root_user_has_no_capabilities(daemon, api, prefix, box):
    out, _, _ = run_exec(daemon, api, prefix, box, ["cat", "/proc/self/status"], User="user")
    f = status_fields(out)
    assert f["CapEff"] == f["CapPrm"] == "0000000000000000"
    assert f["CapBnd"] == status_fields(host_status(init_pid(api, prefix, box)))["CapBnd"]


def test_workdir(daemon, api, prefix, box):
    out, _, _ = run_exec(daemon, api, prefix, box, ["pwd"], WorkingDir="/tmp")
    assert out == "/tmp\n"
    out, _, _ = run_exec(daemon, api, prefix, box, ["pwd"])
    assert out == "/\n"
    out, _, info = run_exec(daemon, api, prefix, box, ["pwd"], WorkingDir="/no/such/dir")
    assert "chdir: /no/such/dir: no such file or directory" in out and info["ExitCode"] == 126
    # not created by the failed exec (unlike a container's WorkingDir)
    out, _, _ = run_exec(daemon, api, prefix, box, ["sh", "-c", "test -e /no && echo made || echo absent"])
    assert out == "absent\n"


def test_workdir_symlink_stays_inside(daemon, api, prefix, box):
    run_exec(daemon, api, prefix, box, ["ln", "-s", "../../../../..", "/tmp/up"])
    out, _, _ = run_exec(daemon, api, prefix, box, ["sh", "-c", "pwd -P; ls /"], WorkingDir="/tmp/up")
    listing = out.splitlines()
    assert listing[0] == "/" and "etc" in listing
    assert "work" not in listing  # the container's /, not the host's (which has /work)


def test_env(daemon, api, prefix, box):
    out, _, _ = run_exec(daemon, api, prefix, box, ["env"], Env=["NEW=1", "SHADOWED=exec"])
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["NEW"] == "1" and env["SHADOWED"] == "exec" and env["FROM_CONTAINER"] == "1"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOSTNAME"] == box[:12] and env["HOME"] == "/root"
    assert "TERM" not in env


# -- detached, inspect -------------------------------------------------------

def test_detached_and_inspect(daemon, api, prefix, box):
    eid = create_exec(api, prefix, box, ["sh", "-c", "echo lost; sleep 1; touch /tmp/detached-done; exit 4"],
                      WorkingDir="/tmp", Env=["A=b"], DetachKeys="ctrl-x,x")
    before = api.get(f"{prefix}/exec/{eid}/json").json()
    assert before == {"CanRemove": False, "ContainerID": box, "DetachKeys": "ctrl-x,x", "ExitCode": None,
                      "ID": eid, "OpenStderr": True, "OpenStdin": False, "OpenStdout": True,
                      "ProcessConfig": {"arguments": ["-c", "echo lost; sleep 1; touch /tmp/detached-done; exit 4"],
                                        "entrypoint": "sh", "privileged": False, "tty": False},
                      "Running": False, "Pid": 0}
    r = api.post(f"{prefix}/exec/{eid}/start", {"Detach": True, "Tty": False})
    assert r.status == 200 and r.body == b"", r
    during = api.get(f"{prefix}/exec/{eid}/json").json()
    assert during["Running"] is True and during["Pid"] > 0 and during["ExitCode"] is None
    assert os.path.exists(f"/proc/{during['Pid']}")
    done = poll(lambda: (lambda j: j if not j["Running"] else None)(api.get(f"{prefix}/exec/{eid}/json").json()))
    assert done["ExitCode"] == 4
    out, _, _ = run_exec(daemon, api, prefix, box, ["ls", "/tmp/detached-done"])
    assert out == "/tmp/detached-done\n"


def test_exec_sees_the_container(daemon, api, prefix, box):
    out, _, _ = run_exec(daemon, api, prefix, box, ["ps", "-o", "pid,comm"])
    rows = [line.split() for line in out.splitlines()[1:]]
    assert ["1", "sleep"] in rows  # the container's init is pid 1 of the same pid namespace
    out, _, _ = run_exec(daemon, api, prefix, box, ["hostname"])
    assert out == box[:12] + "\n"


# -- refusals ----------------------------------------------------------------

def test_not_found(api, prefix, box):
    missing = "0" * 64
    assert api.post(f"{prefix}/exec/{missing}/start", {"Detach": True}).status == 404
    assert api.get(f"{prefix}/exec/{missing}/json").status == 404
    assert api.post(f"{prefix}/exec/{missing}/resize?h=1&w=1").status == 404
    assert api.post(f"{prefix}/containers/nosuchcontainer/exec", {"Cmd": ["true"]}).status == 404


def test_bad_create_bodies(api, prefix, box):
    for body in ({}, {"Cmd": []}, {"Cmd": "true"}, {"Cmd": [1]}, {"Cmd": ["true"], "Env": "A=b"},
                 {"Cmd": ["true"], "WorkingDir": "relative"}, {"Cmd": ["true"], "Tty": "yes"},
                 {"Cmd": ["true"], "User": 0}, {"Cmd": ["a\0b"]}):
        r = api.post(f"{prefix}/containers/{box}/exec", body)
        assert r.status == 400, (body, r)
    r = api.post(f"{prefix}/containers/{box}/exec", b"[1]", headers={"Content-Type": "application/json"})
    assert r.status == 400, r


def test_second_start_conflicts(daemon, api, prefix, box):
    eid = create_exec(api, prefix, box, ["sleep", "2"])
    assert api.post(f"{prefix}/exec/{eid}/start", {"Detach": True}).status == 200
    r = api.post(f"{prefix}/exec/{eid}/start", {"Detach": True})
    assert r.status == 409 and "already running" in r.text, r
    poll(lambda: not api.get(f"{prefix}/exec/{eid}/json").json()["Running"])
    s = Session(daemon.port, prefix, eid)  # refused before any hijack
    assert s.status == 409 and b"already run" in s.read_until(b"already run")


def test_stopped_container_refused(api, prefix, busybox):
    cid = api.create(["true"])
    r = api.post(f"{prefix}/containers/{cid}/exec", {"Cmd": ["true"]})
    assert r.status == 409 and f"Container {cid} is not running" in r.text, r
    api.start(cid)
    api.wait(cid)
    r = api.post(f"{prefix}/containers/{cid}/exec", {"Cmd": ["true"]})
    assert r.status == 409 and "is not running" in r.text, r


def test_exec_of_a_container_stopped_since(api, prefix, busybox):
    cid = api.create(["sleep", "300"])
    api.start(cid)
    eid = create_exec(api, prefix, cid, ["true"])
    running = create_exec(api, prefix, cid, ["sleep", "300"])
    assert api.post(f"{prefix}/exec/{running}/start", {"Detach": True}).status == 200
    assert api.post(f"/containers/{cid}/kill").status == 204
    api.wait(cid)
    r = api.post(f"{prefix}/exec/{eid}/start", {"Detach": True})
    assert r.status == 409 and "is not running" in r.text, r
    # the kernel ends every process of the pid namespace with its init
    info = poll(lambda: (lambda j: j if not j["Running"] else None)(api.get(f"{prefix}/exec/{running}/json").json()))
    assert info["ExitCode"] == 137
    # Records stay for inspection until the container is gone; the next
    # exec created drops those of removed containers.
    assert api.get(f"{prefix}/exec/{running}/json").status == 200
    assert api.delete(f"/containers/{cid}").status == 204
    other = api.create(["sleep", "300"])
    api.start(other)
    try:
        create_exec(api, prefix, other, ["true"])
        assert api.get(f"{prefix}/exec/{running}/json").status == 404
    finally:
        kill_quiet(api, other)


def test_privileged_exec_needs_a_privileged_container(api, prefix, box):
    r = api.post(f"{prefix}/containers/{box}/exec", {"Cmd": ["true"], "Privileged": True})
    assert r.status == 409 and "the container itself is not privileged" in r.text, r


def test_privileged_exec_in_a_privileged_container(new_daemon, busybox_tar):
    d = new_daemon(extra_args=["--allow-privileged"])
    d.start()
    api, prefix = d.api, "/v1.41"
    assert api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                    headers={"Content-Type": "application/x-tar"}).status == 200
    r = api.post(f"{prefix}/containers/create", {"Image": "busybox", "Cmd": ["sleep", "300"],
                                                 "HostConfig": {"Privileged": True}})
    assert r.status == 201, r
    cid = r.json()["Id"]
    assert api.post(f"{prefix}/containers/{cid}/start").status == 204
    init = status_fields(host_status(init_pid(api, prefix, cid)))["CapBnd"]
    everything = status_fields(host_status(d.server_pid()))["CapBnd"]  # all the daemon has to give
    try:
        for privileged, caps in ((True, everything), (False, init)):
            out, _, info = run_exec(d, api, prefix, cid, ["cat", "/proc/self/status"], Privileged=privileged)
            assert info["ExitCode"] == 0 and info["ProcessConfig"]["privileged"] is privileged
            f = status_fields(out)
            assert f["CapEff"] == f["CapPrm"] == f["CapBnd"] == caps, (privileged, f)
    finally:
        kill_quiet(api, cid)


def test_exec_is_not_on_the_v1_3_surface(api, box):
    assert api.post(f"/v1.3/containers/{box}/exec", {"Cmd": ["true"]}).status == 404
    eid = create_exec(api, "/v1.41", box, ["true"])
    assert api.get(f"/v1.3/exec/{eid}/json").status == 404
    assert api.post(f"/v1.3/exec/{eid}/start", {"Detach": True}).status == 404


def test_events(daemon, api, prefix, box):
    t0 = time.time() - 1
    _, _, info = run_exec(daemon, api, prefix, box, ["sh", "-c", "exit 3"])
    eid = info["ID"]
    q = urllib.parse.quote(json.dumps({"container": [box]}))
    r = api.get(f"{prefix}/events?since={t0:.3f}&until={time.time() + 1:.3f}&filters={q}")
    assert r.status == 200, r
    evs = [json.loads(line) for line in r.body.splitlines() if line.strip()]
    mine = [e for e in evs if e["Actor"]["Attributes"].get("execID") == eid]
    assert [e["Action"] for e in mine] == ["exec_create: sh -c exit 3", "exec_start: sh -c exit 3", "exec_die"]
    assert all(e["Type"] == "container" and e["Actor"]["ID"] == box for e in mine)
    assert mine[2]["Actor"]["Attributes"]["exitCode"] == "3"


# -- cannot escape -----------------------------------------------------------

def test_same_namespaces_cgroups_root_and_capabilities(daemon, api, prefix, box):
    init = init_pid(api, prefix, box)
    eid = create_exec(api, prefix, box, ["sleep", "300"])
    assert api.post(f"{prefix}/exec/{eid}/start", {"Detach": True}).status == 200
    pid = api.get(f"{prefix}/exec/{eid}/json").json()["Pid"]
    try:
        # From the host.
        for ns in NAMESPACES:
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
        assert os.readlink(f"/proc/{init}/ns/pid") != os.readlink("/proc/self/ns/pid")
        with open(f"/proc/{pid}/cgroup") as a, open(f"/proc/{init}/cgroup") as b:
            mine, theirs = a.read(), b.read()
        assert mine == theirs and box in mine
        s_exec, s_init = status_fields(host_status(pid)), status_fields(host_status(init))
        assert s_exec == s_init, (s_exec, s_init)
        assert s_exec["CapBnd"] != status_fields(host_status(os.getpid()))["CapBnd"]  # really reduced
        r_exec, r_init = os.stat(f"/proc/{pid}/root/"), os.stat(f"/proc/{init}/root/")
        assert (r_exec.st_dev, r_exec.st_ino) == (r_init.st_dev, r_init.st_ino)
        nspid = [line.split()[1:] for line in host_status(pid).splitlines() if line.startswith("NSpid:")][0]
        assert len(nspid) == 2 and nspid[0] == str(pid) and int(nspid[1]) > 1
        # The daemon is its parent (CLONE_PARENT), not a leftover intermediate.
        ppid = [line.split()[1] for line in host_status(pid).splitlines() if line.startswith("PPid:")][0]
        assert int(ppid) == daemon.server_pid()
    finally:
        os.kill(pid, 9)
    # From inside.
    out, _, _ = run_exec(daemon, api, prefix, box,
                         ["sh", "-c", "cat /proc/self/status; echo ---; cat /proc/self/cgroup; echo ---; "
                                      "for n in " + " ".join(NAMESPACES) + "; do readlink /proc/self/ns/$n; done"])
    status, cgroup, links = out.split("---\n")
    assert status_fields(status) == status_fields(host_status(init))
    with open(f"/proc/{init}/cgroup") as f:
        assert cgroup == f.read()
    assert links.split() == [os.readlink(f"/proc/{init}/ns/{ns}") for ns in NAMESPACES]


def test_no_fds_leak_into_the_exec(daemon, api, prefix, box):
    out, _, _ = run_exec(daemon, api, prefix, box, ["ls", "/proc/self/fd"])
    assert sorted(out.split()) == ["0", "1", "2", "3"]  # 3: ls's own directory


# -- clients that are slow or leave; what the daemon keeps ---------------------

def test_slow_reader_gets_everything(daemon, api, prefix, box):
    """An exec's one reader holds its output back (as with Docker) rather than
    being cut off as a slow attach client is."""
    size = 8 << 20
    eid = create_exec(api, prefix, box, ["sh", "-c", f"head -c {size} /dev/zero; echo end"], AttachStderr=False)
    s = Session(daemon.port, prefix, eid)
    time.sleep(1)  # the process has long filled every buffer by now
    assert api.get(f"{prefix}/exec/{eid}/json").json()["Running"] is True
    out = b"".join(d for _, d in deframe(s.read_all()))
    assert len(out) == size + 4 and out.endswith(b"\0end\n")


def test_client_leaving_does_not_stop_the_exec(daemon, api, prefix, box):
    eid = create_exec(api, prefix, box, ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done; "
                                                     "touch /tmp/finished"])
    s = Session(daemon.port, prefix, eid)
    s.read_until(b"line")
    s.sock.close()
    info = poll(lambda: (lambda j: j if not j["Running"] else None)(api.get(f"{prefix}/exec/{eid}/json").json()))
    assert info["ExitCode"] == 0
    out, _, _ = run_exec(daemon, api, prefix, box, ["ls", "/tmp/finished"])
    assert out == "/tmp/finished\n"


def test_daemon_keeps_no_fds_or_threads(daemon, api, prefix, box):
    pid = daemon.server_pid()
    run_exec(daemon, api, prefix, box, ["true"])  # warm up lazily made things
    base_fds, base_threads = nfds(pid), proc_status(pid, "Threads")
    for i in range(10):
        run_exec(daemon, api, prefix, box, ["echo", str(i)])
        run_exec(daemon, api, prefix, box, ["cat"], stdin=b"x")
        run_exec(daemon, api, prefix, box, ["tty"], Tty=True)
        run_exec(daemon, api, prefix, box, ["no-such-command"])
    settled = poll(lambda: nfds(pid) <= base_fds + 2 and proc_status(pid, "Threads") <= base_threads + 1)
    assert settled, (nfds(pid), base_fds, proc_status(pid, "Threads"), base_threads)
    children = []  # a thread's children are listed under that thread
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            pass
    assert children and not [c for c in children if _is_zombie(c)], children


def _is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return False


# -- the docker CLI ----------------------------------------------------------

@pytest.fixture
def cli(daemon, prefix):
    if not os.path.exists(DOCKER):
        require(False, f"the docker CLI at {DOCKER}")

    def run(*args, input=None):
        return subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{daemon.port}", *args], input=input,
                              capture_output=True, timeout=60, env={"PATH": os.environ.get("PATH", ""),
                                                                    "HOME": "/tmp", "DOCKER_CONFIG": "/tmp/pyd-docker-cfg"})
    return run


def test_docker_cli_exec(cli, box):
    r = cli("exec", box, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert r.returncode == 5 and r.stdout == b"out\n" and r.stderr == b"err\n", r
    r = cli("exec", "-u", "user", "-w", "/tmp", "-e", "X=y", box, "sh", "-c", "id -u; pwd; echo $X")
    assert r.returncode == 0 and r.stdout == b"1000\n/tmp\ny\n", r
    r = cli("exec", "-i", box, "cat", input=b"through stdin\n")
    assert r.returncode == 0 and r.stdout == b"through stdin\n", r
    r = cli("exec", box, "no-such-command")
    assert r.returncode == 127 and b"executable file not found" in r.stdout + r.stderr, r
    r = cli("exec", "-d", box, "sleep", "1")
    assert r.returncode == 0, r


def test_docker_cli_exec_tty(cli, daemon, box):
    if not shutil.which("script"):
        require(False, "script(1) for a terminal")
    cmd = f"{DOCKER} -H tcp://127.0.0.1:{daemon.port} exec -t {box} sh -c 'tty; exit 3'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", ""), "HOME": "/tmp",
                                                      "DOCKER_CONFIG": "/tmp/pyd-docker-cfg"})
    assert b"/dev/pts/" in r.stdout and r.returncode == 3, r
