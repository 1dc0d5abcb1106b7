"""Seccomp: Docker's default profile (moby profiles/seccomp/default.json),
or a profile of the same JSON shape, compiled to a classic BPF program that
the shim installs in the child just before it drops its privileges.

The compiler runs in the daemon, never in the child; the child gets the
program's bytes (native.LaunchSpec.seccomp). Syscall numbers come from the
shim (native.syscall_nr), which was built with a table of the compiler's
<sys/syscall.h>, so they are those of the architecture pyd runs on.

The program:
  1. a foreign architecture (seccomp_data.arch, e.g. the 32-bit x86 ABI on
     x86_64) and, on x86_64, an x32 call get the default action (EPERM);
  2. per syscall with rules, in the profile's order: the first rule whose
     argument conditions all hold gives its action;
  3. anything else gets the default action.
Rules whose `includes`/`excludes` (caps, arches, minKernel) do not fit the
container are left out at compile time, as moby does.

Argument comparisons against values that fit 32 bits look at the low 32
bits only: the kernel truncates int arguments (socket's domain,
personality, clone's flags), so a caller cannot slip past `socket(40)` by
setting the high half of the register (libseccomp compares all 64).
"""

import json
import os
import struct

from .. import errors

# struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
_INSN = struct.Struct("=HBBI")

# BPF opcodes (linux/filter.h)
_LD_W_ABS = 0x20
_JEQ_K, _JGT_K, _JGE_K, _JSET_K = 0x15, 0x25, 0x35, 0x45
_AND_K = 0x54
_RET_K = 0x06

# seccomp_data offsets and return values (linux/seccomp.h)
_NR, _ARCH, _ARGS = 0, 4, 16
RET_KILL_PROCESS, RET_KILL_THREAD, RET_TRAP = 0x80000000, 0x00000000, 0x00030000
RET_ERRNO, RET_TRACE, RET_LOG, RET_ALLOW = 0x00050000, 0x7ff00000, 0x7ffc0000, 0x7fff0000
_X32_BIT = 0x40000000
_X86_64 = 0xC000003E
MAX_INSNS = 4096

EPERM, ENOSYS = 1, 38

CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
    "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}

# moby's names for architectures, as the profile's "arches" use them
_ARCH_NAMES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "s390x": "s390x",
               "ppc64le": "ppc64le", "riscv64": "riscv64", "i686": "x86", "i386": "x86"}

_ALLOWED = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create
epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2
execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex
futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32
lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap
name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal
pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink
readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename
renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx symlink
symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname
unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
""".split()

_CLONE_NS_FLAGS = 0x7E020000    # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def _allow(names, **extra):
    return {"names": names, "action": "SCMP_ACT_ALLOW", **extra}


def _with_cap(cap, names):
    return _allow(names, includes={"caps": [cap]})


# The rules of moby's default.json, in its order (facts of the profile).
DEFAULT_PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": EPERM,
    "syscalls": [
        _allow(_ALLOWED),
        _allow(["process_vm_readv", "process_vm_writev", "ptrace"], includes={"minKernel": "4.8"}),
        _allow(["socket"], args=[{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]),
        *[_allow(["personality"], args=[{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}])
          for v in (0, 8, 131072, 131080, 4294967295)],
        _allow(["sync_file_range2", "swapcontext"], includes={"arches": ["ppc64le"]}),
        _allow(["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush",
                "set_tls"], includes={"arches": ["arm", "arm64"]}),
        _allow(["arch_prctl"], includes={"arches": ["amd64", "x32"]}),
        _allow(["modify_ldt"], includes={"arches": ["amd64", "x32", "x86"]}),
        _allow(["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
               includes={"arches": ["s390", "s390x"]}),
        _allow(["riscv_flush_icache"], includes={"arches": ["riscv64"]}),
        _with_cap("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
        _with_cap("CAP_SYS_ADMIN", ["bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen",
                                    "fspick", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
                                    "open_tree", "perf_event_open", "quotactl", "quotactl_fd",
                                    "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2",
                                    "unshare"]),
        _allow(["clone"], args=[{"index": 0, "value": _CLONE_NS_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
               excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}),
        _allow(["clone"], args=[{"index": 1, "value": _CLONE_NS_FLAGS, "op": "SCMP_CMP_MASKED_EQ"}],
               includes={"arches": ["s390", "s390x"]}, excludes={"caps": ["CAP_SYS_ADMIN"]}),
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        _with_cap("CAP_SYS_BOOT", ["reboot"]),
        _with_cap("CAP_SYS_CHROOT", ["chroot"]),
        _with_cap("CAP_SYS_MODULE", ["delete_module", "init_module", "finit_module"]),
        _with_cap("CAP_SYS_PACCT", ["acct"]),
        _with_cap("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                                     "process_vm_writev", "ptrace"]),
        _with_cap("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
        _with_cap("CAP_SYS_TIME", ["settimeofday", "stime", "clock_settime", "clock_settime64"]),
        _with_cap("CAP_SYS_TTY_CONFIG", ["vhangup"]),
        _with_cap("CAP_SYS_NICE", ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
        _with_cap("CAP_SYSLOG", ["syslog"]),
        _with_cap("CAP_BPF", ["bpf"]),
        _with_cap("CAP_PERFMON", ["perf_event_open"]),
    ],
}


def parse_profile(text):
    """A profile the client sent (SecurityOpt "seccomp=<json>", the file's
    content as the docker CLI sends it): checked here, so that a bad one is
    a 400 at create, not a failed start."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise errors.BadParameter(f"invalid seccomp profile: {e}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise errors.BadParameter("invalid seccomp profile: a JSON object with a defaultAction is needed")
    if not isinstance(profile.get("syscalls") or [], list):
        raise errors.BadParameter("invalid seccomp profile: syscalls must be a list")
    _action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict):
            raise errors.BadParameter("invalid seccomp profile: each syscalls entry must be an object")
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise errors.BadParameter("invalid seccomp profile: names must be a list of strings")
        _action(rule.get("action") or "", rule.get("errnoRet"))
        for a in rule.get("args") or []:
            _check_arg(a)
    return profile


