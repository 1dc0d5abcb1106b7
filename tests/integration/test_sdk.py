"""The docker Python SDK 7 (pip package `docker`, version="auto") against pyd,
over TCP and over the unix socket.

Grouped by feature like test_cli.py. PYD_TESTS_AGAINST=dockerd runs the same
tests against a private dockerd 20.10 (tests/pydtest/dockerd.py), to check
the tests themselves. Every call has the client's timeout; event reads are
bounded by `until`.
"""

import io
import struct
import tarfile
import time
import uuid

import pytest

docker = pytest.importorskip("docker")

from tests.pydtest import dockerd as dd
from tests.pydtest import wait_for

TIMEOUT = 60


@pytest.fixture(scope="module")
def target(request, tmp_path_factory):
    return dd.client_target(request, tmp_path_factory)


@pytest.fixture(scope="module", params=["tcp", "unix"])
def client(request, target):
    url = f"tcp://127.0.0.1:{target.port}" if request.param == "tcp" else f"unix://{target.sock}"
    c = docker.DockerClient(base_url=url, version="auto", timeout=TIMEOUT)
    yield c
    c.close()


@pytest.fixture
def name(client):
    made = []

    def make(prefix="sdk"):
        n = f"{prefix}-{uuid.uuid4().hex[:10]}"
        made.append(n)
        return n

    yield make
    for n in made:
        try:
            client.containers.get(n).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:  # cleanup only: the test's own failure says more
            print(f"cleanup of {n}: {e}")


def sleeper(client, name, *cmd, **kw):
    c = client.containers.run("busybox", list(cmd or ("sleep", "300")), detach=True, name=name(), **kw)
    wait_for(lambda: (c.reload(), c.status == "running")[1], what="running")
    return c


def read_frames(sock, want, timeout=10):
    """Read 8-byte framed output from an attach socket until `want` bytes of payload; [(stream, bytes)]."""
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(timeout)
    buf, frames, got = b"", [], 0
    while got < want:
        chunk = raw.recv(4096)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 8:
            n = struct.unpack(">I", buf[4:8])[0]
            if len(buf) < 8 + n:
                break
            frames.append((buf[0], buf[8:8 + n]))
            got += n
            buf = buf[8 + n:]
    return frames


class TestSystem:
    def test_version_auto_and_ping(self, client):
        assert client.api.api_version == "1.41"
        v = client.version()
        assert v["ApiVersion"] == "1.41" and v["Os"] == "linux" and isinstance(v["Version"], str)
        assert client.ping() is True
        info = client.info()
        assert isinstance(info["Containers"], int) and info["Images"] >= 1


    def test_keep_alive_survives_an_unknown_endpoint_with_a_body(self, client):
        """requests reuses its connection: the body of a request answered 404 must not
        be read as the next request (the SDK would see garbage or a hang)."""
        for path in ("/containers/sdk-nosuch/no-such-endpoint", "/exec/sdk-nosuch/start"):
            r = client.api._post_json(client.api._url(path), data={"Detach": True, "Cmd": ["true"]})
            assert r.status_code == 404
            assert client.ping() is True
            assert client.version()["ApiVersion"] == "1.41"


class TestRun:
    def test_run_attached_returns_output(self, client, name):
        out = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"], name=name(), stderr=True)
        assert sorted(out.splitlines()) == [b"err", b"out"]
        out = client.containers.run("busybox", ["echo", "removed"], remove=True)
        assert out == b"removed\n"

    def test_run_attached_failure_raises(self, client, name):
        n = name()
        with pytest.raises(docker.errors.ContainerError) as e:
            client.containers.run("busybox", ["sh", "-c", "echo bad >&2; exit 3"], name=n)
        assert e.value.exit_status == 3 and b"bad" in e.value.stderr

    def test_run_detached_wait_logs(self, client, name):
        c = client.containers.run("busybox", ["sh", "-c", "echo one; sleep 1; echo two; exit 4"], detach=True,
                                  name=name(), environment={"A": "b"}, labels={"sdk": "yes"})
        assert len(c.id) == 64
        assert c.wait(timeout=30) == {"StatusCode": 4, "Error": None}
        assert c.logs() == b"one\ntwo\n"
        assert c.logs(tail=1) == b"two\n"
        c.reload()
        assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 4 and c.labels == {"sdk": "yes"}
        assert "A=b" in c.attrs["Config"]["Env"]

    def test_logs_follow_stream(self, client, name):
        c = sleeper(client, name, "sh", "-c", "echo first; sleep 1; echo second; exec sleep 300")
        stream = c.logs(stream=True, follow=True)
        got = b""
        deadline = time.monotonic() + 20
        for chunk in stream:
            got += chunk
            if b"second\n" in got or time.monotonic() > deadline:
                break
        stream.close()
        assert got == b"first\nsecond\n"

    def test_list_get_and_not_found(self, client, name):
        c = sleeper(client, name)
        assert [x.id for x in client.containers.list(filters={"name": c.name})] == [c.id]
        assert client.containers.get(c.name).id == c.id
        assert client.containers.get(c.id[:12]).name == c.name
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("sdk-nosuch")
        c.stop(timeout=1)
        assert c.id not in [x.id for x in client.containers.list()]
        assert c.id in [x.id for x in client.containers.list(all=True)]


