#!/usr/bin/env python3
"""Container runtime benchmark: the cost of a whole `docker run` cycle over the API.

Starts a private pyd on a temporary root, imports the busybox test image, then
measures:

  1. latency: sequential cycles of create, start, wait, delete of `true`
     over one keep-alive HTTP connection (http.client); median and p90 in ms;
  2. throughput: eight client threads doing create, start, wait,
     attach?logs=1&stream=0&stdout=1 (output checked == "ok\\n") and delete
     of `echo ok`; cycles per second.

The daemon measured ("current") is --binary PATH, else this checkout's
dist/pyd if there is one, else PYD_CMD, else `python3 pyd.py`. A binary is
copied to a private temporary file first, so a rebuild of dist/pyd during
the run does not change what is measured.

With --baseline REF it also measures the frozen binary of commit REF (built
by that commit's own build.sh in a temporary git worktree, cached under
bench/results/baselines/<sha>/pyd; see bench/baseline.py) in the same run:
both daemons run at once, each on its own root and port with the same
busybox image, and take turns so that drift in machine load hits both alike:
in each round the latency cycles alternate between the two daemons cycle by
cycle, then each daemon gets its throughput run, the order flipping every
round. It reports each daemon's figures and the ratio current/baseline.

Writes bench/results/runtime.json and the "## Container runtime" section of
bench/README.md. Needs root (namespaces, mounts, cgroups). Only 127.0.0.1.

Usage: sudo python3 -m bench.bench_runtime [--binary PATH] [--cycles N] [--seconds S] [--threads T]
       sudo python3 -m bench.bench_runtime --baseline REF [--binary PATH] [--rounds R] [--cycles N] [--seconds S]
       (with --baseline, --cycles and --seconds are per round and per daemon)
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

from tests.pydtest import Daemon, busybox_rootfs_tar, daemon_cmd

from bench import baseline
from bench import readme  # one README section, under a lock

RESULTS = os.path.join(HERE, "results", "runtime.json")
SECTION_TITLE = "Container runtime"

ANCHORS = {"cycle_median_ms": 296.0, "cycles_per_s_8_clients": 6.7}   # dockerd, same cycles
TARGETS = {"cycle_median_ms": 30.0, "cycles_per_s_8_clients": 60.0}    # <= and >=

SINGLE = {"cycles": 100, "seconds": 20.0, "warmup": 5}            # one daemon, one round
COMPARE = {"rounds": 6, "cycles": 40, "seconds": 5.0, "warmup": 3}  # per round and daemon
# What comparing a commit with itself gave (the noise floor), for the README.
NOISE_NOTE = ("four runs of 887c4eb against its own binary (2 CPUs, other test suites running, "
              "2026-12-01) gave ratios of 0.98-1.03 for the median, 0.95-1.04 for p90 and 0.97-1.09 "
              "for cycles/s, so differences under about 5% (latency) and 10% (throughput) are noise there.")
SETTLE_S = 0.5          # pause between two daemons' turns
MAX_CYCLE_S = 0.5       # latency rounds must average under this per cycle (plus 60 s slack)
MAX_RATE = 500          # cycles/s per client the throughput loop may never exceed (a count bound)


class KeepAlive:
    """One persistent HTTP/1.1 connection; reconnects once if the server closed it."""

    def __init__(self, port, timeout=60):
        self.port, self.timeout = port, timeout
        self.conn = None

    def _connect(self):
        self.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def request(self, method, path, body=None):
        headers = {}
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def expect(status, data, want, what):
    if status != want:
        raise RuntimeError(f"{what}: HTTP {status} (wanted {want}): {data[:300]!r}")


def attach_logs(port, cid, timeout=60):
    """attach logs=1 stream=0 stdout=1 on its own connection (attach hijacks it)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", f"/containers/{cid}/attach?logs=1&stream=0&stdout=1")
        r = c.getresponse()
        data = r.read()
        expect(r.status, data, 200, "attach")
        return data
    finally:
        c.close()


