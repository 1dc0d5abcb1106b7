"""The container runtime: turns a container and its image into a launch spec,
starts it through the native shim, watches it, stops and kills it.

Each started container has one monitor thread (monitor-<id12>) that pumps
its output into the log and to attached clients, notices the exit through a
pidfd, reaps the child, records the exit code and removes the cgroup.
"""

import errno
import logging
import os
import selectors
import signal
import threading

from . import cgroups, containers as cs, errors, native, timefmt, users
from .stdio import STDERR, STDOUT, Output

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Running:
    """What exists only while a container's process does."""

    def __init__(self, pid, pidfd, cgroup, outs, stdin_w, pty_master):
        self.pid = pid
        self.pidfd = pidfd
        self.cgroup = cgroup
        self.outs = outs            # [(fd, stream)] read by the monitor
        self.stdin_w = stdin_w      # fd the attach handlers write stdin into, or None
        self.pty_master = pty_master
        self.stdin_lock = threading.Lock()

    def close_stdin(self):
        with self.stdin_lock:
            fd, self.stdin_w = self.stdin_w, None
        if fd is not None and fd != self.pty_master:
            os.close(fd)

    def write_stdin(self, data):
        with self.stdin_lock:
            fd = self.stdin_w
        if fd is None:
            raise BrokenPipeError(errno.EPIPE, "stdin is closed")
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]


