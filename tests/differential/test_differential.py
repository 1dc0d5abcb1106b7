"""pyd against dockerd 20.10: the same requests, the same status codes and
the same JSON keys and value types.

A private dockerd (Debian's docker.io; tests/pydtest/dockerd.py) and a
private pyd, each with its own root, get the busybox test image and then
the fixed scenario of tests/differential/scenario.py (over 30 endpoints).
Their answers are compared as shapes (tests/differential/shape.py); every
difference is written to build/differential.txt and printed at the end of
the run. Each group of the scenario is a test that fails on a difference
that tests/differential/allow.py does not list with a reason
(docs/differential.md says the same in prose).

Selection, not a hidden missing feature: build.sh test runs the suite
twice, against pyd from source and against the frozen dist/pyd, which are
the same code. This module needs a dockerd and takes a minute, so it runs in
the frozen pass only (PYD_CMD without pyd.py); set PYD_DIFFERENTIAL=1 to run
it against the source daemon, or select it alone with `-m differential`.
Without docker.io it is skipped, with that reason; build.sh test installs it.

Network rule: both daemons listen on 127.0.0.1 and a unix socket only, and
nothing here pulls.
"""

import json
import os

import pytest

from tests.differential import compare, scenario
from tests.differential.allow import ALLOW
from tests.differential.conftest import REPORT
from tests.pydtest import TOP, Daemon, busybox_rootfs_tar, daemon_cmd
from tests.pydtest import dockerd as dd

pytestmark = pytest.mark.differential


def selection():
    """build.sh test runs this once, in its frozen-binary pass (the source pass
    deselects the marker). In CI dockerd must be there: a skip would hide it."""
    if not dd.installed():
        if os.environ.get("CI"):
            pytest.fail("docker.io (dockerd 20.10) is not installed, and CI must compare with it")
        pytest.skip("docker.io (dockerd 20.10) is not installed; build.sh test installs it")


@pytest.fixture(scope="module")
def outcome(tmp_path_factory, request):
    selection()
    tar = busybox_rootfs_tar()
    docker = dd.Dockerd(tmp_path_factory.mktemp("dockerd"))
    pyd = Daemon(tmp_path_factory.mktemp("pyd-diff"))
    try:
        docker.start()
        dd.load_busybox(docker.api, tar)
        want = scenario.run(docker.api)
    finally:
        docker.stop()
    try:
        pyd.start()
        dd.load_busybox(pyd.api, tar)
        have = scenario.run(pyd.api)
    finally:
        rc = pyd.stop()
    diffs = compare.differences(want, have)
    text, bad = compare.report(diffs, ALLOW)
    text = f"dockerd: {dd.version()} ({docker.driver})\npyd: {' '.join(daemon_cmd())}\n\n" + text
    out = os.environ.get("PYD_DIFF_OUT") or os.path.join(TOP, "build", "differential.txt")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    with open(os.path.splitext(out)[0] + "-records.json", "w") as f:  # both sides, for debugging
        json.dump({"dockerd": want, "pyd": have}, f, indent=1, default=repr)
    request.config.stash[REPORT].append((out, text))
    return {"want": want, "have": have, "bad": bad, "pyd_rc": rc, "pyd_log": pyd.log()}


def test_scenario_covers_30_endpoints(outcome):
    endpoints = {(r["method"], r["path"].split("?")[0]) for r in outcome["want"]}
    assert len(endpoints) >= 30, sorted(endpoints)


def test_dockerd_answered_every_step(outcome):
    """The reference itself: no transport errors from dockerd (else the comparison means nothing)."""
    errors = [(r["label"], r["status"]) for r in outcome["want"] if not isinstance(r["status"], int)]
    assert not errors


def test_no_system_dockerd_started():
    """Installing docker.io must not have started the system's dockerd (policy-rc.d 101)."""
    selection()
    assert dd.system_socket_free(), "something answers on /var/run/docker.sock"


def test_pyd_stopped_cleanly(outcome):
    assert outcome["pyd_rc"] == 0, outcome["pyd_log"]


@pytest.mark.parametrize("group", scenario.GROUPS)
def test_same_as_dockerd(outcome, group):
    bad = [d for d in outcome["bad"] if d[0] == group]
    assert not bad, "\n".join(f"{g}/{lab}: {what} {path}: {detail}" for g, lab, what, path, detail in bad)