def _action(name, errno_ret=None):
    if errno_ret is not None and (not isinstance(errno_ret, int) or not 0 <= errno_ret < 4096):
        raise errors.BadParameter(f"invalid seccomp profile: errnoRet {errno_ret!r}")
    table = {"SCMP_ACT_ALLOW": RET_ALLOW, "SCMP_ACT_KILL": RET_KILL_THREAD, "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
             "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS, "SCMP_ACT_TRAP": RET_TRAP, "SCMP_ACT_LOG": RET_LOG,
             "SCMP_ACT_ERRNO": RET_ERRNO | (EPERM if errno_ret is None else errno_ret),
             "SCMP_ACT_TRACE": RET_ERRNO | ENOSYS}   # nobody traces: as a tracer-less kernel answers
    if name not in table:
        raise errors.BadParameter(f"invalid seccomp profile: unknown action {name!r}")
    return table[name]


_OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ")


def _check_arg(a):
    if not isinstance(a, dict) or a.get("op") not in _OPS:
        raise errors.BadParameter(f"invalid seccomp profile: bad argument condition {a!r}")
    if not isinstance(a.get("index"), int) or not 0 <= a["index"] <= 5:
        raise errors.BadParameter("invalid seccomp profile: an argument index is 0 to 5")
    for k in ("value", "valueTwo"):
        v = a.get(k, 0)
        if not isinstance(v, int) or not 0 <= v < 1 << 64:
            raise errors.BadParameter(f"invalid seccomp profile: {k} must be an unsigned 64-bit integer")


def host_arch():
    return _ARCH_NAMES.get(os.uname().machine, os.uname().machine)


def _kernel():
    parts = []
    for p in os.uname().release.split("-")[0].split(".")[:2]:
        parts.append(int("".join(ch for ch in p if ch.isdigit()) or 0))
    return tuple(parts)


def _applies(rule, caps, arch):
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    has = lambda c: c in CAPS and caps >> CAPS[c] & 1  # noqa: E731
    if inc.get("caps") and not all(has(c) for c in inc["caps"]):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("minKernel"):
        want = tuple(int(x) for x in str(inc["minKernel"]).split(".")[:2])
        if _kernel() < want:
            return False
    if exc.get("caps") and any(has(c) for c in exc["caps"]):
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    return True


_cache = {}             # (profile key, caps) -> program; a start compiles nothing twice
_CACHE_MAX = 64


def program_for(profile, caps, syscall_nr, audit_arch):
    """compile_profile, remembered per (profile, capability set)."""
    key = ("default" if profile is DEFAULT_PROFILE else json.dumps(profile, sort_keys=True), caps)
    got = _cache.get(key)
    if got is None:
        got = compile_profile(profile, caps, syscall_nr, audit_arch)
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[key] = got
    return got


def compile_profile(profile, caps, syscall_nr, audit_arch, arch=None):
    """The BPF program (bytes of struct sock_filter[]) for `profile` and a
    container holding capability set `caps`. `syscall_nr(name)` gives a
    number or -1 (a name this architecture lacks is skipped, as libseccomp
    does)."""
    arch = arch or host_arch()
    default = _action(profile["defaultAction"], profile.get("defaultErrnoRet"))
    by_nr = {}          # nr -> [(conditions, action)], in profile order
    for rule in profile.get("syscalls") or []:
        if not _applies(rule, caps, arch):
            continue
        action = _action(rule.get("action") or "", rule.get("errnoRet"))
        conds = list(rule.get("args") or [])
        for name in rule.get("names") or ([rule["name"]] if rule.get("name") else []):
            nr = syscall_nr(name)
            if nr >= 0:
                by_nr.setdefault(nr, []).append((conds, action))
    prog = [(_LD_W_ABS, 0, 0, _ARCH)]
    if audit_arch:
        prog += [(_JEQ_K, 1, 0, audit_arch), (_RET_K, 0, 0, default)]
    prog.append((_LD_W_ABS, 0, 0, _NR))
    if audit_arch == _X86_64:
        prog += [(_JGE_K, 0, 1, _X32_BIT), (_RET_K, 0, 0, default)]
    for nr in sorted(by_nr):
        body = _syscall_body(by_nr[nr], default)
        if len(body) > 255:
            raise errors.BadParameter(f"seccomp profile: too many conditions on syscall {nr}")
        prog.append((_JEQ_K, 0, len(body), nr))
        prog += body
    prog.append((_RET_K, 0, 0, default))
    if len(prog) > MAX_INSNS:
        raise errors.BadParameter(f"seccomp profile: {len(prog)} BPF instructions, more than {MAX_INSNS}")
    return b"".join(_INSN.pack(*insn) for insn in prog)


