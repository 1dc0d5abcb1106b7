"""Linux capabilities by name, in kernel numbering (linux/capability.h), and
the sets the runtime hands the shim as a bit mask."""

# Index = capability number.
NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

# Docker's default set (moby's oci/caps.DefaultCapabilities), in its order.
DEFAULT = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


def number(name):
    """'CAP_NET_ADMIN' -> 12; KeyError for a name the table does not have."""
    try:
        return NAMES.index(name)
    except ValueError:
        raise KeyError(name) from None


def mask(caps):
    """Names (or numbers) -> the bit mask the shim takes."""
    bits = 0
    for cap in caps:
        bits |= 1 << (cap if isinstance(cap, int) else number(cap))
    return bits


def last_cap():
    """The highest capability this kernel has (/proc/sys/kernel/cap_last_cap)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return min(int(f.read()), len(NAMES) - 1)
    except (OSError, ValueError):
        return NAMES.index("CAP_AUDIT_READ")  # every kernel since 3.16 has these


def known():
    """Every capability name both pyd and the running kernel know, in order."""
    return list(NAMES[:last_cap() + 1])


def own_bounding():
    """The daemon's own bounding set (a mask): no container can get more."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return mask(NAMES)


def supported():
    """Every capability name pyd, the running kernel and the daemon itself
    have, in order: what "ALL" and Privileged mean."""
    own = own_bounding()
    return [n for n in known() if own >> number(n) & 1]
