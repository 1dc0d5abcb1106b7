"""store.format without a daemon: a small format-1 root made by hand (the
integration tests use a real one from 0.1.0), the journal's roll forward
after a crash at each point, and what is refused."""

import json
import os
import struct

import pytest

from pyd.config import Config
from pyd.store import format as fmt
from pyd.store.images import ImageStore
from pyd.store.layers import LayerStore

A, B, C = "a" * 64, "b" * 64, "c" * 64
DIGEST = "sha256:" + "d" * 64


def v1_root(tmp_path):
    root = tmp_path / "root"
    for d in ("images", "layers/" + A, "layers/" + B, "containers/" + C, "tmp"):
        (root / d).mkdir(parents=True)
    (root / "layers" / A / "f").write_text("base")
    (root / "layers" / B / "g").write_text("child")
    base = {"id": A, "parent": "", "created": "2026-11-30T10:00:00Z", "config": {"Cmd": ["sh"]},
            "container_config": {}, "layer_digest": DIGEST, "Size": 4}
    child = {"id": B, "parent": A, "created": "2026-11-30T11:00:00Z", "config": {"Cmd": ["sh"]},
             "container_config": {"Cmd": ["sh", "-c", "echo hi"]}, "layer_digest": "", "Size": 5}
    for rec in (base, child):
        (root / "images" / (rec["id"] + ".json")).write_text(json.dumps(rec))
    (root / "repositories.json").write_text(json.dumps({"Repositories": {"base": {"latest": A}, "kid": {"v1": B}}}))
    (root / "containers" / C / "config.json").write_text(json.dumps({
        "Id": C, "Created": "2026-11-30T12:00:00Z", "Path": "sh", "Args": ["-c", "x"], "Image": B,
        "Config": {"Image": "kid:v1", "Cmd": ["sh", "-c", "x"], "Memory": 0, "Dns": None, "VolumesFrom": "",
                   "MemorySwap": 0, "Volumes": {"/data": {}}},
        "State": {"Running": False, "ExitCode": 3, "Pid": 0}, "PydState": "exited",
        "Volumes": {"/data": str(root / "volumes" / ("e" * 64))}, "VolumesRW": {"/data": True},
        "HostConfig": {"Binds": None}, "Driver": "overlay2"}))
    return Config(root=str(root))


def load(config):
    layers = LayerStore(config)
    layers.load()
    images = ImageStore(config, layers)
    images.load()
    return images


def check_migrated(config):
    root = config.root
    assert json.load(open(os.path.join(root, "format.json"))) == {"format": fmt.FORMAT}
    assert not os.path.exists(os.path.join(root, fmt.JOURNAL))
    assert not os.path.exists(os.path.join(root, "repositories.json"))
    assert not os.path.exists(os.path.join(root, "layers", A)) and not os.path.exists(os.path.join(root, "layers", B))
    images = load(config)
    kid = images.resolve("kid:v1")
    assert images.resolve("base").id == kid.parent
    assert kid.diff_ids[0] == DIGEST and len(kid.diff_ids) == 2
    with open(os.path.join(images.layers.path(kid.diff_ids[1]), "g")) as f:
        assert f.read() == "child"
    rec = json.load(open(os.path.join(root, "containers", C, "container.json")))
    assert rec["image"] == kid.id and rec["state"]["status"] == "exited" and rec["state"]["exit_code"] == 3
    assert rec["host"]["Binds"] is None and "Memory" not in rec["config"]
    assert rec["mounts"] == [{"target": "/data", "source": os.path.join(root, "volumes", "e" * 64),
                              "rw": True, "kind": "volume"}]
    assert not os.path.exists(os.path.join(root, "containers", C, "config.json"))


def test_a_format_1_root_is_migrated(tmp_path):
    config = v1_root(tmp_path)
    fmt.open_root(config)
    check_migrated(config)
    fmt.open_root(config)  # and reopened as it is
    check_migrated(config)


@pytest.mark.parametrize("renamed", [0, 1, 2])
def test_a_crash_after_the_commit_point_is_finished_at_the_next_start(tmp_path, renamed):
    config = v1_root(tmp_path)
    fmt._write_format2(config)
    with open(config.format_path, "w") as f:
        json.dump({"format": 2}, f)
    journal = json.load(open(os.path.join(config.root, fmt.JOURNAL)))
    for src, dest in journal["renames"][:renamed]:  # the crash came after `renamed` renames
        os.rename(src, dest)
    fmt.open_root(config)
    check_migrated(config)


def test_a_crash_before_the_commit_point_starts_over(tmp_path):
    config = v1_root(tmp_path)
    fmt._write_format2(config)  # step 1 done, format.json never written
    assert os.path.exists(os.path.join(config.root, "repositories.json"))
    fmt.open_root(config)
    check_migrated(config)


def test_unreadable_and_unknown_formats_are_refused(tmp_path):
    config = Config(root=str(tmp_path))
    for text in ("{not json", '{"format": 4}', '{"other": 1}', '{"format": "2"}'):
        with open(config.format_path, "w") as f:
            f.write(text)
        with pytest.raises(fmt.RootError, match="refusing|does not support"):
            fmt.open_root(config)
        assert open(config.format_path).read() == text


def test_a_new_root_gets_the_current_format(tmp_path):
    config = Config(root=str(tmp_path))
    fmt.open_root(config)
    assert json.load(open(config.format_path)) == {"format": fmt.FORMAT} == {"format": 3}


def _format_2_root(tmp_path, crashed_midway=False):
    """A format-2 root (pyd 0.2.0 before the modern surface) with one container
    whose log was rotated once: output.log.1 and output.log, 8-byte headers."""
    config = Config(root=str(tmp_path))
    os.makedirs(os.path.join(config.containers_dir, C))
    with open(config.format_path, "w") as f:
        json.dump({"format": 2}, f)
    cdir = os.path.join(config.containers_dir, C)
    for name, recs in (("output.log.1", [(1, b"one\n")]), ("output.log", [(2, b"two\n"), (1, b"three")])):
        with open(os.path.join(cdir, name), "wb") as f:
            for stream, data in recs:
                f.write(struct.pack(">BxxxI", stream, len(data)) + data)
            if name == "output.log":
                f.write(struct.pack(">BxxxI", 1, 100) + b"cut")  # a record a crash cut short
        os.utime(os.path.join(cdir, name), ns=(10**18, 10**18 + (5 if name == "output.log" else 1)))
    if crashed_midway:  # .1 converted and removed, then the crash
        with open(os.path.join(cdir, "stdio.log.1"), "wb") as f:
            f.write(struct.pack(">BxxxIQ", 1, 4, 10**18 + 1) + b"one\n")
        os.unlink(os.path.join(cdir, "output.log.1"))
    return config, cdir


@pytest.mark.parametrize("crashed_midway", [False, True])
def test_a_format_2_root_gets_its_logs_timed(tmp_path, crashed_midway):
    from pyd.runtime.stdio import Output
    config, cdir = _format_2_root(tmp_path, crashed_midway)
    fmt.open_root(config)
    assert json.load(open(config.format_path)) == {"format": 3}
    assert sorted(os.listdir(cdir)) == ["stdio.log", "stdio.log.1"]
    replay, _ = Output(cdir, 1 << 20).subscribe([1, 2], logs=True, stream=False)
    assert list(replay) == [(1, b"one\n", 10**18 + 1), (2, b"two\n", 10**18 + 5), (1, b"three", 10**18 + 5)]
    fmt.open_root(config)  # and reopened as it is
    assert sorted(os.listdir(cdir)) == ["stdio.log", "stdio.log.1"]
