"""Registry logic without a registry: references, credentials, endpoints
(mirrors first for Hub images), the mirror fallback of a pull, catalog search."""

import base64
import json
from types import SimpleNamespace

import pytest

from pyd import errors
from pyd.config import Config
from pyd.engine import pull as pulling
from pyd.engine.registries import Registries, mirror_endpoint
from pyd.registry import client as reg
from pyd.registry import credentials, reference


@pytest.mark.parametrize("name, tag, registry, want", [
    ("busybox", None, None, ("docker.io", "library/busybox", "latest", None)),
    ("busybox:1.36", None, None, ("docker.io", "library/busybox", "1.36", None)),
    ("user/app", "v2", None, ("docker.io", "user/app", "v2", None)),
    ("127.0.0.1:5000/a/b:t", None, None, ("127.0.0.1:5000", "a/b", "t", None)),
    ("localhost/x", None, None, ("localhost", "x", "latest", None)),
    ("a/b", "t", "127.0.0.1:5000", ("127.0.0.1:5000", "a/b", "t", None)),
    ("index.docker.io/busybox", None, None, ("docker.io", "library/busybox", "latest", None)),
    ("h:1/x", "sha256:" + "a" * 64, None, ("h:1", "x", None, "sha256:" + "a" * 64)),
    ("h:1/x@sha256:" + "b" * 64, None, None, ("h:1", "x", None, "sha256:" + "b" * 64)),
])
def test_parse(name, tag, registry, want):
    assert tuple(reference.parse(name, tag, registry)) == want


@pytest.mark.parametrize("name", ["", "UPPER/case", "x@sha256:short", "a//b"])
def test_parse_refuses(name):
    with pytest.raises(errors.BadParameter):
        reference.parse(name)


def test_local_names_stay_familiar():
    assert reference.parse("busybox").repo == "busybox"
    assert reference.parse("127.0.0.1:5000/a/b").repo == "127.0.0.1:5000/a/b"


@pytest.mark.parametrize("host, insecure, want", [
    ("127.0.0.1:5000", (), True), ("localhost:5000", (), True), ("[::1]:5000", (), True),
    ("registry.example:5000", (), False), ("registry.example:5000", ("registry.example:5000",), True),
    ("10.1.2.3:5000", ("10.0.0.0/8",), True), ("192.168.1.1", ("10.0.0.0/8",), False),
])
def test_insecure(host, insecure, want):
    assert reference.is_insecure(host, insecure) is want


def test_credentials_shapes():
    header = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode().rstrip("=")
    assert credentials.of(credentials.decode_header(header)) == ("u", "p")
    assert credentials.decode_header("e30=") == {}
    assert credentials.of({"auth": base64.b64encode(b"u2:p:w").decode()}) == ("u2", "p:w")
    assert credentials.of({}) is None
    with pytest.raises(errors.BadParameter):
        credentials.decode_header("%%%")
    assert credentials.server_host("https://index.docker.io/v1/") == "docker.io"
    assert credentials.server_host("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000"


def test_mirrors_come_first_for_hub_images_only():
    r = Registries(Config(registry_mirrors=("http://127.0.0.1:5001",)))
    hub = r.for_pull(reference.parse("busybox"))
    assert [(c.host, c._scheme) for c in hub] == [("127.0.0.1:5001", "http"), ("registry-1.docker.io", None)]
    own = r.for_pull(reference.parse("127.0.0.1:5000/x"))
    assert [c.host for c in own] == ["127.0.0.1:5000"]


@pytest.mark.parametrize("bad", ["ftp://m", "http://", "http://m/path"])
def test_mirror_urls_are_checked(bad):
    with pytest.raises(ValueError):
        mirror_endpoint(bad)


def test_login_memory_is_used_when_the_request_brings_none():
    r = Registries(Config())
    r._logins["127.0.0.1:5000"] = ("kept", "pw")
    assert r.credentials("127.0.0.1:5000") == ("kept", "pw")
    assert r.credentials("127.0.0.1:5000", {"username": "own", "password": "x"}) == ("own", "x")
    assert r.credentials("127.0.0.1:6000") is None


class FakeRegistry:
    def __init__(self, host, manifest=None, fail=None):
        self.host, self._manifest, self._fail, self.asked = host, manifest, fail, 0

    def manifest(self, path, ref):
        self.asked += 1
        if self._fail:
            raise self._fail
        return self._manifest


def test_pull_falls_back_from_a_failing_mirror_and_keeps_a_working_one():
    ref = reference.parse("busybox")
    good = ("application/vnd.docker.distribution.manifest.v2+json", b"{}", None)
    down = FakeRegistry("mirror", fail=reg.RegistryError("cannot reach", 0))
    hub = FakeRegistry("hub", manifest=good)
    p = pulling.Pull(SimpleNamespace(), [down, hub], ref)
    assert p._first_manifest() == good and p.registry is hub and down.asked == 1
    up = FakeRegistry("mirror", manifest=good)
    hub2 = FakeRegistry("hub", manifest=good)
    p = pulling.Pull(SimpleNamespace(), [up, hub2], ref)
    assert p._first_manifest() == good and p.registry is up and hub2.asked == 0


def test_an_unknown_manifest_is_said_as_docker_says_it():
    ref = reference.parse("127.0.0.1:5000/a/b:nope")
    gone = FakeRegistry("r", fail=reg.NotFoundError("127.0.0.1:5000/v2/a/b/manifests/nope: manifest unknown", 404))
    with pytest.raises(errors.NotFound, match=r"manifest for 127.0.0.1:5000/a/b:nope not found: manifest unknown"):
        pulling.Pull(SimpleNamespace(), [gone], ref)._first_manifest()


def test_pick_a_platform():
    index = {"manifests": [
        {"digest": "sha256:1", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "sha256:2", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "sha256:3", "platform": {"os": "linux", "architecture": "amd64"}},
        {"digest": "sha256:4", "platform": {"os": "windows", "architecture": "amd64"}},
    ]}
    assert pulling.pick(index, ("linux", "arm", "v7"))["digest"] == "sha256:2"
    assert pulling.pick(index, ("linux", "amd64", None))["digest"] == "sha256:3"
    with pytest.raises(errors.NotFound):
        pulling.pick(index, ("linux", "s390x", None))


def test_search_filters_the_catalog():
    r = Registries(Config())

    class Catalog:
        def catalog(self, limit):
            return ["team/alpha", "team/beta", "other/gamma", 7]
    hits = r._catalog_search(Catalog(), "h:1", "TEAM", 10)
    assert [h.name for h in hits] == ["h:1/team/alpha", "h:1/team/beta"]
    assert r._catalog_search(Catalog(), "h:1", "team", 1)[0].name == "h:1/team/alpha"
    with pytest.raises(errors.BadParameter):
        r.search("h:1/x", limit=0)


def test_only_insecure_registries_may_fall_back_to_http():
    assert reg.Registry("10.0.0.1:5000").scheme() == "https"      # decided without asking anyone
    assert reg.Registry("10.0.0.1:5000", insecure=("10.0.0.0/8",)).insecure
    assert reg.Registry("mirror:5001", scheme="http").scheme() == "http"


def test_registry_flags():
    from pyd.cli import build_parser
    args = build_parser().parse_args(["--insecure-registry", "10.1.0.0/16", "--insecure-registry", "reg:5000",
                                      "--registry-mirror", "http://127.0.0.1:5001"])
    assert args.insecure_registry == ["10.1.0.0/16", "reg:5000"]
    assert args.registry_mirror == ["http://127.0.0.1:5001"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--registry-mirror", "ftp://x"])
