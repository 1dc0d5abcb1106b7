"""Forwarding rules for pyd's bridges on a host whose firewall drops
forwarded packets (docs/firewall.md has the why and the caveats).

Where dockerd runs, br_netfilter is loaded, so bridged IPv4 frames pass the
iptables FORWARD hook, and dockerd sets the FORWARD policy to DROP when it
turns ip_forward on. Two containers on one pyd bridge then cannot talk, nor
reach the outside. `Firewall` adds narrow accepts for pyd's own bridges:

- `Firewall.detect()` picks the tool: the `iptables` binary (nf_tables or
  legacy backend) first, since dockerd's DROP lives in the iptables filter
  table and only a rule in that same base chain can accept past it (an nft
  `accept` ends only the base chain it is in; every other base chain on the
  hook still sees the packet). Else `nft`, else none.
- With iptables, pyd keeps its rules in its OWN chains, `PYD-FORWARD`
  (filter) and `PYD-POSTROUTING` (nat), each reached by one jump at the top
  of FORWARD / POSTROUTING. dockerd's chains are never edited, and cleanup
  is exact: delete our rules, the jump and the chain. If the other iptables
  backend's filter table is also in use (legacy tables beside nf_tables, or
  the reverse), the same rules go there too: the kernel runs both.
- With only nft there is no chain of ours that could help: the rules are
  inserted at the top of every existing forward-hook base chain of the ip
  and inet families (e.g. `ip filter FORWARD`, where iptables-nft keeps its
  rules), each tagged with the comment `PYD:<bridge>:<kind>` so that they
  are found and deleted by handle. Outbound NAT goes into pyd's own
  `table ip pyd`, since a masquerade in any nat chain is enough.
- Per bridge BR: `-i BR -o BR` (container to container), `-i BR ! -o BR`
  (outbound), `-o BR` with conntrack RELATED,ESTABLISHED (replies) accept;
  with masquerade, `-s SUBNET ! -o BR -j MASQUERADE`. Nothing lets a new
  connection in from outside.

No tool, a disabled firewall or a failing command never raises: the
daemon still runs, `describe()` says what is missing (for /info), and
`allow_bridge` returns warnings. `enable_ip_forward()` is separate: the
caller decides whether pyd turns forwarding on (dockerd's --ip-forward).
"""

import hashlib
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import threading
from typing import Iterable, List, Optional

from .. import errors

log = logging.getLogger(__name__)

SEARCH_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
TIMEOUT = 10           # seconds for one iptables/nft run
LOCK_WAIT = "5"        # iptables -w: seconds to wait for the xtables lock
BR_NF_CALL_IPTABLES = "/proc/sys/net/bridge/bridge-nf-call-iptables"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
LEGACY_TABLES = "/proc/net/ip_tables_names"   # exists once ip_tables has a table

# A Linux interface name that cannot be read as an option or a negation by
# iptables: no leading '-' or '!', none of '/', ':', whitespace or quotes.
_IFNAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.+-]{0,14}\Z")
_CHAIN = re.compile(r"^[A-Z][A-Z0-9_]{0,15}\Z")


class _ToolFailed(Exception):
    """An iptables/nft run that could not start, timed out or refused."""


def find_tool(name, search_path=None) -> Optional[str]:
    """The path of `name` on `search_path` (a list of directories; default
    $PATH plus the sbin directories, which a daemon's PATH often lacks)."""
    if search_path is None:
        search_path = os.environ.get("PATH", "").split(os.pathsep) + list(SEARCH_DIRS)
    return shutil.which(name, path=os.pathsep.join(d for d in search_path if d))


