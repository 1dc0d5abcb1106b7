"""pyd.native.exec_in against a real container spawned by pyd.native.spawn,
no daemon: the process joins the namespaces it is given, gets the caps
asked for, and every setup failure comes back as (step, errno, index) named
in the OSError, with both children reaped."""

import errno
import os
import signal

import pytest

from pyd.native import ExecSpec, StepError, exec_in, spawn, step_name
from tests.integration.test_native import Box, read_all

DEFAULT_CAPS = 0xa80425fb
NAMES = ("ipc", "uts", "net", "pid", "mnt")


@pytest.fixture
def container(tmp_path):
    box = Box(tmp_path)
    r, w = os.pipe()
    child = spawn(box.spec(["sleep", "60"], stdout=w, stderr=w))
    os.close(w)
    os.close(r)
    yield child.pid
    os.kill(child.pid, signal.SIGKILL)
    os.waitpid(child.pid, 0)


def open_ns(pid, names=NAMES):
    return [os.open(f"/proc/{pid}/ns/{n}", os.O_RDONLY | os.O_CLOEXEC) for n in names]


def run(spec_kw, pid):
    fds = open_ns(pid)
    r, w = os.pipe()
    try:
        spec = ExecSpec(ns_fds=fds, ns_names=list(NAMES), stdout=w, stderr=w, **spec_kw)
        try:
            child = exec_in(spec)
        finally:
            os.close(w)
        out = read_all(r)
    finally:
        os.close(r)
        for fd in fds:
            os.close(fd)
    _, status = os.waitpid(child.pid, 0)
    return child.pid, out.decode(), os.waitstatus_to_exitcode(status)


def test_joins_every_namespace(container):
    argv = ["sh", "-c", "for n in " + " ".join(NAMES) + "; do readlink /proc/self/ns/$n; done; "
                        "grep -E 'CapEff|CapBnd' /proc/self/status; hostname; exit 9"]
    # run() reaps it with waitpid: it is our child (CLONE_PARENT), not the intermediate's
    _, out, code = run(dict(argv=argv, env=["PATH=/bin"], cwd="/", caps=DEFAULT_CAPS), container)
    assert code == 9
    lines = out.splitlines()
    assert lines[:5] == [os.readlink(f"/proc/{container}/ns/{n}") for n in NAMES]
    assert lines[5].split()[1] == lines[6].split()[1] == "00000000a80425fb"
    assert lines[7] == "box"


def test_caps_are_the_ones_asked_for(container):
    caps = (1 << 0) | (1 << 5)  # CHOWN, KILL
    _, out, code = run(dict(argv=["grep", "Cap", "/proc/self/status"], env=["PATH=/bin"], cwd="/", caps=caps),
                       container)
    f = dict(line.split(":\t") for line in out.splitlines())
    assert code == 0 and f["CapEff"] == f["CapPrm"] == f["CapBnd"] == "%016x" % caps
    assert f["CapInh"] == f["CapAmb"] == "0000000000000000"


def test_failures_name_their_step(container, tmp_path):
    before = sorted(children())
    with pytest.raises(StepError) as e:
        run(dict(argv=["true"], env=[], cwd="/missing", caps=DEFAULT_CAPS), container)
    assert e.value.errno == errno.ENOENT and e.value.step == "chdir"
    assert str(e.value.strerror) == "chdir: /missing: no such file or directory"
    with pytest.raises(StepError) as e:
        run(dict(argv=["nosuch"], env=["PATH=/bin"], cwd="/", caps=DEFAULT_CAPS), container)
    assert e.value.errno == errno.ENOENT and e.value.step == "exec"
    assert "executable file not found" in e.value.strerror
    # A file that is no namespace: setns fails in the intermediate child, index 1.
    bogus = os.open(tmp_path / "x", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    fds = open_ns(container, ("ipc",))
    try:
        with pytest.raises(StepError) as e:
            exec_in(ExecSpec(argv=["true"], env=[], cwd="/", ns_fds=fds + [bogus], ns_names=["ipc", "uts"],
                             caps=DEFAULT_CAPS))
    finally:
        os.close(bogus)
        os.close(fds[0])
    assert e.value.errno == errno.EINVAL and e.value.strerror == "setns: uts namespace: invalid argument"
    assert sorted(children()) == before  # both children of every failed exec reaped
    assert step_name(999) == "unknown"


def children():
    out = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


def test_refused_before_any_clone():
    with pytest.raises(OSError) as e:
        exec_in(ExecSpec(argv=["true"], env=[], cwd="relative", ns_fds=[], ns_names=[], caps=0))
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        exec_in(ExecSpec(argv=[], env=[], cwd="/", ns_fds=[], ns_names=[], caps=0))
