#!/usr/bin/env python3
"""Foundation benchmark: the frozen binary's size, its start-to-first-ping
time, its idle RSS, and GET /version requests per second with 16 keep-alive
connections (wrk, from Debian). Each figure is the median of repeated runs.

    python3 -m bench.bench_foundation [--binary dist/pyd] [--runs 10]

Writes bench/results/foundation.json and the "## Foundation" section of
bench/README.md. Traffic goes to 127.0.0.1 only.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
from bench.readme import update_section

ANCHORS = {"first_ping_s": 1.6, "rss_mb": 142, "binary_mb": 143, "version_rps": 419}
TARGETS = {"first_ping_s": 0.3, "rss_mb": 30, "binary_mb": 15, "version_rps": 3000}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def tree_rss_kb(pid):
    """RSS of a process and its children (the one-file bootloader runs the app as a child)."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                m = re.search(r"VmRSS:\s+(\d+)", f.read())
                total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total


def start(binary, root):
    port = free_port()
    argv = [binary, "-H", f"tcp://127.0.0.1:{port}", "-H", f"unix://{root}/pyd.sock",
            "-g", root, "-p", f"{root}/pyd.pid"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = t0 + 30
    while not ping(port):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("daemon did not start")
        time.sleep(0.002)
    return proc, port, time.monotonic() - t0


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(os.path.dirname(HERE), "dist", "pyd"))
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    size_mb = os.path.getsize(args.binary) / 1e6
    pings, rss = [], []
    with tempfile.TemporaryDirectory(prefix="pyd-bench-") as tmp:
        for i in range(args.runs):
            root = os.path.join(tmp, f"r{i}")
            proc, port, t = start(args.binary, root)
            pings.append(t)
            time.sleep(1.0)  # idle
            rss.append(tree_rss_kb(proc.pid) / 1024)
            stop(proc)
        proc, port, _ = start(args.binary, os.path.join(tmp, "wrk"))
        rps = []
        for _ in range(3):
            out = subprocess.run(["wrk", "-t2", "-c16", "-d5s", f"http://127.0.0.1:{port}/version"],
                                 capture_output=True, text=True, timeout=60).stdout
            rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))
        stop(proc)
    result = {"binary_mb": round(size_mb, 1), "first_ping_s": round(statistics.median(pings), 3),
              "rss_mb": round(statistics.median(rss), 1), "version_rps": round(statistics.median(rps)),
              "runs": args.runs, "date": time.strftime("%Y-%m-%d"), "kernel": os.uname().release}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "foundation.json"), "w") as f:
        json.dump(result, f, indent=1)
    rows = [("binary size", f"{result['binary_mb']} MB", "143 MB", "≤ 15 MB"),
            ("start to first ping", f"{result['first_ping_s']} s", "1.6 s", "≤ 0.3 s"),
            ("idle RSS (all pyd processes)", f"{result['rss_mb']} MB", "142 MB (dockerd + containerd)", "≤ 30 MB"),
            ("GET /version, 16 connections", f"{result['version_rps']} req/s", "419 req/s", "≥ 3,000 req/s")]
    text = ("`python3 -m bench.bench_foundation` (root; needs `dist/pyd` and wrk). Median of "
            f"{args.runs} starts for ping and RSS (RSS read after 1 s idle), of 3 × 5 s wrk runs for req/s.\n\n"
            "| figure | pyd | dockerd 20.10 | target |\n| --- | --- | --- | --- |\n"
            + "".join(f"| {a} | {b} | {c} | {d} |\n" for a, b, c, d in rows)
            + f"\nMeasured {result['date']} on Linux {result['kernel']} ({os.cpu_count()} CPUs).\n")
    update_section("Foundation", text)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