def read_sysctl(path) -> Optional[str]:
    """The stripped value of a /proc/sys file, None if it does not exist."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def enable_ip_forward(path=IP_FORWARD) -> Optional[str]:
    """Turn IPv4 forwarding on, as dockerd's --ip-forward does; return the
    previous value ("0" or "1"), so the caller can log or restore it. Writes
    only when it was off. Raises OSError if the file cannot be written."""
    before = read_sysctl(path)
    if before != "1":
        with open(path, "w") as f:
            f.write("1\n")
    return before


def chain_for_root(root, default_root="/var/lib/pyd") -> str:
    """The chain prefix for a daemon with data root `root`: "PYD" for the
    default root, "PYD" + 8 hex of the root's sha256 for any other. Two
    daemons on one host (a test daemon beside the real one) then never share
    chains, so one's remove_stale cannot delete the other's rules."""
    if os.path.abspath(root) == os.path.abspath(default_root):
        return "PYD"
    return "PYD" + hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:8].upper()


def _run(argv, check=True):
    """(returncode, stdout, stderr) of argv; _ToolFailed if it cannot run,
    times out, or (with check) exits non-zero."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise _ToolFailed(f"{shlex.join(argv)}: {e}") from None
    if check and p.returncode != 0:
        raise _ToolFailed(f"{shlex.join(argv)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.returncode, p.stdout, p.stderr


def _check_bridge(bridge):
    if not isinstance(bridge, str) or not _IFNAME.match(bridge):
        raise errors.BadParameter(f"invalid bridge name for firewall rules: {bridge!r}")


def _forward_rules(br):
    """The filter rules (after `-A CHAIN`) that let bridge `br` work."""
    return [
        ["-i", br, "-o", br, "-j", "ACCEPT"],
        ["-i", br, "!", "-o", br, "-j", "ACCEPT"],
        ["-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
    ]


def _nft_forward_rules(br):
    """(kind, nft rule text) pairs, the nft spelling of _forward_rules."""
    q = json.dumps(br)     # a quoted nft string: "pyd0"
    return [
        ("local", f"iifname {q} oifname {q} accept"),
        ("out", f"iifname {q} oifname != {q} accept"),
        ("reply", f"oifname {q} ct state related,established accept"),
    ]


_LOCAL_DST = ["-m", "addrtype", "--dst-type", "LOCAL"]


def _dnat(br, proto, host_ip, host_port, target_ip, target_port):
    """The DNAT of a published port; `! -i br` leaves the bridge's own
    traffic (a container calling a published port) to the proxy, and names
    the bridge for remove_bridge."""
    dst = ["-d", f"{host_ip}/32"] if host_ip and host_ip != "0.0.0.0" else []
    return dst + ["!", "-i", br, "-p", proto, "-m", proto, "--dport", str(host_port),
                  "-j", "DNAT", "--to-destination", f"{target_ip}:{target_port}"]


def _port_accept(br, proto, target_ip, target_port):
    return ["-d", f"{target_ip}/32", "!", "-i", br, "-o", br, "-p", proto, "-m", proto,
            "--dport", str(target_port), "-j", "ACCEPT"]


def _local_masquerade(br):
    """Connections from the host's own addresses (127.0.0.1 among them) into
    `br` leave with the bridge's address: a container never sees a loopback
    source, which its replies could not reach."""
    return ["-o", br, "-m", "addrtype", "--src-type", "LOCAL", "-j", "MASQUERADE"]


def _no_localnet_in(br):
    """route_localnet on `br` would let a container send to the host's
    127.0.0.1 services: only replies (to the DNATed connections) may come in
    that way (kube-proxy's rule for CVE-2020-8558)."""
    return ["-i", br, "-d", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED",
            "-j", "DROP"]


def _write_sysctl(path, value):
    with open(path, "w") as f:
        f.write(value)


def _bridges_of(tokens):
    """The interface names a rule from `iptables -S` matches with -i/-o."""
    return {tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("-i", "-o", "--in-interface",
                                                                       "--out-interface")}


class Firewall:
    """pyd's forwarding (and optional masquerade) rules, with one tool.

    Build it with `detect()`. `tool` is "iptables", "nft" or None; `chain`
    names pyd's chains (`<chain>-FORWARD`, `<chain>-POSTROUTING`) and tags
    its nft rules; a test passes its own so it never touches a running
    daemon's rules."""

    def __init__(self, tool=None, iptables=(), nft=None, backend=None, br_netfilter=None,
                 forward_policy=None, reason="", chain="PYD"):
        if not _CHAIN.match(chain):
            raise errors.BadParameter(f"invalid firewall chain prefix: {chain!r}")
        self.tool = tool
        self.iptables = list(iptables)      # every iptables binary to apply to, primary first
        self.nft = nft
        self.backend = backend              # "nf_tables" or "legacy" (primary iptables)
        self.br_netfilter = br_netfilter    # True, False, or None when br_netfilter is absent
        self.forward_policy = forward_policy
        self.reason = reason
        self.chain = chain
        self.fwd_chain = f"{chain}-FORWARD"
        self.nat_chain = f"{chain}-POSTROUTING"
        # Isolation of pyd's networks from each other, dockerd's two stages:
        # ISO1 sends what leaves a pyd bridge for another interface to ISO2,
        # which drops it if that interface is another pyd bridge.
        self.iso1_chain = f"{chain}-ISO1"
        self.iso2_chain = f"{chain}-ISO2"
        # Published ports forwarded by the kernel (publish_port): DNAT in
        # <chain>-DNAT, reached from PREROUTING and OUTPUT for local
        # destinations, as dockerd's DOCKER chain; <chain>-INPUT refuses what
        # route_localnet would otherwise let in from a bridge.
        self.dnat_chain = f"{chain}-DNAT"
        self.input_chain = f"{chain}-INPUT"
        self.nft_table = chain.lower()      # `table ip pyd` for nft masquerade
        self.added = {}                     # bridge -> subnet or None, by this object
        # One change at a time: a -C then -A from two threads would add a rule twice.
        self._lock = threading.RLock()

    # --- detection -------------------------------------------------------

    @classmethod
    def detect(cls, enabled=True, search_path=None, prefer=None, chain="PYD") -> "Firewall":
        """Find the tool and read the host's state; never raises for a
        missing tool. `prefer="nft"` skips iptables (tests of the nft path);
        `search_path` replaces where binaries are looked for."""
        nf = read_sysctl(BR_NF_CALL_IPTABLES)
        br_nf = None if nf is None else nf == "1"
        if not enabled:
            return cls(br_netfilter=br_nf, reason="disabled by configuration", chain=chain)
        ipt = find_tool("iptables", search_path) if prefer != "nft" else None
        nft = find_tool("nft", search_path)
        if ipt:
            return cls._detect_iptables(ipt, nft, br_nf, search_path, chain)
        if nft:
            fw = cls("nft", nft=nft, br_netfilter=br_nf, chain=chain)
            try:
                drops = [f"{c['family']} {c['table']} {c['name']}" for c in fw._nft_forward_chains()
                         if c.get("policy") == "drop"]
                fw.forward_policy = "DROP (" + ", ".join(drops) + ")" if drops else "ACCEPT"
            except _ToolFailed as e:
                log.warning("firewall: cannot list nft chains: %s", e)
                fw.reason = str(e)
            return fw
        dirs = "PATH, " + ", ".join(SEARCH_DIRS) if search_path is None else ", ".join(search_path)
        # Not logged here: the caller logs describe() once, with the rest of its start.
        return cls(br_netfilter=br_nf, reason=f"iptables/nft not found (searched {dirs})", chain=chain)

    @classmethod
    def _detect_iptables(cls, ipt, nft, br_nf, search_path, chain):
        backend, policy = None, None
        try:
            _, out, _ = _run([ipt, "-V"])
            backend = "legacy" if "legacy" in out else "nf_tables" if "nf_tables" in out else None
            _, out, _ = _run([ipt, "-w", LOCK_WAIT, "-S", "FORWARD"])
            for line in out.splitlines():
                if line.startswith("-P FORWARD "):
                    policy = line.split()[2]
        except _ToolFailed as e:
            log.warning("firewall: %s", e)
            reason = str(e)
        else:
            reason = ""
        binaries = [ipt]
        other = _other_backend_in_use(backend, nft, search_path)
        if other:
            binaries.append(other)
        return cls("iptables", iptables=binaries, nft=nft, backend=backend, br_netfilter=br_nf,
                   forward_policy=policy, reason=reason, chain=chain)

    def describe(self) -> str:
        """One line for the log and /info, e.g. "iptables (nf_tables);
        br_netfilter on; FORWARD policy DROP"."""
        nf = {True: "br_netfilter on", False: "br_netfilter off (bridge-nf-call-iptables=0)",
              None: "br_netfilter not loaded"}[self.br_netfilter]
        if self.tool is None:
            return f"none: {self.reason}; {nf}"
        head = self.tool if self.tool == "nft" else f"iptables ({self.backend or 'unknown backend'})"
        if len(self.iptables) > 1:
            head += " + " + ", ".join(os.path.basename(b) for b in self.iptables[1:])
        tail = f"; failing: {self.reason}" if self.reason else ""
        return f"{head}; {nf}; FORWARD policy {self.forward_policy or 'unknown'}{tail}"

    # --- the API ---------------------------------------------------------

    def allow_bridge(self, bridge, subnet, masquerade=False) -> List[str]:
        """Let traffic between ports of `bridge`, out of it, and replies into
        it pass FORWARD; with `masquerade`, NAT `subnet` leaving by another
        interface. Idempotent (a changed subnet replaces the old NAT rule).
        Returns warnings (not logged here); raises only BadParameter for a
        bad name or subnet."""
        _check_bridge(bridge)
        try:
            net = ipaddress.ip_network(subnet, strict=False)
        except (TypeError, ValueError) as e:
            raise errors.BadParameter(f"invalid subnet for firewall rules: {subnet!r}: {e}") from None
        warnings = []
        if masquerade and net.version != 4:
            warnings.append(f"no masquerade for {net}: only IPv4 is handled")
            masquerade = False
        if self.tool is None:
            w = (f"no forwarding rules for {bridge} ({self.reason}): if a firewall drops forwarded "
                 f"packets, its containers cannot reach each other or the outside")
            if masquerade:
                w += f"; no outbound NAT for {net}"
            warnings.append(w)
        else:
            with self._lock:
                try:
                    if self.tool == "iptables":
                        for binary in self.iptables:
                            self._ipt_allow(binary, bridge, str(net) if masquerade else None)
                    else:
                        warnings += self._nft_allow(bridge, str(net) if masquerade else None)
                except _ToolFailed as e:
                    warnings.append(f"firewall rules for {bridge}: {e}")
                self.added[bridge] = str(net) if masquerade else None
        return warnings     # the caller logs them, naming the network

    def can_forward_ports(self) -> bool:
        """Whether publish_port can work: iptables (IPv4) is there and answered."""
        return self.tool == "iptables" and not self.reason

    def publish_port(self, bridge, proto, host_ip, host_port, target_ip, target_port):
        """Let the kernel forward host_ip:host_port (all local addresses for
        0.0.0.0) to target_ip:target_port on `bridge`, loopback included
        (dockerd's --userland-proxy=false): DNAT from PREROUTING and OUTPUT,
        an accept past a FORWARD policy of DROP, and for connections from
        127.0.0.1 route_localnet on the bridge with a masquerade, so that the
        container sees the bridge's address. Packets from the bridge itself
        are left to the userland proxy, which still listens (hairpin).
        Raises _ToolFailed-free OSError/BadParameter only; returns False
        when the tool refused (the proxy then serves the port alone)."""
        _check_bridge(bridge)
        if not self.can_forward_ports() or ipaddress.ip_address(target_ip).version != 4 \
                or (host_ip and ipaddress.ip_address(host_ip).version != 4):
            return False
        with self._lock:
            try:
                for i, binary in enumerate(self.iptables):
                    self._ipt_ensure_chain(binary, "filter", self.fwd_chain, "FORWARD")
                    self._ipt_add(binary, "filter", self.fwd_chain,
                                  _port_accept(bridge, proto, target_ip, target_port))
                    if i:
                        continue  # NAT once: the first nat table to map a connection decides
                    self._ipt_ensure_chain(binary, "nat", self.dnat_chain, None)
                    for parent in ("PREROUTING", "OUTPUT"):
                        self._ipt_jump(binary, "nat", parent, self.dnat_chain, _LOCAL_DST)
                    self._ipt_add(binary, "nat", self.dnat_chain,
                                  _dnat(bridge, proto, host_ip, host_port, target_ip, target_port))
                    self._ipt_ensure_chain(binary, "nat", self.nat_chain, "POSTROUTING")
                    self._ipt_add(binary, "nat", self.nat_chain, _local_masquerade(bridge))
                    self._ipt_ensure_chain(binary, "filter", self.input_chain, "INPUT")
                    self._ipt_add(binary, "filter", self.input_chain, _no_localnet_in(bridge))
                _write_sysctl(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet", "1")
            except (_ToolFailed, OSError) as e:
                log.warning("firewall: no kernel forwarding for %s %s:%s: %s", proto, host_ip or "0.0.0.0",
                            host_port, e)
                self.unpublish_port(bridge, proto, host_ip, host_port, target_ip, target_port)
                return False
        return True

    def remove_ports(self):
        """Delete every published port's rules (the DNAT chain and the
        per-port accepts): at start no container runs yet, so whatever is
        there a killed daemon left, and a stale DNAT would send a port to an
        address that a new container may no longer have."""
        if self.tool != "iptables":
            return
        with self._lock:
            try:
                for binary in self.iptables:
                    for table, chain in (("nat", self.dnat_chain), ("filter", self.fwd_chain)):
                        for tokens in self._ipt_rules(binary, table, chain):
                            if table == "nat" or "--dport" in tokens:
                                self._ipt(binary, table, "-D", chain, *tokens[2:])
            except _ToolFailed as e:
                log.warning("firewall: removing published ports' rules: %s", e)

    def unpublish_port(self, bridge, proto, host_ip, host_port, target_ip, target_port):
        """Undo publish_port (the per-bridge masquerade and INPUT rule stay
        with the bridge: remove_bridge deletes them). Failures are logged."""
        with self._lock:
            for i, binary in enumerate(self.iptables):
                for table, chain, rule in (
                        ("filter", self.fwd_chain, _port_accept(bridge, proto, target_ip, target_port)),
                        ("nat", self.dnat_chain, _dnat(bridge, proto, host_ip, host_port, target_ip, target_port))):
                    if table == "nat" and i:
                        continue
                    try:
                        self._ipt(binary, table, "-D", chain, *rule, check=False)
                    except _ToolFailed as e:
                        log.warning("firewall: %s", e)

    def remove_bridge(self, bridge):
        """Delete every pyd rule that names `bridge` (also ones a crashed
        daemon left). Idempotent; failures are logged."""
        _check_bridge(bridge)
        with self._lock:
            self._remove(lambda br: br == bridge)
            self.added.pop(bridge, None)

    def remove_stale(self, keep: Iterable = ()):
        """Delete pyd's rules for every bridge not in `keep` (what a daemon
        that crashed left behind), then pyd's chains if nothing is left."""
        keep = set(keep)
        with self._lock:
            self._remove(lambda br: br not in keep)
            for br in [b for b in self.added if b not in keep]:
                del self.added[br]
            self._prune()

    def close(self):
        """Delete everything this object added, and pyd's chains (with their
        jumps) once empty."""
        with self._lock:
            for br in list(self.added):
                self.remove_bridge(br)
            self._prune()

    def rules(self) -> List[str]:
        """pyd's current rules as the tool prints them (for logs and tests)."""
        out = []
        try:
            if self.tool == "iptables":
                for binary in self.iptables:
                    for table, chain in self._ipt_chains():
                        out += [f"{table} " + shlex.join(t) for t in self._ipt_rules(binary, table, chain)]
            elif self.tool == "nft":
                for c, r in self._nft_our_rules():
                    out.append(f"{c['family']} {c['table']} {c['name']}: {r.get('comment')}")
        except _ToolFailed as e:
            log.warning("firewall: %s", e)
        return out

    # --- common ----------------------------------------------------------

    def _remove(self, match):
        try:
            if self.tool == "iptables":
                for binary in self.iptables:
                    for table, chain in self._ipt_chains():
                        for tokens in self._ipt_rules(binary, table, chain):
                            if any(match(br) for br in _bridges_of(tokens)):
                                self._ipt(binary, table, "-D", chain, *tokens[2:])
            elif self.tool == "nft":
                for c, r in self._nft_our_rules():
                    if match(r["comment"].split(":")[1]):
                        self._nft_delete(c, r["handle"])
        except _ToolFailed as e:
            log.warning("firewall: removing rules: %s", e)

    def _prune(self):
        try:
            if self.tool == "iptables":
                for binary in self.iptables:
                    for table, chain, parents in (("filter", self.iso1_chain, [self.fwd_chain]),
                                                  ("filter", self.iso2_chain, [self.iso1_chain]),
                                                  ("filter", self.fwd_chain, ["FORWARD"]),
                                                  ("filter", self.input_chain, ["INPUT"]),
                                                  ("nat", self.nat_chain, ["POSTROUTING"]),
                                                  ("nat", self.dnat_chain, ["PREROUTING", "OUTPUT"])):
                        self._ipt_drop_chain(binary, table, chain, parents)
            elif self.tool == "nft":
                self._nft_drop_table()
        except _ToolFailed as e:
            log.warning("firewall: removing pyd chains: %s", e)

    # --- iptables --------------------------------------------------------

    def _ipt_chains(self):
        return (("filter", self.iso1_chain), ("filter", self.iso2_chain), ("filter", self.fwd_chain),
                ("filter", self.input_chain), ("nat", self.nat_chain), ("nat", self.dnat_chain))

    def _ipt(self, binary, table, *args, check=True):
        return _run([binary, "-w", LOCK_WAIT, "-t", table, *args], check=check)

    def _ipt_has_chain(self, binary, table, chain):
        return self._ipt(binary, table, "-S", chain, check=False)[0] == 0

    def _ipt_rules(self, binary, table, chain):
        """The `-A CHAIN ...` lines of `chain` as token lists; [] if no chain."""
        rc, out, _ = self._ipt(binary, table, "-S", chain, check=False)
        if rc != 0:
            return []
        return [shlex.split(line) for line in out.splitlines() if line.startswith("-A ")]

    def _ipt_ensure_chain(self, binary, table, chain, parent):
        if not self._ipt_has_chain(binary, table, chain):
            rc, _, err = self._ipt(binary, table, "-N", chain, check=False)
            if rc != 0 and not self._ipt_has_chain(binary, table, chain):   # not a racing create
                raise _ToolFailed(f"{binary} -t {table} -N {chain}: {err.strip()}")
        if parent is None:
            return  # reached only from rules of its own (ISO2, from ISO1's)
        if self._ipt(binary, table, "-C", parent, "-j", chain, check=False)[0] != 0:
            # At the top, so dockerd's DOCKER-ISOLATION and policy never see pyd's
            # packets first; dockerd re-inserting DOCKER-USER above it is harmless
            # (it only RETURNs unless the admin adds rules, which then apply to pyd too).
            self._ipt(binary, table, "-I", parent, "1", "-j", chain)

    def _ipt_drop_chain(self, binary, table, chain, parents):
        if not self._ipt_has_chain(binary, table, chain) or self._ipt_rules(binary, table, chain):
            return
        for parent in parents:
            # Every jump to the chain, whatever its matches (the DNAT chain's carry addrtype).
            for tokens in self._ipt_rules(binary, table, parent):
                if tokens[-2:] == ["-j", chain]:
                    self._ipt(binary, table, "-D", parent, *tokens[2:], check=False)
        self._ipt(binary, table, "-X", chain)

    def _ipt_add(self, binary, table, chain, rule):
        if self._ipt(binary, table, "-C", chain, *rule, check=False)[0] != 0:
            self._ipt(binary, table, "-A", chain, *rule)

    def _ipt_jump(self, binary, table, parent, chain, match):
        if self._ipt(binary, table, "-C", parent, *match, "-j", chain, check=False)[0] != 0:
            self._ipt(binary, table, "-I", parent, "1", *match, "-j", chain)

    def _ipt_allow(self, binary, bridge, subnet):
        self._ipt_ensure_chain(binary, "filter", self.fwd_chain, "FORWARD")
        self._ipt_ensure_chain(binary, "filter", self.iso1_chain, self.fwd_chain)
        self._ipt_ensure_chain(binary, "filter", self.iso2_chain, None)
        for chain, rule in ((self.iso1_chain, ["-i", bridge, "!", "-o", bridge, "-j", self.iso2_chain]),
                            (self.iso2_chain, ["-o", bridge, "-j", "DROP"])):
            if self._ipt(binary, "filter", "-C", chain, *rule, check=False)[0] != 0:
                self._ipt(binary, "filter", "-A", chain, *rule)
        for rule in _forward_rules(bridge):
            if self._ipt(binary, "filter", "-C", self.fwd_chain, *rule, check=False)[0] != 0:
                self._ipt(binary, "filter", "-A", self.fwd_chain, *rule)
        # NAT: drop rules for this bridge with another subnet (or all, without masquerade).
        for tokens in self._ipt_rules(binary, "nat", self.nat_chain):
            if bridge in _bridges_of(tokens) and (subnet is None or subnet not in tokens):
                self._ipt(binary, "nat", "-D", self.nat_chain, *tokens[2:])
        if subnet is not None:
            self._ipt_ensure_chain(binary, "nat", self.nat_chain, "POSTROUTING")
            rule = ["-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"]
            if self._ipt(binary, "nat", "-C", self.nat_chain, *rule, check=False)[0] != 0:
                self._ipt(binary, "nat", "-A", self.nat_chain, *rule)

    # --- nft -------------------------------------------------------------

    def _nft_json(self, *args):
        _, out, _ = _run([self.nft, "-j", *args])
        return [item for item in json.loads(out or "{}").get("nftables", []) if "metainfo" not in item]

    def _nft_forward_chains(self):
        """Base chains on the forward hook in the ip and inet families."""
        return [i["chain"] for i in self._nft_json("list", "chains")
                if "chain" in i and i["chain"].get("hook") == "forward"
                and i["chain"].get("family") in ("ip", "inet")]

    def _nft_our_chains(self):
        chains = self._nft_forward_chains()
        for i in self._nft_json("list", "chains"):
            c = i.get("chain", {})
            if c.get("family") == "ip" and c.get("table") == self.nft_table and c.get("name") == "postrouting":
                chains.append(c)
        return chains

    def _nft_our_rules(self):
        """(chain, rule) for every rule tagged `<chain>:<bridge>:<kind>`."""
        out = []
        for c in self._nft_our_chains():
            for i in self._nft_json("-a", "list", "chain", c["family"], c["table"], c["name"]):
                r = i.get("rule")
                if r and str(r.get("comment", "")).startswith(self.chain + ":"):
                    out.append((c, r))
        return out

    def _nft_delete(self, c, handle):
        _run([self.nft, "delete", "rule", c["family"], c["table"], c["name"], "handle", str(handle)])

    def _nft_allow(self, bridge, subnet):
        warnings = []
        have = {(c["family"], c["table"], c["name"], r["comment"]): (c, r) for c, r in self._nft_our_rules()}
        for c in self._nft_forward_chains():
            for kind, text in _nft_forward_rules(bridge):
                tag = f"{self.chain}:{bridge}:{kind}"
                if kind == "reply" and (c["family"], c["table"]) == ("ip", "filter"):
                    # iptables-nft's own table: a native `ct state` there makes every
                    # iptables-nft listing fail ("incompatible, use 'nft' tool"), which
                    # would break dockerd; iifname/oifname/comment rules it can read.
                    warnings.append(f"no reply rule for {bridge} in ip filter {c['name']}: replies "
                                    f"from other interfaces into {bridge} may be dropped there")
                    continue
                if (c["family"], c["table"], c["name"], tag) not in have:
                    _run([self.nft, "insert", "rule", c["family"], c["table"], c["name"],
                          text, "comment", json.dumps(tag)])
        tag = f"{self.chain}:{bridge}:masq"
        for key, (c, r) in have.items():
            if key[3] == tag:
                self._nft_delete(c, r["handle"])    # re-added below with the current subnet
        if subnet is not None:
            t = self.nft_table
            _run([self.nft, "add", "table", "ip", t])
            _run([self.nft, "add", "chain", "ip", t, "postrouting",
                  "{ type nat hook postrouting priority 100 ; policy accept ; }"])
            _run([self.nft, "add", "rule", "ip", t, "postrouting", "ip", "saddr", subnet,
                  "oifname", "!=", json.dumps(bridge), "masquerade", "comment", json.dumps(tag)])
        return warnings

    def _nft_drop_table(self):
        """Delete `table ip <chain>` once its postrouting chain holds no rule."""
        if any(c.get("table") == self.nft_table for c in self._nft_our_chains()):
            rules = self._nft_json("list", "chain", "ip", self.nft_table, "postrouting")
            if not any("rule" in i for i in rules):
                _run([self.nft, "delete", "table", "ip", self.nft_table])


def _other_backend_in_use(backend, nft, search_path) -> Optional[str]:
    """The other iptables backend's binary if its filter table exists: the
    kernel runs legacy and nf_tables chains both, so a DROP in either one
    needs pyd's accepts there too."""
    if backend == "nf_tables":
        names = read_sysctl(LEGACY_TABLES) or ""
        if "filter" in names.split():
            return find_tool("iptables-legacy", search_path)
    elif backend == "legacy" and nft:
        try:
            # `table ip filter` is where iptables-nft keeps its filter rules.
            if _run([nft, "list", "table", "ip", "filter"], check=False)[0] == 0:
                return find_tool("iptables-nft", search_path)
        except _ToolFailed:
            pass
    return None
