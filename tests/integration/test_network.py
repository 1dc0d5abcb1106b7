"""Bridge networking against the real daemon: containers reaching each
other by address, name and alias, the DNS forwarder, published ports over
TCP and UDP with their shapes on both surfaces and in the docker CLI, port
conflicts, the none/host/container: modes, connect and disconnect, the
clean-up after many starts and after a kill -9, networks that outlive a
restart, and the /networks endpoints.

Traffic goes only to 127.0.0.1 and to addresses pyd gave its containers;
names are resolved only by pyd's DNS server, whose upstream is `none`, or
a responder this file runs on 127.0.0.1 (the network rule of the brief).

Busybox's nc (Debian's busybox-static) has no -u and the image has no UDP
server, so the UDP test runs its echo server in the container's network
namespace from the host (nsenter --net): the datagrams still go host ->
proxy -> the container's address, as a server inside would see them.
"""

import hashlib
import json
import http.client
import ipaddress
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import quote

import pytest

from tests.pydtest import busybox_rootfs_tar, free_port, inspect, require, wait_for

V = "/v1.41"
DOCKER = "/usr/local/bin/docker"
VETH_PREFIX = "pv"


# -- helpers -------------------------------------------------------------------

def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def frames(data):
    """8-byte-header frames -> the bytes of all of them (stdout and stderr)."""
    out = b""
    while len(data) >= 8:
        _, n = struct.unpack(">BxxxI", data[:8])
        out += data[8:8 + n]
        data = data[8 + n:]
    return out


class Box:
    """Containers a test made on a daemon, all removed (forced) at the end."""

    def __init__(self, api):
        self.api, self.made, self.nets = api, [], []

    def create(self, cmd, name=None, host=None, networking=None, expect=201, **config):
        body = {"Image": "busybox", "Cmd": cmd, **config}
        if host:
            body["HostConfig"] = host
        if networking:
            body["NetworkingConfig"] = {"EndpointsConfig": networking}
        r = self.api.post(f"{V}/containers/create" + (f"?name={name}" if name else ""), body)
        assert r.status == expect, r
        if r.status != 201:
            return r
        cid = r.json()["Id"]
        self.made.append(cid)
        return cid

    def start(self, cid):
        r = self.api.post(f"{V}/containers/{cid}/start")
        assert r.status == 204, r

    def run(self, cmd, **kw):
        """create + start; the container keeps running."""
        cid = self.create(cmd, **kw)
        self.start(cid)
        return cid

    def wait(self, cid, timeout=60):
        r = self.api.post(f"{V}/containers/{cid}/wait", timeout=timeout)
        assert r.status == 200, r
        return r.json()["StatusCode"]

    def logs(self, cid):
        r = self.api.get(f"{V}/containers/{cid}/logs?stdout=1&stderr=1")
        assert r.status == 200, r
        return frames(r.body).decode(errors="replace")

    def call(self, cmd, **kw):
        """Run a container to its end: (exit code, output)."""
        cid = self.run(cmd, **kw)
        code = self.wait(cid)
        return code, self.logs(cid)

    def kill(self, cid):
        if self.info(cid)["State"]["Running"]:
            r = self.api.post(f"{V}/containers/{cid}/kill")
            assert r.status in (204, 409), r
        self.wait(cid)

    def info(self, cid):
        return inspect(self.api, cid, V)

    def network(self, name=None, expect=201, **body):
        name = name or uniq("nt")
        r = self.api.post(f"{V}/networks/create", {"Name": name, **body})
        assert r.status == expect, r
        if r.status == 201:
            self.nets.append(name)
        return name

    def cleanup(self):
        for cid in reversed(self.made):
            self.api.delete(f"{V}/containers/{cid}?force=1&v=1")
        for n in self.nets:
            self.api.delete(f"{V}/networks/{n}")


@pytest.fixture
def box(api, busybox):
    b = Box(api)
    yield b
    b.cleanup()


def load_busybox(api, tar):
    r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", tar,
                 headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r


@pytest.fixture(scope="module")
def busybox_tar_net():
    return busybox_rootfs_tar()


def pid_of(info):
    pid = info["State"]["Pid"]
    assert pid > 0, info["State"]
    return pid


def listening(pid, port, proto="tcp"):
    """Is something in `pid`'s network namespace listening on `port` (any address)?"""
    lines = []
    for path in (f"/proc/{pid}/net/{proto}", f"/proc/{pid}/net/{proto}6"):  # httpd listens on ::
        try:
            with open(path) as f:
                lines += f.read().splitlines()[1:]
        except OSError:
            pass
    for line in lines:
        parts = line.split()
        local, state = parts[1], parts[3]
        if int(local.rsplit(":", 1)[1], 16) == port and (proto == "udp" or state == "0A"):
            return True
    return False


HTTPD = "mkdir -p /www && echo {token} > /www/file && exec httpd -f -p 80 -h /www"


def httpd(box, token, wait=True, **kw):
    """A container serving /file (its content: `token`) on port 80, once it listens."""
    cid = box.run(["sh", "-c", HTTPD.format(token=token)], **kw)
    if wait:
        wait_for(lambda: listening(pid_of(box.info(cid)), 80), 20, "httpd to listen")
    return cid


