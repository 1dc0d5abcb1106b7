/*
 * shim.h - the C half of pyd's container launcher.
 *
 * pyd_spawn() clones a child into new mount, uts, ipc, pid and net
 * namespaces and sets it up entirely in C between clone and execve: no
 * Python, no malloc, no stdio in the child.  Everything the child needs
 * (argv, envp, paths, the overlay option string) is prepared by the parent
 * before the clone.
 *
 * Protocol between the child and the parent (pyd/native.py):
 *   - error pipe (CLOEXEC): the child writes struct pyd_report records.
 *     First a PYD_STEP_READY record once the root is set up and it waits
 *     for the go-ahead; after that either nothing (EOF: execve succeeded,
 *     the pipe was closed by CLOEXEC) or one failure record.  A failure
 *     record is always followed by _exit(127).
 *   - sync pipe (not with spec->vfork, where the parent is suspended until
 *     exec): the parent writes one byte once it has placed the child in
 *     its cgroups (or, with spec->cgroup_fds, once it is ready: the child
 *     joined them itself).  EOF instead means "abort": the child exits quietly.
 *   - tty socket (only with spec->tty): the child sends the pty master fd
 *     with SCM_RIGHTS before the READY record.
 *
 * native/build.py feeds the declarations below to cffi as they are.
 */
#ifndef PYD_SHIM_H
#define PYD_SHIM_H

#include <sys/types.h>

/* Steps of the child's setup.  The numbering is part of the protocol with
 * pyd/native.py, which turns (step, errno, index) into an OSError. */
enum pyd_step {
    PYD_STEP_READY = 0,        /* not a failure: setup done, waiting     */
    PYD_STEP_MAKE_PRIVATE = 1, /* mount("", "/", MS_REC|MS_PRIVATE)      */
    PYD_STEP_ROOTFS,           /* overlay (or bind) mount onto rootfs    */
    PYD_STEP_MOUNT,            /* /proc /dev /dev/pts ... (index: table) */
    PYD_STEP_DEVICES,          /* mknod/symlinks in /dev (index: table)  */
    PYD_STEP_MASK,             /* masked paths (index: table)            */
    PYD_STEP_READONLY,         /* read-only paths (index: table)         */
    PYD_STEP_BIND,             /* spec bind mounts (index: spec->binds)  */
    PYD_STEP_LOOPBACK,         /* bring "lo" up in the new net ns        */
    PYD_STEP_PIVOT_ROOT,       /* pivot_root + detach old root           */
    PYD_STEP_HOSTNAME,         /* sethostname                            */
    PYD_STEP_CWD,              /* mkdir -p + chdir working directory     */
    PYD_STEP_TTY,              /* pty allocation / controlling terminal  */
    PYD_STEP_STDIO,            /* dup2 of the spec's stdio fds           */
    PYD_STEP_SYNC,             /* waiting for the parent's go-ahead      */
    PYD_STEP_CAP_BOUNDING,     /* PR_CAPBSET_DROP                        */
    PYD_STEP_SETGROUPS,
    PYD_STEP_SETRESGID,
    PYD_STEP_SETRESUID,
    PYD_STEP_CAPSET,
    PYD_STEP_CLOSE_FDS,
    PYD_STEP_EXEC,
    PYD_STEP_CGROUP,           /* joining a cgroup (index: cgroup_fds)   */
    /* pyd_exec (native/exec.c) */
    PYD_STEP_SETNS,            /* setns (index: exec spec's ns_fds)      */
    PYD_STEP_EXEC_CLONE,       /* cloning the process inside the pid ns  */
    PYD_STEP_EXEC_PID,         /* not a failure: index is the new pid    */
    PYD_STEP_NO_NEW_PRIVS,     /* prctl(PR_SET_NO_NEW_PRIVS)             */
    /* launch options (HostConfig) */
    PYD_STEP_TMPFS,            /* tmpfs mounts (index: spec->tmpfs)      */
    PYD_STEP_HOST_DEVICE,      /* privileged: host devices (index: spec->devices) */
    PYD_STEP_ROOT_READONLY,    /* remount "/" read-only (ReadonlyRootfs) */
    PYD_STEP_INIT,             /* exec of pyd-init, or pyd-init's fork    */
    PYD_STEP_NETNS,            /* setns into spec->netns_fd               */
    PYD_STEP_SECCOMP,          /* seccomp(SECCOMP_SET_MODE_FILTER)        */
    PYD_STEP_COUNT
};

