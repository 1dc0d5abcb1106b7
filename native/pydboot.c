/*
 * pydboot: the static front of the one-file dist/pyd (docs/static.md).
 *
 * dist/pyd is this program, linked statically, followed by a zstd frame and a
 * trailer.  The frame holds a small archive (native/pack.py writes it): the
 * PyInstaller one-folder build of pyd (its bootloader "pyd" and _internal/)
 * plus glibc's loader and libraries in glibc/.  At start pydboot
 *
 *   1. unpacks the archive into a new 0700 directory $TMPDIR/pyd-XXXXXX
 *      (falling back to /tmp, /var/tmp, /dev/shm with a note, or stopping
 *      with a message naming every place tried and why it was unusable:
 *      read-only, noexec, or the error);
 *   2. writes that directory's glibc/ld-linux-x86-64.so.2 into the
 *      bootloader's PT_INTERP (pack.py left a long placeholder there; its
 *      RPATH is $ORIGIN/glibc:$ORIGIN/_internal already);
 *   3. starts a detached remover (its own session, no fds, cwd /) that waits
 *      for this pid to end (pidfd_open, or polling /proc where the kernel is
 *      older than 5.3) and then deletes the directory;
 *   4. execs the bootloader in place: the daemon keeps this pid, gets every
 *      signal directly, and has no wrapper process above it.
 *
 * Needs from the host: a Linux kernel, and a writable, executable directory.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define MAGIC "PYDBOOT1"
#define ARCHIVE_MAGIC "PYDA1\n"
#define INTERP_REL "/glibc/ld-linux-x86-64.so.2"

struct trailer {            /* the last 32 bytes of dist/pyd, little-endian */
    uint64_t offset;        /* of the zstd frame */
    uint64_t length;        /* of the zstd frame */
    uint64_t raw;           /* size of the archive once decompressed */
    char magic[8];
};

static char bundle[PATH_MAX];   /* the unpack directory, once made */

