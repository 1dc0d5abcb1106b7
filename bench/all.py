#!/usr/bin/env python3
"""The whole benchmark suite in one command: pyd against dockerd 20.10 in one
run, one table of every figure for both daemons, their ratio and the target.

    sudo .venv/bin/python -m bench.all [--binary PATH] [--quick] [--no-dockerd] [--no-readme]

pyd is --binary PATH, else this checkout's dist/pyd, else PYD_CMD, else
`python3 pyd.py` (bench_modern.pyd_command: a binary is copied first, so a
rebuild of dist/pyd mid-run changes nothing; every part measures that copy).
dockerd is Debian's docker.io, always a private one (tests/pydtest/dockerd.py:
its own data root, exec root, socket and 127.0.0.1 port, started and stopped
here); without docker.io, or with --no-dockerd, pyd alone is measured.

Measured here, with both daemons running at once and taking turns (the order
flipping every round), through the functions of the per-topic benches:
  - start to first ping (a fresh data root each start; a /_ping every 2 ms)
    and RSS after 1 s idle: pyd all pyd processes (the binary's processes in
    the daemon's tree), dockerd dockerd + containerd (bench_foundation);
  - RSS with N running busybox `sleep` containers (pyd: all pyd processes;
    dockerd: dockerd + containerd + every containerd-shim of its containerd);
  - container cycle: create+start+wait+delete of `true` over one keep-alive
    connection, cycles alternating between the daemons (bench_runtime's
    latency_interleaved), and 8 clients doing the cycle with an attach of
    the logs (bench_runtime's bench_throughput);
  - GET /version, wrk -t2 -c16 (bench_foundation's load);
  - import of a tar of random files (bench_import's tar, import and delete).
Run as subprocesses with --no-readme, their results JSON read back (each
alternates pyd and dockerd itself):
  - bench_modern (docker run --pull never --rm through the docker CLI 28, exec,
    GET /containers/json?all=1 with 50 containers), bench_build (no cache and
    cached), bench_registry (push and pull through Debian's docker-registry on
    127.0.0.1), bench_ports (published-port throughput; dockerd with its
    bridge and docker-proxy).
Binary size: the pyd binary; for dockerd the files dockerd, containerd,
containerd-shim-runc-v2, runc and docker-proxy.

--quick uses small sizes and few rounds (a smoke run of a few minutes). A part
that fails is recorded with its error and shown as not measured. Network rule:
traffic only to 127.0.0.1, unix sockets and the containers' own addresses;
nothing pulls from a hub (images are imported or loaded; the CLI gets
--pull never). Every loop is bounded in count and time; everything started is
stopped in a finally.

Writes bench/results/all.json (with every sub-bench's results) and the
"## All figures, pyd against dockerd" section of bench/README.md (only that
one; --no-readme: none). Sub-bench logs: bench/results/all-logs/. Needs root.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from tests.pydtest import Daemon, busybox_rootfs_tar, proc_status
from tests.pydtest import dockerd as dd

from bench import bench_foundation as bfd
from bench import bench_import as bim
from bench import bench_runtime as brt
from bench import readme
from bench.bench_modern import pyd_command, wrk_rate

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "all.json")
LOGS = os.path.join(HERE, "results", "all-logs")
SECTION_TITLE = "All figures, pyd against dockerd"
DOCKERD_FILES = ["dockerd", "containerd", "containerd-shim-runc-v2", "runc", "docker-proxy"]
DOCKERD_LABEL = "dockerd 20.10"
V = "/v1.41"

# dockerd 20.10 on this machine before (issue 15's table), for the README text
EARLIER = {"cycle_ms": "296–421 ms", "parallel": "4.4–6.7 cycles/s", "run_rm_ms": "319 ms", "import_s": "1.38 s",
           "build": "1.42 s / 0.07 s", "list": "307 req/s", "version": "260–419 req/s", "first_ping": "1.6 s",
           "idle_rss": "130–142 MB", "binary": "143 MB"}

FULL = {"rounds": 3, "cycles": 30, "warmup": 3, "thr_seconds": 5, "threads": 8, "version_seconds": 5,
        "import_mb": 200, "import_runs": 5, "starts": 5, "running": 50,
        "modern": [], "build": [], "registry": [], "ports": []}
QUICK = {"rounds": 1, "cycles": 10, "warmup": 2, "thr_seconds": 2, "threads": 8, "version_seconds": 2,
         "import_mb": 50, "import_runs": 1, "starts": 2, "running": 10,
         "modern": ["--rounds", "1", "--runs", "3", "--seconds", "2"],
         "build": ["--runs", "2"],
         "registry": ["--runs", "1", "--single-mb", "20", "--layers", "2", "--layer-mb", "10"],
         "ports": ["--rounds", "1", "--mb", "100"]}
BENCH_TIMEOUT = {"modern": 900, "build": 600, "registry": 1800, "ports": 900}   # seconds, full run
PARTS = ["start", "running", "cycles", "version", "import", "modern", "build", "registry", "ports"]
SETTLE_S = 0.5


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- processes and their memory ----------------------------------------------

def proc_table():
    """{pid: (ppid, exe, argv)} of every process now."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                exe = ""
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except (OSError, ValueError, IndexError):
            continue
        out[pid] = (ppid, exe, argv)
    return out


