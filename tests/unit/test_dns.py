"""pyd.network.dns wire code: names (with compression, escapes and every
bound), queries from our encoder and from hand-made bytes, answers,
truncation, EDNS0, and malformed input that must raise Malformed only."""

import random
import struct

import pytest

from pyd.network import dns


def test_query_from_hand_made_bytes():
    raw = (b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"    # id, RD, one question
           b"\x03Web\x04pyd0\x00\x00\x01\x00\x01")
    q = dns.parse_query(raw)
    assert (q.id, q.qname, q.name, q.qtype, q.qclass) == (0xBEEF, "Web.pyd0", "web.pyd0", 1, 1)
    assert q.flags & dns.RD and q.opcode == 0
    assert q.question == raw[12:]
    assert not q.edns and q.udp_size == 512
    assert dns.build_query(0xBEEF, "Web.pyd0") == raw


def test_query_with_edns0_opt():
    q = dns.parse_query(dns.build_query(7, "db.", dns.TYPE_AAAA, udp_size=4096))
    assert (q.qname, q.qtype, q.edns, q.udp_size, q.edns_version) == ("db", 28, True, 4096, 0)
    # an OPT asking for less than 512 still gets 512 (RFC 6891 6.2.5)
    assert dns.parse_query(dns.build_query(7, "db", udp_size=100)).udp_size == 512


def test_names_round_trip_and_root():
    assert dns.encode_name("") == dns.encode_name(".") == b"\x00"
    assert dns.encode_name("a.bc.") == b"\x01a\x02bc\x00"
    assert dns.read_name(b"\x01a\x02bc\x00", 0) == ("a.bc", 6)
    assert dns.read_name(b"\x00", 0) == ("", 1)
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])          # 255 bytes on the wire
    assert dns.read_name(dns.encode_name(longest), 0)[0] == longest


def test_read_name_follows_backward_pointers():
    buf = b"\x03www\x03pyd\x00" + b"\x04mail\xc0\x04" + b"\xc0\x09"
    assert dns.read_name(buf, 9) == ("mail.pyd", 16)
    assert dns.read_name(buf, 16) == ("mail.pyd", 18)


