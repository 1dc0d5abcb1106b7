/*
 * shim.c - clone a container child and set it up in C up to execve.
 *
 * Why C: after clone() the child runs a copy of a multi-threaded Python
 * process (or, in vfork mode, in that process's memory, on its own stack).
 * Any lock held by another thread at clone time (the allocator, stdio, the
 * GIL) stays locked forever in the child, so the child may only use
 * async-signal-safe operations.  All memory it needs was prepared by the
 * parent; the child only reads it and writes nothing but its stack buffers,
 * which is also what makes sharing the parent's memory safe.
 *
 * Rules followed by everything reachable from child_main():
 *   - no malloc, no stdio, no locale, no Python;
 *   - raw syscalls for set*id/setgroups: glibc's wrappers broadcast the
 *     change to every thread of the process (SIGSETXID) and, after a raw
 *     clone, glibc still believes the parent's threads exist;
 *   - every failure is reported as (step, errno, index) on the CLOEXEC
 *     error pipe, followed by _exit(127).
 *
 * The layout of the steps follows runc/crun: private mount tree, root
 * filesystem, API filesystems, masked and read-only paths, bind mounts,
 * pivot_root, hostname, stdio/tty, wait for the parent (cgroups), drop
 * privileges, close fds, exec.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <termios.h>

#include "shim.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#endif
#ifndef PR_CAP_AMBIENT_CLEAR_ALL
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define PYD_PATH_MAX 4096
#define PYD_MAXSYMLINKS 40
#define PYD_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The pyd-init executable (native/init.c, linked statically by
 * native/build.py), carried in this library's read-only data. */
#ifndef PYD_INIT_PATH
#error "PYD_INIT_PATH: native/build.py names the pyd-init executable to embed"
#endif
__asm__(".section .rodata\n"
        ".balign 16\n"
        ".globl pyd_init_start\n"
        ".hidden pyd_init_start\n"
        "pyd_init_start:\n"
        ".incbin \"" PYD_INIT_PATH "\"\n"
        ".globl pyd_init_end\n"
        ".hidden pyd_init_end\n"
        "pyd_init_end:\n"
        ".previous\n");
extern const unsigned char pyd_init_start[] __attribute__((visibility("hidden")));
extern const unsigned char pyd_init_end[] __attribute__((visibility("hidden")));

const unsigned char *pyd_init_image(size_t *size)
{
    *size = (size_t)(pyd_init_end - pyd_init_start);
    return pyd_init_start;
}

/* ------------------------------------------------------------------ */
/* Tables (also used by pyd_step_object to name what failed)           */
/* ------------------------------------------------------------------ */

static const char *const step_names[PYD_STEP_COUNT] = {
    [PYD_STEP_READY] = "ready",
    [PYD_STEP_MAKE_PRIVATE] = "make-private",
    [PYD_STEP_ROOTFS] = "rootfs",
    [PYD_STEP_MOUNT] = "mount",
    [PYD_STEP_DEVICES] = "devices",
    [PYD_STEP_MASK] = "mask",
    [PYD_STEP_READONLY] = "readonly",
    [PYD_STEP_BIND] = "bind",
    [PYD_STEP_LOOPBACK] = "loopback",
    [PYD_STEP_PIVOT_ROOT] = "pivot_root",
    [PYD_STEP_HOSTNAME] = "sethostname",
    [PYD_STEP_CWD] = "chdir",
    [PYD_STEP_TTY] = "tty",
    [PYD_STEP_STDIO] = "stdio",
    [PYD_STEP_SYNC] = "sync",
    [PYD_STEP_CAP_BOUNDING] = "capbset",
    [PYD_STEP_SETGROUPS] = "setgroups",
    [PYD_STEP_SETRESGID] = "setresgid",
    [PYD_STEP_SETRESUID] = "setresuid",
    [PYD_STEP_CAPSET] = "capset",
    [PYD_STEP_CLOSE_FDS] = "close-fds",
    [PYD_STEP_EXEC] = "exec",
    [PYD_STEP_CGROUP] = "cgroup",
    [PYD_STEP_SETNS] = "setns",
    [PYD_STEP_EXEC_CLONE] = "clone",
    [PYD_STEP_EXEC_PID] = "pid",
    [PYD_STEP_NO_NEW_PRIVS] = "no_new_privs",
    [PYD_STEP_TMPFS] = "tmpfs",
    [PYD_STEP_HOST_DEVICE] = "devices",
    [PYD_STEP_ROOT_READONLY] = "readonly-rootfs",
    [PYD_STEP_NETNS] = "join network namespace",
    [PYD_STEP_INIT] = "init",
};

/* API filesystems, mounted in this order.  /dev is populated (devices
 * table) right after it is mounted, before /dev/pts and friends. */
struct mount_entry {
    const char *target;
    const char *source;
    const char *type;
    unsigned long flags;
    const char *data;
    int optional;          /* failure is ignored (kernel may lack it) */
};

