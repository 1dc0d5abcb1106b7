"""The daemon's networking flags: --bip sets the default bridge's address,
-b names the bridge (an existing one is used and kept), -b none turns
networking off as dockerd's does. Traffic only to 127.0.0.1 and to the
addresses pyd gave its containers."""

import ipaddress
import json
import os
import subprocess
import uuid

import pytest

from tests.pydtest import busybox_rootfs_tar
from tests.pydtest import dockerd as dd

V = "/v1.41"


def free_subnet():
    """A /24 in 10.215.0.0/16 that no host route or address uses."""
    out = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, timeout=10).stdout + \
        subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=10).stdout
    taken = [ipaddress.ip_network(w, strict=False) for w in out.split() if "/" in w and w[0].isdigit()]
    for third in range(10, 250):
        cand = ipaddress.ip_network(f"10.215.{third}.0/24")
        if not any(cand.overlaps(t) for t in taken):
            return cand
    pytest.fail("no free 10.215.x.0/24 on this host")


def run(api, cmd, **host):
    body = {"Image": "busybox", "Cmd": cmd, "HostConfig": host}
    r = api.post(f"{V}/containers/create", json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert r.status == 201, r
    cid = r.json()["Id"]
    assert api.post(f"{V}/containers/{cid}/start", b"").status == 204
    code = api.post(f"{V}/containers/{cid}/wait", b"", timeout=60).json()["StatusCode"]
    logs = api.get(f"{V}/containers/{cid}/logs?stdout=1&stderr=1").body
    return code, logs, r.json()["Warnings"]


def test_bip_sets_the_default_bridge(new_daemon):
    subnet = free_subnet()
    gateway = next(subnet.hosts())
    d = new_daemon(extra_args=["--bip", f"{gateway}/{subnet.prefixlen}"]).start()
    dd.load_busybox(d.api, busybox_rootfs_tar())
    net = d.api.get(f"{V}/networks/bridge").json()
    assert net["IPAM"]["Config"] == [{"Subnet": str(subnet), "Gateway": str(gateway)}], net
    code, logs, _ = run(d.api, ["ip", "-4", "route"])
    assert code == 0 and f"default via {gateway} dev eth0".encode() in logs, logs
    assert f"inet {gateway}/{subnet.prefixlen}" in subprocess.run(
        ["ip", "-4", "addr", "show", d.bridge], capture_output=True, text=True, timeout=10).stdout
    assert d.stop() == 0
    assert not os.path.exists(f"/sys/class/net/{d.bridge}"), "pyd's own bridge outlived the daemon"


def test_a_new_bip_after_a_crash_replaces_the_old_address(new_daemon, tmp_path):
    first = free_subnet()
    d = new_daemon(root=tmp_path / "r", extra_args=["--bip", f"{next(first.hosts())}/24"]).start()
    bridge = d.bridge
    d.kill9()  # the bridge stays, with its address
    assert f"inet {next(first.hosts())}/24" in subprocess.run(
        ["ip", "-4", "addr", "show", bridge], capture_output=True, text=True, timeout=10).stdout
    second = ipaddress.ip_network(f"{first.network_address + 256}/24")
    d2 = new_daemon(root=tmp_path / "r", extra_args=["--bip", f"{next(second.hosts())}/24"]).start()
    assert d2.bridge == bridge
    addrs = subprocess.run(["ip", "-4", "addr", "show", bridge], capture_output=True, text=True, timeout=10).stdout
    assert f"inet {next(second.hosts())}/24" in addrs and f"inet {next(first.hosts())}/" not in addrs, addrs
    net = d2.api.get(f"{V}/networks/bridge").json()
    assert net["IPAM"]["Config"] == [{"Subnet": str(second), "Gateway": str(next(second.hosts()))}], net
    assert d2.stop() == 0


def test_an_existing_bridge_is_used_and_kept(new_daemon):
    name = "pydx" + uuid.uuid4().hex[:8]
    subnet = free_subnet()
    gateway = next(subnet.hosts())
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True, timeout=10)
    try:
        subprocess.run(["ip", "addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", name], check=True, timeout=10)
        d = new_daemon(extra_args=["-b", name]).start()
        dd.load_busybox(d.api, busybox_rootfs_tar())
        net = d.api.get(f"{V}/networks/bridge").json()
        assert net["IPAM"]["Config"] == [{"Subnet": str(subnet), "Gateway": str(gateway)}], net
        assert net["Options"]["com.docker.network.bridge.name"] == name
        code, logs, _ = run(d.api, ["ip", "-4", "addr", "show", "eth0"])
        assert code == 0 and f"inet {subnet.network_address + 2}/".encode() in logs, logs
        assert d.stop() == 0
        kept = subprocess.run(["ip", "-4", "addr", "show", name], capture_output=True, text=True, timeout=10)
        assert kept.returncode == 0 and f"inet {gateway}/" in kept.stdout, "the operator's bridge was changed"
    finally:
        subprocess.run(["ip", "link", "delete", name], capture_output=True, timeout=10)


def test_bridge_none_turns_networking_off(new_daemon):
    d = new_daemon(extra_args=["-b", "none"]).start()
    dd.load_busybox(d.api, busybox_rootfs_tar())
    code, logs, warnings = run(d.api, ["ls", "/sys/class/net"])
    assert code == 0 and logs.endswith(b"lo\n") and b"eth0" not in logs, logs
    assert any("networking is off" in w for w in warnings), warnings
    r = d.api.post(f"{V}/networks/create", json.dumps({"Name": "x"}).encode(),
                   headers={"Content-Type": "application/json"})
    assert r.status == 403, r
    names = sorted(n["Name"] for n in d.api.get(f"{V}/networks").json())
    assert names == ["host", "none"], names


def test_a_record_from_before_networking_joins_the_bridge(new_daemon, tmp_path):
    """Format 3 written by pyd before networks: no endpoints_config in the
    record, no networks/ directory. The container starts on the default bridge."""
    root = tmp_path / "old"
    d = new_daemon(root=root).start()
    dd.load_busybox(d.api, busybox_rootfs_tar())
    r = d.api.post(f"{V}/containers/create", json.dumps({"Image": "busybox", "Cmd": ["ip", "-4", "route"]}).encode(),
                   headers={"Content-Type": "application/json"})
    cid = r.json()["Id"]
    assert d.stop() == 0
    record = root / "containers" / cid / "container.json"
    data = json.loads(record.read_text())
    del data["endpoints_config"]
    record.write_text(json.dumps(data))
    subprocess.run(["rm", "-rf", str(root / "networks")], check=True, timeout=10)
    d2 = new_daemon(root=root).start()
    assert d2.api.post(f"{V}/containers/{cid}/start", b"").status == 204
    assert d2.api.post(f"{V}/containers/{cid}/wait", b"", timeout=60).json()["StatusCode"] == 0
    gateway = d2.api.get(f"{V}/networks/bridge").json()["IPAM"]["Config"][0]["Gateway"]
    assert f"default via {gateway} dev eth0".encode() in d2.api.get(f"{V}/containers/{cid}/logs?stdout=1").body
    assert d2.stop() == 0