def test_odd_bytes_inside_a_label_are_escaped_not_dots():
    name, _ = dns.read_name(b"\x03a.b\x02\x00Z\x00", 0)
    assert name == "a\\.b.\\000Z"
    q = dns.parse_query(b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03A.B\x00\x00\x01\x00\x01")
    assert q.name == "a\\.b"    # never the container "a.b"


@pytest.mark.parametrize("bad", ["a..b", "x" * 64 + ".com", ".".join(["a" * 63] * 4), "é.com"])
def test_encode_name_refuses_bad_names(bad):
    with pytest.raises(dns.Malformed):
        dns.encode_name(bad)


HEADER_1Q = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"


@pytest.mark.parametrize("raw", [
    b"",
    b"\x00\x01\x01",                                        # truncated header
    HEADER_1Q,                                              # question missing
    HEADER_1Q + b"\x03ww",                                  # label past the end
    HEADER_1Q + b"\x03www\x00\x00\x01",                     # qtype/qclass cut
    HEADER_1Q + b"\xc0\x0c\x00\x01\x00\x01",                # pointer to itself
    HEADER_1Q + b"\xc0\x0e\x00\x01\x00\x01",                # forward pointer
    HEADER_1Q + b"\xc0",                                    # half a pointer
    HEADER_1Q + b"\x40abc\x00\x00\x01\x00\x01",             # label type 01 (RFC 6891 ext)
    HEADER_1Q + b"\x80abc\x00\x00\x01\x00\x01",             # label type 10
    HEADER_1Q + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",   # name of 257 bytes
    b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01",  # a response
    # an OPT record cut short, then two OPT records
    b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x01\x01a\x00\x00\x01\x00\x01\x00\x00\x29",
    b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x02\x01a\x00\x00\x01\x00\x01"
    + (b"\x00" + struct.pack(">HHIH", 41, 1232, 0, 0)) * 2,
    HEADER_1Q[:-2] + b"\xff\xff" + b"\x01a\x00\x00\x01\x00\x01",        # 65535 records claimed
])
def test_malformed_queries_raise_malformed(raw):
    with pytest.raises(dns.Malformed):
        dns.parse_query(raw)


def test_pointer_loop_is_bounded():
    # two labels pointing at each other through a backward then forward walk:
    # offset 14 is a label "b" followed by a pointer back to 12, i.e. a cycle
    buf = HEADER_1Q[:12] + b"\x01a" + b"\x01b\xc0\x0c"
    with pytest.raises(dns.Malformed):
        dns.read_name(buf, 14)


def test_random_garbage_never_raises_anything_but_malformed():
    rng = random.Random(1035)
    seeds = [dns.build_query(1, "web.pyd", udp_size=1232), HEADER_1Q + b"\x01a\xc0\x0c\x00\x01\x00\x01"]
    for i in range(3000):
        base = bytearray(seeds[i % 2])
        for _ in range(rng.randint(1, 6)):
            base[rng.randrange(len(base))] = rng.randrange(256)
        data = bytes(base[:rng.randint(0, len(base))]) if i % 3 == 0 else bytes(base)
        try:
            dns.parse_query(data)
        except dns.Malformed:
            pass
        try:
            dns.parse_message(data)
        except dns.Malformed:
            pass


def test_opcode_or_question_count_leave_the_question_out():
    notify = dns.parse_query(b"\x00\x05\x20\x00\x00\x01\x00\x00\x00\x00\x00\x00")   # opcode 4
    assert notify.opcode == 4 and notify.qname is None
    resp = dns.parse_message(dns.build_response(notify, dns.NOTIMP))
    assert resp.rcode == dns.NOTIMP and resp.questions == [] and resp.flags & dns.QR
    two = dns.parse_query(b"\x00\x06\x01\x00\x00\x02" + b"\x00" * 6)
    assert two.qname is None
    assert dns.parse_message(dns.build_response(two, dns.FORMERR)).rcode == dns.FORMERR


def test_answer_echoes_question_and_points_to_it():
    q = dns.parse_query(dns.build_query(0x1234, "WeB.pyd"))
    out = dns.build_response(q, dns.NOERROR, [(dns.TYPE_A, dns.a_rdata("172.18.0.2"))], aa=True, ra=True)
    assert out[12:12 + len(q.question)] == q.question       # the client's case kept
    m = dns.parse_message(out)
    assert m.id == 0x1234 and m.rcode == 0
    assert m.flags & (dns.QR | dns.AA | dns.RA | dns.RD) == dns.QR | dns.AA | dns.RA | dns.RD
    assert not m.flags & dns.TC
    assert m.questions == [("WeB.pyd", 1, 1)]
    assert m.answers == [("WeB.pyd", 1, 1, 600, b"\xac\x12\x00\x02")]
    assert m.addresses() == ["172.18.0.2"]


def test_ptr_answer():
    q = dns.parse_query(dns.build_query(9, "2.0.18.172.in-addr.arpa", dns.TYPE_PTR))
    m = dns.parse_message(dns.build_response(q, 0, [(dns.TYPE_PTR, dns.encode_name("web.net1"))]))
    assert [(a[1], a[4]) for a in m.answers] == [(12, "web.net1")]


def test_truncation_at_512_and_edns_size():
    answers = [(dns.TYPE_A, dns.a_rdata("10.0.%d.%d" % (i // 250, i % 250))) for i in range(100)]
    plain = dns.parse_query(dns.build_query(1, "many"))
    out = dns.build_response(plain, 0, answers)
    assert len(out) <= 512
    m = dns.parse_message(out)
    assert m.flags & dns.TC and 0 < len(m.answers) < 100
    big = dns.parse_query(dns.build_query(1, "many", udp_size=4096))
    out = dns.build_response(big, 0, answers, limit=4096)
    m = dns.parse_message(out)
    assert not m.flags & dns.TC and len(m.answers) == 100
    assert out.endswith(b"\x00" + struct.pack(">HHIH", 41, dns.UDP_OURS, 0, 0))   # our OPT
    small = dns.build_response(big, 0, answers, limit=600)
    assert len(small) <= 600 and dns.parse_message(small).flags & dns.TC
    assert small.endswith(b"\x00" + struct.pack(">HHIH", 41, dns.UDP_OURS, 0, 0))  # OPT kept


def test_unknown_edns_version_gets_badvers():
    raw = bytearray(dns.build_query(3, "x", udp_size=1232))
    raw[-5] = 1      # OPT TTL field: extended rcode, version, flags; then rdlength
    q = dns.parse_query(bytes(raw))
    assert q.edns_version == 1
    out = dns.build_response(q, 0, [(dns.TYPE_A, dns.a_rdata("10.0.0.1"))])
    assert dns.parse_message(out).answers == []
    assert out[-10:-8] == b"\x00\x29" and out[-6] == 1     # extended rcode 1 << 4 = BADVERS


@pytest.mark.parametrize("name,ip", [
    ("5.0.18.172.in-addr.arpa", "172.18.0.5"),
    ("0.0.0.0.in-addr.arpa", "0.0.0.0"),
    ("0.18.172.in-addr.arpa", None),
    ("256.0.18.172.in-addr.arpa", None),
    ("05.0.18.172.in-addr.arpa", None),
    ("5.0.18.172.ip6.arpa", None),
    ("x.0.18.172.in-addr.arpa", None),
])
def test_ptr_address(name, ip):
    assert dns.ptr_address(name) == ip


def test_upstreams_from_resolv_conf():
    text = """# generated
nameserver 127.0.0.53
search example.com
nameserver   192.0.2.1  # trailing comment
;nameserver 192.0.2.9
nameserver dns.example.com
nameserver 127.0.0.53
nameserver 2001:db8::1
nameserver 192.0.2.2
"""
    assert dns.upstreams_from_resolv_conf(text) == [("127.0.0.53", 53), ("192.0.2.1", 53), ("2001:db8::1", 53)]
    assert dns.upstreams_from_resolv_conf("") == []
