"""Network namespaces the daemon makes and holds by fd.

A container on a bridge gets its namespace from the daemon, not from its
own clone: the daemon makes it, wires it (veth end, addresses, routes)
while nothing runs inside, and the container's process joins it as its
first step (native/shim.h, netns_fd). The fd held here is the namespace's
life: once the process has exited and the fd is closed, the kernel frees
it and any veth end still inside, so a crashed daemon leaves nothing of it
behind. No bind mount under /run is needed for that, and none is made.
"""

import os
import threading

from .. import native
from .netlink import CLONE_NEWNET


def new():
    """The fd (O_CLOEXEC) of a new, empty network namespace.

    unshare(CLONE_NEWNET) applies to the calling thread only (the network
    namespace is per task), so it runs on a short-lived thread of its own
    that opens its new namespace and ends; no other code runs there."""
    out = {}

    def run():
        try:
            native.unshare(CLONE_NEWNET)
            out["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            out["error"] = OSError(e.errno, f"new network namespace: {e.strerror}")

    t = threading.Thread(target=run, name="pyd-netns-new", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["fd"]


def of_pid(pid):
    """The fd (O_CLOEXEC) of the network namespace process `pid` is in."""
    return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def close(fd):
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