def exit_code(status):
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Runtime:
    def __init__(self, config, images, mounts_for, driver_of):
        self.config = config
        self.images = images
        self.mounts_for = mounts_for  # container -> [(host, target, readonly)]
        self.driver_of = driver_of    # container -> its storage driver
        self.outputs = {}
        self._outputs_lock = threading.Lock()

    def output(self, c):
        with self._outputs_lock:
            out = self.outputs.get(c.id)
            if out is None:
                out = self.outputs[c.id] = Output(c.path, self.config.max_log_bytes)
            return out

    def forget(self, c):
        """The container is gone: end the streams of clients still attached."""
        with self._outputs_lock:
            out = self.outputs.pop(c.id, None)
        if out is not None:
            out.end()

    # -- start -----------------------------------------------------------

    def _spec(self, c):
        cfg = c.config
        layers = self.images.layer_dirs(c.rec["Image"])
        driver = self.driver_of(c)
        uid, gid, groups, home = users.resolve(cfg.get("User") or "", driver.view(c, layers))
        argv = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": cfg.get("Hostname") or c.short_id, "HOME": home}
        if cfg.get("Tty"):
            env["TERM"] = "xterm"
        for item in cfg.get("Env") or []:
            k, sep, v = item.partition("=")
            if sep:
                env[k] = v
        binds = [(c.file("hostname"), "/etc/hostname", False), (c.file("hosts"), "/etc/hosts", False),
                 (c.file("resolv.conf"), "/etc/resolv.conf", False)]
        binds += self.mounts_for(c)
        return native.LaunchSpec(
            rootfs=c.file("rootfs"), hostname=env["HOSTNAME"], argv=argv,
            env=[f"{k}={v}" for k, v in env.items()], cwd=cfg.get("WorkingDir") or "/",
            uid=uid, gid=gid, groups=groups, binds=binds, tty=bool(cfg.get("Tty")),
            **driver.launch_args(c, layers, self.config.layers_dir))

    def start(self, c):
        """Start `c` (state created or exited). Raises with the container unchanged on failure."""
        old = c.move(cs.STARTING)
        close_after, keep = [], []
        cg = cgroups.Cgroup(c.id)
        output = self.output(c)
        try:
            spec = self._spec(c)
            cfg = c.config
            stdin_w = None
            if not spec.tty:
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                keep += [out_r, err_r]
                close_after += [out_w, err_w]
                spec.stdout, spec.stderr = out_w, err_w
                if cfg.get("OpenStdin"):
                    in_r, stdin_w = os.pipe2(os.O_CLOEXEC)
                    keep.append(stdin_w)
                    close_after.append(in_r)
                    spec.stdin = in_r
            cg.create(cfg.get("Memory") or 0, cfg.get("MemorySwap") or 0)
            output.open_for_run()
            child = native.spawn(spec, on_clone=cg.join)
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
            output.end()  # clients attached before this start see their stream end
            c.move(old)
            raise
        for fd in close_after:
            os.close(fd)
        if spec.tty:
            outs = [(child.pty_master, STDOUT)]
            stdin_w = child.pty_master if cfg.get("OpenStdin") else None
        else:
            outs = [(keep[0], STDOUT), (keep[1], STDERR)]
        r = Running(child.pid, pidfd, cg, outs, stdin_w, child.pty_master)
        with c.lock:
            c.runtime = r
            c.state.update(Running=True, Pid=child.pid, StartedAt=timefmt.now_iso(), ExitCode=0,
                           FinishedAt=timefmt.ZERO_TIME, Ghost=False, OOMKilled=False, Error="")
            c.move(cs.RUNNING)
            c.save()
        threading.Thread(target=self._monitor, args=(c, r, output), name=f"monitor-{c.short_id}",
                         daemon=True).start()
        log.info("started %s (pid %d): %s", c.short_id, child.pid, " ".join(spec.argv)[:200])

    # -- the monitor -----------------------------------------------------

    def _monitor(self, c, r, output):
        status = None
        try:
            sel = selectors.DefaultSelector()
            for fd, stream in r.outs:
                sel.register(fd, selectors.EVENT_READ, stream)
            sel.register(r.pidfd, selectors.EVENT_READ, None)
            open_outs = len(r.outs)
            while status is None or open_outs:
                events = sel.select(timeout=None if status is None else 5.0)
                if not events:  # exited, but something still holds the output open
                    break
                for key, _ in events:
                    if key.data is None:
                        _, status = os.waitpid(r.pid, 0)
                        sel.unregister(r.pidfd)
                        continue
                    try:
                        data = os.read(key.fd, 65536)
                    except OSError:  # EIO from a pty whose last user is gone
                        data = b""
                    if data:
                        output.write(key.data, data)
                    else:
                        sel.unregister(key.fd)
                        open_outs -= 1
            sel.close()
        except Exception:
            log.exception("monitor of %s failed", c.short_id)
            if status is None:
                r.cgroup.kill_all()
                try:
                    _, status = os.waitpid(r.pid, 0)
                except ChildProcessError:
                    status = 255 << 8
        finally:
            self._finish(c, r, output, status)

    def _finish(self, c, r, output, status):
        code = exit_code(status) if status is not None else 255
        oom = r.cgroup.oom_killed()
        r.cgroup.remove()
        r.close_stdin()
        for fd, _ in r.outs:
            _close_quiet(fd)
        _close_quiet(r.pidfd)
        output.end()
        with c.lock:
            c.runtime = None
            c.state.update(Running=False, Pid=0, ExitCode=code, FinishedAt=timefmt.now_iso(), OOMKilled=oom)
            c.move(cs.EXITED)
            c.save()
        log.info("%s exited with %d%s", c.short_id, code, " (out of memory)" if oom else "")

    # -- stop, kill, wait ------------------------------------------------

    def send_signal(self, c, sig):
        with c.lock:
            r = c.runtime
            if not c.running or r is None:
                raise errors.Conflict(f"container {c.short_id} is not running")
            try:
                signal.pidfd_send_signal(r.pidfd, sig)
            except ProcessLookupError:
                pass

    def wait_stopped(self, c, timeout=None):
        with c.lock:
            return c.changed.wait_for(lambda: c.state_name not in (cs.RUNNING, cs.STARTING), timeout)

    def stop(self, c, timeout=10):
        """SIGTERM, then SIGKILL after `timeout` seconds; returns when it has exited."""
        with c.lock:
            if not c.running:
                raise errors.NotModified(f"container {c.short_id} is not running")
        try:
            self.send_signal(c, signal.SIGTERM)
        except errors.Conflict:
            return
        if not self.wait_stopped(c, max(timeout, 0)):
            self.kill(c)

    def kill(self, c, sig=signal.SIGKILL):
        self.send_signal(c, sig)
        if sig == signal.SIGKILL:
            self.wait_stopped(c, 30)

    # -- after a daemon restart ------------------------------------------

    def recover(self, c):
        """A container recorded as running belonged to a daemon that died.

        Its process lost its output pipes with that daemon, and nothing can
        reap it: kill whatever is left in its cgroup and record the exit, as
        dockerd does for containers on restart. Nothing is left mounted:
        every container mount lived in the container's mount namespace.
        """
        cg = cgroups.Cgroup(c.id)
        was_running = c.state_name in (cs.RUNNING, cs.STARTING)
        if cg.exists():
            cg.kill_all()
            cg.remove()
        if was_running:
            c.state.update(Running=False, Pid=0, ExitCode=137 if c.state_name == cs.RUNNING else 128,
                           FinishedAt=timefmt.now_iso(), Error="daemon restarted while the container was running")
            c.move(cs.EXITED)
            c.save()
            log.info("container %s was running when the daemon stopped; recorded as exited", c.short_id)


def _close_quiet(fd):
    try:
        os.close(fd)
    except OSError:
        pass
