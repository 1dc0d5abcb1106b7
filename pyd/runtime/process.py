"""Container processes: start one from a LaunchPlan through the native shim,
pump its output, wait for its exit, signal it, feed its stdin.

    rt = Runtime(config)
    proc = rt.start(plan)            # registered under plan.cid
    exit = proc.monitor()            # blocks: pumps output until the exit
    rt.release(proc)                 # the engine records the exit, then releases

Live state (pids, pidfds, pipes, ptys, cgroups) exists only here, keyed by
container id; records never hold it. The monitor runs on the engine's
watcher thread, so the runtime never calls back up.
"""

import errno
import fcntl
import logging
import os
import selectors
import signal
import struct
import termios
import threading
from dataclasses import dataclass

from .. import native
from . import cgroups, devices, procs
from .spec import to_spec
from .stdio import STDERR, STDOUT, Output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exit:
    code: int
    oom_killed: bool


def pipes(spec, open_stdin, keep, close_after):
    """Pipes for a process's stdout and stderr (and stdin): the child's ends go
    into `spec` and `close_after`, ours into `keep` (stdout, stderr, then
    stdin's write end, which is returned, or None)."""
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    keep += [out_r, err_r]
    close_after += [out_w, err_w]
    spec.stdout, spec.stderr = out_w, err_w
    if not open_stdin:
        return None
    in_r, stdin_w = os.pipe2(os.O_CLOEXEC)
    keep.append(stdin_w)
    close_after.append(in_r)
    spec.stdin = in_r
    return stdin_w


def exit_code(status):
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Stdio:
    """The stdin, tty and signal side of a process (a container's or an exec's):
    subclasses set pidfd, stdin_w, pty_master, _stdin_lock and _pidfd_lock."""

    def close_stdin(self):
        with self._stdin_lock:
            fd, self.stdin_w = self.stdin_w, None
        if fd is not None and fd != self.pty_master:
            os.close(fd)

    def write_stdin(self, data):
        with self._stdin_lock:
            fd = self.stdin_w
        if fd is None:
            raise BrokenPipeError(errno.EPIPE, "stdin is closed")
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def set_tty_size(self, h, w):
        fcntl.ioctl(self.pty_master, termios.TIOCSWINSZ, struct.pack("HHHH", h, w, 0, 0))

    def close_pidfd(self):
        with self._pidfd_lock:
            _close_quiet(self.pidfd)
            self.pidfd = None

    def alive(self):
        """True while the process has not exited (its pidfd says so, not its
        pid, which could be reused once it is reaped)."""
        with self._pidfd_lock:
            if self.pidfd is None:
                return False
            try:
                signal.pidfd_send_signal(self.pidfd, 0)
                return True
            except ProcessLookupError:
                return False

    def signal(self, sig):
        # Under the lock the monitor closes the pidfd with: a closed number may
        # already be another process's pidfd, which must never get this signal.
        with self._pidfd_lock:
            if self.pidfd is None:
                return  # exited; the monitor is about to report it
            try:
                signal.pidfd_send_signal(self.pidfd, sig)
            except ProcessLookupError:
                pass  # exited; the monitor is about to report it


class Process(Stdio):
    """One running container process and what exists only while it does."""

    def __init__(self, cid, run, pid, pidfd, cgroup, outs, stdin_w, pty_master, output):
        self.cid = cid
        self.run = run              # the container's run number (1 for its first start)
        self.pid = pid
        self.pidfd = pidfd          # None once the monitor has closed it (under _pidfd_lock)
        self._pidfd_lock = threading.Lock()
        self.cgroup = cgroup
        self.outs = outs            # [(fd, stream)] read by the monitor
        self.stdin_w = stdin_w      # fd stdin is written into, or None
        self.pty_master = pty_master
        self.output = output
        self.seccomp = b""          # its BPF program (runtime.seccomp), set by start
        self._stdin_lock = threading.Lock()

    # -- tty and processes -----------------------------------------------

    def resize(self, h, w):
        if self.pty_master is not None:
            self.set_tty_size(h, w)

    def processes(self):
        """[{pid, tty, time, cmd}] of every process in the container."""
        return procs.describe(self.cgroup.pids())

    def top(self, ps_args=None):
        """(titles, rows) of the host's ps for the container's processes."""
        return procs.top(self.cgroup.pids(), ps_args)

    # -- cgroup: freezer, counters, limits ---------------------------------

    def freeze(self):
        self.cgroup.freeze()

    def thaw(self):
        self.cgroup.thaw()

    def stats(self):
        """The cgroup's counters (cgroups.Cgroup.stats); None once the cgroup is
        gone (the process exited and the monitor removed it)."""
        stats = self.cgroup.stats()
        return stats if self.cgroup.exists() else None

    def update(self, **limits):
        """New limits for the live cgroup (cgroups.Cgroup.update's arguments)."""
        self.cgroup.update(**limits)

    # -- the monitor -----------------------------------------------------

    def monitor(self):
        """Pump output into the log and subscribers until the process has exited
        and its output is drained; reap it, remove its cgroup. Returns an Exit."""
        status = None
        try:
            status = pump(self.pid, self.pidfd, self.outs, self.output.write)
        except Exception:
            log.exception("monitor of %s failed", self.cid[:12])
            if status is None:
                self.cgroup.kill_all()
                try:
                    _, status = os.waitpid(self.pid, 0)
                except ChildProcessError:
                    status = 255 << 8
        code = exit_code(status) if status is not None else 255
        oom = self.cgroup.oom_killed()
        self.cgroup.remove()
        self.close_stdin()
        for fd, _ in self.outs:
            _close_quiet(fd)
        self.close_pidfd()
        self.output.end()
        return Exit(code, oom)


