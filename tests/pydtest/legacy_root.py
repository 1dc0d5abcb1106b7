"""A real release-0.1.0 data root, made by the 0.1.0 code itself.

build_root_010(root, workdir) takes release 0.1.0 (commit 887c4eb) out of
this checkout's git history, compiles its native shim, starts that daemon on
`root`, fills the root through the API, stops the daemon with SIGTERM and
returns a manifest of what it made. Tests of the store migration start the
current daemon on copies of that root.

The 0.1.0 layout (887c4eb:docs/storage.md): images/<id>.json, layers/<id>/,
repositories.json, containers/<id>/config.json, volumes/<hex>/, tmp/.

Note: 0.1.0 records a volume by its absolute host path (<root>/volumes/<hex>)
and keeps it across restarts only while it is under the data root it runs
on, so a copy keeps its volumes only at the path the root was built at.
"""

import json
import os
import shutil
import signal
import subprocess
import time

from . import TOP, Daemon, busybox_rootfs_tar

COMMIT = "887c4eb"
VERSION = "0.1.0"
PATHS = ("pyd", "native", "pyd.py", "setup.cfg")

VOLUME_CMD = ["sh", "-c", "echo hello-from-010; cat /data/f 2>/dev/null; echo keep > /data/f; echo layer > /marker"]
STOPPED_CMD = ["sh", "-c", "echo out-from-010; echo err-from-010 >&2; exit 3"]
CREATED_CMD = ["sh", "-c", "echo never-started-runs"]


class LegacyBuildError(RuntimeError):
    pass


def _run(argv, what, **kw):
    r = subprocess.run(argv, capture_output=True, **kw)
    if r.returncode != 0:
        raise LegacyBuildError(f"{what} failed ({r.returncode}): {' '.join(map(str, argv))}\n"
                               f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}")
    return r


def extract_010(workdir, checkout=TOP):
    """Extract 0.1.0's pyd/ native/ pyd.py setup.cfg into <workdir>/pyd-0.1.0; return that path."""
    probe = subprocess.run(["git", "-C", checkout, "cat-file", "-e", f"{COMMIT}^{{commit}}"],
                           capture_output=True)
    if probe.returncode != 0:
        raise LegacyBuildError(
            f"commit {COMMIT} (release {VERSION}) is not in the git history of {checkout}: "
            f"the store migration tests need the full git history (e.g. `git fetch --unshallow`); "
            f"git said: {probe.stderr.decode(errors='replace').strip()}")
    tree = os.path.join(str(workdir), f"pyd-{VERSION}")
    if os.path.lexists(tree):
        shutil.rmtree(tree)
    os.makedirs(tree)
    archive = subprocess.Popen(["git", "-C", checkout, "archive", COMMIT, *PATHS],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", tree], stdin=archive.stdout, capture_output=True)
    archive.stdout.close()
    err = archive.stderr.read()
    archive.stderr.close()
    if archive.wait() != 0 or untar.returncode != 0:
        raise LegacyBuildError(f"git archive {COMMIT} | tar -x failed: {err.decode(errors='replace')}"
                               f"{untar.stderr.decode(errors='replace')}")
    for p in PATHS:
        if not os.path.lexists(os.path.join(tree, p)):
            raise LegacyBuildError(f"{COMMIT} has no {p}")
    # What build.sh writes for a release build; /version then names the commit.
    with open(os.path.join(tree, "pyd", "_build.py"), "w") as f:
        f.write(f'GIT_COMMIT = "{COMMIT}"\n')
    return tree


def compile_shim(tree, python):
    """Compile the tree's shim with its own native/build.py (installs into <tree>/pyd/)."""
    _run([os.path.abspath(python), os.path.join(tree, "native", "build.py")], f"compiling the {VERSION} shim",
         cwd=os.path.dirname(tree))
    built = [n for n in os.listdir(os.path.join(tree, "pyd")) if n.startswith("_shim") and n.endswith(".so")]
    if not built:
        raise LegacyBuildError(f"{tree}/native/build.py installed no pyd/_shim*.so")


def _ok(r, status, what):
    if r.status != status:
        raise LegacyBuildError(f"{what}: expected {status}, got {r!r}")
    return r


def _populate(api):
    m = {"images": {}, "tags": {}, "containers": {}}

    r = _ok(api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_rootfs_tar(),
                     headers={"Content-Type": "application/x-tar"}), 200, "import busybox")
    if b'"error"' in r.body:
        raise LegacyBuildError(f"import busybox: {r.body!r}")
    busybox = _ok(api.get("/images/busybox/json"), 200, "inspect busybox").json()["id"]
    _ok(api.post("/images/busybox/tag?repo=busybox&tag=old"), 201, "tag busybox:old")
    if _ok(api.get("/images/busybox:old/json"), 200, "inspect busybox:old").json()["id"] != busybox:
        raise LegacyBuildError("busybox:old is not busybox")
    m["images"]["busybox"] = busybox

    # A container with a volume that writes to it and to its own layer.
    vol = api.create(VOLUME_CMD, Volumes={"/data": {}})
    api.start(vol)
    code = api.wait(vol)
    logs = api.logs(vol).decode()
    if code != 0 or logs != "hello-from-010\n":
        raise LegacyBuildError(f"volume container: exit {code}, output {logs!r}")
    info = _ok(api.get(f"/containers/{vol}/json"), 200, "inspect").json()
    vol_host = info["Volumes"]["/data"]
    with open(os.path.join(vol_host, "f")) as f:
        if f.read() != "keep\n":
            raise LegacyBuildError(f"{vol_host}/f does not hold keep")
    m["containers"]["volume"] = {"id": info["Id"], "cmd": VOLUME_CMD, "exit": 0, "logs": logs,
                                 "volumes": {"/data": vol_host}, "volume_files": {"/data/f": "keep\n"}}

    # Commit it: committed:v1 = busybox + the layer with /marker.
    r = _ok(api.post(f"/commit?container={vol}&repo=committed&tag=v1"), 201, "commit")
    committed = _ok(api.get("/images/committed:v1/json"), 200, "inspect committed:v1").json()["id"]
    if not committed.startswith(r.json()["Id"]):
        raise LegacyBuildError(f"commit answered {r.json()!r}, committed:v1 is {committed}")
    history = _ok(api.get("/images/committed:v1/history"), 200, "history").json()
    if len(history) != 2:
        raise LegacyBuildError(f"committed:v1 history has {len(history)} entries: {history!r}")
    m["images"]["committed"] = committed
    m["history"] = {"committed:v1": len(history)}
    code, out, marker_cid = api.run(["cat", "/marker"], image="committed:v1")
    if (code, out) != (0, "layer\n"):
        raise LegacyBuildError(f"cat /marker in committed:v1: exit {code}, {out!r}")
    m["containers"]["marker_check"] = {"id": marker_cid, "exit": 0, "logs": out}

    # A stopped container with known output on both streams and a non-zero exit.
    stopped = api.create(STOPPED_CMD)
    api.start(stopped)
    code = api.wait(stopped)
    logs = api.logs(stopped).decode()
    if code != 3 or sorted(logs.splitlines()) != ["err-from-010", "out-from-010"]:
        raise LegacyBuildError(f"stopped container: exit {code}, output {logs!r}")
    m["containers"]["stopped"] = {"id": stopped, "cmd": STOPPED_CMD, "exit": 3, "logs": logs,
                                  "stdout": "out-from-010\n", "stderr": "err-from-010\n"}

    # Created, never started.
    created = api.create(CREATED_CMD)
    if _ok(api.get(f"/containers/{created}/json"), 200, "inspect").json()["State"]["Running"]:
        raise LegacyBuildError("the created container runs")
    m["containers"]["created"] = {"id": created, "cmd": CREATED_CMD, "exit": 0,
                                  "logs_after_start": "never-started-runs\n"}

    m["tags"] = {"busybox:latest": busybox, "busybox:old": busybox, "committed:v1": committed}
    listed = {c["Id"] for c in _ok(api.get("/containers/json?all=1"), 200, "list").json()}
    for c in m["containers"].values():
        if not any(c["id"].startswith(i) or i.startswith(c["id"]) for i in listed):
            raise LegacyBuildError(f"container {c['id']} is not listed: {listed}")
    return m


