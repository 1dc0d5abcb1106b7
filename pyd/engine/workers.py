"""A few jobs on a few threads, their messages yielded as they come: what
pull (layers downloaded three at a time) and push (uploaded three at a
time) share.

    results = yield from workers.run(jobs, work, n, cancel, events, "pull")

`work(job)` runs on a worker thread and puts its messages on `events` (a
queue.Queue); the generator yields them, and a None tick every half second
of silence so that a stream can notice a client that left. The first
failure sets `cancel` (which `work` watches), stops the others and is
raised; a generator closed early (the client went away) sets it too.
Returns {job index: what work returned}."""

import queue
import threading

_DONE = object()            # a worker's last message: the generator never waits out a poll at the end
POLL = 0.5


def run(jobs, work, n, cancel, events, name):
    todo = list(enumerate(jobs))
    results, failures = {}, []
    lock = threading.Lock()

    def worker():
        try:
            while not cancel.is_set():
                with lock:
                    if not todo or failures:
                        return
                    i, job = todo.pop(0)
                results[i] = work(job)
        except Exception as e:  # handed to the generator, which stops the others
            with lock:
                failures.append(e)
            cancel.set()
        finally:
            events.put(_DONE)

    threads = [threading.Thread(target=worker, name=f"{name}-{k}", daemon=True)
               for k in range(min(n, len(todo)))]
    for t in threads:
        t.start()
    running = len(threads)
    try:
        while running:
            try:
                msg = events.get(timeout=POLL)
            except queue.Empty:
                yield None
                continue
            if msg is _DONE:
                running -= 1
            else:
                yield msg
    finally:
        if running:
            cancel.set()    # we are leaving early: an error, or the client went away
        for t in threads:
            t.join(timeout=60)
    if failures:
        raise failures[0]
    return results
