"""Fast tests of the modern surface's logic: filters, changes, restart
policies, health results, log lines, the list memo, versions, shapes."""

import threading
import time

import pytest

from pyd import errors
from pyd.api import memo, modern, versions
from pyd.engine import dockerfile_changes, filters, health, logs, restart
from pyd.engine.views import ContainerView, tree_copy
from pyd.store.containers import Container, check_name
from pyd.refs import familiar, split_name


def test_filters_both_spellings_and_refusals():
    assert filters.parse('{"status": ["running", "exited"]}', filters.CONTAINER) == {"status": ["running", "exited"]}
    assert filters.parse('{"status": {"running": true, "exited": false}}', filters.CONTAINER) == {"status": ["running"]}
    assert filters.parse("", filters.CONTAINER) == {}
    for bad in ('{"colour": ["x"]}', "notjson", "[1]", '{"status": [1]}'):
        with pytest.raises(errors.BadParameter):
            filters.parse(bad, filters.CONTAINER)
    assert filters.labels_match({"a": "1", "b": ""}, ["a", "a=1", "b="])
    assert not filters.labels_match({"a": "1"}, ["a=2"])
    assert not filters.labels_match(None, ["a"])
    assert filters.reference_match("busy*", "busybox", "latest")
    assert filters.reference_match("busybox:lat*", "busybox", "latest")
    assert not filters.reference_match("busybox:v1", "busybox", "latest")


def test_dockerfile_changes():
    cfg = dockerfile_changes.apply({"Env": ["A=1", "B=2"], "Labels": {"x": "y"}},
                                   ['CMD ["echo", "hi"]', "ENTRYPOINT /bin/sh -c", "ENV A=9 C=3",
                                    'LABEL team=core "with space"="v v"', "EXPOSE 80 53/udp",
                                    "VOLUME /data /logs", "USER nobody", "WORKDIR /srv", "STOPSIGNAL SIGINT",
                                    "ONBUILD RUN true", "ENV OLD old style"])
    assert cfg["Cmd"] == ["echo", "hi"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/sh -c"]
    assert cfg["Env"] == ["B=2", "A=9", "C=3", "OLD=old style"]
    assert cfg["Labels"] == {"x": "y", "team": "core", "with space": "v v"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}}
    assert (cfg["User"], cfg["WorkingDir"], cfg["StopSignal"], cfg["OnBuild"]) == \
        ("nobody", "/srv", "SIGINT", ["RUN true"])
    for bad in ("FROM busybox", "RUN true", "EXPOSE http", "ENV novalue"):
        with pytest.raises(errors.BadParameter):
            dockerfile_changes.apply({}, [bad])


def _c(policy="no", count=0, stopped=False, restarts=0):
    return Container({"id": "a" * 64, "name": "n", "host": {"RestartPolicy": {"Name": policy,
                                                                               "MaximumRetryCount": count}},
                      "state": {"stopped_by_user": stopped, "restart_count": restarts}}, "/x")


def test_restart_policy_rules():
    assert not restart.wants_restart(_c("no"), 1)
    assert restart.wants_restart(_c("always"), 0)
    assert not restart.wants_restart(_c("always", stopped=True), 0)
    assert restart.wants_restart(_c("always", stopped=True), 0, at_daemon_start=True)
    assert not restart.wants_restart(_c("unless-stopped", stopped=True), 0, at_daemon_start=True)
    assert restart.wants_restart(_c("on-failure"), 1) and not restart.wants_restart(_c("on-failure"), 0)
    assert restart.wants_restart(_c("on-failure", 2, restarts=1), 1)
    assert not restart.wants_restart(_c("on-failure", 2, restarts=2), 1)


def test_restart_back_off_doubles_and_resets():
    fired = []
    r = restart.Restarts(fired.append)
    c = _c("always")
    delays = []
    for ran in (0, 0, 0, 20):
        r.schedule(c, ran)
        delays.append(r._timers[c.id].interval)
        r.cancel(c.id)
    assert delays == [0.1, 0.2, 0.4, 0.1]  # a 10 s run resets it
    assert not r.pending(c.id)
    r.schedule(c, 0)
    assert r.pending(c.id)
    for _ in range(100):
        if fired:
            break
        time.sleep(0.01)
    assert fired == [c.id] and not r.pending(c.id)


def test_health_results():
    c = _c()
    c.data["state"]["health"] = health.initial()
    recorded = []

    def record(c, h, changed):
        c.state["health"] = h
        recorded.append(changed)
    m = health.Monitor(c, {"Test": ["CMD", "true"], "Retries": 2}, None, record, threading.Event())
    m._result("t", 1, b"no")
    assert c.state["health"]["Status"] == "starting" and c.state["health"]["FailingStreak"] == 1
    m._result("t", 1, b"no")
    assert c.state["health"]["Status"] == "unhealthy"
    m._result("t", 0, b"x" * 10000)
    h = c.state["health"]
    assert h["Status"] == "healthy" and h["FailingStreak"] == 0 and len(h["Log"][-1]["Output"]) == 4096
    for _ in range(10):
        m._result("t", 0, b"")
    assert len(c.state["health"]["Log"]) == 5
    assert recorded[:3] == [None, "unhealthy", "healthy"]
    assert health.argv_of(["CMD-SHELL", "a && b"]) == ["/bin/sh", "-c", "a && b"]
    assert health.argv_of(["NONE"]) is None and health.argv_of(None) is None


def test_start_period_failures_do_not_count():
    c = _c()
    c.data["state"]["health"] = health.initial()
    m = health.Monitor(c, {"Test": ["CMD", "x"], "Retries": 1, "StartPeriod": 60 * 10**9}, None,
                       lambda c, h, ch: c.state.update(health=h), threading.Event())
    m._result("t", 1, b"")
    assert c.state["health"]["Status"] == "starting" and c.state["health"]["FailingStreak"] == 0


