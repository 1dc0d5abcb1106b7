"""The userland proxy for published ports: dockerd's docker-proxy, inside
the daemon.

- `Proxy`: the mappings (`publish`, `unpublish`, `published`, `close`) and
  ONE background thread, "proxy", running a `selectors` loop that serves
  every listener, connection and UDP association. It starts on the first
  publish and ends with `close()`.
- `Published`: one mapping, as `published()` lists it.

Why one thread: a thread per connection (docker-proxy's goroutines) would
cost a Python thread, its stack and GIL hand-offs per client; a readiness
loop serves thousands of sockets from one thread and never blocks: every
socket is nonblocking, every syscall either moves bytes or says EAGAIN,
and EAGAIN only changes which events we wait for.

Why splice: the bytes of a TCP connection never enter Python. Each
direction has a pipe (raised to 1 MiB with F_SETPIPE_SZ where allowed);
`os.splice` moves pages from the source socket into the pipe and from the
pipe into the destination socket, so the loop spends one syscall per
chunk instead of a copy into a Python buffer and back. Where splice
answers EINVAL (a socket type the kernel cannot splice) that direction
falls back to recv_into/send through the loop's one 4 MiB scratch buffer
(`Proxy(zero_copy=False)` copies everywhere). Measured on 127.0.0.1 on a
2-CPU VM the copying mode was faster end to end than splice (66% of a
direct connection against 46%; docs/proxy.md has the figures). Splice
stays the default because what a slow reader makes it hold is bounded
by the pipe (1 MiB of kernel pages per direction), where copying may
hold up to one 4 MiB read per direction in Python memory.

Flow control per direction: read the source only while the pipe is
empty, write while it holds data. A write that says EAGAIN means the
destination is full: we then wait for EVENT_WRITE on it and stop reading
the source, so a slow reader slows the writer through TCP itself
(backpressure) and nothing grows without bound. A source at EOF becomes
shutdown(SHUT_WR) on the destination once the pipe has drained
(half-close); a pair is closed when both directions are done, or at once
on an error (ECONNRESET, EPIPE...). A target that refuses or cannot be
reached resets the client, as close to "connection refused" as a proxy
can say.

UDP: per client address an association with its own connected socket to
the target; replies go back to that client from the listening socket.
Associations idle for `udp_timeout` (90 s, docker-proxy's
UDPConnTrackTimeout) are dropped; their number is capped like TCP
connections. Datagrams that cannot be sent at once are dropped, as UDP
allows.

Threads: publish/unpublish/close run in any daemon thread. Binding
happens in the caller's thread, so a conflict raises at once; everything
the loop owns (the selector, sockets it registered) is changed only by
the loop, through a lock-protected queue of commands and an eventfd that
wakes it. unpublish waits until the loop has closed the listener and
reset its connections (a reset leaves no TIME_WAIT on the host port), so
the port is free when it returns.

SIGPIPE must be ignored (Python does so at start-up): splice into a reset
socket then fails with EPIPE instead of killing the daemon.
"""

import collections
import errno
import fcntl
import ipaddress
import logging
import os
import selectors
import socket
import struct
import threading
import time
from typing import NamedTuple, Optional

from .. import errors

log = logging.getLogger(__name__)

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)

PIPE_SIZE = 1 << 20          # bytes a direction holds in flight (pipe or buffer)
COPY_SIZE = 4 << 20          # the loop's one scratch buffer, for directions that copy
MAX_CONNS = 4096             # per TCP listener
MAX_ASSOCS = 4096            # per UDP listener
UDP_TIMEOUT = 90.0           # docker-proxy's UDPConnTrackTimeout
CONNECT_TIMEOUT = 60.0
UDP_BUF = 65535              # the largest datagram
BUDGET = 64                  # chunks, accepts or datagrams per event: others get their turn
STOP_WAIT = 10.0             # how long unpublish/close wait for the loop
_LINGER_RESET = struct.pack("ii", 1, 0)
_ACCEPT_PAUSE = 0.1          # after EMFILE: the listener stays readable, so wait a little


class Published(NamedTuple):
    proto: str
    host_ip: str
    host_port: int
    target_ip: str
    target_port: int


