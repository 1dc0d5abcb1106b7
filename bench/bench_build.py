#!/usr/bin/env python3
"""Build (issue 12): a 7-step Dockerfile built with no cache and then fully
cached, by pyd (--binary PATH, else this checkout's dist/pyd, else PYD_CMD,
else `python3 pyd.py`; --source skips dist/pyd) and, when docker.io is
installed, by a private dockerd 20.10's classic builder
(tests/pydtest/dockerd.py) running at the same time.

The Dockerfile (FROM, MAINTAINER, ENV, RUN, ADD of a directory, RUN, CMD):

    FROM busybox
    MAINTAINER ...
    ENV ...
    RUN echo "$BENCH_GREETING" > /greeting
    ADD files /data                        (a directory of FILES small files)
    RUN test "$(ls /data | wc -l)" -eq FILES && ls /data > /data.list
    CMD ["cat", "/greeting"]

Both daemons get the busybox test image and are driven by the same client
code: raw HTTP `POST /v1.41/build` over the daemon's unix socket, the context
an uncompressed tar built once in memory and sent with Content-Length, the
answer read to its end. A build counts when the answer is 200, the stream
carries the final {"aux": {"ID": ...}} and no message has an "error" key.
dockerd serves its classic builder for a request without `version=2` (moby's
parseVersion), so nothing needs switching off.

Measures, per daemon (time from the request to the end of its stream):
  1. no cache (`nocache=1`): median of RUNS builds; after each, outside the
     time, its image is deleted (DELETE /images/<id>, which prunes its
     untagged parents), so that builds do not pile up;
  2. cached: one uncounted build primes the cache (its image is then checked,
     untimed: its CMD prints the greeting, /data.list names the ADDed files,
     Env and Author are set), then RUNS builds, each of which must give the
     primed image's ID (a full cache hit); median.
Builds alternate between the daemons, the order flipping each run, so that
drift in machine load hits both alike. Targets for pyd: <= 0.5 s with no
cache, <= 0.05 s cached. A daemon that cannot build (a missing feature) is
recorded with its error, not a crash. Every loop is bounded in count and
time; all traffic goes to the daemons' unix sockets. Nothing pulls.

Writes bench/results/build.json and the "## Build" section of
bench/README.md. Needs root.

Usage: sudo python3 -m bench.bench_build [--binary PATH | --source] [--runs N] [--files F] [--networkmode M] [--no-pyd] [--no-dockerd] [--no-readme]
"""

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time

from tests.pydtest import Daemon, UnixHTTPConnection, busybox_rootfs_tar, daemon_cmd
from tests.pydtest import dockerd as dd

from bench import readme
from bench.bench_modern import pyd_command

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "build.json")
SECTION_TITLE = "Build"
TAG = "pyd-bench-build:latest"
TARGETS = {"nocache_s": 0.5, "cached_s": 0.05}   # <= , for pyd (issue 12)
BUILD_TIMEOUT = 120            # seconds: per socket read, and for the whole build
MAX_STREAM = 16 << 20          # bytes of build output read at most
FILE_BYTES = 256


def dockerfile(files):
    return ("FROM busybox\n"
            "MAINTAINER pyd bench <bench@pyd.invalid>\n"
            "ENV BENCH_GREETING=hello BENCH_DIR=/data\n"
            'RUN echo "$BENCH_GREETING" > /greeting\n'
            "ADD files /data\n"
            f'RUN test "$(ls /data | wc -l)" -eq {files} && ls /data > /data.list\n'
            'CMD ["cat", "/greeting"]\n')


