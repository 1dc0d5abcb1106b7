/*
 * init.c - pyd-init, the container's pid 1 with HostConfig.Init (docker run
 * --init), with docker-init's (tini's) semantics:
 *
 *   pyd-init -- CMD [ARG...]
 *   pyd-init --exec -- CMD [ARG...]   (no init: exec CMD at once; see main)
 *
 * runs CMD as its child in a process group of its own (holding the
 * terminal's foreground, if there is one), forwards every signal it gets
 * to that child, reaps every zombie of the container (orphans are
 * re-parented to pid 1), and exits with the child's status: its exit
 * code, or 128+N when signal N killed it.
 *
 * Linked statically (native/build.py) so that it runs in any image, and
 * carried inside the shim; the shim execs it from a sealed memfd, as pid 1,
 * with the container's user, capabilities and environment already set.
 * fd 3 is the shim's error pipe (native/shim.h): a failure to start CMD is
 * reported there as one (step, errno, index) record, like the shim's own
 * exec failure, so the daemon names it the same way.  Once CMD has been
 * exec'd no pyd fd is left in the container.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim.h"

#define REPORT_FD 3
#define PATH_MAX_ 4096
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static void report(int step, int err)
{
    struct pyd_report rep = {step, err, -1};
    ssize_t n;
    do {
        n = write(REPORT_FD, &rep, sizeof rep);
    } while (n < 0 && errno == EINTR);
}

/* execvp with the container's PATH (from envp); returns the errno to
 * report: EACCES if some candidate was not executable, else the last. */
static int exec_path(char *const argv[], char *const envp[])
{
    const char *file = argv[0];
    const char *path = DEFAULT_PATH;
    char buf[PATH_MAX_];
    size_t flen = strlen(file);
    int seen_eacces = 0;

    if (flen == 0)
        return ENOENT;
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        return errno;
    }
    for (char *const *e = envp; e && *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) {
            path = *e + 5;
            break;
        }
    for (const char *p = path;; ) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        if (dlen == 0) {
            buf[0] = '.';
            dlen = 1;
        } else if (dlen < sizeof buf) {
            memcpy(buf, p, dlen);
        }
        if (dlen + 1 + flen + 1 <= sizeof buf) {
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, file, flen + 1);
            execve(buf, argv, envp);
            switch (errno) {
            case EACCES:
                seen_eacces = 1;
                break;
            case ENOENT: case ENOTDIR: case ESTALE: case ENODEV: case ETIMEDOUT:
                break;
            default:
                return errno;
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    return seen_eacces ? EACCES : ENOENT;
}

/* Signals that are the process's own fault stay deliverable (and fatal);
 * SIGTTIN/SIGTTOU stay deliverable too, as in tini.  Everything else is
 * waited for and forwarded. */
static void waited_signals(sigset_t *set)
{
    static const int own[] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS,
                              SIGTTIN, SIGTTOU};
    sigfillset(set);
    for (unsigned i = 0; i < sizeof own / sizeof own[0]; i++)
        sigdelset(set, own[i]);
}

int main(int argc, char **argv, char **envp)
{
    sigset_t waited, none;
    int status = 0, done = 0;
    pid_t child;

    if (argc >= 4 && strcmp(argv[1], "--exec") == 0 && strcmp(argv[2], "--") == 0) {
        /* Not an init: the stage every container process passes through
         * on its way to CMD, so that until CMD runs its /proc/self/exe is
         * this sealed memfd, never the daemon's binary (CVE-2019-5736: an
         * Entrypoint of /proc/self/exe, or a #!/proc/self/exe script, then
         * runs, and can reach, only this copy, which cannot be written). */
        fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC);
        report(PYD_STEP_EXEC, exec_path(argv + 3, envp));
        _exit(127);
    }
    if (argc < 3 || strcmp(argv[1], "--") != 0) {
        static const char usage[] = "usage: pyd-init [--exec] -- CMD [ARG...]\n";
        (void)!write(2, usage, sizeof usage - 1);
        return 2;
    }
    /* Named as it is called in ps (exec'd from a memfd, it would be
     * "memfd:pyd-init"). */
    prctl(PR_SET_NAME, "pyd-init", 0, 0, 0);
    waited_signals(&waited);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &waited, NULL);

    child = fork();
    if (child < 0) {
        report(PYD_STEP_INIT, errno);
        return 127;
    }
    if (child == 0) {
        /* Its own process group, in the terminal's foreground.  A
         * background group taking the terminal gets SIGTTOU, so ignore it
         * meanwhile.  No terminal (ENOTTY) is fine. */
        struct sigaction ign, old;
        memset(&ign, 0, sizeof ign);
        ign.sa_handler = SIG_IGN;
        setpgid(0, 0);
        sigaction(SIGTTOU, &ign, &old);
        (void)tcsetpgrp(0, getpgrp());
        sigaction(SIGTTOU, &old, NULL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        fcntl(REPORT_FD, F_SETFD, FD_CLOEXEC);
        report(PYD_STEP_EXEC, exec_path(argv + 2, envp));
        _exit(127);
    }
    /* The child holds the pipe until its exec: the daemon sees EOF then. */
    close(REPORT_FD);

    while (!done) {
        siginfo_t si;
        int sig = sigwaitinfo(&waited, &si);
        if (sig < 0)
            continue;  /* EINTR */
        if (sig != SIGCHLD) {
            /* Forward; ESRCH when it is already gone (its SIGCHLD is next). */
            kill(child, sig);
            continue;
        }
        /* Reap everything that has exited: our child and any orphan. */
        for (;;) {
            int st;
            pid_t pid = waitpid(-1, &st, WNOHANG);
            if (pid <= 0)
                break;
            if (pid == child) {
                status = st;
                done = 1;
            }
        }
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
