"""Bridges and the veth pairs that put containers on them, over rtnetlink.

    ensure_bridge(nl, "pyd0", "172.18.0.1/16")     # made, addressed, up
    plug(nl, "pyd0", netns_fd, "pv1a2b3c4d5e6f7", "eth0", "172.18.0.2/16",
         gateway="172.18.0.1", mac=mac_for("172.18.0.2"))
    unplug(nl, "pv1a2b3c4d5e6f7")

The container end is created straight inside the namespace under its final
name (IFLA_NET_NS_FD on the peer), so no temporary name on the host has to
be free and nothing is renamed. The host end's name is the caller's: pyd
derives it from the container and network ids (HOST_PREFIX), so stale ends
can be told from anyone else's links.
"""

import errno
import ipaddress

from .netlink import Netlink

HOST_PREFIX = "pv"   # host ends of pyd's veth pairs: pv + 13 hex digits


def mac_for(address):
    """Docker's MAC for a container address: 02:42 and the IPv4 bytes, so the
    ARP entry of a reused address stays right."""
    ip = ipaddress.IPv4Address(str(address))
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def ensure_bridge(nl: Netlink, name, gateway_iface):
    """The bridge `name` exists, holds `gateway_iface` ("a.b.c.d/n") and is up.
    An existing bridge (pyd's from before a restart, or the operator's own,
    given with -b) is used as it is; only a missing address is added."""
    iface = ipaddress.ip_interface(gateway_iface)
    try:
        link = nl.link(name)
    except OSError as e:
        if e.errno != errno.ENODEV:
            raise
        nl.create_bridge(name)
        link = nl.link(name)
    else:
        if link.kind != "bridge":
            raise OSError(errno.EEXIST, f"bridge {name}: a link of that name exists and is a {link.kind or 'device'}")
    if iface not in nl.addresses(name):
        try:
            nl.add_address(name, iface)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
    if not link.up:
        nl.set_up(name)


def bridge_address(nl: Netlink, name):
    """The first IPv4 address (an interface) the bridge holds, or None."""
    for iface in nl.addresses(name):
        if iface.version == 4:
            return iface
    return None


def plug(nl: Netlink, bridge, netns_fd, host_name, inner_name, iface, gateway=None, mac=None, mtu=None):
    """A veth pair from `bridge` into the namespace at `netns_fd`: the inner
    end named `inner_name` with address `iface` (and a default route via
    `gateway`, for the container's first network). On failure the pair is
    removed again, so nothing is left half-made."""
    nl.create_veth(host_name, inner_name, peer_netns_fd=netns_fd)
    try:
        if mtu:
            nl.set_mtu(host_name, mtu)
        nl.set_master(host_name, bridge)
        nl.set_up(host_name)
        with Netlink(netns_fd=netns_fd) as inner:
            if mac:
                inner.set_mac(inner_name, mac)
            if mtu:
                inner.set_mtu(inner_name, mtu)
            inner.add_address(inner_name, iface)
            inner.set_up(inner_name)
            inner.set_up("lo")
            if gateway is not None:
                inner.add_route(None, gateway=gateway, link=inner_name)
    except BaseException:
        unplug(nl, host_name)
        raise


def unplug(nl: Netlink, host_name):
    """Remove a veth pair by its host end (the peer goes with it); True if it
    was there."""
    try:
        nl.delete_link(host_name)
        return True
    except OSError as e:
        if e.errno in (errno.ENODEV, errno.ENOENT):
            return False
        raise


def remove_bridge(nl: Netlink, name):
    try:
        nl.delete_link(name)
    except OSError as e:
        if e.errno not in (errno.ENODEV, errno.ENOENT):
            raise


def stale_ends(nl: Netlink, keep=()):
    """Host ends of pyd veth pairs (HOST_PREFIX) not in `keep`."""
    return [l.name for l in nl.links()
            if l.kind == "veth" and l.name.startswith(HOST_PREFIX) and l.name not in keep]
