"""The frozen dist/pyd needs nothing from the host but a Linux kernel
(docs/static.md): it is one static executable of at most 10 MB, and inside
an empty root, a new mount and network namespace chrooted into a directory
that holds only the binary, a data directory and /proc, /sys and /dev, it
serves the API on a unix socket, imports the busybox image and runs a
container. Its unpack directory follows TMPDIR and is removed once it exits;
a noexec or read-only TMPDIR falls back to /tmp with a note.

Selection: marked `frozen`, it runs in build.sh test's frozen pass (PYD_CMD
is dist/pyd) and the source pass deselects it; run by hand with PYD_CMD
running pyd.py, it is skipped with that reason. In CI a missing tool
(unshare, chroot, mount) fails instead of skipping.

Network rule: the daemon has a network namespace of its own (unshare -n) and
listens on a unix socket only; nothing is pulled and no name is resolved.
"""

import os
import shutil
import signal
import stat
import struct
import subprocess

import pytest

from tests.pydtest import Api, daemon_cmd, require, wait_for

CMD = daemon_cmd()
FROZEN = not any(a.endswith("pyd.py") for a in CMD)
BINARY = os.path.realpath(shutil.which(CMD[0]) or CMD[0]) if FROZEN else None
MAX_SIZE = 10_000_000
PT_INTERP, PT_DYNAMIC = 3, 2

pytestmark = [pytest.mark.frozen,
              pytest.mark.skipif(not FROZEN, reason="tests the frozen static binary; PYD_CMD runs pyd.py "
                                                    "from source (build.sh test runs it in its dist/pyd pass)")]


def program_headers(path):
    """The p_type of every program header of the 64-bit little-endian ELF `path`."""
    with open(path, "rb") as f:
        head = f.read(64)
        assert head[:4] == b"\x7fELF" and head[4] == 2 and head[5] == 1, f"{path} is no ELF64 LSB"
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return [struct.unpack_from("<I", table, i * phentsize)[0] for i in range(phnum)]


def test_the_binary_is_static_and_at_most_10_mb():
    types = program_headers(BINARY)
    assert PT_INTERP not in types and PT_DYNAMIC not in types, f"{BINARY} asks for a dynamic loader"
    if shutil.which("file"):
        out = subprocess.run(["file", "-L", BINARY], capture_output=True, text=True).stdout
        assert "statically linked" in out, out
    if shutil.which("ldd"):
        p = subprocess.run(["ldd", BINARY], capture_output=True, text=True)
        assert p.returncode != 0 or "not a dynamic executable" in p.stdout + p.stderr, p.stdout
    size = os.path.getsize(BINARY)
    assert size <= MAX_SIZE, f"{BINARY} is {size} bytes, over {MAX_SIZE}"


def unpack_dirs(tmp):
    return sorted(n for n in os.listdir(tmp) if n.startswith("pyd-")) if os.path.isdir(tmp) else []


