"""Helpers shared by the tests and the benches: start a real daemon, talk to
it, build the busybox test image from Debian's busybox-static, inspect,
wait, kill, and sample a process's memory.

Tests import it as `tests.pydtest` (pytest puts the checkout on sys.path,
since tests/ is a package); benches run as `python3 -m bench.<name>` from
the checkout and import it the same way. Nothing edits sys.path.
"""

import http.client
import hashlib
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tarfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUSYBOX = "/bin/busybox"


def require(ok, what):
    """Skip a test on a developer's machine that lacks a tool (`what`); in CI
    (CI set, as .ci/run does) a missing tool fails the test instead: a skip
    there would hide a missing feature."""
    if ok:
        return
    import pytest
    if os.environ.get("CI"):
        pytest.fail(f"CI lacks {what}")
    pytest.skip(f"needs {what}")


def require_mark(ok, what):
    """`require` for a whole module (pytestmark): in CI a missing tool fails collection."""
    import pytest
    if not ok and os.environ.get("CI"):
        raise RuntimeError(f"CI lacks {what}")
    return pytest.mark.skipif(not ok, reason=f"needs {what}")


def daemon_cmd():
    cmd = os.environ.get("PYD_CMD")
    return shlex.split(cmd) if cmd else [sys.executable, os.path.join(TOP, "pyd.py")]


def proc_status(pid, field):
    """A number from /proc/<pid>/status, e.g. proc_status(pid, "VmRSS") in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def vm_rss(pid):
    """Resident memory of `pid`, in bytes."""
    return proc_status(pid, "VmRSS") * 1024


def nfds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def poll(fn, timeout=10.0, interval=0.05):
    """Call fn until it returns something truthy or `timeout` seconds pass; return the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def wait_for(pred, timeout=20, what="condition"):
    """Like poll, but a timeout is a test failure."""
    v = poll(pred, timeout)
    if not v:
        raise AssertionError(f"timed out waiting for {what}")
    return v


def inspect(api, cid, prefix=""):
    r = api.get(f"{prefix}/containers/{cid}/json")
    assert r.status == 200, r
    return r.json()


def kill(api, cid):
    """Kill a running container and wait for it; the kill must succeed."""
    r = api.post(f"/containers/{cid}/kill")
    assert r.status == 204, r
    api.wait(cid)


def kill_quiet(api, cid):
    """Kill the container if it is still running (cleanup paths)."""
    if inspect(api, cid)["State"]["Running"]:
        api.post(f"/containers/{cid}/kill")
        api.wait(cid, timeout=30)


# -- the data root, as docs/storage.md describes it ---------------------------

def image_config(root, image_id):
    """An image's stored config (images/sha256/<id>.json), parsed."""
    with open(os.path.join(root, "images", "sha256", image_id + ".json"), "rb") as f:
        return json.loads(f.read())


def layer_path(root, diff_id):
    return os.path.join(root, "layers", "sha256", diff_id.partition(":")[2])


def layer_dir(root, image_id):
    """The directory of the layer an image adds (its last diff id)."""
    return layer_path(root, image_config(root, image_id)["rootfs"]["diff_ids"][-1])


def store_entries(root, kind):
    """Names in images/sha256 or layers/sha256 (kind "images" or "layers")."""
    d = os.path.join(root, kind, "sha256")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