def unframed(data):
    """attach output as text: pyd's unversioned attach gives it raw, dockerd's
    (API 1.41) in stdout/stderr frames (an 8-byte header each); either way
    the payload."""
    if len(data) >= 8 and data[0] in (1, 2) and data[1:4] == b"\0\0\0":
        out, i = b"", 0
        while i + 8 <= len(data):
            n = int.from_bytes(data[i + 4:i + 8], "big")
            out += data[i + 8:i + 8 + n]
            i += 8 + n
        return out
    return data


def cycle(ka, cmd):
    """create, start, wait, delete; returns (id, exit code)."""
    st, data = ka.request("POST", "/containers/create", {"Image": "busybox", "Cmd": cmd})
    expect(st, data, 201, "create")
    cid = json.loads(data)["Id"]
    st, data = ka.request("POST", f"/containers/{cid}/start")
    expect(st, data, 204, "start")
    st, data = ka.request("POST", f"/containers/{cid}/wait")
    expect(st, data, 200, "wait")
    return cid, json.loads(data)["StatusCode"]


def delete(ka, cid):
    st, data = ka.request("DELETE", f"/containers/{cid}")
    expect(st, data, 204, "delete")


def percentile(values, p):
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_summary(times):
    return {"cycles": len(times), "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(percentile(times, 90), 2), "min_ms": round(min(times), 2),
            "max_ms": round(max(times), 2)}


def timed_cycle(ka):
    """One create+start+wait+delete of `true`; its time in ms."""
    t0 = time.perf_counter()
    cid, code = cycle(ka, ["true"])
    delete(ka, cid)
    ms = (time.perf_counter() - t0) * 1000.0
    if code != 0:
        raise RuntimeError(f"`true` exited with {code}")
    return ms


def latency_times(port, n, warmup):
    """`warmup` uncounted cycles, then n timed ones; the per-cycle times in ms."""
    return latency_interleaved([port], n, warmup)[0]


def latency_interleaved(ports, n, warmup):
    """Sequential cycles taking turns over the daemons on `ports`, one keep-alive
    connection each: cycle i goes to the daemons in turn, in an order that flips
    every cycle (A B, B A, A B, ...), so that a change in machine load between
    two cycles hits both alike. Returns one list of n times (ms) per port."""
    total = (n + warmup) * len(ports)
    deadline = time.monotonic() + 60 + total * MAX_CYCLE_S
    kas = [KeepAlive(p) for p in ports]
    times = [[] for _ in ports]
    done = 0
    try:
        for i in range(warmup + n):
            turn = range(len(ports)) if i % 2 == 0 else range(len(ports) - 1, -1, -1)
            for j in turn:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"latency run over its time bound after {done} of {total} cycles")
                ms = timed_cycle(kas[j])
                done += 1
                if i >= warmup:
                    times[j].append(ms)
    finally:
        for ka in kas:
            ka.close()
    return times


def bench_latency(port, n, warmup=SINGLE["warmup"]):
    return latency_summary(latency_times(port, n, warmup))


def bench_throughput(port, threads, seconds):
    stop_at = time.monotonic() + seconds
    max_cycles = max(1, int(seconds * MAX_RATE))  # per client; never reached in practice
    counts = [0] * threads
    failures = []

    def worker(i):
        ka = KeepAlive(port)
        try:
            while time.monotonic() < stop_at and counts[i] < max_cycles and not failures:
                cid, code = cycle(ka, ["echo", "ok"])
                out = attach_logs(port, cid)
                delete(ka, cid)
                if code != 0 or unframed(out) != b"ok\n":
                    raise RuntimeError(f"cycle gave exit {code} and output {out!r}")
                counts[i] += 1
        except Exception as e:  # reported below; the run is then invalid
            failures.append(f"client {i}: {e}")
        finally:
            ka.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(i,), name=f"client-{i}", daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    join_by = stop_at + 120
    for t in ts:
        t.join(max(0.0, join_by - time.monotonic()))
    elapsed = time.monotonic() - t0
    if any(t.is_alive() for t in ts):
        failures.append("a client thread did not finish in time")
    if failures:
        raise RuntimeError("; ".join(failures[:5]))
    total = sum(counts)
    return {"clients": threads, "seconds": round(elapsed, 2), "cycles": total,
            "cycles_per_s": round(total / elapsed, 2)}


