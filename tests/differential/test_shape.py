"""The comparison itself, on hand-made values (no daemon)."""

from tests.differential import compare
from tests.differential.scenario import demux, json_lines
from tests.differential.shape import diff, shape


def test_keys_types_and_lists_by_element():
    want = shape({"Id": "x", "Size": 1, "Ports": [{"IP": "a", "PrivatePort": 1}], "Names": ["/a"]})
    have = shape({"Id": "y", "Size": 1.0, "Ports": [{"IP": "b"}], "Names": [], "Extra": True})
    got = {(p, k) for p, k, _ in diff(want, have)}
    assert got == {("Size", "type"), ("Ports[].PrivatePort", "missing"), ("Extra", "extra")}


def test_list_elements_merge():
    s = shape([{"a": 1}, {"b": "x"}, {"a": 2}])
    assert s == ("list", ("obj", {"a": "int", "b": "str"}))
    assert shape([1, "x"]) == ("list", ("union", ("int", "str")))


def test_data_maps_fold_their_keys():
    a = shape({"Config": {"Labels": {"k": "v"}}, "NetworkSettings": {"Networks": {"none": {"IPAddress": ""}}}})
    b = shape({"Config": {"Labels": {"other": "w"}}, "NetworkSettings": {"Networks": {"bridge": {"IPAddress": ""}}}})
    assert diff(a, b) == []


def test_null_class_is_one_way():
    assert diff(shape({"Dns": None}), shape({"Dns": []})) == [("Dns", "null", "dockerd null, pyd empty list")]
    assert diff(shape({"Dns": []}), shape({"Dns": None}))[0][1] == "type"
    assert diff(shape({"L": []}), shape({"L": ["x"]})) == []  # an empty list says nothing of its elements


def test_allow_list_matches_narrowly():
    allow = [{"step": "containers/x", "what": "status", "detail": "dockerd 500, pyd 400", "reason": "r"}]
    ok = ("containers", "x", "status", "POST /x", "dockerd 500, pyd 400")
    bad = ("containers", "x", "status", "POST /x", "dockerd 500, pyd 404")
    assert compare.allowed(ok, allow) is allow[0]
    assert compare.allowed(bad, allow) is None
    text, left = compare.report([ok, bad], allow)
    assert left == [bad] and "not on the allow-list" in text


def test_event_pairs_compared_as_sets():
    rec = {"group": "events", "label": "e", "method": "GET", "path": "/events", "status": 200,
           "kind": "json-stream", "shape": ("list", None)}
    want = dict(rec, payload=[("container", "start"), ("network", "connect")])
    have = dict(rec, payload=[("container", "start"), ("container", "attach")])
    got = {(w, p) for _, _, w, p, _ in compare.differences([want], [have])}
    assert got == {("event-missing", "network/connect"), ("event-extra", "container/attach")}


def test_stream_decoders():
    assert demux(b"\x01\0\0\0\0\0\0\x03out\x02\0\0\0\0\0\0\x01e") == [(1, b"out"), (2, b"e")]
    assert demux(b"plain text") is None
    assert json_lines(b'{"a":1}\n{"b":2}{"c":3}') == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert json_lines(b"not json") is None
