"""A private dockerd (Debian's docker.io, dockerd 20.10) for differential
tests and benches: its own data root, exec root, unix socket and 127.0.0.1
port, its own containerd (dockerd starts one under the exec root when none
is given), no iptables, no bridge. It never touches the system's dockerd:
it refuses to start when dockerd is not installed, and `system_socket_free`
tells a caller whether anything answers on /var/run/docker.sock.

Install docker.io without starting its services (Debian's maintainer
scripts ask /usr/sbin/policy-rc.d; 101 means "do not start"):

    printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    apt-get install -y --no-install-recommends docker.io

Network rule: nothing here makes dockerd pull. Callers load the busybox
test image with `load_busybox` and never create from an image that is not
there through the CLI without `--pull never` (the API's create does not pull).
"""

import os
import shutil
import signal
import socket
import subprocess
import time

from tests.pydtest import Api, free_port

DOCKERD = "/usr/sbin/dockerd"
SYSTEM_SOCKET = "/var/run/docker.sock"


def installed():
    """Path of dockerd when docker.io is installed, else None."""
    path = shutil.which("dockerd") or (DOCKERD if os.access(DOCKERD, os.X_OK) else None)
    return path


def system_socket_free():
    """True when nothing accepts connections on /var/run/docker.sock."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(SYSTEM_SOCKET)
    except OSError:
        return True
    finally:
        s.close()
    return False


def version(path=None):
    """`dockerd --version`, e.g. 'Docker version 20.10.24+dfsg1, build 5d6db84'."""
    p = subprocess.run([path or installed(), "--version"], capture_output=True, text=True, timeout=30)
    return p.stdout.strip()


class Dockerd:
    """A dockerd of our own. Like tests.pydtest.Daemon: .port, .sock, .api, .unix_api, start(), stop(), log()."""

    def __init__(self, root, storage_driver=None, networking=False):
        """`networking`: dockerd as a host runs it, with iptables (br_netfilter,
        FORWARD policy DROP, its chains, docker-proxy for -p) and a bridge of
        its own made here (dkt<random>, on a subnet no route uses); the host's
        iptables rules are saved before and restored after, and the bridge
        removed, since dockerd leaves its rules behind when it stops."""
        self.networking = networking
        self.bridge = None
        self._saved_rules = None
        self.root = str(root)
        self.port = free_port()
        self.sock = os.path.join(self.root, "d.sock")
        self.pidfile = os.path.join(self.root, "d.pid")
        self.logpath = os.path.join(self.root, "dockerd.log")
        self.storage_driver = storage_driver
        self.proc = None
        self._log = None
        self.api = Api(port=self.port)
        self.unix_api = Api(unix=self.sock)

    def argv(self, driver):
        return [installed(), "--data-root", os.path.join(self.root, "data"),
                "--exec-root", os.path.join(self.root, "exec"),
                "-H", f"unix://{self.sock}", "-H", f"tcp://127.0.0.1:{self.port}",
                "--pidfile", self.pidfile, "--storage-driver", driver] + (
                    ["--bridge", self.bridge, "--ip-masq=false"] if self.networking else
                    ["--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none"])

    def start(self, timeout=60):
        if not installed():
            raise RuntimeError("dockerd is not installed (apt-get install docker.io)")
        os.makedirs(self.root, exist_ok=True)
        if self.networking and self.bridge is None:
            self._make_bridge()
        drivers = [self.storage_driver] if self.storage_driver else ["overlay2", "vfs"]
        errors = []
        for driver in drivers:
            try:
                return self._start(driver, timeout)
            except RuntimeError as e:
                errors.append(f"{driver}: {e}")
                self.stop()
        raise RuntimeError("dockerd did not start:\n" + "\n".join(errors))

    def _start(self, driver, timeout):
        self._log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.argv(driver), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.driver = driver
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if self.api.get("/_ping", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("no answer to /_ping in time:\n" + self.log()[-3000:])

    def stop(self, timeout=60):
        """SIGTERM (dockerd stops its containers and its containerd), then SIGKILL of its group."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own session only
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None
        if self.networking:
            self._undo_networking()
        return self.proc.returncode if self.proc else None

    def _make_bridge(self):
        import ipaddress, secrets
        self._saved_rules = {t: subprocess.run([t + "-save"], capture_output=True, timeout=30, check=True).stdout
                             for t in ("iptables",)}
        self._saved_policy_sysctl = _read("/proc/sys/net/ipv4/ip_forward")
        # As on a fresh host: dockerd sets the FORWARD policy to DROP when it is
        # the one that turns forwarding on (moby's setupIPForwarding).
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("0")
        taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=10).stdout + \
            subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, timeout=10).stdout
        nets = [ipaddress.ip_network(w, strict=False) for w in taken.split() if "/" in w and w[0].isdigit()]
        for third in range(100, 250):
            cand = ipaddress.ip_network(f"10.214.{third}.0/24")
            if not any(cand.overlaps(n) for n in nets):
                break
        self.bridge = "dkt" + secrets.token_hex(4)
        self.subnet = cand
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True, timeout=10)
        subprocess.run(["ip", "addr", "add", f"{next(cand.hosts())}/24", "dev", self.bridge], check=True, timeout=10)
        subprocess.run(["ip", "link", "set", self.bridge, "up"], check=True, timeout=10)

    def _undo_networking(self):
        if self.bridge:
            subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, timeout=10)
            self.bridge = None
        for tool, saved in (self._saved_rules or {}).items():
            subprocess.run([tool + "-restore"], input=saved, capture_output=True, timeout=30)
        self._saved_rules = None
        if getattr(self, "_saved_policy_sysctl", None) is not None:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write(self._saved_policy_sysctl)

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")[-20000:]
        except OSError:
            return ""


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def load_busybox(api, tar, repo="busybox", tag="latest", prefix=""):
    """Import the busybox test tar as repo:tag into any daemon (pyd or dockerd); returns the image id."""
    r = api.post(f"{prefix}/images/create?fromSrc=-&repo={repo}&tag={tag}", tar,
                 headers={"Content-Type": "application/x-tar"}, timeout=120)
    if r.status != 200 or b'"error"' in r.body:
        raise RuntimeError(f"import failed: {r}")
    img = api.get(f"{prefix}/images/{repo}:{tag}/json")
    if img.status != 200:
        raise RuntimeError(f"imported image not found: {img}")
    body = img.json()
    return body.get("Id") or body.get("id")


AGAINST = "PYD_TESTS_AGAINST"


def client_target(request, tmp_path_factory):
    """The daemon the client tests (test_cli, test_sdk) drive: the session's pyd
    with busybox loaded, or with PYD_TESTS_AGAINST=dockerd a private dockerd
    20.10 that gets the same image (that checks the tests, not pyd). Call it
    from a module-scoped fixture; the result has .port and .sock."""
    if os.environ.get(AGAINST) == "dockerd":
        from tests.pydtest import busybox_rootfs_tar
        d = Dockerd(tmp_path_factory.mktemp("dockerd"))
        d.start()
        request.addfinalizer(d.stop)
        load_busybox(d.api, busybox_rootfs_tar())
        return d
    request.getfixturevalue("busybox")
    return request.getfixturevalue("daemon")