# -- which daemons, and what to call them ------------------------------------

def head_commit():
    try:
        sha = baseline.git("rev-parse", "HEAD")
        dirty = bool(baseline.git("status", "--porcelain", "--untracked-files=no", check=False))
        return sha, dirty
    except (baseline.BaselineError, OSError, subprocess.SubprocessError):
        return None, False


def build_id(version_text):
    """'pyd version 0.1.0, build 887c4eb0a7ca[-dirty]' -> ('887c4eb0a7ca', dirty)."""
    m = re.search(r"build ([0-9a-f]{7,40})(-dirty)?", version_text or "")
    return (m.group(1), bool(m.group(2))) if m else (None, False)


def full_sha(prefix):
    try:
        return baseline.resolve(prefix)
    except baseline.BaselineError:
        return prefix


def public_argv(argv):
    """A command line without this machine's paths: the interpreter as python3,
    files in the checkout relative to it, other files by their basename."""
    out = []
    for i, a in enumerate(argv):
        if i == 0 and (a == sys.executable or os.path.basename(a).startswith("python")):
            out.append("python3")
        elif os.path.isabs(a) and os.path.abspath(a).startswith(TOP + os.sep):
            out.append(os.path.relpath(a, TOP))
        elif os.path.isabs(a):
            out.append(os.path.basename(a))
        else:
            out.append(a)
    return out


class Subject:
    """One daemon under test: its command, its name, and the figures it gets."""

    def __init__(self, role, cmd, label, commit, dirty=False, **info):
        self.role, self.cmd, self.label, self.commit, self.dirty = role, list(cmd), label, commit, dirty
        self.public_argv = info.pop("public_argv", None) or public_argv(self.cmd)
        self.info = info
        self.daemon = self.root = None
        self.lat_rounds, self.times, self.thr_rounds = [], [], []

    @property
    def short(self):
        return (self.commit or "unknown")[:7] + (" + uncommitted changes" if self.dirty else "")

    def describe(self):
        return {"label": self.label, "commit": self.commit, "dirty": self.dirty,
                "argv": self.public_argv, **self.info}


def snapshot(path, tmpdir):
    """Copy a binary to a private file so a rebuild of the original cannot change it mid-run."""
    dst = os.path.join(tmpdir, "pyd")
    shutil.copyfile(path, dst)
    os.chmod(dst, 0o755)
    return dst


def current_subject(binary_arg, tmpdir):
    """--binary PATH, else the checkout's dist/pyd, else PYD_CMD / `python3 pyd.py`."""
    dist = os.path.join(TOP, "dist", "pyd")
    path = binary_arg or (dist if os.path.isfile(dist) else None)
    if path:
        path = os.path.abspath(path)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit(f"bench_runtime: --binary {path}: not an executable file")
        copy = snapshot(path, tmpdir)
        ver = baseline.version(copy)
        if not ver.startswith("pyd version"):
            sys.exit(f"bench_runtime: the binary does not run (half rebuilt?): {ver[:200]}")
        bid, dirty = build_id(ver)
        in_cache = path.startswith(os.path.abspath(baseline.CACHE) + os.sep)
        is_dist = path == dist or path.endswith(os.sep + os.path.join("dist", "pyd"))
        public = "dist/pyd" if is_dist or in_cache else os.path.basename(path)
        name = f"`{public}`" + ("" if public == "dist/pyd" else " binary")
        commit = full_sha(bid) if bid else None
        sub = Subject("current", [copy], "", commit, dirty, version=ver, sha256=baseline.sha256(copy),
                      bytes=os.path.getsize(copy), public_argv=[public])
        sub.label = f"{name} at {sub.short}" if bid else f"{name} (sha256 {sub.info['sha256'][:12]}, no build id)"
        return sub
    cmd = daemon_cmd()
    head, dirty = head_commit()
    src = os.path.join(TOP, "pyd.py")
    if os.path.abspath(cmd[-1]) == src:
        sub = Subject("current", cmd, "", head, dirty)
        sub.label = f"`pyd.py` from source at {sub.short}"
    else:  # some other PYD_CMD: say what it is, not where
        sub = Subject("current", cmd, "", None)
        sub.label = f"`{' '.join(sub.public_argv)}` (PYD_CMD)"
    return sub


