"""A container's output: captured from the first byte into a bounded log on
disk, and fanned out to any number of attached clients.

Log format (stdio.log): records of a 16-byte header (stream, 0, 0, 0,
big-endian uint32 length, big-endian uint64 nanoseconds since the epoch
when the daemon read the bytes) and the bytes; the time serves `logs
--since/--until/--timestamps`. The log is bounded, as json-file's max-size
and max-file bound it: past `file_bytes` the current file becomes
stdio.log.1 (.1 becomes .2, and so on; what falls past `files` is dropped).
Logs of format 2 (output.log, without times) are rewritten in this format when the data root is opened (store/format.py).

Slow clients: each subscriber has a bounded queue. The pump never blocks on a
client; when a client falls more than `max_pending` bytes behind it is
dropped (its connection is closed and its thread exits), and the container
and the other clients go on. See docs/attach.md.
"""

import collections
import errno
import logging
import os
import struct
import threading
import time

STDIN, STDOUT, STDERR = 0, 1, 2
log = logging.getLogger(__name__)

_HEAD = struct.Struct(">BxxxIQ")
LOG = "stdio.log"
DEFAULT_MAX_PENDING = 4 << 20


class Dropped(Exception):
    """The subscriber fell too far behind and was cut off."""


class Subscriber:
    def __init__(self, streams, max_pending, on_drop=None):
        self.streams = set(streams)
        self.max_pending = max_pending
        self.on_drop = on_drop  # called once, from the pump, when the client is cut off
        self._q = collections.deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = False

    def push(self, stream, data, ns=0):
        """Called by the pump; never blocks."""
        if stream not in self.streams:
            return
        with self._cond:
            if self._closed:
                return
            dropping = self._pending + len(data) > self.max_pending
            if dropping:
                self.dropped, self._closed = True, True
                self._q.clear()
            else:
                self._q.append((stream, data, ns))
                self._pending += len(data)
            self._cond.notify()
        if dropping and self.on_drop:
            self.on_drop()

    def end(self):
        with self._cond:
            self._closed = True
            self._cond.notify()

    def get(self, timeout=None):
        """Next (stream, bytes, ns); None at the end of output. Raises Dropped."""
        with self._cond:
            while not self._q and not self._closed:
                if not self._cond.wait(timeout):
                    return ("timeout", b"", 0)
            if self.dropped:
                raise Dropped()
            if not self._q:
                return None
            item = self._q.popleft()
            self._pending -= len(item[1])
            return item


def _rotated(path):
    """The rotated files of the log at `path` that exist, newest (.1) first."""
    d, base = os.path.split(path)
    found = []
    try:
        names = os.listdir(d)
    except OSError:
        return []
    for n in names:
        if n.startswith(base + ".") and n[len(base) + 1:].isdigit():
            found.append((int(n[len(base) + 1:]), os.path.join(d, n)))
    return [p for _, p in sorted(found)]