WGET = "timeout 5 wget -q -O -"  # busybox 1.35's wget -T segfaults (exit 139): timeout bounds it instead


def wget(url):
    return WGET.split() + [url]


def port_is_free(port, proto="tcp", host="127.0.0.1"):
    """Can a new server take the port? For TCP with SO_REUSEADDR, as servers
    (and pyd's proxy) listen: connections in TIME_WAIT do not hold it, a
    listener does."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        if proto == "tcp":
            s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def http_get(port, path="/file", timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def links():
    return set(os.listdir("/sys/class/net"))


def gone_soon(veth, timeout=5):
    """True once `veth` is gone: pyd deletes a stopped container's veths on a
    thread of its own (the kernel's delete takes ~30 ms), ports at once."""
    deadline = time.monotonic() + timeout
    while veth in links():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def veth_name(cid, net_id):
    """The host end pyd names for a container on a network (pyd/engine/networking.py)."""
    return VETH_PREFIX + hashlib.sha1(f"{cid}:{net_id}".encode()).hexdigest()[:13]


def veths_on(bridges):
    """pyd's veth host ends enslaved to one of `bridges`."""
    out = []
    for name in links():
        if not name.startswith(VETH_PREFIX):
            continue
        try:
            master = os.path.basename(os.readlink(f"/sys/class/net/{name}/master"))
        except OSError:
            continue
        if master in bridges:
            out.append(name)
    return out


def network_json(api, ref):
    r = api.get(f"{V}/networks/{ref}")
    assert r.status == 200, r
    return r.json()


def bridge_of(api, ref):
    """The host bridge of a network: the default one names it in its options,
    a user network's is pyd + 12 hex digits of its id (pyd/engine/networking.py)."""
    n = network_json(api, ref)
    return n["Options"].get("com.docker.network.bridge.name") or "pyd" + n["Id"][:12]


class Cli:
    """The docker CLI 28 against a daemon, each call bounded."""

    def __init__(self, port, config):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(DOCKER_HOST=f"tcp://127.0.0.1:{port}", DOCKER_CONFIG=str(config),
                        DOCKER_CLI_HINTS="false", NO_COLOR="1")

    def __call__(self, *args, timeout=60):
        return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, env=self.env)


@pytest.fixture(scope="module")
def cli(daemon, tmp_path_factory):
    require(os.access(DOCKER, os.X_OK), f"{DOCKER} (docker CLI 28)")
    return Cli(daemon.port, tmp_path_factory.mktemp("docker-config"))


# -- reaching each other -------------------------------------------------------------