class CountingReader:
    """A file object over an HTTP response: reads at most 1 MiB at a time, counts bytes."""

    def __init__(self, resp):
        self.resp, self.count = resp, 0

    def read(self, n=-1):
        n = 1 << 20 if n is None or n < 0 else min(n, 1 << 20)
        data = self.resp.read(n)
        self.count += len(data)
        return data


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode()

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Api:
    """A tiny HTTP client over TCP or a unix socket; one connection per call."""

    def __init__(self, port=None, unix=None, timeout=60):
        self.port, self.unix, self.timeout = port, unix, timeout

    def conn(self, timeout=None):
        t = timeout or self.timeout
        if self.unix:
            return UnixHTTPConnection(self.unix, timeout=t)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=t)

    def request(self, method, path, body=None, headers=None, timeout=None):
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def raw(self, data, timeout=10):
        """Send raw bytes on a fresh TCP connection; return everything read until close or timeout."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    # -- conveniences for container tests --------------------------------

    def create(self, cmd, image="busybox", **config):
        cfg = {"Image": image, "Cmd": cmd}
        cfg.update(config)
        r = self.post("/containers/create", cfg)
        assert r.status == 201, r
        return r.json()["Id"]

    def start(self, cid, body=None):
        r = self.post(f"/containers/{cid}/start", body)
        assert r.status == 204, r
        return r

    def wait(self, cid, timeout=60):
        r = self.post(f"/containers/{cid}/wait", timeout=timeout)
        assert r.status == 200, r
        return r.json()["StatusCode"]

    def logs(self, cid, stdout=1, stderr=1):
        r = self.post(f"/containers/{cid}/attach?logs=1&stream=0&stdout={stdout}&stderr={stderr}")
        assert r.status == 200, r
        return r.body

    def run(self, cmd, image="busybox", body=None, **config):
        """create + start + wait; returns (exit code, output, id)."""
        cid = self.create(cmd, image, **config)
        self.start(cid, body)
        code = self.wait(cid)
        return code, self.logs(cid).decode(errors="replace"), cid


class Daemon:
    """A real pyd process with its own data root, TCP port and unix socket."""

    def __init__(self, root, extra_args=(), cmd=None, net_args=True):
        """`cmd`: the daemon command as a list (default: daemon_cmd(), from PYD_CMD).
        `net_args`: give it a bridge of its own and no DNS upstream (False for
        an old release, which has no networking flags)."""
        self.net_args = net_args
        self.root = str(root)
        self.cmd = list(cmd) if cmd is not None else None
        self.port = free_port()
        self.sock = os.path.join(self.root, "pyd.sock")
        self.pidfile = os.path.join(self.root, "pyd.pid")
        self.logpath = os.path.join(self.root, "daemon.log")
        self.extra_args = list(extra_args)
        self.proc = None
        self.api = Api(port=self.port)
        self.unix_api = Api(unix=self.sock)

    @property
    def bridge(self):
        """The default bridge of this daemon: one per data root, so that test
        daemons never share pyd0 (or a developer's own pyd)."""
        for i, a in enumerate(self.extra_args):
            if a in ("-b", "--bridge") and i + 1 < len(self.extra_args):
                return self.extra_args[i + 1]
            if a.startswith("--bridge="):
                return a.split("=", 1)[1]
        return "pydt" + hashlib.sha1(self.root.encode()).hexdigest()[:10]

    def argv(self):
        net = []
        if not self.net_args:
            pass  # an old release (migration tests): its own flags only
        elif not any(a in ("-b", "--bridge") or a.startswith("--bridge=") for a in self.extra_args):
            net += ["--bridge", self.bridge]
        if self.net_args and not any(a.startswith("--dns-upstream") for a in self.extra_args):
            # Never the host's resolvers (the network rule): unknown names fail.
            net += ["--dns-upstream", "none"]
        return (self.cmd if self.cmd is not None else daemon_cmd()) + ["-H", f"tcp://127.0.0.1:{self.port}", "-H", f"unix://{self.sock}",
                               "-g", self.root, "-p", self.pidfile, "-D"] + net + self.extra_args

    def start(self, timeout=30):
        os.makedirs(self.root, exist_ok=True)
        self._log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # Over TLS the TCP port speaks no plain HTTP: the unix socket answers then.
                tls = any(a.startswith("--tls") for a in self.extra_args)
                ping = self.unix_api if tls else self.api
                if (not tls or os.path.exists(self.sock)) and ping.get("/_ping", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("daemon did not answer /_ping in time:\n" + self.log())

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
        self.remove_leftover_bridge()
        return self.proc.returncode if self.proc else None

    def remove_leftover_bridge(self):
        """A daemon killed with -9 and never restarted leaves its bridge (with
        an address that takes a subnet) and its accept rules: remove them, so
        later daemons have pools and the host's FORWARD chain stays short."""
        name = self.bridge
        given = any(a in ("-b", "--bridge") or a.startswith("--bridge=") for a in self.extra_args)
        if self.net_args and not given and os.path.exists(f"/sys/class/net/{name}"):
            subprocess.run(["ip", "link", "delete", name], capture_output=True, timeout=10)
            # ...and its firewall chains (named from the data root), with them.
            from pyd.network.firewall import Firewall, chain_for_root
            Firewall.detect(chain=chain_for_root(self.root)).remove_stale(keep=())

    def server_pid(self):
        """The pid of the process that serves: the daemon itself, or, for the
        frozen one-file binary, the child its bootloader runs (pyd/cli.py)."""
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = [int(k) for k in f.read().split()]
            exe = os.readlink(f"/proc/{pid}/exe")
            for k in kids:
                if os.readlink(f"/proc/{k}/exe") == exe:
                    return k
        except OSError:
            pass
        return pid

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")[-20000:]
        except OSError:
            return ""


def busybox_rootfs_tar(users=True):
    """A busybox image as a tar, made from Debian's busybox-static."""
    buf = io.BytesIO()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    now = int(time.time())

    def add(tf, name, data=None, mode=0o644, kind=tarfile.REGTYPE, link="", uid=0, gid=0):
        ti = tarfile.TarInfo(name)
        ti.mode, ti.type, ti.linkname, ti.mtime, ti.uid, ti.gid = mode, kind, link, now, uid, gid
        if data is not None:
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        else:
            tf.addfile(ti)

    with tarfile.open(fileobj=buf, mode="w") as tf:
        for d in ("bin", "etc", "home", "home/user", "root", "tmp", "var", "proc", "sys", "dev", "usr", "usr/bin", "mnt"):
            mode = 0o1777 if d == "tmp" else 0o755
            add(tf, d, kind=tarfile.DIRTYPE, mode=mode, uid=1000 if d == "home/user" else 0, gid=1000 if d == "home/user" else 0)
        with open(BUSYBOX, "rb") as f:
            add(tf, "bin/busybox", f.read(), mode=0o755)
        for a in applets:
            if a != "busybox":
                add(tf, f"bin/{a}", kind=tarfile.SYMTYPE, link="busybox")
        passwd = (b"root:x:0:0:root:/root:/bin/sh\n"
                  b"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                  b"user:x:1000:1000:Test User:/home/user:/bin/sh\n"
                  b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        group = (b"root:x:0:\ndaemon:x:1:\nuser:x:1000:\nstaff:x:50:user\nnogroup:x:65534:\n")
        add(tf, "etc/passwd", passwd)
        add(tf, "etc/group", group)
        add(tf, "etc/hosts", b"127.0.0.1 localhost\n")
        add(tf, "etc/hostname", b"busybox\n")
        add(tf, "etc/resolv.conf", b"")
        add(tf, "etc/motd", b"hello from the busybox test image\n")
    return buf.getvalue()
