"""Memory cgroups for containers, on cgroup v1 and v2.

Each container gets <mount>/pyd/<id> (v1: under the memory controller).
"""

import os

V1_MEMORY = "/sys/fs/cgroup/memory"
V2_ROOT = "/sys/fs/cgroup"


def version():
    if os.path.exists(os.path.join(V2_ROOT, "cgroup.controllers")):
        return 2
    if os.path.exists(os.path.join(V1_MEMORY, "memory.limit_in_bytes")):
        return 1
    return 0


def memory_limit_supported():
    v = version()
    if v == 2:
        with open(os.path.join(V2_ROOT, "cgroup.controllers")) as f:
            return "memory" in f.read().split()
    return v == 1


def swap_limit_supported():
    v = version()
    if v == 1:
        return os.path.exists(os.path.join(V1_MEMORY, "memory.memsw.limit_in_bytes"))
    if v == 2 and memory_limit_supported():
        # memory.swap.max exists in every non-root cgroup when swap accounting is on.
        for entry in os.scandir(V2_ROOT):
            if entry.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(entry.path, "memory.swap.max")):
                return True
    return False
