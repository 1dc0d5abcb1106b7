"""pyd.network.firewall against the real kernel and the host's iptables/nft
(root). It mirrors a host where dockerd 20.10 runs: br_netfilter passing
bridged frames to iptables (bridge-nf-call-iptables=1), the FORWARD policy
DROP (libnetwork's setupIPForwarding sets it when it turns ip_forward on),
and jumps to a DOCKER-USER-like chain (RETURN) and DOCKER-ISOLATION-like
stages ahead of pyd's. Those chains get scratch names (DKT<tag>-...) so a
real dockerd's are never touched, and the Firewall under test uses its own
chain prefix (PYDT<tag>) so a pyd daemon running beside the test keeps its
rules.

Each test builds a scratch bridge pydfw<tag> in the host namespace with two
veths into two scratch namespaces pydfw-<tag>-1/-2 (10.213.N.2 and .3, N
chosen to overlap no host route; the bridge has no address, so the host
gains no route). Traffic goes only between those namespaces. The bridge-nf
sysctl and the FORWARD policy are restored and every link, namespace and
chain removed in `finally`. iptables-nft may leave its empty `ip filter` /
`ip nat` tables (policy accept) behind: that is what any iptables call does.
"""

import ipaddress
import json
import os
import random
import secrets
import shutil
import subprocess
import sys

import pytest

from pyd.network.firewall import BR_NF_CALL_IPTABLES, Firewall, chain_for_root, enable_ip_forward
from tests.pydtest import require

PORT = 8080
BLOCKED_TIMEOUT = 1.5     # a SYN dropped by FORWARD: the client gives up after this
OPEN_TIMEOUT = 5.0

SERVER = r"""
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"pong")
    c.close()
"""

CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(c.recv(4).decode() or "empty")
except OSError as e:
    print(type(e).__name__)
