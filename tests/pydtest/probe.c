/*
 * probe.c - tries what a container should not be allowed to do and prints
 * one "name errno" line per attempt (0: it worked).  Built statically by
 * tests/pydtest/security.py and run inside pyd's containers.
 *
 *   probe NAME...        the attempts named (see the table below)
 *   probe euid           prints the effective uid (for the setuid check)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

static long try_clone_ns(void)
{
    long pid = syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

static long try_perf(void)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
}

static long attempt(const char *name)
{
    if (!strcmp(name, "getpid")) return syscall(SYS_getpid);
    if (!strcmp(name, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3 /* session */, 0);
    if (!strcmp(name, "add_key")) return syscall(SYS_add_key, "user", "probe", "x", 1, -2 /* process */);
    if (!strcmp(name, "request_key")) return syscall(SYS_request_key, "user", "probe", NULL, -2);
    if (!strcmp(name, "userfaultfd")) return syscall(SYS_userfaultfd, 0);
    if (!strcmp(name, "perf_event_open")) return try_perf();
    if (!strcmp(name, "bpf")) return syscall(SYS_bpf, 0, NULL, 0);
    if (!strcmp(name, "vsock")) return socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
    if (!strcmp(name, "vsock_high")) return syscall(SYS_socket, 40L | (1L << 32), SOCK_STREAM, 0);
    if (!strcmp(name, "unshare_user")) return unshare(CLONE_NEWUSER);
    if (!strcmp(name, "unshare_ns")) return unshare(CLONE_NEWNS);
    if (!strcmp(name, "clone_ns")) return try_clone_ns();
    if (!strcmp(name, "clone3")) return syscall(SYS_clone3, NULL, 0);
    if (!strcmp(name, "mount")) return mount("none", "/tmp", "tmpfs", 0, NULL);
    if (!strcmp(name, "umount2")) return umount2("/proc", MNT_DETACH);
    if (!strcmp(name, "pivot_root")) return syscall(SYS_pivot_root, "/", "/");
    if (!strcmp(name, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0);
    if (!strcmp(name, "init_module")) return syscall(SYS_init_module, NULL, 0, "");
    if (!strcmp(name, "open_by_handle_at")) return syscall(SYS_open_by_handle_at, -1, NULL, 0);
    if (!strcmp(name, "swapon")) return syscall(SYS_swapon, "/nonexistent", 0);
    if (!strcmp(name, "reboot")) return syscall(SYS_reboot, 0, 0, 0, NULL);
    if (!strcmp(name, "settimeofday")) return syscall(SYS_settimeofday, NULL, NULL);
    if (!strcmp(name, "setns")) return syscall(SYS_setns, -1, 0);
    if (!strcmp(name, "mknod_mem")) return mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1));
    if (!strcmp(name, "open_mem")) {
        int fd = open("/tmp/mem", O_RDONLY);
        if (fd >= 0) close(fd);
        return fd;
    }
    if (!strcmp(name, "personality_bad")) return syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */);
    if (!strcmp(name, "x32_getpid")) return syscall(SYS_getpid | 0x40000000);
    errno = ENOSYS;
    return -2;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "euid")) {
        printf("%d\n", (int)geteuid());
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long r = attempt(argv[i]);
        printf("%s %d\n", argv[i], r < 0 ? errno : 0);
        if (r > 2 && strcmp(argv[i], "getpid") && strcmp(argv[i], "clone_ns"))
            close((int)r);
    }
    return 0;
}