/* One bind mount: host path `source` onto container path `target`. */
struct pyd_bind {
    const char *source;
    const char *target;
    int readonly;
};

/* One tmpfs mount on container path `target`; flags and data are mount(2)'s
 * (MS_NOSUID... and "size=64m,mode=1777").  It is mounted just before bind
 * number `before_bind` (nbinds: after all of them), so that mounts nest in
 * the order of their targets whichever list they came from. */
struct pyd_tmpfs {
    const char *target;
    unsigned long flags;
    const char *data;
    int before_bind;
};

/* One device node made in the container's /dev (privileged containers get
 * the host's): `path` is absolute and under /dev; mode has the S_IFCHR or
 * S_IFBLK type bits and the permissions. */
struct pyd_device {
    const char *path;
    unsigned int mode;
    unsigned int major;
    unsigned int minor;
    uid_t uid;
    gid_t gid;
};

struct pyd_spec {
    const char *rootfs;          /* absolute host path of the mount point   */
    const char *hostname;
    char *const *argv;           /* NULL-terminated, argv[0] non-NULL       */
    char *const *envp;           /* NULL-terminated                          */
    const char *cwd;             /* absolute, inside the container          */
    uid_t uid;
    gid_t gid;
    int ngroups;
    const gid_t *groups;
    /* overlay: "lowerdir=...,upperdir=...,workdir=..." or NULL            */
    const char *overlay_data;
    /* if set, chdir here before the overlay mount (relative lowerdirs)    */
    const char *layers_dir;
    /* copy driver: bind this onto rootfs when overlay_data is NULL; when
     * both are NULL rootfs is bind-mounted onto itself                    */
    const char *rootfs_source;
    int nbinds;
    const struct pyd_bind *binds;
    int tty;
    int stdin_fd;                /* -1: the container's /dev/null           */
    int stdout_fd;
    int stderr_fd;
    int cap_last_cap;            /* from /proc/sys/kernel/cap_last_cap; <=0: probe */
    /* cgroup v1 "tasks" files, open for writing: the child writes "0" to
     * each as its very first step, joining those cgroups itself.  Moving
     * oneself as a single thread skips the kernel's global threadgroup
     * lock, whose first writer waits out an RCU grace period (5-20 ms
     * here); a parent writing the child's pid to cgroup.procs pays it.    */
    int ncgroup_fds;
    const int *cgroup_fds;
    /* 1: clone with CLONE_VM|CLONE_VFORK, as posix_spawn does: the child
     * runs on its own stack in the parent's memory, and the calling thread
     * waits until it has exec'd or died.  Nothing to copy (a fork-like clone
     * of the daemon copies its page tables, then pays copy-on-write faults
     * on both sides until exec).  There is no go-ahead then: the parent can
     * do nothing between setup and exec (no cgroup joining by pid).       */
    int vfork;
    /* Launch options (Docker's HostConfig). */
    /* Bounding, permitted and effective set, bit n for capability n; bits
     * above cap_last_cap are ignored.  0 is a valid set (CapDrop ALL).    */
    unsigned long long caps;
    int privileged;              /* no masked or read-only paths, /sys rw */
    int readonly_rootfs;         /* "/" read-only once everything is set up */
    int share_netns;             /* 1: no new net namespace (NetworkMode host) */
    /* -1, or an fd of a network namespace the child joins (setns) as its
     * first step instead of getting a new one: one the daemon made and
     * wired (a bridge's veth end, addresses, routes) before the start, or
     * another container's (NetworkMode container:<id>).  The netns must be
     * joined before /sys is mounted: sysfs shows the mounter's devices. */
    int netns_fd;
    int ntmpfs;                  /* ordered by before_bind                */
    const struct pyd_tmpfs *tmpfs;
    int ndevices;                /* nodes made in /dev after the defaults */
    const struct pyd_device *devices;
    /* -1, or an fd of the pyd-init executable (see pyd_init_image): it is
     * exec'd with the error pipe as its fd 3, and argv starts with its own
     * arguments: "pyd-init -- <cmd...>" (pid 1, runs cmd as its child) or
     * "pyd-init --exec -- <cmd...>" (execs cmd at once; native/init.c).   */
    int init_fd;
    /* Hardening, applied just before the privileges are dropped. */
    int no_new_privs;            /* prctl(PR_SET_NO_NEW_PRIVS)             */
    /* A classic BPF program (struct sock_filter[seccomp_len], built by
     * pyd/runtime/seccomp.py), or seccomp_len 0 for none (unconfined).   */
    const void *seccomp_filter;
    int seccomp_len;
};