#define MOUNT_DEV_INDEX 1
#define MOUNT_SYS_INDEX 5
static const struct mount_entry mounts[] = {
    {"/proc", "proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL, 0},
    {"/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k", 0},
    {"/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
     "newinstance,ptmxmode=0666,mode=0620,gid=5", 0},
    {"/dev/shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k", 0},
    {"/dev/mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 1},
    {"/sys", "sysfs", "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL, 0},
};
#define NMOUNTS ((int)(sizeof(mounts) / sizeof(mounts[0])))

/* Contents of the container's /dev.  kind: 'c' char device, 'l' symlink,
 * 'f' empty file (console: the pty slave is bind-mounted on it later). */
struct dev_entry {
    const char *path;      /* container path, for error messages */
    const char *name;      /* name inside /dev */
    char kind;
    unsigned int major, minor;
    const char *link;
};

#define DEV_CONSOLE_INDEX 6
static const struct dev_entry devices[] = {
    {"/dev/null", "null", 'c', 1, 3, NULL},
    {"/dev/zero", "zero", 'c', 1, 5, NULL},
    {"/dev/full", "full", 'c', 1, 7, NULL},
    {"/dev/random", "random", 'c', 1, 8, NULL},
    {"/dev/urandom", "urandom", 'c', 1, 9, NULL},
    {"/dev/tty", "tty", 'c', 5, 0, NULL},
    {"/dev/console", "console", 'f', 0, 0, NULL},
    {"/dev/fd", "fd", 'l', 0, 0, "/proc/self/fd"},
    {"/dev/stdin", "stdin", 'l', 0, 0, "/proc/self/fd/0"},
    {"/dev/stdout", "stdout", 'l', 0, 0, "/proc/self/fd/1"},
    {"/dev/stderr", "stderr", 'l', 0, 0, "/proc/self/fd/2"},
    {"/dev/ptmx", "ptmx", 'l', 0, 0, "pts/ptmx"},
};
#define NDEVICES ((int)(sizeof(devices) / sizeof(devices[0])))

static const char *const masked_paths[] = {
    "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
    "/proc/latency_stats", "/proc/timer_stats", "/sys/firmware",
    "/proc/acpi", "/proc/scsi",
};
#define NMASKED ((int)(sizeof(masked_paths) / sizeof(masked_paths[0])))

static const char *const readonly_paths[] = {
    "/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs",
};
#define NREADONLY ((int)(sizeof(readonly_paths) / sizeof(readonly_paths[0])))

const char *pyd_step_name(int step)
{
    if (step < 0 || step >= PYD_STEP_COUNT || !step_names[step])
        return "unknown";
    return step_names[step];
}

const char *pyd_step_object(int step, int index)
{
    if (index < 0)
        return NULL;
    switch (step) {
    case PYD_STEP_MOUNT:
        return index < NMOUNTS ? mounts[index].target : NULL;
    case PYD_STEP_DEVICES:
        return index < NDEVICES ? devices[index].path : NULL;
    case PYD_STEP_MASK:
        return index < NMASKED ? masked_paths[index] : NULL;
    case PYD_STEP_READONLY:
        return index < NREADONLY ? readonly_paths[index] : NULL;
    default:
        return NULL;
    }
}

/* ------------------------------------------------------------------ */
/* Child helpers: async-signal-safe only                               */
/* ------------------------------------------------------------------ */

struct child_ctx {
    const struct pyd_spec *spec;
    int err_fd;    /* write end of the error pipe */
    int sync_fd;   /* read end of the go-ahead pipe */
    int sock_fd;   /* child end of the tty socketpair, or -1 */
};

/* Report a failure and die.  The record is 12 bytes, well under PIPE_BUF,
 * so the write is atomic; nothing useful can be done if it fails. */
static void __attribute__((noreturn))
child_fail(const struct child_ctx *c, int step, int index, int err)
{
    struct pyd_report rep = {step, err, index};
    ssize_t n;
    do {
        n = write(c->err_fd, &rep, sizeof rep);
    } while (n < 0 && errno == EINTR);
    _exit(127);
}

/* "/proc/self/fd/<fd>" into buf (>= 32 bytes) without snprintf. */
static void fd_path(char *buf, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[12];
    int n = 0;
    unsigned int v = (unsigned int)fd;
    memcpy(buf, prefix, sizeof prefix - 1);
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char *p = buf + sizeof prefix - 1;
    while (n)
        *p++ = digits[--n];
    *p = '\0';
}

static int sys_openat2(int dirfd, const char *path, int flags, unsigned long long resolve)
{
    struct open_how how;
    int fd, tries = 0;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)flags;
    how.resolve = resolve;
    /* RESOLVE_IN_ROOT may return EAGAIN when a concurrent rename/mount
     * races with the walk; retrying is what the man page recommends. */
    do {
        fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    } while (fd < 0 && errno == EAGAIN && ++tries < 16);
    return fd;
}

enum { CREATE_NONE = 0, CREATE_DIR = 1, CREATE_FILE = 2 };

/*
 * Open `path` as if `rootfd` were "/", following symlinks *inside* that
 * root, optionally creating what is missing.  Returns an O_PATH fd or
 * -errno.
 *
 * Why not one openat2(RESOLVE_IN_ROOT) call: we must create missing
 * components, and a component may be a dangling symlink ("/evil -> /tmp/x"
 * where rootfs/tmp/x does not exist yet).  mkdir on the symlink's name
 * fails with EEXIST, so we expand symlinks ourselves (like securejoin):
 * `res` is always a symlink-free path relative to the root, each step is
 * opened with RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS, and a symlink found as
 * the last component is read and spliced in front of the remaining path.
 * An absolute link restarts at the container root, never the host's.
 */
static int open_in_root(int rootfd, const char *path, int create)
{
    const unsigned long long resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    char res[PYD_PATH_MAX];
    char rem[2][PYD_PATH_MAX];
    int cur = 0, links = 0;
    size_t rlen = 0, plen = strlen(path);
    const char *p;

    if (plen >= PYD_PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(rem[0], path, plen + 1);
    p = rem[0];
    res[0] = '\0';

    for (;;) {
        const char *comp, *q;
        size_t clen, save;
        int fd, last, err;
        struct stat st;

        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        comp = p;
        for (q = p; *q && *q != '/'; q++)
            ;
        clen = (size_t)(q - comp);
        p = q;
        for (q = p; *q == '/'; q++)
            ;
        last = (*q == '\0');

        if (clen == 1 && comp[0] == '.')
            continue;
        if (clen == 2 && comp[0] == '.' && comp[1] == '.') {
            /* res has no symlinks, so ".." is purely lexical; it stops at
             * the root like the kernel's RESOLVE_IN_ROOT does. */
            while (rlen > 0 && res[rlen - 1] != '/')
                rlen--;
            if (rlen > 0)
                rlen--;
            res[rlen] = '\0';
            continue;
        }

        save = rlen;
        if (rlen + 1 + clen + 1 > PYD_PATH_MAX)
            return -ENAMETOOLONG;
        if (rlen)
            res[rlen++] = '/';
        memcpy(res + rlen, comp, clen);
        rlen += clen;
        res[rlen] = '\0';

        fd = sys_openat2(rootfd, res, O_PATH | O_NOFOLLOW | O_CLOEXEC, resolve);
        if (fd < 0 && errno == ENOENT && create != CREATE_NONE) {
            /* Create it inside the already resolved parent directory
             * (res[:save], symlink-free), never through a path string. */
            int pfd;
            if (save) {
                res[save] = '\0';
                pfd = sys_openat2(rootfd, res, O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
                res[save] = '/';
            } else {
                pfd = sys_openat2(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, resolve);
            }
            if (pfd < 0)
                return -errno;
            const char *name = res + (save ? save + 1 : 0);
            int r;
            if (last && create == CREATE_FILE) {
                r = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (r >= 0)
                    close(r);
            } else {
                r = mkdirat(pfd, name, 0755);
            }
            err = errno;
            close(pfd);
            if (r < 0 && err != EEXIST)
                return -err;
            fd = sys_openat2(rootfd, res, O_PATH | O_NOFOLLOW | O_CLOEXEC, resolve);
        }
        if (fd < 0)
            return -errno;
        if (fstat(fd, &st) < 0) {
            err = errno;
            close(fd);
            return -err;
        }
        if (S_ISLNK(st.st_mode)) {
            char *dst = rem[1 - cur];
            ssize_t n;
            size_t restlen = strlen(p);
            if (++links > PYD_MAXSYMLINKS) {
                close(fd);
                return -ELOOP;
            }
            /* An empty path with an O_PATH symlink fd reads that link. */
            n = readlinkat(fd, "", dst, PYD_PATH_MAX);
            err = errno;
            close(fd);
            if (n < 0)
                return -err;
            if ((size_t)n + 1 + restlen + 1 > PYD_PATH_MAX)
                return -ENAMETOOLONG;
            dst[n] = '/';
            memcpy(dst + n + 1, p, restlen + 1);
            cur = 1 - cur;
            p = rem[cur];
            /* Relative links resolve from the link's directory, absolute
             * ones from the container root. */
            rlen = (dst[0] == '/') ? 0 : save;
            res[rlen] = '\0';
            continue;
        }
        close(fd);
        if (!last && !S_ISDIR(st.st_mode))
            return -ENOTDIR;
    }

    {
        int fd = sys_openat2(rootfd, rlen ? res : ".", O_PATH | O_CLOEXEC, resolve);
        return fd < 0 ? -errno : fd;
    }
}

/* Translate statfs f_flags (ST_*) into the MS_* flags a bind remount must
 * repeat: a MS_REMOUNT replaces the per-mount flags, it does not add. */
static unsigned long mount_flags_of(int fd)
{
    struct statfs sfs;
    unsigned long fl = 0;
    if (fstatfs(fd, &sfs) < 0)
        return 0;
    if (sfs.f_flags & ST_RDONLY) fl |= MS_RDONLY;
    if (sfs.f_flags & ST_NOSUID) fl |= MS_NOSUID;
    if (sfs.f_flags & ST_NODEV) fl |= MS_NODEV;
    if (sfs.f_flags & ST_NOEXEC) fl |= MS_NOEXEC;
    if (sfs.f_flags & ST_SYNCHRONOUS) fl |= MS_SYNCHRONOUS;
    if (sfs.f_flags & ST_MANDLOCK) fl |= MS_MANDLOCK;
    if (sfs.f_flags & ST_NOATIME) fl |= MS_NOATIME;
    if (sfs.f_flags & ST_NODIRATIME) fl |= MS_NODIRATIME;
    if (sfs.f_flags & ST_RELATIME) fl |= MS_RELATIME;
    return fl;
}

/* Remount the mount now sitting at `path` (inside root) read-only.  The
 * path is re-opened after the bind so the fd refers to the new mount, not
 * to the directory underneath it. */
static int remount_ro(int rootfd, const char *path, unsigned long extra)
{
    char fdp[32];
    int fd = open_in_root(rootfd, path, CREATE_NONE);
    int r, err;
    if (fd < 0)
        return fd;
    fd_path(fdp, fd);
    r = mount(NULL, fdp, NULL,
              MS_BIND | MS_REMOUNT | MS_RDONLY | extra | mount_flags_of(fd), NULL);
    err = errno;
    close(fd);
    return r < 0 ? -err : 0;
}

/* Mount a filesystem (or a bind source) on `target` resolved inside root. */
static int mount_in_root(int rootfd, const char *target, int create, const char *src,
                         const char *type, unsigned long flags, const char *data)
{
    char fdp[32];
    int fd = open_in_root(rootfd, target, create);
    int r, err;
    if (fd < 0)
        return fd;
    fd_path(fdp, fd);
    r = mount(src, fdp, type, flags, data);
    err = errno;
    close(fd);
    return r < 0 ? -err : 0;
}

/* Fill the fresh /dev tmpfs.  devfd refers to the tmpfs root. */
static void populate_dev(const struct child_ctx *c, int devfd)
{
    for (int i = 0; i < NDEVICES; i++) {
        const struct dev_entry *d = &devices[i];
        int r = 0;
        if (d->kind == 'c') {
            r = mknodat(devfd, d->name, S_IFCHR | 0666, makedev(d->major, d->minor));
            /* umask is 0 in the child, but be explicit about the mode. */
            if (r == 0)
                r = fchmodat(devfd, d->name, 0666, 0);
        } else if (d->kind == 'l') {
            r = symlinkat(d->link, devfd, d->name);
        } else if (i == DEV_CONSOLE_INDEX) {
            /* Only a tty container gets /dev/console (the pty slave is
             * bound onto it), as with Docker: never the host's console. */
            if (c->spec->tty) {
                r = openat(devfd, d->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (r >= 0) {
                    close(r);
                    r = 0;
                }
            }
        }
        if (r < 0)
            child_fail(c, PYD_STEP_DEVICES, i, errno);
    }
}

/* The spec's extra device nodes (a privileged container's host devices),
 * after the default ones: a node that is already there (null, tty...) is
 * kept.  Parent directories (/dev/input, /dev/bus/usb/001) are created. */
static void make_devices(const struct child_ctx *c, int rootfd)
{
    const struct pyd_spec *s = c->spec;
    char parent[PYD_PATH_MAX];
    for (int i = 0; i < s->ndevices; i++) {
        const struct pyd_device *d = &s->devices[i];
        const char *slash = strrchr(d->path, '/');
        size_t plen;
        int pfd, r;
        if (!slash || slash[1] == '\0' || strncmp(d->path, "/dev/", 5) != 0)
            child_fail(c, PYD_STEP_HOST_DEVICE, i, EINVAL);
        plen = (size_t)(slash - d->path);
        if (plen >= sizeof parent)
            child_fail(c, PYD_STEP_HOST_DEVICE, i, ENAMETOOLONG);
        memcpy(parent, d->path, plen);
        parent[plen] = '\0';
        pfd = open_in_root(rootfd, parent, CREATE_DIR);
        if (pfd < 0)
            child_fail(c, PYD_STEP_HOST_DEVICE, i, -pfd);
        r = mknodat(pfd, slash + 1, d->mode, makedev(d->major, d->minor));
        if (r < 0 && errno != EEXIST)
            child_fail(c, PYD_STEP_HOST_DEVICE, i, errno);
        if (r == 0 && fchownat(pfd, slash + 1, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
            child_fail(c, PYD_STEP_HOST_DEVICE, i, errno);
        close(pfd);
    }
}

/* Steps 3-4: API filesystems, /dev, masked and read-only paths. */
static void setup_mounts(const struct child_ctx *c, int rootfd)
{
    int r, devfd, nullfd;
    char nullp[32];

    for (int i = 0; i < NMOUNTS; i++) {
        const struct mount_entry *m = &mounts[i];
        unsigned long flags = m->flags;
        /* Docker gives a privileged container a writable /sys. */
        if (i == MOUNT_SYS_INDEX && c->spec->privileged)
            flags &= ~MS_RDONLY;
        r = mount_in_root(rootfd, m->target, CREATE_DIR, m->source, m->type, flags, m->data);
        if (r < 0 && !m->optional)
            child_fail(c, PYD_STEP_MOUNT, i, -r);
        if (i == MOUNT_DEV_INDEX) {
            /* Re-open: now resolves to the root of the new tmpfs. */
            devfd = open_in_root(rootfd, "/dev", CREATE_NONE);
            if (devfd < 0)
                child_fail(c, PYD_STEP_MOUNT, i, -devfd);
            populate_dev(c, devfd);
            close(devfd);
            make_devices(c, rootfd);
        }
    }

    /* Privileged: nothing masked, nothing read-only (as Docker). */
    if (c->spec->privileged)
        return;

    /* Masked paths: files get the container's /dev/null bound on them,
     * directories an empty read-only tmpfs.  Missing paths are fine. */
    nullfd = open_in_root(rootfd, "/dev/null", CREATE_NONE);
    if (nullfd < 0)
        child_fail(c, PYD_STEP_DEVICES, 0, -nullfd);
    fd_path(nullp, nullfd);
    for (int i = 0; i < NMASKED; i++) {
        char fdp[32];
        struct stat st;
        int fd = open_in_root(rootfd, masked_paths[i], CREATE_NONE);
        if (fd == -ENOENT)
            continue;
        if (fd < 0)
            child_fail(c, PYD_STEP_MASK, i, -fd);
        if (fstat(fd, &st) < 0)
            child_fail(c, PYD_STEP_MASK, i, errno);
        fd_path(fdp, fd);
        if (S_ISDIR(st.st_mode))
            r = mount("tmpfs", fdp, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0k");
        else
            r = mount(nullp, fdp, NULL, MS_BIND, NULL);
        if (r < 0)
            child_fail(c, PYD_STEP_MASK, i, errno);
        close(fd);
    }
    close(nullfd);

    /* Read-only paths: bind onto itself, then remount read-only keeping
     * the flags the mount already has. */
    for (int i = 0; i < NREADONLY; i++) {
        char fdp[32];
        int fd = open_in_root(rootfd, readonly_paths[i], CREATE_NONE);
        if (fd == -ENOENT)
            continue;
        if (fd < 0)
            child_fail(c, PYD_STEP_READONLY, i, -fd);
        fd_path(fdp, fd);
        r = mount(fdp, fdp, NULL, MS_BIND | MS_REC, NULL);
        if (r < 0)
            child_fail(c, PYD_STEP_READONLY, i, errno);
        close(fd);
        r = remount_ro(rootfd, readonly_paths[i], MS_NOSUID | MS_NODEV | MS_NOEXEC);
        if (r < 0)
            child_fail(c, PYD_STEP_READONLY, i, -r);
    }
}

/* Tmpfs number t, on its target inside the root (created if missing). */
static void mount_tmpfs(const struct child_ctx *c, int rootfd, int t)
{
    const struct pyd_tmpfs *m = &c->spec->tmpfs[t];
    int r = mount_in_root(rootfd, m->target, CREATE_DIR, "tmpfs", "tmpfs", m->flags, m->data);
    if (r < 0)
        child_fail(c, PYD_STEP_TMPFS, t, -r);
}

/* Step 5: the spec's bind mounts (volumes and /etc/hosts & co), with the
 * tmpfs mounts in between where their before_bind puts them. */
static void setup_binds(const struct child_ctx *c, int rootfd)
{
    const struct pyd_spec *s = c->spec;
    int t = 0;
    for (int i = 0; i <= s->nbinds; i++) {
        while (t < s->ntmpfs && s->tmpfs[t].before_bind <= i)
            mount_tmpfs(c, rootfd, t++);
        if (i == s->nbinds)
            break;
        const struct pyd_bind *b = &s->binds[i];
        struct stat st;
        int r;
        /* The source is a host path chosen by the daemon: plain stat. */
        if (stat(b->source, &st) < 0)
            child_fail(c, PYD_STEP_BIND, i, errno);
        r = mount_in_root(rootfd, b->target, S_ISDIR(st.st_mode) ? CREATE_DIR : CREATE_FILE,
                          b->source, NULL, MS_BIND | MS_REC, NULL);
        if (r < 0)
            child_fail(c, PYD_STEP_BIND, i, -r);
        if (b->readonly) {
            r = remount_ro(rootfd, b->target, 0);
            if (r < 0)
                child_fail(c, PYD_STEP_BIND, i, -r);
        }
    }
}

/* Bring up "lo": a fresh net namespace has it, but down. */
static void setup_loopback(const struct child_ctx *c)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        child_fail(c, PYD_STEP_LOOPBACK, -1, errno);
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        child_fail(c, PYD_STEP_LOOPBACK, -1, errno);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        child_fail(c, PYD_STEP_LOOPBACK, -1, errno);
    close(s);
}

/* mkdir -p inside the (already pivoted) root, component by component. */
static int mkdir_p(const char *path)
{
    char buf[PYD_PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char saved = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -errno;
            buf[i] = saved;
        }
    }
    return 0;
}

/* Step 7 with a tty: allocate a pty from the container's own devpts,
 * hand the master to the parent, make the slave our controlling tty. */
static void setup_tty(const struct child_ctx *c)
{
    char name[32] = "/dev/pts/";
    char digits[12];
    int master, slave, unlock = 0, n = 0, len = 9;
    unsigned int ptn;
    struct msghdr msg;
    struct iovec iov;
    char byte = 'T';
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cmsg_u;
    struct cmsghdr *cmsg;

    master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        child_fail(c, PYD_STEP_TTY, -1, errno);
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCGPTN, &ptn) < 0)
        child_fail(c, PYD_STEP_TTY, -1, errno);
    do {
        digits[n++] = (char)('0' + ptn % 10);
        ptn /= 10;
    } while (ptn);
    while (n)
        name[len++] = digits[--n];
    name[len] = '\0';
    slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        child_fail(c, PYD_STEP_TTY, -1, errno);

    /* Send the master over the socketpair (SCM_RIGHTS). */
    memset(&msg, 0, sizeof msg);
    memset(&cmsg_u, 0, sizeof cmsg_u);
    iov.iov_base = &byte;
    iov.iov_len = 1;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_u.buf;
    msg.msg_controllen = sizeof cmsg_u.buf;
    cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &master, sizeof(int));
    for (;;) {
        ssize_t r = sendmsg(c->sock_fd, &msg, MSG_NOSIGNAL);
        if (r >= 0)
            break;
        if (errno != EINTR)
            child_fail(c, PYD_STEP_TTY, -1, errno);
    }
    close(master);

    /* /dev/console is the terminal too, as with Docker's -t. */
    if (mount(name, "/dev/console", NULL, MS_BIND, NULL) < 0)
        child_fail(c, PYD_STEP_TTY, -1, errno);
    /* A non-root user must be able to reopen its own terminal. */
    if (c->spec->uid != 0 && fchown(slave, c->spec->uid, (gid_t)-1) < 0)
        child_fail(c, PYD_STEP_TTY, -1, errno);

    if (setsid() < 0)
        child_fail(c, PYD_STEP_TTY, -1, errno);
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        child_fail(c, PYD_STEP_TTY, -1, errno);
    for (int fd = 0; fd < 3; fd++)
        if (dup2(slave, fd) < 0)
            child_fail(c, PYD_STEP_TTY, -1, errno);
    if (slave > 2)
        close(slave);
}

/* Step 7 without a tty: the spec's fds (or /dev/null) become 0, 1, 2. */
static void setup_stdio(const struct child_ctx *c)
{
    int fds[3] = {c->spec->stdin_fd, c->spec->stdout_fd, c->spec->stderr_fd};
    int nullfd = -1;

    /* First move sources that sit on 0..2 out of the way, so that a dup2
     * onto fd 1 cannot clobber a source that is still to be copied (and so
     * that dup2 always clears CLOEXEC: dup2(x, x) would not). */
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0 && fds[i] < 3) {
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            if (fds[i] < 0)
                child_fail(c, PYD_STEP_STDIO, i, errno);
        } else if (fds[i] < 0) {
            if (nullfd < 0) {
                nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (nullfd < 0)
                    child_fail(c, PYD_STEP_STDIO, i, errno);
            }
            fds[i] = nullfd;
        }
    }
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], i) < 0)
            child_fail(c, PYD_STEP_STDIO, i, errno);
    /* The copies above 2 are CLOEXEC and go away at exec. */
    if (setsid() < 0)
        child_fail(c, PYD_STEP_STDIO, -1, errno);
}

