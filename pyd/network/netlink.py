"""A small rtnetlink client: links, bridges, veth pairs, addresses and
routes, spoken over AF_NETLINK/NETLINK_ROUTE with struct-packed messages
(no `ip` binary). Every request asks for an ACK; an error reply becomes
OSError(errno, "<what>: <object>"), e.g. OSError(EEXIST, "create bridge: pyd0").

A `Netlink` owns one socket. `Netlink(netns_fd=fd)` owns a socket created
inside the network namespace open at `fd` (e.g. /proc/<pid>/ns/net): a
netlink socket keeps the namespace it was created in for its whole life,
so once made it works from any thread (see `route_socket`).
"""

import errno
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Optional, Union

from .. import native


CLONE_NEWNET = 0x40000000  # os.CLONE_NEWNET only from Python 3.12

# <linux/netlink.h>
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLA_TYPE_MASK = 0x3FFF
NLA_F_NESTED = 0x8000

# <linux/rtnetlink.h>
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

# <linux/if_link.h>
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1

# <linux/if_addr.h>
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
IFA_F_NODAD = 0x02

# routes
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1

IFF_UP = 0x1
IFNAMSIZ = 16

_NLMSGHDR = struct.Struct("=IHHII")     # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")   # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")    # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")    # family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")          # len, type
_RECV_SIZE = 1 << 17   # a dump's datagrams are at most 32 KiB; one answer fits
_DUMP_TRIES = 3


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    kind: Optional[str]      # "bridge", "veth"...; None for a plain device (lo, eth0 of hardware)
    flags: int               # IFF_* bits
    master: Optional[int]    # index of the bridge it is attached to
    mtu: Optional[int]
    address: Optional[str]   # MAC as aa:bb:cc:dd:ee:ff

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


@dataclass(frozen=True)
class Route:
    dst: Union[ipaddress.IPv4Network, ipaddress.IPv6Network]   # 0.0.0.0/0 for the default route
    gateway: Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]
    oif: Optional[int]                   # output link index
    protocol: int
    scope: int
    type: int
    table: int


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    head = _RTATTR.pack(_RTATTR.size + len(payload), kind)
    data = head + payload
    return data + b"\0" * (_align(len(data)) - len(data))


def _nested(kind: int, *attrs: bytes) -> bytes:
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def _strz(value: str) -> bytes:
    return value.encode() + b"\0"


def _attrs(data: bytes, offset: int = 0):
    """(type, payload) for each attribute in data[offset:]."""
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        yield kind & NLA_TYPE_MASK, data[offset + _RTATTR.size:offset + length]
        offset += _align(length)


def _cstr(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode(errors="replace")


def _u32(payload: bytes) -> int:
    return struct.unpack("=I", payload[:4])[0]


def _mac(payload: bytes) -> str:
    return ":".join(f"{b:02x}" for b in payload)


def _check_name(name: str, what: str):
    # The kernel answers a bad name with a bare EINVAL; say which name.
    if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name) \
            or name in (".", ".."):
        raise OSError(errno.EINVAL, f"{what}: {name!r} (an interface name is 1-15 bytes, "
                                    "no '/' or whitespace)")


def route_socket(netns_fd: Optional[int] = None) -> socket.socket:
    """A NETLINK_ROUTE socket, in the network namespace open at `netns_fd`
    if given (else in the caller's).

    Python 3.11 has no os.setns, and setns would move the whole daemon if
    it applied to the process. It does not: Linux keeps the network
    namespace per thread (task), and setns(CLONE_NEWNET) is allowed in a
    multithreaded process; only mount and user namespaces refuse setns
    there (EINVAL), because they are shared by the threads' fs/cred state.
    So a short-lived thread of our own joins the target namespace, creates
    the socket (which keeps that namespace for its whole life), and joins
    the daemon's namespace again before it ends. Nothing else runs on that
    thread, so no other code ever sees the foreign namespace. If going back
    failed, the thread still ends (and its namespace with it), but we raise
    rather than hand out a socket made under doubtful conditions."""
    if netns_fd is None:
        return _new_socket()
    out = {}

    def run():
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            native.setns(netns_fd, CLONE_NEWNET)
            try:
                out["sock"] = _new_socket()
            except OSError as e:
                out["error"] = e
            finally:
                try:
                    native.setns(own, CLONE_NEWNET)
                except OSError as e:
                    out["back"] = e
        except OSError as e:
            out["error"] = OSError(e.errno, f"enter network namespace: fd {netns_fd}")
        finally:
            os.close(own)

    t = threading.Thread(target=run, name="pyd-netns-socket", daemon=True)
    t.start()
    t.join()
    if "back" in out:
        if "sock" in out:
            out["sock"].close()
        raise OSError(out["back"].errno, "return to the daemon's network namespace: "
                                         f"{out['back'].strerror}")
    if "error" in out:
        raise out["error"]
    return out["sock"]


