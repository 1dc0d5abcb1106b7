"""The launch plan: everything the runtime needs to start one container's
process, resolved once by the engine (engine.plan) at start."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from . import caps as capabilities


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
    # The network the process joins: "none", a new private network namespace
    # with only lo up; "host", the daemon's own; "join", the namespace open
    # at netns_fd (one the engine made and wired to its networks, or another
    # container's for container:<id>). The engine keeps netns_fd open.
    network: Optional[str] = "none"
    netns_fd: Optional[int] = None
    # HostConfig launch options, resolved by engine.plan.
    # Capability set (bounding = permitted = effective): names ("CAP_KILL") or numbers.
    caps: List[Union[str, int]] = field(default_factory=lambda: list(capabilities.DEFAULT))
    privileged: bool = False        # all caps, no masked paths, /sys rw, the host's devices
    readonly_rootfs: bool = False
    init: bool = False              # run argv under pyd-init (pid 1, reaps, forwards signals)
    no_new_privs: bool = True       # PR_SET_NO_NEW_PRIVS (SecurityOpt no-new-privileges)
    seccomp: Optional[dict] = None  # a seccomp profile (runtime.seccomp), None: unconfined
    # (container target, options "size=64m,mode=1777"), as Docker's Tmpfs.
    tmpfs: List[Tuple[str, str]] = field(default_factory=list)
    # Limits the cgroups apply (runtime.cgroups); 0 = none.
    pids_limit: int = 0
    cpu_shares: int = 0
    cpu_quota: int = 0              # microseconds per cpu_period
    cpu_period: int = 0
