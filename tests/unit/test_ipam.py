"""pyd.network.ipam: subnet choice against the host's routes, the order
addresses are handed out in, exhaustion, and the record's round trip."""

import ipaddress
import json

import pytest

from pyd import errors
from pyd.network import ipam

A = ipaddress.IPv4Address
N = ipaddress.IPv4Network


def test_candidates_follow_mobys_local_pools_in_order():
    subnets = list(ipam.candidates())
    assert subnets[:4] == [N("172.17.0.0/16"), N("172.18.0.0/16"), N("172.19.0.0/16"), N("172.20.0.0/16")]
    assert subnets[14] == N("172.31.0.0/16")
    assert subnets[15:17] == [N("192.168.0.0/20"), N("192.168.16.0/20")]
    assert subnets[-1] == N("192.168.240.0/20")
    assert len(subnets) == 15 + 16
    assert N("10.0.0.0/24") == next(ipam.candidates(ipam.GLOBAL_POOLS))


def test_no_routes_gives_172_17():
    assert ipam.choose_subnet([]) == N("172.17.0.0/16")


def test_default_route_overlaps_nothing():
    routes = [N("0.0.0.0/0"), "192.0.2.0/24"]
    assert ipam.choose_subnet(routes) == N("172.17.0.0/16")
    assert ipam.overlapping("172.17.0.0/16", routes) == []


@pytest.mark.parametrize("taken,expect", [
    (["172.17.0.0/16"], "172.18.0.0/16"),
    (["172.17.5.0/24"], "172.18.0.0/16"),              # smaller route inside the candidate
    (["172.16.0.0/12"], "192.168.0.0/20"),             # larger route covering every 172 pool
    (["172.17.255.255/32"], "172.18.0.0/16"),          # a single host route or address
    ([ipaddress.ip_interface("172.17.0.9/8")], "192.168.0.0/20"),  # an address's network counts
    (["172.16.0.0/16", "172.32.0.0/16"], "172.17.0.0/16"),  # neighbours do not overlap
    (["fd00::/8", "::/0"], "172.17.0.0/16"),           # IPv6 is not compared with IPv4 pools
    (["172.16.0.0/12", "192.168.0.0/19"], "192.168.32.0/20"),
])
def test_overlap_rules(taken, expect):
    assert ipam.choose_subnet(taken) == N(expect)


def test_in_use_subnets_of_pyds_networks_are_skipped():
    assert ipam.choose_subnet([], in_use=["172.17.0.0/16", "172.18.0.0/16"]) == N("172.19.0.0/16")


def test_every_pool_taken_is_unavailable():
    with pytest.raises(errors.Unavailable, match="non-overlapping"):
        ipam.choose_subnet(["172.16.0.0/12", "192.168.0.0/16"])


def test_allocation_skips_network_gateway_broadcast_lowest_first():
    pool = ipam.Pool("172.17.0.0/16")
    assert pool.gateway == A("172.17.0.1")
    assert [pool.allocate(f"c{i}") for i in range(3)] == [A("172.17.0.2"), A("172.17.0.3"), A("172.17.0.4")]
    assert pool.owner("172.17.0.3") == "c1"
    assert pool.interface("172.17.0.3") == ipaddress.IPv4Interface("172.17.0.3/16")


def test_a_released_address_is_reused_last():
    pool = ipam.Pool("10.9.0.0/29")   # hosts .1-.6; .1 is the gateway
    got = [pool.allocate(f"c{i}") for i in range(3)]   # .2 .3 .4
    assert pool.release(got[0]) and pool.release(got[1])   # .2 then .3 released
    assert pool.allocate("d0") == A("10.9.0.5")    # never used ones first
    assert pool.allocate("d1") == A("10.9.0.6")
    assert pool.allocate("d2") == A("10.9.0.2")    # then released ones, oldest release first
    assert pool.allocate("d3") == A("10.9.0.3")
    with pytest.raises(errors.Unavailable, match="no available addresses on network 10.9.0.0/29"):
        pool.allocate("d4")
    assert not pool.release("10.9.0.1")   # the gateway was never allocated
    assert not pool.release("10.9.0.7")


def test_exhaustion_never_hands_out_network_or_broadcast():
    pool = ipam.Pool("192.168.7.0/30")   # .1 gateway, .2 the only host
    assert pool.allocate("a") == A("192.168.7.2")
    with pytest.raises(errors.Unavailable):
        pool.allocate("b")
    assert set(pool.allocated()) == {A("192.168.7.2")}


def test_requested_address():
    pool = ipam.Pool("172.18.0.0/16", gateway="172.18.0.254")
    assert pool.allocate("a") == A("172.18.0.1")   # a custom gateway frees .1
    assert pool.allocate("b", "172.18.3.4") == A("172.18.3.4")
    with pytest.raises(errors.Conflict):
        pool.allocate("c", "172.18.3.4")
    with pytest.raises(errors.Conflict):
        pool.allocate("c", "172.18.0.254")
    for bad in ("172.19.0.5", "172.18.0.0", "172.18.255.255", "not-an-ip", "::1"):
        with pytest.raises(errors.BadParameter):
            pool.allocate("c", bad)


@pytest.mark.parametrize("subnet,gateway", [
    ("172.17.0.1/16", None),     # host bits set
    ("172.17.0.0/31", None),     # too small
    ("fd00::/64", None),         # IPv6 pools are not done here
    ("garbage", None),
    ("172.17.0.0/16", "172.18.0.1"),
    ("172.17.0.0/16", "172.17.255.255"),
])
def test_bad_pools(subnet, gateway):
    with pytest.raises(errors.BadParameter):
        ipam.Pool(subnet, gateway)


def test_persistence_round_trip_keeps_owners_and_reuse_order():
    pool = ipam.Pool("172.20.0.0/16")
    addrs = [pool.allocate(f"c{i}") for i in range(4)]
    pool.release(addrs[2])
    pool.release(addrs[0])
    record = json.loads(json.dumps(pool.to_dict()))
    assert record == {"Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1",
                      "Allocated": {"172.20.0.3": "c1", "172.20.0.5": "c3"},
                      "Released": ["172.20.0.4", "172.20.0.2"]}
    again = ipam.Pool.from_dict(record)
    assert again.to_dict() == record
    assert again.allocate("n") == A("172.20.0.6")


@pytest.mark.parametrize("record", [
    {},
    {"Subnet": "172.20.0.0/16"},
    {"Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1", "Allocated": {"172.21.0.2": "x"}},
    {"Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1", "Allocated": {"172.20.0.1": "x"}},
    {"Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1", "Allocated": {"172.20.0.2": 5}},
    {"Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1", "Allocated": [], "Released": []},
    {"Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1", "Allocated": {"172.20.0.2": "x"},
     "Released": ["172.20.0.2"]},
    {"Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1", "Released": ["172.20.0.3", "172.20.0.3"]},
    {"Subnet": "172.20.0.0/16", "Gateway": "172.20.0.1", "Released": ["zzz"]},
])
def test_a_bad_record_is_refused(record):
    with pytest.raises(errors.BadParameter, match="bad address pool record"):
        ipam.Pool.from_dict(record)
