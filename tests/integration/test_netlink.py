"""pyd.network.netlink against the real kernel (root). Each test makes a
scratch network namespace (`ip netns add pydtest-<random>`) and host links
named pydt<random>...; both are removed at the end, and nothing else on the
host is touched. `ip -j` (iproute2) only cross-checks what netlink did.
Traffic goes only to addresses the test itself assigned."""

import errno
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import threading

import pytest

from pyd.network import ipam
from pyd.network.netlink import IFF_UP, Netlink
from tests.pydtest import require_mark

pytestmark = require_mark(os.path.exists("/sys/class/net"), "/sys/class/net")


def ip(*args, netns=None):
    cmd = ["ip", "-j"] + (["-n", netns] if netns else []) + list(args)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


def own_netns():
    return os.readlink("/proc/thread-self/ns/net")


class Scratch:
    def __init__(self):
        tag = secrets.token_hex(3)
        self.prefix = f"pydt{tag}"           # 10 chars: room for a suffix in IFNAMSIZ
        self.netns = f"pydtest-{tag}"
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        self.fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY | os.O_CLOEXEC)

    def name(self, suffix):
        return self.prefix + suffix

    def host_links(self):
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(self.prefix))

    def close(self):
        with Netlink() as nl:
            for name in self.host_links():
                nl.delete_link(name)
        os.close(self.fd)
        subprocess.run(["ip", "netns", "del", self.netns], check=True)


@pytest.fixture
def scratch():
    s = Scratch()
    try:
        yield s
    finally:
        s.close()
    assert s.host_links() == [], "links left on the host"
    assert not os.path.exists(f"/run/netns/{s.netns}")


@pytest.fixture
def nl():
    with Netlink() as n:
        yield n


def test_bridge_create_address_up_and_errors(scratch, nl):
    br = scratch.name("b")
    nl.create_bridge(br)
    [shown] = ip("-d", "link", "show", "dev", br)
    assert shown["linkinfo"]["info_kind"] == "bridge"
    link = nl.link(br)
    assert (link.name, link.kind, link.index, link.up) == (br, "bridge", shown["ifindex"], False)
    assert nl.link_index(br) == shown["ifindex"]
    assert br in [lk.name for lk in nl.links()]

    with pytest.raises(OSError) as e:
        nl.create_bridge(br)
    assert e.value.errno == errno.EEXIST and str(e.value) == f"[Errno 17] create bridge: {br}"

    nl.add_address(br, "10.250.77.1/24")
    with pytest.raises(OSError) as e:
        nl.add_address(br, "10.250.77.1/24")
    assert e.value.errno == errno.EEXIST
    nl.add_address(br, "fd00:77::1/64")
    got = {a["local"]: a["prefixlen"] for a in ip("addr", "show", "dev", br)[0]["addr_info"]}
    assert got["10.250.77.1"] == 24 and got["fd00:77::1"] == 64
    assert ipaddress.ip_interface("10.250.77.1/24") in nl.addresses(br)

    nl.set_up(br)
    assert "UP" in ip("link", "show", "dev", br)[0]["flags"] and nl.link(br).flags & IFF_UP
    nl.set_mac(br, "02:42:ac:11:00:99")
    nl.set_mtu(br, 1400)
    [shown] = ip("link", "show", "dev", br)
    assert (shown["address"], shown["mtu"]) == ("02:42:ac:11:00:99", 1400)
    assert nl.link(br).address == "02:42:ac:11:00:99"
    nl.set_down(br)
    assert "UP" not in ip("link", "show", "dev", br)[0]["flags"]

    nl.flush_addresses(br)
    assert not [a for a in ip("addr", "show", "dev", br)[0]["addr_info"] if a["scope"] == "global"]
    assert [a for a in nl.addresses(br) if not a.ip.is_link_local] == []

    nl.rename(br, scratch.name("r"))
    assert ip("link", "show", "dev", scratch.name("r"))[0]["ifindex"] == link.index
    nl.delete_link(scratch.name("r"))
    assert scratch.host_links() == []


def test_missing_links_and_bad_names_carry_errno(scratch, nl):
    ghost = scratch.name("x")
    for call, what in [(lambda: nl.delete_link(ghost), "delete link"),
                       (lambda: nl.link_index(ghost), "link"),
                       (lambda: nl.set_up(ghost), "set up"),
                       (lambda: nl.set_master(ghost, "lo"), "set master"),
                       (lambda: nl.add_address(ghost, "10.250.78.1/24"), "add address")]:
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.ENODEV, what
        assert e.value.strerror.startswith(what + ":") and ghost in e.value.strerror
    for bad in ("", "a" * 16, "a/b", "a b", ".."):
        with pytest.raises(OSError) as e:
            nl.create_bridge(bad)
        assert e.value.errno == errno.EINVAL
    assert scratch.host_links() == []


def test_a_bad_namespace_fd_fails_and_leaves_this_thread_home(tmp_path):
    before = own_netns()
    with open(tmp_path / "f", "w") as f:
        with pytest.raises(OSError) as e:
            Netlink(netns_fd=f.fileno())
    assert e.value.errno == errno.EINVAL
    assert own_netns() == before