def test_tmpdir_is_followed_and_cleaned(tmp_path):
    tmp = tmp_path / "t"
    tmp.mkdir()
    p = subprocess.run([BINARY, "--version"], env={**os.environ, "TMPDIR": str(tmp)},
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "pyd version" in p.stdout, p
    assert "note:" not in p.stderr, p.stderr
    # The remover (a detached process) deletes the unpack directory once pyd exits.
    wait_for(lambda: not unpack_dirs(tmp), timeout=10, what=f"the unpack directory in {tmp} to go")
    # A relative TMPDIR works too (and is removed: the remover runs in /).
    p = subprocess.run([BINARY, "--version"], env={**os.environ, "TMPDIR": "t"}, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "pyd version" in p.stdout and "note:" not in p.stderr, p
    wait_for(lambda: not unpack_dirs(tmp), timeout=10, what=f"the unpack directory in {tmp} to go")


def owner_record(pid, start):
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    return f"pydboot1 {pid} {start} {os.readlink('/proc/self/ns/pid')} {boot}\n"


def start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def test_stale_unpack_directories_are_swept(tmp_path):
    """A remover killed with its daemon (kill -9 of both) leaves a directory:
    the next start's remover deletes those whose owner is gone, and only those."""
    tmp = tmp_path / "t"
    dead = subprocess.Popen(["true"])
    dead.wait()
    records = {"pyd-dead00": owner_record(dead.pid, 1),            # that pid is gone
               "pyd-reuse0": owner_record(os.getpid(), 1),         # alive, but another start time
               "pyd-alive0": owner_record(os.getpid(), start_time(os.getpid())),
               "pyd-other0": owner_record(dead.pid, 1).replace("pid:[", "pid:[9"),  # another pid namespace
               "pyd-norec0": None}
    for name, rec in records.items():
        (tmp / name / "_internal").mkdir(parents=True)
        if rec:
            (tmp / name / ".owner").write_text(rec)
    p = subprocess.run([BINARY, "--version"], env={**os.environ, "TMPDIR": str(tmp)},
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p
    wait_for(lambda: unpack_dirs(tmp) == ["pyd-alive0", "pyd-norec0", "pyd-other0"], timeout=10,
             what=f"only the stale directories to go: {unpack_dirs(tmp)}")


def test_a_noexec_tmpdir_falls_back_with_a_note(tmp_path):
    require(shutil.which("mount") and shutil.which("unshare"), "mount and unshare (util-linux)")
    noexec = tmp_path / "noexec"
    noexec.mkdir()
    script = ('mount -t tmpfs -o noexec,size=64m none "$1" && TMPDIR="$1" "$2" --version; '
              'echo "left: $(ls "$1")"')
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                        str(noexec), BINARY], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "pyd version" in p.stdout, p
    assert f"TMPDIR={noexec} (mounted noexec)" in p.stderr and "instead" in p.stderr, p.stderr
    assert p.stdout.strip().endswith("left:"), p.stdout  # nothing was written to the noexec one


def test_no_usable_place_to_unpack_is_a_clear_error():
    require(shutil.which("mount") and shutil.which("unshare"), "mount and unshare (util-linux)")
    # A private mount namespace where /tmp, /var/tmp and /dev/shm are noexec
    # and TMPDIR read-only: a message naming each, exit 125, no traceback.
    # The binary is run through an fd opened first (it may live under /tmp).
    script = ('exec 3<"$1"; mount -t tmpfs -o noexec none /tmp && mkdir /tmp/ro && '
              'mount -t tmpfs -o ro none /tmp/ro && for d in /var/tmp /dev/shm; do '
              'if [ -d $d ]; then mount -t tmpfs -o noexec none $d; fi; done && '
              'TMPDIR=/tmp/ro /proc/self/fd/3 --version')
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", BINARY],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 125, p
    err = p.stderr
    assert "cannot unpack myself" in err and "TMPDIR=/tmp/ro (read-only)" in err, err
    assert "/tmp (mounted noexec)" in err and "Set TMPDIR" in err, err
    assert "Traceback" not in err


def test_serves_and_runs_a_container_in_an_empty_root(tmp_path, busybox_tar):
    for tool in ("unshare", "chroot", "mount"):
        require(shutil.which(tool), f"{tool} (util-linux / coreutils)")
    root = tmp_path.resolve() / "root"
    for d in ("proc", "sys", "dev", "data/tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy2(BINARY, root / "pyd")
    # Only the binary, the data directory and the three kernel file systems.
    assert sorted(os.listdir(root)) == ["data", "dev", "proc", "pyd", "sys"]
    sock = root / "data" / "pyd.sock"
    log = open(tmp_path / "daemon.log", "wb")
    # The root is bound onto itself first: a real root is a mount point (pyd
    # makes / private and pivot_roots containers; neither works on a bare chroot).
    script = ('set -e; mount --bind "$1" "$1"; cd "$1"; mount -t proc proc proc; mount --rbind /sys sys; mount --rbind /dev dev; '
              'exec chroot . /pyd -H unix:///data/pyd.sock -g /data/root -p /data/pyd.pid -D '
              '--bridge pydstatic0 --iptables=false --ip-forward=false --dns-upstream none')
    # env -i: no PATH, no variable of the host's; TMPDIR names the unpack place.
    proc = subprocess.Popen(["env", "-i", "TMPDIR=/data/tmp", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", shutil.which("unshare"), "-m", "-n",
                             "--propagation", "private", "/bin/sh", "-c", script, "sh", str(root)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def logtext():
        return (tmp_path / "daemon.log").read_text(errors="replace")[-8000:]

    api = Api(unix=str(sock), timeout=60)
    try:
        def up():
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {proc.returncode}:\n{logtext()}")
            try:
                return sock.exists() and api.get("/_ping", timeout=2).status == 200
            except OSError:
                return False
        wait_for(up, timeout=60, what="the daemon in the empty root to answer /_ping")
        # Every file the daemon maps is inside the empty root: nothing of the host's.
        with open(f"/proc/{proc.pid}/maps") as f:
            mapped = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
        files = {m for m in mapped if m.startswith("/")}
        outside = sorted(m for m in files if not m.startswith(str(root) + "/") and not m.startswith("/memfd:"))
        assert files and not outside, f"mapped from outside the empty root: {outside}"
        assert any("/data/tmp/pyd-" in m and m.endswith("/glibc/libc.so.6") for m in files), sorted(files)
        assert os.path.realpath(f"/proc/{proc.pid}/root") == os.path.realpath(root)

        r = api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                     headers={"Content-Type": "application/x-tar"})
        assert r.status == 200 and b'"error"' not in r.body, r
        r = api.post("/v1.41/containers/create", {"Image": "busybox", "Cmd": ["echo", "hello from an empty root"],
                                                  "HostConfig": {"NetworkMode": "none"}})
        assert r.status == 201, r
        cid = r.json()["Id"]
        assert api.post(f"/v1.41/containers/{cid}/start").status == 204
        assert api.wait(cid) == 0
        assert "hello from an empty root" in api.logs(cid).decode(errors="replace")
        assert api.delete(f"/v1.41/containers/{cid}?force=1").status == 204
        assert len(unpack_dirs(root / "data" / "tmp")) == 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    assert proc.returncode == 0, logtext()
    assert not sock.exists()
    wait_for(lambda: not unpack_dirs(root / "data" / "tmp"), timeout=10, what="the unpack directory to go")
    assert stat.S_ISREG(os.stat(root / "pyd").st_mode)