/* Step 9: bounding set, identity, capability sets. */
static void drop_privileges(const struct child_ctx *c)
{
    const struct pyd_spec *s = c->spec;
    int last = s->cap_last_cap > 0 ? s->cap_last_cap : 63;
    unsigned long long caps = s->caps;

    /* Capabilities the kernel does not have cannot be kept (capset would
     * refuse them). */
    if (last < 63)
        caps &= (1ULL << (last + 1)) - 1;
    /* Privileged means every capability the daemon itself has: a daemon
     * started without some (a restricted outer container) still runs. */
    if (s->privileged) {
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct cur[2];
        if (syscall(SYS_capget, &hdr, cur) < 0)
            child_fail(c, PYD_STEP_CAPSET, -1, errno);
        caps &= ((unsigned long long)cur[1].permitted << 32) | cur[0].permitted;
    }
    for (int cap = 0; cap <= last; cap++) {
        if (caps & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            /* Probing without cap_last_cap: EINVAL marks the end. */
            if (errno == EINVAL && s->cap_last_cap <= 0)
                break;
            child_fail(c, PYD_STEP_CAP_BOUNDING, cap, errno);
        }
    }

    /* Raw syscalls: see the comment at the top of the file. */
    if (syscall(SYS_setgroups, (size_t)(s->ngroups > 0 ? s->ngroups : 0), s->groups) < 0)
        child_fail(c, PYD_STEP_SETGROUPS, -1, errno);
    if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0)
        child_fail(c, PYD_STEP_SETRESGID, -1, errno);
    if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0)
        child_fail(c, PYD_STEP_SETRESUID, -1, errno);

    /* A non-root uid lost every capability in setresuid (no KEEPCAPS).
     * Root keeps the full set: trim permitted/effective to the spec's set
     * (Docker's 14 by default) and empty the inheritable set. */
    if (s->uid == 0) {
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        memset(data, 0, sizeof data);
        data[0].effective = data[0].permitted = (uint32_t)(caps & 0xffffffffULL);
        data[1].effective = data[1].permitted = (uint32_t)(caps >> 32);
        if (syscall(SYS_capset, &hdr, data) < 0)
            child_fail(c, PYD_STEP_CAPSET, -1, errno);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        child_fail(c, PYD_STEP_CAPSET, -1, errno);
}

