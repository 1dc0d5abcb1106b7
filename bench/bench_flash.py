#!/usr/bin/env python3
"""Write amplification (issue 15): bytes written to the data root's device
per container cycle, per pull and per idle hour, as an appliance's flash
sees them.

The data root is an ext4 filesystem of its own on a loop device over a
sparse file, so /sys/block/loopN/stat counts every sector written to it:
pyd's records, the container's files, the filesystem's journal. Each figure
is the counter's delta around the work, after syncfs, divided by the
number of repeats; the loop device's own page cache is bypassed (--direct-io),
so what is counted is what reached the file below.

  - cycle: create + start + wait + delete of `true` (busybox), CYCLES times;
  - pull: one image of PULL_MB MB (one layer of random bytes, so nothing
    compresses away) pulled from Debian's docker-registry on 127.0.0.1 and
    deleted again, PULLS times; the layer's bytes are the floor;
  - idle: the daemon with RUNNING containers that sleep, no client, for
    IDLE_S seconds, scaled to an hour;
  - logs: a container writing LOG_MB MB to stdout: what is kept is bounded
    by the log cap (the figure is the data root's growth, not the writes).

pyd is --binary PATH, else dist/pyd, else `python3 pyd.py` (bench_modern's
rule). Root; every loop is bounded; traffic only to 127.0.0.1 and unix
sockets. Writes bench/results/flash.json and the "## Flash writes" section
of bench/README.md.

Usage: sudo python3 -m bench.bench_flash [--binary PATH] [--cycles N] [--pulls N] [--pull-mb M] [--idle-s S] [--no-readme]
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

from tests.pydtest import Daemon, busybox_rootfs_tar
from tests.pydtest import dockerd as dd
from tests.pydtest import registry as reglib

from bench import readme
from bench.bench_modern import pyd_command

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "flash.json")
V = "/v1.41"


class LoopFs:
    """An ext4 filesystem on a loop device, mounted at `mnt`."""

    def __init__(self, work, size_mb=3072):
        self.image = os.path.join(work, "disk.img")
        self.mnt = os.path.join(work, "mnt")
        os.makedirs(self.mnt)
        with open(self.image, "wb") as f:
            f.truncate(size_mb << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", self.image], check=True)
        self.dev = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", self.image],
                                  capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["mount", self.dev, self.mnt], check=True)

    def written(self):
        """Bytes written to the device so far, everything cached written out first."""
        fd = os.open(self.mnt, os.O_RDONLY)
        try:
            os.fsync(fd)
            from pyd import native
            native.syncfs(self.mnt)
        finally:
            os.close(fd)
        with open(f"/sys/block/{os.path.basename(self.dev)}/stat") as f:
            return int(f.read().split()[6]) * 512

    def used(self):
        st = os.statvfs(self.mnt)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def close(self):
        subprocess.run(["umount", "-l", self.mnt], check=False)
        subprocess.run(["losetup", "-d", self.dev], check=False)


def random_layer_tar(mb, seed=7):
    import random
    rnd = random.Random(seed)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(mb):
            data = rnd.randbytes(1 << 20)
            ti = tarfile.TarInfo(f"data/f{i:04d}")
            ti.size, ti.mtime = len(data), 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def cycle(api):
    r = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["true"]})
    assert r.status == 201, r
    cid = r.json()["Id"]
    assert api.post(f"{V}/containers/{cid}/start").status == 204
    assert api.wait(cid) == 0
    assert api.delete(f"{V}/containers/{cid}").status == 204


def stream_ok(r):
    return r.status == 200 and b'"error"' not in r.body


class _DockerdOnDisk(dd.Dockerd):
    """A private dockerd whose data root is on the measured filesystem; its
    exec root (runtime state, tmpfs on a real host) stays off it."""

    def __init__(self, root, data_root):
        super().__init__(root)
        self.data_root = data_root

    def argv(self, driver):
        argv = super().argv(driver)
        argv[argv.index("--data-root") + 1] = self.data_root
        return argv


def measure(api, fs, reg, args, who):
    """The figures for one daemon whose data root is on `fs`."""
    res = {}
    dd.load_busybox(api, busybox_rootfs_tar())
    cycle(api)  # the first run makes what every later one reuses
    before = fs.written()
    for _ in range(args.cycles):
        cycle(api)
    res["cycle_bytes"] = (fs.written() - before) // args.cycles

    name = f"{reg.addr}/bench/flash-{who}"
    layer = random_layer_tar(args.pull_mb)
    r = api.post(f"/images/create?fromSrc=-&repo={name}&tag=latest", layer,
                 headers={"Content-Type": "application/x-tar"}, timeout=300)
    assert stream_ok(r), r
    r = api.post(f"{V}/images/{name}/push?tag=latest", headers={"X-Registry-Auth": "e30="}, timeout=300)
    assert stream_ok(r), r
    assert api.delete(f"/images/{name}:latest?force=1").status == 200
    pulls = []
    for _ in range(args.pulls):
        before = fs.written()
        r = api.post(f"{V}/images/create?fromImage={name}&tag=latest", timeout=300)
        assert stream_ok(r), r
        pulls.append(fs.written() - before)
        assert api.delete(f"/images/{name}:latest?force=1").status == 200
    res["pull_bytes"] = sorted(pulls)[len(pulls) // 2]
    res["pull_layer_bytes"] = len(layer)

    running = []
    for _ in range(args.running):
        r = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["sleep", "3600"]})
        running.append(r.json()["Id"])
        assert api.post(f"{V}/containers/{running[-1]}/start").status == 204
    before = fs.written()
    time.sleep(args.idle_s)
    res["idle_bytes_per_hour"] = (fs.written() - before) * 3600 // args.idle_s
    for cid in running:
        api.delete(f"{V}/containers/{cid}?force=1", timeout=60)

    used = fs.used()
    r = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": [
        "sh", "-c", f"head -c {args.log_mb << 20} /dev/urandom | base64"]})
    cid = r.json()["Id"]
    before = fs.written()
    assert api.post(f"{V}/containers/{cid}/start").status == 204
    api.wait(cid, timeout=600)
    res["log_written_bytes"] = fs.written() - before
    res["log_kept_bytes"] = fs.used() - used
    api.delete(f"{V}/containers/{cid}?force=1", timeout=60)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary")
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--pulls", type=int, default=3)
    ap.add_argument("--pull-mb", type=int, default=50)
    ap.add_argument("--idle-s", type=int, default=120)
    ap.add_argument("--running", type=int, default=5)
    ap.add_argument("--log-mb", type=int, default=64)
    ap.add_argument("--no-dockerd", action="store_true")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="pyd-bench-flash-")
    cmd, label = pyd_command(args.binary, work)
    if os.path.isabs(label):
        label = os.path.basename(label)  # a daemon is named by what it is, not by a path of this machine
    res = {"meta": readme.run_meta([label]), "argv": sys.argv[1:], "daemons": {}}
    reg = reglib.Registry(os.path.join(work, "registry"))
    try:
        reg.start()
        plan = [("pyd", label)]
        if not args.no_dockerd and dd.installed():
            plan.append(("dockerd", dd.version()))
        for who, what in plan:
            fs = LoopFs(os.path.join(work, "disk-" + who))
            d = (Daemon(os.path.join(fs.mnt, "root"), cmd=cmd) if who == "pyd"
                 else _DockerdOnDisk(os.path.join(work, "disk-" + who, "run"), os.path.join(fs.mnt, "root")))
            try:
                d.start()
                res["daemons"][who] = dict(measure(d.api, fs, reg, args, who), daemon=what)
            finally:
                d.stop()
                fs.close()
    finally:
        reg.stop()
        subprocess.run(["rm", "-rf", work], check=False)

    res["log_output_bytes"] = (args.log_mb << 20) * 4 // 3
    readme.write_results(RESULTS, res)
    print(json.dumps(res, indent=1))
    if not args.no_readme:
        readme.update_section("Flash writes", report(res, args, label))


def report(res, args, label):
    mb = lambda n: f"{n / 1e6:.2f} MB"  # noqa: E731
    names = list(res["daemons"])
    rows = [
        ("container cycle (create, start, wait, delete of `true`), mean of %d" % args.cycles,
         lambda r: f"{r['cycle_bytes'] / 1e3:.0f} kB", "cycle_bytes"),
        (f"pull of one {args.pull_mb} MiB layer (median of {args.pulls})",
         lambda r: f"{mb(r['pull_bytes'])} ({r['pull_bytes'] / r['pull_layer_bytes']:.2f}x the layer)", "pull_bytes"),
        (f"idle hour, {args.running} containers running", lambda r: f"{r['idle_bytes_per_hour'] / 1e3:.0f} kB",
         "idle_bytes_per_hour"),
        (f"a container writing {mb(res['log_output_bytes'])} to stdout: written / kept",
         lambda r: f"{mb(r['log_written_bytes'])} / {mb(r['log_kept_bytes'])}", "log_written_bytes"),
    ]
    head = "| work | " + " | ".join(names) + (" | pyd / dockerd |" if "dockerd" in names else " |")
    out = [head, "|" + " --- |" * (len(names) + 1 + ("dockerd" in names))]
    for title, fmt, key in rows:
        cells = [fmt(res["daemons"][n]) for n in names]
        if "dockerd" in names:
            a, b = res["daemons"]["pyd"][key], res["daemons"]["dockerd"][key]
            cells.append(f"{a / b:.2f}x" if b else ("0 / 0" if not a else "-"))
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    return (f"`python3 -m bench.bench_flash` (root): each daemon's data root on an ext4 filesystem of its own "
            f"over a loop device (direct I/O); bytes written to the device, from /sys/block/loopN/stat after "
            f"syncfs. dockerd's exec root (runtime state, a tmpfs on real hosts) is not on the measured disk. "
            f"Raw figures in bench/results/flash.json.\n\n" + "\n".join(out) +
            f"\n\nMeasured {res['meta']['date']} on {res['meta']['machine']}, pyd `{label}`"
            + (f", {res['daemons']['dockerd']['daemon']}" if "dockerd" in names else "") + ".\n")


if __name__ == "__main__":
    main()
