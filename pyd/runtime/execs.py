"""Exec processes: a second process started inside a running container
(docker exec), through the native shim's pyd_exec.

    execs = Execs()
    proc = execs.start(ExecPlan(exec_id, cid, container_process, argv, env, ...))
    code = proc.monitor()    # blocks: pumps output into proc.feed until the exit
    proc.feed.end()          # once the exit is recorded: the session's stream ends
    execs.release(proc)

It joins the namespaces and cgroups of the container's init (the running
Process), and gets that init's capability bounding set (all the daemon's
when privileged) and its no_new_privs. The user is resolved in the
container's own /etc/passwd and /etc/group, read through /proc/<pid>/root.

An exec's output goes to the one session that started it, through a Feed:
unlike a container's output there is no log and no fan-out, so the feed
applies back-pressure (the pump waits for a slow client, as with Docker)
instead of dropping the client. Nobody reads a detached exec: its feed
discards.
"""

import collections
import errno
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import List

from .. import errors, native
from . import users
from .process import Stdio, exit_code, pipes, pump
from .stdio import STDERR, STDOUT

log = logging.getLogger(__name__)

# Joined in this order; mnt last, since afterwards "/" is the container's.
NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "mnt")
FEED_MAX_PENDING = 1 << 20


@dataclass
class ExecPlan:
    exec_id: str
    cid: str
    container: object               # the container's running runtime.process.Process
    argv: List[str]
    env: List[str]                  # "NAME=value"; HOME is added from the user when missing
    cwd: str = "/"
    user: str = ""                  # "", name, uid, name:group, uid:gid
    tty: bool = False
    open_stdin: bool = False
    privileged: bool = False
    attached: bool = True           # False: detached, nobody reads the output
    streams: List[int] = field(default_factory=lambda: [STDOUT, STDERR])


class Feed:
    """The output of one exec for its one session: a bounded queue whose
    push waits while the reader is `max_pending` bytes behind. Read with
    get() as a stdio.Subscriber is (attach.run): (stream, bytes, 0), or
    ("timeout", b"", 0); end() makes get() return
    None once drained and push() discard from then on."""

    def __init__(self, streams, reading=True, max_pending=FEED_MAX_PENDING):
        self.streams = set(streams)
        self._q = collections.deque()
        self._pending = 0
        self._max = max_pending
        self._cond = threading.Condition()
        self._closed = not reading

    def push(self, stream, data):
        if stream not in self.streams:
            return
        with self._cond:
            while not self._closed and self._pending and self._pending + len(data) > self._max:
                self._cond.wait()
            if self._closed:
                return
            self._q.append((stream, data))
            self._pending += len(data)
            self._cond.notify_all()

    def end(self):
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout=None):
        with self._cond:
            while not self._q and not self._closed:
                if not self._cond.wait(timeout):
                    return ("timeout", b"", 0)
            if not self._q:
                return None
            stream, data = self._q.popleft()
            self._pending -= len(data)
            self._cond.notify_all()
            return stream, data, 0  # no timestamps: an exec's output is not logged


class ExecProcess(Stdio):
    """A running exec process and its fds."""

    def __init__(self, exec_id, pid, pidfd, outs, stdin_w, pty_master, feed):
        self.exec_id = exec_id
        self.pid = pid
        self.pidfd = pidfd
        self.outs = outs            # [(fd, stream)] read by monitor()
        self.stdin_w = stdin_w
        self.pty_master = pty_master
        self.feed = feed
        self.exited = threading.Event()
        self._stdin_lock = threading.Lock()
        self._pidfd_lock = threading.Lock()

    def resize(self, h, w):
        if self.pty_master is None:
            raise errors.Conflict(f"exec {self.exec_id[:12]} has no tty to resize")
        self.set_tty_size(h, w)

    def monitor(self):
        """Pump the output into the feed until the process has exited and its
        output is drained; reap it. Returns its exit code. The feed is left
        open: the caller ends it once the exit is recorded, so a client that
        asks for the exit code after its stream ended always finds it."""
        status = None
        try:
            status = pump(self.pid, self.pidfd, self.outs, self.feed.push)
        except Exception:
            log.exception("monitor of exec %s failed", self.exec_id[:12])
            self.signal(signal.SIGKILL)
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                status = None
        self.exited.set()
        self.close_stdin()
        for fd, _ in self.outs:
            _close_quiet(fd)
        self.close_pidfd()
        return exit_code(status) if status is not None else 255

    # attach.StdinTarget's runtime: the one process its stdin goes to.
    def wait_process(self, exec_id, min_run, ended, poll=1.0):
        return None if self.exited.is_set() else self


