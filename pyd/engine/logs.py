"""`GET /containers/{id}/logs`: a container's kept output as log lines, with
the time each was read, filtered by since/until and cut to the last `tail`
lines, then (follow) the live output until the container stops.

A line is what Docker's json-file driver keeps as one entry: the bytes up
to and including a newline (a chunk without one is a line of its own).
"""

import collections

from ..runtime.stdio import STDERR, STDOUT


def lines(records):
    """(stream, bytes, ns) records -> the same, one line each."""
    for stream, data, ns in records:
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            end = len(data) if end < 0 else end + 1
            yield stream, data[start:end], ns
            start = end


def select(output, stdout, stderr, follow, tail, since_ns, until_ns, running):
    """A generator of (stream, line, ns), and None each second a follow waits;
    `output` is the runtime's Output."""
    streams = [s for s, on in ((STDOUT, stdout), (STDERR, stderr)) if on]
    live = follow and running
    replay, sub = output.subscribe(streams, logs=True, stream=live)

    def keep(ns):
        return (since_ns is None or ns >= since_ns) and (until_ns is None or ns <= until_ns)

    def gen():
        try:
            kept = (item for item in lines(replay) if keep(item[2]))
            if tail is not None and tail >= 0:
                kept = iter(collections.deque(kept, maxlen=tail)) if tail else iter(())
            yield from kept
            while sub is not None:
                item = sub.get(timeout=1.0)
                if item is None:
                    return
                if item[0] == "timeout":
                    yield None  # a tick: the API checks that its client is still there
                    continue
                if until_ns is not None and item[2] > until_ns:
                    return
                for line in lines([item]):
                    if keep(line[2]):
                        yield line
        finally:
            if sub is not None:
                output.unsubscribe(sub)
                sub.end()
    return gen()
