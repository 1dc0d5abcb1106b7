#!/usr/bin/env python3
"""Benchmark: GET /containers/(id)/export of a container holding a large file,
and the daemon's memory while it streams.

Starts a private pyd (tests/integration/pydtest.py; PYD_CMD selects the daemon
command, default: this checkout's pyd.py under the running Python), imports the
busybox test image, runs `dd if=/dev/urandom of=/big bs=1M count=N` in a
container, then exports that (stopped) container R times. The client streams
the response through http.client in reads of at most 1 MiB and parses it with
tarfile's stream mode, so it never holds the archive. A sampler thread reads
VmRSS of the daemon from /proc/<pid>/status every 10 ms during each export.

    python3 -m bench.bench_export [--runs 3] [--size-mb 200] [--no-readme]

Prints the figures and writes the "## Export" section of bench/README.md.
Needs root (like the daemon). Only 127.0.0.1 is used.
"""

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

from tests.pydtest import CountingReader, Daemon, busybox_rootfs_tar, daemon_cmd, vm_rss
from bench.readme import run_meta, update_section

MiB = 1024 * 1024
MB = 1000 * 1000
SECTION = "## Export"


def export_once(port, pid, cid, interval=0.01):
    """One streamed export. Returns a dict of figures."""
    baseline = vm_rss(pid)
    peak = [baseline]
    samples = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], vm_rss(pid))
            samples[0] += 1
            time.sleep(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    members = {}
    try:
        t0 = time.perf_counter()
        conn.request("GET", f"/containers/{cid}/export")
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"export: HTTP {resp.status}: {resp.read(500)!r}")
        src = CountingReader(resp)
        with tarfile.open(fileobj=src, mode="r|") as tf:
            for m in tf:
                members[m.name.lstrip("./")] = m.size
        while src.read(MiB):
            pass
        elapsed = time.perf_counter() - t0
    finally:
        done.set()
        t.join()
        conn.close()
    peak[0] = max(peak[0], vm_rss(pid))
    return {"seconds": elapsed, "bytes": src.count, "members": len(members),
            "big_size": members.get("big"), "rss_baseline": baseline, "rss_peak": peak[0],
            "rss_growth": peak[0] - baseline, "samples": samples[0]}


def make_container(api, size_mb):
    r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_rootfs_tar(),
                 headers={"Content-Type": "application/x-tar"})
    if r.status != 200 or b'"error"' in r.body:
        raise RuntimeError(f"import busybox: {r}")
    t0 = time.perf_counter()
    cid = api.create(["dd", "if=/dev/urandom", "of=/big", "bs=1M", f"count={size_mb}"])
    api.start(cid)
    code = api.wait(cid, timeout=600)
    if code != 0:
        raise RuntimeError(f"dd exited with {code}: {api.logs(cid)!r}")
    return cid, time.perf_counter() - t0


def update_readme(runs, meta):
    growth_max = max(r["rss_growth"] for r in runs)
    secs = statistics.median(r["seconds"] for r in runs)
    total = runs[0]["bytes"]
    rows = ["| run | tar | time | MB/s | daemon VmRSS before | peak | growth |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(runs, 1):
        rows.append(f"| {i} | {r['bytes'] / MB:.0f} MB | {r['seconds']:.2f} s | {r['bytes'] / MB / r['seconds']:.0f} "
                    f"| {r['rss_baseline'] / MiB:.1f} MiB | {r['rss_peak'] / MiB:.1f} MiB "
                    f"| {r['rss_growth'] / MiB:.1f} MiB |")
    text = "\n".join([
        "`python3 -m bench.bench_export` (root): a private pyd, the busybox test image, a container that ran "
        f"`dd if=/dev/urandom of=/big bs=1M count={meta['size_mb']}`, then `GET /containers/<id>/export` of the "
        "stopped container, streamed by the client in reads of at most 1 MiB through tarfile's stream "
        "mode (nothing buffered on either side). Daemon memory is VmRSS from /proc/<pid>/status, sampled "
        "every 10 ms during each export; growth = peak - value just before the request. "
        "tests/integration/test_filesystems.py::test_export_large_file_bounded_daemon_memory asserts "
        "growth < 30 MiB.",
        "",
        *rows,
        "",
        f"Median {secs:.2f} s for {total / MB:.0f} MB ({total / MB / secs:.0f} MB/s); "
        f"largest daemon VmRSS growth {growth_max / MiB:.1f} MiB over {len(runs)} runs.",
        "",
        f"Measured {meta['date']} on {meta['machine']} ({meta['cpus']} CPUs), daemon `{meta['daemon']}`.",
    ])
    update_section(SECTION[3:], text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=200, help="size of /big in MiB")
    ap.add_argument("--no-readme", action="store_true", help="do not touch bench/README.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_export: run as root (the daemon needs it)", file=sys.stderr)
        return 2

    workdir = tempfile.mkdtemp(prefix="pyd-bench-export-")
    d = Daemon(os.path.join(workdir, "root"))
    runs = []
    try:
        d.start()
        cid, made = make_container(d.api, args.size_mb)
        print(f"container {cid[:12]} wrote {args.size_mb} MiB in {made:.1f}s", flush=True)
        for i in range(args.runs):
            r = export_once(d.port, d.server_pid(), cid)
            if r["big_size"] != args.size_mb * MiB:
                raise RuntimeError(f"/big in the export has size {r['big_size']}")
            runs.append(r)
            print(f"run {i + 1}/{args.runs}: {r['bytes'] / MB:.0f} MB in {r['seconds']:.2f}s "
                  f"({r['bytes'] / MB / r['seconds']:.0f} MB/s); daemon VmRSS {r['rss_baseline'] / MiB:.1f} "
                  f"-> peak {r['rss_peak'] / MiB:.1f} MiB (growth {r['rss_growth'] / MiB:.1f} MiB, "
                  f"{r['samples']} samples)", flush=True)
        d.api.delete(f"/containers/{cid}?v=1")
    finally:
        rc = d.stop()
        if rc not in (0, None):
            print(f"daemon exited with {rc}:\n{d.log()}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)

    meta = run_meta(daemon_cmd())
    meta.update({
        "size_mb": args.size_mb,
    })
    growth = max(r["rss_growth"] for r in runs)
    print(f"\nlargest daemon VmRSS growth: {growth / MiB:.1f} MiB "
          f"({'under' if growth < 30 * MiB else 'OVER'} the 30 MiB bound)")
    if not args.no_readme:
        update_readme(runs, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
