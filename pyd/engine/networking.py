"""Networks and the containers on them: the engine's side of pyd/network.

    net = Networking(config, store, events)
    net.start()                      # bridges up, stale links gone, DNS listening
    got = net.attach(c)              # before the container's process starts
    plan.network, plan.netns_fd = got.kind, got.netns_fd
    ...                              # lifecycle.running(c, pid, network=net.state_of(c.id))
    net.release(c.id)                # once it has exited (or failed to start)

A container on a bridge (the default `bridge` network or a user-defined
one) gets a network namespace the daemon makes and wires before the
process starts (pyd/network/netns.py): a veth pair per network, one end
in the namespace as eth0, eth1..., an address from the network's pool, a
default route through the first network's gateway, published ports served
by the userland proxy, and its names in the DNS server of each user
network. All of it is undone when the process exits: the address goes
back to the pool, the veth and the proxy's listeners go, the port is free.

Live state (netns fds, veth names, addresses, bindings) exists only here,
keyed by container id; the record holds the JSON state the API projects
(`state_of`), written with the container's running state and cleared with
its exit.
"""

import errno
import hashlib
import ipaddress
import logging
import random
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .. import errors, timefmt
from ..network import bridge as br, ipam, netns
from ..network.netlink import Netlink
from ..store.networks import NetworkStore, new_id
from . import etcfiles, ports as portspec

log = logging.getLogger(__name__)

PREDEFINED = ("bridge", "host", "none")
BRIDGE_PREFIX = "pyd"        # user networks' bridges: pyd + 12 hex digits of the id
DEFAULT_BRIDGE = "pyd0"


def mode_of(host):
    """HostConfig.NetworkMode, normalised: "host", "none", "container:<ref>",
    or the name of a network ("bridge" for "", "default" and "bridge")."""
    mode = host.get("NetworkMode") or "default"
    if not isinstance(mode, str):
        raise errors.BadParameter(f"invalid NetworkMode {mode!r}")
    if mode == "default":
        return "bridge"
    if mode.startswith("container:") and not mode[len("container:"):]:
        raise errors.BadParameter("invalid NetworkMode container: a container name or id is needed")
    return mode


def networks_of(data):
    """{network name or id: endpoint settings} a container joins at its start:
    what create gave (its NetworkMode's network first) as changed by connect
    and disconnect since, as dockerd keeps it. Records from before networks
    had none: their NetworkMode's network, when it is a bridge-like mode."""
    if "endpoints_config" in data:
        return data["endpoints_config"] or {}
    mode = mode_of(data["host"])
    if mode in ("host", "none") or mode.startswith("container:"):
        return {}
    return {mode: {}}


def initial_endpoints(host, given):
    """At create: the NetworkMode's network first, with its EndpointsConfig
    entry, then the other entries; {} for host, none and container: modes."""
    mode = mode_of(host)
    if mode in ("host", "none") or mode.startswith("container:"):
        return {}
    given = dict(given or {})
    out = {mode: given.pop(mode, None) or {}}
    out.update(given)
    return out


def _veth_name(cid, net_id):
    return br.HOST_PREFIX + hashlib.sha1(f"{cid}:{net_id}".encode()).hexdigest()[:13]


@dataclass
class Endpoint:
    net_id: str
    net_name: str
    veth: str
    inner: str                  # eth0, eth1... inside the namespace
    address: ipaddress.IPv4Address
    aliases: List[str]
    endpoint_id: str

    def state(self, pool):
        iface = pool.interface(self.address)
        return {"NetworkID": self.net_id, "EndpointID": self.endpoint_id,
                "Gateway": str(pool.gateway), "IPAddress": str(self.address),
                "IPPrefixLen": iface.network.prefixlen, "MacAddress": br.mac_for(self.address),
                "Aliases": list(self.aliases) or None}


@dataclass
class Sandbox:
    """One running container's network: its namespace and what is in it."""
    cid: str
    name: str
    kind: str                               # "join", "host" or "none"
    netns_fd: Optional[int] = None
    endpoints: Dict[str, Endpoint] = field(default_factory=dict)   # by network id
    bindings: List[tuple] = field(default_factory=list)           # (proto, host ip, host port)
    forwarded: List[tuple] = field(default_factory=list)          # publish_port's arguments
    port_map: dict = field(default_factory=dict)                   # "80/tcp" -> [{HostIp, HostPort}]
    mode: str = "bridge"
    predefined: Optional[str] = None        # "host" or "none": their events only
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Attached:
    kind: str                   # the plan's network: "join", "host" or "none"
    netns_fd: Optional[int]


