#!/usr/bin/env python3
"""The modern surface through real clients: pyd against dockerd 20.10 in one run.

Measures, for the frozen pyd (--binary PATH, else this checkout's dist/pyd,
else PYD_CMD, else `python3 pyd.py`) and, when docker.io is installed, for a
private dockerd 20.10 (tests/pydtest/dockerd.py) running at the same time:

  1. `docker run --pull never --rm busybox true` through the real docker CLI
     28 (/usr/local/bin/docker -H tcp://127.0.0.1:PORT), wall time of the
     whole command; median and p90 in ms (target <= 60 ms; dockerd took 319 ms);
  2. `docker exec <c> true` into a running busybox, the same way;
  3. `GET /v1.41/containers/json?all=1` with 50 containers, in req/s: wrk
     (-t2 -c8) if installed, else 4 Python threads over keep-alive
     connections; either way bounded in time (target >= 3000 req/s; dockerd
     307 req/s, pyd 1,209 req/s before the modern surface).

Both daemons get the busybox test image. The rounds alternate between the
daemons, the order flipping each round, so that drift in machine load hits
both alike. A measure that fails on a daemon (a missing feature) is recorded
as its error, not a crash. Every loop is bounded in count and time; all
traffic goes to 127.0.0.1. Nothing pulls: the CLI gets --pull never.

Writes bench/results/modern.json and the "## Modern surface" section of
bench/README.md. Needs root.

Usage: sudo python3 -m bench.bench_modern [--binary PATH] [--rounds R] [--runs N] [--seconds S] [--no-dockerd]
"""

import argparse
import http.client
import os
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
from tests.pydtest import dockerd as dd

from bench import readme

DOCKER = "/usr/local/bin/docker"
RESULTS = os.path.join(HERE, "results", "modern.json")
SECTION_TITLE = "Modern surface"
LIST_PATH = "/v1.41/containers/json?all=1"
CONTAINERS = 50
ANCHORS = {"run_rm_ms": 319.0, "list_req_s": 307.0}   # dockerd 20.10 here, issue 10
TARGETS = {"run_rm_ms": 60.0, "list_req_s": 3000.0}   # <= and >=
CLI_TIMEOUT = 60
MAX_REQUESTS = 200_000  # per list run, a count bound beside the time bound


def percentile(values, p):
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(times):
    return {"n": len(times), "median_ms": round(statistics.median(times), 1),
            "p90_ms": round(percentile(times, 90), 1), "min_ms": round(min(times), 1)}


class Target:
    """One daemon under measure: its name, port, and the CLI pointed at it."""

    def __init__(self, label, daemon, config_dir):
        self.label, self.daemon, self.port = label, daemon, daemon.port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(DOCKER_CONFIG=config_dir, DOCKER_CLI_HINTS="false")
        self.run_ms, self.exec_ms, self.list_rates, self.list_distinct_rates = [], [], [], []
        self.errors = {}
        self.exec_name = None

    def docker(self, *args):
        """Run the CLI once; its wall time in ms. A non-zero exit is an error."""
        t0 = time.perf_counter()
        p = subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{self.port}", *args], capture_output=True,
                           text=True, timeout=CLI_TIMEOUT, env=self.env, stdin=subprocess.DEVNULL)
        ms = (time.perf_counter() - t0) * 1000.0
        if p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()[:300]}")
        return ms, p.stdout


def guarded(target, key, fn):
    """Run one measure; a failure is recorded once and the measure is not tried again."""
    if key in target.errors:
        return
    try:
        fn()
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as e:
        target.errors[key] = str(e)[:500]


def measure_run(t, runs, warmup):
    for i in range(warmup + runs):
        ms, _ = t.docker("run", "--pull", "never", "--rm", "busybox", "true")
        if i >= warmup:
            t.run_ms.append(ms)


def setup_exec(t):
    t.exec_name = f"bench-exec-{os.getpid()}"
    t.docker("run", "--pull", "never", "-d", "--name", t.exec_name, "busybox", "sleep", "3600")


