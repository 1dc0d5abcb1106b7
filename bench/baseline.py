"""The frozen binary of an earlier commit, to measure the current daemon against.

    python3 -m bench.baseline REF            # build (or reuse) and print the cached path
    python3 -m bench.baseline REF --out FILE # build afresh into FILE, no cache

`binary(ref)` resolves REF to a full commit id and returns
bench/results/baselines/<sha>/pyd, building it first if it is not there:
the commit is checked out in a temporary `git worktree add --detach`, that
tree's own ./build.sh freezes it with PYD_VENV pointing at this checkout's
venv (so nothing is reinstalled), the binary is copied into the cache with a
rename, and the worktree is removed (`git worktree remove --force`, then
`git worktree prune`). Nothing in the checkout itself is touched: no
checkout, stash or reset, and its own dist/ and build/ are left alone.

build.sh reinstalls the pinned tools when the venv's stamp
(.pyd-requirements) differs from what the commit's setup.cfg asks for. That
would change the shared venv under whoever else uses it, so a mismatch is
refused here before build.sh runs; point PYD_VENV at a venv of its own to
build such a commit.
"""

import argparse
import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
CACHE = os.path.join(HERE, "results", "baselines")
BUILD_TIMEOUT = 900  # seconds for one ./build.sh


class BaselineError(RuntimeError):
    pass


def git(*args, cwd=TOP, check=True):
    p = subprocess.run(["git", "-C", cwd, *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise BaselineError(f"git {' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout.strip()


def resolve(ref):
    """A ref or abbreviated id -> the full 40-hex commit id."""
    sha = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if len(sha) != 40:
        raise BaselineError(f"{ref!r} is not a commit of this repository")
    return sha


def short(sha):
    return sha[:7]


def venv_path():
    return os.environ.get("PYD_VENV") or os.path.join(TOP, ".venv")


def wanted_requirements(tree):
    """What `extras build test` in that tree's build.sh prints, from its setup.cfg."""
    cfg = configparser.ConfigParser()
    if not cfg.read(os.path.join(tree, "setup.cfg")):
        raise BaselineError("the commit has no setup.cfg")
    reqs = cfg["options"]["install_requires"].split()
    for name in ("build", "test"):
        reqs += cfg["options.extras_require"][name].split()
    return "\n".join(reqs)


def check_venv(tree, venv):
    """Refuse to run a build.sh that would pip-install into a shared venv."""
    with open(os.path.join(tree, "build.sh")) as f:
        script = f.read()
    if "PYD_VENV" not in script or ".pyd-requirements" not in script or "extras build test" not in script:
        raise BaselineError("that commit's build.sh does not take PYD_VENV and its requirements stamp "
                            "the way this helper expects; build it by hand")
    if not os.access(os.path.join(venv, "bin", "python"), os.X_OK):
        raise BaselineError(f"no venv at {venv} (run ./build.sh once, or set PYD_VENV)")
    try:
        with open(os.path.join(venv, ".pyd-requirements")) as f:
            have = f.read()
    except OSError:
        have = None
    want = wanted_requirements(tree)
    if have != want:
        raise BaselineError(
            "the commit pins other build tools than the venv has, so its build.sh would reinstall "
            f"into {venv}:\n  venv:   {(have or '(no stamp)').split()}\n  commit: {want.split()}\n"
            "set PYD_VENV to a venv of its own to build it")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version(path):
    """`pyd --version`, e.g. 'pyd version 0.1.0, build 887c4eb0a7ca'."""
    try:
        p = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
        return (p.stdout or p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(--version failed: {e})"


@contextlib.contextmanager
def worktree(sha):
    """A detached worktree of `sha` in a temporary directory; removed afterwards."""
    tmp = tempfile.mkdtemp(prefix=f"pyd-baseline-{short(sha)}-")
    tree = os.path.join(tmp, "tree")
    try:
        git("worktree", "add", "--detach", tree, sha)
        yield tree
    finally:
        git("worktree", "remove", "--force", tree, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        git("worktree", "prune", check=False)


def build_into(sha, out, log=None):
    """Freeze commit `sha` with its own build.sh and copy the binary to `out` (atomically)."""
    venv = venv_path()
    t0 = time.monotonic()
    with worktree(sha) as tree:
        check_venv(tree, venv)
        env = dict(os.environ, PYD_VENV=venv)
        env.pop("PYD_CMD", None)
        with open(log or os.devnull, "w") as logf:
            try:
                p = subprocess.run(["./build.sh"], cwd=tree, env=env, stdin=subprocess.DEVNULL,
                                   stdout=logf, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise BaselineError(f"./build.sh of {short(sha)} took over {BUILD_TIMEOUT} s")
        if p.returncode != 0:
            tail = ""
            if log:
                with open(log, errors="replace") as f:
                    tail = "".join(f.readlines()[-20:])
            raise BaselineError(f"./build.sh of {short(sha)} exited with {p.returncode}\n{tail}")
        built = os.path.join(tree, "dist", "pyd")
        if not os.path.isfile(built):
            raise BaselineError(f"./build.sh of {short(sha)} made no dist/pyd")
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        shutil.copyfile(built, out + ".tmp")
        os.chmod(out + ".tmp", 0o755)
        os.replace(out + ".tmp", out)
    return time.monotonic() - t0


def binary(ref, say=print):
    """The cached frozen binary of `ref`, built first if missing. Returns (path, info dict)."""
    sha = resolve(ref)
    d = os.path.join(CACHE, sha)
    path, meta = os.path.join(d, "pyd"), os.path.join(d, "build.json")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lk:  # one builder per commit at a time
        fcntl.flock(lk, fcntl.LOCK_EX)
        if os.access(path, os.X_OK) and os.path.isfile(meta):
            with open(meta) as f:
                info = json.load(f)
            info["cached"] = True
            return path, info
        say(f"building the baseline binary of {short(sha)} in a temporary worktree (cached afterwards) ...")
        secs = build_into(sha, path, log=os.path.join(d, "build.log"))
        info = {"commit": sha, "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_seconds": round(secs, 1), "bytes": os.path.getsize(path),
                "sha256": sha256(path), "version": version(path)}
        with open(meta + ".tmp", "w") as f:
            json.dump(info, f, indent=2)
            f.write("\n")
        os.replace(meta + ".tmp", meta)
        say(f"  built in {secs:.0f} s: {info['version']}")
        info["cached"] = False
        return path, info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref")
    ap.add_argument("--out", help="build afresh into this file instead of the cache")
    args = ap.parse_args()
    try:
        if args.out:
            sha = resolve(args.ref)
            secs = build_into(sha, args.out)
            print(f"{args.out}: {version(args.out)} ({secs:.0f} s)")
        else:
            path, info = binary(args.ref, say=lambda m: print(m, file=sys.stderr))
            print(path)
    except BaselineError as e:
        sys.exit(f"baseline: {e}")


if __name__ == "__main__":
    main()