def baseline_subject(ref):
    path, info = baseline.binary(ref, say=lambda m: print(m, flush=True))
    sub = Subject("baseline", [path], "", info["commit"], False, version=info.get("version"),
                  sha256=info.get("sha256"), bytes=info.get("bytes"), public_argv=["dist/pyd"],
                  cached=info.get("cached"), built_by=f"build.sh of {info['commit'][:7]}")
    sub.label = f"`dist/pyd` at {sub.short}"
    return sub


class BenchDaemon(Daemon):
    """pydtest's Daemon with the command given here instead of through PYD_CMD."""

    def __init__(self, root, cmd):
        super().__init__(root)
        self.bench_cmd = list(cmd)

    def argv(self):
        return self.bench_cmd + ["-H", f"tcp://127.0.0.1:{self.port}", "-H", f"unix://{self.sock}",
                                 "-g", self.root, "-p", self.pidfile, "-D"] + self.extra_args


def start(sub, image_tar):
    sub.root = tempfile.mkdtemp(prefix=f"pyd-bench-runtime-{sub.role}-")
    sub.daemon = BenchDaemon(sub.root, sub.cmd)
    sub.daemon.start()
    r = sub.daemon.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", image_tar,
                            headers={"Content-Type": "application/x-tar"}, timeout=300)
    if r.status != 200 or b'"error"' in r.body:
        raise RuntimeError(f"importing busybox into the {sub.role} daemon failed: {r}")


def stop(sub):
    rc = None
    if sub.daemon is not None:
        rc = sub.daemon.stop()
        if rc not in (0, None):
            print(f"warning: the {sub.role} daemon exited with {rc}", file=sys.stderr)
    if sub.root:
        shutil.rmtree(sub.root, ignore_errors=True)
    return rc


def write_results(res):
    readme.write_results(RESULTS, res)


def result_head(mode, args, cur):
    """The fields every results file starts with."""
    return {"benchmark": "runtime", "mode": mode, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "argv": bench_command(args), "meta": readme.run_meta(cur.public_argv)}


def bench_command(args):
    """This run's command line for the record, with --binary named by what it is."""
    out = ["python3", "-m", "bench.bench_runtime"]
    skip = False
    for a in sys.argv[1:]:
        if skip:
            out.append("<binary>")
            skip = False
        elif a == "--binary":
            out.append(a)
            skip = True
        elif a.startswith("--binary="):
            out.append("--binary=<binary>")
        else:
            out.append(a)
    return out


# -- one daemon (the original mode) -------------------------------------------

def update_readme_single(res):
    lat, thr = res["latency"], res["throughput"]
    ok_lat = lat["median_ms"] <= TARGETS["cycle_median_ms"]
    ok_thr = thr["cycles_per_s"] >= TARGETS["cycles_per_s_8_clients"]
    body = f"""`python3 -m bench.bench_runtime` (needs root): a private pyd on a temporary root, the busybox
test image, every cycle over the HTTP API on 127.0.0.1. Raw figures: `bench/results/runtime.json`.
With `--baseline REF` it measures the current daemon against an earlier commit's binary instead.

| measure | pyd | dockerd anchor | target | met |
|---|---|---|---|---|
| create+start+wait+delete of `true`, one keep-alive connection, {lat['cycles']} sequential cycles: median | {lat['median_ms']} ms | {ANCHORS['cycle_median_ms']:g} ms | ≤ {TARGETS['cycle_median_ms']:g} ms | {'yes' if ok_lat else 'no'} |
| same, p90 | {lat['p90_ms']} ms | | | |
| {thr['clients']} clients for {thr['seconds']:g} s: create, start, wait, attach logs (checked `ok`), delete of `echo ok` | {thr['cycles_per_s']} cycles/s ({thr['cycles']} cycles) | {ANCHORS['cycles_per_s_8_clients']:g} cycles/s | ≥ {TARGETS['cycles_per_s_8_clients']:g} cycles/s | {'yes' if ok_thr else 'no'} |

Run {res['when']} on {res['host']['cpus']} CPUs, kernel {res['host']['kernel']}, daemon {res['daemon']['label']}.
{res['settings']['warmup']} warm-up cycles precede the latency run and are not counted.
"""
    readme.update_section(SECTION_TITLE, body)