def measure_exec(t, runs, warmup):
    if t.exec_name is None:
        raise RuntimeError("no container to exec into")
    for i in range(warmup + runs):
        ms, _ = t.docker("exec", t.exec_name, "true")
        if i >= warmup:
            t.exec_ms.append(ms)


def setup_list(t):
    """Exactly CONTAINERS containers: the exec container is removed, then created ones added."""
    if t.exec_name:
        t.docker("rm", "-f", t.exec_name)
        t.exec_name = None
    api = t.daemon.api
    for i in range(CONTAINERS):
        r = api.post(f"/v1.41/containers/create?name=bench-list-{i}", {"Image": "busybox", "Cmd": ["true"]})
        if r.status != 201:
            raise RuntimeError(f"create: {r}")
    r = api.get(LIST_PATH)
    if r.status != 200 or len(r.json()) != CONTAINERS:
        raise RuntimeError(f"list: {r.status}, {len(r.body)} bytes, wanted {CONTAINERS} containers")


def wrk_rate(port, seconds, path=LIST_PATH, connections=8):
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError("wrk: non-2xx answers:\n" + out)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError("wrk printed no rate:\n" + out)
    return float(m.group(1))


def python_rate(port, seconds, threads=4, distinct=False):
    """Keep-alive GETs from a few threads for `seconds` (and at most MAX_REQUESTS); req/s.
    With `distinct`, every request carries its own (ignored) query parameter, so
    that pyd's list memo (pyd/api/memo.py) cannot answer it: the cost of a
    projection of all the containers, every time."""
    counts, errors = [0] * threads, []
    stop_at = time.monotonic() + seconds

    def worker(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while time.monotonic() < stop_at and sum(counts) < MAX_REQUESTS:
                c.request("GET", LIST_PATH + (f"&n={i}-{counts[i]}" if distinct else ""))
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(r.status)
                    return
                counts[i] += 1
        except OSError as e:
            errors.append(repr(e))
        finally:
            c.close()

    ts = [threading.Thread(target=worker, args=(i,), name=f"bench-list-{i}") for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 60)
    if errors:
        raise RuntimeError(f"list: {errors[:3]}")
    return sum(counts) / (time.monotonic() - t0)


def measure_list(t, seconds):
    rate = wrk_rate(t.port, seconds) if shutil.which("wrk") else python_rate(t.port, seconds)
    t.list_rates.append(rate)
    t.list_distinct_rates.append(python_rate(t.port, max(1, seconds // 2), distinct=True))


def pyd_command(binary, tmpdir):
    """The pyd command measured, with a private copy of a binary (a rebuild mid-run changes nothing)."""
    path = binary or (os.path.join(TOP, "dist", "pyd") if os.access(os.path.join(TOP, "dist", "pyd"), os.X_OK) else None)
    if path:
        copy = os.path.join(tmpdir, "pyd")
        shutil.copyfile(path, copy)
        os.chmod(copy, 0o755)
        return [copy], os.path.relpath(path, TOP) if path.startswith(TOP) else path
    cmd = daemon_cmd()
    return cmd, " ".join(os.path.basename(c) for c in cmd)


def report(targets, label_of_pyd):
    res = {"meta": readme.run_meta([label_of_pyd]), "argv": sys.argv[1:], "anchors": ANCHORS, "targets": TARGETS,
           "daemons": {}}
    for t in targets:
        res["daemons"][t.label] = {
            "run_rm": summary(t.run_ms) if t.run_ms else None,
            "exec": summary(t.exec_ms) if t.exec_ms else None,
            "list_req_s": round(statistics.median(t.list_rates)) if t.list_rates else None,
            "list_runs": [round(r) for r in t.list_rates],
            "list_distinct_req_s": round(statistics.median(t.list_distinct_rates)) if t.list_distinct_rates else None,
            "errors": t.errors,
        }
    return res


def cell(d, key, fmt):
    if d[key] is None:
        err = next((v for k, v in d["errors"].items() if k.startswith(key.split("_")[0])), "not measured")
        return f"failed ({err.splitlines()[0][:80]})"
    return fmt(d[key])


def section(res, args):
    names = list(res["daemons"])
    head = "| measure | " + " | ".join(names) + " | target |\n|---|" + "---|" * len(names) + "---|\n"
    rows = [
        ("`docker run --rm busybox true`, CLI 28, median (p90)", "run_rm",
         lambda v: f"{v['median_ms']} ms ({v['p90_ms']})", "≤ 60 ms"),
        ("`docker exec <c> true`, median (p90)", "exec", lambda v: f"{v['median_ms']} ms ({v['p90_ms']})", ""),
        (f"`GET /containers/json?all=1`, {CONTAINERS} containers", "list_req_s", lambda v: f"{v} req/s", "≥ 3,000 req/s"),
        ("the same, each request distinct (no memo: 4 Python threads)", "list_distinct_req_s",
         lambda v: f"{v} req/s", ""),
    ]
    body = head + "".join(
        f"| {title} | " + " | ".join(cell(res["daemons"][n], key, fmt) for n in names) + f" | {target} |\n"
        for title, key, fmt, target in rows)
    tool = "wrk -t2 -c8" if shutil.which("wrk") else "4 Python threads, keep-alive"
    m = res["meta"]
    return (f"`python3 -m bench.bench_modern` (root): {args.rounds} rounds; in each, per daemon, "
            f"{args.runs} timed CLI runs (after 2 uncounted), {args.runs} execs, and {args.seconds} s of "
            f"{tool} on the list; the daemons alternate and the order flips every round. Times are the "
            f"whole CLI command (process start included). Raw figures: `bench/results/modern.json`.\n\n"
            + body + f"\nMeasured {m['date']} on {m['machine']} ({m['cpus']} CPUs), pyd `{m['daemon']}`.\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10, help="timed CLI runs per measure, round and daemon")
    ap.add_argument("--seconds", type=int, default=5, help="list load per round and daemon")
    ap.add_argument("--no-dockerd", action="store_true")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_modern needs root")
    if not os.access(DOCKER, os.X_OK):
        sys.exit(f"{DOCKER} (docker CLI 28) is needed")
    tar = busybox_rootfs_tar()
    with tempfile.TemporaryDirectory(prefix="pyd-bench-modern-") as tmp:
        cmd, label = pyd_command(args.binary, tmp)
        daemons = [("pyd", Daemon(os.path.join(tmp, "pyd-root"), cmd=cmd))]
        if not args.no_dockerd and dd.installed():
            daemons.append(("dockerd 20.10", dd.Dockerd(os.path.join(tmp, "dockerd"))))
        targets = []
        try:
            for name, d in daemons:
                d.start()
                dd.load_busybox(d.api, tar)
                os.makedirs(os.path.join(tmp, "cfg-" + name[:3]), exist_ok=True)
                targets.append(Target(name, d, os.path.join(tmp, "cfg-" + name[:3])))
            for t in targets:
                guarded(t, "exec-setup", lambda t=t: setup_exec(t))
            for r in range(args.rounds):
                order = targets if r % 2 == 0 else targets[::-1]
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
                for t in order:
                    guarded(t, "run_rm", lambda t=t: measure_run(t, args.runs, 2 if r == 0 else 0))
                for t in order:
                    guarded(t, "exec", lambda t=t: measure_exec(t, args.runs, 2 if r == 0 else 0))
            for t in targets:
                guarded(t, "list-setup", lambda t=t: setup_list(t))
                if "list-setup" in t.errors:
                    t.errors["list_req_s"] = t.errors["list-setup"]
            for r in range(args.rounds):
                for t in (targets if r % 2 == 0 else targets[::-1]):
                    guarded(t, "list_req_s", lambda t=t: measure_list(t, args.seconds))
        finally:
            for _, d in daemons:
                d.stop()
    res = report(targets, label)
    readme.write_results(RESULTS, res)
    text = section(res, args)
    print(text)
    if not args.no_readme:
        readme.update_section(SECTION_TITLE, text)


if __name__ == "__main__":
    main()
