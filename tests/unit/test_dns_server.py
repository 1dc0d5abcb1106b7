"""A real pyd.network.dns.DnsServer on 127.0.0.1, asked over UDP and TCP
by a tiny client built on the module's own encoder: local answers, the
per-network key, forwarding (id mapping, failover, timeout, TCP), no
forwarding without upstreams, truncation, a flood of garbage, unlisten.
All traffic stays on 127.0.0.1."""

import errno
import logging
import random
import socket
import struct
import threading
import time

import pytest

from pyd.network import dns

LO = "127.0.0.1"


def listen(server, key):
    """Listen for `key` on a free port of 127.0.0.1 (UDP and TCP need the
    same number, so take one from a UDP bind and retry if TCP has it)."""
    for _ in range(50):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((LO, 0))
        port = probe.getsockname()[1]
        probe.close()
        try:
            server.listen(key, LO, port)
            return port
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
    raise AssertionError("no free port on 127.0.0.1")


def ask(port, name, qtype=dns.TYPE_A, tcp=False, qid=None, udp_size=None, timeout=5.0):
    qid = random.getrandbits(16) if qid is None else qid
    msg = dns.build_query(qid, name, qtype, udp_size=udp_size)
    if tcp:
        with socket.create_connection((LO, port), timeout=timeout) as s:
            s.sendall(struct.pack(">H", len(msg)) + msg)
            out = read_tcp(s)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(msg, (LO, port))
            out = s.recv(65535)
    m = dns.parse_message(out)
    assert m.id == qid
    m.raw = out
    return m


def read_tcp(s):
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            assert chunk, "server closed the connection"
            buf += chunk
        return buf
    n, = struct.unpack(">H", exactly(2))
    return exactly(n)


