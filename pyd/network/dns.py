"""The embedded DNS server for containers on user-defined networks, like
Docker's 127.0.0.11 resolver, except that pyd listens on each network's
gateway address in the host's network namespace (docs/dns.md says why).

- Wire code (RFC 1035, EDNS0 from RFC 6891), pure and unit-tested:
  `read_name`, `encode_name`, `parse_query` -> `Query`, `build_query`,
  `build_response`, `parse_message` (used by tests and to check upstream
  replies). Bad input raises `Malformed`, never anything else.
- `DnsServer(resolve, reverse, upstreams, timeout)`: one background thread
  running a selectors loop over every listening socket (UDP and TCP per
  address), the accepted TCP connections and the pending forwards. Names
  the callbacks know are answered here (AA set, TTL 600 as Docker does);
  everything else goes to the upstream servers with a fresh socket and a
  fresh random id, and the reply is relayed under the client's id.
- `upstreams_from_resolv_conf(text)`: the host's nameservers as (ip, 53).

Nothing here resolves a host name: every address is numeric and checked
with `ipaddress` before a socket sees it.
"""

import collections
import errno
import ipaddress
import logging
import random
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

# RFC 1035 / 3596 / 6891 numbers
TYPE_A, TYPE_PTR, TYPE_AAAA, TYPE_OPT, TYPE_ANY = 1, 12, 28, 41, 255
CLASS_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080
OPCODE_MASK = 0x7800

TTL = 600                 # moby's respTTL for local answers
UDP_PLAIN = 512           # RFC 1035 limit without EDNS0
UDP_OURS = 1232           # what we advertise and fill at most (DNS flag day 2020: no fragments)
MAX_NAME = 255            # wire length of a name, RFC 1035 2.3.4
MAX_POINTERS = 32         # compression jumps followed before a name counts as a loop
MAX_UPSTREAMS = 3         # glibc's MAXNS: a container's resolver would not use more either
MAX_PENDING = 1024        # forwards in flight; more are answered SERVFAIL at once
MAX_TCP_CLIENTS = 256     # accepted connections over all listeners
TCP_IDLE = 10.0           # seconds a client connection may sit without a whole query
TCP_OUT_LIMIT = 1 << 18   # bytes queued to a slow TCP client before we hang up
UDP_BURST = 64            # datagrams read per readiness event, so one flood cannot starve the rest

_HEADER = struct.Struct(">HHHHHH")   # id, flags, qd, an, ns, ar
_RR = struct.Struct(">HHIH")         # type, class, ttl, rdlength
_Q = struct.Struct(">HH")            # qtype, qclass


class Malformed(ValueError):
    """A packet that is not a DNS message we can read: dropped (UDP) or the
    connection closed (TCP)."""


# ---------------------------------------------------------------- wire code

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*")


def _label_text(raw: bytes) -> str:
    """A label as presentation text, escaped the way dig prints it: a dot or
    odd byte inside a label must never look like a label boundary, or
    "a.b" in one label would find the container "a.b"."""
    if all(b in _SAFE for b in raw):
        return raw.decode("ascii")
    out = []
    for b in raw:
        if b in _SAFE:
            out.append(chr(b))
        elif b in b".\\":
            out.append("\\" + chr(b))
        else:
            out.append("\\%03d" % b)
    return "".join(out)


def read_name(buf: bytes, off: int):
    """The name at `off` -> (text, offset after it). Compression pointers are
    followed, but only backwards and at most MAX_POINTERS times, so a loop
    cannot spin; the name's wire length is capped at 255. Text is as sent
    (no case folding), without the trailing dot; the root is ""."""
    labels = []
    length = 0          # wire length of the name so far (labels + their length bytes)
    end = None          # where the name ends in the original position
    jumps = 0
    pos = off
    while True:
        if pos >= len(buf):
            raise Malformed("name runs past the end of the message")
        n = buf[pos]
        kind = n & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(buf):
                raise Malformed("truncated compression pointer")
            target = ((n & 0x3F) << 8) | buf[pos + 1]
            if end is None:
                end = pos + 2
            jumps += 1
            if jumps > MAX_POINTERS or target >= pos:
                raise Malformed("compression pointer loop or forward pointer")
            pos = target
            continue
        if kind:
            raise Malformed("unknown label type 0x%02x" % kind)
        length += n + 1
        if length > MAX_NAME:
            raise Malformed("name longer than 255 bytes")
        if n == 0:
            return ".".join(labels), (end if end is not None else pos + 1)
        if pos + 1 + n > len(buf):
            raise Malformed("label runs past the end of the message")
        labels.append(_label_text(buf[pos + 1:pos + 1 + n]))
        pos += 1 + n