def _syscall_body(rules, default):
    """Instructions after a matched syscall number: each rule's conditions,
    then its action; the last instruction returns (A is clobbered)."""
    out = []
    for conds, action in rules:
        if not conds:
            out.append((_RET_K, 0, 0, action))
            return out          # later rules for this syscall cannot be reached
        checks = [_condition(c) for c in conds]
        # Each check is a list whose jumps use FAIL (-1) for "condition false".
        block = []
        for chk in checks:
            block += chk
        block.append((_RET_K, 0, 0, action))
        out += _resolve(block)
        # A rule that fails falls through to the next rule; A must hold what
        # each rule expects (it reloads what it needs), so no reload here.
    out.append((_RET_K, 0, 0, default))
    return out


_FAIL = -1


def _resolve(block):
    """Turn FAIL jump targets into offsets to the instruction after the block."""
    n = len(block)
    out = []
    for i, (code, jt, jf, k) in enumerate(block):
        to_end = n - i - 1
        jt = to_end if jt == _FAIL else jt
        jf = to_end if jf == _FAIL else jf
        if jt > 255 or jf > 255:
            raise errors.BadParameter("seccomp profile: a rule with too many conditions")
        out.append((code, jt, jf, k))
    return out


def _condition(c):
    """Instructions that fall through when condition `c` holds and jump to
    FAIL when it does not."""
    off = _ARGS + 8 * c["index"]
    lo_off, hi_off = (off, off + 4) if _little() else (off + 4, off)
    op, v = c["op"], c.get("value", 0)
    vlo, vhi = v & 0xffffffff, v >> 32
    wide = vhi != 0 or (op == "SCMP_CMP_MASKED_EQ" and c.get("valueTwo", 0) >> 32)
    if op == "SCMP_CMP_MASKED_EQ":
        mask, want = v, c.get("valueTwo", 0)
        out = [(_LD_W_ABS, 0, 0, lo_off), (_AND_K, 0, 0, mask & 0xffffffff), (_JEQ_K, 0, _FAIL, want & 0xffffffff)]
        if mask >> 32 or want >> 32:
            out += [(_LD_W_ABS, 0, 0, hi_off), (_AND_K, 0, 0, mask >> 32), (_JEQ_K, 0, _FAIL, want >> 32)]
        return out
    if not wide:
        # Low 32 bits only (see the module's docstring).
        ld = (_LD_W_ABS, 0, 0, lo_off)
        if op == "SCMP_CMP_EQ":
            return [ld, (_JEQ_K, 0, _FAIL, vlo)]
        if op == "SCMP_CMP_NE":
            return [ld, (_JEQ_K, _FAIL, 0, vlo)]
        if op == "SCMP_CMP_GT":
            return [ld, (_JGT_K, 0, _FAIL, vlo)]
        if op == "SCMP_CMP_GE":
            return [ld, (_JGE_K, 0, _FAIL, vlo)]
        if op == "SCMP_CMP_LT":
            return [ld, (_JGE_K, _FAIL, 0, vlo)]
        return [ld, (_JGT_K, _FAIL, 0, vlo)]          # LE
    # 64-bit comparisons: the high word decides unless equal.
    hi, lo = (_LD_W_ABS, 0, 0, hi_off), (_LD_W_ABS, 0, 0, lo_off)
    if op == "SCMP_CMP_EQ":
        return [hi, (_JEQ_K, 0, _FAIL, vhi), lo, (_JEQ_K, 0, _FAIL, vlo)]
    if op == "SCMP_CMP_NE":
        # true if hi != vhi, or lo != vlo
        return [hi, (_JEQ_K, 0, 2, vhi), lo, (_JEQ_K, _FAIL, 0, vlo)]
    # GT/GE/LT/LE: hi > vhi (or <) decides; equal hi compares lo.
    if op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
        lo_jump = (_JGT_K if op == "SCMP_CMP_GT" else _JGE_K, 0, _FAIL, vlo)
        return [hi, (_JGT_K, 3, 0, vhi), (_JEQ_K, 0, _FAIL, vhi), lo, lo_jump]
    lo_jump = (_JGE_K if op == "SCMP_CMP_LT" else _JGT_K, _FAIL, 0, vlo)
    return [hi, (_JGE_K, 0, 3, vhi), (_JEQ_K, 0, _FAIL, vhi), lo, lo_jump]


def _little():
    import sys
    return sys.byteorder == "little"
