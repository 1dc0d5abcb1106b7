"""What the hostile suites (tests/integration/test_hostile_*.py) share: every
case ends with the daemon answering /version within a second, and each
module ends by checking that the daemon's RSS came back within 10 MB of its
baseline. A module imports these three names; it imports the test at its
end, so that the test is collected last."""

import time

import pytest

from tests.pydtest import Api, proc_status

RSS_SLACK_KB = 10 * 1024


@pytest.fixture(scope="module", autouse=True)
def rss_baseline(daemon):
    """The daemon's RSS before this module's hostile cases (after a warm-up request)."""
    Api(port=daemon.port).get("/version")
    return proc_status(daemon.server_pid(), "VmRSS")


@pytest.fixture(autouse=True)
def still_answering(daemon):
    yield
    started = time.monotonic()
    r = Api(port=daemon.port, timeout=1).get("/version")
    assert r.status == 200 and time.monotonic() - started < 1.0, r


def test_zz_rss_comes_back_within_10_mb(daemon, rss_baseline):
    """Last in its module: after every hostile case before it, the daemon's RSS
    is back within 10 MB of where it was."""
    deadline = time.monotonic() + 15
    while True:
        rss = proc_status(daemon.server_pid(), "VmRSS")
        if rss <= rss_baseline + RSS_SLACK_KB or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert rss <= rss_baseline + RSS_SLACK_KB, f"RSS {rss} kB, baseline {rss_baseline} kB"
