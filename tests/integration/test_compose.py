"""Debian's docker-compose (1.29, docker-py 5; it calls /v1.41/... without
negotiating, relies on label filters, and runs the docker CLI for `exec`)
against pyd: two services on a user-defined network, a named volume and a
published port on 127.0.0.1.

The client service reaches the web service by its service name through
pyd's DNS server on the network; the host reaches the published port;
`ps`, `logs`, `exec` (over the API with -T, and through the docker CLI 28
under a pty without it), `up --scale` and `down -v` work, and `down -v`
leaves no container, network or volume of the project behind.
"""

import json
import os
import shutil
import subprocess
import time
import uuid
import urllib.request

import pytest

from tests.pydtest import dockerd as dd
from tests.pydtest import free_port, require_mark, wait_for

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
DOCKER_DIR = "/usr/local/bin"  # the docker CLI 28 that compose's exec runs, first on PATH
TIMEOUT = 90

pytestmark = require_mark(os.access(COMPOSE, os.X_OK), "docker-compose (Debian's package)")

FILE = """\
version: "3.7"
services:
  web:
    image: busybox
    command: ["httpd", "-f", "-p", "80", "-h", "/data"]
    volumes:
      - site:/data
    ports:
      - "127.0.0.1:{port}:80"
    networks: [front]
  client:
    image: busybox
    command: ["sh", "-c", "i=0; while [ $$i -lt 600 ]; do timeout 2 wget -q -O - http://web/index.html && echo; i=$$((i+1)); sleep 0.5; done"]
    networks: [front]
    depends_on: [web]
volumes:
  site:
networks:
  front:
"""


@pytest.fixture(scope="module")
def target(request, tmp_path_factory):
    return dd.client_target(request, tmp_path_factory)


class Compose:
    def __init__(self, target, workdir, project):
        self.target, self.workdir, self.project = target, workdir, project
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
        self.env.update(DOCKER_HOST=f"tcp://127.0.0.1:{target.port}", DOCKER_CONFIG=str(workdir / "cfg"),
                        PATH=DOCKER_DIR + os.pathsep + self.env.get("PATH", "/usr/bin:/bin"),
                        COMPOSE_PROJECT_NAME=project, NO_COLOR="1")

    def __call__(self, *args, check=True, timeout=TIMEOUT):
        p = subprocess.run([COMPOSE, *args], cwd=self.workdir, env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if check:
            assert p.returncode == 0, f"docker-compose {' '.join(args)}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def under_pty(self, command, timeout=TIMEOUT):
        """`docker-compose <command>` with a terminal (script(1)), so that exec
        goes through the docker CLI as it does for a user at a shell."""
        p = subprocess.run(["script", "-qec", f"{COMPOSE} {command}", "/dev/null"], cwd=self.workdir,
                           env=self.env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout.decode(errors="replace").replace("\r\n", "\n")


def api(target, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{target.port}{path}", timeout=10) as r:
        return json.loads(r.read())


def project_objects(target, project):
    label = json.dumps({"label": [f"com.docker.compose.project={project}"]})
    q = urllib.request.quote(label)
    containers = api(target, f"/v1.41/containers/json?all=1&filters={q}")
    networks = api(target, f"/v1.41/networks?filters={q}")
    volumes = api(target, f"/v1.41/volumes?filters={q}")["Volumes"] or []
    return containers, networks, volumes


def fetch(port, path="/index.html"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def test_two_services_on_a_network_with_a_volume_and_a_port(target, tmp_path):
    project = f"pydc{uuid.uuid4().hex[:8]}"
    port = free_port()
    (tmp_path / "docker-compose.yml").write_text(FILE.format(port=port))
    (tmp_path / "cfg").mkdir()
    compose = Compose(target, tmp_path, project)
    try:
        compose("up", "-d")
        ps = compose("ps").stdout
        assert f"{project}_web_1" in ps and f"{project}_client_1" in ps, ps
        assert f"127.0.0.1:{port}->80/tcp" in ps, ps

        # exec over the API (-T): write the page the client fetches by name.
        compose("exec", "-T", "web", "sh", "-c", "echo served-by-web > /data/index.html")
        assert fetch(port) == "served-by-web\n"  # the host reaches the published port

        # The client resolves "web" through the network's DNS server.
        def client_got_page():
            return "served-by-web" in compose("logs", "--no-color", "client").stdout
        wait_for(client_got_page, timeout=30, what="the client service fetching http://web/ by service name")

        # exec through the docker CLI, as at a terminal.
        rc, out = compose.under_pty("exec web cat /data/index.html")
        assert rc == 0 and "served-by-web" in out, out

        compose("up", "-d", "--scale", "client=2")
        ps = compose("ps").stdout
        assert f"{project}_client_2" in ps, ps
        containers, networks, volumes = project_objects(target, project)
        assert len(containers) == 3 and all(c["State"] == "running" for c in containers), containers
        assert [n["Name"] for n in networks] == [f"{project}_front"], networks
        assert [v["Name"] for v in volumes] == [f"{project}_site"], volumes
        # Both clients are on the network and reach web by name.
        net = api(target, f"/v1.41/networks/{project}_front")
        assert len(net["Containers"]) == 3, net
    finally:
        down = compose("down", "-v", check=False)
    assert down.returncode == 0, down.stderr
    containers, networks, volumes = project_objects(target, project)
    assert (containers, networks, volumes) == ([], [], []), (containers, networks, volumes)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the port is free again once the container is gone
        try:
            fetch(port)
        except OSError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"127.0.0.1:{port} still answers after down -v")