static void remove_bundle(void);

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pyd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    remove_bundle();
    exit(125);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void remove_bundle(void)
{
    if (bundle[0])
        nftw(bundle, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the payload ------------------------------------------------------- */

static unsigned char *load_archive(size_t *size)
{
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const char *fn = (const char *)getauxval(AT_EXECFN);
        if (fn)
            fd = open(fn, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        die("cannot open my own executable (no /proc?): %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(struct trailer))
        die("cannot read my own executable");
    unsigned char *map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        die("cannot map my own executable: %s", strerror(errno));
    close(fd);
    struct trailer t;
    memcpy(&t, map + st.st_size - sizeof t, sizeof t);
    if (memcmp(t.magic, MAGIC, 8) != 0 || t.offset + t.length > (uint64_t)st.st_size)
        die("this binary carries no payload (a bare pydboot?)");
    unsigned char *raw = malloc(t.raw);
    if (!raw)
        die("out of memory unpacking %llu bytes", (unsigned long long)t.raw);
    size_t got = ZSTD_decompress(raw, t.raw, map + t.offset, t.length);
    if (ZSTD_isError(got) || got != t.raw)
        die("the payload is damaged: %s", ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
    munmap(map, st.st_size);
    *size = t.raw;
    return raw;
}

/* Write `interp` into the PT_INTERP of the ELF image in buf. */
static void patch_interp(unsigned char *buf, size_t size, const char *interp)
{
    Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
    if (size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size)
        die("the bundled bootloader is no 64-bit ELF");
    Elf64_Phdr *ph = (Elf64_Phdr *)(buf + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_INTERP)
            continue;
        if (ph[i].p_offset + ph[i].p_filesz > size)
            break;
        if (strlen(interp) + 1 > ph[i].p_filesz)
            die("the unpack directory's path is too long (%zu bytes; at most %zu): "
                "set TMPDIR to a shorter path", strlen(bundle),
                (size_t)ph[i].p_filesz - 1 - strlen(INTERP_REL));
        memset(buf + ph[i].p_offset, 0, ph[i].p_filesz);
        memcpy(buf + ph[i].p_offset, interp, strlen(interp));
        return;
    }
    die("the bundled bootloader has no PT_INTERP");
}

static uint64_t get(const unsigned char **p, const unsigned char *end, int n)
{
    if (end - *p < n)
        die("the payload is truncated");
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)(*p)[i] << (8 * i);
    *p += n;
    return v;
}

static void write_all(const char *path, const unsigned char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
    if (fd < 0)
        die("cannot create %s: %s", path, strerror(errno));
    while (len) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("cannot write %s: %s%s", path, strerror(errno),
                errno == ENOSPC || errno == EDQUOT ? " (set TMPDIR to a file system with ~30 MB free)" : "");
        }
        data += n;
        len -= n;
    }
    if (close(fd) < 0)
        die("cannot write %s: %s", path, strerror(errno));
}

/* Archive records: type (1: d dir, f file, x the bootloader, l symlink,
 * e end), mode (4), size (8), path length (2), path, then size bytes of
 * data (a symlink's target). */
static void extract(unsigned char *raw, size_t size, const char *interp)
{
    const unsigned char *p = raw, *end = raw + size;
    if (size < strlen(ARCHIVE_MAGIC) || memcmp(p, ARCHIVE_MAGIC, strlen(ARCHIVE_MAGIC)) != 0)
        die("the payload is no pyd archive");
    p += strlen(ARCHIVE_MAGIC);
    char path[PATH_MAX], target[PATH_MAX];
    for (;;) {
        int type = (int)get(&p, end, 1);
        if (type == 'e')
            return;
        mode_t mode = (mode_t)get(&p, end, 4);
        uint64_t len = get(&p, end, 8);
        size_t plen = (size_t)get(&p, end, 2);
        if ((size_t)(end - p) < plen || len > (uint64_t)(end - p - plen))
            die("the payload is truncated");
        if (plen == 0 || p[0] == '/' || memchr(p, 0, plen) ||
            snprintf(path, sizeof path, "%s/%.*s", bundle, (int)plen, p) >= (int)sizeof path)
            die("bad path in the payload");
        if (strstr(path + strlen(bundle), "/../") || strstr(path + strlen(bundle), "/.."))
            die("bad path in the payload");
        p += plen;
        unsigned char *data = (unsigned char *)p;
        p += len;
        switch (type) {
        case 'd':
            if (mkdir(path, mode & 07777) < 0 && errno != EEXIST)
                die("cannot create %s: %s", path, strerror(errno));
            break;
        case 'x':
            patch_interp(data, len, interp);
            /* fall through */
        case 'f':
            write_all(path, data, len, mode);
            break;
        case 'l':
            if (len >= sizeof target)
                die("bad symlink in the payload");
            memcpy(target, data, len);
            target[len] = 0;
            if (symlink(target, path) < 0)
                die("cannot create %s: %s", path, strerror(errno));
            break;
        default:
            die("unknown record %d in the payload", type);
        }
    }
}

/* ---- where to unpack --------------------------------------------------- */

/* Make bundle[] in `root`; return NULL, or why `root` cannot serve. */
static const char *try_root(const char *root, char *why, size_t whylen)
{
    struct statvfs sv;
    if (statvfs(root, &sv) < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return why;
    }
    if (sv.f_flag & ST_RDONLY)
        return "read-only";
    if (sv.f_flag & ST_NOEXEC)
        return "mounted noexec";
    if (snprintf(bundle, sizeof bundle, "%s/pyd-XXXXXX", root) >= (int)sizeof bundle) {
        bundle[0] = 0;
        return "path too long";
    }
    if (!mkdtemp(bundle)) {
        snprintf(why, whylen, "%s", strerror(errno));
        bundle[0] = 0;
        return why;
    }
    /* Absolute, for PT_INTERP and for the remover (which runs in /). */
    char real[PATH_MAX];
    if (bundle[0] != '/') {
        if (!realpath(bundle, real) || strlen(real) >= sizeof bundle) {
            snprintf(why, whylen, "cannot resolve the path: %s", strerror(errno));
            rmdir(bundle);
            bundle[0] = 0;
            return why;
        }
        strcpy(bundle, real);
    }
    return NULL;
}

static void make_bundle(void)
{
    const char *tmpdir = getenv("TMPDIR");
    const char *roots[] = {tmpdir && *tmpdir ? tmpdir : NULL, "/tmp", "/var/tmp", "/dev/shm"};
    char report[2048] = "";
    char why[256];
    size_t used = 0;
    for (size_t i = 0; i < sizeof roots / sizeof *roots; i++) {
        if (!roots[i] || (i > 0 && roots[0] && strcmp(roots[i], roots[0]) == 0))
            continue;
        const char *bad = try_root(roots[i], why, sizeof why);
        if (!bad) {
            if (report[0])
                fprintf(stderr, "pyd: note: cannot unpack in%s; unpacked in %s instead\n", report, roots[i]);
            return;
        }
        int n = snprintf(report + used, sizeof report - used, "%s %s%s (%s)", used ? ";" : "",
                         i == 0 ? "TMPDIR=" : "", roots[i], bad);
        if (n > 0 && (size_t)n < sizeof report - used)
            used += n;
    }
    die("cannot unpack myself:%s. Set TMPDIR to a writable directory on a file system "
        "mounted without noexec (about 27 MB is unpacked there while pyd runs)", report);
}

/* ---- the remover -------------------------------------------------------- */

/* The state letter of /proc/<pid>/stat and its start time; 0 if gone. */
static char proc_state(pid_t pid, unsigned long long *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *s = strrchr(buf, ')');
    if (!s || s[1] != ' ')
        return 0;
    char state = s[2];
    /* field 22 (starttime) is the 20th after the state */
    char *q = s + 2;
    for (int f = 0; f < 19 && q; f++)
        q = strchr(q + 1, ' ');
    *start = q ? strtoull(q + 1, NULL, 10) : 0;
    return state;
}

/* The owner record, bundle/.owner: "pydboot1 <pid> <start time> <pid
 * namespace> <boot id>". A remover sweeps the unpack directories of its
 * parent directory whose owner is gone: another boot, or the same boot and
 * pid namespace with that pid dead or reused. Others (another pid
 * namespace, no record, no /proc) are left alone. */
static int owner_ids(char *ns, size_t nslen, char *boot, size_t bootlen)
{
    ssize_t n = readlink("/proc/self/ns/pid", ns, nslen - 1);
    if (n <= 0)
        return -1;
    ns[n] = 0;
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = read(fd, boot, bootlen - 1);
    close(fd);
    if (n < 32)
        return -1;
    boot[n] = 0;
    boot[strcspn(boot, "\n ")] = 0;
    return strchr(ns, ' ') ? -1 : 0;
}

static void write_owner(unsigned long long start)
{
    char ns[128], boot[64], path[PATH_MAX + 16], line[512];
    if (!start || owner_ids(ns, sizeof ns, boot, sizeof boot) < 0)
        return;
    snprintf(path, sizeof path, "%s/.owner", bundle);
    int n = snprintf(line, sizeof line, "pydboot1 %d %llu %s %s\n", (int)getpid(), start, ns, boot);
    write_all(path, (const unsigned char *)line, (size_t)n, 0600);
}

static int remove_tree(const char *path)
{
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void sweep(void)
{
    char ns[128], boot[64], root[PATH_MAX];
    if (owner_ids(ns, sizeof ns, boot, sizeof boot) < 0)
        return;
    snprintf(root, sizeof root, "%s", bundle);
    char *slash = strrchr(root, '/');
    if (!slash)
        return;
    const char *mine = slash + 1;
    *slash = 0;
    DIR *d = opendir(root[0] ? root : "/");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "pyd-", 4) != 0 || strlen(e->d_name) != 10 ||
            strcmp(e->d_name, mine) == 0)
            continue;
        char dir[PATH_MAX + 300], rec[PATH_MAX + 320], buf[512];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        struct stat st;
        if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
            continue;
        snprintf(rec, sizeof rec, "%s/.owner", dir);
        int fd = open(rec, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = 0;
        /* "pydboot1 <pid> <start> <ns> <boot>", split by hand (sscanf
         * would add ~100 KB to a static binary) */
        char *f[5], *q = buf;
        int nf = 0;
        while (nf < 5) {
            while (*q == ' ')
                q++;
            if (!*q || *q == '\n')
                break;
            f[nf++] = q;
            q += strcspn(q, " \n");
            if (*q)
                *q++ = 0;
        }
        if (nf != 5 || strcmp(f[0], "pydboot1") != 0)
            continue;
        int pid = (int)strtol(f[1], NULL, 10);
        unsigned long long start = strtoull(f[2], NULL, 10), now = 0;
        const char *ons = f[3], *oboot = f[4];
        if (pid <= 0)
            continue;
        int stale;
        if (strcmp(oboot, boot) != 0)
            stale = 1;
        else if (strcmp(ons, ns) != 0)
            stale = 0;
        else {
            char state = proc_state(pid, &now);
            stale = state == 0 || state == 'Z' || state == 'X' || now != start;
        }
        if (stale)
            remove_tree(dir);
    }
    closedir(d);
}