def test_log_lines():
    recs = [(1, b"a\nb", 5), (1, b"c\n", 6), (2, b"\n\n", 7)]
    assert list(logs.lines(recs)) == [(1, b"a\n", 5), (1, b"b", 5), (1, b"c\n", 6), (2, b"\n", 7), (2, b"\n", 7)]


def test_memo_reuses_within_ttl_and_key():
    m = memo.Memo(ttl=0.2, max_entries=2)
    calls = []

    def make(v):
        return lambda: calls.append(v) or v
    assert m.get("k", make(1)) == 1 and m.get("k", make(2)) == 1
    assert m.get("other", make(3)) == 3
    time.sleep(0.25)
    assert m.get("k", make(4)) == 4
    for i in range(5):
        m.get(("x", i), make(i))
    assert len(m._entries) <= 2
    assert calls == [1, 3, 4, 0, 1, 2, 3, 4]


def test_versions_and_names():
    assert versions.surface_for((1, 41)).name == "modern"
    assert versions.surface_for((1, 24)).name == "modern"
    for v, word in (((1, 42), "too new"), ((1, 23), "not supported"), ((1, 4), "not supported")):
        with pytest.raises(errors.BadParameter, match=word):
            versions.surface_for(v)
    assert check_name("/web") == "web"
    for bad in ("a", "-x", "a b", "x/y", ""):
        with pytest.raises(errors.BadParameter):
            check_name(bad)
    assert familiar("docker.io/library/busybox") == "busybox"
    assert familiar("docker.io/user/app") == "user/app"
    assert familiar("registry:5000/app") == "registry:5000/app"
    assert split_name("docker.io/library/busybox:1") == ("busybox", "1")


def test_modern_status_strings_and_progress():
    def view(status, started="2026-01-01T00:00:00Z", finished="0001-01-01T00:00:00Z", code=0, health=None,
             restarting=False):
        st = {"status": status, "started_at": started, "finished_at": finished, "exit_code": code}
        if health:
            st["health"] = {"Status": health}
        return ContainerView({"state": st}, "/x", restarting=restarting)
    t = 1767225600.0  # 2026-01-01T00:00:00Z
    assert modern.status_string(view("running"), now=t + 5) == "Up 5 seconds"
    assert modern.status_string(view("running", health="healthy"), now=t + 1) == "Up 1 second (healthy)"
    assert modern.status_string(view("paused"), now=t + 120) == "Up 2 minutes (Paused)"
    assert modern.status_string(view("created", started="0001-01-01T00:00:00Z"), now=t) == "Created"
    assert modern.status_string(view("exited", finished="2026-01-01T00:00:00Z", code=3), now=t + 3600) == \
        "Exited (3) About an hour ago"
    assert modern.status_string(view("exited", finished="2026-01-01T00:00:00Z", code=1, restarting=True),
                                now=t + 2) == "Restarting (1) 2 seconds ago"
    assert modern.progress_bar(50, 100).startswith("[" + "=" * 25 + ">")
    s = modern.Modern((1, 41))
    assert s.error_msg("bad") == b'{"errorDetail": {"message": "bad"}, "error": "bad"}\r\n'
    assert s.hijack_head({"Upgrade": "tcp", "Connection": "Upgrade"})[0] == "HTTP/1.1 101 UPGRADED"
    assert s.hijack_head({})[0] == "HTTP/1.1 200 OK"


def test_create_config_maps_host_config():
    flat = modern.create_config({"Image": "busybox", "Cmd": ["true"], "Labels": {"a": "b"},
                                 "HostConfig": {"Memory": 10, "VolumesFrom": ["x:ro", "y"], "PidsLimit": 0,
                                                "RestartPolicy": {"Name": "always"}, "Unknown": 1}})
    assert flat["Memory"] == 10 and flat["VolumesFrom"] == "x:ro,y" and flat["PidsLimit"] == -1
    assert flat["RestartPolicy"] == {"Name": "always"} and "Unknown" not in flat and flat["Labels"] == {"a": "b"}
    with pytest.raises(errors.BadParameter):
        modern.create_config({"Image": "busybox", "HostConfig": []})


def test_tree_copy_is_deep():
    data = {"a": [1, {"b": [2]}], "c": {"d": "e"}}
    copy = tree_copy(data)
    assert copy == data
    copy["a"][1]["b"].append(3)
    copy["c"]["d"] = "x"
    assert data == {"a": [1, {"b": [2]}], "c": {"d": "e"}}


def test_long_hub_names_in_refs_load_in_their_familiar_form(tmp_path):
    import json as _json
    from pyd.config import Config
    from pyd.store.images import ImageStore
    from pyd.store.layers import LayerStore
    cfg = Config(root=str(tmp_path))
    layers = LayerStore(cfg)
    layers.load()
    images = ImageStore(cfg, layers)
    images.load()
    a = images.create({"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                       "rootfs": {"type": "layers", "diff_ids": []}, "config": {"Cmd": ["a"]}}).id
    b = images.create({"architecture": "amd64", "os": "linux", "created": "2026-01-02T00:00:00Z",
                       "rootfs": {"type": "layers", "diff_ids": []}, "config": {"Cmd": ["b"]}}).id
    with open(images.refs_path, "w") as f:
        _json.dump({"repositories": {"docker.io/library/snap": {"1": a, "2": a}, "snap": {"2": b}}}, f)
    again = ImageStore(cfg, layers)
    again.load()
    assert again.resolve("snap:1").id == a and again.resolve("snap:2").id == b  # the short form wins
    assert again.resolve("docker.io/library/snap:1").id == a
