"""pyd.engine.ports: what a container asks to publish (v1.3 PortSpecs, the
modern PortBindings and PublishAllPorts), what is refused, and the shapes of
a port map on both surfaces (PortMapping, the v1.3 Ports string, the modern
Ports rows)."""

import pytest

from pyd import errors
from pyd.engine import ports


def want(w):
    return (w.port, w.proto, w.host_ip, w.host_ports)


# -- v1.3 PortSpecs -------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("80", (80, "tcp", "", None)),                       # a random host port
    ("8080:80", (80, "tcp", "", [8080])),
    (":80", (80, "tcp", "", [80])),                      # the same port on both sides
    ("1.2.3.4:8080:80", (80, "tcp", "1.2.3.4", [8080])),
    ("1.2.3.4::80", (80, "tcp", "1.2.3.4", None)),      # an address, a random port
    ("53/udp", (53, "udp", "", None)),
    ("5353:53/udp", (53, "udp", "", [5353])),
    ("127.0.0.1:5353:53/udp", (53, "udp", "127.0.0.1", [5353])),
    ("80/tcp", (80, "tcp", "", None)),
    ("80/", (80, "tcp", "", None)),                      # as moby's nat.SplitProtoPort: an empty proto is tcp
    ("65535", (65535, "tcp", "", None)),
])
def test_port_specs(spec, expected):
    assert want(ports.parse_port_spec(spec)) == expected


@pytest.mark.parametrize("spec", [
    "", "0", "65536", "-1", "http", "80/sctp", "80/UDP", "8080:0", "99999:80", "a:80",
    "1.2.3:8080:80", "not-an-ip:8080:80", "1:2:3:4", " 80", "80 ", "+80", "8080-8090:80:x", None, 80, ["80"],
])
def test_bad_port_specs_are_bad_parameters(spec):
    with pytest.raises(errors.BadParameter):
        ports.parse_port_spec(spec)


def test_port_specs_keep_their_order_in_wanted():
    got = ports.wanted({"PortSpecs": ["80", "8080:81", "53/udp"]}, {})
    assert [want(w) for w in got] == [(80, "tcp", "", None), (81, "tcp", "", [8080]), (53, "udp", "", None)]
    assert [w.key for w in got] == ["80/tcp", "81/tcp", "53/udp"]


# -- PortBindings and PublishAllPorts ----------------------------------------------

def test_port_bindings_single_random_and_address():
    host = {"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                             "81": [{"HostPort": ""}],
                             "53/udp": [{"HostIp": "", "HostPort": "5353"}, {"HostIp": "::1", "HostPort": "5354"}],
                             "82/tcp": None, "83/tcp": []}}
    got = [want(w) for w in ports.wanted({}, host)]
    assert got == [(80, "tcp", "127.0.0.1", [8080]), (81, "tcp", "", None),
                   (53, "udp", "", [5353]), (53, "udp", "::1", [5354]),
                   (82, "tcp", "", None), (83, "tcp", "", None)]


def test_port_binding_ranges_are_tried_in_order():
    (w,) = ports.wanted({}, {"PortBindings": {"80/tcp": [{"HostPort": "8000-8003"}]}})
    assert w.host_ports == [8000, 8001, 8002, 8003]
    (w,) = ports.wanted({}, {"PortBindings": {"80/tcp": [{"HostPort": "9000-9000"}]}})
    assert w.host_ports == [9000]
    assert ports.host_ports(None) is None and ports.host_ports("") is None
    assert ports.host_ports(8080) == [8080]


@pytest.mark.parametrize("host_port", ["8010-8000", "0", "65536", "80-", "-80", "x", "8000-9x", "1.5"])
def test_bad_host_ports_are_bad_parameters(host_port):
    with pytest.raises(errors.BadParameter):
        ports.wanted({}, {"PortBindings": {"80/tcp": [{"HostPort": host_port}]}})


