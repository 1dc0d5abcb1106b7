"""pyd.network.proxy: TCP and UDP through the proxy to local servers on
127.0.0.1 (and ::1): round trips, large transfers both ways in both copy
modes, half-close, port conflicts, the port freed by unpublish, a target
that refuses, many clients at once, and close() leaving nothing behind."""

import errno
import hashlib
import os
import socket
import threading

import pytest

from pyd import errors
from pyd.network.proxy import Proxy, Published
from tests.pydtest import poll, require

T = 10.0   # every socket operation of a test
LO = "127.0.0.1"


class EchoServer:
    """A TCP server on 127.0.0.1 echoing each connection until EOF, then
    closing; one thread per connection, ended by close()."""

    def __init__(self, family=socket.AF_INET, host=LO):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(256)
        self.sock.settimeout(T)
        self.port = self.sock.getsockname()[1]
        self.threads = []
        self.stop = threading.Event()
        self.accepter = threading.Thread(target=self._accept, name="echo-accept", daemon=True)
        self.accepter.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self.serve, args=(conn,), name="echo", daemon=True)
            self.threads.append(t)
            t.start()

    def serve(self, conn):
        conn.settimeout(T)
        with conn:
            try:
                while True:
                    data = conn.recv(1 << 20)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return

    def close(self):
        self.stop.set()
        self.sock.shutdown(socket.SHUT_RDWR)       # wakes the accept(); close() alone would not
        self.sock.close()
        self.accepter.join(T)
        for t in self.threads:
            t.join(T)


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture(params=[True, False], ids=["splice", "copy"])
def proxy(request):
    p = Proxy(zero_copy=request.param)
    yield p
    p.close()


def connect(port, host=LO):
    return socket.create_connection((host, port), timeout=T)


def assert_reset(port):
    """A connection to `port` is reset: at connect already if the RST beats
    the client's thread back from connect(), else at the first recv."""
    try:
        c = connect(port)
    except ConnectionResetError:
        return
    with c:
        with pytest.raises(ConnectionResetError):
            c.recv(10)


def recv_all(sock):
    chunks = []
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def test_tcp_round_trip(proxy, echo):
    port = proxy.publish("tcp", LO, 0, LO, echo.port)
    assert port > 0
    assert proxy.published() == [Published("tcp", LO, port, LO, echo.port)]
    with connect(port) as c:
        c.sendall(b"hello")
        assert c.recv(100) == b"hello"
        c.sendall(b"again")
        assert c.recv(100) == b"again"