def context_tar(files):
    """The build context: the Dockerfile and files/ with `files` small files, an uncompressed tar."""
    buf = io.BytesIO()
    now = int(time.time())

    def add(name, data=None, mode=0o644):
        ti = tarfile.TarInfo(name)
        ti.mtime, ti.mode = now, mode
        if data is None:
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
        else:
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        add("Dockerfile", dockerfile(files).encode())
        add("files")
        for i in range(files):
            line = f"bench file {i:02d}\n".encode()
            add(f"files/f{i:02d}.txt", (line * (FILE_BYTES // len(line) + 1))[:FILE_BYTES])
    return buf.getvalue()


def messages(data):
    """The JSON messages of a build stream (concatenated objects, newline-separated or not)."""
    dec, out, i, text = json.JSONDecoder(), [], 0, data.decode(errors="replace")
    n = len(text)
    while i < n:  # each pass consumes at least one character
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            break
        try:
            obj, i = dec.raw_decode(text, i)
        except ValueError:
            raise RuntimeError(f"build stream is not JSON at byte {i}: {text[i:i + 200]!r}")
        out.append(obj)
    return out


class Target:
    """One daemon under measure: its name, unix socket and figures."""

    def __init__(self, label, daemon, networkmode=None):
        self.label, self.daemon, self.sock = label, daemon, daemon.sock
        self.networkmode = networkmode
        self.nocache, self.cached = [], []
        self.cache_id = None
        self.steps = None
        self.cache_hits = None
        self.errors = {}

    def build(self, tar, nocache):
        """One build; (seconds, image id, messages). Anything but a clean build raises."""
        path = f"/v1.41/build?t={TAG}&rm=1&forcerm=1" + ("&nocache=1" if nocache else "") + (
            f"&networkmode={self.networkmode}" if self.networkmode else "")
        deadline = time.monotonic() + BUILD_TIMEOUT
        t0 = time.perf_counter()
        c = UnixHTTPConnection(self.sock, timeout=BUILD_TIMEOUT)
        try:
            c.request("POST", path, body=tar, headers={"Content-Type": "application/x-tar"})
            r = c.getresponse()
            chunks, size = [], 0
            while time.monotonic() < deadline and size <= MAX_STREAM:
                b = r.read1(65536)
                if not b:
                    break
                chunks.append(b)
                size += len(b)
            else:
                raise RuntimeError(f"build stream did not end within {BUILD_TIMEOUT} s / {MAX_STREAM} bytes")
            secs = time.perf_counter() - t0
        finally:
            c.close()
        body = b"".join(chunks)
        if r.status != 200:
            raise RuntimeError(f"POST /build: {r.status}: {body[:300]!r}")
        msgs = messages(body)
        errs = [m for m in msgs if isinstance(m, dict) and "error" in m]
        if errs:
            raise RuntimeError(f"build failed: {errs[0]['error']!s:.300}")
        ids = [m["aux"]["ID"] for m in msgs if isinstance(m, dict) and isinstance(m.get("aux"), dict)
               and "ID" in m["aux"]]
        if not ids:
            raise RuntimeError(f"no final aux ID in the build stream: {body[-300:]!r}")
        return secs, ids[-1], msgs

    def delete(self, image_id):
        r = self.daemon.unix_api.delete(f"/v1.41/images/{image_id}?force=1", timeout=BUILD_TIMEOUT)
        if r.status != 200:
            raise RuntimeError(f"DELETE /images/{image_id}: {r}")


def stream_text(msgs):
    return "".join(m.get("stream", "") for m in msgs if isinstance(m, dict) and isinstance(m.get("stream"), str))


def guarded(target, key, fn):
    """Run one measure; a failure is recorded once and the measure is not tried again."""
    if key in target.errors:
        return
    try:
        fn()
    except (RuntimeError, OSError, ValueError) as e:
        target.errors[key] = str(e)[:500]


def one_nocache(t, tar):
    secs, image_id, msgs = t.build(tar, nocache=True)
    t.nocache.append(secs)
    t.steps = stream_text(msgs).count("Step ")
    t.delete(image_id)


def prime(t, tar, files):
    _, t.cache_id, _ = t.build(tar, nocache=False)
    verify(t, files)


def run_image(t, cmd):
    """Run the primed image once (its CMD when `cmd` is None); its output."""
    api = t.daemon.unix_api
    body = {"Image": t.cache_id} | ({"Cmd": cmd} if cmd else {})
    r = api.post("/v1.41/containers/create", body)
    if r.status != 201:
        raise RuntimeError(f"create from the built image: {r}")
    cid = r.json()["Id"]
    try:
        for step, path in (("start", f"/v1.41/containers/{cid}/start"), ("wait", f"/v1.41/containers/{cid}/wait")):
            r = api.post(path, timeout=BUILD_TIMEOUT)
            if r.status not in (200, 204):
                raise RuntimeError(f"{step} of a container of the built image: {r}")
        if r.json().get("StatusCode") != 0:
            raise RuntimeError(f"{cmd or 'CMD'} in the built image exited {r.json()}")
        r = api.get(f"/v1.41/containers/{cid}/logs?stdout=1&stderr=1")
        if r.status != 200:
            raise RuntimeError(f"logs: {r}")
        return demux(r.body)
    finally:
        api.delete(f"/v1.41/containers/{cid}?force=1")


def demux(b):
    """stdout+stderr of a non-tty container's logs (8-byte frame headers)."""
    out, i = b"", 0
    while i + 8 <= len(b):
        n = int.from_bytes(b[i + 4:i + 8], "big")
        out += b[i + 8:i + 8 + n]
        i += 8 + n
    return out.decode(errors="replace")


def verify(t, files):
    """Untimed, once per daemon: the image holds what the 7 steps made (so no timed build can be a no-op)."""
    got = run_image(t, None)
    if got != "hello\n":
        raise RuntimeError(f"CMD of the built image printed {got!r}, not 'hello\\n'")
    listing = run_image(t, ["cat", "/data.list"]).split()
    want = [f"f{i:02d}.txt" for i in range(files)]
    if listing != want:
        raise RuntimeError(f"/data.list in the built image is {listing[:5]}..., not the {files} ADDed files")
    r = t.daemon.unix_api.get(f"/v1.41/images/{t.cache_id}/json")
    cfg = r.json().get("Config") or {} if r.status == 200 else {}
    if "BENCH_GREETING=hello" not in (cfg.get("Env") or []) or not r.json().get("Author"):
        raise RuntimeError(f"ENV or MAINTAINER missing in the built image: {r}")


def one_cached(t, tar):
    if t.cache_id is None:
        raise RuntimeError("the cache was not primed: " + t.errors.get("prime", "?"))
    secs, image_id, msgs = t.build(tar, nocache=False)
    if image_id != t.cache_id:
        raise RuntimeError(f"cached build gave {image_id}, not the primed {t.cache_id}: not a full cache hit")
    t.cached.append(secs)
    t.cache_hits = stream_text(msgs).count("Using cache")


def summary(times):
    return {"n": len(times), "median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "runs_s": [round(x, 4) for x in times]}


def report(targets, label_of_pyd, args):
    res = {"meta": readme.run_meta([label_of_pyd]), "argv": sys.argv[1:], "targets": TARGETS,
           "files": args.files, "dockerfile": dockerfile(args.files), "daemons": {}}
    for t in targets:
        res["daemons"][t.label] = {
            "nocache": summary(t.nocache) if t.nocache else None,
            "cached": summary(t.cached) if t.cached else None,
            "storage_driver": getattr(t.daemon, "driver", None),
            "steps_seen": t.steps, "cache_hits_seen": t.cache_hits,
            "errors": t.errors,
        }
    pyd = res["daemons"].get("pyd")
    if pyd:
        res["targets_met"] = {
            k: (pyd[k.split("_")[0]] is not None and pyd[k.split("_")[0]]["median_s"] <= v) for k, v in TARGETS.items()}
    return res


def cell(d, key):
    if d[key] is None:
        err = d["errors"].get(key) or d["errors"].get("prime") or "not measured"
        return f"failed ({err.splitlines()[0][:80]})"
    v = d[key]
    return f"{v['median_s']:.3f} s ({v['min_s']:.3f}-{v['max_s']:.3f})"


def section(res, args):
    names = list(res["daemons"])
    head = "| measure | " + " | ".join(names) + " | target (pyd) |\n|---|" + "---|" * len(names) + "---|\n"
    rows = [(f"no cache (`nocache=1`), median (min-max) of {args.runs}", "nocache", "≤ 0.5 s"),
            (f"fully cached, median (min-max) of {args.runs}", "cached", "≤ 0.05 s")]
    body = head + "".join(f"| {title} | " + " | ".join(cell(res["daemons"][n], key) for n in names)
                          + f" | {target} |\n" for title, key, target in rows)
    met = res.get("targets_met")
    verdict = ""
    if met:
        verdict = ("\nTargets for pyd: no cache " + ("met" if met["nocache_s"] else "not met")
                   + ", cached " + ("met" if met["cached_s"] else "not met") + ".\n")
    m = res["meta"]
    return (f"`python3 -m bench.bench_build` (root): a 7-step Dockerfile (FROM busybox, MAINTAINER, ENV, RUN, "
            f"ADD of a directory of {args.files} small files, RUN, CMD) sent as `POST /v1.41/build` over the unix "
            "socket, the context an in-memory tar, timed to the end of the stream; dockerd's is its classic "
            f"builder (no `version=2`). {args.runs} no-cache builds per daemon (each image deleted after, "
            f"untimed), then one uncounted build to prime the cache (its image checked, untimed: CMD output, "
            f"the ADDed files, Env, Author) and {args.runs} cached builds, each of "
            "which must give the primed image ID; the daemons alternate and the order flips every run. "
            + (f"`networkmode={args.networkmode}` on every build. " if args.networkmode else
               "No `networkmode`: pyd's RUN steps join its bridge; the private dockerd has none (`--bridge=none`), "
               "so its RUN steps have no network. ")
            + "Raw figures: `bench/results/build.json`.\n\n"
            + body + verdict + f"\nMeasured {m['date']} on {m['machine']} ({m['cpus']} CPUs), pyd `{m['daemon']}`.\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", help="the pyd binary (default: dist/pyd if built, else PYD_CMD, else pyd.py)")
    ap.add_argument("--source", action="store_true",
                    help="run pyd from this checkout (PYD_CMD, else python3 pyd.py) even when dist/pyd exists")
    ap.add_argument("--runs", type=int, default=5, help="timed builds per measure and daemon (default 5)")
    ap.add_argument("--files", type=int, default=20, help="small files in the ADDed directory (default 20)")
    ap.add_argument("--networkmode", help="networkmode= for the RUN steps, sent to both daemons (default: none sent; "
                    "the private dockerd has no bridge, so its RUN steps get no network either way)")
    ap.add_argument("--no-pyd", action="store_true", help="measure dockerd only")
    ap.add_argument("--no-dockerd", action="store_true", help="measure pyd only")
    ap.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_build needs root")
    if not 1 <= args.runs <= 100 or not 1 <= args.files <= 1000:
        sys.exit("--runs must be 1-100 and --files 1-1000")
    if args.source and args.binary:
        sys.exit("--source and --binary exclude each other")
    if args.no_pyd and (args.no_dockerd or not dd.installed()):
        sys.exit("nothing to measure: --no-pyd and no dockerd")
    tar = busybox_rootfs_tar()
    ctx = context_tar(args.files)
    label = "-"
    with tempfile.TemporaryDirectory(prefix="pyd-bench-build-") as tmp:
        daemons = []
        if not args.no_pyd:
            if args.source:
                cmd = daemon_cmd()
                label = " ".join(os.path.basename(c) for c in cmd)
            else:
                cmd, label = pyd_command(args.binary, tmp)
            daemons.append(("pyd", Daemon(os.path.join(tmp, "pyd-root"), cmd=cmd)))
        if not args.no_dockerd and dd.installed():
            daemons.append(("dockerd 20.10", dd.Dockerd(os.path.join(tmp, "dockerd"))))
        targets = []
        try:
            for name, d in daemons:
                d.start()
                dd.load_busybox(d.api, tar)
                targets.append(Target(name, d, args.networkmode))
            for r in range(args.runs):
                print(f"no cache {r + 1}/{args.runs}", file=sys.stderr)
                for t in (targets if r % 2 == 0 else targets[::-1]):
                    guarded(t, "nocache", lambda t=t: one_nocache(t, ctx))
            for t in targets:
                guarded(t, "prime", lambda t=t: prime(t, ctx, args.files))
            for r in range(args.runs):
                print(f"cached {r + 1}/{args.runs}", file=sys.stderr)
                for t in (targets if r % 2 == 0 else targets[::-1]):
                    guarded(t, "cached", lambda t=t: one_cached(t, ctx))
        finally:
            for _, d in daemons:
                d.stop()
    res = report(targets, label, args)
    readme.write_results(RESULTS, res)
    text = section(res, args)
    print(text)
    if not args.no_readme:
        readme.update_section(SECTION_TITLE, text)


if __name__ == "__main__":
    main()