def run_single(args, cur, image_tar):
    cycles = args.cycles or SINGLE["cycles"]
    seconds = args.seconds or SINGLE["seconds"]
    print(f"daemon: {cur.label}", flush=True)
    try:
        start(cur, image_tar)
        print(f"latency: {cycles} sequential cycles ...", flush=True)
        lat = bench_latency(cur.daemon.port, cycles, SINGLE["warmup"])
        print(f"  median {lat['median_ms']} ms, p90 {lat['p90_ms']} ms", flush=True)
        print(f"throughput: {args.threads} clients for {seconds:g} s ...", flush=True)
        thr = bench_throughput(cur.daemon.port, args.threads, seconds)
        print(f"  {thr['cycles_per_s']} cycles/s ({thr['cycles']} cycles)", flush=True)
    finally:
        stop(cur)
    return {
        **result_head("single", args, cur),
        "daemon_cmd": " ".join(cur.public_argv),
        "daemon": cur.describe(),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "settings": {"cycles": cycles, "seconds": seconds, "threads": args.threads, "warmup": SINGLE["warmup"]},
        "latency": lat,
        "throughput": thr,
        "dockerd_anchor": ANCHORS,
        "target": TARGETS,
        "met": {"cycle_median_ms": lat["median_ms"] <= TARGETS["cycle_median_ms"],
                "cycles_per_s_8_clients": thr["cycles_per_s"] >= TARGETS["cycles_per_s_8_clients"]},
    }


# -- current against baseline ------------------------------------------------

def ratio(a, b):
    return round(a / b, 3) if b else None


def fmt_ratio(r, se=None):
    return "n/a" if r is None else f"{r:.2f}" + ("" if se is None else f" ± {se:.2f}")


def summarize(sub):
    lat = latency_summary(sub.times)
    lat["round_medians_ms"] = [r["median_ms"] for r in sub.lat_rounds]
    lat["times_ms"] = [round(t, 2) for t in sub.times]
    cyc = sum(r["cycles"] for r in sub.thr_rounds)
    secs = sum(r["seconds"] for r in sub.thr_rounds)
    thr = {"clients": sub.thr_rounds[0]["clients"], "seconds": round(secs, 2), "cycles": cyc,
           "cycles_per_s": round(cyc / secs, 2), "rounds": sub.thr_rounds}
    return lat, thr


