#!/usr/bin/env python3
"""Published-port throughput: one 1 GB transfer through a published port on
127.0.0.1, against a direct connection to the container's address, for
pyd and, when docker.io is installed, for a private dockerd 20.10 with its
bridge and docker-proxy (tests/pydtest/dockerd.py, networking=True).

Each daemon runs one busybox container whose command is a sink: bench/sink.c,
built statically here and bind-mounted in (busybox nc reads 4 KiB at a time
and would be what is measured), reading 1 MiB at a time. The host sends 1 GB
(1 MiB writes) and half-closes; the transfer ends when the sink's side
closes, so every byte crossed. MB/s = 10^6 bytes per second of wall time
from connect to that close. Paths, alternating every round:
  - pyd, direct: the container's address on pyd's bridge (pyd gave it);
  - pyd, published: 127.0.0.1:<HostPort> (the kernel's DNAT where iptables is
    there, docs/proxy.md; else pyd's userland proxy);
  - dockerd, direct and published (docker-proxy) the same way.
Target (issue 11): the published port carries >= 70% of the direct
throughput, and at least as much as dockerd's docker-proxy.

All traffic goes to 127.0.0.1 or to addresses the daemons gave their
containers; every loop is bounded. Writes bench/results/ports.json and the
"## Published ports" section of bench/README.md. Needs root.

Usage: sudo python3 -m bench.bench_ports [--binary PATH] [--rounds R] [--mb N] [--no-dockerd]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from tests.pydtest import Daemon, busybox_rootfs_tar
from tests.pydtest import dockerd as dd

from bench import readme
from bench.bench_modern import pyd_command

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "ports.json")
SECTION_TITLE = "Published ports"
SINK_PORT = 5000
CHUNK = 1 << 20
CONNECT_TRIES = 200   # the sink restarts nc after each connection: retry while it is not listening


def build_sink(tmp):
    out = os.path.join(tmp, "sink")
    subprocess.run(["gcc", "-O2", "-static", "-o", out, os.path.join(HERE, "sink.c")], check=True, timeout=120)
    return out


def start_sink(api, sink):
    body = {"Image": "busybox", "Cmd": ["/sink", str(SINK_PORT)],
            "ExposedPorts": {f"{SINK_PORT}/tcp": {}},
            "HostConfig": {"Binds": [f"{sink}:/sink:ro"],
                           "PortBindings": {f"{SINK_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}}}
    r = api.post("/v1.41/containers/create", json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    if r.status != 201:
        raise RuntimeError(f"create: {r}")
    cid = r.json()["Id"]
    r = api.post(f"/v1.41/containers/{cid}/start", b"")
    if r.status != 204:
        raise RuntimeError(f"start: {r}")
    ns = api.get(f"/v1.41/containers/{cid}/json").json()["NetworkSettings"]
    ip = next(n["IPAddress"] for n in ns["Networks"].values() if n["IPAddress"])
    port = int(ns["Ports"][f"{SINK_PORT}/tcp"][0]["HostPort"])
    return cid, (ip, SINK_PORT), ("127.0.0.1", port)


def transfer(addr, nbytes):
    """Seconds to push `nbytes` to the sink at `addr` and see it close."""
    buf = memoryview(bytearray(CHUNK))
    for attempt in range(CONNECT_TRIES):
        try:
            s = socket.create_connection(addr, timeout=10)
        except ConnectionRefusedError:  # nc is restarting after the previous connection
            time.sleep(0.02)
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            t0 = time.perf_counter()
            sent = 0
            try:
                while sent < nbytes:
                    n = min(CHUNK, nbytes - sent)
                    s.sendall(buf[:n])
                    sent += n
                s.shutdown(socket.SHUT_WR)
                s.settimeout(60)
                while s.recv(65536):
                    pass
            except (BrokenPipeError, ConnectionResetError):
                if sent < CHUNK * 4:  # the proxy reached no listener yet (nc restarting): again
                    time.sleep(0.02)
                    continue
                raise
            return time.perf_counter() - t0
        finally:
            s.close()
    raise RuntimeError(f"no sink answered at {addr[0]}:{addr[1]} in {CONNECT_TRIES} tries")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mb", type=int, default=1000, help="MB per transfer (default 1000: 1 GB)")
    ap.add_argument("--no-dockerd", action="store_true")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_ports needs root")
    nbytes = args.mb * 1_000_000
    tar = busybox_rootfs_tar()
    results, errors = {}, {}
    with tempfile.TemporaryDirectory(prefix="pyd-bench-ports-") as tmp:
        cmd, label = pyd_command(args.binary, tmp)
        sink = build_sink(tmp)
        daemons = [("pyd", Daemon(os.path.join(tmp, "pyd-root"), cmd=cmd))]
        if not args.no_dockerd and dd.installed() and dd.system_socket_free():
            daemons.append(("dockerd 20.10", dd.Dockerd(os.path.join(tmp, "dockerd"), networking=True)))
        paths = []
        try:
            for name, d in daemons:
                try:
                    d.start()
                    dd.load_busybox(d.api, tar)
                    _, direct, published = start_sink(d.api, sink)
                except Exception as e:  # a daemon that cannot do it is reported, not a crash
                    errors[name] = str(e)[:300]
                    continue
                paths += [(f"{name}, direct", direct), (f"{name}, published", published)]
            transfer(paths[0][1], CHUNK) if paths else None  # warm up
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
                for key, addr in (paths if r % 2 == 0 else paths[::-1]):
                    secs = transfer(addr, nbytes)
                    results.setdefault(key, []).append(nbytes / secs / 1e6)
        finally:
            for _, d in daemons:
                d.stop()
    med = {k: round(statistics.median(v)) for k, v in results.items()}
    res = {"meta": readme.run_meta([label]), "argv": sys.argv[1:], "bytes": nbytes, "mb_s": med,
           "runs": {k: [round(x) for x in v] for k, v in results.items()}, "errors": errors}
    readme.write_results(RESULTS, res)
    text = section(res, args)
    print(text)
    if not args.no_readme:
        readme.update_section(SECTION_TITLE, text)


def section(res, args):
    med = res["mb_s"]
    rows = []
    for name in ("pyd", "dockerd 20.10"):
        d, p = med.get(f"{name}, direct"), med.get(f"{name}, published")
        if d is None:
            if name in res["errors"]:
                rows.append(f"| {name} | failed ({res['errors'][name][:80]}) | | |")
            continue
        rows.append(f"| {name} | {d:,} MB/s | {p:,} MB/s | {100 * p / d:.0f}% |")
    ratio = ""
    if "pyd, published" in med and "dockerd 20.10, published" in med:
        ratio = (f"\npyd's published port against docker-proxy: "
                 f"{med['pyd, published'] / med['dockerd 20.10, published']:.1f}x.\n")
    m = res["meta"]
    return (f"`python3 -m bench.bench_ports` (root): {args.rounds} rounds of one {args.mb:,} MB transfer per path "
            "(1 MiB writes into a static C sink reading 1 MiB at a time, timed until it closes), paths alternating; "
            "medians. Raw figures: `bench/results/ports.json`. Target: published ≥ 70% of direct, and ≥ "
            "dockerd's docker-proxy.\n\n"
            "| daemon | direct to the container | published on 127.0.0.1 | published / direct |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n" + ratio
            + f"\nMeasured {m['date']} on {m['machine']} ({m['cpus']} CPUs), pyd `{m['daemon']}`.\n")


if __name__ == "__main__":
    main()