/* What the parent gets back from pyd_spawn. */
struct pyd_result {
    int pid;
    int err_fd;     /* read end of the error pipe (struct pyd_report records) */
    int sync_fd;    /* write end of the go-ahead pipe                          */
    int tty_sock;   /* parent end of the socketpair, -1 without tty           */
};

/* Record written by the child on the error pipe. */
struct pyd_report {
    int step;       /* enum pyd_step                                    */
    int err;        /* errno, 0 for PYD_STEP_READY                      */
    int index;      /* which table/bind entry failed, -1 if none        */
};

/* Clone and start the child.  Returns 0, or -errno if the parent-side
 * setup (pipes, clone) failed; in that case no fd is left open. */
int pyd_spawn(const struct pyd_spec *spec, struct pyd_result *res);

/* Receive one fd sent with SCM_RIGHTS.  Returns the fd (CLOEXEC), or
 * -errno; -ECONNRESET when the peer closed without sending one. */
int pyd_recv_fd(int sock);
int pyd_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const char *data);
int pyd_umount(const char *target, int flags);
int pyd_set_pdeathsig(int sig);
/* syncfs(2) of the filesystem holding `fd`: 0 or -errno. */
int pyd_syncfs(int fd);

/* The pyd-init executable built into the shim (native/init.c, linked
 * statically, so it runs in any image): the caller writes these bytes to a
 * sealed memfd and passes it as spec->init_fd. */
const unsigned char *pyd_init_image(size_t *size);

/* Name of a step, e.g. "pivot_root"; "unknown" when out of range. */
const char *pyd_step_name(int step);

/* For the table-driven steps (MOUNT, DEVICES, MASK, READONLY) the
 * container path of entry `index`; NULL otherwise. */
const char *pyd_step_object(int step, int index);

/*
 * pyd_exec() starts a process inside a running container (docker exec).
 *
 * The parent opens the container init's /proc/<pid>/ns/ files and its
 * cgroups' files before the call.  pyd_exec clones an intermediate child
 * that joins the cgroups (writes "0" to each cgroup_fds entry), setns()
 * into each of ns_fds in order (mnt last: afterwards "/" is the
 * container's), then clones the exec process itself with CLONE_PARENT: a
 * setns into a pid namespace only applies to children, and CLONE_PARENT
 * makes the daemon, not the intermediate, its parent.  The intermediate
 * reports that pid and exits; the caller reaps it (res->pid).
 *
 * The exec process: chdir(cwd) (no mkdir: a missing directory is an
 * error), stdio fds or a new pty from the container's /dev/ptmx (the
 * master goes to the parent over res->tty_sock with SCM_RIGHTS),
 * setsid, no_new_privs if asked, the bounding set reduced to `caps`,
 * setgroups/setresgid/setresuid, capset(caps) for uid 0, fds closed,
 * signals reset, execve with PATH search in envp.
 *
 * Error pipe (res->err_fd, CLOEXEC): records from both processes: one
 * PYD_STEP_EXEC_PID record (index: the exec process's pid as the daemon
 * sees it) and at most one failure record; EOF once both are gone or
 * exec'd.  There is no sync pipe (res->sync_fd is -1).
 */
