"""Load (issue 14): 1,000 container cycles with an events listener attached
lose no event and leak nothing (mounts, cgroups, fds, threads, data-root
size), with RSS flat; 20 parallel DELETEs of one container give exactly one
204. Marked soak: build.sh runs it once, against the frozen binary."""

import concurrent.futures
import json
import os
import socket
import threading
import time

import pytest

from tests.pydtest import nfds, proc_status

pytestmark = [pytest.mark.soak, pytest.mark.slow]
V = "/v1.41"
CYCLES = 1000


def mounts_under(root):
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if root in ln]


def cgroups_named(ids):
    found = set()
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d in ids or d[:64] in ids:
                found.add(d)
    return found


def du(path):
    total = 0
    for base, dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(base, f)).st_blocks * 512
            except OSError:
                pass
    return total


class Listener:
    """GET /events on a raw socket, collected on a thread."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.sock.sendall(f"GET {V}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self.events, self._buf = [], b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        head_done = False
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self._buf += data
            if not head_done:
                if b"\r\n\r\n" not in self._buf:
                    continue
                self._buf = self._buf.split(b"\r\n\r\n", 1)[1]
                head_done = True
            # chunked: size line, data, CRLF
            while True:
                line, sep, rest = self._buf.partition(b"\r\n")
                if not sep:
                    break
                n = int(line.split(b";")[0], 16)
                if len(rest) < n + 2:
                    break
                chunk, self._buf = rest[:n], rest[n + 2:]
                for piece in chunk.split(b"\n"):
                    if piece.strip():
                        self.events.append(json.loads(piece))

    def close(self):
        self.sock.close()


def test_1000_cycles_with_an_events_listener(daemon, api, busybox):
    pid = daemon.server_pid()
    root = daemon.root
    for _ in range(5):      # warm up: the first cycles allocate what later ones reuse
        code, _, cid = api.run(["true"])
        api.delete(f"/containers/{cid}")
    time.sleep(0.5)
    base = {"fds": nfds(pid), "threads": proc_status(pid, "Threads"), "rss": proc_status(pid, "VmRSS"),
            "mounts": len(mounts_under(root)), "du": du(os.path.join(root, "containers"))}
    listener = Listener(daemon.port)
    time.sleep(0.3)

    def cycle(i):
        r = api.post(f"{V}/containers/create", {"Image": "busybox", "Cmd": ["sh", "-c", f"exit {i % 4}"]})
        assert r.status == 201, r
        cid = r.json()["Id"]
        assert api.post(f"{V}/containers/{cid}/start").status == 204
        code = api.wait(cid)
        assert code == i % 4
        assert api.delete(f"{V}/containers/{cid}").status == 204
        return cid

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(cycle, range(CYCLES), timeout=1800))
    took = time.monotonic() - started
    print(f"{CYCLES} cycles in {took:.1f}s ({CYCLES / took:.1f}/s)")

    # Every container's create, start, die and destroy reached the listener.
    deadline = time.monotonic() + 20
    want = {(cid, a) for cid in ids for a in ("create", "start", "die", "destroy")}
    while time.monotonic() < deadline:
        got = {(e.get("id"), e.get("Action") or e.get("status")) for e in listener.events}
        if want <= got:
            break
        time.sleep(0.5)
    listener.close()
    missing = want - got
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:5]}"

    # Nothing leaked.
    assert not cgroups_named(set(ids))
    assert not [c for c in ids if os.path.exists(os.path.join(root, "containers", c))]
    assert len(mounts_under(root)) == base["mounts"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        fds, threads = nfds(pid), proc_status(pid, "Threads")
        if fds <= base["fds"] + 4 and threads <= base["threads"] + 3:
            break
        time.sleep(0.5)
    assert fds <= base["fds"] + 4, (base, fds)
    assert threads <= base["threads"] + 3, (base, threads)
    assert du(os.path.join(root, "containers")) <= base["du"] + (1 << 20)
    rss = proc_status(pid, "VmRSS")
    assert rss <= base["rss"] + 10 * 1024, f"RSS {rss} kB after {CYCLES} cycles, {base['rss']} kB before"


def test_20_parallel_deletes_of_one_container_give_one_204(api, busybox):
    for _ in range(5):
        cid = api.create(["sleep", "60"])
        api.start(cid)
        barrier = threading.Barrier(20)

        def delete():
            barrier.wait()
            r = api.delete(f"{V}/containers/{cid}?force=1")
            return r.status if r.status != 500 else (500, r.body)

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: delete(), range(20)))
        assert statuses.count(204) == 1, statuses
        assert set(statuses) <= {204, 404, 409}, statuses
        assert api.get(f"{V}/containers/{cid}/json").status == 404