def tree(table, root):
    """root and all its descendants."""
    kids = {}
    for pid, (ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo and len(out) < 100_000:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def rss_kb(pids):
    total = 0
    for p in pids:
        try:
            total += proc_status(p, "VmRSS")
        except (OSError, KeyError):
            pass   # gone, or a kernel thread
    return total


def pyd_processes(d):
    """All pyd processes: those in the daemon's tree that run its own executable
    (the one-file bootloader, the serving child, any helper it forks), not the
    containers' processes."""
    table = proc_table()
    root = d.proc.pid
    exe = table.get(root, (0, None, []))[1]
    return [p for p in tree(table, root) if p in table and table[p][1] == exe]


def dockerd_processes(d):
    """dockerd, its containerd, and every containerd-shim of that containerd
    (shims leave dockerd's tree: they are found by the address they were given,
    which is under this dockerd's exec root)."""
    table = proc_table()
    mine = [p for p in tree(table, d.proc.pid)
            if p in table and os.path.basename(table[p][1]) in ("dockerd", "containerd", "docker-proxy")]
    shims = [p for p, (_, exe, argv) in table.items()
             if os.path.basename(exe).startswith("containerd-shim") and any(d.root in a for a in argv)]
    return sorted(set(mine + shims))


def rss_sample(target, samples=3, interval=0.3):
    """Median of a few samples of the daemon's processes' RSS, in MB (10^6 bytes); and how many processes."""
    vals, n = [], 0
    for i in range(samples):
        pids = target.processes()
        n = len(pids)
        vals.append(rss_kb(pids) * 1024 / 1e6)
        if i + 1 < samples:
            time.sleep(interval)
    return round(statistics.median(vals), 1), n


# -- the daemons -------------------------------------------------------------

class Target:
    """One daemon of the in-process parts: pyd or dockerd."""

    def __init__(self, label, make, kind):
        self.label, self.make, self.kind = label, make, kind
        self.d = None
        self.errors = {}
        self.fig = {}

    @property
    def port(self):
        return self.d.port

    def processes(self):
        return pyd_processes(self.d) if self.kind == "pyd" else dockerd_processes(self.d)

    def fail(self, key, e):
        self.errors.setdefault(key, f"{type(e).__name__}: {e}"[:500])
        say(f"{self.label}: {key} failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}")


def short_root(tag):
    """A short directory (containerd's socket paths are limited in length)."""
    return tempfile.mkdtemp(prefix=f"/tmp/pa{tag}")


def timed_start(d, argv, timeout=60):
    """Start the daemon `d` (a pydtest Daemon or Dockerd) with argv; seconds to its first /_ping answer."""
    os.makedirs(d.root, exist_ok=True)
    d._log = open(d.logpath, "ab")
    t0 = time.monotonic()
    d.proc = subprocess.Popen(argv, stdout=d._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = t0 + timeout
    while not bfd.ping(d.port):
        if d.proc.poll() is not None:
            raise RuntimeError(f"exited with {d.proc.returncode}: {d.log()[-500:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no /_ping answer in {timeout} s")
        time.sleep(0.002)
    return time.monotonic() - t0


def measure_starts(targets, cmd, driver, runs):
    """First ping and idle RSS, `runs` fresh starts per daemon, the order flipping every run."""
    for t in targets:
        t.fig["first_ping_s"], t.fig["idle_rss_mb"] = [], []
    for r in range(runs):
        for t in (targets if r % 2 == 0 else targets[::-1]):
            if "start" in t.errors:
                continue
            root = short_root("s")
            d = None
            try:
                if t.kind == "pyd":
                    d = Daemon(root, cmd=cmd)
                    argv = [a for a in d.argv() if a != "-D"]   # as a host runs it: no debug log
                else:
                    d = dd.Dockerd(root, storage_driver=driver)
                    argv = d.argv(driver)
                secs = timed_start(d, argv)
                time.sleep(1.0)   # idle
                probe = Target(t.label, None, t.kind)
                probe.d = d
                mb, n = rss_sample(probe)
                t.fig["first_ping_s"].append(secs)
                t.fig["idle_rss_mb"].append(mb)
                t.fig["idle_processes"] = n
                say(f"{t.label}: start {r + 1}/{runs}: first ping {secs:.3f} s, idle RSS {mb} MB ({n} processes)")
            except (RuntimeError, OSError) as e:
                t.fail("start", e)
            finally:
                if d is not None and d.proc is not None:
                    d.stop()
                shutil.rmtree(root, ignore_errors=True)
            time.sleep(SETTLE_S)


def measure_running(targets, n):
    """RSS with n busybox `sleep 3600` containers running; they are removed after."""
    for t in targets:
        ids = []
        try:
            api = t.d.api
            for i in range(n):
                r = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["sleep", "3600"]})
                if r.status != 201:
                    raise RuntimeError(f"create: {r}")
                ids.append(r.json()["Id"])
                r = api.post(f"{V}/containers/{ids[-1]}/start", timeout=120)
                if r.status != 204:
                    raise RuntimeError(f"start: {r}")
            r = api.get(f"{V}/containers/json")
            if r.status != 200 or len(r.json()) != n:
                raise RuntimeError(f"{len(r.json()) if r.status == 200 else r} containers running, wanted {n}")
            time.sleep(2.0)
            mb, procs = rss_sample(t)
            t.fig["running_rss_mb"], t.fig["running_processes"] = mb, procs
            say(f"{t.label}: RSS with {n} running containers {mb} MB ({procs} processes)")
        except (RuntimeError, OSError, ValueError) as e:
            t.fail("running", e)
        finally:
            for cid in ids:
                try:
                    t.d.api.delete(f"{V}/containers/{cid}?force=1", timeout=120)
                except OSError as e:
                    t.fail("running-cleanup", e)