def encode_name(name: str) -> bytes:
    """Wire form of a dotted name (a trailing dot is optional; "" and "." are
    the root). No escapes: names we send are container names and addresses.
    Raises Malformed for an empty or over-63-byte label or a name over 255."""
    name = name[:-1] if name.endswith(".") else name
    out = bytearray()
    if name:
        for label in name.split("."):
            raw = label.encode("ascii") if label.isascii() else None
            if not raw or len(raw) > 63:
                raise Malformed("bad label %r in %r" % (label, name))
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise Malformed("name longer than 255 bytes: %r" % name)
    return bytes(out)


@dataclass
class Query:
    id: int
    flags: int
    qname: Optional[str] = None    # as sent (see `name` for the folded form)
    qtype: int = 0
    qclass: int = 0
    question: bytes = b""          # the raw question section, echoed in answers
    edns: bool = False
    udp_size: int = UDP_PLAIN      # the client's EDNS0 buffer size, 512 without OPT
    edns_version: int = 0

    @property
    def opcode(self):
        return (self.flags & OPCODE_MASK) >> 11

    @property
    def name(self):
        """The name folded for lookup: ASCII lower case (DNS case folding is
        ASCII only, RFC 4343), no trailing dot."""
        return self.qname.lower()   # read_name escaped every non-ASCII byte


def _skip_rr(buf, off):
    """Skip one resource record -> (type, class, ttl, rdata offset, offset after)."""
    _, off = read_name(buf, off)
    if off + _RR.size > len(buf):
        raise Malformed("truncated resource record")
    rtype, rclass, ttl, rdlen = _RR.unpack_from(buf, off)
    off += _RR.size
    if off + rdlen > len(buf):
        raise Malformed("rdata runs past the end of the message")
    return rtype, rclass, ttl, off, off + rdlen


def parse_query(buf: bytes) -> Query:
    """Header, question and any EDNS0 OPT of a query. A message that is not a
    query (QR set) is Malformed: answering it could start a loop. For an
    opcode other than QUERY or a question count other than 1 the Query
    comes back without a question, for a NOTIMP or FORMERR answer."""
    if len(buf) < _HEADER.size:
        raise Malformed("shorter than a DNS header")
    qid, flags, qd, an, ns, ar = _HEADER.unpack_from(buf)
    if flags & QR:
        raise Malformed("a response, not a query")
    q = Query(qid, flags)
    if q.opcode != 0 or qd != 1:
        return q
    qname, off = read_name(buf, _HEADER.size)
    if off + _Q.size > len(buf):
        raise Malformed("truncated question")
    q.qname = qname
    q.qtype, q.qclass = _Q.unpack_from(buf, off)
    off += _Q.size
    q.question = bytes(buf[_HEADER.size:off])
    for i in range(an + ns + ar):   # bounded: each record is at least 11 bytes of buf
        rtype, rclass, ttl, _, off = _skip_rr(buf, off)
        if rtype == TYPE_OPT and i >= an + ns:
            if q.edns:
                raise Malformed("two OPT records")   # RFC 6891 6.1.1: FORMERR; we drop
            q.edns = True
            q.udp_size = max(UDP_PLAIN, rclass)
            q.edns_version = (ttl >> 16) & 0xFF
    return q


