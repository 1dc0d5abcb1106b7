"""Published ports: what a container asks for, in both surfaces' words, and
the shapes of what it got.

Asked for (resolved at each start, from the stored config):
  - v1.3 PortSpecs: "80" (a random host port), "8080:80", ":80" (the same
    port on both sides), "1.2.3.4:8080:80", each with an optional "/udp";
  - modern HostConfig.PortBindings {"80/tcp": [{"HostIp", "HostPort"}]},
    HostPort "" (random), "8080" or a range "8000-8010" (the first free);
  - PublishAllPorts: every ExposedPorts entry not bound otherwise, random.
Random host ports come from 49153-65535, as in Docker 0.6 (the notes).

Got (while running): {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]},
moby's nat.PortMap, kept in the container's network state.
"""

import ipaddress
import re

from .. import errors

RANDOM_RANGE = (49153, 65535)
_PORT_KEY = re.compile(r"^(\d{1,5})(?:/(tcp|udp|sctp))?\Z")


class Want:
    """One port to publish: container port/proto on host_ip, host ports to
    try in order (None: random)."""

    __slots__ = ("port", "proto", "host_ip", "host_ports")

    def __init__(self, port, proto, host_ip, host_ports):
        self.port, self.proto, self.host_ip, self.host_ports = port, proto, host_ip, host_ports

    @property
    def key(self):
        return f"{self.port}/{self.proto}"

    def __repr__(self):
        return f"Want({self.key} on {self.host_ip or '*'}:{self.host_ports or 'random'})"


def _port(text, what):
    try:
        n = int(text)
    except (TypeError, ValueError):
        n = -1
    if not 0 < n <= 65535 or not str(text).isdigit():
        raise errors.BadParameter(f"invalid {what} port {text!r}")
    return n


def port_key(key):
    """"80", "80/tcp", "53/udp" -> (80, "tcp"/"udp"); BadParameter otherwise."""
    m = _PORT_KEY.match(str(key)) if isinstance(key, (str, int)) else None
    if not m:
        raise errors.BadParameter(f"invalid port specification: {key!r}")
    if m.group(2) == "sctp":
        raise errors.BadParameter(f"invalid port specification: {key!r}: sctp is not supported")
    return _port(m.group(1), "container"), m.group(2) or "tcp"


def host_ports(text):
    """HostPort "" -> None (random); "8080" -> [8080]; "8000-8010" -> the range."""
    if text in (None, ""):
        return None
    text = str(text)
    lo, sep, hi = text.partition("-")
    first = _port(lo, "host")
    last = _port(hi, "host") if sep else first
    if last < first:
        raise errors.BadParameter(f"invalid host port range {text!r}")
    return list(range(first, last + 1))


def _host_ip(text):
    if text in (None, ""):
        return ""
    try:
        return str(ipaddress.ip_address(str(text).strip("[]")))
    except ValueError:
        raise errors.BadParameter(f"invalid host IP {text!r} in a port binding") from None


def parse_port_spec(spec):
    """One v1.3 PortSpec -> Want."""
    if not isinstance(spec, str) or not spec:
        raise errors.BadParameter(f"invalid PortSpec {spec!r}")
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise errors.BadParameter(f"invalid PortSpec {spec!r}: protocol must be tcp or udp")
    parts = body.rsplit(":", 2)
    if len(parts) == 1:
        ip, host, ctr = "", "", parts[0]
    elif len(parts) == 2:
        ip, (host, ctr) = "", parts
    else:
        ip, host, ctr = parts
    port = _port(ctr, "container")
    if len(parts) == 2 and host == "":
        host = ctr  # ":80": the same port on both sides
    return Want(port, proto, _host_ip(ip), host_ports(host))


def check(config, host):
    """Refuse malformed port fields at create (400), so a start cannot fail on them."""
    wanted(config, host)
    for key in (config.get("ExposedPorts") or {}):
        port_key(key)


def wanted(config, host):
    """Every port the container's stored config asks to publish, in order."""
    out = []
    for spec in config.get("PortSpecs") or []:
        out.append(parse_port_spec(spec))
    bindings = host.get("PortBindings") or {}
    if not isinstance(bindings, dict):
        raise errors.BadParameter("PortBindings must be an object of {\"port/proto\": [{HostIp, HostPort}]}")
    bound = set()
    for key, entries in bindings.items():
        port, proto = port_key(key)
        bound.add((port, proto))
        for b in entries or [{}]:
            if not isinstance(b, dict):
                raise errors.BadParameter(f"invalid port binding for {key}: {b!r}")
            out.append(Want(port, proto, _host_ip(b.get("HostIp")), host_ports(b.get("HostPort"))))
    if host.get("PublishAllPorts"):
        for key in config.get("ExposedPorts") or {}:
            port, proto = port_key(key)
            if (port, proto) not in bound:
                out.append(Want(port, proto, "", None))
    return out


def exposed(config):
    """(port, proto) the container exposes (ExposedPorts, PortSpecs)."""
    out = []
    for key in config.get("ExposedPorts") or {}:
        try:
            out.append(port_key(key))
        except errors.BadParameter:
            continue
    for spec in config.get("PortSpecs") or []:
        try:
            w = parse_port_spec(spec)
        except errors.BadParameter:
            continue
        out.append((w.port, w.proto))
    return list(dict.fromkeys(out))


# -- shapes of what was published (a port map) -------------------------------

def port_map_rows(port_map):
    """[(container port, proto, host ip, host port)] of a port map, sorted."""
    rows = []
    for key, entries in (port_map or {}).items():
        port, proto = port_key(key)
        for e in entries or []:
            rows.append((port, proto, e["HostIp"], int(e["HostPort"])))
    return sorted(rows)


def legacy_mapping(port_map):
    """Docker 0.6's PortMapping {"Tcp": {"80": "49153"}, "Udp": {}}."""
    out = {"Tcp": {}, "Udp": {}}
    for port, proto, _, hport in port_map_rows(port_map):
        out["Udp" if proto == "udp" else "Tcp"].setdefault(str(port), str(hport))
    return out


def legacy_string(port_map):
    """The v1.3 list's Ports: "49153->80, 5353->53/udp"."""
    return ", ".join(f"{hport}->{port}" + ("/udp" if proto == "udp" else "")
                     for port, proto, _, hport in port_map_rows(port_map))


def modern_rows(port_map, exposed_ports):
    """The modern list's Ports: published ones with IP and PublicPort, then
    exposed ones that are not published."""
    rows, seen = [], set()
    for port, proto, ip, hport in port_map_rows(port_map):
        rows.append({"IP": ip, "PrivatePort": port, "PublicPort": hport, "Type": proto})
        seen.add((port, proto))
    for port, proto in exposed_ports:
        if (port, proto) not in seen:
            rows.append({"PrivatePort": port, "Type": proto})
    return rows