class Output:
    """`file_bytes`: what one log file may hold before it is rotated;
    `files`: how many are kept (LogConfig's max-size and max-file); 0 files
    keeps nothing (the none driver: live output only)."""

    def __init__(self, directory, file_bytes, files=2):
        self.path = os.path.join(directory, LOG)
        self.file_bytes = max(file_bytes, 1024)
        self.files = max(files, 0)
        self._lock = threading.Lock()
        self._subs = []
        self._f = None
        self._size = 0
        self._lost = False      # the last log write failed (a full disk)
        self.ended = True

    def open_for_run(self):
        """A new run appends to the same log (a restarted container keeps its history)."""
        with self._lock:
            if self.files:
                self._f = open(self.path, "ab", buffering=0)
                self._size = self._f.tell()
            self.ended = False

    def _pieces(self, data):
        """`data` cut so that no file grows past `file_bytes`: at the last
        newline that fits (a line is cut only when it alone is longer than a
        file), rotating before each piece that would not fit."""
        while data:
            room = self.file_bytes - self._size - _HEAD.size
            if len(data) <= room:
                yield data
                return
            cut = data.rfind(b"\n", 0, max(room, 0)) + 1
            if cut == 0 and self._size == 0:
                cut = room               # one line longer than a whole file
            if cut == 0:
                self._rotate()
                continue
            yield data[:cut]
            data = data[cut:]

    def _rotate(self):
        """The current file becomes .1 (and .k becomes .k+1) while `files`
        allow; what falls past the last kept file is dropped."""
        self._f.close()
        self._f = None
        for old in _rotated(self.path):
            if int(old.rsplit(".", 1)[1]) >= self.files - 1:
                os.unlink(old)
        for n in range(self.files - 2, 0, -1):
            try:
                os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
            except FileNotFoundError:
                pass
        if self.files > 1:
            os.replace(self.path, self.path + ".1")
        else:
            os.unlink(self.path)
        self._f = open(self.path, "ab", buffering=0)
        self._size = 0

    def write(self, stream, data):
        ns = time.time_ns()
        with self._lock:
            if self._f is not None:
                try:
                    for piece in self._pieces(data):
                        rec = _HEAD.pack(stream, len(piece), ns) + piece
                        if self._f.write(rec) != len(rec):
                            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                        self._size += len(rec)
                    self._lost = False
                except OSError as e:
                    # A full disk: the output still reaches attached clients; the
                    # log misses it (said once per outage), and the pump goes on.
                    # A record written in part is cut off, so the log stays whole.
                    if not self._lost:
                        log.warning("%s: output not logged: %s", self.path, e.strerror or e)
                        self._lost = True
                    if self._f is not None and self._f.closed:
                        self._f = None
                    elif self._f is not None:
                        try:
                            self._f.truncate(self._size)
                        except OSError:
                            pass
            subs = list(self._subs)
        for s in subs:
            s.push(stream, data, ns)

    def end(self):
        """No more output in this run: every subscriber reaches its end."""
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None
            self.ended = True
            subs, self._subs = self._subs, []
        for s in subs:
            s.end()

    def subscribe(self, streams, logs, stream, wait_for_start=False, max_pending=DEFAULT_MAX_PENDING,
                  on_drop=None):
        """Returns (replay bytes iterator, Subscriber or None), taken atomically so
        that no output is lost or repeated between the replay and the live feed.
        With `wait_for_start` (a container not started yet) the subscriber waits
        for the coming run instead of ending at once."""
        with self._lock:
            # Open the files now: a rotation after we let go must not change what we replay.
            marks = []
            for p in (_rotated(self.path)[::-1] + [self.path]) if logs else ():
                try:
                    f = open(p, "rb")
                except FileNotFoundError:
                    continue
                marks.append((f, os.fstat(f.fileno()).st_size))
            sub = None
            if stream:
                sub = Subscriber(streams, max_pending, on_drop)
                if self.ended and not wait_for_start:
                    sub.end()
                else:
                    self._subs.append(sub)
        return _replay(marks, set(streams)), sub

    def unsubscribe(self, sub):
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def subscribers(self):
        with self._lock:
            return len(self._subs)


def _replay(marks, streams):
    """(stream, bytes, ns) of each kept record, oldest first."""
    for f, size in marks:
        with f:
            left = size
            while left >= _HEAD.size:
                head = f.read(_HEAD.size)
                if len(head) < _HEAD.size:
                    break
                stream, n, ns = _HEAD.unpack(head)
                data = f.read(n)
                left -= _HEAD.size + len(data)
                if stream in streams:
                    yield stream, data, ns
    for f, _ in marks:
        f.close()  # when the caller stopped early


def read_log(directory, streams):
    """Everything kept in the log, for a container that is not running."""
    out = Output(directory, 1 << 30)  # replays whatever files are there
    replay, _ = out.subscribe(streams, logs=True, stream=False)
    return replay