static void start_remover(void)
{
    pid_t server = getpid();
    unsigned long long start = 0;
    proc_state(server, &start);
    pid_t child = fork();
    if (child < 0)
        return;   /* then the directory stays behind; nothing else breaks */
    if (child > 0) {
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
        return;
    }
    if (fork() != 0)
        _exit(0);
    /* The grandchild: no parent to wait for it, no terminal, no fds. */
    setsid();
    if (chdir("/") < 0)
        _exit(0);
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
    if (syscall(SYS_close_range, 0U, ~0U, 0U) < 0) {   /* before 5.9: a loop */
        long max = sysconf(_SC_OPEN_MAX);
        for (long fd = 0; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
            close((int)fd);
    }
    int nul = open("/dev/null", O_RDWR);
    if (nul == 0) {
        dup2(0, 1);
        dup2(0, 2);
    }
    int sigs[] = {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        signal(sigs[i], SIG_IGN);
    prctl(PR_SET_NAME, "pyd-unpack-rm", 0, 0, 0);
    if (start)
        sweep();
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
    int pidfd = (int)syscall(SYS_pidfd_open, server, 0);
    if (pidfd >= 0) {
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
            ;
    } else if (errno != ESRCH) {
        for (;;) {   /* kernels before 5.3 */
            unsigned long long now = 0;
            char st = proc_state(server, &now);
            if (st == 0 || st == 'Z' || st == 'X' || now != start)
                break;
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
    }
    remove_bundle();
    _exit(0);
}

int main(int argc, char **argv)
{
    (void)argc;
    size_t size;
    unsigned char *raw = load_archive(&size);
    make_bundle();
    {
        unsigned long long start = 0;
        proc_state(getpid(), &start);
        write_owner(start);
    }
    char interp[PATH_MAX + 64], prog[PATH_MAX + 64];
    snprintf(interp, sizeof interp, "%s%s", bundle, INTERP_REL);
    snprintf(prog, sizeof prog, "%s/pyd", bundle);
    extract(raw, size, interp);
    free(raw);
    start_remover();
    execv(prog, argv);
    int e = errno;
    die("cannot run %s: %s%s", prog, strerror(e),
        e == EACCES || e == EPERM ? " (is its file system mounted noexec? set TMPDIR elsewhere)" : "");
}