def run_compare(args, cur, base, image_tar):
    rounds = args.rounds
    cycles = args.cycles or COMPARE["cycles"]
    seconds = args.seconds or COMPARE["seconds"]
    warmup = COMPARE["warmup"]
    print(f"current:  {cur.label}\nbaseline: {base.label}", flush=True)
    subs = [cur, base]
    order_log = []
    t_start = time.monotonic()
    try:
        for s in subs:
            start(s, image_tar)
        for rnd in range(rounds):
            order = subs if rnd % 2 == 0 else subs[::-1]
            order_log.append([s.role for s in order])
            print(f"round {rnd + 1}/{rounds}: {' then '.join(s.role for s in order)}", flush=True)
            per = latency_interleaved([s.daemon.port for s in order], cycles, warmup)
            for s, times in zip(order, per):
                summ = latency_summary(times)
                s.times += times
                s.lat_rounds.append(summ)
                print(f"  latency    {s.role:8}  median {summ['median_ms']:7.2f} ms  p90 {summ['p90_ms']:7.2f} ms"
                      f"  ({cycles} cycles, interleaved)", flush=True)
            time.sleep(SETTLE_S)
            for s in order:
                thr = bench_throughput(s.daemon.port, args.threads, seconds)
                s.thr_rounds.append(thr)
                print(f"  throughput {s.role:8}  {thr['cycles_per_s']:7.2f} cycles/s  ({thr['cycles']} cycles"
                      f" in {thr['seconds']:g} s, {args.threads} clients)", flush=True)
                time.sleep(SETTLE_S)
    finally:
        for s in subs:
            stop(s)
    wall = time.monotonic() - t_start

    figs = {}
    for s in subs:
        figs[s.role] = summarize(s)
    (cl, ct), (bl, bt) = figs["current"], figs["baseline"]
    ratios = {"cycle_median_ms": ratio(cl["median_ms"], bl["median_ms"]),
              "cycle_p90_ms": ratio(cl["p90_ms"], bl["p90_ms"]),
              "cycles_per_s_8_clients": ratio(ct["cycles_per_s"], bt["cycles_per_s"])}
    per_round = {"cycle_median_ms": [ratio(a["median_ms"], b["median_ms"]) for a, b in zip(cur.lat_rounds, base.lat_rounds)],
                 "cycle_p90_ms": [ratio(a["p90_ms"], b["p90_ms"]) for a, b in zip(cur.lat_rounds, base.lat_rounds)],
                 "cycles_per_s_8_clients": [ratio(a["cycles_per_s"], b["cycles_per_s"]) for a, b in zip(cur.thr_rounds, base.thr_rounds)]}
    # the noise: standard error of the mean of the per-round ratios
    stderr = {k: (round(statistics.stdev(v) / len(v) ** 0.5, 3) if len(v) > 1 and None not in v else None)
              for k, v in per_round.items()}
    head, dirty = head_commit()
    daemons = {}
    for s in subs:
        lat, thr = figs[s.role]
        daemons[s.role] = {**s.describe(), "meta": readme.run_meta(s.public_argv), "latency": lat, "throughput": thr}
    return {
        **result_head("compare", args, cur),
        "checkout": {"commit": head, "dirty": dirty},
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "settings": {"rounds": rounds, "cycles_per_round": cycles, "seconds_per_round": seconds,
                     "threads": args.threads, "warmup_per_round": warmup, "settle_s": SETTLE_S,
                     "order": order_log, "measure_wall_s": round(wall, 1)},
        "daemons": daemons,
        "ratio_current_over_baseline": ratios,
        "round_ratios": per_round,
        "ratio_stderr": stderr,
        "dockerd_anchor": ANCHORS,
        "target": TARGETS,
    }


def compare_table(res):
    cur, base = res["daemons"]["current"], res["daemons"]["baseline"]
    st, r, se = res["settings"], res["ratio_current_over_baseline"], res["ratio_stderr"]
    cl, bl, ct, bt = cur["latency"], base["latency"], cur["throughput"], base["throughput"]
    return f"""| measure | current | baseline ({base['commit'][:7]}) | ratio |
|---|---|---|---|
| create+start+wait+delete of `true`, one keep-alive connection: median of {cl['cycles']} cycles ({st['rounds']} x {st['cycles_per_round']}) | {cl['median_ms']} ms | {bl['median_ms']} ms | {fmt_ratio(r['cycle_median_ms'], se['cycle_median_ms'])} |
| same, p90 | {cl['p90_ms']} ms | {bl['p90_ms']} ms | {fmt_ratio(r['cycle_p90_ms'], se['cycle_p90_ms'])} |
| {st['threads']} clients, {st['rounds']} x {st['seconds_per_round']:g} s: create, start, wait, attach logs (checked `ok`), delete of `echo ok` | {ct['cycles_per_s']} cycles/s ({ct['cycles']} cycles) | {bt['cycles_per_s']} cycles/s ({bt['cycles']} cycles) | {fmt_ratio(r['cycles_per_s_8_clients'], se['cycles_per_s_8_clients'])} |
"""