/* Step 10: exec, searching $PATH from the container's envp like execvp. */
static void __attribute__((noreturn)) do_exec(const struct child_ctx *c)
{
    const struct pyd_spec *s = c->spec;
    const char *file = s->argv[0];
    const char *path = PYD_DEFAULT_PATH;
    char buf[PYD_PATH_MAX];
    size_t flen = strlen(file);
    int seen_eacces = 0;

    if (flen == 0)
        child_fail(c, PYD_STEP_EXEC, -1, ENOENT);
    if (strchr(file, '/')) {
        execve(file, s->argv, s->envp);
        child_fail(c, PYD_STEP_EXEC, -1, errno);
    }
    for (char *const *e = s->envp; e && *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }
    for (const char *p = path;; ) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        if (dlen == 0) {
            /* Empty element means the current directory. */
            buf[0] = '.';
            dlen = 1;
        } else if (dlen < sizeof buf) {
            memcpy(buf, p, dlen);
        }
        if (dlen + 1 + flen + 1 <= sizeof buf) {
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, file, flen + 1);
            execve(buf, s->argv, s->envp);
            switch (errno) {
            case EACCES:
                /* Keep looking, but report EACCES if nothing else runs. */
                seen_eacces = 1;
                break;
            case ENOENT:
            case ENOTDIR:
            case ESTALE:
            case ENODEV:
            case ETIMEDOUT:
                break;
            default:
                /* A real error (ENOEXEC, E2BIG, ...): report it now. */
                child_fail(c, PYD_STEP_EXEC, -1, errno);
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    child_fail(c, PYD_STEP_EXEC, -1, seen_eacces ? EACCES : ENOENT);
}

/* "/" (the pivoted root) read-only, repeating its other flags: a bind
 * remount replaces them. */
static void remount_root_ro(const struct child_ctx *c)
{
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    unsigned long fl;
    if (fd < 0)
        child_fail(c, PYD_STEP_ROOT_READONLY, -1, errno);
    fl = mount_flags_of(fd);
    close(fd);
    if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | fl, NULL) < 0)
        child_fail(c, PYD_STEP_ROOT_READONLY, -1, errno);
}

