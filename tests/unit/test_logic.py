"""Fast tests of pure logic: parsing, shaping, the state machine, routing."""

import pytest

from pyd import errors
from pyd.api import legacy, versions
from pyd.api.routes import Router
from pyd.config import parse_host
from pyd.engine import lifecycle as lc
from pyd.engine.createconfig import check as _check_config, merge as merge_config
from pyd.engine.etcfiles import resolv_conf
from pyd.engine.events import Bus
from pyd.engine.facade import parse_signal
from pyd.engine.mounts import clean_target, parse_bind
from pyd.http.status import status_for
from pyd.store.containers import Container
from pyd.refs import parse_repo_tag, split_name


@pytest.mark.parametrize("spec,want", [
    ("unix:///var/run/pyd.sock", ("unix", "/var/run/pyd.sock")),
    ("tcp://127.0.0.1:4243", ("tcp", ("127.0.0.1", 4243))),
    ("127.0.0.1:5000", ("tcp", ("127.0.0.1", 5000))),
    (":4243", ("tcp", ("127.0.0.1", 4243))),
    ("tcp://[::1]:4243", ("tcp", ("::1", 4243))),
    ("tcp://0.0.0.0", ("tcp", ("0.0.0.0", 4243))),
])
def test_parse_host(spec, want):
    assert parse_host(spec) == want


def test_parse_host_with_tls_defaults_to_2376():
    assert parse_host("tcp://0.0.0.0", 2376) == ("tcp", ("0.0.0.0", 2376))
    assert parse_host("tcp://127.0.0.1:4243", 2376) == ("tcp", ("127.0.0.1", 4243))


def test_tls_flags_and_the_plain_tcp_pause():
    from pyd.cli import build_parser
    a = build_parser().parse_args(["--tlsverify", "--tlscacert", "/c/ca.pem"])
    assert a.tlsverify is True and a.tls is None and a.tlscacert == "/c/ca.pem"
    a = build_parser().parse_args(["--tls=false"])
    assert a.tls is False


@pytest.mark.parametrize("spec", ["unix://relative", "fd://", "tcp://h:99999", "tcp://h:port", "udp://x:1"])
def test_parse_host_refuses(spec):
    with pytest.raises(ValueError):
        parse_host(spec)


def test_version_split_and_surfaces():
    assert versions.split("/v1.3/containers/json") == ((1, 3), "/containers/json")
    assert versions.split("/containers/json") == (None, "/containers/json")
    assert versions.surface_for((1, 0)).name == "legacy"
    with pytest.raises(errors.BadParameter, match="too new"):
        versions.surface_for((1, 50))


def test_progress_messages():
    s = legacy.Legacy((1, 3))
    assert s.progress_msg("Importing", 1_200_000, 10_000_000) == \
        b'{"status": "Importing", "progress": "1.2 MB/10 MB (12%)"}\r\n'
    assert s.progress_msg("Importing", 1000, None) == b'{"status": "Importing", "progress": "1 kB/? (n/a)"}\r\n'
    assert s.error_msg("bad") == b'{"error": "bad"}\r\n'
    assert s.text_stream_error("boom") == b"Error: boom\n"


@pytest.mark.parametrize("seconds,text", [
    (0.2, "Less than a second"), (5, "5 seconds"), (61, "About a minute"), (600, "10 minutes"),
    (3700, "About an hour"), (7200, "2 hours"), (3 * 86400, "3 days"),
])
def test_human_duration(seconds, text):
    assert legacy.human_duration(seconds) == text


def test_error_status_table():
    assert status_for(errors.NotFound()) == 404
    assert status_for(errors.BadParameter()) == 400
    assert status_for(errors.Conflict()) == 409
    assert status_for(errors.NotModified()) == 304
    assert status_for(errors.Impossible()) == 406
    assert status_for(errors.TooLarge()) == 413
    assert status_for(ValueError()) == 500


def test_router_matches_names_with_slashes_and_versions_stay_out():
    r = Router()
    fn, params = r.match("GET", "/images/localhost:5000/user/repo:tag/json")
    assert params == {"name": "localhost:5000/user/repo:tag"}
    assert fn.__name__ == "inspect"
    fn, params = r.match("GET", "/images/json")
    assert fn.__name__ == "list_json" and params == {}
    fn, params = r.match("POST", "/containers/abc/start")
    assert params == {"id": "abc"}
    with pytest.raises(errors.NotFound):
        r.match("PUT", "/containers/abc/start")


class _Records:
    """A stand-in for the container store: counts what lifecycle persists."""

    def __init__(self):
        self.saved = []

    def save(self, c, durable=True):
        self.saved.append(c.status + ("" if durable else " (not fsynced)"))


def test_state_machine_refuses_illegal_moves(tmp_path):
    store, bus = _Records(), Bus()
    sub = bus.subscribe()
    life = lc.Lifecycle(store, bus)
    c = Container({"id": "a" * 64, "name": "web", "image": "b" * 64, "config": {"Image": "busybox"},
                   "state": lc.new_state()}, str(tmp_path))
    life.created(c)
    life.starting(c)
    life.running(c, 42)
    with pytest.raises(errors.NotModified):
        life.starting(c)
    with pytest.raises(errors.Conflict, match="running"):
        life.removing(c)
    life.exited(c, 3)
    life.removing(c)
    with pytest.raises(errors.Conflict):
        life.starting(c)
    life.removed(c)
    # Every move that happened was persisted (but the last: the record is gone)
    # and published, in order; refused moves did neither.
    assert store.saved == ["created", "starting (not fsynced)", "running (not fsynced)", "exited",
                           "removing (not fsynced)"]
    # Only Docker's events are published: starting and removing are pyd's own steps.
    events = [sub.get(0) for _ in range(4)]
    assert [e.action for e in events] == ["create", "start", "die", "destroy"]
    assert events[2].attributes == {"image": "busybox", "name": "web", "exitCode": 3}
    assert c.exits == 1
    assert sub.get(0) is None
    assert c.state["pid"] == 0 and c.state["exit_code"] == 3


