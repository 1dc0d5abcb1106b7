#!/usr/bin/env python3
"""Registry push and pull (issue 13): pyd (--binary PATH, else this
checkout's dist/pyd, else PYD_CMD, else `python3 pyd.py`; --source skips
dist/pyd) and, when docker.io is installed, a private dockerd 20.10
(tests/pydtest/dockerd.py) running at the same time, each pushing to and
pulling from a real registry: Debian's docker-registry (distribution 2.8,
tests/pydtest/registry.py) on 127.0.0.1.

Two images, made here once per run of the bench in temp files, from fixed
seeds, so that both daemons get the very same bytes:
  1. "single": one layer of ~SINGLE_MB MB (--single-mb, default 200);
  2. "multi": LAYERS layers of ~LAYER_MB MB each (--layers 5, --layer-mb 40).
Each layer is a tree of files of mixed sizes (a few hundred bytes to 8 MiB,
most between 10 KiB and 1 MiB), half of the bytes random (binaries, already
compressed data), half text (words of a Zipf-like vocabulary, in lines), so
that gzip has real work and the blobs are about 2/3 of the tar. The images
go in as docker-archive tars (`POST /images/load`, untimed), which give both
daemons the same image id (the config's digest).

Per daemon, image and run (the daemons alternate, the order flipping every
run, so that drift in machine load hits both alike):
  - a fresh registry (its own data dir and port): no blob of the image is in
    it, and each daemon pushes to its own repository (bench/pyd-single,
    bench/dockerd-single, ...);
  - load the archive and tag it 127.0.0.1:<port>/bench/<daemon>-<image>:latest
    (untimed);
  - push: `POST /v1.41/images/<name>/push?tag=latest`, timed from the request
    to the end of its stream. It counts when the answer is 200, no message
    has an "error"/"errorDetail", no layer was skipped ("Layer already
    exists", "Mounted from") and the registry then holds the manifest with
    every layer (checked untimed);
  - `DELETE /images/<id>?force=1` (dockerd removes the layers no image uses
    any more), then a check that the daemon holds no image and no layer;
  - pull: `POST /v1.41/images/create?fromImage=<name>&tag=latest`, timed the
    same way; it counts when the stream is clean, no layer "Already exists"
    and the pulled image has the loaded image's id;
  - delete again (so that the next run loads from nothing), stop the
    registry and remove its data.
Medians over RUNS (--runs, default 3). For the last run of each measure the
time from the request to the first occurrence of each (layer, status) in the
stream is kept in the results ("phases"), to see where the time goes.

Target for pyd: at least as fast as dockerd, push and pull, both images.
Reference: dockerd 20.10 pushed the single layer in 5.06 s and pulled it in
3.39 s on this machine before this bench.

Every loop is bounded in count and time; all traffic goes to 127.0.0.1 and
the daemons' unix sockets: image names are always 127.0.0.1:<port>/..., which
both daemons speak plain HTTP to; nothing resolves a name or reaches Docker
Hub. Everything started here is stopped in a finally.

Writes bench/results/registry.json and the "## Registry push and pull"
section of bench/README.md. Needs root.

Usage: sudo python3 -m bench.bench_registry [--binary PATH | --source] [--runs N] [--single-mb M] [--layers L] [--layer-mb M] [--no-pyd] [--no-dockerd] [--no-readme]
"""

import argparse
import hashlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tarfile
import tempfile
import time

from tests.pydtest import Daemon, UnixHTTPConnection, daemon_cmd, store_entries
from tests.pydtest import dockerd as dd
from tests.pydtest import registry as reglib