def _new_socket() -> socket.socket:
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        s.bind((0, 0))
    except OSError:
        s.close()
        raise
    return s


class Netlink:
    """One rtnetlink socket; requests are serialised on it (thread-safe)."""

    def __init__(self, netns_fd: Optional[int] = None):
        self._sock = route_socket(netns_fd)
        self._lock = threading.Lock()
        self._seq = 0

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- transport -----------------------------------------------------

    def _request(self, kind: int, flags: int, body: bytes, what: str, obj) -> list:
        """Send one request; the (type, payload) messages of the answer.
        A dump is read to NLMSG_DONE (and asked again if the kernel says the
        table changed while it was dumped); any other request to its ACK."""
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        for _ in range(_DUMP_TRIES if dump else 1):
            out, interrupted = self._exchange(kind, flags, body, what, obj, dump)
            if not interrupted:
                return out
        raise OSError(errno.EAGAIN, f"{what}: {obj} (the dump kept changing)")

    def _exchange(self, kind, flags, body, what, obj, dump):
        with self._lock:
            self._seq += 1
            seq = self._seq
            ack = 0 if dump else NLM_F_ACK   # a dump ends with NLMSG_DONE instead
            msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | ack | flags,
                                 seq, 0) + body
            self._sock.send(msg)
            out, interrupted = [], False
            while True:
                data, _, msg_flags, _ = self._sock.recvmsg(_RECV_SIZE)
                if msg_flags & socket.MSG_TRUNC:
                    raise OSError(errno.EMSGSIZE, f"{what}: {obj} (netlink answer over {_RECV_SIZE} bytes)")
                offset = 0
                while offset + _NLMSGHDR.size <= len(data):
                    length, mtype, mflags, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                    if length < _NLMSGHDR.size:
                        raise OSError(errno.EPROTO, f"{what}: {obj} (short netlink message)")
                    payload = data[offset + _NLMSGHDR.size:offset + length]
                    offset += _align(length)
                    if mseq != seq:
                        continue  # the rest of an earlier request that raised midway
                    interrupted |= bool(mflags & NLM_F_DUMP_INTR)
                    if mtype == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", payload)[0]
                        if code:
                            raise OSError(code, f"{what}: {obj}")
                        return out, interrupted  # the ACK
                    if mtype == NLMSG_DONE:
                        return out, interrupted
                    out.append((mtype, payload))

    def _link_request(self, kind, flags, index, attrs, what, obj, ifi_flags=0, change=0, ifi_type=0):
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, ifi_type, index, ifi_flags, change) + b"".join(attrs)
        return self._request(kind, flags, body, what, obj)

    def _index(self, link, what: str) -> int:
        if isinstance(link, int):
            return link
        try:
            return self.link_index(link)
        except OSError as e:
            raise OSError(e.errno, f"{what}: {link}") from None

    # --- links ---------------------------------------------------------

    def link_index(self, name: str) -> int:
        _check_name(name, "link")
        answer = self._link_request(RTM_GETLINK, 0, 0, [_attr(IFLA_IFNAME, _strz(name))], "link", name)
        for mtype, payload in answer:
            if mtype == RTM_NEWLINK:
                return _IFINFOMSG.unpack_from(payload)[2]
        raise OSError(errno.ENODEV, f"link: {name}")

    def link(self, link) -> Link:
        """The Link named (str) or indexed (int) `link`; ENODEV if none."""
        if isinstance(link, str):
            _check_name(link, "link")
            answer = self._link_request(RTM_GETLINK, 0, 0, [_attr(IFLA_IFNAME, _strz(link))], "link", link)
        else:
            answer = self._link_request(RTM_GETLINK, 0, link, [], "link", link)
        for mtype, payload in answer:
            if mtype == RTM_NEWLINK:
                return _parse_link(payload)
        raise OSError(errno.ENODEV, f"link: {link}")

    def links(self) -> list:
        return [_parse_link(p) for t, p in self._link_request(RTM_GETLINK, NLM_F_DUMP, 0, [], "list links", "all")
                if t == RTM_NEWLINK]

    def create_bridge(self, name: str):
        _check_name(name, "create bridge")
        self._link_request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0,
                           [_attr(IFLA_IFNAME, _strz(name)),
                            _nested(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"bridge"))],
                           "create bridge", name)

    def create_veth(self, host_name: str, peer_name: str, peer_netns_fd: Optional[int] = None):
        """A veth pair: `host_name` here, `peer_name` here too or, with
        `peer_netns_fd`, created directly inside that network namespace
        (so the peer's name never has to be free on the host)."""
        _check_name(host_name, "create veth")
        _check_name(peer_name, "create veth peer")
        peer_attrs = [_attr(IFLA_IFNAME, _strz(peer_name))]
        if peer_netns_fd is not None:
            peer_attrs.append(_attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd)))
        peer = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + b"".join(peer_attrs)
        info = _nested(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"veth"),
                       _nested(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer)))
        self._link_request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0,
                           [_attr(IFLA_IFNAME, _strz(host_name)), info],
                           "create veth", f"{host_name}/{peer_name}")

    def set_master(self, link, bridge):
        """Attach `link` to `bridge`; bridge None detaches it."""
        index = self._index(link, "set master")
        master = 0 if bridge is None else self._index(bridge, "set master")
        self._link_request(RTM_SETLINK, 0, index, [_attr(IFLA_MASTER, struct.pack("=I", master))],
                           "set master", f"{link} -> {bridge}")

    def set_up(self, link):
        index = self._index(link, "set up")
        self._link_request(RTM_SETLINK, 0, index, [], "set up", link, ifi_flags=IFF_UP, change=IFF_UP)

    def set_down(self, link):
        index = self._index(link, "set down")
        self._link_request(RTM_SETLINK, 0, index, [], "set down", link, ifi_flags=0, change=IFF_UP)

    def rename(self, link, newname: str):
        """Rename a link (the kernel wants it down: EBUSY otherwise)."""
        _check_name(newname, "rename")
        index = self._index(link, "rename")
        self._link_request(RTM_SETLINK, 0, index, [_attr(IFLA_IFNAME, _strz(newname))],
                           "rename", f"{link} -> {newname}")

    def set_mac(self, link, mac: str):
        raw = bytes(int(part, 16) for part in mac.split(":"))
        if len(raw) != 6:
            raise OSError(errno.EINVAL, f"set mac: {mac}")
        index = self._index(link, "set mac")
        self._link_request(RTM_SETLINK, 0, index, [_attr(IFLA_ADDRESS, raw)], "set mac", f"{link} {mac}")

    def set_mtu(self, link, mtu: int):
        index = self._index(link, "set mtu")
        self._link_request(RTM_SETLINK, 0, index, [_attr(IFLA_MTU, struct.pack("=I", mtu))],
                           "set mtu", f"{link} {mtu}")

    def set_netns(self, link, netns_fd: int):
        """Move an existing link into the network namespace open at `netns_fd`."""
        index = self._index(link, "set netns")
        self._link_request(RTM_SETLINK, 0, index, [_attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))],
                           "set netns", link)

    def delete_link(self, link):
        """Delete a link (a veth takes its peer with it)."""
        if isinstance(link, str):
            _check_name(link, "delete link")
            self._link_request(RTM_DELLINK, 0, 0, [_attr(IFLA_IFNAME, _strz(link))], "delete link", link)
        else:
            self._link_request(RTM_DELLINK, 0, link, [], "delete link", link)

    # --- addresses -----------------------------------------------------

    def _addr_body(self, index, iface):
        fam = socket.AF_INET if iface.version == 4 else socket.AF_INET6
        packed = iface.ip.packed
        attrs = [_attr(IFA_LOCAL, packed), _attr(IFA_ADDRESS, packed)]
        flags = 0
        if iface.version == 4:
            if iface.network.prefixlen < 31:
                attrs.append(_attr(IFA_BROADCAST, iface.network.broadcast_address.packed))
        else:
            flags = IFA_F_NODAD  # no duplicate detection: the address is usable at once
        return _IFADDRMSG.pack(fam, iface.network.prefixlen, flags, RT_SCOPE_UNIVERSE, index) + b"".join(attrs)

    def add_address(self, link, address):
        """Add `address` ("172.17.0.1/16" or an ipaddress interface) to `link`."""
        iface = ipaddress.ip_interface(address)
        index = self._index(link, "add address")
        self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, self._addr_body(index, iface),
                      "add address", f"{iface} dev {link}")

    def delete_address(self, link, address):
        iface = ipaddress.ip_interface(address)
        index = self._index(link, "delete address")
        self._request(RTM_DELADDR, 0, self._addr_body(index, iface), "delete address", f"{iface} dev {link}")

    def addresses(self, link=None, family: int = socket.AF_UNSPEC) -> list:
        """The addresses (ipaddress interfaces) of `link`, or of every link."""
        index = None if link is None else self._index(link, "list addresses")
        body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
        out = []
        for mtype, payload in self._request(RTM_GETADDR, NLM_F_DUMP, body, "list addresses", link or "all"):
            if mtype != RTM_NEWADDR:
                continue
            fam, prefixlen, _, _, ifindex = _IFADDRMSG.unpack_from(payload)
            if index is not None and ifindex != index:
                continue
            attrs = dict(_attrs(payload, _IFADDRMSG.size))
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw:
                out.append(ipaddress.ip_interface((ipaddress.ip_address(raw), prefixlen)))
        return out

    def flush_addresses(self, link, family: int = socket.AF_UNSPEC):
        """Remove every address of `link` (of `family`, if given)."""
        for iface in self.addresses(link, family):
            if iface.version == 6 and iface.ip.is_link_local:
                continue  # the kernel's own fe80::, given back at once anyway
            self.delete_address(link, iface)

    # --- routes --------------------------------------------------------

    def add_route(self, dst=None, gateway=None, link=None, table: int = RT_TABLE_MAIN):
        """A route to `dst` (a network; None or "default" for the default
        route) via `gateway` and/or out of `link`."""
        net = None if dst in (None, "default") else ipaddress.ip_network(dst)
        gw = None if gateway is None else ipaddress.ip_address(gateway)
        version = (net or gw).version if (net or gw) else 4
        if net is None:
            net = ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")
        fam = socket.AF_INET if version == 4 else socket.AF_INET6
        scope = RT_SCOPE_UNIVERSE if gw is not None else RT_SCOPE_LINK
        attrs = [_attr(RTA_TABLE, struct.pack("=I", table))]
        if net.prefixlen:
            attrs.append(_attr(RTA_DST, net.network_address.packed))
        if gw is not None:
            attrs.append(_attr(RTA_GATEWAY, gw.packed))
        if link is not None:
            attrs.append(_attr(RTA_OIF, struct.pack("=I", self._index(link, "add route"))))
        body = _RTMSG.pack(fam, net.prefixlen, 0, 0, table if table < 256 else 252, RTPROT_BOOT, scope,
                           RTN_UNICAST, 0) + b"".join(attrs)
        what = f"{net}" + (f" via {gw}" if gw else "") + (f" dev {link}" if link is not None else "")
        self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, "add route", what)

    def routes(self, family: int = socket.AF_INET, table: int = RT_TABLE_MAIN) -> list:
        """The routes of `table` (main by default): what a new bridge's
        subnet must not overlap."""
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        out = []
        for mtype, payload in self._request(RTM_GETROUTE, NLM_F_DUMP, body, "list routes", "all"):
            if mtype != RTM_NEWROUTE:
                continue
            fam, dst_len, _, _, rtable, protocol, scope, rtype, _ = _RTMSG.unpack_from(payload)
            attrs = dict(_attrs(payload, _RTMSG.size))
            if RTA_TABLE in attrs:
                rtable = _u32(attrs[RTA_TABLE])
            if rtable != table:
                continue
            if RTA_DST in attrs:
                dst = ipaddress.ip_network((ipaddress.ip_address(attrs[RTA_DST]), dst_len), strict=False)
            else:
                dst = ipaddress.ip_network("0.0.0.0/0" if fam == socket.AF_INET else "::/0")
            gw = ipaddress.ip_address(attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None
            oif = _u32(attrs[RTA_OIF]) if RTA_OIF in attrs else None
            out.append(Route(dst, gw, oif, protocol, scope, rtype, rtable))
        return out


def _parse_link(payload: bytes) -> Link:
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(payload)
    name = kind = master = mtu = address = None
    for kind_, data in _attrs(payload, _IFINFOMSG.size):
        if kind_ == IFLA_IFNAME:
            name = _cstr(data)
        elif kind_ == IFLA_MASTER:
            master = _u32(data) or None
        elif kind_ == IFLA_MTU:
            mtu = _u32(data)
        elif kind_ == IFLA_ADDRESS:
            address = _mac(data)
        elif kind_ == IFLA_LINKINFO:
            for k, d in _attrs(data):
                if k == IFLA_INFO_KIND:
                    kind = _cstr(d)
    return Link(name, index, kind, flags, master, mtu, address)
