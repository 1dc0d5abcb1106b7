"""attach (v1.3 section 2.2 and 3.1/3.2): validation before the hijack, the raw
stream, logs replay, live feed, stdin, Tty, detach, resize, slow and vanishing
clients. See docs/attach.md for the policy these tests pin down."""

import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from tests.pydtest import inspect, kill_quiet, nfds, proc_status

RAW_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n"


# -- a raw attach client -------------------------------------------------------

class Attach:
    """One hijacked attach connection, spoken over a plain TCP socket."""

    def __init__(self, port, cid, query, prefix="", stdin=b"", timeout=30, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # a small window: a client that does not read fills it quickly
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        req = (f"POST {prefix}/containers/{cid}/attach?{query} HTTP/1.1\r\n"
               f"Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").encode()
        # stdin bytes go in the same sendall as the request: they must not be lost
        self.sock.sendall(req + stdin)
        self.head = None
        self.buf = b""
        self.eof = False

    def read_head(self, timeout=15):
        deadline = time.monotonic() + timeout
        data = b""
        while b"\r\n\r\n" not in data:
            left = deadline - time.monotonic()
            assert left > 0, f"no response head within {timeout}s: {data!r}"
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        self.head = head + sep
        self.buf = rest
        return self.head

    def status(self):
        return int(self.head.split(b" ", 2)[1])

    def header(self, name):
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == name.lower().encode():
                return v.strip().decode()
        return None

    def read_until(self, needle, timeout=15):
        """Read until `needle` is in the body (or EOF / deadline); returns the body so far."""
        deadline = time.monotonic() + timeout
        while needle not in self.buf and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
        return self.buf

    def read_length(self, timeout=10):
        """A normal (not hijacked) response: read its Content-Length body."""
        n = int(self.header("Content-Length"))
        deadline = time.monotonic() + timeout
        while len(self.buf) < n and time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        return self.buf

    def read_to_eof(self, timeout=30):
        """Read until EOF or the deadline; returns (body, reached_eof)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
        return self.buf, self.eof

    def send(self, data):
        self.sock.sendall(data)

    def shut_wr(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self, reset=False):
        if reset:  # abrupt: RST instead of FIN
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def attach(daemon, cid, query, **kw):
    a = Attach(daemon.port, cid, query, **kw)
    a.read_head()
    return a


# -- helpers -------------------------------------------------------------------

def settle(pid, base_fds, base_threads, fd_slack=4, thread_slack=2, timeout=10):
    """Poll until the daemon's fds and threads are back near the baseline."""
    deadline = time.monotonic() + timeout
    while True:
        fds, threads = nfds(pid), proc_status(pid, "Threads")
        if fds <= base_fds + fd_slack and threads <= base_threads + thread_slack:
            return fds, threads
        if time.monotonic() > deadline:
            return fds, threads
        time.sleep(0.1)


# -- validation before the hijack ----------------------------------------------

@pytest.mark.parametrize("prefix", ["", "/v1.3"])
def test_unknown_container_is_a_plain_404(daemon, busybox, prefix):
    a = Attach(daemon.port, "0123456789ab" * 5 + "cdef", "stream=1&stdout=1", prefix=prefix)
    a.read_head()
    body = a.read_length(10)
    a.close()
    assert a.head.startswith(b"HTTP/1.1 404 "), a.head
    assert a.header("Content-Type").startswith("text/plain"), a.head
    assert b"raw-stream" not in a.head
    assert int(a.header("Content-Length")) == len(body)
    assert body.endswith(b"\n") and b"{" not in body, body


def test_bad_boolean_is_400_before_hijack(daemon, api, busybox):
    cid = api.create(["true"])
    for q in ("logs=maybe&stdout=1", "stream=yes", "stdout=2", "stdin=on&stream=1"):
        a = attach(daemon, cid, q)
        body = a.read_length(10)
        a.close()
        assert a.status() == 400, (q, a.head, body)
        assert a.header("Content-Type").startswith("text/plain"), a.head
        assert b"raw-stream" not in a.head
    # an empty value means false: still a valid attach
    a = attach(daemon, cid, "logs=&stream=0&stdout=1")
    body, eof = a.read_to_eof(10)
    a.close()
    assert a.head.startswith(RAW_HEAD) and eof and body == b""


# -- the hijack head and the raw body ------------------------------------------

@pytest.mark.parametrize("prefix", ["", "/v1.3", "/v1.0"])
def test_head_bytes_and_raw_body(daemon, api, busybox, prefix):
    code, _, cid = api.run(["sh", "-c", "printf 'abc\\n'; sleep 0.2; printf 'E\\n' >&2; sleep 0.2; printf xyz"])
    assert code == 0
    a = attach(daemon, cid, "logs=1&stream=0&stdout=1&stderr=1", prefix=prefix)
    body, eof = a.read_to_eof(10)
    a.close()
    assert a.head.startswith(RAW_HEAD), a.head
    assert a.head.endswith(b"\r\n\r\n")
    assert a.header("Content-Type") == "application/vnd.docker.raw-stream"
    assert a.header("Content-Length") is None and a.header("Transfer-Encoding") is None
    assert eof
    # raw: exactly the bytes the process wrote, no 8-byte frame headers
    assert body == b"abc\nE\nxyz", body
    assert b"\x01\x00\x00\x00" not in body and b"\x02\x00\x00\x00" not in body


def test_stdout_and_stderr_selection(daemon, api, busybox):
    code, _, cid = api.run(["sh", "-c", "echo out; echo err >&2"])
    assert code == 0
    got = {}
    for q in ("stdout=1", "stderr=1", "stdout=1&stderr=1", "stdout=0&stderr=0"):
        a = attach(daemon, cid, "logs=1&stream=0&" + q)
        got[q], eof = a.read_to_eof(10)
        a.close()
        assert eof
    assert got["stdout=1"] == b"out\n"
    assert got["stderr=1"] == b"err\n"
    assert sorted(got["stdout=1&stderr=1"].splitlines()) == [b"err", b"out"]
    assert got["stdout=0&stderr=0"] == b""


# -- the docker run flows --------------------------------------------------------

def test_docker_run_flow_create_start_attach(daemon, api, busybox):
    """Section 3.1: create, start, then attach logs=1&stream=1."""
    cid = api.create(["sh", "-c", "echo before; sleep 1; echo after; echo err >&2"],
                     AttachStdout=True, AttachStderr=True)
    api.start(cid)
    t0 = time.monotonic()
    a = attach(daemon, cid, "logs=1&stream=1&stdout=1&stderr=1")
    assert a.head.startswith(RAW_HEAD)
    body, eof = a.read_to_eof(30)
    a.close()
    assert eof, f"stream did not end at exit: {body!r}"
    assert time.monotonic() - t0 < 20
    for word in (b"before", b"after", b"err"):
        assert body.count(word) == 1, body
    assert body.index(b"before") < body.index(b"after")
    assert api.wait(cid) == 0


def test_attach_after_output_replays_once(daemon, api, busybox):
    """Output produced both before and during the attach appears exactly once."""
    cid = api.create(["sh", "-c", "i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); sleep 0.025; done"])
    api.start(cid)
    time.sleep(0.5)
    a = attach(daemon, cid, "logs=1&stream=1&stdout=1")
    body, eof = a.read_to_eof(30)
    a.close()
    assert eof
    assert body.decode().split() == [f"line{i}" for i in range(40)], body


def test_attach_before_start(daemon, api, busybox):
    """What newer docker run does: attach first, start once the head is back."""
    cid = api.create(["sh", "-c", "echo first; sleep 0.3; echo second"])
    a = attach(daemon, cid, "stream=1&stdout=1")  # the head is back: start at once
    assert a.head.startswith(RAW_HEAD)
    result = {}
    reader = threading.Thread(target=lambda: result.update(r=a.read_to_eof(30)))
    reader.start()
    api.start(cid)
    reader.join(40)
    assert not reader.is_alive()
    body, eof = result["r"]
    a.close()
    assert eof, body
    assert body == b"first\nsecond\n"
    assert api.wait(cid) == 0


def test_attach_before_failed_start_ends(daemon, api, busybox):
    """A client attached before start hears the end when the start fails."""
    cid = api.create(["echo", "never"], User="nosuchuser")
    a = attach(daemon, cid, "stream=1&stdout=1&stderr=1")
    r = api.post(f"/containers/{cid}/start")
    assert r.status >= 400, r
    body, eof = a.read_to_eof(8)
    a.close()
    # Regression test; this once failed: the start fails in Runtime.start before output.open_for_run(), and
    # nothing ends the Output, so the waiting subscriber (wait_for_start) never
    # ends: the stream stays open and the attach thread stays until the client
    # goes away.
    assert eof, f"attach stream still open after a failed start ({r.status} {r.body!r})"
    assert b"never" not in body


def test_attach_before_start_then_delete_ends(daemon, api, busybox):
    cid = api.create(["echo", "never"])
    a = attach(daemon, cid, "stream=1&stdout=1")
    r = api.delete(f"/containers/{cid}")
    assert r.status == 204, r
    body, eof = a.read_to_eof(8)
    a.close()
    # Regression test; this once failed: container_delete -> Runtime.forget() drops the Output without ending
    # its subscribers: a client attached to a created container that is then
    # removed is never told; its stream stays open forever.
    assert eof and body == b"", body


def test_attach_before_start_no_first_byte_lost(daemon, api, busybox):
    """Start immediately when the head arrives, 10 times: the first line is never lost."""
    for _ in range(10):
        cid = api.create(["echo", "first"])
        a = attach(daemon, cid, "stream=1&stdout=1")
        api.start(cid)
        body, eof = a.read_to_eof(20)
        a.close()
        assert eof and body == b"first\n", body


# -- stdin ---------------------------------------------------------------------

def test_stdin_same_packet_and_half_close(daemon, api, busybox):
    cid = api.create(["cat"], OpenStdin=True, StdinOnce=True, AttachStdin=True, AttachStdout=True)
    api.start(cid)
    a = Attach(daemon.port, cid, "stdin=1&stream=1&stdout=1", stdin=b"hello\n")
    a.read_head()
    assert a.head.startswith(RAW_HEAD)
    a.read_until(b"hello\n", 15)
    a.shut_wr()
    body, eof = a.read_to_eof(20)
    a.close()
    assert body == b"hello\n"
    assert eof, "cat should see EOF (StdinOnce) and the stream end"
    assert api.wait(cid, timeout=20) == 0


def test_stdin_more_after_head(daemon, api, busybox):
    cid = api.create(["sh", "-c", "read a; read b; echo got:$a:$b"], OpenStdin=True, StdinOnce=True)
    api.start(cid)
    a = Attach(daemon.port, cid, "stdin=1&stream=1&stdout=1", stdin=b"one\n")
    a.read_head()
    time.sleep(0.2)
    a.send(b"two\n")
    body, eof = a.read_to_eof(20)
    a.close()
    assert eof and body == b"got:one:two\n", body
    assert api.wait(cid) == 0


def test_stdin_not_forwarded_without_openstdin(daemon, api, busybox):
    cid = api.create(["sh", "-c", "sleep 1; cat; echo done:$?"])
    api.start(cid)
    a = Attach(daemon.port, cid, "stdin=1&stream=1&stdout=1&stderr=1", stdin=b"secret\n")
    a.read_head()
    a.send(b"more secret\n")
    body, eof = a.read_to_eof(20)
    a.close()
    assert eof
    assert b"secret" not in body
    assert body == b"done:0\n"  # cat read /dev/null
    assert api.wait(cid) == 0


def test_stdin_kept_open_without_stdinonce(daemon, api, busybox):
    """OpenStdin without StdinOnce: the client's EOF does not close the container's stdin."""
    cid = api.create(["cat"], OpenStdin=True)
    api.start(cid)
    try:
        a = Attach(daemon.port, cid, "stdin=1&stream=1&stdout=1", stdin=b"ping\n")
        a.read_head()
        a.read_until(b"ping\n", 10)
        a.shut_wr()
        time.sleep(1.0)
        assert inspect(api, cid)["State"]["Running"], "stdin closed although StdinOnce is false"
        a.close()
        # a second client can still feed it
        b = Attach(daemon.port, cid, "stdin=1&stream=1&stdout=1", stdin=b"again\n")
        b.read_head()
        assert b.read_until(b"again\n", 10) == b"again\n"
        b.close()
    finally:
        kill_quiet(api, cid)


def test_stdin_attach_before_start(daemon, api, busybox):
    """`docker run -i` with a newer CLI: attach (with stdin) first, then start."""
    cid = api.create(["cat"], OpenStdin=True, StdinOnce=True, AttachStdin=True, AttachStdout=True)
    try:
        a = Attach(daemon.port, cid, "stdin=1&stream=1&stdout=1", stdin=b"early\n")
        a.read_head()
        a.shut_wr()
        api.start(cid)
        body, eof = a.read_to_eof(8)
        a.close()
        # Regression test; this once failed: stdin sent before start is written to a container with no runtime:
        # _write raises BrokenPipeError, the stdin thread quits silently, the bytes
        # are lost and StdinOnce never closes the container's stdin, so `cat`
        # never exits and the stream never ends.
        assert body == b"early\n", body
        assert eof
        assert api.wait(cid, timeout=10) == 0
    finally:
        kill_quiet(api, cid)


# -- Tty, resize, detach --------------------------------------------------------

def test_tty_interactive_shell_and_resize(daemon, api, busybox):
    cid = api.create(["sh"], Tty=True, OpenStdin=True, AttachStdin=True, AttachStdout=True)
    api.start(cid)
    try:
        a = attach(daemon, cid, "stdin=1&stream=1&stdout=1&stderr=1")
        assert a.head.startswith(RAW_HEAD)
        r = api.post(f"/containers/{cid}/resize?h=40&w=100")
        assert r.status == 200, r
        a.send(b"tty; stty size; exit\n")
        body, eof = a.read_to_eof(20)
        a.close()
        assert eof, body
        assert b"/dev/pts/0" in body, body
        assert b"40 100" in body, body
        assert api.wait(cid, timeout=20) == 0
    finally:
        kill_quiet(api, cid)


def test_tty_command_sees_pty(daemon, api, busybox):
    cid = api.create(["sh", "-c", "tty; stty size; sleep 1; stty size"], Tty=True, OpenStdin=True)
    api.start(cid)
    a = attach(daemon, cid, "logs=1&stream=1&stdout=1")
    r = api.post(f"/containers/{cid}/resize?h=33&w=77")
    assert r.status == 200, r
    body, eof = a.read_to_eof(20)
    a.close()
    assert eof
    assert body.startswith(b"/dev/pts/0\r\n"), body  # onlcr: a real terminal
    assert body.rstrip().endswith(b"33 77"), body


def test_resize_errors(daemon, api, busybox):
    cid = api.create(["sleep", "30"], Tty=True)
    api.start(cid)
    try:
        for q in ("h=abc&w=80", "h=40", "h=-1&w=80", "h=40&w=70000"):
            r = api.post(f"/containers/{cid}/resize?{q}")
            assert r.status == 400, (q, r)
            assert r.headers["Content-Type"].startswith("text/plain")
        r = api.post("/containers/ffffffffffff/resize?h=40&w=80")
        assert r.status == 404, r
        assert api.post(f"/v1.3/containers/{cid}/resize?h=10&w=20").status == 200
    finally:
        kill_quiet(api, cid)
    r = api.post(f"/containers/{cid}/resize?h=40&w=80")
    assert r.status == 409, r  # not running
    cid = api.create(["sleep", "30"])  # no Tty: nothing to resize, accepted
    api.start(cid)
    try:
        assert api.post(f"/containers/{cid}/resize?h=40&w=80").status == 200
    finally:
        kill_quiet(api, cid)


def test_detach_ctrl_p_ctrl_q(daemon, api, busybox):
    cid = api.create(["sh"], Tty=True, OpenStdin=True, AttachStdin=True, AttachStdout=True)
    api.start(cid)
    try:
        a = attach(daemon, cid, "stdin=1&stream=1&stdout=1")
        a.send(b"echo mark$((6*7))\n")
        assert b"mark42" in a.read_until(b"mark42", 10)
        a.send(b"\x10\x11")
        _, eof = a.read_to_eof(10)
        a.close()
        assert eof, "detach should end the stream"
        time.sleep(0.3)
        assert inspect(api, cid)["State"]["Running"] is True
        # detach split over two packets, after a new attach
        b = attach(daemon, cid, "stdin=1&stream=1&stdout=1")
        b.send(b"\x10")
        time.sleep(0.3)
        b.send(b"\x11")
        _, eof = b.read_to_eof(10)
        b.close()
        assert eof
        assert inspect(api, cid)["State"]["Running"] is True
        # a lone Ctrl-P followed by something else is forwarded, not swallowed
        c = attach(daemon, cid, "stdin=1&stream=1&stdout=1")
        c.send(b"\x10")
        time.sleep(0.2)
        c.send(b"echo still$((1+1))\n")
        assert b"still2" in c.read_until(b"still2", 10)
        c.send(b"exit\n")
        _, eof = c.read_to_eof(10)
        c.close()
        assert eof
    finally:
        kill_quiet(api, cid)


# -- several clients -------------------------------------------------------------

def test_two_clients_both_see_output(daemon, api, busybox):
    cid = api.create(["sh", "-c", "sleep 1; echo shared"])
    api.start(cid)
    a = attach(daemon, cid, "stream=1&stdout=1")
    b = attach(daemon, cid, "stream=1&stdout=1")
    ra, ea = a.read_to_eof(20)
    rb, eb = b.read_to_eof(20)
    a.close()
    b.close()
    assert ea and eb
    assert ra == b"shared\n" and rb == b"shared\n", (ra, rb)


# -- the slow client --------------------------------------------------------------

def test_slow_client_is_dropped_and_memory_bounded(daemon, api, busybox):
    pid = daemon.server_pid()
    cid = api.create(["dd", "if=/dev/zero", "bs=1M", "count=100"])
    # never reads after the head; a small receive buffer so that the kernel does not
    # absorb the whole output (loopback autotuning allows tcp_rmem max, e.g. 32 MiB)
    slow = attach(daemon, cid, "stream=1&stdout=1", rcvbuf=64 << 10)
    fast = attach(daemon, cid, "stream=1&stdout=1")
    got = {"n": 0, "eof": False}

    def read_fast():
        deadline = time.monotonic() + 90
        fast.sock.settimeout(5)
        while time.monotonic() < deadline:
            try:
                chunk = fast.sock.recv(1 << 20)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                got["eof"] = True
                break
            got["n"] += len(chunk)

    rss0 = proc_status(pid, "VmRSS")
    peak = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc_status(pid, "VmRSS"))
            stop.wait(0.05)

    threads = [threading.Thread(target=read_fast), threading.Thread(target=sample)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    api.start(cid)
    code = api.wait(cid, timeout=60)
    elapsed = time.monotonic() - t0
    threads[0].join(30)
    stop.set()
    threads[1].join(5)
    growth_kb = peak[0] - rss0
    print(f"\nslow client: container took {elapsed:.1f}s; daemon VmRSS {rss0} kB -> peak {peak[0]} kB "
          f"(growth {growth_kb / 1024:.1f} MiB); reading client got {got['n']} bytes (eof={got['eof']})")
    assert code == 0
    assert elapsed < 60
    assert growth_kb < 50 * 1024  # an unbounded queue would hold ~96 MB here
    assert got["n"] > 0 and got["eof"]
    # the log on disk is bounded (16 MiB, kept in two halves)
    cdir = os.path.join(daemon.root, "containers", cid)
    kept = sum(os.path.getsize(os.path.join(cdir, f)) for f in os.listdir(cdir) if f.startswith("stdio.log"))
    assert 0 < kept <= (16 << 20) + (1 << 20), kept
    # the slow client, once it does read, gets what was in flight and then EOF: it was dropped
    body, eof = slow.read_to_eof(30)
    slow.close()
    fast.close()
    print(f"slow client read {len(body)} bytes after the container exited")
    assert eof
    assert len(body) < 16 << 20, len(body)


def test_dropped_client_connection_is_closed(daemon, api, busybox):
    """stdio.py: a dropped client's "connection is closed and its thread exits"."""
    pid = daemon.server_pid()
    _, base_threads = settle(pid, 0, 0, timeout=1)  # whatever earlier tests left has gone
    cid = api.create(["dd", "if=/dev/zero", "bs=1M", "count=20"])
    slow = attach(daemon, cid, "stream=1&stdout=1", rcvbuf=64 << 10)
    api.start(cid)
    assert api.wait(cid, timeout=60) == 0
    _, threads = settle(pid, 10 ** 6, base_threads, thread_slack=0, timeout=10)
    # the daemon should have let go of the dropped client by now, without it reading
    state = _tcp_state(slow.sock)
    slow.close()
    # Regression test; this once failed: the attach thread of a dropped client stays blocked in sendall() (the
    # socket buffers are full and the client never reads), so neither is the
    # connection closed nor does the thread exit while the client keeps it open;
    # hijacked sockets have no timeout (settimeout(None)).
    assert threads <= base_threads, f"threads {threads} > baseline {base_threads}; client socket {state}"


def _tcp_state(sock):
    """The kernel's TCP state of our end of `sock` (from /proc/net/tcp)."""
    host, port = sock.getsockname()
    want = f"0100007F:{port:04X}"
    states = {"01": "ESTABLISHED", "08": "CLOSE_WAIT", "07": "CLOSE"}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[1] == want:
                return states.get(parts[3], parts[3])
    return "gone"


# -- vanishing clients --------------------------------------------------------------

def test_attach_disconnect_rounds_do_not_leak(daemon, api, busybox):
    pid = daemon.server_pid()
    cid = api.create(["sh", "-c", "while true; do echo tick; sleep 0.05; done"])
    api.start(cid)
    try:
        a = attach(daemon, cid, "stream=1&stdout=1")
        assert b"tick" in a.read_until(b"tick", 10)
        a.close()
        base_fds, base_threads = settle(pid, 0, 0, timeout=2)  # let the first one go
        t0 = time.monotonic()
        for i in range(200):
            a = Attach(daemon.port, cid, "stream=1&stdout=1" + ("&stderr=1" if i % 3 else ""), timeout=10)
            a.read_head()
            assert a.head.startswith(RAW_HEAD)
            assert b"tick" in a.read_until(b"tick", 5)
            a.close(reset=bool(i % 2))
            assert time.monotonic() - t0 < 120
        fds, threads = settle(pid, base_fds, base_threads, timeout=10)
        print(f"\n200 rounds in {time.monotonic() - t0:.1f}s; fds {base_fds} -> {fds}, threads {base_threads} -> {threads}")
        assert fds <= base_fds + 4
        assert threads <= base_threads + 2
        assert inspect(api, cid)["State"]["Running"]
    finally:
        kill_quiet(api, cid)


def test_disconnect_from_silent_container_does_not_leak(daemon, api, busybox):
    """The same with a container that prints nothing: nothing ever fails to send."""
    pid = daemon.server_pid()
    cid = api.create(["sleep", "120"])
    api.start(cid)
    try:
        base_fds, base_threads = settle(pid, 0, 0, timeout=1)
        for i in range(20):
            a = attach(daemon, cid, "stream=1&stdout=1&stderr=1", timeout=10)
            assert a.head.startswith(RAW_HEAD)
            a.close(reset=bool(i % 2))
        fds, threads = settle(pid, base_fds, base_threads, timeout=10)
        # Regression test; this once failed: with no stdin to read and nothing to send, the attach thread never
        # notices that its client left: each vanished client keeps a thread, an fd
        # and a connection slot (max_connections) until the container exits.
        assert threads <= base_threads + 2, f"threads {base_threads} -> {threads}"
        assert fds <= base_fds + 4, f"fds {base_fds} -> {fds}"
    finally:
        kill_quiet(api, cid)


# -- stopped containers ------------------------------------------------------------

def test_attach_to_stopped_container(daemon, api, busybox):
    code, _, cid = api.run(["sh", "-c", "echo out1; echo err1 >&2; echo out2"])
    assert code == 0
    a = attach(daemon, cid, "logs=1&stream=0&stdout=1&stderr=1")
    body, eof = a.read_to_eof(10)
    a.close()
    assert eof and sorted(body.split()) == [b"err1", b"out1", b"out2"], body
    t0 = time.monotonic()
    a = attach(daemon, cid, "logs=0&stream=1&stdout=1&stderr=1")
    body, eof = a.read_to_eof(10)
    a.close()
    assert a.head.startswith(RAW_HEAD)
    assert eof and body == b""
    assert time.monotonic() - t0 < 2.5
    # logs + stream on a stopped container: the replay, then the end
    a = attach(daemon, cid, "logs=1&stream=1&stdout=1")
    body, eof = a.read_to_eof(10)
    a.close()
    assert eof and body == b"out1\nout2\n"


def test_unreadable_log_fails_before_the_hijack(daemon, api, busybox):
    """The log is opened before the head goes out (the subscription comes
    first, so that a start right after the head is never missed): a log that
    cannot be read is a plain 500 with its reason, not a half-open stream."""
    code, _, cid = api.run(["echo", "hidden"])
    assert code == 0
    broken = os.path.join(daemon.root, "containers", cid, "stdio.log.1")
    os.mkdir(broken)  # the rotated half of the log cannot be read now
    try:
        a = attach(daemon, cid, "logs=1&stream=0&stdout=1")
        length = int(a.header("Content-Length"))
        deadline = time.monotonic() + 10
        while len(a.buf) < length and time.monotonic() < deadline:
            chunk = a.sock.recv(65536)
            if not chunk:
                break
            a.buf += chunk
        body = a.buf
        a.close()
    finally:
        os.rmdir(broken)
    assert a.status() == 500, a.head
    assert not a.head.startswith(RAW_HEAD)
    assert b"Is a directory" in body, body
    assert api.logs(cid) == b"hidden\n"


def test_restarted_container_log_keeps_history(daemon, api, busybox):
    code, _, cid = api.run(["echo", "run"])
    assert code == 0
    api.start(cid)
    assert api.wait(cid) == 0
    assert api.logs(cid) == b"run\nrun\n"


# -- clients -------------------------------------------------------------------------

def test_curl_attach_logs(daemon, api, busybox):
    code, _, cid = api.run(["sh", "-c", "echo from-curl; echo not-this >&2"])
    assert code == 0
    p = subprocess.run(["curl", "-s", "--max-time", "20", "--output", "-", "-X", "POST",
                        f"http://127.0.0.1:{daemon.port}/containers/{cid}/attach?logs=1&stream=0&stdout=1"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p
    assert p.stdout == b"from-curl\n", p.stdout
    p = subprocess.run(["curl", "-s", "-i", "--max-time", "20", "--output", "-", "-X", "POST",
                        f"http://127.0.0.1:{daemon.port}/v1.3/containers/{cid}/attach?logs=1&stream=0&stderr=1"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p
    assert p.stdout.startswith(RAW_HEAD) and p.stdout.endswith(b"\r\n\r\nnot-this\n"), p.stdout
