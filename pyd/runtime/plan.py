"""The launch plan: everything the runtime needs to start one container's
process, resolved once by the engine (engine.plan) at start."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


@dataclass
class LaunchPlan:
    cid: str
    rootfs: str                     # the mount point: containers/<id>/rootfs
    argv: List[str]
    env: List[str]                  # "NAME=value", in order
    cwd: str = "/"
    hostname: str = ""
    uid: int = 0
    gid: int = 0
    groups: List[int] = field(default_factory=list)
    # (host source, container target, read-only), parents before children;
    # /etc/hostname, /etc/hosts and /etc/resolv.conf included.
    mounts: List[Tuple[str, str, bool]] = field(default_factory=list)
    tty: bool = False
    open_stdin: bool = False
    memory: int = 0                 # bytes; 0 = no limit
    memory_swap: int = 0            # memory + swap; -1 = unlimited swap
    # How the root is made, from the storage driver (fs.drivers.launch_args):
    # lowerdirs/upperdir/workdir/layers_dir for overlay, rootfs_source for vfs.
    storage: Dict[str, object] = field(default_factory=dict)
    # The network the process joins. pyd has one kind today: a private
    # network namespace with only loopback, made by the shim.
    network: Optional[str] = "loopback"