"""


def run(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def ipt(*args, table="filter", check=True):
    return run("iptables", "-w", "5", "-t", table, *args, check=check)


def free_subnet():
    """10.213.N.0/24 overlapping no route of any table and no host address."""
    taken = []
    for r in json.loads(run("ip", "-j", "-4", "route", "show", "table", "all").stdout or "[]"):
        if r.get("dst") not in (None, "default") and r.get("type", "unicast") in ("unicast", "local"):
            taken.append(ipaddress.ip_network(r["dst"], strict=False))
    for link in json.loads(run("ip", "-j", "-4", "addr").stdout or "[]"):
        for a in link.get("addr_info", []):
            taken.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    thirds = list(range(1, 255))
    random.shuffle(thirds)
    for n in thirds:
        net = ipaddress.ip_network(f"10.213.{n}.0/24")
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    pytest.fail("no free 10.213.N.0/24 on this host")


class Lab:
    """Bridge + two namespaces + a TCP server in the second one."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.bridge = f"pydfw{self.tag}"
        self.ns = [f"pydfw-{self.tag}-1", f"pydfw-{self.tag}-2"]
        self.chain = f"PYDT{self.tag.upper()}"
        self.subnet = free_subnet()
        hosts = list(self.subnet.hosts())
        self.addr = [str(hosts[1]), str(hosts[2])]
        self.server = None

    def build(self):
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "link", "set", self.bridge, "up")
        for i, (ns, addr) in enumerate(zip(self.ns, self.addr)):
            host = f"{self.bridge}{'ab'[i]}"
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "link", "set", host, "master", self.bridge, "up")
            run("ip", "-n", ns, "addr", "add", f"{addr}/{self.subnet.prefixlen}", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[1], sys.executable, "-c", SERVER, self.addr[1], str(PORT)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.server.stdout.readline()      # blocks until bound and listening (or died)
        assert line.strip() == "ready", self.server.stderr.read()

    def probe(self, timeout):
        """What a client in ns1 gets from the server in ns2: "pong", or the
        name of the error (TimeoutError when FORWARD drops the SYN)."""
        p = run("ip", "netns", "exec", self.ns[0], sys.executable, "-c", CLIENT,
                self.addr[1], str(PORT), str(timeout))
        return p.stdout.strip()

    def blocked(self):
        return self.probe(BLOCKED_TIMEOUT) == "TimeoutError"

    def connects(self):
        return self.probe(OPEN_TIMEOUT) == "pong"

    def close(self):
        if self.server:
            self.server.kill()
            self.server.wait(10)
            self.server.stdout.close()
            self.server.stderr.close()
        for i in range(2):
            run("ip", "link", "del", f"{self.bridge}{'ab'[i]}", check=False)
        run("ip", "link", "del", self.bridge, check=False)
        for ns in self.ns:
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def lab():
    lab = Lab()
    try:
        lab.build()
        yield lab
    finally:
        lab.close()
    assert not os.path.exists(f"/sys/class/net/{lab.bridge}")
    assert not any(os.path.exists(f"/run/netns/{ns}") for ns in lab.ns)


def forward_policy():
    for line in ipt("-S", "FORWARD").stdout.splitlines():
        if line.startswith("-P FORWARD "):
            return line.split()[2]
    raise AssertionError("no FORWARD policy in iptables -S")


@pytest.fixture
def docker_like(lab):
    """The host as dockerd 20.10 leaves it: bridge-nf-call-iptables=1,
    FORWARD policy DROP, FORWARD -> USER (RETURN) and -> ISOLATION-1 ->
    ISOLATION-2 (drop into the docker bridge from other bridges). All
    restored afterwards."""
    require(shutil.which("iptables") is not None, "iptables")
    require(os.path.exists(BR_NF_CALL_IPTABLES), "br_netfilter (bridge-nf-call-iptables)")
    with open(BR_NF_CALL_IPTABLES) as f:
        saved_nf = f.read().strip()
    saved_policy = forward_policy()
    d = f"DKT{lab.tag.upper()}"
    user, iso1, iso2, dbr = f"{d}-USER", f"{d}-ISO1", f"{d}-ISO2", f"dkt{lab.tag}"
    try:
        with open(BR_NF_CALL_IPTABLES, "w") as f:
            f.write("1\n")
        for chain in (user, iso1, iso2):
            ipt("-N", chain)
        ipt("-A", user, "-j", "RETURN")
        ipt("-A", iso1, "-i", dbr, "!", "-o", dbr, "-j", iso2)
        ipt("-A", iso1, "-j", "RETURN")
        ipt("-A", iso2, "-o", dbr, "-j", "DROP")
        ipt("-A", iso2, "-j", "RETURN")
        ipt("-A", "FORWARD", "-j", user)
        ipt("-A", "FORWARD", "-j", iso1)
        ipt("-P", "FORWARD", "DROP")
        yield user
    finally:
        ipt("-P", "FORWARD", saved_policy, check=False)
        for chain in (user, iso1):
            for _ in range(4):
                if ipt("-D", "FORWARD", "-j", chain, check=False).returncode:
                    break
        for chain in (user, iso1, iso2):
            ipt("-F", chain, check=False)
        for chain in (user, iso1, iso2):
            ipt("-X", chain, check=False)
        with open(BR_NF_CALL_IPTABLES, "w") as f:
            f.write(saved_nf + "\n")
        assert forward_policy() == saved_policy
    assert d not in ipt("-S").stdout


def pyd_lines(chain):
    """Every iptables -S line (filter and nat) naming the firewall's chains."""
    out = ipt("-S").stdout + ipt("-S", table="nat").stdout
    return [line for line in out.splitlines() if chain in line]


def test_accepts_past_a_docker_like_forward_drop(lab, docker_like):
    user = docker_like
    assert lab.blocked(), "FORWARD DROP should block bridged traffic: the test could not fail"

    fw = Firewall.detect(chain=lab.chain)
    assert fw.tool == "iptables" and fw.forward_policy == "DROP"
    assert fw.br_netfilter is True
    assert fw.describe().startswith("iptables (") and fw.describe().endswith(
        "br_netfilter on; FORWARD policy DROP"), fw.describe()
    try:
        assert fw.allow_bridge(lab.bridge, str(lab.subnet), masquerade=True) == []
        assert lab.connects()
        rules = fw.rules()
        assert fw.allow_bridge(lab.bridge, str(lab.subnet), masquerade=True) == []
        assert fw.rules() == rules, "allow_bridge is not idempotent"
        fwd, nat = f"{lab.chain}-FORWARD", f"{lab.chain}-POSTROUTING"
        iso1, iso2 = f"{lab.chain}-ISO1", f"{lab.chain}-ISO2"
        br, sub = lab.bridge, str(lab.subnet)
        assert set(pyd_lines(lab.chain)) == {
            f"-N {fwd}", f"-A FORWARD -j {fwd}",
            # isolation from pyd's other bridges, checked first (dockerd's two stages)
            f"-N {iso1}", f"-N {iso2}", f"-A {fwd} -j {iso1}",
            f"-A {iso1} -i {br} ! -o {br} -j {iso2}", f"-A {iso2} -o {br} -j DROP",
            f"-A {fwd} -i {br} -o {br} -j ACCEPT",
            f"-A {fwd} -i {br} ! -o {br} -j ACCEPT",
            f"-A {fwd} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-N {nat}", f"-A POSTROUTING -j {nat}",
            f"-A {nat} -s {sub} ! -o {br} -j MASQUERADE",
        }
        assert ipt("-S", "FORWARD").stdout.splitlines()[1] == f"-A FORWARD -j {fwd}", "jump not first"
        assert ipt("-S", fwd).stdout.splitlines()[1] == f"-A {fwd} -j {iso1}", "isolation not first"

        # dockerd (re)starting puts its DOCKER-USER jump back at the top; pyd still works.
        ipt("-D", "FORWARD", "-j", user)
        ipt("-I", "FORWARD", "1", "-j", user)
        assert lab.connects()

        # Without masquerade the NAT rule goes, the forwarding stays.
        assert fw.allow_bridge(lab.bridge, str(lab.subnet)) == []
        assert not [line for line in pyd_lines(lab.chain) if "MASQUERADE" in line]
        assert lab.connects()

        fw.remove_bridge(lab.bridge)
        assert lab.blocked()
        fw.remove_bridge(lab.bridge)          # idempotent
    finally:
        fw.close()
    assert pyd_lines(lab.chain) == [], "close() left pyd chains or jumps"
    fw.close()                                 # twice is harmless
    assert lab.blocked()


def test_remove_stale_cleans_a_crashed_instance(lab, docker_like):
    crashed = Firewall.detect(chain=lab.chain)
    other = f"pydfw{lab.tag}z"                 # a bridge that died with the daemon
    try:
        assert crashed.allow_bridge(lab.bridge, str(lab.subnet), masquerade=True) == []
        assert crashed.allow_bridge(other, "10.213.0.0/24", masquerade=True) == []
        assert lab.connects()
        # The daemon crashes: `crashed` is never closed. The next one starts.
        fresh = Firewall.detect(chain=lab.chain)
        fresh.remove_stale(keep=[lab.bridge])
        left = pyd_lines(lab.chain)
        assert not [line for line in left if other in line], left
        assert [line for line in left if lab.bridge in line]
        assert lab.connects()
        fresh.remove_stale()
        assert pyd_lines(lab.chain) == [], "remove_stale() left pyd chains or jumps"
        assert lab.blocked()
    finally:
        Firewall.detect(chain=lab.chain).remove_stale()
    assert pyd_lines(lab.chain) == []


def test_nft_only_path_accepts_past_an_nft_drop(lab):
    """No iptables (prefer="nft"): a DROP policy in an nft forward base chain
    of someone else's table; pyd's tagged rules inside it let the bridge work."""
    require(shutil.which("nft") is not None, "nft")
    require(os.path.exists(BR_NF_CALL_IPTABLES), "br_netfilter (bridge-nf-call-iptables)")
    with open(BR_NF_CALL_IPTABLES) as f:
        saved_nf = f.read().strip()
    table = f"pydfwt{lab.tag}"
    fw = Firewall.detect(prefer="nft", chain=lab.chain)
    try:
        with open(BR_NF_CALL_IPTABLES, "w") as f:
            f.write("1\n")
        run("nft", "add", "table", "inet", table)
        run("nft", "add", "chain", "inet", table, "forward",
            "{ type filter hook forward priority 0 ; policy drop ; }")
        assert lab.blocked(), "the nft DROP should block bridged traffic: the test could not fail"
        fw = Firewall.detect(prefer="nft", chain=lab.chain)
        assert fw.tool == "nft" and f"inet {table} forward" in fw.forward_policy, fw.describe()
        fw.allow_bridge(lab.bridge, str(lab.subnet), masquerade=True)
        assert lab.connects()
        ours = run("nft", "list", "table", "inet", table).stdout
        assert ours.count(f'comment "{lab.chain}:{lab.bridge}:') == 3, ours
        assert f"ip saddr {lab.subnet}" in run("nft", "list", "table", "ip", lab.chain.lower()).stdout
        if shutil.which("iptables"):
            # Rules it put in iptables-nft's table must stay readable by iptables.
            assert ipt("-S", "FORWARD", check=False).returncode == 0
        fw.remove_bridge(lab.bridge)
        assert lab.blocked()
    finally:
        fw.close()
        run("nft", "delete", "table", "inet", table, check=False)
        with open(BR_NF_CALL_IPTABLES, "w") as f:
            f.write(saved_nf + "\n")
    ruleset = run("nft", "list", "ruleset").stdout
    assert lab.chain not in ruleset and f"table ip {lab.chain.lower()}" not in ruleset


def test_no_tool_degrades_to_warnings(tmp_path):
    fw = Firewall.detect(search_path=[str(tmp_path)], chain="PYDTNONE")
    assert fw.tool is None
    assert fw.describe().startswith(f"none: iptables/nft not found (searched {tmp_path})"), fw.describe()
    warnings = fw.allow_bridge("pyd0", "172.17.0.0/16", masquerade=True)
    assert len(warnings) == 1 and "pyd0" in warnings[0] and "172.17.0.0/16" in warnings[0]
    assert fw.rules() == []
    fw.remove_bridge("pyd0")
    fw.remove_stale()
    fw.close()

    off = Firewall.detect(enabled=False)
    assert off.tool is None and off.describe().startswith("none: disabled by configuration")
    assert off.allow_bridge("pyd0", "172.17.0.0/16") != []


def test_bad_names_are_refused_before_any_tool_runs(tmp_path):
    from pyd import errors
    fw = Firewall.detect(search_path=[str(tmp_path)])
    for bad in ["-j", "!x", "", "a" * 16, "a b", "a/b", "a:b"]:
        with pytest.raises(errors.BadParameter):
            fw.allow_bridge(bad, "10.0.0.0/24")
    with pytest.raises(errors.BadParameter):
        fw.allow_bridge("pyd0", "10.0.0.300/24")
    with pytest.raises(errors.BadParameter):
        Firewall(chain="pyd; rm")


def test_enable_ip_forward_reports_the_previous_value(tmp_path):
    path = tmp_path / "ip_forward"
    path.write_text("0\n")
    assert enable_ip_forward(str(path)) == "0"
    assert path.read_text() == "1\n"
    assert enable_ip_forward(str(path)) == "1"


def test_each_data_root_gets_its_own_chains():
    assert chain_for_root("/var/lib/pyd") == chain_for_root("/var/lib/pyd/") == "PYD"
    a, b = chain_for_root("/tmp/root-a"), chain_for_root("/tmp/root-b")
    assert a != b and a.startswith("PYD") and len(a) == 11
    fw = Firewall(chain=a)
    assert (fw.fwd_chain, fw.nat_chain) == (f"{a}-FORWARD", f"{a}-POSTROUTING")
    assert len(fw.nat_chain) <= 28        # iptables' longest chain name