def pump(pid, pidfd, outs, write):
    """Copy what the process writes on `outs` ([(fd, stream)]) to
    write(stream, bytes) until it has exited and its output is drained (or
    5 s after the exit, when something else still holds the output open);
    reap it and return its wait status."""
    status = None
    sel = selectors.DefaultSelector()
    try:
        for fd, stream in outs:
            sel.register(fd, selectors.EVENT_READ, stream)
        sel.register(pidfd, selectors.EVENT_READ, None)
        open_outs = len(outs)
        while status is None or open_outs:
            events = sel.select(timeout=None if status is None else 5.0)
            if not events:  # exited, but something still holds the output open
                break
            for key, _ in events:
                if key.data is None:
                    _, status = os.waitpid(pid, 0)
                    sel.unregister(pidfd)
                    continue
                try:
                    data = os.read(key.fd, 65536)
                except OSError:  # EIO from a pty whose last user is gone
                    data = b""
                if data:
                    write(key.data, data)
                else:
                    sel.unregister(key.fd)
                    open_outs -= 1
    finally:
        sel.close()
    return status


class Runtime:
    def __init__(self, config):
        self.config = config
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._outputs = {}  # cid -> Output
        self._procs = {}    # cid -> Process
        self._runs = {}     # cid -> number of successful starts in this daemon's life

    # -- what is live ----------------------------------------------------

    def output(self, cid, cdir, limits=None):
        """The container's output log and fan-out (one per container);
        `limits`: (bytes a log file holds, files kept), engine.logconfig's."""
        with self._lock:
            out = self._outputs.get(cid)
            if out is None:
                size, files = limits or (self.config.log_max_size, self.config.log_max_file)
                out = self._outputs[cid] = Output(cdir, size, files)
            return out

    def process(self, cid):
        with self._lock:
            return self._procs.get(cid)

    def runs(self, cid):
        with self._lock:
            return self._runs.get(cid, 0)

    def wait_process(self, cid, min_run, ended, poll=1.0):
        """The process of run `min_run` or later once it has started; None if
        that run has already ended, or once `ended` is set."""
        with self._lock:
            while not ended.is_set():
                p = self._procs.get(cid)
                if p is not None and p.run >= min_run:
                    return p
                if self._runs.get(cid, 0) >= min_run:
                    return None  # it ran and is gone
                self._changed.wait(poll)
        return None

    def release(self, proc):
        """The engine has recorded the exit: forget the process."""
        with self._lock:
            if self._procs.get(proc.cid) is proc:
                del self._procs[proc.cid]
            self._changed.notify_all()

    def forget(self, cid):
        """The container is gone: end the streams of clients still attached."""
        with self._lock:
            out = self._outputs.pop(cid, None)
            self._runs.pop(cid, None)
            self._changed.notify_all()
        if out is not None:
            out.end()

    # -- start -----------------------------------------------------------

    def start(self, plan, output):
        """Start the plan's process; returns it registered. On failure nothing is
        left behind (no cgroup, no fds); ending `output` for the clients waiting
        on it is the caller's (it also covers failures before this call)."""
        close_after, keep = [], []
        cg = cgroups.Cgroup(plan.cid)
        stdin_w = None
        try:
            spec = to_spec(plan)
            if plan.privileged:
                spec.devices = devices.host_devices()
            if not spec.tty:
                stdin_w = pipes(spec, plan.open_stdin, keep, close_after)
            cg.create(plan.memory, plan.memory_swap, pids_limit=plan.pids_limit,
                      cpu_shares=plan.cpu_shares, cpu_quota=plan.cpu_quota,
                      cpu_period=plan.cpu_period, all_devices=plan.privileged)
            # On cgroup v1 the child joins its cgroups itself, through these fds.
            joins = cg.self_join_files()
            if joins is not None:
                fds = []
                for path in joins:
                    fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
                    close_after.append(fds[-1])
                spec.cgroup_fds, spec.cgroup_paths = fds, joins
            output.open_for_run()
            child = native.spawn(spec, on_clone=None if joins is not None else cg.join)
            try:
                pidfd = os.pidfd_open(child.pid)
            except OSError:  # out of fds: do not leave an unwatched container behind
                os.kill(child.pid, signal.SIGKILL)
                os.waitpid(child.pid, 0)
                if child.pty_master is not None:
                    os.close(child.pty_master)
                raise
        except BaseException:
            for fd in close_after + keep:
                os.close(fd)
            cg.remove()
            raise
        for fd in close_after:
            os.close(fd)
        if spec.tty:
            outs = [(child.pty_master, STDOUT)]
            stdin_w = child.pty_master if plan.open_stdin else None
        else:
            outs = [(keep[0], STDOUT), (keep[1], STDERR)]
        with self._lock:
            run = self._runs.get(plan.cid, 0) + 1
            self._runs[plan.cid] = run
            proc = Process(plan.cid, run, child.pid, pidfd, cg, outs, stdin_w, child.pty_master, output)
            proc.seccomp = spec.seccomp     # exec processes get the container's filter
            self._procs[plan.cid] = proc
            self._changed.notify_all()
        log.info("started %s (pid %d): %s", plan.cid[:12], child.pid, " ".join(spec.argv)[:200])
        return proc

    # -- cgroups of containers that have no process here -----------------

    def remove_cgroup(self, cid):
        cgroups.Cgroup(cid).remove()

    def reap_orphan(self, cid):
        """Kill whatever a dead daemon left in the container's cgroup; True if
        anything was there. Its mounts lived in its own mount namespace."""
        cg = cgroups.Cgroup(cid)
        if not cg.exists():
            return False
        cg.kill_all()
        cg.remove()
        return True


def _close_quiet(fd):
    try:
        os.close(fd)
    except OSError:
        pass