def _serve_in(netns, address, port):
    """A one-shot TCP echo server in `netns`, bound to `address`; its Popen
    once it listens."""
    code = ("import socket,sys\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(({str(address)!r}, {port})); s.listen(1)\n"
            "print('ready', flush=True)\n"
            "c,peer=s.accept(); c.sendall(b'echo:'+c.recv(64)+b' from:'+peer[0].encode()); c.close()\n")
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_veth_into_a_namespace_over_a_bridge_with_tcp(scratch, nl):
    home = own_netns()
    # A subnet that overlaps no route of the host, from a private /16 of its own.
    taken = [r.dst for r in nl.routes()] + nl.addresses()
    subnet = ipam.choose_subnet(taken, pools=[(f"10.{200 + secrets.randbelow(50)}.0.0/16", 24)])
    pool = ipam.Pool(subnet)
    gateway, peer_ip = pool.interface(pool.gateway), pool.interface(pool.allocate("test"))

    br, host_end, peer = scratch.name("b"), scratch.name("h"), scratch.name("p")
    nl.create_bridge(br)
    nl.add_address(br, gateway)
    nl.set_up(br)
    nl.create_veth(host_end, peer, peer_netns_fd=scratch.fd)
    assert scratch.host_links() == sorted([br, host_end])    # the peer was made inside, not here
    [shown] = ip("-d", "link", "show", "dev", host_end)
    assert shown["linkinfo"]["info_kind"] == "veth" and shown["link_netnsid"] is not None
    nl.set_master(host_end, br)
    nl.set_up(host_end)
    [shown] = ip("link", "show", "dev", host_end)
    assert shown["master"] == br and nl.link(host_end).master == nl.link_index(br)

    inner = Netlink(netns_fd=scratch.fd)
    try:
        assert own_netns() == home, "the socket's thread went home; this one never left"
        assert {lk.name for lk in inner.links()} == {"lo", peer}
        with pytest.raises(OSError) as e:
            inner.rename(peer, "lo")
        assert e.value.errno == errno.EEXIST
        inner.rename(peer, "eth0")
        # The socket keeps its namespace whatever thread uses it.
        seen = {}
        t = threading.Thread(target=lambda: seen.update(up=inner.set_up("eth0"), links=inner.links()))
        t.start()
        t.join()
        assert {lk.name for lk in seen["links"]} == {"lo", "eth0"}
        inner.set_up("lo")
        inner.add_address("eth0", peer_ip)
        inner.add_route(gateway=gateway.ip)
        with pytest.raises(OSError) as e:
            inner.add_route(gateway=gateway.ip)
        assert e.value.errno == errno.EEXIST
        [eth0] = ip("addr", "show", "dev", "eth0", netns=scratch.netns)
        assert "UP" in eth0["flags"]
        assert {(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"} == \
            {(str(peer_ip.ip), subnet.prefixlen)}
        [default] = ip("route", "show", "default", netns=scratch.netns)
        assert (default["gateway"], default["dev"]) == (str(gateway.ip), "eth0")
        routes = inner.routes()
        assert any(r.dst.prefixlen == 0 and r.gateway == gateway.ip for r in routes)
        assert any(r.dst == subnet for r in routes)
        # The host's own table is untouched but for the bridge's subnet.
        assert not any(r.gateway == gateway.ip for r in nl.routes())
        assert any(r.dst == subnet and r.oif == nl.link_index(br) for r in nl.routes())
    finally:
        inner.close()

    server = _serve_in(scratch.netns, peer_ip.ip, 8765)
    try:
        with socket.create_connection((str(peer_ip.ip), 8765), timeout=10) as c:
            c.sendall(b"hello")
            c.shutdown(socket.SHUT_WR)
            reply = c.makefile("rb").read()
        assert reply == f"echo:hello from:{gateway.ip}".encode()
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    nl.delete_link(host_end)      # takes the peer (eth0) with it
    assert ip("link", "show", netns=scratch.netns)[0]["ifname"] == "lo"
    assert [lk["ifname"] for lk in ip("link", "show", netns=scratch.netns)] == ["lo"]
    nl.delete_link(br)
    assert scratch.host_links() == []
    assert not any(r.dst == subnet for r in nl.routes())


def test_detach_move_into_namespace_and_ipv6_route(scratch, nl):
    br, a, b = scratch.name("b"), scratch.name("a"), scratch.name("c")
    nl.create_bridge(br)
    nl.create_veth(a, b)                      # both ends on the host this time
    assert scratch.host_links() == sorted([a, br, b])
    nl.set_master(a, br)
    assert ip("link", "show", "dev", a)[0]["master"] == br
    nl.set_master(a, None)
    assert "master" not in ip("link", "show", "dev", a)[0] and nl.link(a).master is None

    nl.set_netns(b, scratch.fd)
    assert scratch.host_links() == sorted([a, br])
    with Netlink(netns_fd=scratch.fd) as inner:
        assert b in {lk.name for lk in inner.links()}
        inner.set_up(b)
        inner.add_address(b, "fd00:99::2/64")
        inner.add_route("fd00:98::/64", gateway="fd00:99::1", link=b)
        [route] = [r for r in inner.routes(socket.AF_INET6) if str(r.dst) == "fd00:98::/64"]
        assert str(route.gateway) == "fd00:99::1" and route.oif == inner.link_index(b)
        [shown] = ip("-6", "route", "show", "fd00:98::/64", netns=scratch.netns)
        assert (shown["gateway"], shown["dev"]) == ("fd00:99::1", b)
    with pytest.raises(OSError) as e:
        nl.set_netns(b, scratch.fd)
    assert e.value.errno == errno.ENODEV
    nl.delete_link(a)                          # takes b along, inside the namespace
    assert [lk["ifname"] for lk in ip("link", "show", netns=scratch.netns)] == ["lo"]