/* Exec pyd-init (spec->init_fd) as pid 1; spec->argv is its argv.  It
 * gets the error pipe as fd 3 (not close-on-exec) to report its child's
 * exec failure; EOF reaches the parent once that child has exec'd. */
static void __attribute__((noreturn)) exec_init(const struct child_ctx *c)
{
    const struct pyd_spec *s = c->spec;
    int init_fd = s->init_fd;
    /* Fd 3 is about to become the pipe: move the executable off it. */
    if (init_fd == 3 && (init_fd = fcntl(3, F_DUPFD_CLOEXEC, 4)) < 0)
        child_fail(c, PYD_STEP_INIT, -1, errno);
    if (c->err_fd != 3 && dup2(c->err_fd, 3) < 0)
        child_fail(c, PYD_STEP_INIT, -1, errno);
    if (fcntl(3, F_SETFD, 0) < 0)
        child_fail(c, PYD_STEP_INIT, -1, errno);
    syscall(SYS_execveat, init_fd, "", s->argv, s->envp, AT_EMPTY_PATH);
    child_fail(c, PYD_STEP_INIT, -1, errno);
}

static void __attribute__((noreturn)) child_main(const struct child_ctx *c)
{
    const struct pyd_spec *s = c->spec;
    int rootfd;
    ssize_t n;
    char go;

    /* 0. Join our cgroups first, so that all of the setup is accounted to
     * the container ("0" is this thread; see shim.h on why not the parent). */
    for (int i = 0; i < s->ncgroup_fds; i++) {
        n = write(s->cgroup_fds[i], "0", 1);
        if (n != 1)
            child_fail(c, PYD_STEP_CGROUP, i, n < 0 ? errno : EIO);
        close(s->cgroup_fds[i]);
    }

    /* 0b. A network namespace made (or owned) by someone else: join it
     * before anything is mounted (sysfs shows the mounter's devices). */
    if (s->netns_fd >= 0 && setns(s->netns_fd, CLONE_NEWNET) < 0)
        child_fail(c, PYD_STEP_NETNS, -1, errno);

    /* Files we create get exactly the modes we ask for. */
    umask(0);

    /* 1. Nothing we mount may propagate back to the host. */
    if (mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        child_fail(c, PYD_STEP_MAKE_PRIVATE, -1, errno);

    /* 2. Root filesystem; it must be a mount point for pivot_root. */
    if (s->overlay_data) {
        /* Relative lowerdirs keep the option string under one page. */
        if (s->layers_dir && chdir(s->layers_dir) < 0)
            child_fail(c, PYD_STEP_ROOTFS, -1, errno);
        if (mount("overlay", s->rootfs, "overlay", 0, s->overlay_data) < 0)
            child_fail(c, PYD_STEP_ROOTFS, -1, errno);
    } else {
        const char *src = s->rootfs_source ? s->rootfs_source : s->rootfs;
        if (mount(src, s->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
            child_fail(c, PYD_STEP_ROOTFS, -1, errno);
    }
    rootfd = open(s->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        child_fail(c, PYD_STEP_ROOTFS, -1, errno);

    /* 3-4. API filesystems, masked and read-only paths. */
    setup_mounts(c, rootfd);

    /* 5. Bind mounts, then networking basics. */
    setup_binds(c, rootfd);
    if (!s->share_netns)
        setup_loopback(c);

    /* 6. Switch root.  pivot_root(".", ".") stacks the old root on top of
     * the new one; detaching "." then removes it (no put_old directory). */
    if (fchdir(rootfd) < 0)
        child_fail(c, PYD_STEP_PIVOT_ROOT, -1, errno);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        child_fail(c, PYD_STEP_PIVOT_ROOT, -1, errno);
    if (umount2(".", MNT_DETACH) < 0)
        child_fail(c, PYD_STEP_PIVOT_ROOT, -1, errno);
    if (chdir("/") < 0)
        child_fail(c, PYD_STEP_PIVOT_ROOT, -1, errno);
    close(rootfd);
    if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
        child_fail(c, PYD_STEP_HOSTNAME, -1, errno);

    /* Working directory: created as root (like runc), now that "/" is the
     * container's, so every symlink resolves inside it. */
    if (s->cwd) {
        int r = mkdir_p(s->cwd);
        if (r < 0)
            child_fail(c, PYD_STEP_CWD, -1, -r);
        if (chdir(s->cwd) < 0)
            child_fail(c, PYD_STEP_CWD, -1, errno);
    }

    /* ReadonlyRootfs: only the root mount itself (as runc), after the
     * working directory was made; /dev, /proc, binds, tmpfs and the
     * /etc/hosts, hostname and resolv.conf binds stay as they are. */
    if (s->readonly_rootfs)
        remount_root_ro(c);

    /* 7. Standard streams. */
    if (s->tty)
        setup_tty(c);
    else
        setup_stdio(c);

    /* 8. Tell the parent we are ready, wait until it has put us in our
     * cgroups.  EOF means the parent gave up: leave quietly. */
    {
        struct pyd_report ready = {PYD_STEP_READY, 0, -1};
        do {
            n = write(c->err_fd, &ready, sizeof ready);
        } while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof ready)
            _exit(127);
    }
    if (!s->vfork) {
        do {
            n = read(c->sync_fd, &go, 1);
        } while (n < 0 && errno == EINTR);
        if (n == 0)
            _exit(127);
        if (n < 0)
            child_fail(c, PYD_STEP_SYNC, -1, errno);
    }
    close(c->sync_fd);

    /* 9. Privileges. */
    drop_privileges(c);

    /* 10. No fd above 2 may reach the container.  CLOEXEC rather than
     * close so the error pipe stays usable until execve succeeds. */
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        for (int fd = 3; fd < 1024; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }

    /* Python ignores SIGPIPE and SIGXFSZ; ignored dispositions survive
     * execve, so reset everything before unblocking (the parent blocked
     * all signals around clone so no Python handler runs in the child). */
    {
        struct sigaction sa;
        sigset_t none;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                sigaction(sig, &sa, NULL);   /* EINVAL for glibc-reserved ones: fine */
        umask(022);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
    }
    if (s->init_fd >= 0)
        exec_init(c);
    do_exec(c);
}

/* ------------------------------------------------------------------ */
/* Parent side                                                         */
/* ------------------------------------------------------------------ */

static void close_if(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* The child's entry in vfork mode, on its own stack.  Its fd table is its
 * own copy, so closing the parent's ends here is private to it; memory is
 * shared, so it writes only to this stack (as everything in child_main). */
struct vfork_arg {
    struct child_ctx ctx;
    int parent_fds[3];
};

static int vfork_child(void *p)
{
    struct vfork_arg *a = p;
    for (int i = 0; i < 3; i++)
        close_if(a->parent_fds[i]);
    child_main(&a->ctx);
}

#define PYD_CHILD_STACK (256 * 1024)

int pyd_spawn(const struct pyd_spec *spec, struct pyd_result *res)
{
    int errp[2] = {-1, -1}, syncp[2] = {-1, -1}, sv[2] = {-1, -1};
    sigset_t all, old;
    long pid;
    int err;
    /* NetworkMode host: the daemon's own net namespace. */
    const int ns_flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID |
                         (spec && (spec->share_netns || spec->netns_fd >= 0) ? 0 : CLONE_NEWNET);

    res->pid = -1;
    res->err_fd = res->sync_fd = res->tty_sock = -1;
    if (!spec || !spec->rootfs || !spec->argv || !spec->argv[0])
        return -EINVAL;

    /* CLOEXEC everywhere: a concurrent spawn or fork from another thread
     * must not keep these open past its exec. */
    if (pipe2(errp, O_CLOEXEC) < 0)
        goto fail;
    if (pipe2(syncp, O_CLOEXEC) < 0)
        goto fail;
    if (spec->tty && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        goto fail;

    /* Block every signal across the clone so that no Python-level signal
     * handler can run in the child; the child unblocks just before exec. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* Fork-like clone (no new stack, no callback): the child continues
     * right here on a copy-on-write copy of this thread's stack. */
    if (spec->vfork) {
        /* A fresh stack with a guard page below it; free once clone returns,
         * which with CLONE_VFORK is after the child exec'd or died. */
        struct vfork_arg a = {{spec, errp[1], syncp[0], sv[1]}, {errp[0], syncp[1], sv[0]}};
        char *stack = mmap(NULL, PYD_CHILD_STACK, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED) {
            pid = -1;
        } else if (mprotect(stack, 4096, PROT_NONE) < 0) {
            err = errno;
            munmap(stack, PYD_CHILD_STACK);
            errno = err;
            pid = -1;
        } else {
            pid = clone(vfork_child, stack + PYD_CHILD_STACK,
                        CLONE_VM | CLONE_VFORK | ns_flags | SIGCHLD, &a);
            err = errno;
            munmap(stack, PYD_CHILD_STACK);
            errno = err;
        }
    } else {
        pid = syscall(SYS_clone, ns_flags | SIGCHLD, 0, 0, 0, 0);
    }
    if (pid == 0) {
        struct child_ctx c = {spec, errp[1], syncp[0], sv[1]};
        /* The parent's ends: holding them would hide the parent's EOF. */
        close(errp[0]);
        close(syncp[1]);
        close_if(sv[0]);
        child_main(&c);
    }
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    close(errp[1]);
    close(syncp[0]);
    close_if(sv[1]);
    errp[1] = syncp[0] = sv[1] = -1;
    if (pid < 0) {
        errno = err;
        goto fail;
    }
    res->pid = (int)pid;
    res->err_fd = errp[0];
    res->sync_fd = syncp[1];
    res->tty_sock = sv[0];
    return 0;

fail:
    err = errno;
    close_if(errp[0]);
    close_if(errp[1]);
    close_if(syncp[0]);
    close_if(syncp[1]);
    close_if(sv[0]);
    close_if(sv[1]);
    return -err;
}

int pyd_recv_fd(int sock)
{
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cmsg_u;
    struct msghdr msg;
    struct cmsghdr *cmsg;
    ssize_t n;
    int fd = -1;

    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg_u.buf;
    msg.msg_controllen = sizeof cmsg_u.buf;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ECONNRESET;
    for (cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS &&
            cmsg->cmsg_len >= CMSG_LEN(sizeof(int))) {
            memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
            break;
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        close_if(fd);
        return -EMSGSIZE;
    }
    return fd >= 0 ? fd : -EBADMSG;
}

/* Plain mount(2) and umount2(2) for the daemon itself (the storage driver
 * probe); returns 0 or -errno so Python can raise OSError with the errno. */
int pyd_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const char *data)
{
    return mount(source, target, fstype, flags, data) < 0 ? -errno : 0;
}

int pyd_umount(const char *target, int flags)
{
    return umount2(target, flags) < 0 ? -errno : 0;
}

/* Ask for `sig` when our parent dies (PR_SET_PDEATHSIG). The frozen one-file
 * binary runs the daemon as a child of its bootloader: this ties the daemon's
 * life to the process that users and supervisors see and signal. */
int pyd_set_pdeathsig(int sig)
{
    return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0) < 0 ? -errno : 0;
}

/* ---- archive: a private overlay mount for a stopped container ---------
 *
 * docker cp on a stopped container needs its merged filesystem. mount(2)
 * would attach it somewhere in the daemon's mount namespace, where a daemon
 * killed before the umount leaves it behind (and a later sweep of the tmp
 * dir could walk into it). The new mount API makes a *detached* mount
 * instead: fsopen/fsconfig/fsmount return an fd of its root that is
 * attached nowhere, and the mount goes away with the last fd. Each layer
 * is given on its own ("lowerdir+", Linux 6.8), so deep images are not
 * bounded by one page of options. Returns the mount fd (O_CLOEXEC) or
 * -errno; on failure nothing is left open. */
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#define PYD_FSOPEN_CLOEXEC 0x00000001
#define PYD_FSCONFIG_SET_STRING 1
#define PYD_FSCONFIG_CMD_CREATE 6
#define PYD_FSMOUNT_CLOEXEC 0x00000001
#define PYD_MOUNT_ATTR_RDONLY 0x00000001

int pyd_overlay_fsmount(const char *const *lowers, int nlowers, const char *upper,
                        const char *work, int readonly)
{
    int fs = (int)syscall(SYS_fsopen, "overlay", PYD_FSOPEN_CLOEXEC);
    if (fs < 0)
        return -errno;
    int err = 0;
    for (int i = 0; i < nlowers && !err; i++)
        if (syscall(SYS_fsconfig, fs, PYD_FSCONFIG_SET_STRING, "lowerdir+", lowers[i], 0) < 0)
            err = errno;
    if (!err && upper && syscall(SYS_fsconfig, fs, PYD_FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0)
        err = errno;
    if (!err && work && syscall(SYS_fsconfig, fs, PYD_FSCONFIG_SET_STRING, "workdir", work, 0) < 0)
        err = errno;
    if (!err && syscall(SYS_fsconfig, fs, PYD_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        err = errno;
    int mnt = -1;
    if (!err) {
        mnt = (int)syscall(SYS_fsmount, fs, PYD_FSMOUNT_CLOEXEC,
                           readonly ? PYD_MOUNT_ATTR_RDONLY : 0);
        if (mnt < 0)
            err = errno;
    }
    close(fs);
    return err ? -err : mnt;
}

/* pyd_clone_tree: a detached recursive bind of `source` (a host path chosen
 * by the daemon), read-only (recursively) when asked: open_tree(
 * OPEN_TREE_CLONE). Returns its fd or -errno.
 * pyd_attach_bind: such a bind moved onto the directory or file
 * `target_fd` (an O_PATH fd, typically inside a detached mount tree) by
 * move_mount between fds, so the target is never looked up by a path.
 * Returns 0 or -errno. */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#define PYD_OPEN_TREE_CLONE 1
#define PYD_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define PYD_MOVE_MOUNT_T_EMPTY_PATH 0x00000040

struct pyd_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

int pyd_clone_tree(const char *source, int readonly)
{
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, source,
                            PYD_OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
        return -errno;
    if (readonly) {
        struct pyd_mount_attr a = { .attr_set = PYD_MOUNT_ATTR_RDONLY };
        if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a, sizeof a) < 0) {
            int err = errno;
            close(tree);
            return -err;
        }
    }
    return tree;
}

int pyd_attach_bind(const char *source, int target_fd, int readonly)
{
    int tree = pyd_clone_tree(source, readonly);
    if (tree < 0)
        return tree;
    int err = 0;
    if (syscall(SYS_move_mount, tree, "", target_fd, "",
                PYD_MOVE_MOUNT_F_EMPTY_PATH | PYD_MOVE_MOUNT_T_EMPTY_PATH) < 0)
        err = errno;
    close(tree);
    return -err;
}

int pyd_unshare(int flags)
{
    /* Only CLONE_NEWNET is used (per thread, like pyd_setns below). */
    if (unshare(flags) < 0)
        return -errno;
    return 0;
}

int pyd_setns(int fd, int nstype)
{
    /* For the calling thread only: the network namespace is per thread, so
     * pyd/network/netlink.py calls this on a short-lived thread of its own. */
    if (setns(fd, nstype) < 0)
        return -errno;
    return 0;
}