def update_readme_compare(res):
    cur, base = res["daemons"]["current"], res["daemons"]["baseline"]
    st, rr, m = res["settings"], res["round_ratios"], res["meta"]
    ok_lat = cur["latency"]["median_ms"] <= TARGETS["cycle_median_ms"]
    ok_thr = cur["throughput"]["cycles_per_s"] >= TARGETS["cycles_per_s_8_clients"]
    body = f"""`python3 -m bench.bench_runtime --baseline REF` (needs root): the current daemon against the
frozen binary of an earlier commit, built by that commit's own `build.sh` in a temporary git worktree
(cached in `bench/results/baselines/`). Both daemons run at once, each on its own temporary root and
127.0.0.1 port with the same busybox image, and take turns: {st['rounds']} rounds, each of
{st['cycles_per_round']} latency cycles per daemon, alternating between the daemons cycle by cycle (after
{st['warmup_per_round']} uncounted warm-up cycles each), then {st['seconds_per_round']:g} s of throughput for one
daemon and then for the other; the order flips every cycle and every round. Raw figures:
`bench/results/runtime.json`. Without `--baseline` it measures one daemon against the dockerd anchors.

{compare_table(res)}
Ratio is current / baseline: above 1 means slower for the times, below 1 means slower for cycles/s;
± is the standard error of the mean of the per-round ratios. It understates the noise when the
machine's load comes in bursts: {NOISE_NOTE} Per-round ratios: median {', '.join(fmt_ratio(x) for x in rr['cycle_median_ms'])};
cycles/s {', '.join(fmt_ratio(x) for x in rr['cycles_per_s_8_clients'])}.
Targets for the current daemon (median ≤ {TARGETS['cycle_median_ms']:g} ms, ≥ {TARGETS['cycles_per_s_8_clients']:g} cycles/s): {'met' if ok_lat and ok_thr else 'not met'}
(dockerd 20.10 anchors: {ANCHORS['cycle_median_ms']:g} ms, {ANCHORS['cycles_per_s_8_clients']:g} cycles/s).

Current: {cur['label']}; baseline: {base['label']}.
Run {res['when']} on {m['machine']} ({m['cpus']} CPUs): `{' '.join(res['argv'])}`.
"""
    readme.update_section(SECTION_TITLE, body)


# -----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", help="the current daemon's binary (default: dist/pyd of this checkout "
                                     "if it exists, else PYD_CMD, else python3 pyd.py)")
    ap.add_argument("--baseline", metavar="REF", help="also measure the frozen binary of this commit")
    ap.add_argument("--rounds", type=int, default=COMPARE["rounds"], help="with --baseline: rounds per daemon")
    ap.add_argument("--cycles", type=int, help=f"latency cycles (default {SINGLE['cycles']}; "
                                               f"with --baseline {COMPARE['cycles']} per round)")
    ap.add_argument("--seconds", type=float, help=f"throughput seconds (default {SINGLE['seconds']:g}; "
                                                  f"with --baseline {COMPARE['seconds']:g} per round)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results or README")
    args = ap.parse_args()
    for name in ("rounds", "cycles", "threads"):
        v = getattr(args, name)
        if v is not None and not 1 <= v <= 100000:
            ap.error(f"--{name} out of range")
    if args.seconds is not None and not 0 < args.seconds <= 3600:
        ap.error("--seconds out of range")
    if os.geteuid() != 0:
        sys.exit("bench_runtime needs root (namespaces, mounts, cgroups)")

    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="pyd-bench-runtime-bin-")
    try:
        cur = current_subject(args.binary, tmp)
        if args.baseline:
            try:
                base = baseline_subject(args.baseline)
            except baseline.BaselineError as e:
                sys.exit(f"bench_runtime: baseline: {e}")
        image_tar = busybox_rootfs_tar()
        if args.baseline:
            res = run_compare(args, cur, base, image_tar)
        else:
            res = run_single(args, cur, image_tar)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["total_wall_s"] = round(time.monotonic() - t0, 1)

    if not args.no_write:
        write_results(res)
        (update_readme_compare if args.baseline else update_readme_single)(res)
    if args.baseline:
        print()
        print(f"current:  {res['daemons']['current']['label']}")
        print(f"baseline: {res['daemons']['baseline']['label']}")
        print(compare_table(res), end="")
        rr = res["round_ratios"]
        print(f"per-round ratios: median {rr['cycle_median_ms']}, cycles/s {rr['cycles_per_s_8_clients']}")
        print(f"ratio = current / baseline (± standard error over rounds); took {res['total_wall_s']:g} s"
              + ("" if args.no_write else f"; wrote {os.path.relpath(RESULTS, TOP)} and bench/README.md"))
    else:
        print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