from bench import readme
from bench.bench_modern import pyd_command

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "registry.json")
SECTION_TITLE = "Registry push and pull"
V = "/v1.41"
ANCHORS = {"dockerd_single_push_s": 5.06, "dockerd_single_pull_s": 3.39}  # dockerd 20.10 here, earlier
STREAM_TIMEOUT = 600           # seconds: for a whole push, pull or load
READ_TIMEOUT = 300             # seconds: per socket read
MAX_STREAM = 64 << 20          # bytes of progress stream read at most
MAX_FILES = 100_000            # per layer
MTIME = 1700000000
SEED = 13                      # the images' content
SKIPPED_PUSH = ("Layer already exists", "Mounted from")
SKIPPED_PULL = ("Already exists",)


# -- the images -----------------------------------------------------------

def text_pool(rng, size):
    """`size` bytes of text: lines of words drawn from a Zipf-like vocabulary, with numbers and punctuation."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 11))) for _ in range(6000)]
    vocab += ["=", "{", "}", "(", ")", ";", "->", "#", "//", "return", "if", "else", "for", "in", "def", "self"]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    cum = list(_accumulate(weights))
    out, n = [], 0
    for _ in range(size // 4 + 1000):  # bounded: every pass adds > 4 bytes
        if n >= size:
            break
        words = rng.choices(vocab, cum_weights=cum, k=rng.randint(3, 16))
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 1 << rng.randint(4, 40))))
        line = " " * (4 * rng.randint(0, 3)) + " ".join(words) + "\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def _accumulate(xs):
    total = 0.0
    for x in xs:
        total += x
        yield total


def file_size(rng):
    """A file size as a rootfs has them: log-normal around ~60 KiB, 200 B to 8 MiB."""
    return max(200, min(8 << 20, int(rng.lognormvariate(11.0, 1.6))))


def write_layer(path, seed, total, top, pool):
    """A layer tar of about `total` bytes under `top`/ (half random bytes, half text) into `path`;
    its sha256 (the diff id) and size."""
    rng = random.Random(seed)
    h = hashlib.sha256()

    class Hashing:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            h.update(b)
            return self.f.write(b)

        def tell(self):
            return self.f.tell()

    sizes = {"bin": 0, "txt": 0}
    with open(path, "wb") as raw:
        with tarfile.open(fileobj=Hashing(raw), mode="w", format=tarfile.GNU_FORMAT) as tf:
            def entry(name, size=0, mode=0o644, kind=tarfile.REGTYPE):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode, ti.mtime, ti.type = size, mode, MTIME, kind
                ti.uname = ti.gname = "root"
                return ti

            dirs = [top] + [f"{top}/{a}" for a in ("bin", "lib", "share", "share/doc", "etc")]
            for d in dirs:
                tf.addfile(entry(d, mode=0o755, kind=tarfile.DIRTYPE))
            written, sub = 0, None
            for i in range(MAX_FILES):
                if written >= total:
                    break
                if i % 64 == 0:
                    sub = f"{rng.choice(dirs[1:])}/d{i // 64:04d}"
                    tf.addfile(entry(sub, mode=0o755, kind=tarfile.DIRTYPE))
                size = min(file_size(rng), max(total - written, 200))
                kind = "bin" if sizes["bin"] <= sizes["txt"] else "txt"
                if kind == "bin":
                    data = rng.randbytes(size)
                    name, mode = f"{sub}/f{i:05d}.so", 0o755
                else:
                    size = min(size, len(pool) // 2)
                    off = rng.randrange(0, len(pool) - size)
                    data = pool[off:off + size]
                    name, mode = f"{sub}/f{i:05d}.txt", 0o644
                tf.addfile(entry(name, size, mode), _Bytes(data))
                sizes[kind] += size
                written += size
            else:
                raise RuntimeError(f"layer {top}: more than {MAX_FILES} files")
    return "sha256:" + h.hexdigest(), os.path.getsize(path)


class _Bytes:
    """A read-once file object over bytes (tarfile.addfile reads it in blocks)."""

    def __init__(self, data):
        self.data, self.pos = memoryview(data), 0

    def read(self, n=-1):
        n = len(self.data) - self.pos if n is None or n < 0 else n
        b = self.data[self.pos:self.pos + n]
        self.pos += len(b)
        return bytes(b)


def write_archive(path, layer_files, diff_ids, repo_tag, what):
    """A docker-archive tar (manifest.json, the config, <diff>/layer.tar): its image id."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    created = "2024-01-01T00:00:00Z"
    config = json.dumps({
        "architecture": arch, "os": "linux", "created": created,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/sh"], "Labels": {"bench": what}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": f"pyd bench_registry: {what} layer {i}"}
                    for i in range(len(diff_ids))],
    }, separators=(",", ":")).encode()
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    members = [f"{d.partition(':')[2]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": image_id.partition(":")[2] + ".json", "RepoTags": [repo_tag],
                            "Layers": members}]).encode()
    with tarfile.open(path, mode="w", format=tarfile.GNU_FORMAT) as tf:
        def add(name, size, fileobj=None, kind=tarfile.REGTYPE, mode=0o644):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.type, ti.mode = size, MTIME, kind, mode
            tf.addfile(ti, fileobj)

        for member, lf in zip(members, layer_files):
            add(member.split("/")[0], 0, kind=tarfile.DIRTYPE, mode=0o755)
            with open(lf, "rb") as f:
                add(member, os.path.getsize(lf), f)
        add(image_id.partition(":")[2] + ".json", len(config), _Bytes(config))
        add("manifest.json", len(manifest), _Bytes(manifest))
    return image_id


