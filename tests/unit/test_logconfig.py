"""LogConfig (engine.logconfig) and the log's rotation (runtime.stdio.Output):
max-size and max-file as json-file takes them, drivers pyd cannot honour
refused, and at most max-file files of max-size kept."""

import os

import pytest

from pyd import errors
from pyd.engine import logconfig
from pyd.runtime.stdio import STDOUT, Output

DEFAULT = (8 << 20, 2)


def test_sizes_as_docker_reads_them():
    assert logconfig.parse_size("10m") == 10 << 20 and logconfig.parse_size("512k") == 512 << 10
    assert logconfig.parse_size("1.5g") == 3 << 29 and logconfig.parse_size("10MiB") == 10 << 20
    assert logconfig.parse_size("4096") == 4096 and logconfig.parse_size("-1") == -1
    for bad in ("", "x", "10q", "-5", "1e3", "m"):
        with pytest.raises(errors.BadParameter):
            logconfig.parse_size(bad)


def test_check_keeps_what_pyd_honours_and_refuses_the_rest():
    assert logconfig.check(None) is None and logconfig.check({}) is None
    assert logconfig.check({"Type": "", "Config": {}}) is None
    assert logconfig.check({"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}) == {
        "Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert logconfig.check({"Config": {"max-size": "1m"}}) == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert logconfig.check({"Type": "none"}) == {"Type": "none", "Config": {}}
    for bad in ({"Type": "syslog"}, {"Type": "json-file", "Config": {"tag": "x"}},
                {"Config": {"max-file": "3"}}, {"Config": {"max-size": "1m", "max-file": "0"}},
                {"Config": {"max-size": "10"}}, {"Type": "none", "Config": {"max-size": "1m"}},
                {"Config": {"max-size": 10}}, {"Config": {"compress": "true"}}, "json-file", {"Type": 3}):
        with pytest.raises(errors.BadParameter):
            logconfig.check(bad)


def test_limits():
    assert logconfig.limits(None, *DEFAULT) == DEFAULT
    assert logconfig.limits({"Type": "none", "Config": {}}, *DEFAULT) == (0, 0)
    assert logconfig.limits({"Type": "local", "Config": {"max-size": "1m"}}, *DEFAULT) == (1 << 20, 1)
    assert logconfig.limits({"Type": "json-file", "Config": {"max-size": "64k", "max-file": "4"}},
                            *DEFAULT) == (64 << 10, 4)
    assert logconfig.limits({"Type": "json-file", "Config": {"max-size": "-1"}}, *DEFAULT) == DEFAULT
    assert logconfig.keeps_logs(None) and not logconfig.keeps_logs({"Type": "none"})


def _lines(out):
    replay, _ = out.subscribe([STDOUT], logs=True, stream=False)
    return b"".join(data for _, data, _ in replay)


@pytest.mark.parametrize("files", [1, 2, 4])
def test_rotation_keeps_at_most_max_file_files(tmp_path, files):
    out = Output(str(tmp_path), 4096, files)
    out.open_for_run()
    chunks = [b"%05d" % i + b"x" * 95 + b"\n" for i in range(400)]   # 40 KB: ten files' worth
    for c in chunks:
        out.write(STDOUT, c)
    out.end()
    names = sorted(os.listdir(tmp_path))
    assert names == ["stdio.log"] + [f"stdio.log.{n}" for n in range(1, files)], names
    assert all(os.path.getsize(tmp_path / n) <= 4096 for n in names)
    kept = _lines(Output(str(tmp_path), 4096, files))
    # The newest output is kept, whole and in order.
    assert kept.endswith(chunks[-1]) and b"".join(chunks).endswith(kept)
    assert len(kept) > 3000 * (files - 1)  # each full file: 4 KiB of 16-byte heads and data


def test_fewer_files_than_before_drops_the_extra_ones(tmp_path):
    out = Output(str(tmp_path), 4096, 4)
    out.open_for_run()
    for i in range(200):
        out.write(STDOUT, b"y" * 100)
    out.end()
    assert len(os.listdir(tmp_path)) == 4
    out = Output(str(tmp_path), 4096, 2)
    out.open_for_run()
    for i in range(50):
        out.write(STDOUT, b"z" * 100)
    out.end()
    assert sorted(os.listdir(tmp_path)) == ["stdio.log", "stdio.log.1"]


def test_the_none_driver_keeps_nothing_but_streams_live(tmp_path):
    out = Output(str(tmp_path), 4096, 0)
    out.open_for_run()
    _, sub = out.subscribe([STDOUT], logs=True, stream=True)
    out.write(STDOUT, b"live\n")
    assert sub.get(timeout=1)[1] == b"live\n"
    out.end()
    assert os.listdir(tmp_path) == [] and _lines(out) == b""


def test_a_line_longer_than_a_file_is_cut_and_kept_whole_in_order(tmp_path):
    out = Output(str(tmp_path), 4096, 3)
    out.open_for_run()
    long_line = bytes(range(97, 123)) * 300 + b"\n"   # 7,801 bytes: two files' worth
    out.write(STDOUT, b"before\n" + long_line)
    out.write(STDOUT, b"after\n")
    out.end()
    assert all(os.path.getsize(tmp_path / n) <= 4096 for n in os.listdir(tmp_path))
    assert _lines(Output(str(tmp_path), 4096, 3)).endswith(long_line[-3000:] + b"after\n")