class TestExec:
    def test_exec_run(self, client, name):
        c = sleeper(client, name)
        r = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 2"], demux=True)
        assert r.exit_code == 2 and r.output == (b"out\n", b"err\n")
        r = c.exec_run(["sh", "-c", 'id -u; pwd; echo "$E"'], user="1000", workdir="/tmp", environment={"E": "x y"})
        assert r.exit_code == 0 and r.output == b"1000\n/tmp\nx y\n"
        r = c.exec_run(["sh", "-c", "test -t 1 && echo tty"], tty=True)
        assert r.exit_code == 0 and r.output.strip() == b"tty"

    def test_exec_stream(self, client, name):
        c = sleeper(client, name)
        r = c.exec_run(["sh", "-c", "echo a; sleep 0.5; echo b"], stream=True)
        assert b"".join(r.output) == b"a\nb\n"


class TestAttach:
    def test_attach_socket_stdin_and_output(self, client, name):
        c = client.containers.create("busybox", ["sh", "-c", "read line; echo got:$line"], stdin_open=True, name=name())
        sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        try:
            c.start()
            raw = getattr(sock, "_sock", sock)
            raw.sendall(b"hello\n")
            frames = read_frames(sock, len(b"got:hello\n"))
            assert frames == [(1, b"got:hello\n")]
        finally:
            sock.close()
        assert c.wait(timeout=30)["StatusCode"] == 0


class TestArchive:
    def test_put_and_get_archive(self, client, name):
        c = sleeper(client, name)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for path, data in (("dir/a.txt", b"alpha\n"), ("dir/sub/b.txt", b"beta\n")):
                ti = tarfile.TarInfo(path)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        assert c.put_archive("/tmp", buf.getvalue()) is True
        assert c.exec_run(["cat", "/tmp/dir/sub/b.txt"]).output == b"beta\n"
        chunks, stat = c.get_archive("/tmp/dir")
        assert stat["name"] == "dir" and stat["mode"] & 0o20000000000  # a directory (Go's os.ModeDir)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
            names = sorted(m.name for m in tf.getmembers())
            assert names == ["dir", "dir/a.txt", "dir/sub", "dir/sub/b.txt"]
            assert tf.extractfile("dir/a.txt").read() == b"alpha\n"
        with pytest.raises(docker.errors.NotFound):
            c.get_archive("/sdk-nosuch")
        with pytest.raises(docker.errors.NotFound):
            c.put_archive("/sdk-nosuch-dir", buf.getvalue())


class TestEvents:
    def test_events_bounded(self, client, name):
        since = int(time.time()) - 1
        n = name()
        client.containers.run("busybox", ["true"], name=n)
        client.containers.get(n).remove()
        until = int(time.time()) + 1
        time.sleep(1.2)
        evs = list(client.events(since=since, until=until, decode=True, filters={"container": n}))
        actions = [e["Action"] for e in evs]
        for a in ("create", "start", "die", "destroy"):
            assert a in actions, actions
        assert all(e["Type"] == "container" and e["Actor"]["Attributes"]["name"] == n for e in evs)
        assert all(isinstance(e["time"], int) and isinstance(e["timeNano"], int) for e in evs)


class TestImages:
    def test_images_list_and_remove(self, client):
        tags = {t for img in client.images.list() for t in img.tags}
        assert "busybox:latest" in tags
        img = client.images.get("busybox")
        assert img.id.startswith("sha256:") and "busybox:latest" in img.tags
        ref = f"sdk-img-{uuid.uuid4().hex[:8]}"
        assert img.tag(ref, "v1") is True
        assert f"{ref}:v1" in client.images.get(img.id).tags
        assert [i.id for i in client.images.list(name=ref)] == [img.id]
        client.images.remove(f"{ref}:v1")
        assert f"{ref}:v1" not in {t for i in client.images.list() for t in i.tags}
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(f"{ref}:v1")
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.remove("sdk-nosuch:v0")