def _address(ip, what) -> str:
    """`ip` checked and written canonically ("" is 0.0.0.0). Never a name:
    a name would mean asking a resolver."""
    try:
        return str(ipaddress.ip_address(ip or "0.0.0.0"))
    except ValueError:
        raise errors.BadParameter(f"invalid {what} IP address: {ip!r}") from None


def _family(ip):
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _port(port, what, low):
    if not isinstance(port, int) or isinstance(port, bool) or not low <= port <= 65535:
        raise errors.BadParameter(f"invalid {what} port: {port!r}")
    return port


def _bind(proto, host_ip, host_port):
    """A nonblocking socket bound to host_ip:host_port (listening, for TCP)."""
    family = _family(host_ip)
    sock = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        if proto == "tcp":
            # a new listener must not wait for old connections' TIME_WAIT;
            # Linux still refuses a second listener on the same port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "::" then leaves 0.0.0.0 to its own mapping, as dockerd binds both
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host_ip, host_port))
        if proto == "tcp":
            sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise OSError(errno.EADDRINUSE,
                          f"Bind for {host_ip}:{host_port} failed: port is already allocated") from None
        raise OSError(e.errno, f"cannot listen on {proto} {host_ip}:{host_port}: "
                               f"{e.strerror or e}") from None
    return sock