class Image:
    def __init__(self, key, title, layers, archive, image_id, tar_bytes, repo_tag):
        self.key, self.title, self.layers = key, title, layers
        self.archive, self.id, self.tar_bytes, self.repo_tag = archive, image_id, tar_bytes, repo_tag


def make_images(tmp, args):
    t0 = time.monotonic()
    rng = random.Random(SEED)
    pool = text_pool(rng, 16 << 20)
    specs = [("single", f"{args.single_mb} MB, 1 layer", [args.single_mb]),
             ("multi", f"{args.layers} x {args.layer_mb} MB layers", [args.layer_mb] * args.layers)]
    images = []
    for n, (key, title, mbs) in enumerate(specs):
        files, diffs, total = [], [], 0
        for i, mb in enumerate(mbs):
            lf = os.path.join(tmp, f"{key}-{i}.tar")
            d, size = write_layer(lf, SEED * 1000 + n * 100 + i, mb * 1_000_000, f"opt/bench-{key}-{i}", pool)
            files.append(lf)
            diffs.append(d)
            total += size
        archive = os.path.join(tmp, f"{key}.archive.tar")
        repo_tag = f"pyd-bench-registry/{key}:src"
        image_id = write_archive(archive, files, diffs, repo_tag, key)
        for lf in files:
            os.unlink(lf)
        images.append(Image(key, title, len(mbs), archive, image_id, total, repo_tag))
    print(f"images made in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return images


# -- streams --------------------------------------------------------------

class Stream:
    """A progress stream read to its end, its JSON messages and when each (id, status) was first seen."""

    def __init__(self, sock, method, path, body_file=None, headers=None, timeout=STREAM_TIMEOUT):
        self.msgs, self.firsts = [], {}
        self._dec, self._buf = json.JSONDecoder(), ""
        deadline = time.monotonic() + timeout
        self.t0 = time.perf_counter()
        c = UnixHTTPConnection(sock, timeout=READ_TIMEOUT)
        c.blocksize = 1 << 20
        try:
            h = dict(headers or {})
            body = None
            if body_file is not None:
                body = open(body_file, "rb")
                h["Content-Length"] = str(os.path.getsize(body_file))
                h.setdefault("Content-Type", "application/x-tar")
            try:
                c.request(method, path, body=body, headers=h)
            finally:
                if body:
                    body.close()
            r = c.getresponse()
            self.status, size = r.status, 0
            while time.monotonic() < deadline and size <= MAX_STREAM:
                b = r.read1(65536)
                if not b:
                    break
                size += len(b)
                self._feed(b.decode(errors="replace"), time.perf_counter() - self.t0)
            else:
                raise RuntimeError(f"{method} {path}: stream did not end within {timeout} s / {MAX_STREAM} bytes")
            self.secs = time.perf_counter() - self.t0
        finally:
            c.close()
        self._feed("", self.secs, final=True)
        if self.status != 200:
            raise RuntimeError(f"{method} {path}: {self.status}: {self._buf[:300] or self.msgs[:1]!r}")
        errs = [m for m in self.msgs if isinstance(m, dict) and (m.get("error") or m.get("errorDetail"))]
        if errs:
            e = errs[0]
            raise RuntimeError(f"{method} {path}: {e.get('error') or e['errorDetail'].get('message')!s:.400}")

    def _feed(self, text, t, final=False):
        self._buf += text
        i, n = 0, len(self._buf)
        while i < n:  # each pass consumes at least one character or stops
            while i < n and self._buf[i] in " \t\r\n":
                i += 1
            if i >= n:
                break
            try:
                obj, j = self._dec.raw_decode(self._buf, i)
            except ValueError:
                if final:
                    raise RuntimeError(f"stream is not JSON at {i}: {self._buf[i:i + 200]!r}")
                break  # an incomplete message: wait for more
            self.msgs.append(obj)
            if isinstance(obj, dict):
                status = obj.get("status")
                if isinstance(status, str):
                    self.firsts.setdefault(f"{obj.get('id', '')} {status}"[:120], round(t, 3))
            i = j
        self._buf = self._buf[i:]

    def statuses(self):
        return [m.get("status", "") for m in self.msgs if isinstance(m, dict) and isinstance(m.get("status"), str)]


# -- one daemon -----------------------------------------------------------

class Target:
    def __init__(self, label, slug, daemon):
        self.label, self.slug, self.daemon, self.sock = label, slug, daemon, daemon.sock
        self.times = {}        # "single push" -> [s, ...]
        self.phases = {}       # "single push" -> {(id status): s} of the last run
        self.blob_bytes = {}   # "single" -> bytes of the layer blobs it pushed (last run)
        self.errors = {}

    def api(self):
        return self.daemon.unix_api

    def images(self):
        r = self.api().get(f"{V}/images/json?all=1", timeout=60)
        if r.status != 200:
            raise RuntimeError(f"GET /images/json: {r}")
        return [i["Id"] for i in r.json()]

    def layers(self):
        """What the daemon stores as layers (nothing else runs in it)."""
        if isinstance(self.daemon, dd.Dockerd):
            d = os.path.join(self.daemon.root, "data", "image", self.daemon.driver, "layerdb", "sha256")
            return sorted(os.listdir(d)) if os.path.isdir(d) else []
        return [e for e in store_entries(self.daemon.root, "layers") if re.fullmatch(r"[0-9a-f]{64}", e)]

    def image_id(self, ref):
        r = self.api().get(f"{V}/images/{ref}/json", timeout=60)
        if r.status != 200:
            raise RuntimeError(f"GET /images/{ref}/json: {r}")
        return r.json()["Id"]

    def remove(self, image_id):
        r = self.api().delete(f"{V}/images/{image_id}?force=1", timeout=STREAM_TIMEOUT)
        if r.status != 200:
            raise RuntimeError(f"DELETE /images/{image_id}?force=1: {r}")
        self.check_empty("after the delete")

    def check_empty(self, when):
        imgs, layers = self.images(), self.layers()
        if imgs or layers:
            raise RuntimeError(f"{when}: {self.label} still holds {len(imgs)} images, {len(layers)} layers")

    def load(self, img):
        s = Stream(self.sock, "POST", f"{V}/images/load?quiet=1", body_file=img.archive)
        got = self.image_id(img.repo_tag)
        if got != img.id:
            raise RuntimeError(f"loaded {img.key} has id {got}, not {img.id}")
        return s.secs


def one_round(t, img, tmp, run, last):
    """Push and pull of one image by one daemon, through a fresh registry."""
    reg = reglib.Registry(os.path.join(tmp, f"registry-{t.slug}-{img.key}-{run}"))
    reg.start()
    try:
        t.check_empty("before the load")
        t.load(img)
        repo = f"bench/{t.slug}-{img.key}"
        ref = f"{reg.addr}/{repo}"
        r = t.api().post(f"{V}/images/{img.id}/tag?repo={ref}&tag=latest", timeout=60)
        if r.status != 201:
            raise RuntimeError(f"tag {ref}: {r}")
        r = t.api().delete(f"{V}/images/{img.repo_tag}", timeout=60)  # the untag only: the image keeps its ref
        if r.status != 200:
            raise RuntimeError(f"untag {img.repo_tag}: {r}")
        if reg.blob_digests():
            raise RuntimeError("the fresh registry already holds blobs")

        key = f"{img.key} push"
        if key not in t.errors:
            try:
                s = Stream(t.sock, "POST", f"{V}/images/{ref}/push?tag=latest", headers={"X-Registry-Auth": "e30="})
                skipped = [x for x in s.statuses() if x.startswith(SKIPPED_PUSH)]
                if skipped:
                    raise RuntimeError(f"push skipped layers: {skipped[:3]}")
                m = reg.manifest(repo, "latest")
                if m is None or len(m[1].get("layers", [])) != img.layers or m[1]["config"]["digest"] != img.id:
                    raise RuntimeError(f"after the push the registry has {m and m[1]!r:.300}")
                t.times.setdefault(key, []).append(s.secs)
                t.blob_bytes[img.key] = sum(x["size"] for x in m[1]["layers"])
                if last:
                    t.phases[key] = s.firsts
            except (RuntimeError, OSError, ValueError) as e:
                t.errors[key] = str(e)[:600]
        t.remove(img.id)
        if reg.manifest(repo, "latest") is None:
            return  # nothing to pull: the push failed (recorded)

        key = f"{img.key} pull"
        if key not in t.errors:
            try:
                s = Stream(t.sock, "POST", f"{V}/images/create?fromImage={ref}&tag=latest",
                           headers={"X-Registry-Auth": "e30="})
                skipped = [x for x in s.statuses() if x.startswith(SKIPPED_PULL)]
                if skipped:
                    raise RuntimeError(f"pull reused local layers: {skipped[:3]}")
                got = t.image_id(f"{ref}:latest")
                if got != img.id:
                    raise RuntimeError(f"pulled image has id {got}, not {img.id}")
                t.times.setdefault(key, []).append(s.secs)
                if last:
                    t.phases[key] = s.firsts
            except (RuntimeError, OSError, ValueError) as e:
                t.errors[key] = str(e)[:600]
        ids = t.images()
        for i in ids:
            t.remove(i)
        t.check_empty("after the pull's delete")
    finally:
        reg.stop()
        shutil.rmtree(reg.root, ignore_errors=True)


# -- results --------------------------------------------------------------

MEASURES = [("single push", "push"), ("single pull", "pull"), ("multi push", "push"), ("multi pull", "pull")]


def summary(times):
    return {"n": len(times), "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs_s": [round(x, 3) for x in times]}


def report(targets, images, label_of_pyd, args):
    meta = readme.run_meta([label_of_pyd])
    meta["daemon"] = label_of_pyd   # what it is (`dist/pyd`, `python3 pyd.py`), never a machine path
    res = {"meta": meta, "argv": sys.argv[1:], "anchors": ANCHORS,
           "images": {i.key: {"title": i.title, "layers": i.layers, "tar_bytes": i.tar_bytes, "id": i.id}
                      for i in images},
           "registry": "docker-registry (distribution 2.8), a fresh one per daemon, image and run",
           "daemons": {}}
    for t in targets:
        res["daemons"][t.label] = {
            "measures": {k: summary(t.times[k]) if t.times.get(k) else None for k, _ in MEASURES},
            "blob_bytes": t.blob_bytes, "storage_driver": getattr(t.daemon, "driver", None),
            "phases_last_run": t.phases, "errors": t.errors,
        }
    names = list(res["daemons"])
    if len(names) == 2 and names[0] == "pyd":
        p, d = (res["daemons"][n]["measures"] for n in names)
        res["target_met"] = {k: (p[k] is not None and d[k] is not None and p[k]["median_s"] <= d[k]["median_s"])
                             for k, _ in MEASURES}
    return res


def cell(d, key):
    v = d["measures"][key]
    if v is None:
        err = d["errors"].get(key) or next(iter(d["errors"].values()), "not measured")
        return f"failed ({err.splitlines()[0][:100]})"
    return f"{v['median_s']:.2f} s ({v['min_s']:.2f}-{v['max_s']:.2f})"


def section(res, args):
    names = list(res["daemons"])
    imgs = res["images"]
    ratio = len(names) == 2
    head = ("| image | op | " + " | ".join(names) + (" | pyd / dockerd |" if ratio else " |") + "\n|---|---|"
            + "---|" * (len(names) + ratio) + "\n")
    rows = []
    for key, op in MEASURES:
        im = imgs[key.split()[0]]
        title = f"{im['title']} ({im['tar_bytes'] / 1e6:.0f} MB of tar)"
        row = f"| {title} | {op} | " + " | ".join(cell(res["daemons"][n], key) for n in names)
        if ratio:
            a, b = (res["daemons"][n]["measures"][key] for n in names)
            row += f" | {a['median_s'] / b['median_s']:.2f}x" if a and b else " | -"
        rows.append(row + " |\n")
    blobs = "; ".join(
        f"{n}: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in d["blob_bytes"].items())
        for n, d in res["daemons"].items() if d["blob_bytes"])
    met = res.get("target_met")
    verdict = ""
    if met:
        missed = [k for k, ok in met.items() if not ok]
        verdict = ("\nTarget (pyd at least as fast as dockerd on push and pull, both images): "
                   + ("met.\n" if not missed else "not met on " + ", ".join(missed) + ".\n"))
    m = res["meta"]
    return (f"`python3 -m bench.bench_registry` (root): each daemon pushes to and pulls from Debian's docker-registry "
            "(distribution 2.8) on 127.0.0.1, a fresh registry (data dir and port) per daemon, image and run, each "
            "daemon to its own repository, so that no blob is there before a push. The images are made once from a "
            "fixed seed (files of mixed sizes, half random bytes, half text, so gzip has work) and loaded as "
            "docker-archive tars (`POST /images/load`, untimed; same image id on both). Timed: "
            "`POST /v1.41/images/<name>/push?tag=latest` and, after `DELETE /images/<id>?force=1` and a check that "
            "the daemon holds no image and no layer, `POST /v1.41/images/create?fromImage=<name>&tag=latest`, each "
            "from the request to the end of its stream; no message may carry an error, no layer be skipped, and the "
            "pulled image must have the loaded image's id. Median (min-max) of "
            f"{args.runs} runs; the daemons alternate, the order flipping every run. "
            "Raw figures (and per-layer stream timings of the last run): `bench/results/registry.json`.\n\n"
            + head + "".join(rows) + verdict
            + (f"\nLayer blobs pushed (gzip): {blobs}.\n" if blobs else "")
            + f"\nMeasured {m['date']} on {m['machine']} ({m['cpus']} CPUs), pyd `{m['daemon']}`"
            + (", dockerd with " + ", ".join(f"`{res['daemons'][n]['storage_driver']}`" for n in names
                                             if res["daemons"][n]["storage_driver"]) if ratio else "")
            + ".\n")


def warn_if_stale(binary):
    """Say so when the binary measured is older than this checkout's sources (it may lack push)."""
    top = os.path.dirname(HERE)
    path = binary or os.path.join(top, "dist", "pyd")
    if not os.path.exists(path):
        return
    src = os.path.join(top, "pyd")
    newest = max((os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(src) for f in fs
                  if f.endswith(".py")), default=0)
    if newest > os.path.getmtime(path):
        print(f"warning: {os.path.relpath(path, top) if path.startswith(top) else path} is older than pyd/*.py; "
              "rebuild it or use --source", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", help="the pyd binary (default: dist/pyd if built, else PYD_CMD, else pyd.py)")
    ap.add_argument("--source", action="store_true",
                    help="run pyd from this checkout (PYD_CMD, else python3 pyd.py) even when dist/pyd exists")
    ap.add_argument("--runs", type=int, default=3, help="timed pushes and pulls per image and daemon (default 3)")
    ap.add_argument("--single-mb", type=int, default=200, help="size of the single-layer image, MB (default 200)")
    ap.add_argument("--layers", type=int, default=5, help="layers of the multi-layer image (default 5)")
    ap.add_argument("--layer-mb", type=int, default=40, help="size of each of its layers, MB (default 40)")
    ap.add_argument("--no-pyd", action="store_true", help="measure dockerd only")
    ap.add_argument("--no-dockerd", action="store_true", help="measure pyd only")
    ap.add_argument("--no-readme", action="store_true", help="do not update bench/README.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_registry needs root")
    if not (1 <= args.runs <= 50 and 1 <= args.single_mb <= 2000 and 1 <= args.layers <= 20
            and 1 <= args.layer_mb <= 500):
        sys.exit("--runs must be 1-50, --single-mb 1-2000, --layers 1-20, --layer-mb 1-500")
    if args.source and args.binary:
        sys.exit("--source and --binary exclude each other")
    if not reglib.available():
        sys.exit("needs docker-registry and htpasswd (apt: docker-registry apache2-utils)")
    if args.no_pyd and (args.no_dockerd or not dd.installed()):
        sys.exit("nothing to measure: --no-pyd and no dockerd")
    label = "-"
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pyd-bench-registry-") as tmp:
        daemons = []
        dd_root = None
        if not args.no_pyd:
            if args.source:
                cmd = daemon_cmd()
                label = " ".join(os.path.basename(c) for c in cmd)
            else:
                cmd, label = pyd_command(args.binary, tmp)
                warn_if_stale(args.binary)
            daemons.append(("pyd", "pyd", Daemon(os.path.join(tmp, "pyd-root"), cmd=cmd)))
        if not args.no_dockerd and dd.installed():
            dd_root = tempfile.mkdtemp(prefix="/tmp/dd")  # short: containerd's socket path is limited
            daemons.append(("dockerd 20.10", "dockerd", dd.Dockerd(dd_root)))
        targets, images = [], []
        try:
            images = make_images(tmp, args)
            for name, slug, d in daemons:
                d.start()
                targets.append(Target(name, slug, d))
            for r in range(args.runs):
                for img in images:
                    for t in (targets if r % 2 == 0 else targets[::-1]):
                        print(f"run {r + 1}/{args.runs}: {img.key}, {t.label} "
                              f"({time.monotonic() - t_start:.0f} s)", file=sys.stderr)
                        try:
                            one_round(t, img, tmp, r, r == args.runs - 1)
                        except (RuntimeError, OSError, ValueError) as e:
                            t.errors.setdefault(f"{img.key} round", str(e)[:600])
        finally:
            for _, _, d in daemons:
                d.stop()
            if dd_root:
                shutil.rmtree(dd_root, ignore_errors=True)
    res = report(targets, images, label, args)
    res["total_s"] = round(time.monotonic() - t_start, 1)
    readme.write_results(RESULTS, res)
    text = section(res, args)
    print(text)
    for t in targets:
        for k, e in t.errors.items():
            print(f"{t.label}: {k}: {e}", file=sys.stderr)
    if not args.no_readme:
        readme.update_section(SECTION_TITLE, text)


if __name__ == "__main__":
    main()
