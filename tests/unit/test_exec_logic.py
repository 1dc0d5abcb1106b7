"""Exec logic without a daemon: create checks, the environment, the record
store's start-once rule, and the feed's back-pressure."""

import threading
import time

import pytest

from pyd import errors
from pyd.engine import execs
from pyd.runtime.execs import Feed, init_facts


def test_check_create_refuses_what_could_never_start():
    assert execs.check_create(["sh", "-c", "x"], None, "", "", "") == (["sh", "-c", "x"], [])
    for cmd in (None, [], "sh", [1], [""], ["a\0b"]):
        with pytest.raises(errors.BadParameter):
            execs.check_create(cmd, None, "", "", "")
    with pytest.raises(errors.BadParameter):
        execs.check_create(["sh"], "A=b", "", "", "")
    with pytest.raises(errors.BadParameter):
        execs.check_create(["sh"], None, "", "tmp", "")
    with pytest.raises(errors.BadParameter):
        execs.check_create(["sh"], None, 0, "", "")


def test_environment_order_and_overrides():
    cfg = {"Env": ["A=container", "PATH=/bin", "B=1"]}
    env = execs.environment(cfg, "host", True, ["A=exec", "C=2"])
    assert env == ["PATH=/bin", "HOSTNAME=host", "TERM=xterm", "A=exec", "B=1", "C=2"]
    assert "TERM=xterm" not in execs.environment({}, "h", False, [])


def _args(cid="c1"):
    return dict(container_id=cid, entrypoint="sh", arguments=["-c", "true"])


def test_store_starts_once_and_returns_copies():
    store = execs.ExecStore()
    rec = store.add(_args(), {"c1"})
    assert len(rec.id) == 64 and rec.command == "sh -c true" and rec.exit_code is None
    rec.running = True  # a copy: the store is untouched
    assert store.get(rec.id).running is False
    store.check_startable(rec.id)
    assert store.claim(rec.id).started
    with pytest.raises(errors.Conflict, match="has already run"):
        store.claim(rec.id)
    store.update(rec.id, running=True)
    with pytest.raises(errors.Conflict, match="already running"):
        store.check_startable(rec.id)
    with pytest.raises(errors.NotFound):
        store.get("nope")
    with pytest.raises(errors.NotFound):
        store.claim("nope")


def test_store_drops_records_of_removed_containers():
    store = execs.ExecStore()
    old = store.add(_args("gone"), {"gone"})
    kept = store.add(_args("c1"), {"gone", "c1"})
    store.add(_args("c1"), {"c1"})
    with pytest.raises(errors.NotFound):
        store.get(old.id)
    assert store.get(kept.id).container_id == "c1"


def test_feed_holds_the_writer_back_and_loses_nothing():
    feed = Feed([1, 2], max_pending=10)
    got, done = [], threading.Event()

    def writer():
        for i in range(20):
            feed.push(1, b"%05d" % i)
        feed.push(3, b"not asked for")
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.2)
    assert not done.is_set()  # waiting for the reader: at most 10 bytes queued
    while len(got) < 20:
        stream, data, _ = feed.get(timeout=5)
        got.append(data)
    t.join(5)
    assert got == [b"%05d" % i for i in range(20)]
    assert feed.get(timeout=0.05) == ("timeout", b"", 0)
    feed.end()
    assert feed.get(timeout=1) is None


def test_feed_end_frees_a_blocked_writer_and_discards():
    feed = Feed([1], max_pending=4)
    feed.push(1, b"1234")
    t = threading.Thread(target=feed.push, args=(1, b"5678"))
    t.start()
    time.sleep(0.1)
    assert t.is_alive()
    feed.end()
    t.join(5)
    assert not t.is_alive()
    assert feed.get() == (1, b"1234", 0)
    assert feed.get() is None
    detached = Feed([1], reading=False)
    detached.push(1, b"x")
    assert detached.get() is None


def test_init_facts_of_this_process():
    caps, nnp = init_facts("self")
    with open("/proc/self/status") as f:
        line = [x for x in f if x.startswith("CapBnd:")][0]
    assert caps == int(line.split()[1], 16) and nnp in (True, False)
