"""Container cgroups, on cgroup v1 and v2: limits (memory, swap, pids, cpu),
the freezer (pause), live updates of the limits, and the counters stats
reads.

Each container gets <mount>/pyd/<id>: on v1 one such directory per
controller (memory, pids, devices, cpu, cpuacct, freezer, blkio), on v2 one
directory in the unified tree.
"""

import errno
import os
import signal
import time

from .. import sysinfo

V2_ROOT = "/sys/fs/cgroup"


def version():
    """2 on a unified (v2-only) host, 1 where v1 hierarchies are mounted
    (a hybrid host counts as v1, as for dockerd), 0 without cgroups."""
    if os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers")):
        return 2
    if any(os.path.exists(os.path.join(V2_ROOT, c, "cgroup.procs")) for c in V1_CONTROLLERS):
        return 1
    return 0


def _v2_offered():
    try:
        return set(_read(os.path.join(V2_ROOT, "cgroup.controllers")).split())
    except OSError:
        return set()


def _kernel_at_least(major, minor):
    try:
        parts = os.uname().release.split(".")
        return (int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)) >= (major, minor)
    except (IndexError, ValueError):
        return False


def support():
    """What this host's cgroups can do, read when asked: {"memory", "swap",
    "pids", "cpu_shares", "cpu_cfs", "freezer", "devices"} -> bool. A limit
    the host cannot carry is discarded at create with Docker's warning
    (engine.facade), and the runtime writes only what exists."""
    v = version()
    if v == 1:
        def has(controller, name):
            return os.path.exists(os.path.join(V2_ROOT, controller, name))
        return {"memory": has("memory", "memory.limit_in_bytes"),
                "swap": has("memory", "memory.memsw.limit_in_bytes"),
                "pids": has("pids", "cgroup.procs"),
                "cpu_shares": has("cpu", "cpu.shares"), "cpu_cfs": has("cpu", "cpu.cfs_quota_us"),
                "freezer": has("freezer", "cgroup.procs"), "devices": has("devices", "devices.allow")}
    if v == 2:
        offered = _v2_offered()
        return {"memory": "memory" in offered, "swap": "memory" in offered and _v2_swap(),
                "pids": "pids" in offered, "cpu_shares": "cpu" in offered, "cpu_cfs": "cpu" in offered,
                # Core v2 features, not controllers: cgroup.freeze since 5.2, and
                # the eBPF device program wherever the bpf() syscall is built in.
                "freezer": _kernel_at_least(5, 2),
                "devices": os.path.exists("/proc/sys/kernel/unprivileged_bpf_disabled")}
    return dict.fromkeys(("memory", "swap", "pids", "cpu_shares", "cpu_cfs", "freezer", "devices"), False)


def _v2_swap():
    # memory.swap.max exists in every non-root cgroup when swap accounting is on.
    try:
        entries = list(os.scandir(V2_ROOT))
    except OSError:
        return False
    return any(e.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(e.path, "memory.swap.max"))
               for e in entries)


def memory_limit_supported():
    return support()["memory"]


def swap_limit_supported():
    return support()["swap"]


_DEV_TYPES = {"a": 0, "b": 1, "c": 2}
_DEV_ACCESS = {"m": 1, "r": 2, "w": 4}


def device_rules(lines):
    """cgroup v1 devices.allow lines ("c 1:3 rwm", "c *:* m", "a") as the
    (type, major, minor, access) rules of cgroup v2's device filter
    (native.device_filter): type 0 any, 1 block, 2 char; -1 any number."""
    out = []
    for line in lines:
        parts = line.split()
        if parts == ["a"]:
            out.append((0, -1, -1, 7))
            continue
        if len(parts) != 3 or parts[0] not in _DEV_TYPES or ":" not in parts[1] \
                or not parts[2] or any(ch not in _DEV_ACCESS for ch in parts[2]):
            raise ValueError(f"bad device rule {line!r}")
        major, _, minor = parts[1].partition(":")
        num = [-1 if x == "*" else int(x) for x in (major, minor)]
        if any(n < -1 for n in num):
            raise ValueError(f"bad device rule {line!r}")
        access = 0
        for ch in parts[2]:
            access |= _DEV_ACCESS[ch]
        out.append((_DEV_TYPES[parts[0]], num[0], num[1], access))
    return out


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
V1_CONTROLLERS = ("memory", "pids", "devices", "cpu", "cpuacct", "freezer", "blkio")
V2_CONTROLLERS = ("memory", "pids", "cpu", "io")
CFS_PERIOD_US = 100000          # the kernel's default, and Docker's period for NanoCpus
FREEZE_TIMEOUT = 10.0           # seconds a freeze may take before it is given up
NS = 1_000_000_000
_HZ = os.sysconf("SC_CLK_TCK")  # the unit of cpuacct.stat and /proc/stat


