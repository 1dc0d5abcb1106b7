"""HostConfig.LogConfig against the real daemon: json-file's max-size and
max-file bound what is kept, the none driver keeps nothing (logs is 501, as
dockerd's "does not support reading"), drivers pyd does not have are 400 at
create, and the daemon's --log-opt is the default a container records.
Network: only 127.0.0.1."""

import os

from tests.pydtest import inspect

V = "/v1.41"
LINES = "i=0; while [ $i -lt 3000 ]; do echo \"line-$i-....................................\"; i=$((i+1)); done"


def create(api, cmd, log_config=None):
    host = {"LogConfig": log_config} if log_config is not None else {}
    return api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": cmd, "HostConfig": host})


def run(api, cmd, log_config=None):
    r = create(api, cmd, log_config)
    assert r.status == 201, r
    cid = r.json()["Id"]
    assert api.post(f"{V}/containers/{cid}/start").status == 204
    assert api.wait(cid) == 0
    return cid


def log_files(root, cid):
    return sorted(n for n in os.listdir(os.path.join(root, "containers", cid)) if n.startswith("stdio.log"))


def test_max_size_and_max_file_bound_the_log(api, daemon, busybox):
    cfg = {"Type": "json-file", "Config": {"max-size": "16k", "max-file": "3"}}
    cid = run(api, ["sh", "-c", LINES], cfg)
    try:
        assert inspect(api, cid, V)["HostConfig"]["LogConfig"] == cfg
        assert log_files(daemon.root, cid) == ["stdio.log", "stdio.log.1", "stdio.log.2"]
        sizes = [os.path.getsize(os.path.join(daemon.root, "containers", cid, n)) for n in log_files(daemon.root, cid)]
        assert all(s <= 16 * 1024 for s in sizes), sizes
        r = api.get(f"{V}/containers/{cid}/logs?stdout=1")
        assert r.status == 200, r
        assert b"line-2999-" in r.body and b"line-0-" not in r.body, r.body[:200]
    finally:
        api.delete(f"{V}/containers/{cid}")


def test_the_none_driver_keeps_nothing(api, daemon, busybox):
    cid = run(api, ["echo", "unkept"], {"Type": "none", "Config": {}})
    try:
        r = api.get(f"{V}/containers/{cid}/logs?stdout=1")
        assert r.status == 501 and b"does not support reading" in r.body, r
        assert log_files(daemon.root, cid) == []
    finally:
        api.delete(f"{V}/containers/{cid}")


def test_drivers_and_options_pyd_cannot_honour_are_refused(api, busybox):
    r = create(api, ["true"], {"Type": "syslog", "Config": {}})
    assert r.status == 400 and 'no log driver named "syslog"' in r.json()["message"], r
    r = create(api, ["true"], {"Type": "json-file", "Config": {"max-file": "3"}})
    assert r.status == 400 and b"max-file cannot be set when max-size is not set" in r.body, r
    r = create(api, ["true"], {"Type": "json-file", "Config": {"labels": "a"}})
    assert r.status == 400 and b"unknown log opt" in r.body, r


def test_the_daemons_log_opt_is_the_default(new_daemon, busybox_tar):
    d = new_daemon(extra_args=["--log-opt", "max-size=8k", "--log-opt", "max-file=2"]).start()
    r = d.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                   headers={"Content-Type": "application/x-tar"})
    assert r.status == 200, r
    cid = run(d.api, ["sh", "-c", LINES])
    assert inspect(d.api, cid, V)["HostConfig"]["LogConfig"] == {
        "Type": "json-file", "Config": {"max-size": "8k", "max-file": "2"}}
    assert log_files(d.root, cid) == ["stdio.log", "stdio.log.1"]
    # Its own LogConfig wins over the daemon's.
    cid2 = run(d.api, ["sh", "-c", LINES], {"Type": "json-file", "Config": {"max-size": "8k", "max-file": "4"}})
    assert len(log_files(d.root, cid2)) == 4
