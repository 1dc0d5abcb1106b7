"""The event bus: ordering, filters, history, and bounded subscribers."""

import threading

import pytest

from pyd.engine.events import Bus, Overflow


def test_subscribers_get_events_in_order_and_filtered():
    bus = Bus()
    everything = bus.subscribe()
    dies = bus.subscribe(match=lambda e: e.action == "die")
    for action in ("create", "start", "die"):
        bus.publish("container", action, "c1", image="i")
    assert [everything.get(0).action for _ in range(3)] == ["create", "start", "die"]
    ev = dies.get(0)
    assert (ev.type, ev.action, ev.id, ev.attributes) == ("container", "die", "c1", {"image": "i"})
    assert dies.get(0) is None and everything.get(0) is None


def test_a_slow_subscriber_is_cut_off_and_never_blocks_the_publisher():
    bus = Bus(maxlen=5)
    slow, other = bus.subscribe(), bus.subscribe(maxlen=100)
    for i in range(20):
        bus.publish("container", "start", f"c{i}")
    with pytest.raises(Overflow):
        slow.get(0)
    assert [other.get(0).id for _ in range(20)] == [f"c{i}" for i in range(20)]


def test_since_replays_the_kept_history():
    bus = Bus(history=3)
    for i in range(5):
        bus.publish("image", "tag", f"i{i}")
    sub = bus.subscribe(since=0)
    assert [sub.get(0).id for _ in range(3)] == ["i2", "i3", "i4"]
    assert [e.id for e in bus.recent()] == ["i2", "i3", "i4"]


def test_get_waits_for_a_publish_and_close_ends_it():
    bus = Bus()
    sub = bus.subscribe()
    threading.Timer(0.05, bus.publish, ("container", "die", "c")).start()
    assert sub.get(5).action == "die"
    sub.close()
    bus.publish("container", "start", "c")
    assert sub.get(0) is None
