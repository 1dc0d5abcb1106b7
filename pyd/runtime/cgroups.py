"""Memory cgroups for containers, on cgroup v1 and v2.

Each container gets <mount>/pyd/<id> (v1: under the memory controller).
"""

import os

V1_MEMORY = "/sys/fs/cgroup/memory"
V2_ROOT = "/sys/fs/cgroup"


def version():
    if os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers")):
        return 2
    if os.path.exists(os.path.join(V1_MEMORY, "memory.limit_in_bytes")):
        return 1
    return 0


def memory_limit_supported():
    v = version()
    if v == 2:
        with open(os.path.join(V2_ROOT, "cgroup.controllers")) as f:
            return "memory" in f.read().split()
    return v == 1


def swap_limit_supported():
    v = version()
    if v == 1:
        return os.path.exists(os.path.join(V1_MEMORY, "memory.memsw.limit_in_bytes"))
    if v == 2 and memory_limit_supported():
        # memory.swap.max exists in every non-root cgroup when swap accounting is on.
        for entry in os.scandir(V2_ROOT):
            if entry.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(entry.path, "memory.swap.max")):
                return True
    return False


# Device nodes a container may use (v1 devices controller); creating any node
# is allowed (CAP_MKNOD) but using it is not, so a container cannot open the
# host's disks. This is Docker's default allow list.
DEVICE_ALLOW = [
    "c *:* m", "b *:* m",
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",  # null zero full random urandom
    "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",              # tty console ptmx pts
    "c 10:200 rwm",                                                    # tun
]

MIN_MEMORY = 4 << 20
V1_CONTROLLERS = ("memory", "pids", "devices")


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


def _read(path):
    with open(path) as f:
        return f.read()


class Cgroup:
    """The cgroup(s) of one container: <controller>/pyd/<id>."""

    def __init__(self, cid):
        self.cid = cid
        self.version = version()
        if self.version == 1:
            self.dirs = [os.path.join("/sys/fs/cgroup", c, "pyd", cid) for c in V1_CONTROLLERS
                         if os.path.isdir(os.path.join("/sys/fs/cgroup", c))]
        elif self.version == 2:
            self.dirs = [os.path.join(V2_ROOT, "pyd", cid)]
        else:
            self.dirs = []

    def _dir(self, controller):
        for d in self.dirs:
            if self.version == 2 or f"/{controller}/" in d:
                return d
        return None

    def create(self, memory=0, memory_swap=0):
        if self.version == 2:
            _enable_v2_controllers()
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
        if self.version == 1:
            dev = self._dir("devices")
            if dev:
                _write(os.path.join(dev, "devices.deny"), "a")
                for rule in DEVICE_ALLOW:
                    _write(os.path.join(dev, "devices.allow"), rule)
            mem = self._dir("memory")
            if mem and memory:
                _write(os.path.join(mem, "memory.limit_in_bytes"), str(memory))
                if memory_swap and swap_limit_supported():
                    _write(os.path.join(mem, "memory.memsw.limit_in_bytes"),
                           "-1" if memory_swap < 0 else str(memory_swap))
        elif self.version == 2 and memory:
            d = self.dirs[0]
            _write(os.path.join(d, "memory.max"), str(memory))
            if memory_swap and os.path.exists(os.path.join(d, "memory.swap.max")):
                _write(os.path.join(d, "memory.swap.max"),
                       "max" if memory_swap < 0 else str(max(memory_swap - memory, 0)))

    def join(self, pid):
        for d in self.dirs:
            _write(os.path.join(d, "cgroup.procs"), str(pid))

    def self_join_files(self):
        """The files a new process can write "0" to, to join these cgroups
        itself (native/shim.h says why that is much faster): cgroup v1's
        per-thread "tasks" files. None on v2, where the parent joins it."""
        if self.version != 1:
            return None
        return [os.path.join(d, "tasks") for d in self.dirs]

    def oom_killed(self):
        try:
            if self.version == 1:
                mem = self._dir("memory")
                text = _read(os.path.join(mem, "memory.oom_control")) if mem else ""
                key = "oom_kill"
            elif self.version == 2:
                text = _read(os.path.join(self.dirs[0], "memory.events"))
                key = "oom_kill"
            else:
                return False
        except OSError:
            return False
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v or 0) > 0
        return False

    def pids(self):
        out = set()
        for d in self.dirs:
            try:
                out.update(int(p) for p in _read(os.path.join(d, "cgroup.procs")).split())
            except OSError:
                pass
        return out

    def kill_all(self, timeout=5.0):
        """SIGKILL every process left in the cgroup and wait until it is empty."""
        import signal
        import time
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if not pids or time.monotonic() > deadline:
                return not pids
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def remove(self):
        for d in self.dirs:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                # Still busy (a process not yet reaped): empty it, then retry once.
                self.kill_all()
                try:
                    os.rmdir(d)
                except OSError:
                    pass

    def exists(self):
        return any(os.path.isdir(d) for d in self.dirs)


def _enable_v2_controllers():
    os.makedirs(os.path.join(V2_ROOT, "pyd"), exist_ok=True)
    for d in (V2_ROOT, os.path.join(V2_ROOT, "pyd")):
        try:
            _write(os.path.join(d, "cgroup.subtree_control"), "+memory +pids")
        except OSError:
            pass


def known_ids():
    """Ids of every container cgroup that exists (for cleanup at start)."""
    v = version()
    bases = ([os.path.join("/sys/fs/cgroup", c, "pyd") for c in V1_CONTROLLERS] if v == 1
             else [os.path.join(V2_ROOT, "pyd")] if v == 2 else [])
    ids = set()
    for b in bases:
        try:
            ids.update(e.name for e in os.scandir(b) if e.is_dir())
        except FileNotFoundError:
            pass
    return ids