def build_query(qid: int, name: str, qtype: int = TYPE_A, qclass: int = CLASS_IN,
                rd: bool = True, udp_size: Optional[int] = None) -> bytes:
    """A query message; with `udp_size` it carries an EDNS0 OPT record."""
    flags = RD if rd else 0
    ar = 1 if udp_size is not None else 0
    msg = _HEADER.pack(qid, flags, 1, 0, 0, ar) + encode_name(name) + _Q.pack(qtype, qclass)
    if udp_size is not None:
        msg += b"\x00" + _RR.pack(TYPE_OPT, udp_size, 0, 0)
    return msg


def a_rdata(ip: str) -> bytes:
    return socket.inet_aton(str(ipaddress.IPv4Address(ip)))


def build_response(q: Query, rcode: int, answers=(), aa: bool = False, ra: bool = False,
                   limit: int = UDP_PLAIN) -> bytes:
    """The answer to `q`: its id, opcode and RD, the question echoed as sent
    (so the client's case survives), `answers` as (type, rdata) records
    whose owner is a pointer to the question name, and an OPT record if the
    query had one. Records that do not fit `limit` are left out and TC set.
    An EDNS version other than 0 gets BADVERS (RFC 6891 6.1.3)."""
    flags = QR | (q.flags & (OPCODE_MASK | RD)) | (AA if aa else 0) | (RA if ra else 0)
    opt = b""
    if q.edns:
        ext = 0
        if q.edns_version != 0:
            ext, rcode, answers = 1, NOERROR, ()    # BADVERS = 16: upper bits 1, lower 0
        opt = b"\x00" + _RR.pack(TYPE_OPT, UDP_OURS, ext << 24, 0)
    qd = 1 if q.question else 0
    if not qd:
        answers = ()
    body = q.question
    room = limit - _HEADER.size - len(body) - len(opt)
    records = []
    for rtype, rdata in answers:
        rr = b"\xc0\x0c" + _RR.pack(rtype, CLASS_IN, TTL, len(rdata)) + rdata
        if len(rr) > room:
            flags |= TC
            break
        room -= len(rr)
        records.append(rr)
    header = _HEADER.pack(q.id, flags | rcode, qd, len(records), 0, 1 if opt else 0)
    return header + body + b"".join(records) + opt


@dataclass
class Message:
    """A parsed message (for tests and for checking upstream replies)."""
    id: int
    flags: int
    questions: list     # (name, type, class)
    answers: list       # (name, type, class, ttl, rdata bytes)

    @property
    def rcode(self):
        return self.flags & 0xF

    def addresses(self):
        return [socket.inet_ntoa(r[4]) for r in self.answers if r[1] == TYPE_A and len(r[4]) == 4]


def parse_message(buf: bytes) -> Message:
    """Header, questions and answer records of any message."""
    if len(buf) < _HEADER.size:
        raise Malformed("shorter than a DNS header")
    qid, flags, qd, an, _, _ = _HEADER.unpack_from(buf)
    off = _HEADER.size
    questions, answers = [], []
    for _ in range(qd):
        name, off = read_name(buf, off)
        if off + _Q.size > len(buf):
            raise Malformed("truncated question")
        questions.append((name,) + _Q.unpack_from(buf, off))
        off += _Q.size
    for _ in range(an):
        start = off
        name, _ = read_name(buf, start)
        rtype, rclass, ttl, rd_off, off = _skip_rr(buf, start)
        rdata = bytes(buf[rd_off:off])
        if rtype == TYPE_PTR:
            rdata = read_name(buf, rd_off)[0]    # PTR rdata may be compressed
        answers.append((name, rtype, rclass, ttl, rdata))
    return Message(qid, flags, questions, answers)


def ptr_address(name: str) -> Optional[str]:
    """"5.0.18.172.in-addr.arpa" -> "172.18.0.5"; None for anything else."""
    labels = name.split(".")
    if len(labels) != 6 or labels[4:] != ["in-addr", "arpa"]:
        return None
    parts = labels[:4]
    if not all(p.isdigit() and p.isascii() and len(p) <= 3 and (p == "0" or p[0] != "0") for p in parts):
        return None
    if any(int(p) > 255 for p in parts):
        return None
    return ".".join(reversed(parts))