def test_containers_reach_each_other_by_ip_on_the_default_bridge(box):
    token = uniq("by-ip")
    srv = httpd(box, token)
    ep = box.info(srv)["NetworkSettings"]["Networks"]["bridge"]
    ip = ep["IPAddress"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(f"{ep['Gateway']}/{ep['IPPrefixLen']}", strict=False)
    assert box.info(srv)["NetworkSettings"]["IPAddress"] == ip
    code, out = box.call(wget(f"http://{ip}/file"))
    assert (code, out.strip()) == (0, token)
    # and a wrong path is the server's 404, not a network error: the answer came from it
    code, out = box.call(["sh", "-c", f"{WGET} http://{ip}/nothing-here; echo rc=$?"])
    assert "rc=1" in out and token not in out


def test_user_network_names_and_aliases(box):
    net = box.network()
    token = uniq("by-name")
    name = uniq("srv")
    alias = uniq("alias")
    srv = httpd(box, token, name=name, host={"NetworkMode": net}, networking={net: {"Aliases": [alias]}})
    got = box.info(srv)["NetworkSettings"]["Networks"][net]
    assert alias in (got["Aliases"] or [])
    subnet = network_json(box.api, net)["IPAM"]["Config"][0]["Subnet"]
    assert ipaddress.ip_address(got["IPAddress"]) in ipaddress.ip_network(subnet)
    script = (f"{WGET} http://{name}/file && {WGET} http://{alias}/file && "
              f"{WGET} http://{srv[:12]}/file")
    code, out = box.call(["sh", "-c", script], host={"NetworkMode": net})
    assert code == 0, out
    assert out.split() == [token] * 3
    # a name that is nobody's does not resolve (the upstream is none)
    code, out = box.call(wget(f"http://{uniq('nobody')}/file"), host={"NetworkMode": net})
    assert code != 0 and token not in out
    # a rename applies at once, as in dockerd: the new name answers, the old one not
    renamed = uniq("renamed")
    assert box.api.post(f"{V}/containers/{srv}/rename?name={renamed}").status == 204
    code, out = box.call(["sh", "-c", f"{WGET} http://{renamed}/file; nslookup {name}; exit 0"],
                         host={"NetworkMode": net})
    assert out.splitlines()[0] == token and got["IPAddress"] not in out.split(token, 1)[1], out
    # once the server has exited its names are gone
    box.kill(srv)
    code, out = box.call(["nslookup", renamed], host={"NetworkMode": net})
    assert code != 0 and got["IPAddress"] not in out, out


class Responder:
    """A tiny UDP DNS server on 127.0.0.1: A for `name`, empty NOERROR otherwise."""

    def __init__(self, name, address):
        self.name, self.address = name, address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            data, peer = self.sock.recvfrom(4096)
            try:
                reply = self.answer(data)
            except (IndexError, struct.error):
                continue
            self.sock.sendto(reply, peer)

    def answer(self, data):
        qid, flags = struct.unpack(">HH", data[:4])
        i, labels = 12, []
        while data[i]:
            labels.append(data[i + 1:i + 1 + data[i]].decode())
            i += 1 + data[i]
        qtype, _ = struct.unpack(">HH", data[i + 1:i + 5])
        question = data[12:i + 5]
        qname = ".".join(labels).lower()
        self.queries.append((qname, qtype))
        hit = qname == self.name and qtype == 1
        header = struct.pack(">HHHHHH", qid, 0x8180 | (flags & 0x0100), 1, 1 if hit else 0, 0, 0)
        body = header + question
        if hit:
            body += struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(self.address)
        return body

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_the_daemon_forwards_unknown_names_to_its_upstream(new_daemon, busybox_tar_net):
    resp = Responder("outside.test", "127.0.0.77")
    try:
        d = new_daemon(extra_args=["--dns-upstream", f"127.0.0.1:{resp.port}"]).start()
        load_busybox(d.api, busybox_tar_net)
        b = Box(d.api)
        try:
            net = b.network()
            code, out = b.call(["nslookup", "outside.test"], host={"NetworkMode": net})
            assert code == 0, out
            assert "127.0.0.77" in out, out
            assert ("outside.test", 1) in resp.queries
        finally:
            b.cleanup()
    finally:
        resp.close()


# -- published ports ------------------------------------------------------------------

def test_a_published_tcp_port_is_reachable_on_127_0_0_1(box):
    token = uniq("tcp")
    cid = httpd(box, token, host={"PortBindings": {"80/tcp": [{"HostPort": ""}]}})
    ports = box.info(cid)["NetworkSettings"]["Ports"]["80/tcp"]
    assert len(ports) == 1 and ports[0]["HostIp"] == "127.0.0.1"
    hport = int(ports[0]["HostPort"])
    assert 49153 <= hport <= 65535
    assert not port_is_free(hport)
    status, body = http_get(hport)
    assert (status, body.strip()) == (200, token.encode())
    box.kill(cid)
    assert port_is_free(hport)


def _dnat_rules(daemon):
    """pyd's DNAT rules for `daemon` (its chains are named after its data root)."""
    from pyd.network.firewall import chain_for_root
    chain = chain_for_root(daemon.root) + "-DNAT"
    p = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S", chain], capture_output=True, text=True)
    return [ln for ln in p.stdout.splitlines() if ln.startswith("-A ")], chain


def _dnat_packets(chain):
    p = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-L", chain, "-v", "-x", "-n"],
                       capture_output=True, text=True, check=True)
    return sum(int(ln.split()[0]) for ln in p.stdout.splitlines()[2:] if ln.split())