def _reset(sock):
    """Close with an RST: no TIME_WAIT keeps the port, the peer learns at once."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    sock.close()


# Socket buffers of a proxied connection's two sockets (the kernel doubles
# the value). Fixed rather than autotuned: through a container, 1 GB went
# 1.4-1.8 GB/s autotuned and 1.7-1.9 GB/s with 2 MiB (bench/bench_ports.py,
# three paired runs), and autotuning may grow a buffer further (tcp_rmem's
# max) anyway, so this bounds memory rather than raising it.
SOCKET_BUFFER = 2 << 20


def _tune(sock):
    # Go (docker-proxy) does the same for every TCP connection: no Nagle
    # delay added by the middle, and dead peers found by keepalive
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 15)
    except OSError:
        pass


class _Flow:
    """One direction of a TCP pair: src -> pipe (or buffer) -> dst.

    `fill` and `drain` move what they can and raise BlockingIOError when
    the socket cannot; `pending` is what sits in the middle.

    Without splice, `fill` reads into the loop's scratch buffer (one for
    all connections: one thread uses it) and sends at once; only what
    the destination would not take is kept, in `held`, so an idle or
    flowing connection holds no buffer of its own."""

    def __init__(self, src, dst, zero_copy, pipe_size, scratch):
        self.src, self.dst = src, dst
        self.sfd, self.dfd = src.fileno(), dst.fileno()
        self.eof = False      # src said EOF
        self.shut = False     # and dst got shutdown(SHUT_WR)
        self.pending = 0
        self.pipe = None
        self.scratch = scratch
        self.held, self.off = None, 0
        if zero_copy:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self.pipe = (r, w)
            try:
                fcntl.fcntl(w, F_SETPIPE_SZ, pipe_size)
            except OSError:
                pass          # over /proc/sys/fs/pipe-max-size or the user's quota: keep 64 KiB
            self.cap = fcntl.fcntl(w, F_GETPIPE_SZ)

    def _to_copy(self, held):
        self.close_pipe()
        self.held, self.off = (held or None), 0

    def _unspliceable(self):
        """splice said EINVAL: take what the pipe holds and copy from now on."""
        log.debug("proxy: splice not supported between fds %d and %d, copying", self.sfd, self.dfd)
        held = b""
        while len(held) < self.pending:
            held += os.read(self.pipe[0], self.pending - len(held))
        self._to_copy(held)

    def room(self):
        return self.pending < self.cap if self.pipe else self.pending == 0

    def fill(self):
        if self.pipe:
            try:
                n = os.splice(self.sfd, self.pipe[1], self.cap - self.pending, flags=SPLICE_FLAGS)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self._unspliceable()
                if self.pending:
                    raise BlockingIOError from None   # drain what the pipe held first
                return self.fill()
            self.pending += n
            return n
        buf, view = self.scratch()
        n = self.src.recv_into(buf)
        if n:
            try:
                sent = self.dst.send(view[:n], socket.MSG_NOSIGNAL)
            except BlockingIOError:
                sent = 0
            if sent < n:
                self.held, self.off = bytes(view[sent:n]), 0
                self.pending = n - sent
        return n

    def drain(self):
        if self.pipe:
            try:
                n = os.splice(self.pipe[0], self.dfd, self.pending, flags=SPLICE_FLAGS)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self._unspliceable()
                return self.drain()
            self.pending -= n
            return n
        n = self.dst.send(memoryview(self.held)[self.off:], socket.MSG_NOSIGNAL)
        self.off += n
        self.pending -= n
        if not self.pending:
            self.held = None
        return n

    def pump(self):
        """Move until neither side can; then shut dst down if src is done."""
        for _ in range(BUDGET):
            moved = False
            if not self.eof and self.room():
                try:
                    n = self.fill()
                except BlockingIOError:
                    pass
                else:
                    self.eof = n == 0
                    moved = True
            if self.pending:
                try:
                    moved = self.drain() > 0 or moved
                except BlockingIOError:
                    pass
            if not moved:
                break
        if self.eof and not self.pending and not self.shut:
            self.shut = True
            self.dst.shutdown(socket.SHUT_WR)

    def wants_read(self):
        # read only into an empty pipe: an EAGAIN then means "no data", never
        # "pipe full", so a readable source cannot make the loop spin
        return not self.eof and self.pending == 0

    def wants_write(self):
        return self.pending > 0

    def close_pipe(self):
        if self.pipe:
            for fd in self.pipe:
                os.close(fd)
            self.pipe = None


class _TcpConn:
    """An accepted client and its connection to the target."""

    def __init__(self, proxy, listener, client):
        self.proxy, self.listener, self.client = proxy, listener, client
        self.target = None
        self.flows = ()
        self.masks = {}       # socket -> events registered
        self.closed = False
        self.deadline = None  # while connecting

    def start(self):
        ip, port = self.listener.target
        self.target = socket.socket(_family(ip), socket.SOCK_STREAM)
        self.target.setblocking(False)
        err = self.target.connect_ex((ip, port))
        if err == 0:
            self.connected()
        elif err == errno.EINPROGRESS:
            self.deadline = time.monotonic() + self.proxy.connect_timeout
            self.proxy.connecting.add(self)
            self._set(self.target, WRITE, self.on_connect)
        else:
            self.refused(err)

    def refused(self, err):
        log.debug("proxy: %s target %s:%d: %s", self.listener.name, *self.listener.target,
                  os.strerror(err))
        self.close(reset=True)

    def on_connect(self, mask):
        if self.closed:
            return
        self.proxy.connecting.discard(self)
        self.deadline = None
        self._set(self.target, 0, None)
        err = self.target.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.refused(err)
            return
        try:
            self.connected()
        except OSError as e:  # EMFILE for the pipes
            log.warning("proxy: %s: %s", self.listener.name, e)
            self.close(reset=True)

    def connected(self):
        _tune(self.client)
        _tune(self.target)
        args = self.proxy.zero_copy, self.proxy.pipe_size, self.proxy.scratch_buffer
        c2t = _Flow(self.client, self.target, *args)
        try:
            t2c = _Flow(self.target, self.client, *args)
        except OSError:
            c2t.close_pipe()
            raise
        self.flows = (c2t, t2c)
        self.pump(*self.flows)

    def on_client(self, mask):
        if not self.closed:
            c2t, t2c = self.flows
            self.pump(*([c2t] if mask & READ else []), *([t2c] if mask & WRITE else []))

    def on_target(self, mask):
        if not self.closed:
            c2t, t2c = self.flows
            self.pump(*([t2c] if mask & READ else []), *([c2t] if mask & WRITE else []))

    def pump(self, *flows):
        try:
            for flow in flows:
                flow.pump()
            c2t, t2c = self.flows
            if c2t.shut and t2c.shut:
                self.close()
                return
            self._set(self.client, (READ if c2t.wants_read() else 0) | (WRITE if t2c.wants_write() else 0),
                      self.on_client)
            self._set(self.target, (READ if t2c.wants_read() else 0) | (WRITE if c2t.wants_write() else 0),
                      self.on_target)
        except OSError as e:
            # ECONNRESET, EPIPE, ETIMEDOUT from keepalive...: the pair is over
            log.debug("proxy: %s connection: %s", self.listener.name, e)
            self.close(reset=True)

    def _set(self, sock, mask, handler):
        old = self.masks.get(sock, 0)
        if mask == old:
            return
        sel = self.proxy.sel
        if not mask:
            sel.unregister(sock)
            del self.masks[sock]
        elif old:
            sel.modify(sock, mask, handler)
        else:
            sel.register(sock, mask, handler)
        if mask:
            self.masks[sock] = mask

    def close(self, reset=False):
        if self.closed:
            return
        self.closed = True
        self.listener.conns.discard(self)      # first: counted out before the peer hears
        self.proxy.connecting.discard(self)
        for sock in self.masks:
            self.proxy.sel.unregister(sock)
        self.masks.clear()
        for sock in (self.client, self.target):
            if sock is not None:
                _reset(sock) if reset else sock.close()
        for flow in self.flows:
            flow.close_pipe()


class _Listener:
    def __init__(self, proxy, sock, mapping):
        self.proxy, self.sock, self.mapping = proxy, sock, mapping
        self.target = (mapping.target_ip, mapping.target_port)
        self.name = f"{mapping.proto} {mapping.host_ip}:{mapping.host_port}"
        self.closed = False
        self.full_logged = False
        self.paused_until = None

    def warn_full(self, what, cap):
        if not self.full_logged:
            self.full_logged = True
            log.warning("proxy: %s has %d %s, refusing more", self.name, cap, what)


class _TcpListener(_Listener):
    def __init__(self, proxy, sock, mapping):
        super().__init__(proxy, sock, mapping)
        self.conns = set()

    def on_event(self, mask):
        for _ in range(BUDGET):
            if self.closed:
                return
            try:
                client, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                # EMFILE, ENFILE, ENOBUFS: the backlog stays readable; pause
                log.warning("proxy: %s accept: %s", self.name, e)
                self.proxy.pause_listener(self)
                return
            client.setblocking(False)
            if len(self.conns) >= self.proxy.max_conns:
                self.warn_full("connections", self.proxy.max_conns)
                _reset(client)
                continue
            self.full_logged = False
            conn = _TcpConn(self.proxy, self, client)
            self.conns.add(conn)
            try:
                conn.start()
            except OSError as e:
                log.warning("proxy: %s: %s", self.name, e)
                conn.close(reset=True)

    def close(self):
        self.closed = True
        for conn in list(self.conns):
            conn.close(reset=True)
        self.sock.close()


class _Assoc:
    """One UDP client: its own connected socket towards the target."""

    def __init__(self, listener, addr, sock):
        self.listener, self.addr, self.sock = listener, addr, sock
        self.last = time.monotonic()
        self.closed = False

    def on_event(self, mask):
        buf, view = self.listener.proxy.udp_buf
        for _ in range(BUDGET):
            if self.closed:
                return
            try:
                n = self.sock.recv_into(buf)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue      # an ICMP error for an earlier datagram: the target may come up
            except OSError as e:
                log.debug("proxy: %s reply from target: %s", self.listener.name, e)
                self.listener.drop(self)
                return
            self.last = time.monotonic()
            try:
                self.listener.sock.sendto(view[:n], self.addr)
            except OSError as e:
                log.debug("proxy: %s reply to %s dropped: %s", self.listener.name, self.addr, e)


class _UdpListener(_Listener):
    def __init__(self, proxy, sock, mapping):
        super().__init__(proxy, sock, mapping)
        self.assocs = {}

    def on_event(self, mask):
        buf, view = self.proxy.udp_buf
        for _ in range(BUDGET):
            if self.closed:
                return
            try:
                n, addr = self.sock.recvfrom_into(buf)
            except BlockingIOError:
                return
            except OSError as e:
                log.debug("proxy: %s receive: %s", self.name, e)
                continue
            assoc = self.assocs.get(addr) or self.associate(addr)
            if assoc is None:
                continue
            assoc.last = time.monotonic()
            try:
                assoc.sock.send(view[:n])
            except (BlockingIOError, ConnectionRefusedError):
                pass          # dropped, as UDP may
            except OSError as e:
                log.debug("proxy: %s to target: %s", self.name, e)
                self.drop(assoc)

    def associate(self, addr) -> Optional[_Assoc]:
        if len(self.assocs) >= self.proxy.max_assocs:
            self.warn_full("UDP clients", self.proxy.max_assocs)
            return None
        self.full_logged = False
        sock = socket.socket(_family(self.target[0]), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(self.target)
        except OSError as e:
            sock.close()
            log.warning("proxy: %s target %s:%d: %s", self.name, *self.target, e)
            return None
        assoc = _Assoc(self, addr, sock)
        self.assocs[addr] = assoc
        self.proxy.sel.register(sock, READ, assoc.on_event)
        return assoc

    def drop(self, assoc):
        if not assoc.closed:
            assoc.closed = True
            self.assocs.pop(assoc.addr, None)
            self.proxy.sel.unregister(assoc.sock)
            assoc.sock.close()

    def expire(self, now):
        for assoc in [a for a in self.assocs.values() if now - a.last > self.proxy.udp_timeout]:
            log.debug("proxy: %s client %s idle, dropped", self.name, assoc.addr)
            self.drop(assoc)

    def close(self):
        self.closed = True
        for assoc in list(self.assocs.values()):
            self.drop(assoc)
        self.sock.close()


class Proxy:
    """Published ports of every container, served by one thread."""

    def __init__(self, *, zero_copy=True, pipe_size=PIPE_SIZE, max_conns=MAX_CONNS,
                 max_assocs=MAX_ASSOCS, udp_timeout=UDP_TIMEOUT, connect_timeout=CONNECT_TIMEOUT):
        self.zero_copy = zero_copy and hasattr(os, "splice")
        self.pipe_size = pipe_size
        self.max_conns, self.max_assocs = max_conns, max_assocs
        self.udp_timeout, self.connect_timeout = udp_timeout, connect_timeout
        self._lock = threading.Lock()
        self._mappings = {}          # (proto, host_ip, host_port) -> _Listener; callers' view
        self._commands = collections.deque()
        self._thread = None
        self._closed = False
        self._wake_fd = -1
        self._loop_done = False
        # the rest belongs to the loop thread
        self.sel = None
        self.connecting = set()
        self.paused = set()
        self.udp_buf = None
        self._scratch = None
        self._listeners = set()
        self._stopping = False

    # -- the callers' side: any thread --------------------------------------

    def publish(self, proto, host_ip, host_port, target_ip, target_port) -> int:
        """Serve host_ip:host_port (0: a port the kernel picks), forwarding
        to target_ip:target_port; returns the port bound. Raises
        OSError(EADDRINUSE, "Bind for ... port is already allocated") for a
        port in use, another OSError if binding fails otherwise."""
        if proto not in ("tcp", "udp"):
            raise errors.BadParameter(f"invalid protocol: {proto!r}")
        host_ip = _address(host_ip, "host")
        target_ip = _address(target_ip, "target")
        _port(host_port, "host", 0)
        _port(target_port, "target", 1)
        with self._lock:
            if self._closed:
                raise errors.Unavailable("the port proxy is closed")
        sock = _bind(proto, host_ip, host_port)
        port = sock.getsockname()[1]
        mapping = Published(proto, host_ip, port, target_ip, target_port)
        listener = (_TcpListener if proto == "tcp" else _UdpListener)(self, sock, mapping)
        with self._lock:
            if self._closed:
                sock.close()
                raise errors.Unavailable("the port proxy is closed")
            self._mappings[mapping[:3]] = listener
            self._start()
            # the kernel queues connections and datagrams until the loop registers it
            self._commands.append((self._add, listener, None))
        self._wake()
        log.debug("proxy: published %s -> %s:%d", listener.name, target_ip, target_port)
        return port

    def unpublish(self, proto, host_ip, host_port) -> bool:
        """Stop serving the mapping: its listener and every connection or
        association closed before this returns, so the port is free.
        False if nothing was published there."""
        key = (proto, _address(host_ip, "host"), host_port)
        with self._lock:
            listener = self._mappings.pop(key, None)
        if listener is None:
            return False
        self._call(self._remove, listener)
        log.debug("proxy: unpublished %s", listener.name)
        return True

    def published(self) -> list:
        """Every mapping served, sorted."""
        with self._lock:
            return sorted(listener.mapping for listener in self._mappings.values())

    def active(self, proto, host_ip, host_port) -> int:
        """How many TCP connections or UDP associations the mapping has now
        (0 if it is not published): for tests and diagnostics."""
        with self._lock:
            listener = self._mappings.get((proto, _address(host_ip, "host"), host_port))
        if listener is None:
            return 0
        return len(listener.conns if proto == "tcp" else listener.assocs)

    def close(self):
        """Close every mapping and connection and end the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._mappings.clear()
            thread = self._thread
        if thread is not None:
            self._call(self._stop, None)
            thread.join(STOP_WAIT)
            if thread.is_alive():
                log.error("proxy: the loop thread did not stop within %.0f s", STOP_WAIT)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _start(self):
        # under self._lock
        if self._thread is not None:
            return
        self.sel = selectors.DefaultSelector()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.sel.register(self._wake_fd, READ, self._on_wake)
        buf = bytearray(UDP_BUF)
        self.udp_buf = (buf, memoryview(buf))
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self._thread.start()

    def scratch_buffer(self):
        """The copying directions' shared buffer, made on first use (the
        loop thread's alone)."""
        if self._scratch is None:
            buf = bytearray(COPY_SIZE)
            self._scratch = (buf, memoryview(buf))
        return self._scratch

    def _wake(self):
        with self._lock:      # the loop closes the eventfd under the lock: never a reused fd
            if self._wake_fd >= 0:
                os.eventfd_write(self._wake_fd, 1)

    def _call(self, fn, arg):
        """Run fn(arg) in the loop thread and wait for it."""
        if threading.current_thread() is self._thread:
            fn(arg)
            return
        done = threading.Event()
        with self._lock:
            alive = self._thread is not None and not self._loop_done
            if alive:
                self._commands.append((fn, arg, done))
        if not alive:
            return
        self._wake()
        if not done.wait(STOP_WAIT):
            log.error("proxy: the loop thread did not answer within %.0f s", STOP_WAIT)

    # -- the loop thread ---------------------------------------------------

    def _run(self):
        next_sweep = 0.0
        try:
            while not self._stopping:
                for key, mask in self.sel.select(self._timeout()):
                    try:
                        key.data(mask)
                    except Exception:
                        log.exception("proxy: event handler failed")
                        owner = getattr(key.data, "__self__", None)
                        if isinstance(owner, _TcpConn):
                            owner.close(reset=True)
                now = time.monotonic()
                for listener in [l for l in self.paused if l.paused_until <= now]:
                    self.paused.discard(listener)
                    if not listener.closed:
                        self.sel.register(listener.sock, READ, listener.on_event)
                if now >= next_sweep:
                    # timers at the sweep's granularity; a busy loop must
                    # not scan every association on every event
                    next_sweep = now + self._sweep_interval()
                    for conn in [c for c in self.connecting if c.deadline <= now]:
                        conn.refused(errno.ETIMEDOUT)
                    for listener in self._listeners:
                        if isinstance(listener, _UdpListener) and listener.assocs:
                            listener.expire(now)
        except Exception:
            log.exception("proxy: loop failed; every published port is closed")
        finally:
            try:
                self._stop(None)
            except Exception:
                log.exception("proxy: closing the published ports failed")
            with self._lock:
                self._loop_done = True
                commands = list(self._commands)
                self._commands.clear()
                os.close(self._wake_fd)
                self._wake_fd = -1
                self.sel.close()
            for _, _, done in commands:
                if done is not None:
                    done.set()

    def _timeout(self):
        if self.paused:
            return _ACCEPT_PAUSE
        if self.connecting or any(getattr(l, "assocs", None) for l in self._listeners):
            return self._sweep_interval()
        return None

    def _sweep_interval(self):
        return min(1.0, self.udp_timeout / 4, self.connect_timeout / 4)

    def _on_wake(self, mask):
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass
        while True:
            with self._lock:
                if not self._commands:
                    return
                fn, arg, done = self._commands.popleft()
            try:
                fn(arg)
            finally:
                if done is not None:
                    done.set()

    def _add(self, listener):
        self._listeners.add(listener)
        self.sel.register(listener.sock, READ, listener.on_event)

    def _remove(self, listener):
        if listener not in self._listeners:
            return
        self._listeners.discard(listener)
        self.paused.discard(listener)
        if self._registered(listener.sock):
            self.sel.unregister(listener.sock)
        listener.close()

    def _registered(self, sock):
        try:
            self.sel.get_key(sock)
            return True
        except KeyError:
            return False

    def pause_listener(self, listener):
        self.sel.unregister(listener.sock)
        listener.paused_until = time.monotonic() + _ACCEPT_PAUSE
        self.paused.add(listener)

    def _stop(self, _):
        self._stopping = True
        for listener in list(self._listeners):
            self._remove(listener)
