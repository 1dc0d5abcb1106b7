"""Address management for bridge networks: pure logic, no I/O.

- `choose_subnet(taken)`: the first of Docker's local default pools that
  overlaps nothing the host already routes or owns.
- `Pool`: the addresses of one subnet, handed out and taken back, kept as
  a JSON-able dict (`to_dict`/`from_dict`) so the store layer can write it
  atomically; this module never writes anything itself.

Errors are pyd meanings: BadParameter for a bad subnet or address,
Conflict for an address in use, Unavailable when nothing is left (moby's
ErrNoAvailableIPs and its "could not find an available, non-overlapping
IPv4 address pool" are unavailable errors too).
"""

import ipaddress
from typing import Iterable, Optional

from .. import errors

# moby's local-scope default address pools, in its order
# (daemon/libnetwork/ipamutils/utils.go): (base, size of each subnet).
# 10.0.0.0/8 split in /24s is moby's *global* (swarm) scope pool, not a
# local one, so a bridge never gets it by default; callers may add it.
DEFAULT_POOLS = (
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)
GLOBAL_POOLS = (("10.0.0.0/8", 24),)


def candidates(pools=DEFAULT_POOLS):
    """Every subnet of `pools`, in order: 172.17.0.0/16, 172.18.0.0/16, ...
    172.31.0.0/16, 192.168.0.0/20, 192.168.16.0/20, ... 192.168.240.0/20."""
    for base, size in pools:
        yield from ipaddress.ip_network(base).subnets(new_prefix=size)