class Names:
    """A resolver callback pair over a dict {key: {name: [ips]}}, recording calls."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def resolve(self, key, name, client=None):
        self.calls.append((key, name))
        return self.table.get(key, {}).get(name)

    def reverse(self, key, ip, client=None):
        for name, ips in self.table.get(key, {}).items():
            if ip in ips:
                return name + ".net"
        return None


class FakeUpstream:
    """A minimal UDP upstream on 127.0.0.1: records every query it gets and,
    in mode "answer", answers A 192.0.2.7 with the id it was sent; "servfail"
    answers SERVFAIL; "silent" never answers."""

    def __init__(self, mode="answer"):
        self.mode = mode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LO, 0))
        self.sock.settimeout(0.1)
        self.addr = self.sock.getsockname()
        self.seen = []          # (id, qname, source address)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                data, src = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.handle(data, src)
        # close() must see every datagram already delivered, so drain the queue
        self.sock.setblocking(False)
        for _ in range(10000):
            try:
                data, src = self.sock.recvfrom(65535)
            except OSError:
                return
            self.handle(data, src)

    def handle(self, data, src):
        q = dns.parse_query(data)
        self.seen.append((q.id, q.qname, src))
        if self.mode == "answer":
            out = dns.build_response(q, dns.NOERROR, [(dns.TYPE_A, dns.a_rdata("192.0.2.7"))], ra=True)
            self.sock.sendto(out, src)
        elif self.mode == "servfail":
            self.sock.sendto(dns.build_response(q, dns.SERVFAIL), src)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def names():
    return Names({"net1": {"web": ["172.18.0.2"], "db": ["172.18.0.3"], "api": ["172.18.0.4", "172.18.0.5", "172.18.0.6"],
                           "empty": []},
                  "net2": {"web": ["172.19.0.9"]}})


@pytest.fixture
def upstream():
    up = FakeUpstream()
    yield up
    up.close()


def make(names, upstreams=(), timeout=2.0):
    return dns.DnsServer(names.resolve, list(upstreams), timeout=timeout, reverse=names.reverse)


@pytest.mark.parametrize("tcp", [False, True])
def test_local_a_answer(names, tcp):
    with make(names) as server:
        port = listen(server, "net1")
        m = ask(port, "web", tcp=tcp)
        assert m.rcode == dns.NOERROR
        assert m.flags & dns.AA and m.flags & dns.QR
        assert m.addresses() == ["172.18.0.2"]
        assert [a[3] for a in m.answers] == [600]
        assert names.calls == [("net1", "web")]


def test_names_are_case_insensitive_and_case_echoed(names):
    with make(names) as server:
        port = listen(server, "net1")
        m = ask(port, "WeB.")
        assert m.addresses() == ["172.18.0.2"]
        assert m.questions == [("WeB", 1, 1)]
        assert names.calls == [("net1", "web")]


def test_each_network_answers_its_own_names(names):
    with make(names) as server:
        p1, p2 = listen(server, "net1"), listen(server, "net2")
        assert ask(p1, "web").addresses() == ["172.18.0.2"]
        assert ask(p2, "web").addresses() == ["172.19.0.9"]
        assert ask(p2, "db").rcode == dns.SERVFAIL       # net2 does not know db; no upstream
        assert server.addresses("net1") == [(LO, p1)]


def test_alias_of_several_containers_gives_all_addresses_shuffled(names):
    with make(names) as server:
        port = listen(server, "net1")
        orders = set()
        for _ in range(30):
            got = ask(port, "api").addresses()
            assert sorted(got) == ["172.18.0.4", "172.18.0.5", "172.18.0.6"]
            orders.add(tuple(got))
        assert len(orders) > 1      # 30 shuffles of 3 all alike: chance 6 * (1/6)^30


def test_known_name_aaaa_and_others_are_empty_noerror(names, upstream):
    with make(names, [upstream.addr]) as server:
        port = listen(server, "net1")
        for qtype in (dns.TYPE_AAAA, 15, 16):        # AAAA, MX, TXT
            m = ask(port, "web", qtype)
            assert (m.rcode, m.answers) == (dns.NOERROR, [])
            assert m.flags & dns.AA
        m = ask(port, "empty")
        assert (m.rcode, m.answers) == (dns.NOERROR, [])
        assert ask(port, "web", dns.TYPE_ANY).addresses() == ["172.18.0.2"]
        assert upstream.seen == []


def test_ptr_for_a_known_address(names):
    with make(names) as server:
        port = listen(server, "net1")
        m = ask(port, "3.0.18.172.IN-ADDR.arpa", dns.TYPE_PTR, tcp=True)
        assert m.rcode == dns.NOERROR and m.flags & dns.AA
        assert [(a[1], a[4]) for a in m.answers] == [(dns.TYPE_PTR, "db.net")]
        # an address nobody has, with no upstream: not answered from here
        assert ask(port, "9.9.9.10.in-addr.arpa", dns.TYPE_PTR).rcode == dns.SERVFAIL


def test_unknown_name_forwarded_with_a_fresh_id_and_relayed_with_the_clients(names, upstream):
    with make(names, [upstream.addr]) as server:
        port = listen(server, "net1")
        m = ask(port, "example.com", qid=0x4242)
        assert m.id == 0x4242 and m.rcode == dns.NOERROR
        assert m.addresses() == ["192.0.2.7"]
        assert not m.flags & dns.AA      # the upstream's answer, relayed as it was
        assert [s[1] for s in upstream.seen] == ["example.com"]
        # a fresh socket per forward: a new source port each time
        ask(port, "example.org")
        assert upstream.seen[0][2][1] != upstream.seen[1][2][1]
        assert upstream.seen[0][2][1] != port


def test_unknown_ptr_is_forwarded_when_there_is_an_upstream(names, upstream):
    with make(names, [upstream.addr]) as server:
        port = listen(server, "net1")
        m = ask(port, "9.9.9.10.in-addr.arpa", dns.TYPE_PTR)
        assert m.rcode == dns.NOERROR
        assert [s[1] for s in upstream.seen] == ["9.9.9.10.in-addr.arpa"]


def test_no_upstreams_gives_servfail_at_once_and_sends_nothing(names, upstream):
    with make(names, []) as server:
        port = listen(server, "net1")
        start = time.monotonic()
        for tcp in (False, True):
            m = ask(port, "example.com", tcp=tcp)
            assert m.rcode == dns.SERVFAIL and m.answers == []
            assert not m.flags & dns.RA
        assert time.monotonic() - start < 1.0
        # anything forwarded would have been sent before the answer, and
        # loopback delivery is immediate: the upstream's queue is empty
        upstream.close()
        assert upstream.seen == []


def test_silent_upstream_gives_servfail_after_the_timeout(names):
    silent = FakeUpstream("silent")
    try:
        with make(names, [silent.addr], timeout=0.3) as server:
            port = listen(server, "net1")
            start = time.monotonic()
            m = ask(port, "example.com")
            took = time.monotonic() - start
            assert m.rcode == dns.SERVFAIL
            assert 0.25 <= took < 2.0
            assert [s[1] for s in silent.seen] == ["example.com"]
    finally:
        silent.close()


def test_failing_servers_are_skipped_for_the_next(names, upstream):
    # a closed port (ICMP unreachable: moves on at once), a SERVFAIL server,
    # a silent one (after its timeout), then one that answers
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((LO, 0))
    closed = probe.getsockname()
    probe.close()
    failing, silent = FakeUpstream("servfail"), FakeUpstream("silent")
    try:
        with make(names, [closed, failing.addr, silent.addr, upstream.addr], timeout=0.3) as server:
            port = listen(server, "net1")
            m = ask(port, "example.com")
            assert m.addresses() == ["192.0.2.7"]
            assert len(failing.seen) == len(silent.seen) == len(upstream.seen) == 1
    finally:
        failing.close()
        silent.close()


def test_forwarding_over_tcp_to_a_tcp_upstream(names):
    far = Names({"far": {"example.com": ["192.0.2.8"]}})
    with make(far) as upstream:
        up_port = listen(upstream, "far")
        with make(names, [(LO, up_port)]) as server:
            port = listen(server, "net1")
            m = ask(port, "Example.COM", tcp=True, qid=77)
            assert m.addresses() == ["192.0.2.8"]
            assert m.flags & dns.AA              # the upstream's own flag, relayed
            m = ask(port, "example.com", qid=78)  # and UDP to the same server
            assert m.addresses() == ["192.0.2.8"]
            assert far.calls == [("far", "example.com")] * 2
    # a TCP client's query goes over TCP: a UDP-only upstream refuses the
    # connection, so SERVFAIL comes at once and the UDP socket saw nothing
    udp_only = FakeUpstream()
    try:
        with make(names, [udp_only.addr], timeout=5) as server:
            port = listen(server, "net1")
            start = time.monotonic()
            assert ask(port, "example.com", tcp=True).rcode == dns.SERVFAIL
            assert time.monotonic() - start < 2
    finally:
        udp_only.close()
    assert udp_only.seen == []


def test_big_answer_truncated_over_udp_whole_over_tcp():
    many = {"n": {"big": ["10.1.%d.%d" % (i // 200, i % 200) for i in range(100)]}}
    names = Names(many)
    with make(names) as server:
        port = listen(server, "n")
        m = ask(port, "big")
        assert m.flags & dns.TC and len(m.raw) <= 512 and len(m.answers) < 100
        m = ask(port, "big", udp_size=1232)
        assert m.flags & dns.TC and len(m.raw) <= 1232 and len(m.answers) < 100
        m = ask(port, "big", tcp=True)
        assert not m.flags & dns.TC and len(m.answers) == 100


def test_pipelined_tcp_queries_on_one_connection(names):
    with make(names) as server:
        port = listen(server, "net1")
        with socket.create_connection((LO, port), timeout=5) as s:
            msgs = [dns.build_query(i, n) for i, n in enumerate(["web", "db", "WEB"], 1)]
            s.sendall(b"".join(struct.pack(">H", len(m)) + m for m in msgs))
            got = {}
            for _ in msgs:
                m = dns.parse_message(read_tcp(s))
                got[m.id] = m.addresses()
        assert got == {1: ["172.18.0.2"], 2: ["172.18.0.3"], 3: ["172.18.0.2"]}


def test_flood_of_malformed_packets_does_not_stop_it(names, upstream, caplog):
    caplog.set_level(logging.DEBUG, logger="pyd.network.dns")
    rng = random.Random(53)
    good = dns.build_query(1, "web")
    junk = [b"", b"\x00", good[:11], good[:15],
            dns.build_response(dns.parse_query(good), 0),                  # a response: never answered
            b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # pointer loop
            b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x7f" + b"a" * 127]
    with make(names, [upstream.addr]) as server:
        port = listen(server, "net1")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(200):
                pkt = junk[i % len(junk)] if i % 2 else bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
                s.sendto(pkt, (LO, port))
        # a burst can overflow the socket's receive buffer, and UDP drops
        # then: ask as a stub resolver does, retrying up to three times
        for attempt in range(3):
            try:
                m = ask(port, "web", timeout=1.0)
                break
            except socket.timeout:
                continue
        else:
            raise AssertionError("no answer after the flood")
        assert m.addresses() == ["172.18.0.2"]
        assert server._thread.is_alive()
        # the junk was read (the answer came after it on the same socket) and dropped
        dropped = [r for r in caplog.records if "malformed datagram" in r.getMessage()]
        assert len(dropped) >= 50
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        # a TCP client sending garbage is hung up on; the server keeps going
        with socket.create_connection((LO, port), timeout=5) as t:
            t.sendall(b"\x00\x05\xff\xff\xff\xff\xff")
            assert t.recv(10) == b""
        assert ask(port, "db", tcp=True).addresses() == ["172.18.0.3"]
        assert ask(port, "web").addresses() == ["172.18.0.2"]


def test_pending_forwards_are_bounded(names, monkeypatch):
    monkeypatch.setattr(dns, "MAX_PENDING", 2)
    silent = FakeUpstream("silent")
    try:
        with make(names, [silent.addr], timeout=30) as server:
            port = listen(server, "net1")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                for i in range(3):
                    s.sendto(dns.build_query(100 + i, "example%d.com" % i), (LO, port))
                m = dns.parse_message(s.recv(512))     # only the third is answered, at once
            assert (m.id, m.rcode) == (102, dns.SERVFAIL)
            assert ask(port, "web").addresses() == ["172.18.0.2"]   # local answers still flow
    finally:
        silent.close()
    assert sorted(q[1] for q in silent.seen) == ["example0.com", "example1.com"]


def test_resolver_exception_gives_servfail_and_keeps_serving():
    calls = []

    def resolve(key, name, client=None):
        calls.append(name)
        if name == "boom":
            raise RuntimeError("bug in the callback")
        return ["10.0.0.1"]

    with dns.DnsServer(resolve, []) as server:
        port = listen(server, "k")
        assert ask(port, "boom").rcode == dns.SERVFAIL
        assert ask(port, "fine").addresses() == ["10.0.0.1"]


def test_listen_errors_are_clear_and_unlisten_frees_the_port(names):
    with make(names) as server:
        port = listen(server, "net1")
        with pytest.raises(OSError) as info:
            server.listen("again", LO, port)
        assert info.value.errno == errno.EADDRINUSE
        assert "bind dns udp socket: 127.0.0.1:%d" % port in str(info.value)
        with pytest.raises(OSError) as info:
            server.listen("elsewhere", "192.0.2.1", port)      # not an address of this host
        assert info.value.errno == errno.EADDRNOTAVAIL
        server.unlisten("net1")
        server.unlisten("never")
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((LO, port))
        assert server.addresses("net1") == []
        server.listen("net1", LO, port)                        # and it can be had again
        assert ask(port, "web").addresses() == ["172.18.0.2"]


def test_queries_from_outside_the_subnet_are_dropped(names):
    with make(names) as server:
        port = listen(server, "net1")
        for _ in range(50):
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind((LO, 0))
            other = probe.getsockname()[1]
            probe.close()
            try:
                server.listen("net2", LO, other, subnet="10.0.0.0/8")   # 127.0.0.1 is outside
                break
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
        with pytest.raises(socket.timeout):
            ask(other, "web", timeout=0.3)
        with socket.create_connection((LO, other), timeout=5) as t:
            t.sendall(struct.pack(">H", 17) + dns.build_query(1, "web"))
            try:
                assert t.recv(10) == b""    # hung up on at accept...
            except ConnectionResetError:
                pass                        # ...with the query unread, which may reset
        server.unlisten("net2")
        server.listen("net2", LO, other, subnet="127.0.0.0/8")
        assert ask(other, "web").addresses() == ["172.19.0.9"]
        assert ask(port, "web").addresses() == ["172.18.0.2"]     # no subnet: anyone


def test_upstream_that_is_ourselves_is_skipped_and_upstreams_can_change(names, upstream):
    with make(names) as server:
        port = listen(server, "net1")
        server.set_upstreams([(LO, port)])       # forwarding there would loop
        start = time.monotonic()
        assert ask(port, "example.com").rcode == dns.SERVFAIL
        assert time.monotonic() - start < 1.0
        server.set_upstreams([(LO, port), upstream.addr])
        assert ask(port, "example.com").addresses() == ["192.0.2.7"]
        server.set_upstreams([])
        assert ask(port, "example.com").rcode == dns.SERVFAIL
    upstream.close()
    assert len(upstream.seen) == 1


def test_close_stops_the_thread_and_frees_everything(names):
    server = make(names)
    port = listen(server, "net1")
    assert ask(port, "web").addresses() == ["172.18.0.2"]
    thread = server._thread
    server.close()
    server.close()
    assert not thread.is_alive()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LO, port))
    with pytest.raises(OSError):
        server.listen("net1", LO, port)