def init_facts(pid):
    """(CapBnd, NoNewPrivs) of a process, from /proc/<pid>/status."""
    caps, nnp = None, False
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "CapBnd":
                caps = int(value.strip(), 16)
            elif key == "NoNewPrivs":
                nnp = value.strip() == "1"
    if caps is None:
        raise OSError(errno.EIO, f"no CapBnd in /proc/{pid}/status")
    return caps, nnp


def all_caps():
    """Every capability the daemon can give: its own bounding set (a host
    may hold some back from it, and capset cannot grant more)."""
    return init_facts("self")[0]


def _open_namespaces(pid, keep):
    """Open the init's namespaces that are not the daemon's own."""
    fds, names = [], []
    for name in NAMESPACES:
        path = f"/proc/{pid}/ns/{name}"
        try:
            theirs = os.stat(path)
        except FileNotFoundError:
            continue  # a kernel without this namespace type
        mine = os.stat(f"/proc/self/ns/{name}")
        if (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino):
            continue
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        keep.append(fd)
        fds.append(fd)
        names.append(name)
    return fds, names


def _with_home(env, home):
    if any(e.startswith("HOME=") for e in env):
        return list(env)
    return list(env) + [f"HOME={home}"]


def start(plan):
    """Start the plan's process inside the container. On failure nothing is
    left behind; OSError(errno, "<step>: <object>") says what failed."""
    init = plan.container
    # Everything read through /proc/<pid> is checked against the pidfd
    # afterwards: the init could die and its pid be reused meanwhile.
    root = f"/proc/{init.pid}/root"
    uid, gid, groups, home = users.resolve(plan.user, [root])
    caps, nnp = init_facts(init.pid)
    if plan.privileged:
        caps = all_caps()
    close_after, keep = [], []
    try:
        ns_fds, ns_names = _open_namespaces(init.pid, close_after)
        joins = init.cgroup.self_join_files()
        if joins is None:
            # cgroup v2: a process joins by writing "0" to cgroup.procs.
            joins = [os.path.join(d, "cgroup.procs") for d in init.cgroup.dirs]
        cg_fds = []
        for path in joins:
            cg_fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
            close_after.append(cg_fds[-1])
        if not init.alive():
            raise errors.Conflict(f"Container {plan.cid} is not running")
        spec = native.ExecSpec(argv=list(plan.argv), env=_with_home(plan.env, home), cwd=plan.cwd or "/",
                               ns_fds=ns_fds, ns_names=ns_names, caps=caps, uid=uid, gid=gid,
                               groups=groups, cgroup_fds=cg_fds, cgroup_paths=joins, tty=plan.tty,
                               no_new_privs=nnp, seccomp=plan.container.seccomp)
        stdin_w = None if plan.tty else pipes(spec, plan.open_stdin, keep, close_after)
        child = native.exec_in(spec)
        try:
            pidfd = os.pidfd_open(child.pid)
        except OSError:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
            if child.pty_master is not None:
                os.close(child.pty_master)
            raise
    except BaseException:
        for fd in close_after + keep:
            os.close(fd)
        raise
    for fd in close_after:
        os.close(fd)
    if plan.tty:
        outs = [(child.pty_master, STDOUT)]
        stdin_w = child.pty_master if plan.open_stdin else None
    else:
        outs = [(keep[0], STDOUT), (keep[1], STDERR)]
    feed = Feed(plan.streams, reading=plan.attached)
    log.info("exec %s in %s (pid %d): %s", plan.exec_id[:12], plan.cid[:12], child.pid,
             " ".join(plan.argv)[:200])
    return ExecProcess(plan.exec_id, child.pid, pidfd, outs, stdin_w, child.pty_master, feed)


class Execs:
    """The exec processes running now, by exec id (live state lives in the
    runtime, as container processes do)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._procs = {}

    def start(self, plan):
        proc = start(plan)
        with self._lock:
            self._procs[plan.exec_id] = proc
        return proc

    def get(self, exec_id):
        with self._lock:
            return self._procs.get(exec_id)

    def release(self, proc):
        with self._lock:
            if self._procs.get(proc.exec_id) is proc:
                del self._procs[proc.exec_id]


def _close_quiet(fd):
    try:
        os.close(fd)
    except OSError:
        pass