def _networks(taken):
    """The IPv4 networks in `taken` (networks, interfaces, addresses or their
    strings). A default route (prefix 0) is left out: it overlaps every
    subnet, and moby's route check skips it the same way."""
    out = []
    for item in taken:
        if isinstance(item, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
            net = item.network
        elif isinstance(item, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            net = ipaddress.ip_network(item)
        else:
            net = ipaddress.ip_network(item, strict=False)
        if net.version == 4 and net.prefixlen > 0:
            out.append(net)
    return out


def overlapping(subnet, taken: Iterable) -> list:
    """The networks of `taken` that share an address with `subnet`."""
    subnet = ipaddress.ip_network(subnet)
    return [net for net in _networks(taken) if net.overlaps(subnet)]


def choose_subnet(taken: Iterable, pools=DEFAULT_POOLS, in_use: Iterable = ()) -> ipaddress.IPv4Network:
    """The first candidate subnet overlapping neither `taken` (the host's
    routes of the main table and its addresses, e.g. [r.dst for r in
    Netlink().routes()] + nameservers) nor `in_use` (subnets pyd's own
    networks already have)."""
    nets = _networks(list(taken) + list(in_use))
    for subnet in candidates(pools):
        if not any(net.overlaps(subnet) for net in nets):
            return subnet
    raise errors.Unavailable("could not find an available, non-overlapping IPv4 address pool "
                             "among the defaults to assign to the network")


class Pool:
    """The addresses of one IPv4 subnet.

    The network and broadcast addresses are never handed out and the
    gateway (the first host, .1, unless told) is reserved. Allocation gives
    the lowest address that is free and was never released, then released
    addresses oldest first: an address taken back is reused last, so a
    peer's ARP cache or a client's connection to a container just removed
    does not reach a new one. moby's local default IPAM does not do that:
    its bridge requests are not serial (ipamapi.AllocSerialPrefix is set
    only by swarm's cnmallocator), so it gives the lowest free address and
    reuses a released one at once; pyd chooses the safer order, and a
    container's address is no more predictable in Docker than here."""

    def __init__(self, subnet, gateway=None):
        try:
            self.subnet = ipaddress.IPv4Network(subnet)
        except ValueError as e:
            raise errors.BadParameter(f"invalid subnet {subnet}: {e}") from None
        if self.subnet.prefixlen > 30:
            raise errors.BadParameter(f"subnet {self.subnet} is too small: it has no address "
                                      "beside its gateway")
        self.gateway = self._host(gateway, "gateway") if gateway is not None \
            else self.subnet.network_address + 1
        self._allocated = {}   # int address -> owner
        self._released = []    # int addresses, oldest release first

    def _host(self, address, what) -> ipaddress.IPv4Address:
        try:
            ip = ipaddress.IPv4Address(str(address))
        except ValueError:
            raise errors.BadParameter(f"invalid {what} address {address}") from None
        if ip not in self.subnet:
            raise errors.BadParameter(f"{what} address {ip} is not in subnet {self.subnet}")
        if ip in (self.subnet.network_address, self.subnet.broadcast_address):
            raise errors.BadParameter(f"{what} address {ip} is the network or broadcast address "
                                      f"of {self.subnet}")
        return ip

    def allocate(self, owner: str, address=None) -> ipaddress.IPv4Address:
        """An address for `owner` (a container or endpoint id): `address` if
        given and free, else the next one in the order above."""
        if address is not None:
            ip = self._host(address, "requested")
            if ip == self.gateway:
                raise errors.Conflict(f"address {ip} is the gateway of {self.subnet}")
            if int(ip) in self._allocated:
                raise errors.Conflict(f"address {ip} is already in use")
            return self._take(int(ip), owner)
        released = set(self._released)
        first = int(self.subnet.network_address) + 1
        last = int(self.subnet.broadcast_address) - 1
        gw = int(self.gateway)
        for n in range(first, last + 1):
            if n != gw and n not in self._allocated and n not in released:
                return self._take(n, owner)
        if self._released:
            return self._take(self._released[0], owner)
        raise errors.Unavailable(f"no available addresses on network {self.subnet}")

    def _take(self, n: int, owner: str) -> ipaddress.IPv4Address:
        self._allocated[n] = owner
        if n in self._released:
            self._released.remove(n)
        return ipaddress.IPv4Address(n)

    def release(self, address) -> bool:
        """Take `address` back; False if it was not allocated."""
        n = int(ipaddress.IPv4Address(str(address)))
        if self._allocated.pop(n, None) is None:
            return False
        self._released.append(n)
        return True

    def owner(self, address) -> Optional[str]:
        return self._allocated.get(int(ipaddress.IPv4Address(str(address))))

    def allocated(self) -> dict:
        """{address: owner}, lowest address first."""
        return {ipaddress.IPv4Address(n): o for n, o in sorted(self._allocated.items())}

    def interface(self, address) -> ipaddress.IPv4Interface:
        """`address` with the subnet's prefix, as netlink's add_address wants it."""
        return ipaddress.IPv4Interface((ipaddress.IPv4Address(str(address)), self.subnet.prefixlen))

    def to_dict(self) -> dict:
        return {"Subnet": str(self.subnet), "Gateway": str(self.gateway),
                "Allocated": {str(ipaddress.IPv4Address(n)): o for n, o in sorted(self._allocated.items())},
                "Released": [str(ipaddress.IPv4Address(n)) for n in self._released]}

    @classmethod
    def from_dict(cls, data: dict) -> "Pool":
        """The pool `to_dict` wrote; BadParameter if the record is not one."""
        try:
            pool = cls(data["Subnet"], data["Gateway"])
            allocated, released = data.get("Allocated", {}), data.get("Released", [])
            if not isinstance(allocated, dict) or not isinstance(released, list):
                raise TypeError("Allocated must be an object and Released a list")
            for addr, owner in allocated.items():
                if not isinstance(owner, str):
                    raise TypeError(f"owner of {addr} is not a string")
                pool.allocate(owner, addr)
            for addr in released:
                n = int(pool._host(addr, "released"))
                if n in pool._allocated or n in pool._released:
                    raise ValueError(f"released address {addr} is also in use or listed twice")
                pool._released.append(n)
        except errors.PydError as e:
            raise errors.BadParameter(f"bad address pool record: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise errors.BadParameter(f"bad address pool record: {e!r}") from None
        return pool
