import os

import pytest

from tests.pydtest import Daemon, busybox_rootfs_tar


def pytest_configure(config):
    if os.geteuid() != 0:
        raise pytest.UsageError("integration tests need root (namespaces, mounts, cgroups)")


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("pyd-root"))
    d.start()
    yield d
    rc = d.stop()
    assert rc == 0, f"daemon exited with {rc}:\n{d.log()}"


@pytest.fixture(scope="session")
def api(daemon):
    return daemon.api


@pytest.fixture
def new_daemon(tmp_path):
    """A factory for private daemons (restart and crash tests); all stopped at the end."""
    made = []

    def make(root=None, extra_args=()):
        d = Daemon(root or tmp_path / f"root{len(made)}", extra_args)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


@pytest.fixture(scope="session")
def busybox_tar():
    return busybox_rootfs_tar()


@pytest.fixture(scope="session")
def busybox(api, busybox_tar):
    r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                 headers={"Content-Type": "application/x-tar"})
    assert r.status == 200, r
    assert b'"error"' not in r.body, r.body
    img = api.get("/images/busybox/json")
    assert img.status == 200, img
    return img.json()["id"]
