"""TLS (issue 14): --tlsverify with a CA, server and client certificates
made here with openssl; curl, raw ssl, the docker CLI 28 (attach and exec
included) and docker-py, with and without a client certificate; --tls
alone; plain HTTP to a TLS port."""

import os
import socket
import ssl
import subprocess

import pytest

from tests.pydtest import require_mark

DOCKER = "/usr/local/bin/docker"
pytestmark = require_mark(os.access(DOCKER, os.X_OK), f"{DOCKER} (docker CLI 28)")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=pyd test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client", "stranger"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}-key.pem", "-out", f"{who}.csr",
                "-subj", f"/CN={who}", cwd=d)
    for who, ca in (("server", "ca"), ("client", "ca")):
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
                "-CAcreateserial", "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext", cwd=d)
    # A certificate from another CA: refused by --tlsverify.
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca-key.pem", "-out", "other-ca.pem",
            "-days", "2", "-subj", "/CN=other CA", cwd=d)
    openssl("x509", "-req", "-in", "stranger.csr", "-CA", "other-ca.pem", "-CAkey", "other-ca-key.pem",
            "-CAcreateserial", "-out", "stranger.pem", "-days", "2", "-extfile", "client.ext", cwd=d)
    return d


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory, certs, busybox_tar):
    from tests.pydtest import Daemon
    d = Daemon(tmp_path_factory.mktemp("tlsroot"), ["--tlsverify", "--tlscacert", str(certs / "ca.pem"),
                                                    "--tlscert", str(certs / "server.pem"),
                                                    "--tlskey", str(certs / "server-key.pem")]).start()
    r = d.unix_api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                        headers={"Content-Type": "application/x-tar"})
    assert r.status == 200, r
    yield d
    d.stop()


def curl(d, certs, *extra):
    return subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(certs / "ca.pem"), *extra,
                           f"https://127.0.0.1:{d.port}/version"], capture_output=True, text=True, timeout=30)


def test_curl_needs_a_client_certificate_signed_by_the_ca(tls_daemon, certs):
    r = curl(tls_daemon, certs)
    assert r.returncode != 0, r.stdout
    r = curl(tls_daemon, certs, "--cert", str(certs / "stranger.pem"), "--key", str(certs / "stranger-key.pem"))
    assert r.returncode != 0, r.stdout
    r = curl(tls_daemon, certs, "--cert", str(certs / "client.pem"), "--key", str(certs / "client-key.pem"))
    assert r.returncode == 0 and '"ApiVersion"' in r.stdout, r.stderr
    # Plain HTTP to the TLS port: no answer, and the daemon goes on.
    s = socket.create_connection(("127.0.0.1", tls_daemon.port), timeout=10)
    s.sendall(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        data = s.recv(4096)
    except OSError:
        data = b""
    s.close()
    assert b"ApiVersion" not in data
    assert tls_daemon.unix_api.get("/version").status == 200


def test_raw_ssl_without_a_certificate_is_refused(tls_daemon, certs):
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection(("127.0.0.1", tls_daemon.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert s.recv(4096) == b"", "answered without a client certificate"
                raise ConnectionError("closed")


def docker(d, certs, *args, cert=True, stdin=None):
    tls = ["--tlsverify", "--tlscacert", str(certs / "ca.pem")]
    if cert:
        tls += ["--tlscert", str(certs / "client.pem"), "--tlskey", str(certs / "client-key.pem")]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(certs), "DOCKER_CONFIG": str(certs / "cfg")}
    return subprocess.run([DOCKER, *tls, "-H", f"tcp://127.0.0.1:{d.port}", *args], capture_output=True,
                          text=True, timeout=120, env=env, input=stdin)


def test_docker_cli_over_tls_with_attach_and_exec(tls_daemon, certs):
    r = docker(tls_daemon, certs, "version", "--format", "{{.Server.APIVersion}}")
    assert r.returncode == 0 and r.stdout.strip() == "1.41", r.stderr
    r = docker(tls_daemon, certs, "version", cert=False)
    assert r.returncode != 0
    r = docker(tls_daemon, certs, "run", "--rm", "--pull", "never", "busybox", "echo", "over tls")
    assert (r.returncode, r.stdout) == (0, "over tls\n"), r.stderr
    r = docker(tls_daemon, certs, "run", "--rm", "-i", "--pull", "never", "busybox", "cat", stdin="typed in\n")
    assert (r.returncode, r.stdout) == (0, "typed in\n"), r.stderr
    r = docker(tls_daemon, certs, "run", "-d", "--name", "tlsbox", "--pull", "never", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = docker(tls_daemon, certs, "exec", "tlsbox", "sh", "-c", "echo exec over tls")
        assert (r.returncode, r.stdout) == (0, "exec over tls\n"), r.stderr
        r = docker(tls_daemon, certs, "exec", "-i", "tlsbox", "cat", stdin="exec stdin\n")
        assert (r.returncode, r.stdout) == (0, "exec stdin\n"), r.stderr
    finally:
        docker(tls_daemon, certs, "rm", "-f", "tlsbox")


def test_docker_py_over_tls(tls_daemon, certs, monkeypatch):
    import docker as docker_sdk
    # requests lets REQUESTS_CA_BUNDLE override the session's CA (its issue 3829): the test's CA must win.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tls = docker_sdk.tls.TLSConfig(client_cert=(str(certs / "client.pem"), str(certs / "client-key.pem")),
                                   ca_cert=str(certs / "ca.pem"), verify=True)
    client = docker_sdk.DockerClient(base_url=f"https://127.0.0.1:{tls_daemon.port}", tls=tls, version="1.41")
    try:
        assert client.ping()
        out = client.containers.run("busybox", ["echo", "sdk over tls"], remove=True)
        assert out == b"sdk over tls\n"
        c = client.containers.run("busybox", ["sleep", "60"], detach=True)
        try:
            code, out = c.exec_run(["echo", "sdk exec"])
            assert (code, out) == (0, b"sdk exec\n")
        finally:
            c.remove(force=True)
    finally:
        client.close()


def test_tls_without_verify_serves_clients_without_certificates(new_daemon, certs):
    d = new_daemon(extra_args=["--tls", "--tlscert", str(certs / "server.pem"),
                               "--tlskey", str(certs / "server-key.pem")]).start()
    r = curl(d, certs)
    assert r.returncode == 0 and '"ApiVersion"' in r.stdout, r.stderr
    d.stop()


def test_missing_certificate_files_stop_the_daemon(tmp_path):
    from tests.pydtest import daemon_cmd, free_port
    p = subprocess.run(daemon_cmd() + ["--tlsverify", "--tlscacert", str(tmp_path / "nope.pem"),
                                       "--tlscert", str(tmp_path / "nope.pem"), "--tlskey", str(tmp_path / "nope.pem"),
                                       "-H", f"tcp://127.0.0.1:{free_port()}", "-g", str(tmp_path / "r"),
                                       "-p", str(tmp_path / "p.pid")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "TLS" in p.stderr, p.stderr