def test_large_transfer_both_directions(proxy, echo):
    """64 MiB up and the same back at once: a sender thread, the main
    thread reading, both checksummed."""
    port = proxy.publish("tcp", LO, 0, LO, echo.port)
    size = 64 << 20
    block = os.urandom(1 << 20)
    sent = hashlib.sha256()
    with connect(port) as c:
        c.settimeout(30)

        def send():
            for i in range(size // len(block)):
                piece = block[i:] + block[:i]
                sent.update(piece)
                c.sendall(piece)
            c.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        got, n = hashlib.sha256(), 0
        while True:
            data = c.recv(1 << 20)
            if not data:
                break
            got.update(data)
            n += len(data)
        sender.join(30)
    assert n == size
    assert got.hexdigest() == sent.hexdigest()


def test_splice_einval_falls_back_to_copying_mid_stream(echo, monkeypatch):
    """splice failing with EINVAL after some chunks (data already in the
    pipes): the connections go on by copying, nothing lost or reordered."""
    real, calls = os.splice, []

    def splice(*args, **kw):
        calls.append(1)
        if len(calls) > 6:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(*args, **kw)

    monkeypatch.setattr(os, "splice", splice)
    with Proxy() as p:
        port = p.publish("tcp", LO, 0, LO, echo.port)
        data = os.urandom(8 << 20)
        with connect(port) as c:
            sender = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
            sender.start()
            got = recv_all(c)
            sender.join(T)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert len(calls) > 6


def test_half_close_reaches_the_server_which_still_replies():
    """The client shuts down its write side; the server sees EOF, then
    answers, then closes; the client reads the answer and then EOF."""
    server = socket.socket()
    server.bind((LO, 0))
    server.listen(1)
    server.settimeout(T)
    p = Proxy()
    try:
        port = p.publish("tcp", LO, 0, LO, server.getsockname()[1])
        with connect(port) as c:
            c.sendall(b"question")
            c.shutdown(socket.SHUT_WR)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(T)
                assert recv_all(conn) == b"question"     # EOF forwarded
                conn.sendall(b"answer after your EOF")
            assert recv_all(c) == b"answer after your EOF"
    finally:
        p.close()
        server.close()


def test_server_half_close_reaches_the_client(echo):
    """The other way: the target shuts down first, the client still writes."""
    server = socket.socket()
    server.bind((LO, 0))
    server.listen(1)
    server.settimeout(T)
    with Proxy() as p:
        port = p.publish("tcp", LO, 0, LO, server.getsockname()[1])
        with connect(port) as c:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(T)
                conn.sendall(b"banner")
                conn.shutdown(socket.SHUT_WR)
                assert recv_all(c) == b"banner"
                c.sendall(b"late words")
                c.shutdown(socket.SHUT_WR)
                assert recv_all(conn) == b"late words"
    server.close()


def test_fixed_port_conflict_raises_eaddrinuse(echo):
    with Proxy() as p:
        port = p.publish("tcp", LO, 0, LO, echo.port)
        with pytest.raises(OSError) as e:
            p.publish("tcp", LO, port, LO, echo.port)
        assert e.value.errno == errno.EADDRINUSE
        assert e.value.strerror == f"Bind for {LO}:{port} failed: port is already allocated"
        # a port someone else holds: the same answer
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind((LO, 0))
            taken = other.getsockname()[1]
            with pytest.raises(OSError, match="port is already allocated") as e:
                p.publish("udp", LO, taken, LO, 9)
            assert e.value.errno == errno.EADDRINUSE
        assert [m.host_port for m in p.published()] == [port]
        # a fixed free port is bound as asked
        s = socket.socket()
        s.bind((LO, 0))
        free = s.getsockname()[1]
        s.close()
        assert p.publish("tcp", LO, free, LO, echo.port) == free


def test_other_bind_errors_are_clear():
    with Proxy() as p:
        with pytest.raises(OSError) as e:
            p.publish("tcp", "192.0.2.1", 0, LO, 80)     # TEST-NET: no such local address
        assert e.value.errno == errno.EADDRNOTAVAIL
        assert "cannot listen on tcp 192.0.2.1:0" in e.value.strerror
        with pytest.raises(errors.BadParameter):
            p.publish("tcp", "localhost", 0, LO, 80)     # names are never resolved
        with pytest.raises(errors.BadParameter):
            p.publish("sctp", LO, 0, LO, 80)
        with pytest.raises(errors.BadParameter):
            p.publish("tcp", LO, 70000, LO, 80)
        assert p.published() == []


def test_unpublish_frees_the_port_at_once(proxy, echo):
    port = proxy.publish("tcp", LO, 0, LO, echo.port)
    with connect(port) as c:                  # a closed connection, the client closing first
        c.sendall(b"x")
        assert c.recv(10) == b"x"
    live = connect(port)                       # and one still open
    live.sendall(b"y")
    assert live.recv(10) == b"y"
    assert proxy.unpublish("tcp", LO, port) is True
    assert proxy.published() == []
    with pytest.raises(ConnectionResetError):  # reset, never left hanging
        live.recv(10)
    with pytest.raises(ConnectionRefusedError):
        connect(port)
    with socket.socket() as s:                 # no SO_REUSEADDR: nothing left on the port
        s.bind((LO, port))
    assert proxy.publish("tcp", LO, port, LO, echo.port) == port
    assert proxy.unpublish("tcp", LO, port) is True
    assert proxy.unpublish("tcp", LO, port) is False
    live.close()


def test_refused_target_resets_the_client_and_others_are_served(echo):
    dead = socket.socket()
    dead.bind((LO, 0))
    dead_port = dead.getsockname()[1]
    dead.close()                               # nothing listens there
    with Proxy() as p:
        bad = p.publish("tcp", LO, 0, LO, dead_port)
        good = p.publish("tcp", LO, 0, LO, echo.port)
        for _ in range(3):
            assert_reset(bad)
        with connect(good) as c:
            c.sendall(b"still here")
            assert c.recv(100) == b"still here"
        assert len(p.published()) == 2


def test_target_that_never_answers_times_out(echo):
    """A target whose accept queue is full drops the SYN; after
    connect_timeout the client is reset, and other clients are served."""
    stuck = socket.socket()
    stuck.bind((LO, 0))
    stuck.listen(0)                                 # room for one queued connection
    filler = [connect(stuck.getsockname()[1])]
    try:
        with Proxy(connect_timeout=0.3) as p:
            port = p.publish("tcp", LO, 0, LO, stuck.getsockname()[1])
            good = p.publish("tcp", LO, 0, LO, echo.port)
            with connect(port) as c:
                with connect(good) as g:            # the loop is not blocked meanwhile
                    g.sendall(b"alive")
                    assert g.recv(10) == b"alive"
                assert p.active("tcp", LO, port) == 1
                with pytest.raises(ConnectionResetError):
                    c.recv(10)                      # within T: the timeout fired
            assert p.active("tcp", LO, port) == 0
    finally:
        for f in filler:
            f.close()
        stuck.close()


def test_ipv6_loopback(echo):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        ok = True
    except OSError:
        ok = False
    require(ok, "IPv6 on the loopback")
    server6 = EchoServer(socket.AF_INET6, "::1")
    try:
        with Proxy() as p:
            port = p.publish("tcp", "::1", 0, LO, echo.port)        # v6 outside, v4 inside
            port6 = p.publish("tcp", LO, 0, "::1", server6.port)    # and the other way
            with connect(port, "::1") as c:
                c.sendall(b"six to four")
                assert c.recv(100) == b"six to four"
            with connect(port6) as c:
                c.sendall(b"four to six")
                assert c.recv(100) == b"four to six"
            with pytest.raises(OSError, match=rf"Bind for ::1:{port} failed: port is already allocated"):
                p.publish("tcp", "::1", port, LO, echo.port)
            assert p.unpublish("tcp", "::1", port)
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", port))
    finally:
        server6.close()


class UdpEcho:
    """Answers each datagram with b"echo:" + it, from its own thread."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LO, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.peers = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="echo-udp", daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.peers.add(addr)
            self.sock.sendto(b"echo:" + data, addr)

    def close(self):
        self.stop.set()
        self.thread.join(T)
        self.sock.close()


@pytest.fixture
def udp_echo():
    server = UdpEcho()
    yield server
    server.close()


def udp_client():
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind((LO, 0))
    c.settimeout(T)
    return c


def test_udp_round_trip_and_two_clients_kept_apart(udp_echo):
    with Proxy() as p:
        port = p.publish("udp", LO, 0, LO, udp_echo.port)
        a, b = udp_client(), udp_client()
        with a, b:
            a.sendto(b"from a", (LO, port))
            b.sendto(b"from b", (LO, port))
            data, src = a.recvfrom(100)
            assert (data, src) == (b"echo:from a", (LO, port))   # the reply comes from the published port
            assert b.recvfrom(100) == (b"echo:from b", (LO, port))
            for i in range(20):
                a.sendto(b"a%d" % i, (LO, port))
                assert a.recv(100) == b"echo:a%d" % i
            big = os.urandom(60000)
            b.sendto(big, (LO, port))
            assert b.recv(65535) == b"echo:" + big
        assert len(udp_echo.peers) == 2          # one association (source port) per client


def test_udp_idle_associations_expire(udp_echo):
    with Proxy(udp_timeout=0.2) as p:
        port = p.publish("udp", LO, 0, LO, udp_echo.port)
        with udp_client() as a:
            a.sendto(b"1", (LO, port))
            assert a.recv(100) == b"echo:1"
            assert p.active("udp", LO, port) == 1
            # idle for 0.2 s: the loop's sweep drops it (a timer, so polled)
            assert poll(lambda: p.active("udp", LO, port) == 0, timeout=5)
            a.sendto(b"2", (LO, port))              # a new association, served alike
            assert a.recv(100) == b"echo:2"
            assert p.active("udp", LO, port) == 1


def test_udp_association_cap(udp_echo):
    with Proxy(max_assocs=2) as p:
        port = p.publish("udp", LO, 0, LO, udp_echo.port)
        clients = [udp_client() for _ in range(3)]
        try:
            for c in clients[:2]:
                c.sendto(b"in", (LO, port))
                assert c.recv(100) == b"echo:in"
            clients[2].settimeout(0.3)
            clients[2].sendto(b"over", (LO, port))
            with pytest.raises(socket.timeout):
                clients[2].recv(100)                  # dropped: no third association
            clients[0].sendto(b"again", (LO, port))   # the others still served
            assert clients[0].recv(100) == b"echo:again"
        finally:
            for c in clients:
                c.close()


def test_many_concurrent_connections(proxy, echo):
    port = proxy.publish("tcp", LO, 0, LO, echo.port)
    conns = [connect(port) for _ in range(100)]
    try:
        for i, c in enumerate(conns):
            c.sendall(b"%d;" % i * 100)
        for i, c in enumerate(conns):
            want = b"%d;" % i * 100
            got = b""
            while len(got) < len(want):
                data = c.recv(len(want) - len(got))
                assert data
                got += data
            assert got == want
        assert proxy.active("tcp", LO, port) == 100      # each one answered, so accepted
    finally:
        for c in conns:
            c.close()


def test_connection_cap_refuses_cleanly(echo):
    with Proxy(max_conns=2) as p:
        port = p.publish("tcp", LO, 0, LO, echo.port)
        a, b = connect(port), connect(port)
        with a, b:
            for c in (a, b):
                c.sendall(b"ok")
                assert c.recv(10) == b"ok"
            assert_reset(port)
            a.sendall(b"still")
            assert a.recv(10) == b"still"


def _listening_ports():
    """Local ports in LISTEN on IPv4 (from /proc/net/tcp, state 0A)."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            pass
    return ports


def _threads():
    """Every thread but the echo servers' (whose connection threads come and go)."""
    return {t for t in threading.enumerate() if not t.name.startswith("echo")}


def test_close_leaves_no_thread_and_no_listener(echo, udp_echo):
    before = _threads()
    p = Proxy()
    assert _threads() == before                            # started lazily
    port = p.publish("tcp", LO, 0, LO, echo.port)
    uport = p.publish("udp", LO, 0, LO, udp_echo.port)
    assert any(t.name == "proxy" for t in threading.enumerate())
    with connect(port) as c:
        c.sendall(b"x")
        assert c.recv(10) == b"x"
        assert port in _listening_ports()
        p.close()
        assert _threads() == before
        assert port not in _listening_ports()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LO, uport))
    assert p.published() == []
    with pytest.raises(errors.Unavailable):
        p.publish("tcp", LO, 0, LO, echo.port)
    p.close()                                               # twice is fine


def test_publish_and_unpublish_from_many_threads(echo):
    with Proxy() as p:
        ports, failures = [], []

        def one():
            try:
                port = p.publish("tcp", LO, 0, LO, echo.port)
                with connect(port) as c:
                    c.sendall(b"t")
                    assert c.recv(10) == b"t"
                assert p.unpublish("tcp", LO, port)
                ports.append(port)
            except Exception as e:              # reported below, in the test's thread
                failures.append(e)

        threads = [threading.Thread(target=one) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(T)
        assert failures == []
        assert len(ports) == 16
        assert p.published() == []