@pytest.mark.parametrize("name,want", [
    ("busybox", ("busybox", None)), ("busybox:1.0", ("busybox", "1.0")),
    ("localhost:5000/foo", ("localhost:5000/foo", None)),
    ("localhost:5000/foo:bar", ("localhost:5000/foo", "bar")),
])
def test_split_name(name, want):
    assert split_name(name) == want


@pytest.mark.parametrize("repo", ["Upper", "a//b", "-lead", "UP/per", "a/", "a" * 64])
def test_bad_repo_names(repo):
    with pytest.raises(errors.BadParameter):
        parse_repo_tag(repo)


def test_good_repo_names():
    assert parse_repo_tag("Registry.Example.com:5000/team/app:v1") == ("Registry.Example.com:5000/team/app", "v1")
    assert parse_repo_tag("user/repo", "latest") == ("user/repo", "latest")


@pytest.mark.parametrize("spec,want", [
    ("/h:/d", ("/h", "/d", True)), ("/h:/d:ro", ("/h", "/d", False)), ("/h/../x:/d//e:rw", ("/x", "/d/e", True)),
    ("vol:/d", ("vol", "/d", True)), ("my.vol_1:/d:ro", ("my.vol_1", "/d", False)),
])
def test_parse_bind(spec, want):
    assert parse_bind(spec) == want


@pytest.mark.parametrize("spec", ["re/l:/d", "-v:/d", "/h:/", "/h:/proc/x", "/h:/sys", "/h:/d:xx", "/h", "/h:d", 5])
def test_parse_bind_refuses(spec):
    with pytest.raises(errors.BadParameter):
        parse_bind(spec)


def test_clean_target():
    assert clean_target("/a/./b/") == "/a/b"
    with pytest.raises(errors.BadParameter):
        clean_target("/a/../")


def test_check_config_types_and_defaults():
    cfg = _check_config({"Image": "busybox", "Cmd": "date", "Memory": 8 << 20})
    assert cfg["Cmd"] == ["date"] and cfg["MemorySwap"] == 16 << 20 and cfg["Tty"] is False
    for bad in ({"Cmd": ["x"]}, {"Image": "b", "Cmd": [1]}, {"Image": "b", "Memory": "x"},
                {"Image": "b", "Memory": 1024}, {"Image": "b", "WorkingDir": "rel"},
                {"Image": "b", "Env": ["NOEQUALS"]}, {"Image": "b", "Dns": ["1.1.1.1\nsearch x"]},
                {"Image": "b", "Hostname": "a\n1.2.3.4 evil"}, {"Image": "b", "Hostname": "-x"}, {"Image": "b", "Memory": 8 << 20, "MemorySwap": 1 << 20}):
        with pytest.raises(errors.BadParameter):
            _check_config(bad)


def test_merge_config_fills_from_image():
    user = _check_config({"Image": "b", "Env": ["A=user"]})
    image = {"Cmd": ["/bin/sh"], "Env": ["A=image", "B=image"], "WorkingDir": "/w", "Volumes": {"/v": {}}}
    out = merge_config(user, image)
    assert out["Cmd"] == ["/bin/sh"] and out["WorkingDir"] == "/w" and out["Volumes"] == {"/v": {}}
    assert out["Env"] == ["B=image", "A=user"]
    # An image Entrypoint with the user's Cmd keeps the user's Cmd.
    out = merge_config(_check_config({"Image": "b", "Cmd": ["x"]}), {"Entrypoint": ["/e"], "Cmd": ["d"]})
    assert out["Entrypoint"] == ["/e"] and out["Cmd"] == ["x"]


def test_an_empty_entrypoint_resets_the_images():
    # docker run --entrypoint "" image sh -c x
    out = merge_config(_check_config({"Image": "b", "Entrypoint": [""], "Cmd": ["sh"]}),
                       {"Entrypoint": ["/e"], "Cmd": ["d"]})
    assert out["Entrypoint"] is None and out["Cmd"] == ["sh"]


def test_parse_signal():
    import signal
    assert parse_signal(None) == signal.SIGKILL
    assert parse_signal("TERM") == signal.SIGTERM and parse_signal("SIGHUP") == signal.SIGHUP
    assert parse_signal("15") == 15
    for bad in ("NOPE", "0", "99"):
        with pytest.raises(errors.BadParameter):
            parse_signal(bad)


def test_resolv_conf_from_dns_list():
    assert resolv_conf(["1.2.3.4", "5.6.7.8"]) == "nameserver 1.2.3.4\nnameserver 5.6.7.8\n"
    assert "nameserver 127." not in resolv_conf(None)


def test_stop_request_is_set_by_a_signal_inside_its_own_wait():
    """The handler runs in the waiting thread (a threading.Event could
    deadlock there on its own lock): the wait ends at once, and the flag
    stays set for later waits."""
    import signal as signals
    import time as clock
    from pyd.cli import _StopRequest
    stop = _StopRequest()
    old = signals.signal(signals.SIGALRM, lambda *_: stop.set())
    try:
        signals.setitimer(signals.ITIMER_REAL, 0.05)
        started = clock.monotonic()
        assert stop.wait(30) is True
        assert clock.monotonic() - started < 10
        assert stop.wait(0) is True
    finally:
        signals.setitimer(signals.ITIMER_REAL, 0)
        signals.signal(signals.SIGALRM, old)
    assert _StopRequest().wait(0.01) is False
