"""pyd beside a real dockerd (Debian's docker.io, 20.10) that runs as hosts
run it: with iptables. dockerd loads br_netfilter and sets the FORWARD
policy to DROP, which also drops traffic between two ports of one pyd
bridge. pyd detects that and adds narrow accept rules for its own bridges
(pyd/network/firewall.py), removed at its shutdown.

The dockerd here is private (its own data root, sockets, port and a bridge
made for it); the host's iptables rules are saved before it starts and
restored after it stops (tests/pydtest/dockerd.py). Marked differential: it
runs once, in the frozen binary's pass, as the other dockerd tests do.
"""

import json
import os
import subprocess

import pytest

from tests.pydtest import busybox_rootfs_tar, require, require_mark
from tests.pydtest import dockerd as dd

pytestmark = [pytest.mark.differential,
              require_mark(dd.installed() is not None, "dockerd (Debian's docker.io)")]


def iptables(*args):
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, timeout=30)


def run(api, cmd, **extra):
    body = {"Image": "busybox", "Cmd": cmd, **extra}
    r = api.post("/v1.41/containers/create", json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert r.status == 201, r
    cid = r.json()["Id"]
    r = api.post(f"/v1.41/containers/{cid}/start", b"")
    assert r.status == 204, r
    return cid


def fetch(ip, seconds):
    """busybox wget bounded by timeout(1); not as pid 1, which no signal
    reaches (and busybox's own wget -T crashes)."""
    return ["sh", "-c", f"timeout {seconds} wget -q -O - http://{ip}/hostname; exit $?"]


def wait_logs(api, cid):
    r = api.post(f"/v1.41/containers/{cid}/wait", b"", timeout=60)
    assert r.status == 200, r
    code = r.json()["StatusCode"]
    logs = api.get(f"/v1.41/containers/{cid}/logs?stdout=1&stderr=1").body
    return code, logs


@pytest.fixture(scope="module")
def dockerd_with_iptables(tmp_path_factory):
    require(dd.system_socket_free(), "no system dockerd on /var/run/docker.sock (this test starts its own)")
    d = dd.Dockerd(tmp_path_factory.mktemp("dockerd-net"), networking=True)
    d.start()
    yield d
    d.stop()


def test_pyd_bridge_works_where_dockerd_set_forward_drop(dockerd_with_iptables, new_daemon):
    policy = iptables("-S", "FORWARD").stdout.splitlines()[0]
    assert policy == "-P FORWARD DROP", f"dockerd did not set what the test is about: {policy}"
    with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
        assert f.read().strip() == "1"

    d = new_daemon().start()
    try:
        dd.load_busybox(d.api, busybox_rootfs_tar())
        info = d.log()
        assert "FORWARD policy DROP" in info, info[-2000:]
        web = run(d.api, ["httpd", "-f", "-p", "80", "-h", "/etc"])
        ip = d.api.get(f"/v1.41/containers/{web}/json").json()["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
        code, logs = wait_logs(d.api, run(d.api, fetch(ip, 3)))
        assert code == 0 and web[:12].encode() in logs, logs
        rules = iptables("-S").stdout
        assert d.bridge in rules, rules
        # A control: without pyd's rules the same request is dropped, so the
        # check above could fail. Remove the accept rules for a moment.
        chain = next(ln.split()[-1] for ln in rules.splitlines()
                     if ln.startswith("-A FORWARD") and "-j PYD" in ln)
        assert iptables("-D", "FORWARD", "-j", chain).returncode == 0
        try:
            code, _ = wait_logs(d.api, run(d.api, fetch(ip, 2)))
            assert code != 0, "traffic passed with FORWARD DROP and no accept rule: the test proves nothing"
        finally:
            assert iptables("-I", "FORWARD", "1", "-j", chain).returncode == 0
        d.api.post(f"/v1.41/containers/{web}/kill", b"")
    finally:
        assert d.stop() == 0, d.log()
    rules = iptables("-S").stdout + iptables("-t", "nat", "-S").stdout
    assert d.bridge not in rules and chain not in rules, rules