def _write(path, value):
    with open(path, "w") as f:
        f.write(value)


def _read(path):
    with open(path) as f:
        return f.read()


def _read_int(path, default=0):
    """A one-number file; "max" (v2), an empty or a missing file read as `default`."""
    try:
        text = _read(path).strip()
    except OSError:
        return default
    try:
        return int(text)
    except ValueError:
        return default


def _read_keyed(path):
    """A file of "key number" lines (memory.stat, cpu.stat, cgroup.events) as a dict."""
    out = {}
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def shares_to_weight(shares):
    """cpu.shares (2..262144, default 1024) -> cgroup v2 cpu.weight (1..10000), as runc converts."""
    return 1 + ((shares - 2) * 9999) // 262142


class Cgroup:
    """The cgroup(s) of one container: <controller>/pyd/<id>."""

    def __init__(self, cid):
        self.cid = cid
        self.version = version()
        self.dirs = []
        self._by_controller = {}
        if self.version == 1:
            made = {}
            for c in V1_CONTROLLERS:
                mount = os.path.join(V2_ROOT, c)
                if not os.path.exists(os.path.join(mount, "cgroup.procs")):
                    continue  # not mounted (an empty directory is not a hierarchy)
                # Co-mounted controllers (cpu,cpuacct) are one hierarchy: one directory.
                real = os.path.realpath(mount)
                if real not in made:
                    made[real] = os.path.join(mount, "pyd", cid)
                    self.dirs.append(made[real])
                self._by_controller[c] = made[real]
        elif self.version == 2:
            self.dirs = [os.path.join(V2_ROOT, "pyd", cid)]

    def _dir(self, controller):
        if self.version == 2:
            return self.dirs[0]
        return self._by_controller.get(controller)

    def _file(self, controller, name):
        d = self._dir(controller)
        return os.path.join(d, name) if d else None

    # -- limits ----------------------------------------------------------

    def create(self, memory=0, memory_swap=0, pids_limit=0, cpu_shares=0, cpu_quota=0, cpu_period=0,
               all_devices=False):
        """Make the directories and set the limits; 0 leaves a limit at the
        kernel's default (none). memory_swap is memory + swap (-1: unlimited
        swap) and counts only with a memory limit. `all_devices` (a
        privileged container, as Docker's) allows every device instead of
        DEVICE_ALLOW."""
        if self.version == 2:
            _enable_v2_controllers()
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
        if self.version == 2 and not all_devices:
            # v2 has no devices controller: the kernel asks an eBPF program.
            from .. import native
            native.device_filter(self.dirs[0], device_rules(DEVICE_ALLOW))
        dev = self._dir("devices") if self.version == 1 else None
        if dev and all_devices:
            _write(os.path.join(dev, "devices.allow"), "a")
        elif dev:
            _write(os.path.join(dev, "devices.deny"), "a")
            for rule in DEVICE_ALLOW:
                _write(os.path.join(dev, "devices.allow"), rule)
        self._set(memory or None, (memory_swap or None) if memory else None,
                  pids_limit if pids_limit and pids_limit > 0 else None,
                  cpu_shares or None, cpu_quota or None, cpu_period or None)

    def update(self, memory=None, memory_swap=None, pids_limit=None, cpu_shares=None,
               cpu_quota=None, cpu_period=None):
        """Change the limits of a live cgroup; None (or 0) leaves a limit as it
        is. memory -1 lifts the memory limit, memory_swap -1 the swap limit,
        pids_limit <= 0 the pids limit, cpu_quota -1 the quota."""
        self._set(memory or None, memory_swap or None, pids_limit, cpu_shares or None,
                  cpu_quota or None, cpu_period or None)

    def _set(self, memory, memory_swap, pids_limit, cpu_shares, cpu_quota, cpu_period):
        if self.version == 1:
            self._memory_v1(memory, memory_swap)
            cpu = self._dir("cpu")
            if cpu:
                # The period first: a new quota is checked against it.
                for name, v in (("cpu.shares", cpu_shares), ("cpu.cfs_period_us", cpu_period),
                                ("cpu.cfs_quota_us", cpu_quota)):
                    if v:
                        _write(os.path.join(cpu, name), str(max(v, -1)))
        elif self.version == 2:
            self._memory_v2(memory, memory_swap)
            d = self.dirs[0]
            if not os.path.exists(os.path.join(d, "cpu.max")):
                cpu_shares = cpu_quota = cpu_period = None  # no cpu controller: discarded at create
            if cpu_shares:
                _write(os.path.join(d, "cpu.weight"), str(shares_to_weight(cpu_shares)))
            if cpu_quota or cpu_period:
                quota, _, period = _read(os.path.join(d, "cpu.max")).strip().partition(" ")
                if cpu_quota:
                    quota = "max" if cpu_quota < 0 else str(cpu_quota)
                _write(os.path.join(d, "cpu.max"), f"{quota} {cpu_period or period or CFS_PERIOD_US}")
        else:
            return
        pids = self._file("pids", "pids.max")
        # Not there without a pids controller: the default cap cannot apply, and
        # a PidsLimit the client gave was discarded with a warning at create.
        if pids and pids_limit is not None and os.path.exists(pids):
            _write(pids, "max" if pids_limit <= 0 else str(pids_limit))

    def _memory_v1(self, memory, memory_swap):
        limit = self._file("memory", "memory.limit_in_bytes")
        memsw = self._file("memory", "memory.memsw.limit_in_bytes")
        if not limit:
            return
        if not os.path.exists(memsw):
            memory_swap = None  # no swap accounting: the engine warned at create
        elif memory == -1 and not memory_swap:
            memory_swap = -1    # no memory limit means no swap limit either
        if memory_swap is not None and memory_swap < 0:
            memory_swap = -1
        # The kernel keeps memory <= memory+swap at every step: when the new
        # memory+swap is above the current memory limit it goes first, else last.
        if memory and memory_swap and (memory_swap == -1 or _read_int(limit) < memory_swap):
            order = [(memsw, memory_swap), (limit, memory)]
        else:
            order = [(limit, memory), (memsw, memory_swap)]
        for path, v in order:
            if v:
                _write(path, str(v))

    def _memory_v2(self, memory, memory_swap):
        d = self.dirs[0]
        if not os.path.exists(os.path.join(d, "memory.max")):
            return  # no memory controller: discarded at create
        if memory:
            _write(os.path.join(d, "memory.max"), "max" if memory < 0 else str(memory))
        swap = os.path.join(d, "memory.swap.max")
        if memory_swap and os.path.exists(swap):
            # v2 limits swap alone: memory_swap minus the memory limit in force.
            mem = _read_int(os.path.join(d, "memory.max"), 0)
            _write(swap, "max" if memory_swap < 0 or not mem else str(max(memory_swap - mem, 0)))

    # -- joining ---------------------------------------------------------

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

    # -- the freezer -----------------------------------------------------

    def freeze(self, timeout=FREEZE_TIMEOUT):
        """Freeze every process in the cgroup; returns once all are frozen.
        A freeze that does not complete in `timeout` is undone (OSError EBUSY)."""
        if self.version == 2:
            d = self.dirs[0]
            if not os.path.exists(os.path.join(d, "cgroup.freeze")):
                raise OSError(errno.ENOTSUP, "freeze: this kernel has no cgroup v2 freezer (5.2 or later)")
            _write(os.path.join(d, "cgroup.freeze"), "1")

            def done():
                return _read_keyed(os.path.join(d, "cgroup.events")).get("frozen") == 1
        elif self._dir("freezer"):
            state = self._file("freezer", "freezer.state")
            # FREEZING can stall on a task in an uninterruptible sleep; writing
            # FROZEN again retries the tasks that were missed (as runc does).
            def done():
                _write(state, "FROZEN")
                return _read(state).strip() == "FROZEN"
        else:
            raise OSError(errno.ENOTSUP, "freeze: no freezer cgroup on this host")
        deadline, pause = time.monotonic() + timeout, 0.001
        while not done():
            if time.monotonic() > deadline:
                self.thaw()
                raise OSError(errno.EBUSY, f"freeze: the processes of {self.cid[:12]} did not "
                                           f"freeze within {timeout:g} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def thaw(self):
        if self.version == 2:
            _write(os.path.join(self.dirs[0], "cgroup.freeze"), "0")
        elif self._dir("freezer"):
            _write(self._file("freezer", "freezer.state"), "THAWED")

    def frozen(self):
        try:
            if self.version == 2:
                return _read_keyed(os.path.join(self.dirs[0], "cgroup.events")).get("frozen") == 1
            if self._dir("freezer"):
                return _read(self._file("freezer", "freezer.state")).strip() != "THAWED"
        except OSError:
            pass
        return False

    # -- counters ----------------------------------------------------------

    def stats(self):
        """The counters of the cgroup as a plain dict: times in nanoseconds,
        sizes in bytes. What a controller lacks reads as 0 or is left out.

        {"cpu": {"total", "percpu": [...], "user", "system",
                 "throttling": {"periods", "throttled_periods", "throttled_time"}},
         "system_cpu_usage", "online_cpus",
         "memory": {"usage", "max_usage", "limit", "failcnt", "stat": {...}},
         "pids": {"current", "limit"},       limit 0: none
         "blkio": {"io_service_bytes_recursive": [{"major", "minor", "op", "value"}],
                   "io_serviced_recursive": [...]}}
        """
        out = self._stats_v1() if self.version == 1 else self._stats_v2() if self.version == 2 else {}
        out["system_cpu_usage"] = system_cpu_usage()
        out["online_cpus"] = len(os.sched_getaffinity(0))
        # An unlimited cgroup reads as about 2^63: report the machine's memory, as Docker does.
        mem = out.get("memory")
        if mem is not None:
            total = machine_memory()
            if total and (not mem["limit"] or mem["limit"] > total):
                mem["limit"] = total
        return out

    def _stats_v1(self):
        acct, cpu, mem = self._dir("cpuacct"), self._dir("cpu"), self._dir("memory")
        out = {}
        if acct:
            ticks = _read_keyed(os.path.join(acct, "cpuacct.stat"))
            try:
                percpu = [int(x) for x in _read(os.path.join(acct, "cpuacct.usage_percpu")).split()]
            except (OSError, ValueError):
                percpu = []
            throttled = _read_keyed(os.path.join(cpu, "cpu.stat")) if cpu else {}
            out["cpu"] = {
                "total": _read_int(os.path.join(acct, "cpuacct.usage")), "percpu": percpu,
                "user": ticks.get("user", 0) * NS // _HZ, "system": ticks.get("system", 0) * NS // _HZ,
                "throttling": {"periods": throttled.get("nr_periods", 0),
                               "throttled_periods": throttled.get("nr_throttled", 0),
                               "throttled_time": throttled.get("throttled_time", 0)}}
        if mem:
            out["memory"] = {
                "usage": _read_int(os.path.join(mem, "memory.usage_in_bytes")),
                "max_usage": _read_int(os.path.join(mem, "memory.max_usage_in_bytes")),
                "limit": _read_int(os.path.join(mem, "memory.limit_in_bytes")),
                "failcnt": _read_int(os.path.join(mem, "memory.failcnt")),
                "stat": _read_keyed(os.path.join(mem, "memory.stat"))}
        out["pids"] = self._pids_stats()
        blkio = self._dir("blkio")
        if blkio:
            # The CFQ files, else BFQ's, else the throttle layer's (always kept).
            for prefix in ("blkio.", "blkio.bfq.", "blkio.throttle."):
                svc_bytes = _blkio_v1(os.path.join(blkio, prefix + "io_service_bytes_recursive"))
                if svc_bytes:
                    break
            out["blkio"] = {"io_service_bytes_recursive": svc_bytes,
                            "io_serviced_recursive": _blkio_v1(os.path.join(blkio, prefix + "io_serviced_recursive"))}
        return out

    def _stats_v2(self):
        d = self.dirs[0]
        cpu = _read_keyed(os.path.join(d, "cpu.stat"))
        events = _read_keyed(os.path.join(d, "memory.events"))
        svc_bytes, serviced = [], []
        try:
            lines = _read(os.path.join(d, "io.stat")).splitlines()
        except OSError:
            lines = []
        for line in lines:
            if not line.strip():
                continue
            dev, *pairs = line.split()
            major, _, minor = dev.partition(":")
            kv = dict(p.partition("=")[::2] for p in pairs)
            for op, b, n in (("read", "rbytes", "rios"), ("write", "wbytes", "wios")):
                svc_bytes.append({"major": int(major), "minor": int(minor), "op": op, "value": int(kv.get(b, 0))})
                serviced.append({"major": int(major), "minor": int(minor), "op": op, "value": int(kv.get(n, 0))})
        return {
            "cpu": {"total": cpu.get("usage_usec", 0) * 1000, "percpu": [],
                    "user": cpu.get("user_usec", 0) * 1000, "system": cpu.get("system_usec", 0) * 1000,
                    "throttling": {"periods": cpu.get("nr_periods", 0),
                                   "throttled_periods": cpu.get("nr_throttled", 0),
                                   "throttled_time": cpu.get("throttled_usec", 0) * 1000}},
            "memory": {"usage": _read_int(os.path.join(d, "memory.current")),
                       "max_usage": _read_int(os.path.join(d, "memory.peak")),
                       "limit": _read_int(os.path.join(d, "memory.max")),
                       "failcnt": events.get("oom", 0),
                       "stat": _read_keyed(os.path.join(d, "memory.stat"))},
            "pids": self._pids_stats(),
            "blkio": {"io_service_bytes_recursive": svc_bytes, "io_serviced_recursive": serviced},
        }

    def _pids_stats(self):
        d = self._dir("pids")
        if not d:
            return {"current": 0, "limit": 0}
        return {"current": _read_int(os.path.join(d, "pids.current")),
                "limit": _read_int(os.path.join(d, "pids.max"))}

    # -- processes and removal -------------------------------------------

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
        deadline = time.monotonic() + timeout
        thawed = False
        while True:
            pids = self.pids()
            if not pids or time.monotonic() > deadline:
                return not pids
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not thawed:
                # A frozen task dies only once thawed (v1); thawing after the
                # SIGKILLs lets none of them run its own code in between.
                try:
                    self.thaw()
                except OSError:
                    pass
                thawed = True
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


def _blkio_v1(path):
    """blkio's "8:0 Read 4096" lines as entries; the file's last "Total n" line is left out."""
    out = []
    try:
        lines = _read(path).splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, _, minor = parts[0].partition(":")
            out.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return out


def system_cpu_usage():
    """The host's cpu time since boot in nanoseconds: the first seven fields of
    /proc/stat's "cpu" line (user nice system idle iowait irq softirq), as Docker sums."""
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] == "cpu":
                return sum(int(x) for x in parts[1:8]) * NS // _HZ
    return 0


def machine_memory():
    return sysinfo.mem_total()


def _enable_v2_controllers():
    os.makedirs(os.path.join(V2_ROOT, "pyd"), exist_ok=True)
    for d in (V2_ROOT, os.path.join(V2_ROOT, "pyd")):
        # One controller per write: one the kernel lacks must not cost the others.
        for c in V2_CONTROLLERS:
            try:
                _write(os.path.join(d, "cgroup.subtree_control"), "+" + c)
            except OSError:
                pass
