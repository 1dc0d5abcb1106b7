#!/usr/bin/env python3
"""Container runtime benchmark: the cost of a whole `docker run` cycle over the API.

Starts a private pyd (PYD_CMD, or `python3 pyd.py` from this checkout) on a
temporary root, imports the busybox test image, then measures:

  1. latency: 100 sequential cycles of create, start, wait, delete of `true`
     over one keep-alive HTTP connection (http.client); median and p90 in ms;
  2. throughput: eight client threads for 20 s doing create, start, wait,
     attach?logs=1&stream=0&stdout=1 (output checked == "ok\\n") and delete
     of `echo ok`; cycles per second.

Writes bench/results/runtime.json and the "## Container runtime" section of
bench/README.md. Needs root (namespaces, mounts, cgroups). Only 127.0.0.1.

Usage: sudo python3 -m bench.bench_runtime [--cycles N] [--seconds S] [--threads T]
"""

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

from tests.pydtest import Daemon, busybox_rootfs_tar, daemon_cmd

from bench import readme  # one README section, under a lock

RESULTS = os.path.join(HERE, "results", "runtime.json")
SECTION_TITLE = "Container runtime"

ANCHORS = {"cycle_median_ms": 296.0, "cycles_per_s_8_clients": 6.7}   # dockerd, same cycles
TARGETS = {"cycle_median_ms": 30.0, "cycles_per_s_8_clients": 60.0}    # <= and >=


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


def bench_latency(port, n):
    ka = KeepAlive(port)
    try:
        for _ in range(5):  # warm-up, not counted
            cid, code = cycle(ka, ["true"])
            delete(ka, cid)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            cid, code = cycle(ka, ["true"])
            delete(ka, cid)
            times.append((time.perf_counter() - t0) * 1000.0)
            if code != 0:
                raise RuntimeError(f"`true` exited with {code}")
    finally:
        ka.close()
    return {"cycles": n, "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(percentile(times, 90), 2), "min_ms": round(min(times), 2),
            "max_ms": round(max(times), 2)}


def bench_throughput(port, threads, seconds):
    stop_at = time.monotonic() + seconds
    counts = [0] * threads
    failures = []

    def worker(i):
        ka = KeepAlive(port)
        try:
            while time.monotonic() < stop_at and not failures:
                cid, code = cycle(ka, ["echo", "ok"])
                out = attach_logs(port, cid)
                delete(ka, cid)
                if code != 0 or out != b"ok\n":
                    raise RuntimeError(f"cycle gave exit {code} and output {out!r}")
                counts[i] += 1
        except Exception as e:  # reported below; the run is then invalid
            failures.append(f"client {i}: {e}")
        finally:
            ka.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(i,), name=f"client-{i}") for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 120)
    elapsed = time.monotonic() - t0
    if any(t.is_alive() for t in ts):
        failures.append("a client thread did not finish in time")
    if failures:
        raise RuntimeError("; ".join(failures[:5]))
    total = sum(counts)
    return {"clients": threads, "seconds": round(elapsed, 2), "cycles": total,
            "cycles_per_s": round(total / elapsed, 2)}


def update_readme(res):
    lat, thr = res["latency"], res["throughput"]
    ok_lat = lat["median_ms"] <= TARGETS["cycle_median_ms"]
    ok_thr = thr["cycles_per_s"] >= TARGETS["cycles_per_s_8_clients"]
    body = f"""`bench/bench_runtime.py` (needs root): a private pyd on a temporary root, the busybox
test image, every cycle over the HTTP API on 127.0.0.1. Raw figures: `bench/results/runtime.json`.

| measure | pyd | dockerd anchor | target | met |
|---|---|---|---|---|
| create+start+wait+delete of `true`, one keep-alive connection, {lat['cycles']} sequential cycles: median | {lat['median_ms']} ms | {ANCHORS['cycle_median_ms']:g} ms | ≤ {TARGETS['cycle_median_ms']:g} ms | {'yes' if ok_lat else 'no'} |
| same, p90 | {lat['p90_ms']} ms | | | |
| {thr['clients']} clients for {thr['seconds']:g} s: create, start, wait, attach logs (checked `ok`), delete of `echo ok` | {thr['cycles_per_s']} cycles/s ({thr['cycles']} cycles) | {ANCHORS['cycles_per_s_8_clients']:g} cycles/s | ≥ {TARGETS['cycles_per_s_8_clients']:g} cycles/s | {'yes' if ok_thr else 'no'} |

Run {res['when']} on {res['host']['cpus']} CPUs, kernel {res['host']['kernel']}, daemon `{res['daemon_cmd']}`.
5 warm-up cycles precede the latency run and are not counted.
"""
    readme.update_section(SECTION_TITLE, body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--no-write", action="store_true", help="print only; do not write results or README")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_runtime needs root (namespaces, mounts, cgroups)")

    root = tempfile.mkdtemp(prefix="pyd-bench-runtime-")
    d = Daemon(root)
    try:
        d.start()
        r = d.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_rootfs_tar(),
                       headers={"Content-Type": "application/x-tar"}, timeout=300)
        if r.status != 200 or b'"error"' in r.body:
            raise RuntimeError(f"importing busybox failed: {r}")
        print(f"latency: {args.cycles} sequential cycles ...", flush=True)
        lat = bench_latency(d.port, args.cycles)
        print(f"  median {lat['median_ms']} ms, p90 {lat['p90_ms']} ms", flush=True)
        print(f"throughput: {args.threads} clients for {args.seconds:g} s ...", flush=True)
        thr = bench_throughput(d.port, args.threads, args.seconds)
        print(f"  {thr['cycles_per_s']} cycles/s ({thr['cycles']} cycles)", flush=True)
    finally:
        rc = d.stop()
        shutil.rmtree(root, ignore_errors=True)
    if rc != 0:
        print(f"warning: daemon exited with {rc}", file=sys.stderr)

    res = {
        "benchmark": "runtime",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "daemon_cmd": " ".join("python3" if a == sys.executable else a for a in daemon_cmd()),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "latency": lat,
        "throughput": thr,
        "dockerd_anchor": ANCHORS,
        "target": TARGETS,
        "met": {"cycle_median_ms": lat["median_ms"] <= TARGETS["cycle_median_ms"],
                "cycles_per_s_8_clients": thr["cycles_per_s"] >= TARGETS["cycles_per_s_8_clients"]},
    }
    if not args.no_write:
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS + ".tmp", "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
        os.replace(RESULTS + ".tmp", RESULTS)
        update_readme(res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