def build_root_010(root, workdir, checkout=TOP, python=None):
    """Build a 0.1.0 data root at `root` with the 0.1.0 code (extracted and
    compiled under `workdir`); return its manifest:

    {"commit", "version", "root", "tree", "cmd", "log", "seconds",
     "images": {"busybox": id, "committed": id},
     "tags": {"busybox:latest": id, "busybox:old": id, "committed:v1": id},
     "history": {"committed:v1": 2},
     "containers": {
        "volume":  {"id", "cmd", "exit": 0, "logs", "volumes": {"/data": host path},
                    "volume_files": {"/data/f": "keep\\n"}},
        "marker_check": {"id", "exit": 0, "logs": "layer\\n"},   # ran from committed:v1
        "stopped": {"id", "cmd", "exit": 3, "logs", "stdout", "stderr"},
        "created": {"id", "cmd", "exit": 0, "logs_after_start"}}}   # never started

    Ids are as 0.1.0 reports them (images and containers: 64 hex).
    The 0.1.0 daemon's log is moved out of the root to <workdir>/daemon-0.1.0.log.
    Raises LegacyBuildError (a RuntimeError) when anything fails, including
    a checkout without commit 887c4eb in its history.
    """
    t0 = time.monotonic()
    root, workdir = str(root), str(workdir)
    python = os.path.abspath(python or os.path.join(checkout, ".venv", "bin", "python"))
    if not os.access(python, os.X_OK):
        raise LegacyBuildError(f"no {python}: run ./build.sh first")
    os.makedirs(workdir, exist_ok=True)
    tree = extract_010(workdir, checkout)
    compile_shim(tree, python)

    cmd = [python, os.path.join(tree, "pyd.py")]
    d = Daemon(root, cmd=cmd, net_args=False)
    d.start()
    try:
        v = _ok(d.api.get("/version"), 200, "version").json()
        if v.get("Version") != VERSION or v.get("GitCommit") != COMMIT:
            raise LegacyBuildError(f"the daemon on {root} is not {VERSION} from {tree}: {v!r}")
        manifest = _populate(d.api)
    except BaseException:
        d.stop(signal.SIGKILL)
        raise
    rc = d.stop(signal.SIGTERM)
    if rc != 0:
        raise LegacyBuildError(f"the {VERSION} daemon exited with {rc} on SIGTERM:\n{d.log()}")
    log = os.path.join(workdir, f"daemon-{VERSION}.log")
    os.replace(d.logpath, log)
    for leftover in ("pyd.pid", "pyd.sock"):
        if os.path.lexists(os.path.join(root, leftover)):
            raise LegacyBuildError(f"the {VERSION} daemon left {leftover} behind")
    manifest.update(commit=COMMIT, version=VERSION, root=root, tree=tree, cmd=cmd, log=log,
                    seconds=round(time.monotonic() - t0, 2))
    return manifest


if __name__ == "__main__":  # python3 -m tests.pydtest.legacy_root ROOT WORKDIR
    import sys
    print(json.dumps(build_root_010(sys.argv[1], sys.argv[2]), indent=2))