class Networking:
    def __init__(self, config, containers, events):
        self.config = config
        self.containers = containers
        self.events = events
        self.store = NetworkStore(config)
        self._lock = threading.RLock()
        self._pools = {}        # network id -> ipam.Pool
        self._sandboxes = {}    # container id -> Sandbox
        self._unplugging = {}   # container id -> the thread deleting its veths (release)
        self._nl = None
        self.proxy = None
        self.dns = None
        self.firewall = None
        self.enabled = False
        self._warned_public = set()

    # -- life ------------------------------------------------------------

    @property
    def bridge_name(self):
        return self.config.bridge or DEFAULT_BRIDGE

    def start(self):
        """Load the network records and bring their bridges up; remove veth
        ends a dead daemon left; listen for DNS on user networks. With
        `-b none` pyd has no bridge: containers get loopback only."""
        self.store.load()
        if self.config.bridge == "none":
            log.info("networking is off (-b none): containers get a loopback-only namespace")
            return
        from ..network.dns import DnsServer
        from ..network.firewall import Firewall, chain_for_root, enable_ip_forward
        from ..network.proxy import Proxy
        self._nl = Netlink()
        self.proxy = Proxy()
        self.dns = DnsServer(self._resolve, self._upstreams(), reverse=self._reverse)
        # Chains named from the data root: two daemons never remove each other's rules.
        self.firewall = Firewall.detect(enabled=self.config.iptables, chain=chain_for_root(self.config.root))
        log.info("firewall: %s", self.firewall.describe())
        for name in br.stale_ends(self._nl):
            log.info("removing veth %s left by a daemon that died", name)
            br.unplug(self._nl, name)
        self._default_bridge()
        self.firewall.remove_stale(keep=[r["bridge"] for r in self.store.all()])
        self.firewall.remove_ports()
        if self.config.ip_forward:
            try:
                if enable_ip_forward() == "0":
                    log.info("net.ipv4.ip_forward set to 1 for containers' outbound traffic "
                             "(--ip-forward=false leaves it)")
            except OSError as e:
                log.warning("could not enable net.ipv4.ip_forward: %s", e)
        for rec in self.store.all():
            self._bring_up(rec)
        self.enabled = True

    def _bring_up(self, rec):
        br.ensure_bridge(self._nl, rec["bridge"], _gateway_iface(rec))
        self._pools[rec["Id"]] = ipam.Pool(rec["subnet"], rec["gateway"])
        for w in self.firewall.allow_bridge(rec["bridge"], rec["subnet"], masquerade=self.config.ip_masq
                                            and not rec.get("Internal")) or []:
            log.warning("%s: %s", rec["bridge"], w)
        if rec["Name"] != "bridge":
            try:
                # Only its own containers may ask: the gateway is a host
                # address that other networks' containers reach too.
                self.dns.listen(rec["Id"], rec["gateway"], subnet=rec["subnet"])
            except OSError as e:
                log.warning("network %s: no DNS for its containers: %s", rec["Name"], e)

    def _default_bridge(self):
        """The `bridge` network's record: its subnet chosen once (overlapping no
        host route, address, nameserver or other network) and kept; --bip,
        or the address an operator's -b bridge already has, wins."""
        try:
            rec = self.store.get("bridge")
        except errors.NotFound:
            rec = None
        name = self.bridge_name
        try:
            self._nl.link(name)
            exists, existing = True, br.bridge_address(self._nl, name)
        except OSError:
            exists, existing = False, None
        ours = rec is not None and rec["bridge"] == name
        if self.config.bip:
            want = ipaddress.ip_interface(self.config.bip)
        elif ours:
            return
        else:
            want = existing
        if ours and rec["subnet"] == str(want.network) and rec["gateway"] == str(want.ip):
            return
        made_before = ours and rec.get("made", True)
        if rec is not None:
            self.store.remove(rec["Id"])
            if not ours and rec.get("made", True):
                br.remove_bridge(self._nl, rec["bridge"])
            elif ours and rec.get("own_address", True):
                try:  # --bip changed: the old address goes with the old record
                    self._nl.delete_address(name, _gateway_iface(rec))
                except OSError:
                    pass
        if want is None:
            subnet = ipam.choose_subnet(self._host_networks(), in_use=[r["subnet"] for r in self.store.all()])
            want = ipaddress.ip_interface(f"{next(subnet.hosts())}/{subnet.prefixlen}")
        rec = self._record("bridge", want.network, want.ip, name, labels={},
                           options={"com.docker.network.bridge.default_bridge": "true",
                                    "com.docker.network.bridge.enable_icc": "true",
                                    "com.docker.network.bridge.enable_ip_masquerade": "true",
                                    "com.docker.network.bridge.host_binding_ipv4": self.config.default_ip,
                                    "com.docker.network.bridge.name": name,
                                    "com.docker.network.driver.mtu": "1500"})
        # An operator's bridge (-b, there before pyd's first start) is kept at
        # shutdown; only an address pyd added to it goes.
        rec["made"] = (not exists) or made_before
        rec["own_address"] = existing is None or want != existing
        self.store.add(rec)

    def _record(self, name, subnet, gateway, bridge_name, labels, options, internal=False, attachable=False,
                net_id=None):
        return {"Id": net_id or new_id(), "Name": name, "Driver": "bridge", "Created": timefmt.now_iso(),
                "subnet": str(subnet), "gateway": str(gateway), "bridge": bridge_name,
                "Labels": labels or {}, "Options": options or {}, "Internal": bool(internal),
                "Attachable": bool(attachable)}

    def _host_networks(self):
        return [r.dst for r in self._nl.routes()] + list(self._nl.addresses()) + \
            [ip for ip, _ in _host_nameservers()]

    def _upstreams(self):
        if self.config.dns_upstream is not None:
            return list(self.config.dns_upstream)
        return _host_nameservers()

    def shutdown(self):
        """Everything pyd made on the host goes: veths (the containers are
        stopped by now), proxies, DNS listeners, firewall rules, bridges."""
        with self._lock:
            left = list(self._sandboxes)
        for cid in left:
            self.release(cid)
        self.wait_unplugged()
        if not self.enabled:
            return
        self.enabled = False
        self.proxy.close()
        self.dns.close()
        for rec in self.store.all():
            self.firewall.remove_bridge(rec["bridge"])
            self._drop_bridge(rec)
        self.firewall.close()
        self._nl.close()

    def _drop_bridge(self, rec):
        """pyd's own bridges go; an operator's -b bridge loses only our address."""
        if not rec.get("made", True):
            if rec.get("own_address"):
                try:
                    self._nl.delete_address(rec["bridge"], _gateway_iface(rec))
                except OSError:
                    pass
            return
        try:
            br.remove_bridge(self._nl, rec["bridge"])
        except OSError as e:
            log.warning("removing bridge %s: %s", rec["bridge"], e)

    # -- networks --------------------------------------------------------

    def get(self, ref):
        """A network's record by name, id or id prefix; host and none are views."""
        if ref in ("host", "none"):
            return self._predefined(ref)
        try:
            return self.store.get(ref)
        except errors.NotFound:
            for name in ("host", "none"):
                if ref and self._predefined(name)["Id"].startswith(ref):
                    return self._predefined(name)
            raise

    def _predefined(self, name):
        return {"Id": hashlib.sha256(f"pyd-{name}-{self.config.root}".encode()).hexdigest(), "Name": name,
                "Driver": name == "host" and "host" or "null", "Created": timefmt.ZERO_TIME,
                "subnet": None, "gateway": None, "bridge": None, "Labels": {}, "Options": {},
                "Internal": False, "Attachable": False}

    def all(self):
        out = self.store.all()
        return out + [self._predefined(n) for n in ("host", "none")]

    def create(self, name, driver=None, subnet=None, gateway=None, labels=None, options=None,
               internal=False, attachable=False):
        if not self.enabled:
            raise errors.Forbidden("networking is off on this daemon (-b none)")
        if driver not in (None, "", "bridge"):
            raise errors.NotFound(f"plugin \"{driver}\" not found")
        if name in PREDEFINED:
            raise errors.Forbidden(f"{name} is a pre-defined network and cannot be created")
        if not name:
            raise errors.BadParameter("network name is required")
        with self._lock:
            in_use = [r["subnet"] for r in self.store.all()]
            if subnet:
                try:
                    net = ipaddress.ip_network(subnet, strict=True)
                except ValueError as e:
                    raise errors.BadParameter(f"invalid subnet {subnet!r}: {e}") from None
                if net.version != 4:
                    raise errors.BadParameter("pyd's networks are IPv4 only")
                if ipam.overlapping(net, in_use):
                    raise errors.Forbidden("Pool overlaps with other one on this address space")
            else:
                net = ipam.choose_subnet(self._host_networks(), in_use=in_use)
            if gateway:
                try:
                    gw = ipaddress.ip_address(gateway)
                except ValueError:
                    raise errors.BadParameter(f"invalid gateway {gateway!r}") from None
                if gw not in net:
                    raise errors.BadParameter(f"gateway {gateway} is not in subnet {net}")
            else:
                gw = next(net.hosts())
            net_id = new_id()
            rec = self._record(name, net, gw, (options or {}).get("com.docker.network.bridge.name")
                               or BRIDGE_PREFIX + net_id[:12], labels, options, internal, attachable, net_id)
            rec = self.store.add(rec)
            try:
                self._bring_up(rec)
            except BaseException:
                self.store.remove(rec["Id"])
                self._drop_bridge(rec)
                raise
        self.events.publish("network", "create", rec["Id"], name=name, type="bridge")
        log.info("network %s created: %s on %s, gateway %s", name, rec["subnet"], rec["bridge"], rec["gateway"])
        return rec

    def delete(self, ref):
        rec = self.get(ref)
        if rec["Name"] in PREDEFINED:
            raise errors.Forbidden(f"{rec['Name']} is a pre-defined network and cannot be removed")
        self.wait_unplugged()  # veths of exited members still on its bridge (not under the lock they take)
        with self._lock:
            users = [s for s in self._sandboxes.values() if rec["Id"] in s.endpoints]
            if users:
                raise errors.Forbidden(f"error while removing network: network {rec['Name']} id {rec['Id']} "
                                       "has active endpoints")
            self.dns.unlisten(rec["Id"])
            self.firewall.remove_bridge(rec["bridge"])
            self._drop_bridge(rec)
            self._pools.pop(rec["Id"], None)
            self.store.remove(rec["Id"])
        self.events.publish("network", "destroy", rec["Id"], name=rec["Name"], type="bridge")

    def in_use(self, net_id):
        with self._lock:
            return any(net_id in s.endpoints for s in self._sandboxes.values())

    def members(self, net_id):
        """{container id: endpoint state} of the running containers on a network."""
        with self._lock:
            pool = self._pools.get(net_id)
            out = {}
            for s in self._sandboxes.values():
                ep = s.endpoints.get(net_id)
                if ep is not None and pool is not None:
                    out[s.cid] = dict(ep.state(pool), Name=s.name)
            return out

    # -- containers --------------------------------------------------------

    def check_create(self, host, endpoints_config):
        """At create: the mode and the named networks must exist (404), as in dockerd."""
        mode = mode_of(host)
        if mode.startswith("container:"):
            self.containers.get(mode[len("container:"):])
        if mode in ("host", "none") or mode.startswith("container:"):
            if endpoints_config and any(n not in (mode,) for n in endpoints_config):
                raise errors.BadParameter("Container cannot be connected to network endpoints")
            return
        if mode != "bridge" or self.enabled:
            self.get(mode)
        for name in endpoints_config or {}:
            self.get(name)

    def attach(self, c):
        """Make the container's network before its process starts."""
        mode = mode_of(c.host)
        if mode.startswith("container:"):
            return self._join_container(c, mode[len("container:"):])
        if mode in ("host", "none") or not self.enabled:
            # No endpoint to make, but dockerd's events: connect now, disconnect at the exit.
            kind = "host" if mode == "host" else "none"
            sb = Sandbox(c.id, c.name, kind, mode=mode, predefined=kind if mode in ("host", "none") else None)
            with self._lock:
                self._sandboxes[c.id] = sb
            if sb.predefined:
                self._predefined_event(sb, "connect")
            return Attached(kind, None)
        self.wait_unplugged(c.id)  # its previous run's veths carry the same names
        nets = []
        for ref in networks_of(c.data):
            rec = self.get(ref)
            if rec["Name"] not in ("host", "none") and all(r["Id"] != rec["Id"] for r in nets):
                nets.append(rec)
        sb = Sandbox(c.id, c.name, "join", netns.new(), mode=mode)
        with self._lock:
            self._sandboxes[c.id] = sb
        try:
            for rec in nets:
                self._plug(sb, rec, c)
            if sb.endpoints:
                primary = next(iter(sb.endpoints.values()))
                self._publish(sb, c, primary.address, self.get(primary.net_id)["bridge"])
                self._write_etc(c, sb)
        except BaseException:
            self.release(c.id)
            raise
        return Attached("join", sb.netns_fd)

    def _join_container(self, c, ref):
        other = self.containers.get(ref)
        if other.id == c.id:
            raise errors.BadParameter("cannot join own network")
        if not other.running or not other.state.get("pid"):
            raise errors.Conflict(f"cannot join network of a non running container: {other.short_id}")
        fd = netns.of_pid(other.state["pid"])
        sb = Sandbox(c.id, c.name, "join", fd, mode=f"container:{other.id}")
        with self._lock:
            self._sandboxes[c.id] = sb
        return Attached("join", fd)

    def _plug(self, sb, rec, c):
        """One endpoint: address, veth pair, DNS names."""
        if rec["Id"] in sb.endpoints:
            raise errors.Forbidden(f"endpoint with name {c.name} already exists in network {rec['Name']}")
        pool = self._pools[rec["Id"]]
        cfgs = networks_of(c.data)
        cfg = cfgs.get(rec["Name"]) or cfgs.get(rec["Id"]) or {}
        want = ((cfg.get("IPAMConfig") or {}).get("IPv4Address") or None)
        try:
            with self._lock:
                address = pool.allocate(c.id, want)
        except (errors.Conflict, errors.Unavailable):
            # Held by a stopped container whose veth is still being deleted
            # (release): wait for those, then ask once more.
            self.wait_unplugged()
            with self._lock:
                address = pool.allocate(c.id, want)
        inner = f"eth{len(sb.endpoints)}"
        veth = _veth_name(c.id, rec["Id"])
        aliases = [a for a in (cfg.get("Aliases") or []) if isinstance(a, str)]
        ep = Endpoint(rec["Id"], rec["Name"], veth, inner, address, aliases, new_id())
        try:
            prefix = ipaddress.ip_network(rec["subnet"]).prefixlen
            br.plug(self._nl, rec["bridge"], sb.netns_fd, veth, inner, f"{address}/{prefix}",
                    gateway=None if sb.endpoints else rec["gateway"], mac=br.mac_for(address))
        except BaseException:
            with self._lock:
                pool.release(address)
            raise
        with self._lock:
            sb.endpoints[rec["Id"]] = ep
        self.events.publish("network", "connect", rec["Id"], container=c.id, name=rec["Name"], type="bridge")
        return ep

    def _unplug(self, sb, ep):
        try:
            br.unplug(self._nl, ep.veth)
        except OSError as e:
            log.warning("removing %s of %s: %s", ep.veth, sb.cid[:12], e)
        with self._lock:
            pool = self._pools.get(ep.net_id)
            if pool is not None:
                pool.release(ep.address)
            sb.endpoints.pop(ep.net_id, None)
        self.events.publish("network", "disconnect", ep.net_id, container=sb.cid, name=ep.net_name, type="bridge")

    def _publish(self, sb, c, address, bridge):
        """Serve every published port; all of them or none (a conflict undoes
        what was bound and fails the start with dockerd's message). The
        proxy's listener holds the port; where the kernel can forward it
        (firewall.publish_port), it does, and the proxy sees only what the
        kernel leaves (docs/proxy.md)."""
        kernel = not self.config.userland_proxy and self.firewall.can_forward_ports()
        for want in portspec.wanted(c.config, c.host):
            host_ip = want.host_ip or self.config.default_ip
            if not ipaddress.ip_address(host_ip).is_loopback and host_ip not in self._warned_public:
                self._warned_public.add(host_ip)
                log.warning("WARNING: published ports on %s are reachable from the network", host_ip)
            port = self._bind(want, host_ip, str(address), c.name)
            sb.bindings.append((want.proto, host_ip, port))
            sb.port_map.setdefault(want.key, []).append({"HostIp": host_ip, "HostPort": str(port)})
            if kernel:
                args = (bridge, want.proto, host_ip, port, str(address), want.port)
                if self.firewall.publish_port(*args):
                    sb.forwarded.append(args)

    def _bind(self, want, host_ip, address, endpoint):
        candidates = want.host_ports or _random_ports()
        last = None
        for port in candidates:
            try:
                return self.proxy.publish(want.proto, host_ip, port, address, want.port)
            except OSError as e:
                last = e
                if e.errno != errno.EADDRINUSE:  # in use: the next candidate may be free
                    break
        what = f"{host_ip}:{candidates[0] if len(candidates) == 1 else f'{candidates[0]}-{candidates[-1]}'}"
        if want.host_ports is None:
            what = f"{host_ip} (random port)"
        reason = "port is already allocated" if last is None or last.errno == errno.EADDRINUSE else last.strerror
        raise errors.PydError(f"driver failed programming external connectivity on endpoint {endpoint} "
                              f"({want.key}): Bind for {what} failed: {reason}")

    def _write_etc(self, c, sb):
        """/etc/hosts names the container by its first address; on a user
        network resolv.conf points at the network's DNS server."""
        primary = next(iter(sb.endpoints.values()))
        rec = self.get(primary.net_id)
        nameserver = rec["gateway"] if rec["Name"] != "bridge" and self.dns is not None else None
        cfg = dict(c.config, **c.host)
        etcfiles.write(c.path, cfg.get("Hostname") or c.short_id, cfg.get("Dns"), cfg.get("ExtraHosts"),
                       cfg.get("DnsSearch"), cfg.get("DnsOptions"), address=str(primary.address),
                       nameserver=nameserver)

    def state_of(self, cid):
        """The JSON state of a running container's network (for its record)."""
        with self._lock:
            sb = self._sandboxes.get(cid)
            if sb is None:
                return None
            eps = {}
            for ep in sb.endpoints.values():
                eps[ep.net_name] = ep.state(self._pools[ep.net_id])
            first = next(iter(sb.endpoints.values()), None)
            bridge = self.store.get(first.net_id)["bridge"] if first is not None else ""
            return {"mode": sb.mode, "endpoints": eps, "bridge": bridge,
                    "ports": {k: list(v) for k, v in sb.port_map.items()}}

    def release(self, cid):
        """The container's process has exited (or never started): undo all of
        its network. Safe to call twice.

        Ports and names go at once. Deleting a veth costs the kernel an RCU
        grace period (~30 ms here), which would double `docker run --rm`:
        the veths go on a thread of their own, and only then their addresses
        go back to the pool, so no address is ever on two links. A new start
        of the same container, a network's removal and shutdown wait for it."""
        with self._lock:
            sb = self._sandboxes.pop(cid, None)
        if sb is None:
            return
        with sb.lock:
            for args in sb.forwarded:
                self.firewall.unpublish_port(*args)
            sb.forwarded.clear()
            for proto, host_ip, port in sb.bindings:
                try:
                    self.proxy.unpublish(proto, host_ip, port)
                except Exception:
                    log.exception("unpublishing %s/%s:%d", proto, host_ip, port)
            sb.bindings.clear()
            eps = list(sb.endpoints.values())
            netns.close(sb.netns_fd)
            sb.netns_fd = None
        if eps:
            t = threading.Thread(target=self._unplug_all, args=(sb, eps), name=f"unplug-{cid[:12]}", daemon=True)
            with self._lock:
                self._unplugging[cid] = t
            t.start()
        if sb.predefined:
            self._predefined_event(sb, "disconnect")

    def _unplug_all(self, sb, eps):
        try:
            for ep in eps:
                self._unplug(sb, ep)
        finally:
            with self._lock:
                if self._unplugging.get(sb.cid) is threading.current_thread():
                    del self._unplugging[sb.cid]

    def wait_unplugged(self, cid=None, timeout=10):
        """Wait for the veths of `cid` (or of every container) to be gone."""
        with self._lock:
            threads = [t for k, t in self._unplugging.items() if cid is None or k == cid]
        for t in threads:
            t.join(timeout)

    def _predefined_event(self, sb, action):
        rec = self._predefined(sb.predefined)
        self.events.publish("network", action, rec["Id"], container=sb.cid, name=rec["Name"],
                            type=rec["Driver"])

    def connect(self, c, ref, config=None):
        """docker network connect: a running container gets the endpoint now,
        a stopped one at its next start."""
        rec = self.get(ref)
        mode = mode_of(c.host)
        if "host" in (mode, rec["Name"]):
            raise errors.Forbidden("container cannot be disconnected from host network or connected to host network")
        if mode == "none" or rec["Name"] == "none" or mode.startswith("container:"):
            raise errors.Forbidden("container sharing network namespace with another container or host "
                                   "cannot be connected to any other network")
        cfgs = dict(networks_of(c.data))
        if any(self._same(n, rec) for n in cfgs):
            raise errors.Forbidden(f"endpoint with name {c.name} already exists in network {rec['Name']}")
        config = config or {}
        cfgs[rec["Name"]] = {"Aliases": list(config.get("Aliases") or []),
                             "IPAMConfig": config.get("IPAMConfig") or None}
        with self._lock:
            sb = self._sandboxes.get(c.id)
        old = c.data.get("endpoints_config")
        c.data["endpoints_config"] = cfgs
        if sb is not None and sb.kind == "join" and not sb.mode.startswith("container:"):
            try:
                with sb.lock:
                    self._plug(sb, rec, c)
            except BaseException:
                if old is None:
                    c.data.pop("endpoints_config", None)
                else:
                    c.data["endpoints_config"] = old
                raise
            return self.state_of(c.id)
        return None

    def disconnect(self, c, ref, force=False):
        rec = self.get(ref)
        mode = mode_of(c.host)
        if "host" in (mode, rec["Name"]):
            raise errors.Forbidden("container cannot be disconnected from host network or connected to host network")
        cfgs = dict(networks_of(c.data))
        names = [n for n in cfgs if self._same(n, rec)]
        with self._lock:
            sb = self._sandboxes.get(c.id)
        ep = sb.endpoints.get(rec["Id"]) if sb is not None else None
        if not names and ep is None:
            raise errors.Forbidden(f"container {c.id} is not connected to network {rec['Name']}")
        for n in names:
            cfgs.pop(n)
        c.data["endpoints_config"] = cfgs
        if ep is not None:
            with sb.lock:
                self._unplug(sb, ep)
            return self.state_of(c.id)
        return None

    def _same(self, ref, rec):
        try:
            return self.get(ref)["Id"] == rec["Id"]
        except errors.NotFound:
            return ref in (rec["Name"], rec["Id"])

    # -- names -------------------------------------------------------------

    def _name(self, sb):
        try:
            return self.containers.get(sb.cid).name  # a rename applies at once, as in dockerd
        except errors.NotFound:
            return sb.name

    def _names(self, sb, ep):
        names = {self._name(sb), sb.cid[:12]} | set(ep.aliases)
        return {n.lower() for n in names if n}

    def _asker_networks(self, net_id, client):
        """The networks of the container at `client` (the query's source on
        `net_id`), as dockerd's resolver answers for all of a container's
        networks; just `net_id` when the asker is not one of ours."""
        for sb in self._sandboxes.values():
            ep = sb.endpoints.get(net_id)
            if ep is not None and str(ep.address) == client:
                return list(sb.endpoints)
        return [net_id]

    def _resolve(self, net_id, qname, client=None):
        """DNS: the addresses of the containers called `qname` (name, short id
        or network alias) on the asker's networks, or None if it is not ours."""
        qname = qname.lower().rstrip(".")
        with self._lock:
            nets = self._asker_networks(net_id, client)
            hits = [str(ep.address) for n in nets for sb in self._sandboxes.values()
                    for ep in [sb.endpoints.get(n)] if ep is not None and qname in self._names(sb, ep)]
        return hits or None

    def _reverse(self, net_id, ip, client=None):
        with self._lock:
            for n in self._asker_networks(net_id, client):
                for sb in self._sandboxes.values():
                    ep = sb.endpoints.get(n)
                    if ep is not None and str(ep.address) == ip:
                        return self._name(sb)
        return None


def _random_ports(tries=64):
    """Candidate random host ports: `tries` distinct ones from the range."""
    lo, hi = portspec.RANDOM_RANGE
    return random.sample(range(lo, hi + 1), tries)


def _gateway_iface(rec):
    return f"{rec['gateway']}/{ipaddress.ip_network(rec['subnet']).prefixlen}"


def _host_nameservers(path="/etc/resolv.conf"):
    from ..network.dns import upstreams_from_resolv_conf
    try:
        with open(path) as f:
            return upstreams_from_resolv_conf(f.read())
    except OSError:
        return []