struct pyd_exec_spec {
    char *const *argv;           /* NULL-terminated, argv[0] non-NULL       */
    char *const *envp;           /* NULL-terminated                          */
    const char *cwd;             /* absolute, inside the container          */
    uid_t uid;
    gid_t gid;
    int ngroups;
    const gid_t *groups;
    int nns_fds;                 /* /proc/<init>/ns/ fds, joined in order   */
    const int *ns_fds;
    int ncgroup_fds;             /* files to write "0" to (tasks, v1)       */
    const int *cgroup_fds;
    int tty;
    int stdin_fd;                /* -1: /dev/null (without tty)             */
    int stdout_fd;
    int stderr_fd;
    unsigned long long caps;     /* bounding set; also effective/permitted for uid 0 */
    int cap_last_cap;            /* from /proc/sys/kernel/cap_last_cap; <=0: probe */
    int no_new_privs;
    int init_fd;                 /* sealed pyd-init to pass through (argv starts with it), or -1 */
    const void *seccomp_filter;  /* as in pyd_spec */
    int seccomp_len;
};

/* The number of system call `name` on the architecture this shim was built
 * for, or -1 if it has none (a table made by native/build.py). */
int pyd_syscall_nr(const char *name);
/* AUDIT_ARCH_* of that architecture (seccomp_data.arch), 0 if unknown. */
unsigned int pyd_audit_arch(void);

/* Start the exec process.  Returns 0 (res: pid of the intermediate child,
 * err_fd, tty_sock), or -errno if the parent-side setup failed; in that
 * case no fd is left open. */
int pyd_exec(const struct pyd_exec_spec *spec, struct pyd_result *res);

/* A detached overlay mount (fsopen/fsmount): the fd of its root, attached
 * nowhere, or -errno. `upper`/`work` may be NULL for a read-only stack. */
int pyd_overlay_fsmount(const char *const *lowers, int nlowers, const char *upper,
                        const char *work, int readonly);

/* A detached recursive bind of `source` (open_tree): its fd, or -errno. */
int pyd_clone_tree(const char *source, int readonly);
/* Bind `source` recursively onto the O_PATH fd `target_fd` (open_tree +
 * move_mount, no path lookup of the target); read-only if asked. 0 or -errno. */
int pyd_attach_bind(const char *source, int target_fd, int readonly);

/* setns(2) for the calling thread: 0 or -errno.  Used by pyd/network for
 * the network namespace only (per thread, allowed in a threaded process). */
int pyd_setns(int fd, int nstype);
/* unshare(2) for the calling thread: 0 or -errno.  pyd/network makes a
 * container's network namespace on a short-lived thread with CLONE_NEWNET. */
int pyd_unshare(int flags);

/* cgroup v2's device cgroup (native/devfilter.c).  One allow rule: `type`
 * 0 (any), PYD_DEV_BLOCK or PYD_DEV_CHAR; `major`/`minor` -1 for any;
 * `access` a mask of PYD_DEV_MKNOD, PYD_DEV_READ and PYD_DEV_WRITE (the
 * kernel's BPF_DEVCG_* values). */
enum { PYD_DEV_BLOCK = 1, PYD_DEV_CHAR = 2 };
enum { PYD_DEV_MKNOD = 1, PYD_DEV_READ = 2, PYD_DEV_WRITE = 4 };
struct pyd_dev_rule {
    int type;
    int major;
    int minor;
    int access;
};
/* Attach to the cgroup v2 directory `cgroup_fd` an eBPF program that
 * allows the device accesses `rules` allow and refuses every other one,
 * as v1's devices.deny "a" then devices.allow do.  0 or -errno (at most
 * 64 rules: -E2BIG). */
int pyd_device_filter(int cgroup_fd, const struct pyd_dev_rule *rules, int nrules);

#endif /* PYD_SHIM_H */