def test_the_kernel_forwards_a_published_port_and_the_rule_goes_with_it(box, daemon):
    """With iptables on the host (CI has it) a published port is DNATed, from
    127.0.0.1 too: the connection never reaches the userland proxy, which
    still holds the port."""
    require(shutil.which("iptables"), "iptables")
    token = uniq("dnat")
    cid = httpd(box, token, host={"PortBindings": {"80/tcp": [{"HostPort": ""}]}})
    hport = int(box.info(cid)["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
    address = box.info(cid)["NetworkSettings"]["IPAddress"]
    rules, chain = _dnat_rules(daemon)
    mine = [r for r in rules if f"--dport {hport} " in r]
    assert len(mine) == 1 and f"--to-destination {address}:80" in mine[0], rules
    before = _dnat_packets(chain)
    status, body = http_get(hport)
    assert (status, body.strip()) == (200, token.encode())
    assert _dnat_packets(chain) > before, "the connection did not go through the kernel's DNAT"
    box.kill(cid)
    assert not [r for r in _dnat_rules(daemon)[0] if f"--dport {hport} " in r]
    assert port_is_free(hport)


def test_userland_proxy_true_keeps_the_kernel_out(new_daemon, busybox_tar_net):
    require(shutil.which("iptables"), "iptables")
    d = new_daemon(extra_args=["--userland-proxy"]).start()
    load_busybox(d.api, busybox_tar_net)
    b = Box(d.api)
    try:
        token = uniq("proxy")
        cid = httpd(b, token, host={"PortBindings": {"80/tcp": [{"HostPort": ""}]}})
        hport = int(b.info(cid)["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
        status, body = http_get(hport)
        assert (status, body.strip()) == (200, token.encode())
        assert _dnat_rules(d)[0] == []
    finally:
        b.cleanup()


def test_publish_all_ports_and_a_host_port_range(box):
    token = uniq("all")
    cid = httpd(box, token, ExposedPorts={"80/tcp": {}}, host={"PublishAllPorts": True})
    hport = int(box.info(cid)["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
    assert 49153 <= hport <= 65535
    assert http_get(hport) == (200, (token + "\n").encode())
    box.kill(cid)
    # a range: the first port is taken, the next one is used
    for _ in range(50):
        first = free_port()
        if first < 65535 and port_is_free(first + 1):
            break
    taken = socket.socket()
    taken.bind(("127.0.0.1", first))
    taken.listen(1)
    try:
        cid = httpd(box, token, host={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                   "HostPort": f"{first}-{first + 1}"}]}})
        assert box.info(cid)["NetworkSettings"]["Ports"]["80/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(first + 1)}]
        assert http_get(first + 1) == (200, (token + "\n").encode())
    finally:
        taken.close()
    box.kill(cid)
    assert port_is_free(first + 1)


UDP_ECHO = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(1)
print("ready", flush=True)
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        data, peer = s.recvfrom(2048)
    except socket.timeout:
        continue
    s.sendto(b"echo:" + data + b" from " + peer[0].encode(), peer)
"""


def test_a_published_udp_port_is_reachable_on_127_0_0_1(box):
    require(shutil.which("nsenter"), "nsenter (util-linux)")
    cid = box.run(["sleep", "60"], host={"PortBindings": {"5000/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}})
    info = box.info(cid)
    hport = int(info["NetworkSettings"]["Ports"]["5000/udp"][0]["HostPort"])
    gateway = info["NetworkSettings"]["Networks"]["bridge"]["Gateway"]
    echo = subprocess.Popen(["nsenter", f"--net=/proc/{pid_of(info)}/ns/net", sys.executable, "-c", UDP_ECHO,
                             "5000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert echo.stdout.readline().strip() == "ready", echo.stderr.read()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(b"ping-1", ("127.0.0.1", hport))
            data, _ = s.recvfrom(2048)
            # the proxy delivers from the host's side of the bridge (the gateway)
            assert data == b"echo:ping-1 from " + gateway.encode()
            s.sendto(b"ping-2", ("127.0.0.1", hport))
            assert s.recvfrom(2048)[0].startswith(b"echo:ping-2")
    finally:
        echo.kill()
        echo.wait(10)
    box.kill(cid)
    assert port_is_free(hport, "udp")


def test_port_shapes_in_inspect_list_and_the_cli(box, cli):
    name = uniq("ports")
    fixed = free_port()
    cid = httpd(box, uniq("shape"), name=name, ExposedPorts={"80/tcp": {}, "81/tcp": {}},
                host={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(fixed)}]}})
    ports = box.info(cid)["NetworkSettings"]["Ports"]
    assert ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(fixed)}], "81/tcp": None}
    rows = [c for c in box.api.get(f"{V}/containers/json").json() if c["Id"] == cid][0]["Ports"]
    assert sorted(rows, key=lambda r: r["PrivatePort"]) == [
        {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": fixed, "Type": "tcp"},
        {"PrivatePort": 81, "Type": "tcp"}]
    r = cli("port", name)
    assert r.returncode == 0, r
    assert r.stdout.strip() == f"80/tcp -> 127.0.0.1:{fixed}"
    r = cli("port", name, "80/tcp")
    assert r.returncode == 0 and r.stdout.strip() == f"127.0.0.1:{fixed}", r
    r = cli("ps", "--filter", f"name={name}", "--format", "{{.Ports}}")
    assert r.returncode == 0, r
    assert f"127.0.0.1:{fixed}->80/tcp" in r.stdout and "81/tcp" in r.stdout, r.stdout
    box.kill(cid)
    assert box.info(cid)["NetworkSettings"]["Ports"] == {}


def test_legacy_port_shapes_for_a_v13_portspec(box):
    token = uniq("legacy")
    r = box.api.post("/v1.3/containers/create",
                     {"Image": "busybox", "Cmd": ["sh", "-c", HTTPD.format(token=token)], "PortSpecs": ["80"]})
    assert r.status == 201, r
    cid = r.json()["Id"]
    box.made.append(cid)
    assert box.api.post(f"/v1.3/containers/{cid}/start").status == 204
    wait_for(lambda: listening(pid_of(box.info(cid)), 80), 20, "httpd to listen")
    rows = [c for c in box.api.get("/v1.3/containers/json").json() if cid.startswith(c["Id"])]
    assert len(rows) == 1, rows
    hport, _, cport = rows[0]["Ports"].partition("->")
    assert cport == "80" and hport.isdigit() and 49153 <= int(hport) <= 65535, rows[0]
    unversioned = [c for c in box.api.get("/containers/json").json() if cid.startswith(c["Id"])]
    assert unversioned[0]["Ports"] == f"{hport}->80"
    ns = box.api.get(f"/v1.3/containers/{cid}/json").json()["NetworkSettings"]
    assert ns["PortMapping"] == {"Tcp": {"80": hport}, "Udp": {}}
    assert ns["IPAddress"] == ns["IpAddress"] == box.info(cid)["NetworkSettings"]["IPAddress"]
    status, body = http_get(int(hport))
    assert (status, body.strip()) == (200, token.encode())


def test_a_port_conflict_fails_the_start_and_leaves_nothing(box):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    busy = taken.getsockname()[1]
    other = free_port()
    try:
        cid = box.create(["sleep", "60"], host={"PortBindings": {
            "81/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(other)}],
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(busy)}]}})
        r = box.api.post(f"{V}/containers/{cid}/start")
        assert r.status == 500, r
        msg = r.json()["message"]
        assert "port is already allocated" in msg and str(busy) in msg, msg
        st = box.info(cid)["State"]
        assert not st["Running"] and st["Pid"] == 0, st
        assert port_is_free(other), "the binding made before the conflict stayed"
        bridge_id = network_json(box.api, "bridge")["Id"]
        assert gone_soon(veth_name(cid, bridge_id))
    finally:
        taken.close()
    # an address that is not the host's: the start fails and says why
    bad = box.create(["sleep", "60"], host={"PortBindings": {"80/tcp": [{"HostIp": "192.0.2.1", "HostPort": ""}]}})
    r = box.api.post(f"{V}/containers/{bad}/start")
    assert r.status == 500 and "192.0.2.1" in r.json()["message"], r
    assert not box.info(bad)["State"]["Running"]
    # once the port is free, the same container starts and publishes it
    box.start(cid)
    assert box.info(cid)["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(busy)}]
    assert not port_is_free(busy)
    box.kill(cid)
    assert port_is_free(busy) and port_is_free(other)


# -- network modes ------------------------------------------------------------------------

def test_network_none_has_only_loopback(box):
    code, out = box.call(["ls", "/sys/class/net"], host={"NetworkMode": "none"})
    assert (code, out.split()) == (0, ["lo"])


def test_network_host_sees_the_hosts_interfaces(box, daemon):
    before = links()
    r = box.api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["ls", "/sys/class/net"],
                                                "HostConfig": {"NetworkMode": "host",
                                                               "PortBindings": {"80/tcp": [{}]}}})
    assert r.status == 201, r
    assert "Published ports are discarded" in " ".join(r.json()["Warnings"] or []), r
    cid = r.json()["Id"]
    box.made.append(cid)
    box.start(cid)
    code, out = box.wait(cid), box.logs(cid)
    after = links()
    inside = set(out.split())
    assert code == 0, out
    # other daemons may add or remove links meanwhile: only what stayed is certain
    assert before & after <= inside <= before | after, (inside, before, after)
    assert {"lo", daemon.bridge} <= inside


def test_container_mode_shares_the_network_namespace(box):
    token = uniq("shared")
    srv = httpd(box, token)
    ip = box.info(srv)["NetworkSettings"]["IPAddress"]
    script = f"{WGET} http://127.0.0.1/file && ip -4 addr show eth0"
    code, out = box.call(["sh", "-c", script], host={"NetworkMode": f"container:{srv}"})
    assert code == 0, out
    assert out.splitlines()[0] == token
    assert f"inet {ip}/" in out
    # the joiner's namespace is the server's, as the kernel says
    joiner = box.run(["sleep", "30"], host={"NetworkMode": f"container:{srv}"})
    assert os.readlink(f"/proc/{pid_of(box.info(joiner))}/ns/net") == os.readlink(
        f"/proc/{pid_of(box.info(srv))}/ns/net")
    # dockerd's runconfig checks: nothing to publish or expose in another's namespace (400)
    r = box.create(["true"], host={"NetworkMode": f"container:{srv}",
                                   "PortBindings": {"80/tcp": [{"HostPort": ""}]}}, expect=400)
    assert "port publishing and the container type network mode" in r.json()["message"], r
    r = box.create(["true"], host={"NetworkMode": f"container:{srv}"}, expect=400, ExposedPorts={"80/tcp": {}})
    assert "port exposing and the container type network mode" in r.json()["message"], r
    box.create(["true"], host={"NetworkMode": "container:no-such-container"}, expect=404)


def _two_networks_and_a_server(box):
    home, other = box.network(), box.network()
    token, name = uniq("conn"), uniq("srv")
    srv = httpd(box, token, name=name, host={"NetworkMode": other})
    client = box.run(["sleep", "120"], host={"NetworkMode": home})
    return home, other, token, name, srv, client


def _exec(cli, cid, *cmd):
    r = cli("exec", cid, *cmd, timeout=30)
    return r.returncode, r.stdout.strip()


def test_connect_and_disconnect_plug_and_unplug_a_running_container(box, cli):
    home, other, _, _, srv, client = _two_networks_and_a_server(box)
    r = box.api.post(f"{V}/networks/{other}/connect", {"Container": client, "EndpointConfig": {"Aliases": ["late"]}})
    assert r.status == 200, r
    nets = box.info(client)["NetworkSettings"]["Networks"]
    assert set(nets) == {home, other}
    addr = nets[other]["IPAddress"]
    subnet = network_json(box.api, other)["IPAM"]["Config"][0]["Subnet"]
    assert ipaddress.ip_address(addr) in ipaddress.ip_network(subnet)
    assert client in network_json(box.api, other)["Containers"]
    code, out = _exec(cli, client, "ip", "-4", "addr")
    assert code == 0 and f"inet {addr}/" in out, out
    veth = veth_name(client, network_json(box.api, other)["Id"])
    assert veth in links()
    r = box.api.post(f"{V}/networks/{other}/connect", {"Container": client})
    assert r.status == 403, r
    r = box.api.post(f"{V}/networks/{other}/disconnect", {"Container": client})
    assert r.status == 200, r
    assert set(box.info(client)["NetworkSettings"]["Networks"]) == {home}
    assert set(network_json(box.api, other)["Containers"]) == {srv}
    code, out = _exec(cli, client, "ip", "-4", "addr")
    assert code == 0 and f"inet {addr}/" not in out, out
    assert veth not in links()
    r = box.api.post(f"{V}/networks/{other}/disconnect", {"Container": client})
    assert r.status == 403, r


def test_a_network_connected_while_stopped_is_joined_at_the_start(box):
    home, other = box.network(), box.network()
    cid = box.create(["ip", "-4", "addr"], host={"NetworkMode": home})
    r = box.api.post(f"{V}/networks/{other}/connect", {"Container": cid})
    assert r.status == 200, r
    box.start(cid)
    assert box.wait(cid) == 0
    out = box.logs(cid)
    for n in (home, other):
        prefix = str(ipaddress.ip_network(network_json(box.api, n)["IPAM"]["Config"][0]["Subnet"]).network_address)
        assert f"inet {prefix.rsplit('.', 2)[0]}." in out, (n, out)
    assert "eth0" in out and "eth1" in out, out
    # and one disconnected while stopped is not
    r = box.api.post(f"{V}/networks/{other}/disconnect", {"Container": cid})
    assert r.status == 200, r
    box.start(cid)
    assert box.wait(cid) == 0
    both = box.logs(cid)  # the logs of both runs: eth1 only in the first
    assert (both.count(": eth0"), both.count(": eth1")) == (2, 1), both


def test_connect_and_disconnect_change_reachability_by_name(box, cli):
    """dockerd's resolver answers for every network the asking container is
    on: a network connected later makes its containers' names resolvable."""
    _, other, token, name, _, client = _two_networks_and_a_server(box)
    fetch = wget(f"http://{name}/file")
    assert _exec(cli, client, *fetch)[0] != 0, "reached a container on a network it is not on"
    r = box.api.post(f"{V}/networks/{other}/connect", {"Container": client})
    assert r.status == 200, r
    assert _exec(cli, client, *fetch) == (0, token)
    r = box.api.post(f"{V}/networks/{other}/disconnect", {"Container": client})
    assert r.status == 200, r
    assert _exec(cli, client, *fetch)[0] != 0, "still reached it after the disconnect"


def test_user_networks_are_isolated_from_each_other(box, cli):
    """As dockerd's DOCKER-ISOLATION chains: a container cannot reach, by
    address, one on another bridge network it is not connected to."""
    _, other, token, _, srv, client = _two_networks_and_a_server(box)
    ip = box.info(srv)["NetworkSettings"]["Networks"][other]["IPAddress"]
    code, out = _exec(cli, client, *wget(f"http://{ip}/file"))
    assert code != 0 and token not in out, "a container reached another network's container by address"
    r = box.api.post(f"{V}/networks/{other}/connect", {"Container": client})
    assert r.status == 200, r
    assert _exec(cli, client, *wget(f"http://{ip}/file")) == (0, token)


# -- clean-up -------------------------------------------------------------------------------

def test_fifty_starts_and_stops_leave_no_veth_and_a_free_port(box):
    port = free_port()
    cid = box.create(["sleep", "60"], host={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1",
                                                                         "HostPort": str(port)}]}})
    bridge = bridge_of(box.api, "bridge")
    veth = veth_name(cid, network_json(box.api, "bridge")["Id"])
    for i in range(50):
        box.start(cid)
        if i in (0, 49):
            assert veth in links() and not port_is_free(port)
        r = box.api.post(f"{V}/containers/{cid}/kill")
        assert r.status == 204, r
        assert box.wait(cid) == 137
    assert gone_soon(veth)
    assert veth not in veths_on({bridge})
    assert port_is_free(port)


def test_kill_9_and_a_restart_leave_no_veth_and_free_ports(new_daemon, busybox_tar_net):
    d = new_daemon().start()
    load_busybox(d.api, busybox_tar_net)
    b = Box(d.api)
    net = b.network()
    tcp, udp = free_port(), free_port()
    c1 = b.run(["sleep", "300"], host={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(tcp)}],
                                                        "90/tcp": [{}]}})
    c2 = b.run(["sleep", "300"], host={"NetworkMode": net,
                                       "PortBindings": {"53/udp": [{"HostIp": "127.0.0.1", "HostPort": str(udp)}]}})
    ports = [(tcp, "tcp"), (udp, "udp"),
             (int(b.info(c1)["NetworkSettings"]["Ports"]["90/tcp"][0]["HostPort"]), "tcp")]
    veths = [veth_name(c1, b.info(c1)["NetworkSettings"]["Networks"]["bridge"]["NetworkID"]),
             veth_name(c2, b.info(c2)["NetworkSettings"]["Networks"][net]["NetworkID"])]
    bridges = {bridge_of(d.api, "bridge"), bridge_of(d.api, net)}
    assert all(v in links() for v in veths)
    assert not any(port_is_free(p, proto) for p, proto in ports)
    forwarded = bool(shutil.which("iptables")) and bool(_dnat_rules(d)[0])
    require(forwarded or not shutil.which("iptables"), "DNAT rules for the published ports")
    d.kill9()
    d2 = new_daemon(root=d.root).start()
    try:
        left = [v for v in veths if v in links()] + veths_on(bridges)
        assert not left, f"veths left after a kill -9 and a restart: {left}"
        busy = [(p, proto) for p, proto in ports if not port_is_free(p, proto)]
        assert not busy, f"ports still bound: {busy}"
        if forwarded:
            assert _dnat_rules(d2)[0] == [], "the killed daemon's DNAT rules outlived the restart"
        for cid in (c1, c2):
            assert not inspect(d2.api, cid, V)["State"]["Running"]
        # the same container starts again on the restarted daemon, with its fixed port
        b2 = Box(d2.api)
        b2.start(c1)
        assert b2.info(c1)["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(tcp)}]
        assert not port_is_free(tcp) and veths[0] in links()
        b2.kill(c1)
    finally:
        Box(d2.api).cleanup()
        d2.stop()


def test_networks_persist_across_a_daemon_restart(new_daemon, busybox_tar_net):
    d = new_daemon().start()
    load_busybox(d.api, busybox_tar_net)
    net = Box(d.api).network(IPAM={"Config": [{"Subnet": "10.213.7.0/24"}]}, Labels={"keep": "yes"})
    before = network_json(d.api, net)
    assert before["IPAM"]["Config"][0]["Subnet"] == "10.213.7.0/24"
    # a running container with a published port: a clean stop undoes all of it
    port = free_port()
    b0 = Box(d.api)
    c = b0.run(["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"], host={"NetworkMode": net, "PortBindings": {"80/tcp": [{"HostPort": str(port)}]}})
    veth = veth_name(c, before["Id"])
    bridge = bridge_of(d.api, net)
    assert veth in links() and bridge in links() and not port_is_free(port)
    assert d.stop() == 0
    assert veth not in links() and bridge not in links() and port_is_free(port)
    d2 = new_daemon(root=d.root).start()
    after = network_json(d2.api, net)
    assert (after["Id"], after["IPAM"]["Config"], after["Labels"]) == (
        before["Id"], before["IPAM"]["Config"], {"keep": "yes"})
    b = Box(d2.api)
    try:
        code, out = b.call(["ip", "-4", "addr", "show", "eth0"], host={"NetworkMode": net})
        assert code == 0 and "inet 10.213.7." in out, out
        # and its DNS server answers again: names of its containers resolve
        name, token = uniq("srv"), uniq("after-restart")
        httpd(b, token, name=name, host={"NetworkMode": net})
        code, out = b.call(wget(f"http://{name}/file"), host={"NetworkMode": net})
        assert (code, out.strip()) == (0, token)
    finally:
        b.cleanup()
    assert d2.stop() == 0


def test_restart_and_a_forced_remove_release_the_port_and_the_veth(box):
    port = free_port()
    cid = box.run(["sleep", "300"], host={"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}})
    veth = veth_name(cid, network_json(box.api, "bridge")["Id"])
    r = box.api.post(f"{V}/containers/{cid}/restart?t=0")
    assert r.status == 204, r
    info = box.info(cid)
    assert info["State"]["Running"] and info["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"] == str(port)
    assert info["NetworkSettings"]["IPAddress"] and not port_is_free(port) and veth in links()
    r = box.api.delete(f"{V}/containers/{cid}?force=1")
    assert r.status == 204, r
    assert port_is_free(port) and gone_soon(veth)


def test_a_static_address_on_a_user_network(box):
    net = box.network(IPAM={"Config": [{"Subnet": "10.213.9.0/24", "Gateway": "10.213.9.254"}]})
    cfg = network_json(box.api, net)["IPAM"]["Config"][0]
    assert cfg == {"Subnet": "10.213.9.0/24", "Gateway": "10.213.9.254"}
    code, out = box.call(["sh", "-c", "ip -4 addr show eth0; ip route"], host={"NetworkMode": net},
                         networking={net: {"IPAMConfig": {"IPv4Address": "10.213.9.77"}}})
    assert code == 0, out
    assert "inet 10.213.9.77/24" in out and "default via 10.213.9.254" in out, out
    # the address is taken while a container holds it
    holder = box.run(["sleep", "60"], host={"NetworkMode": net},
                     networking={net: {"IPAMConfig": {"IPv4Address": "10.213.9.77"}}})
    assert box.info(holder)["NetworkSettings"]["Networks"][net]["IPAddress"] == "10.213.9.77"
    other = box.create(["true"], host={"NetworkMode": net},
                       networking={net: {"IPAMConfig": {"IPv4Address": "10.213.9.77"}}})
    r = box.api.post(f"{V}/containers/{other}/start")
    assert r.status in (403, 409, 500) and "10.213.9.77" in r.json()["message"], r
    assert not box.info(other)["State"]["Running"]


def test_the_cli_drives_networks(box, cli):
    net, alias = uniq("clinet"), uniq("clialias")
    r = cli("network", "create", net)
    assert r.returncode == 0, r
    box.nets.append(net)
    r = cli("network", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert r.returncode == 0 and f"{net} bridge" in r.stdout.splitlines(), r
    r = cli("network", "inspect", net, "--format", "{{(index .IPAM.Config 0).Subnet}}")
    assert r.returncode == 0, r
    ipaddress.ip_network(r.stdout.strip())
    name, token = uniq("clisrv"), uniq("cli")
    r = cli("run", "-d", "--pull", "never", "--name", name, "--network", net, "--network-alias", alias, "busybox",
            "sh", "-c", HTTPD.format(token=token))
    assert r.returncode == 0, r
    box.made.append(r.stdout.strip())
    wait_for(lambda: listening(pid_of(box.info(name)), 80), 20, "httpd to listen")
    r = cli("run", "--rm", "--pull", "never", "--network", net, "busybox", *wget(f"http://{alias}/file"))
    assert (r.returncode, r.stdout.strip()) == (0, token), r
    r = cli("network", "rm", net)
    assert r.returncode != 0 and "active endpoints" in r.stderr, r
    r = cli("rm", "-f", name)
    assert r.returncode == 0, r
    r = cli("network", "rm", net)
    assert r.returncode == 0, r
    assert box.api.get(f"{V}/networks/{net}").status == 404


# -- /networks ---------------------------------------------------------------------------------

def test_network_list_inspect_delete_and_prune_shapes(box):
    net = box.network(Labels={"purpose": "test"})
    bridge = bridge_of(box.api, net)
    assert bridge in links()
    listed = {n["Name"]: n for n in box.api.get(f"{V}/networks").json()}
    assert {"bridge", "host", "none", net} <= set(listed)
    drivers = (listed["bridge"]["Driver"], listed["host"]["Driver"], listed["none"]["Driver"])
    assert drivers == ("bridge", "host", "null")
    r = box.api.get(f"{V}/networks?filters=" + quote(json.dumps({"name": [net]})))
    assert r.status == 200 and [n["Name"] for n in r.json()] == [net], r
    r = box.api.get(f"{V}/networks?filters=" + quote(json.dumps({"type": ["custom"]})))
    assert net in {n["Name"] for n in r.json()} and "bridge" not in {n["Name"] for n in r.json()}
    mine = listed[net]
    assert mine["Driver"] == "bridge" and len(mine["Id"]) == 64 and mine["Labels"] == {"purpose": "test"}
    subnet = ipaddress.ip_network(mine["IPAM"]["Config"][0]["Subnet"])
    assert ipaddress.ip_address(mine["IPAM"]["Config"][0]["Gateway"]) in subnet
    assert mine["Containers"] == {}
    assert network_json(box.api, mine["Id"][:12])["Name"] == net
    name = uniq("member")
    cid = box.run(["sleep", "60"], name=name, host={"NetworkMode": net})
    members = network_json(box.api, net)["Containers"]
    assert set(members) == {cid}
    m = members[cid]
    assert m["Name"] == name
    addr = ipaddress.ip_interface(m["IPv4Address"])
    assert addr.network == subnet
    assert str(addr.ip) == box.info(cid)["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert m["MacAddress"] == box.info(cid)["NetworkSettings"]["Networks"][net]["MacAddress"]
    # in use: 403; predefined: 403
    r = box.api.delete(f"{V}/networks/{net}")
    assert r.status == 403 and "active endpoints" in r.json()["message"], r
    for predefined in ("bridge", "host", "none"):
        r = box.api.delete(f"{V}/networks/{predefined}")
        assert r.status == 403, (predefined, r)
    # prune removes the unused ones only
    spare1, spare2 = box.network(), box.network()
    r = box.api.post(f"{V}/networks/prune")
    assert r.status == 200, r
    gone = r.json()["NetworksDeleted"] or []
    assert spare1 in gone and spare2 in gone and net not in gone and "bridge" not in gone
    assert box.api.get(f"{V}/networks/{spare1}").status == 404
    box.kill(cid)
    assert network_json(box.api, net)["Containers"] == {}
    assert box.api.delete(f"{V}/networks/{net}").status == 204
    assert box.api.get(f"{V}/networks/{net}").status == 404
    assert net not in {n["Name"] for n in box.api.get(f"{V}/networks").json()}
    assert bridge not in links()


def test_network_errors(box):
    net = box.network()
    r = box.api.post(f"{V}/networks/create", {"Name": net})
    assert r.status == 409 and "already exists" in r.json()["message"], r
    r = box.api.post(f"{V}/networks/create", {"Name": "bridge"})
    assert r.status == 403, r
    r = box.api.get(f"{V}/networks/{uniq('nonet')}")
    assert r.status == 404, r
    missing = uniq("nonet")
    r = box.create(["true"], host={"NetworkMode": missing}, expect=404)
    assert missing in r.json()["message"]
    r = box.create(["true"], host={"NetworkMode": net}, networking={net: {}, missing: {}}, expect=404)
    assert missing in r.json()["message"]
    r = box.api.post(f"{V}/networks/{missing}/connect", {"Container": "whatever"})
    assert r.status == 404, r
    cid = box.create(["true"])
    for bad in ({"IPAMConfig": "10.0.0.1"}, {"Aliases": "one"}, {"Aliases": [1]}):
        r = box.api.post(f"{V}/networks/{net}/connect", {"Container": cid, "EndpointConfig": bad})
        assert r.status == 400, (bad, r)