def upstreams_from_resolv_conf(text: str) -> list:
    """The `nameserver` lines of a resolv.conf as [(ip, 53)], in order,
    without duplicates, at most 3 (glibc reads no more). Loopback servers
    (127.0.0.53 of systemd-resolved, a local dnsmasq) are kept: unlike
    Docker's resolver, which forwards from inside the container's
    namespace, pyd's runs in the host's, where they are reachable. A line
    that is not a numeric address is skipped, never looked up."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        try:
            ip = str(ipaddress.ip_address(fields[1]))
        except ValueError:
            continue
        if (ip, 53) not in out:
            out.append((ip, 53))
        if len(out) == MAX_UPSTREAMS:
            break
    return out


# ---------------------------------------------------------------- the server

def _family(ip: str):
    return socket.AF_INET6 if ipaddress.ip_address(ip.split("%")[0]).version == 6 else socket.AF_INET


class _Listener:
    def __init__(self, key, sock, tcp, allow):
        self.key, self.sock, self.tcp = key, sock, tcp
        self.allow = allow      # an ip_network clients must come from, or None

    def allows(self, addr):
        if self.allow is None:
            return True
        try:
            return ipaddress.ip_address(addr[0]) in self.allow
        except ValueError:
            return False


def _peer_ip(client):
    try:
        return client.sock.getpeername()[0]
    except (OSError, AttributeError):
        return None


class _TcpClient:
    def __init__(self, key, sock, now):
        self.key, self.sock = key, sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.deadline = now + TCP_IDLE
        self.closed = False


class _Forward:
    """One client query on its way through the upstream list."""

    def __init__(self, key, query, raw, client, addr, upstreams):
        self.key = key
        self.query = query          # the client's Query (id, question, limits)
        self.raw = raw              # the client's message, forwarded with only the id changed
        self.client = client        # a _Listener (UDP) or a _TcpClient
        self.addr = addr            # the UDP client's address
        self.upstreams = upstreams
        self.index = -1
        self.sock = None
        self.qid = 0
        self.deadline = 0.0
        self.tcp = isinstance(client, _TcpClient)
        self.txbuf = b""
        self.rxbuf = bytearray()
        self.connected = False


class DnsServer:
    """Answers names the callbacks know, forwards the rest.

    resolve(key, name, client) -> list of IPv4 strings, [] for a known name
        without A records, None for a name it does not know (then forwarded).
        `client` is the asker's IP (a container on several networks asks the
        first one's server for names on all of them).
    reverse(key, ip, client) -> name for a known address, or None.
    upstreams: [(ip, port)] tried in order, each for up to `timeout` seconds;
        [] means unknown names get SERVFAIL and nothing is sent anywhere.

    `key` is what `listen` was given (the network's id): a query is looked
    up in the network whose socket it came in on. The callbacks run on the
    server's thread, so they must be quick and must not call back into
    the server (listen/unlisten from the callback would wait for itself).
    """

    def __init__(self, resolve: Callable, upstreams=(), timeout: float = 2.0,
                 reverse: Optional[Callable] = None):
        self._resolve = resolve
        self._reverse = reverse
        self._upstreams = [(str(ipaddress.ip_address(ip)), int(port)) for ip, port in upstreams]
        self._timeout = timeout
        self._rng = random.SystemRandom()
        self._sel = None
        self._thread = None
        self._lock = threading.Lock()
        self._calls = collections.deque()
        self._wake_r = self._wake_w = None
        self._listeners = {}        # key -> [_Listener]
        self._clients = set()       # _TcpClient
        self._forwards = {}         # upstream socket -> _Forward
        self._stop = False
        self._closed = False

    # -- public API, any thread

    def listen(self, key, address: str, port: int = 53, subnet=None):
        """Bind UDP and TCP on (address, port) for `key`. OSError(errno,
        "bind dns udp socket: 172.18.0.1:53: ...") if either cannot be had;
        then neither is kept. With `subnet` ("172.18.0.0/16"), queries from
        other sources are dropped: the gateway is a host address, so a
        container of another network could reach it and read this
        network's names otherwise."""
        ip = str(ipaddress.ip_address(address))
        allow = ipaddress.ip_network(subnet, strict=False) if subnet is not None else None
        fam = _family(ip)
        socks = []
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                what = "udp" if kind == socket.SOCK_DGRAM else "tcp"
                s = socket.socket(fam, kind)
                socks.append(s)
                if kind == socket.SOCK_STREAM:
                    # a restart must not wait out TIME_WAIT; for UDP the option
                    # would let two sockets share the port, so it stays off
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((ip, port))
                    if kind == socket.SOCK_STREAM:
                        s.listen(64)
                except OSError as e:
                    raise OSError(e.errno, "bind dns %s socket: %s:%d: %s"
                                  % (what, ip, port, e.strerror)) from None
                s.setblocking(False)
        except BaseException:
            for s in socks:
                s.close()
            raise
        listeners = [_Listener(key, socks[0], False, allow), _Listener(key, socks[1], True, allow)]
        try:
            self._call(lambda: self._add_listeners(key, listeners))
        except BaseException:
            for s in socks:
                s.close()
            raise
        log.debug("dns: listening on %s:%d for %r", ip, port, key)

    def set_upstreams(self, upstreams):
        """Replace the upstream list (the host's resolv.conf changed). Queries
        already being forwarded keep the list they started with."""
        self._upstreams = [(str(ipaddress.ip_address(ip)), int(port)) for ip, port in upstreams]

    def addresses(self, key):
        """The (address, port) pairs `key` listens on (for logs and tests)."""
        return self._call(lambda: sorted({ln.sock.getsockname()[:2] for ln in self._listeners.get(key, ())}))

    def unlisten(self, key):
        """Close `key`'s sockets, its TCP clients and forwards; the port is
        free when this returns. Unknown keys are fine."""
        if self._thread is None:
            return
        self._call(lambda: self._drop_key(key))

    def close(self):
        """Stop the thread and close every socket. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._stop = True
            self._wake()
            thread.join(10)
            if thread.is_alive():
                log.warning("dns: server thread did not stop")
                return
            self._teardown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- talking to the loop

    def _start(self):
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._loop, name="dns", daemon=True)
        self._thread.start()

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass    # a full pipe wakes the loop just as well

    def _call(self, fn):
        """Run fn on the loop thread (the only one touching the selector) and
        return its result or raise its exception."""
        if threading.current_thread() is self._thread:
            return fn()
        done = threading.Event()
        box = {}

        def job():
            try:
                box["v"] = fn()
            except BaseException as e:
                box["e"] = e
            finally:
                done.set()

        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "dns server is closed")
            if self._thread is None:
                self._start()
            self._calls.append(job)
        self._wake()
        if not done.wait(10):
            raise OSError(errno.ETIMEDOUT, "dns server thread did not answer")
        if "e" in box:
            raise box["e"]
        return box.get("v")

    # -- loop thread

    def _add_listeners(self, key, listeners):
        for ln in listeners:
            self._sel.register(ln.sock, selectors.EVENT_READ, ln)
        self._listeners.setdefault(key, []).extend(listeners)

    def _drop_key(self, key):
        for ln in self._listeners.pop(key, ()):
            self._sel.unregister(ln.sock)
            ln.sock.close()
        for c in [c for c in self._clients if c.key == key]:
            self._close_client(c)
        for f in [f for f in self._forwards.values() if f.key == key]:
            self._end_forward(f)

    def _loop(self):
        while not self._stop:
            timeout = self._next_timeout()
            try:
                events = self._sel.select(timeout)
            except InterruptedError:
                continue
            for skey, mask in events:
                try:
                    self._dispatch(skey, mask)
                except Exception:   # a bug must cost one packet, never the resolver
                    log.exception("dns: error handling an event")
            self._run_calls()
            self._expire()
        self._run_calls()

    def _run_calls(self):
        while True:
            with self._lock:
                if not self._calls:
                    return
                job = self._calls.popleft()
            job()

    def _next_timeout(self):
        deadlines = [f.deadline for f in self._forwards.values()]
        deadlines += [c.deadline for c in self._clients]
        if not deadlines:
            return 1.0
        return min(1.0, max(0.0, min(deadlines) - time.monotonic()))

    def _expire(self):
        now = time.monotonic()
        for f in [f for f in self._forwards.values() if f.deadline <= now]:
            log.debug("dns: upstream %s:%d timed out for %r", *f.upstreams[f.index], f.query.qname)
            self._next_upstream(f)
        for c in [c for c in self._clients if c.deadline <= now]:
            self._close_client(c)

    def _dispatch(self, skey, mask):
        obj = skey.data
        if obj is None:
            try:
                while self._wake_r.recv(512):
                    pass
            except BlockingIOError:
                pass
        elif isinstance(obj, _Listener):
            if obj.tcp:
                self._accept(obj)
            else:
                self._udp_read(obj)
        elif isinstance(obj, _TcpClient):
            if obj.closed:      # closed by an earlier event of this batch
                return
            if mask & selectors.EVENT_READ:
                self._tcp_read(obj)
            if mask & selectors.EVENT_WRITE and not obj.closed:
                self._tcp_flush(obj)
        elif isinstance(obj, _Forward):
            if obj.sock is skey.fileobj:    # not ended by an earlier event of this batch
                self._forward_event(obj, mask)

    # UDP clients

    def _udp_read(self, ln):
        for _ in range(UDP_BURST):
            try:
                data, addr = ln.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("dns: udp recv: %s", e)
                return
            if not ln.allows(addr):
                log.debug("dns: dropped a query from %s, outside %s", addr[0], ln.allow)
                continue
            try:
                self._query(ln.key, data, ln, addr)
            except Malformed as e:
                log.debug("dns: dropped a malformed datagram from %s: %s", addr, e)

    def _udp_send(self, ln, addr, data):
        try:
            ln.sock.sendto(data, addr)
        except OSError as e:
            log.debug("dns: udp send to %s: %s", addr, e)

    # TCP clients (RFC 1035 4.2.2: two-byte length, then the message)

    def _accept(self, ln):
        for _ in range(UDP_BURST):
            try:
                sock, addr = ln.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("dns: accept: %s", e)
                return
            if not ln.allows(addr):
                log.debug("dns: refused a tcp client from %s, outside %s", addr[0], ln.allow)
                sock.close()
                continue
            if len(self._clients) >= MAX_TCP_CLIENTS:
                log.debug("dns: too many tcp clients, refusing %s", addr)
                sock.close()
                continue
            sock.setblocking(False)
            c = _TcpClient(ln.key, sock, time.monotonic())
            self._clients.add(c)
            self._sel.register(sock, selectors.EVENT_READ, c)

    def _tcp_read(self, c):
        try:
            data = c.sock.recv(65537)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log.debug("dns: tcp recv: %s", e)
            data = b""
        if not data:
            self._close_client(c)
            return
        c.inbuf += data
        while len(c.inbuf) >= 2 and not c.closed:
            n = (c.inbuf[0] << 8) | c.inbuf[1]
            if len(c.inbuf) < 2 + n:
                break
            msg = bytes(c.inbuf[2:2 + n])
            del c.inbuf[:2 + n]
            c.deadline = time.monotonic() + TCP_IDLE
            try:
                self._query(c.key, msg, c, None)
            except Malformed as e:
                log.debug("dns: closing a tcp client after a malformed query: %s", e)
                self._close_client(c)

    def _tcp_send(self, c, data):
        if c.closed:
            return
        if len(c.outbuf) + len(data) > TCP_OUT_LIMIT:
            log.debug("dns: tcp client reads too slowly, closing")
            self._close_client(c)
            return
        c.outbuf += struct.pack(">H", len(data)) + data
        self._tcp_flush(c)

    def _tcp_flush(self, c):
        try:
            while c.outbuf:
                n = c.sock.send(c.outbuf)
                del c.outbuf[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            log.debug("dns: tcp send: %s", e)
            self._close_client(c)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.outbuf else 0)
        self._sel.modify(c.sock, events, c)

    def _close_client(self, c):
        if c.closed:
            return
        c.closed = True
        self._clients.discard(c)
        self._sel.unregister(c.sock)
        c.sock.close()
        for f in [f for f in self._forwards.values() if f.client is c]:
            self._end_forward(f)

    # answering

    def _reply(self, client, addr, data):
        if isinstance(client, _TcpClient):
            self._tcp_send(client, data)
        else:
            self._udp_send(client, addr, data)

    def _query(self, key, data, client, addr):
        q = parse_query(data)
        tcp = isinstance(client, _TcpClient)
        local_limit = 65535 if tcp else (min(q.udp_size, UDP_OURS) if q.edns else UDP_PLAIN)
        all_upstreams = self._upstreams     # one read: set_upstreams may swap it
        ra = bool(all_upstreams)
        if q.opcode != 0:
            self._reply(client, addr, build_response(q, NOTIMP, ra=ra, limit=local_limit))
            return
        if not q.question:
            self._reply(client, addr, build_response(q, FORMERR, ra=ra, limit=local_limit))
            return
        try:
            who = addr[0] if addr else _peer_ip(client)
            local = self._local(key, q, who)
        except Exception:
            log.exception("dns: resolver callback failed for %r", q.qname)
            self._reply(client, addr, build_response(q, SERVFAIL, ra=ra, limit=local_limit))
            return
        if local is not None:
            self._reply(client, addr, build_response(q, NOERROR, local, aa=True, ra=ra, limit=local_limit))
            return
        upstreams = [u for u in all_upstreams if not self._is_own(u)]
        if not upstreams:
            self._reply(client, addr, build_response(q, SERVFAIL, ra=ra, limit=local_limit))
            return
        if len(self._forwards) >= MAX_PENDING:
            log.debug("dns: %d forwards pending, SERVFAIL for %r", MAX_PENDING, q.qname)
            self._reply(client, addr, build_response(q, SERVFAIL, ra=ra, limit=local_limit))
            return
        self._next_upstream(_Forward(key, q, data, client, addr, upstreams))

    def _local(self, key, q, client):
        """[(type, rdata)] for a name the callbacks know (maybe empty: the name
        exists, without records of that type), None to forward."""
        if q.qclass != CLASS_IN:
            return None
        name = q.name
        if q.qtype == TYPE_PTR:
            ip = ptr_address(name)
            if ip is not None:
                target = self._reverse(key, ip, client) if self._reverse else None
                if target is None:
                    return None
                return [(TYPE_PTR, encode_name(target))]
        ips = self._resolve(key, name, client)
        if ips is None:
            return None
        if q.qtype not in (TYPE_A, TYPE_ANY):
            return []       # AAAA and the rest: the name exists, containers here are IPv4 only
        rdata = []
        for ip in dict.fromkeys(ips):
            try:
                rdata.append((TYPE_A, a_rdata(ip)))
            except ValueError:
                log.debug("dns: resolver gave %r for %r, not an IPv4 address", ip, name)
        self._rng.shuffle(rdata)   # Docker's round robin: spread clients over the replicas
        return rdata

    def _is_own(self, upstream):
        """Forwarding to one of our own sockets would loop until the pending
        limit is hit."""
        for lns in self._listeners.values():
            for ln in lns:
                if ln.sock.getsockname()[:2] == upstream:
                    return True
        return False

    # forwarding

    def _end_forward(self, f):
        if f.sock is not None:
            self._forwards.pop(f.sock, None)
            try:
                self._sel.unregister(f.sock)
            except (KeyError, ValueError):
                pass
            f.sock.close()
            f.sock = None

    def _next_upstream(self, f):
        """Close the current upstream attempt and start the next; when none is
        left, SERVFAIL (as moby does)."""
        self._end_forward(f)
        while True:
            f.index += 1
            if f.index >= len(f.upstreams):
                q = f.query
                limit = 65535 if f.tcp else UDP_PLAIN if not q.edns else min(q.udp_size, UDP_OURS)
                self._reply(f.client, f.addr, build_response(q, SERVFAIL, ra=True, limit=limit))
                return
            ip, port = f.upstreams[f.index]
            try:
                self._send_upstream(f, ip, port)
                return
            except OSError as e:
                log.debug("dns: upstream %s:%d: %s", ip, port, e)
                self._end_forward(f)

    def _send_upstream(self, f, ip, port):
        f.qid = self._rng.getrandbits(16)   # unguessable: off-path spoofing defence
        msg = struct.pack(">H", f.qid) + f.raw[2:]
        f.deadline = time.monotonic() + self._timeout
        f.rxbuf = bytearray()
        f.connected = False
        if f.tcp:
            s = socket.socket(_family(ip), socket.SOCK_STREAM)
            f.sock = s
            s.setblocking(False)
            err = s.connect_ex((ip, port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, "connect")
            f.txbuf = struct.pack(">H", len(msg)) + msg
            self._forwards[s] = f
            self._sel.register(s, selectors.EVENT_WRITE, f)
        else:
            s = socket.socket(_family(ip), socket.SOCK_DGRAM)   # a fresh random source port
            f.sock = s
            s.setblocking(False)
            s.connect((ip, port))   # the kernel then drops datagrams from anyone else
            s.send(msg)
            self._forwards[s] = f
            self._sel.register(s, selectors.EVENT_READ, f)

    def _forward_event(self, f, mask):
        try:
            if not f.tcp:
                for _ in range(UDP_BURST):
                    data = f.sock.recv(65535)
                    if self._upstream_reply(f, data):
                        return
                return
            if not f.connected:
                err = f.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, "connect")
                f.connected = True
            if f.txbuf:
                n = f.sock.send(f.txbuf)
                f.txbuf = f.txbuf[n:]
                if not f.txbuf:
                    self._sel.modify(f.sock, selectors.EVENT_READ, f)
                return
            data = f.sock.recv(65537)
            if not data:
                raise OSError(errno.ECONNRESET, "upstream closed the connection")
            f.rxbuf += data
            if len(f.rxbuf) >= 2:
                n = (f.rxbuf[0] << 8) | f.rxbuf[1]
                if len(f.rxbuf) >= 2 + n:
                    if not self._upstream_reply(f, bytes(f.rxbuf[2:2 + n])):
                        raise OSError(errno.EPROTO, "upstream sent a reply that does not match")
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            # e.g. ECONNREFUSED from an ICMP port unreachable: next server now
            ip, port = f.upstreams[f.index]
            log.debug("dns: upstream %s:%d: %s", ip, port, e)
            self._next_upstream(f)

    def _upstream_reply(self, f, data) -> bool:
        """Relay `data` if it answers f's query; True when f is finished with
        (relayed, or moved on to the next server)."""
        if len(data) < _HEADER.size:
            return False
        qid, flags, qd = struct.unpack_from(">HHH", data)
        question = f.query.question
        got = data[_HEADER.size:_HEADER.size + len(question)]
        if (qid != f.qid or not flags & QR or qd != 1 or len(got) != len(question)
                or got[:-4].lower() != question[:-4].lower() or got[-4:] != question[-4:]):
            log.debug("dns: ignored a reply that does not match the forwarded query")
            return False
        rcode = flags & 0xF
        if rcode in (SERVFAIL, REFUSED):
            # moby: a failing or refusing server may be transitional, try the next
            log.debug("dns: upstream %s:%d answered rcode %d", *f.upstreams[f.index], rcode)
            self._next_upstream(f)
            return True
        out = struct.pack(">H", f.query.id) + data[2:]
        if not f.tcp:
            limit = f.query.udp_size if f.query.edns else UDP_PLAIN
            if len(out) > limit:
                # the upstream ignored the client's size: send the bare header
                # with TC so the client asks again over TCP
                out = (_HEADER.pack(f.query.id, flags | TC, 1, 0, 0, 0) + question)
        self._end_forward(f)
        self._reply(f.client, f.addr, out)
        return True

    def _teardown(self):
        for key in list(self._listeners):
            self._drop_key(key)
        for c in list(self._clients):
            self._close_client(c)
        for f in list(self._forwards.values()):
            self._end_forward(f)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()