def measure_cycles(targets, cfg):
    """bench_runtime's latency cycles (interleaved over the daemons) and its 8-client throughput, per round."""
    live = [t for t in targets if "cycles" not in t.errors]
    for t in live:
        t.fig["cycle_ms"], t.fig["parallel_rounds"] = [], []
    for r in range(cfg["rounds"]):
        order = live if r % 2 == 0 else live[::-1]
        say(f"cycles round {r + 1}/{cfg['rounds']}: {cfg['cycles']} cycles per daemon, interleaved")
        try:
            per = brt.latency_interleaved([t.port for t in order], cfg["cycles"], cfg["warmup"])
            for t, times in zip(order, per):
                t.fig["cycle_ms"] += times
                say(f"  {t.label}: median {statistics.median(times):.1f} ms")
        except (RuntimeError, OSError, ValueError) as e:
            for t in order:
                t.fail("cycles", e)
            return
        time.sleep(SETTLE_S)
        for t in order:
            if "parallel" in t.errors:
                continue
            try:
                thr = brt.bench_throughput(t.port, cfg["threads"], cfg["thr_seconds"])
                t.fig["parallel_rounds"].append(thr)
                say(f"  {t.label}: {thr['cycles_per_s']} cycles/s ({cfg['threads']} clients)")
            except (RuntimeError, OSError, ValueError) as e:
                t.fail("parallel", e)
            time.sleep(SETTLE_S)


def measure_version(targets, cfg):
    if not shutil.which("wrk"):
        for t in targets:
            t.errors["version"] = "wrk is not installed (apt-get install wrk)"
        return
    for t in targets:
        t.fig["version_rps"] = []
    for r in range(cfg["rounds"]):
        for t in (targets if r % 2 == 0 else targets[::-1]):
            if "version" in t.errors:
                continue
            try:
                rate = wrk_rate(t.port, cfg["version_seconds"], path="/version", connections=16)
                t.fig["version_rps"].append(rate)
                say(f"{t.label}: GET /version {rate:.0f} req/s")
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                t.fail("version", e)
            time.sleep(SETTLE_S)