@pytest.mark.parametrize("bindings", [
    {"80/sctp": [{}]}, {"http/tcp": [{}]}, {"0/tcp": [{}]}, {"80/tcp": [{"HostIp": "localhost"}]},
    {"80/tcp": ["8080"]}, ["80/tcp"], "80:80",
])
def test_bad_port_bindings_are_bad_parameters(bindings):
    with pytest.raises(errors.BadParameter):
        ports.wanted({}, {"PortBindings": bindings})


def test_publish_all_ports_adds_the_exposed_ports_not_bound_otherwise():
    config = {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "443": {}}}
    host = {"PublishAllPorts": True, "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}
    got = [want(w) for w in ports.wanted(config, host)]
    assert got == [(80, "tcp", "", [8080]), (53, "udp", "", None), (443, "tcp", "", None)]
    # without PublishAllPorts exposed ports are not published
    assert ports.wanted(config, {}) == []


def test_check_refuses_malformed_exposed_ports():
    ports.check({"ExposedPorts": {"80/tcp": {}}}, {})
    with pytest.raises(errors.BadParameter):
        ports.check({"ExposedPorts": {"eighty/tcp": {}}}, {})
    with pytest.raises(errors.BadParameter):
        ports.check({"PortSpecs": ["99999"]}, {})


def test_exposed_merges_exposed_ports_and_port_specs_once_each():
    config = {"ExposedPorts": {"80/tcp": {}, "bad": {}, "53/udp": {}}, "PortSpecs": ["8080:80", "9000", "x"]}
    assert ports.exposed(config) == [(80, "tcp"), (53, "udp"), (9000, "tcp")]


def test_port_key():
    assert ports.port_key("80") == (80, "tcp")
    assert ports.port_key("53/udp") == (53, "udp")
    assert ports.port_key(443) == (443, "tcp")
    for bad in ("80/sctp", "80/icmp", "", "0", "65536/tcp", None, 1.5):
        with pytest.raises(errors.BadParameter):
            ports.port_key(bad)


def test_random_range_is_docker_06s():
    assert ports.RANDOM_RANGE == (49153, 65535)


# -- shapes of what was published ----------------------------------------------------

PORT_MAP = {
    "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}, {"HostIp": "::1", "HostPort": "49154"}],
    "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
    "8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
}


def test_port_map_rows_are_sorted_numbers():
    assert ports.port_map_rows(PORT_MAP) == [
        (53, "udp", "127.0.0.1", 5353), (80, "tcp", "127.0.0.1", 49153), (80, "tcp", "::1", 49154),
        (8080, "tcp", "0.0.0.0", 8080)]
    assert ports.port_map_rows(None) == [] and ports.port_map_rows({}) == []
    assert ports.port_map_rows({"81/tcp": None}) == []


def test_legacy_mapping_is_docker_06s_port_mapping():
    assert ports.legacy_mapping(PORT_MAP) == {"Tcp": {"80": "49153", "8080": "8080"}, "Udp": {"53": "5353"}}
    assert ports.legacy_mapping({}) == {"Tcp": {}, "Udp": {}}


def test_legacy_string_is_the_v13_list_column():
    assert ports.legacy_string({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}) == "49153->80"
    assert ports.legacy_string(PORT_MAP) == "5353->53/udp, 49153->80, 49154->80, 8080->8080"
    assert ports.legacy_string({}) == ""


def test_modern_rows_published_then_exposed_only():
    rows = ports.modern_rows(PORT_MAP, [(80, "tcp"), (81, "tcp"), (53, "udp"), (53, "tcp")])
    assert rows == [
        {"IP": "127.0.0.1", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"},
        {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 49153, "Type": "tcp"},
        {"IP": "::1", "PrivatePort": 80, "PublicPort": 49154, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 8080, "Type": "tcp"},
        {"PrivatePort": 81, "Type": "tcp"},
        {"PrivatePort": 53, "Type": "tcp"},
    ]
    assert ports.modern_rows({}, []) == []
