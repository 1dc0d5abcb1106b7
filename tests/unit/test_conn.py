"""Conn, the duplex stream of a hijacked connection, over TCP, a unix socket
and TLS: the same calls, the same behaviour. Loopback only."""

import socket
import socketserver
import ssl
import subprocess
import threading
import time

import pytest

from pyd.http.conn import Conn

KINDS = ["tcp", "unix", "tls"]


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    key, crt = str(d / "key.pem"), str(d / "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", crt, "-days", "1"], check=True, capture_output=True)
    return key, crt


def connected(kind, cert, tmp_path):
    """(server socket, client socket), connected; TLS handshake done."""
    if kind == "unix":
        path = str(tmp_path / "s.sock")
        lst = socket.socket(socket.AF_UNIX)
        lst.bind(path)
        addr, family = path, socket.AF_UNIX
    else:
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        addr, family = lst.getsockname(), socket.AF_INET
    lst.listen(1)
    client = socket.socket(family)
    client.settimeout(10)
    client.connect(addr)
    server, _ = lst.accept()
    lst.close()
    server.settimeout(10)
    if kind == "tls":
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert[1], cert[0])
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.load_verify_locations(cert[1])
        out = {}
        t = threading.Thread(target=lambda: out.update(s=sctx.wrap_socket(server, server_side=True)))
        t.start()
        client = cctx.wrap_socket(client, server_hostname="localhost")
        t.join(10)
        server = out["s"]
    return server, client


def make_conn(server):
    """What the HTTP handler hands over: the socket, its buffered reader, its writer."""
    return Conn(server, server.makefile("rb"), socketserver._SocketWriter(server))


def read_all(sock, timeout=10):
    sock.settimeout(timeout)
    out = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return out
        out += data


@pytest.mark.parametrize("kind", KINDS)
def test_bytes_buffered_by_the_parser_come_first(kind, cert, tmp_path):
    server, client = connected(kind, cert, tmp_path)
    conn_rfile = server.makefile("rb")
    client.sendall(b"POST /attach HTTP/1.1\r\n\r\nstdin-bytes")
    assert conn_rfile.readline() == b"POST /attach HTTP/1.1\r\n"
    assert conn_rfile.readline() == b"\r\n"
    conn = Conn(server, conn_rfile, socketserver._SocketWriter(server))
    got = b""
    while len(got) < len(b"stdin-bytes"):
        got += conn.read(4)
    assert got == b"stdin-bytes"
    client.close()
    server.close()


@pytest.mark.parametrize("kind", KINDS)
def test_write_then_close_write_gives_the_client_data_then_eof(kind, cert, tmp_path):
    server, client = connected(kind, cert, tmp_path)
    conn = make_conn(server)
    conn.write(b"x" * 100000)
    closer = threading.Thread(target=conn.close_write)
    closer.start()
    assert read_all(client) == b"x" * 100000
    if kind == "tls":
        client = client.unwrap()  # answer the close_notify, as a TLS client does
    closer.join(10)
    assert not closer.is_alive()
    if kind != "tls":  # a half-close: the client can still talk to us
        client.sendall(b"after")
        assert conn.read(100) == b"after"
    client.close()
    server.close()


@pytest.mark.parametrize("kind", KINDS)
def test_gone_never_blocks_keeps_input_and_sees_eof(kind, cert, tmp_path):
    server, client = connected(kind, cert, tmp_path)
    conn = make_conn(server)
    t0 = time.monotonic()
    assert conn.gone() is False
    assert time.monotonic() - t0 < 1
    client.sendall(b"early input")
    deadline = time.monotonic() + 5
    while not conn._pending and time.monotonic() < deadline:
        assert conn.gone() is False
        time.sleep(0.01)
    assert conn.read(100) == b"early input"  # gone() kept what it read
    client.close()
    deadline = time.monotonic() + 5
    while not conn.gone():
        assert time.monotonic() < deadline, "EOF not noticed"
        time.sleep(0.01)
    assert conn.read(10) == b""
    server.close()


@pytest.mark.parametrize("kind", ["tcp", "unix"])  # TLS has no half-close: close_notify, then close
def test_a_half_close_is_not_gone(kind, cert, tmp_path):
    """The docker CLI half-closes at once when it sends no stdin, and still
    reads the output: that client has not gone."""
    server, client = connected(kind, cert, tmp_path)
    conn = make_conn(server)
    client.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        assert conn.gone(half_close=True, probe=b"\x01\0\0\0\0\0\0\0") is False
        time.sleep(0.05)
    assert conn.gone() is True  # without half_close, EOF is leaving
    assert conn.read(10) == b""
    conn.write(b"still read")
    client.settimeout(5)
    got = b""
    while not got.endswith(b"still read"):
        got += client.recv(100)
    assert got.startswith(b"\x01\0\0\0\0\0\0\0")  # the probes: empty frames
    client.close()
    deadline = time.monotonic() + 5
    while not conn.gone(half_close=True, probe=b"\x01\0\0\0\0\0\0\0"):  # a closed TCP peer resets
        assert time.monotonic() < deadline, "a closed client not noticed"
        time.sleep(0.01)
    server.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["abort", "close_read"])
def test_abort_and_close_read_free_a_blocked_reader(kind, how, cert, tmp_path):
    server, client = connected(kind, cert, tmp_path)
    server.settimeout(None)
    conn = make_conn(server)
    got = []
    reader = threading.Thread(target=lambda: got.append(conn.read(100)))
    reader.start()
    time.sleep(0.1)
    getattr(conn, how)()
    reader.join(5)
    assert not reader.is_alive() and got == [b""]
    client.close()
    server.close()