def measure_import(targets, cfg, tmp):
    n_big, n_small = bim.VARIANTS[cfg["import_mb"]]
    path = os.path.join(tmp, "import.tar")
    size = bim.build_tar(path, n_big, n_small)
    say(f"import: a {size / 1e6:.0f} MB tar, {cfg['import_runs']} runs per daemon")
    for t in targets:
        t.fig["import_s"], t.fig["delete_s"] = [], []
    try:
        for r in range(cfg["import_runs"]):
            for t in (targets if r % 2 == 0 else targets[::-1]):
                if "import" in t.errors:
                    continue
                try:
                    ti, image = bim.import_once(t.port, path, size)
                    td = bim.delete_once(t.port, image)
                    t.fig["import_s"].append(ti)
                    t.fig["delete_s"].append(td)
                    say(f"  {t.label}: import {ti:.2f} s, delete {td:.2f} s")
                except (RuntimeError, OSError, ValueError) as e:
                    t.fail("import", e)
                time.sleep(SETTLE_S)
    finally:
        os.unlink(path)
    return {"tar_bytes": size, "big_files": n_big, "small_files": n_small}


def run_core(parts, cfg, cmd, tar, tmp, with_dockerd):
    """The in-process parts. Returns (targets, extra info)."""
    targets = [Target("pyd", lambda: Daemon(os.path.join(tmp, "pyd-main"), cmd=cmd), "pyd")]
    if with_dockerd:
        targets.append(Target(DOCKERD_LABEL, lambda: dd.Dockerd(short_root("d")), "dockerd"))
    info = {}
    main = [p for p in ("running", "cycles", "version", "import") if p in parts]
    driver = None
    if main:
        try:
            for t in targets:
                t.d = t.make()
                t.d.start()
                dd.load_busybox(t.d.api, tar)
            driver = getattr(targets[-1].d, "driver", None) if with_dockerd else None
            if "running" in parts:
                measure_running(targets, cfg["running"])
            if "cycles" in parts:
                measure_cycles(targets, cfg)
            if "version" in parts:
                measure_version(targets, cfg)
            if "import" in parts:
                info["import"] = measure_import(targets, cfg, tmp)
        finally:
            for t in targets:
                if t.d is not None and t.d.proc is not None:
                    t.d.stop()
                if t.kind == "dockerd" and t.d is not None:
                    shutil.rmtree(t.d.root, ignore_errors=True)
    if "start" in parts:
        measure_starts(targets, cmd, driver or "overlay2", cfg["starts"])
    info["dockerd_driver"] = driver
    return targets, info


# -- the sub-benches ---------------------------------------------------------

def run_bench(name, argv, timeout):
    """python -m bench.bench_<name> argv, its output to bench/results/all-logs/<name>.log; its results JSON."""
    os.makedirs(LOGS, exist_ok=True)
    results = os.path.join(HERE, "results", f"{name}.json")
    cmd = [sys.executable, "-m", f"bench.bench_{name}", *argv]
    say(f"bench_{name}: {' '.join(['python3'] + cmd[1:])}")
    t0 = time.time()
    with open(os.path.join(LOGS, f"{name}.log"), "wb") as log:
        p = subprocess.Popen(cmd, cwd=TOP, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            rc = p.wait(timeout)
        except BaseException:   # a timeout, or ^C: let it stop its daemons (SIGINT runs its finally)
            p.send_signal(signal.SIGINT)
            try:
                p.wait(180)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if sys.exc_info()[0] is subprocess.TimeoutExpired:
                return {"error": f"over its time bound of {timeout} s", "seconds": round(time.time() - t0)}
            raise
    out = {"argv": argv, "rc": rc, "seconds": round(time.time() - t0)}
    try:
        if os.path.getmtime(results) >= t0:
            with open(results) as f:
                out["results"] = json.load(f)
    except (OSError, ValueError):
        pass
    if rc != 0 or "results" not in out:
        with open(os.path.join(LOGS, f"{name}.log"), errors="replace") as f:
            tail = f.read()[-600:]
        out["error"] = f"exit {rc}: {tail}"
    say(f"bench_{name}: exit {rc} after {out['seconds']} s")
    return out


# -- the table ---------------------------------------------------------------

def is_static(path):
    """An ELF file with no PT_INTERP program header (no dynamic loader)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return None
            end = "<" if head[5] == 1 else ">"
            phoff, = struct.unpack(end + "Q", head[32:40])
            phentsize, phnum = struct.unpack(end + "HH", head[54:58])
            f.seek(phoff)
            table = f.read(phentsize * phnum)
        return not any(struct.unpack(end + "I", table[i * phentsize:i * phentsize + 4])[0] == 3
                       for i in range(phnum))
    except (OSError, struct.error):
        return None


def binary_sizes(cmd, with_dockerd):
    exe = cmd[0] if len(cmd) == 1 else None
    out = {"pyd": {"bytes": os.path.getsize(exe), "static": is_static(exe)} if exe else None}
    if with_dockerd:
        files = {}
        for name in DOCKERD_FILES:
            path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                               if os.path.exists(p)), None)
            files[name] = os.path.getsize(path) if path else None
        out["dockerd"] = {"bytes": sum(v for v in files.values() if v), "files": files,
                          "static": is_static(shutil.which("dockerd") or dd.DOCKERD)}
    return out


def med(xs):
    return statistics.median(xs) if xs else None


class Row:
    def __init__(self, title, pyd, dockerd, fmt, target=None, op=None, target_text="", err=("", ""), short=None):
        self.title, self.pyd, self.dockerd, self.fmt = title, pyd, dockerd, fmt
        self.short = short or title
        self.target, self.op, self.target_text, self.err = target, op, target_text, err

    def cells(self, with_dockerd):
        def val(v, e):
            return self.fmt(v) if v is not None else ("not measured" + (f" ({e.splitlines()[0][:70].replace('|', '/')})" if e else ""))
        out = [self.title, val(self.pyd, self.err[0])]
        if with_dockerd:
            out.append(val(self.dockerd, self.err[1]))
            out.append(ratio(self.pyd, self.dockerd))
        out += [self.target_text, self.verdict()]
        return out

    extra = None   # a second condition of the target that is not met, said after the size's verdict

    def verdict(self):
        v = self.size_verdict()
        if self.extra and v != "not measured":
            return ("size met" if v == "met" else v) + "; " + self.extra
        return v

    def size_verdict(self):
        if self.op is None:
            return ""
        v = self.pyd
        target = self.dockerd if self.target == "dockerd" else self.target
        if v is None or target is None:
            return "not measured"
        of = "dockerd's" if self.target == "dockerd" else "the target"
        if self.op == "<=":
            return "met" if v <= target else f"missed by {self.fmt(v - target)} ({v / target:.2f}x {of})"
        return "met" if v >= target else f"missed by {self.fmt(target - v)} ({v / target:.0%} of {of})"

    def record(self):
        return {"figure": self.title, "pyd": self.pyd, "dockerd": self.dockerd,
                "ratio": (round(self.pyd / self.dockerd, 4) if self.pyd is not None and self.dockerd else None),
                "target": self.target_text, "verdict": self.verdict(), "errors": list(self.err)}


def ratio(a, b):
    if a is None or not b:
        return "-"
    r = a / b
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.3f}x"


def ms(v):
    return f"{v:.1f} ms"


def secs(n=2):
    return lambda v: f"{v:.{n}f} s"


def rate(unit):
    return lambda v: f"{v:,.0f} {unit}" if v >= 100 else f"{v:.1f} {unit}"


def mb(v):
    return f"{v:.1f} MB"


def build_rows(targets, info, benches, bins, cfg, with_dockerd):
    by = {t.kind: t for t in targets}
    p, d = by.get("pyd"), by.get("dockerd")

    def core(key, fn=med, part=None):
        return tuple((fn(t.fig.get(key)) if t and t.fig.get(key) else None) for t in (p, d))

    def errs(part):
        return tuple((t.errors.get(part, "") if t else "") for t in (p, d))

    rows = []
    cyc = core("cycle_ms")
    rows.append(Row(f"container cycle (create, start, wait, delete of `true`), median of "
                    f"{cfg['rounds'] * cfg['cycles']}", *cyc, ms, 10, "<=", "≤ 10 ms", errs("cycles"), "container cycle"))

    def par(t):
        rs = t.fig.get("parallel_rounds") if t else None
        return sum(r["cycles"] for r in rs) / sum(r["seconds"] for r in rs) if rs else None
    rows.append(Row(f"parallel cycles, {cfg['threads']} clients (with attach of the logs), "
                    f"{cfg['rounds']} x {cfg['thr_seconds']} s", par(p), par(d), rate("cycles/s"), 100, ">=",
                    "≥ 100 cycles/s", errs("parallel"), "parallel cycles"))

    def sub(name, path, fmt, title, target=None, op=None, ttext="", short=None):
        b = benches.get(name) or {}
        res = b.get("results")
        vals = []
        for label in ("pyd", DOCKERD_LABEL):
            v = None
            try:
                v = path(res["daemons"][label]) if res else None
            except (KeyError, TypeError):
                v = None
            vals.append(v)
        errs_ = []
        for v, lbl in zip(vals, ("pyd", DOCKERD_LABEL)):
            if v is not None:
                errs_.append("")
                continue
            daemon_errs = ((res or {}).get("daemons", {}).get(lbl) or {}).get("errors") or {}
            errs_.append(next(iter(daemon_errs.values()), "") or b.get("error", "") or "not run")
        rows.append(Row(title, vals[0], vals[1] if with_dockerd else None, fmt, target, op, ttext, errs_, short))

    sub("modern", lambda x: x["run_rm"]["median_ms"], ms,
        "`docker run --pull never --rm busybox true`, docker CLI 28, median", 60, "<=", "≤ 60 ms",
        short="`docker run --rm`")
    sub("modern", lambda x: x["exec"]["median_ms"], ms, "`docker exec <c> true`, docker CLI 28, median")

    imp = info.get("import") or {}
    tar_mb = f"{imp['tar_bytes'] / 1e6:.0f} MB" if imp else f"{cfg['import_mb']} MB"
    files = f" ({imp['big_files']} x 10 MiB + {imp['small_files']:,} small files)" if imp else ""
    rows.append(Row(f"import of a {tar_mb} tar{files}, `POST /images/create?fromSrc=-`, median of "
                    f"{cfg['import_runs']}",
                    *core("import_s"), secs(2), 0.5, "<=", "≤ 0.5 s", errs("import"), "import"))
    rows.append(Row("delete of that image, median", *core("delete_s"), secs(3), err=errs("import")))

    reg = (benches.get("registry") or {}).get("results") or {}
    for key in ("single push", "single pull", "multi push", "multi pull"):
        im = (reg.get("images") or {}).get(key.split()[0])
        what = f"{im['title']}" if im else key.split()[0]
        sub("registry", lambda x, key=key: x["measures"][key]["median_s"], secs(2),
            f"{key.split()[1]} of {what}, local registry, median", "dockerd", "<=", "≤ dockerd",
            short=f"{key.split()[1]} of {what}")

    sub("build", lambda x: x["nocache"]["median_s"], secs(3), "build, 7-step Dockerfile, no cache, median",
        0.5, "<=", "≤ 0.5 s", short="build without cache")
    sub("build", lambda x: x["cached"]["median_s"], secs(3), "build, the same fully cached, median",
        0.05, "<=", "≤ 0.05 s", short="cached build")

    lst = "`GET /containers/json?all=1`, 50 containers, wrk -t2 -c8"
    sub("modern", lambda x: x["list_req_s"], rate("req/s"), lst, 3000, ">=", "≥ 3,000 req/s",
        short="`/containers/json?all=1`")
    rows.append(Row("`GET /version`, wrk -t2 -c16", *core("version_rps"), rate("req/s"), 10000, ">=",
                    "≥ 10,000 req/s", errs("version"), "`/version`"))

    ports = (benches.get("ports") or {}).get("results") or {}
    pm = ports.get("mb_s") or {}
    mbytes = f"{ports['bytes'] / 1e6:,.0f} MB" if ports.get("bytes") else "a"
    pe = (benches.get("ports") or {}).get("error", "not run")
    perr = tuple(((ports.get("errors") or {}).get(lbl) or pe) if pm.get(f"{lbl}, published") is None else ""
                 for lbl in ("pyd", DOCKERD_LABEL))
    rows.append(Row(f"published-port throughput, {mbytes} transfer on 127.0.0.1, median",
                    pm.get("pyd, published"), pm.get(f"{DOCKERD_LABEL}, published") if with_dockerd else None,
                    rate("MB/s"), "dockerd", ">=", "≥ dockerd (docker-proxy)", perr, "published port"))
    rows.append(Row("the same, direct to the container's address (reference)", pm.get("pyd, direct"),
                    pm.get(f"{DOCKERD_LABEL}, direct") if with_dockerd else None, rate("MB/s"), err=perr))

    rows.append(Row(f"start to first ping, median of {cfg['starts']} fresh starts", *core("first_ping_s"), secs(3),
                    0.15, "<=", "≤ 0.15 s", errs("start"), "first ping"))
    rows.append(Row("idle RSS, 1 s after start (pyd: all pyd processes; dockerd: dockerd + containerd)",
                    *core("idle_rss_mb"), mb, 20, "<=", "≤ 20 MB", errs("start"), "idle RSS"))
    rows.append(Row(f"RSS with {cfg['running']} running containers (pyd: all pyd processes; dockerd: dockerd + "
                    "containerd + its containerd-shims)", *core("running_rss_mb", fn=lambda x: x),
                    mb, err=errs("running")))

    pb, db = bins.get("pyd"), bins.get("dockerd")
    static = pb["static"] if pb else None
    b_row = Row("binary size (pyd: the binary" + ("" if static is None else
                                                  ", " + ("static" if static else "dynamically linked"))
                + "; dockerd: dockerd, containerd, containerd-shim-runc-v2, runc, docker-proxy)",
                pb["bytes"] / 1e6 if pb else None, db["bytes"] / 1e6 if db else None,
                mb, 10, "<=", "≤ 10 MB, static", short="binary")
    b_row.extra = None if static else ("not static" if static is False else "static unknown")
    rows.append(b_row)
    return rows


def markdown(rows, with_dockerd):
    head = ["figure", "pyd"] + ([DOCKERD_LABEL, "pyd / dockerd"] if with_dockerd else []) + ["target", "target met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(r.cells(with_dockerd)) + " |")
    return "\n".join(lines) + "\n"


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def section(table, rows, res, cfg, with_dockerd):
    m = res["meta"]
    missed = [r for r in rows if r.verdict() not in ("", "met", "not measured")]
    unmeasured = [r for r in rows if r.verdict() == "not measured"]
    text = [f"`sudo .venv/bin/python -m bench.all{' --quick' if res['quick'] else ''}` (root): the figures of "
            "the per-topic benches (their own sections follow), "
            + ("for pyd and a private dockerd 20.10 (its own data root, socket and port) in one run. " if with_dockerd
               else "for pyd alone (no dockerd in this run). ")
            + "The daemons run at once and take turns, the order flipping every round: start to first ping and "
            "idle RSS (fresh data roots), RSS with running containers, the container cycle (bench_runtime's "
            "functions, cycles alternating between the daemons), `GET /version` and the import (bench_import's "
            "tar); bench_modern, bench_build, bench_registry and bench_ports run whole (`--no-readme`), each "
            "alternating the daemons itself, and their results are read back. Ratio is pyd / dockerd: below 1 is "
            "pyd faster for times and sizes, above 1 for rates. Raw figures: `bench/results/all.json`.",
            "", table]
    runs = []
    for name, b in res["benches"].items():
        extra = [a for a in b.get("argv", []) if a not in ("--no-readme", "--source", "--no-dockerd")]
        if "--binary" in extra:
            i = extra.index("--binary")
            del extra[i:i + 2]
        runs.append(f"`bench_{name}{(' ' + ' '.join(extra)) if extra else ''}` ({b.get('seconds', '?')} s)")
    text.append(("A `--quick` smoke run: small sizes and few rounds, so the figures are rough. " if res["quick"] else "")
                + f"Here: {plural(cfg['rounds'], 'round')}; {cfg['cycles']} latency cycles per round and daemon "
                f"(after {cfg['warmup']} uncounted), then {cfg['thr_seconds']} s of {cfg['threads']} clients; "
                f"{cfg['version_seconds']} s of wrk per round; {plural(cfg['import_runs'], 'import')} and "
                f"{plural(cfg['starts'], 'start')} per daemon"
                + ("; sub-benches " + ", ".join(runs) if runs else "") + ".\n")
    if missed:
        text.append("Targets missed: " + "; ".join(f"{r.short}: {r.verdict()}" for r in missed) + ".\n")
    if unmeasured:
        text.append("Not measured: " + ", ".join(r.short for r in unmeasured) + " (see the table).\n")
    if with_dockerd:
        text.append("dockerd 20.10 measured earlier on this machine (issue 15): cycle "
                    f"{EARLIER['cycle_ms']}, parallel {EARLIER['parallel']}, `docker run --rm` {EARLIER['run_rm_ms']}, "
                    f"import of 200 MB {EARLIER['import_s']}, build {EARLIER['build']}, list {EARLIER['list']}, "
                    f"/version {EARLIER['version']}, first ping {EARLIER['first_ping']}, idle RSS "
                    f"{EARLIER['idle_rss']}, binaries {EARLIER['binary']}.\n")
        text.append("The private dockerd has no bridge (`--bridge=none`) except in bench_ports, which gives it its "
                    "bridge, iptables and docker-proxy; pyd's containers join its bridge everywhere. dockerd's "
                    "storage driver: " + f"`{res.get('dockerd_driver') or '?'}`.\n")
    text.append(f"Measured {m['date']} on {m['machine']} ({m['cpus']} CPUs), pyd `{m['daemon']}`"
                + (f" ({res['pyd_version']})" if res.get("pyd_version") else "")
                + (f", {res['dockerd_version']}" if res.get("dockerd_version") else "")
                + f"; the run took {res['total_s'] / 60:.1f} min.\n")
    return "\n".join(text)


# -----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", help="the pyd binary (default: dist/pyd if built, else PYD_CMD, else pyd.py)")
    ap.add_argument("--quick", action="store_true", help="small sizes, few rounds: a smoke run of a few minutes")
    ap.add_argument("--no-dockerd", action="store_true", help="measure pyd only")
    ap.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    ap.add_argument("--only", help="comma list of parts (" + ",".join(PARTS) + "); implies --no-readme")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.all needs root")
    parts = PARTS if not args.only else [p.strip() for p in args.only.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"unknown parts {bad}; choose from {PARTS}")
    with_dockerd = not args.no_dockerd and bool(dd.installed())
    if not args.no_dockerd and not with_dockerd:
        say("dockerd is not installed: pyd alone")
    cfg = dict(QUICK if args.quick else FULL)
    t_start = time.monotonic()
    tar = busybox_rootfs_tar()
    res = {"quick": args.quick, "argv": sys.argv[1:], "parts": parts, "settings": cfg}
    with tempfile.TemporaryDirectory(prefix="pyd-bench-all-") as tmp:
        cmd, label = pyd_command(args.binary, tmp)
        res["meta"] = readme.run_meta([label])
        res["meta"]["daemon"] = label
        if len(cmd) == 1:
            try:
                res["pyd_version"] = subprocess.run([cmd[0], "--version"], capture_output=True, text=True,
                                                    timeout=30).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                pass
        if with_dockerd:
            res["dockerd_version"] = dd.version()
        bins = binary_sizes(cmd, with_dockerd)
        targets, info = run_core(parts, cfg, cmd, tar, tmp, with_dockerd)
        benches = {}
        pass_binary = ["--binary", cmd[0]] if len(cmd) == 1 else []
        for name in ("modern", "build", "registry", "ports"):
            if name not in parts:
                continue
            argv = pass_binary + (["--source"] if not pass_binary and name in ("build", "registry") else []) \
                + cfg[name] + ["--no-readme"] + (["--no-dockerd"] if not with_dockerd else [])
            timeout = BENCH_TIMEOUT[name] if not args.quick else 600
            try:
                benches[name] = run_bench(name, argv, timeout)
            except OSError as e:
                benches[name] = {"error": str(e)}
    res["total_s"] = round(time.monotonic() - t_start, 1)
    res["dockerd_driver"] = info.get("dockerd_driver") or next(
        (b["results"]["daemons"][DOCKERD_LABEL].get("storage_driver") for b in benches.values()
         if (b.get("results") or {}).get("daemons", {}).get(DOCKERD_LABEL, {}).get("storage_driver")), None)
    rows = build_rows(targets, info, benches, bins, cfg, with_dockerd)
    table = markdown(rows, with_dockerd)
    res["binaries"] = bins
    res["core"] = {t.label: {"figures": t.fig, "errors": t.errors} for t in targets}
    res["core_info"] = info
    res["benches"] = benches
    res["table"] = [r.record() for r in rows]
    readme.write_results(RESULTS, res)
    text = section(table, rows, res, cfg, with_dockerd)
    print(text)
    if not args.no_readme and not args.only:
        readme.update_section(SECTION_TITLE, text)
        say("wrote bench/README.md and bench/results/all.json")


if __name__ == "__main__":
    main()
