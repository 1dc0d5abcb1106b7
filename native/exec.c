/*
 * exec.c - start a process inside a running container (docker exec).
 *
 * Included by the build after shim.c, whose child helpers it reuses
 * (child_fail, setup_stdio, do_exec); the same rules hold for everything
 * reachable from the two children here: async-signal-safe calls only, no
 * malloc, no stdio, no Python, raw set*id syscalls, every failure a
 * (step, errno, index) record on the CLOEXEC error pipe, then _exit(127).
 *
 * Shape (after runc's nsexec): the daemon clones an intermediate child;
 * it joins the container's cgroups and namespaces, then clones the exec
 * process with CLONE_PARENT (a setns into a pid namespace only applies to
 * children) and reports that pid.  See native/shim.h for the protocol.
 */

/* Send `fd` over the unix socket `sock` with SCM_RIGHTS. */
static int exec_send_fd(int sock, int fd)
{
    struct msghdr msg;
    struct iovec iov;
    char byte = 'T';
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cmsg_u;
    struct cmsghdr *cmsg;

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
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    for (;;) {
        if (sendmsg(sock, &msg, MSG_NOSIGNAL) >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

/* A new pty from the container's own devpts ("/" is the container's now):
 * the master goes to the parent, the slave becomes our controlling
 * terminal and stdio.  Unlike the container's init, /dev/console is left
 * alone: it belongs to the container. */
static void exec_tty(const struct child_ctx *c, uid_t uid)
{
    char name[32] = "/dev/pts/";
    char digits[12];
    int master, slave, unlock = 0, n = 0, len = 9, r;
    unsigned int ptn;

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
    r = exec_send_fd(c->sock_fd, master);
    if (r < 0)
        child_fail(c, PYD_STEP_TTY, -1, -r);
    close(master);
    /* The user must be able to reopen its own terminal (runc does the same). */
    if (uid != 0 && fchown(slave, uid, (gid_t)-1) < 0)
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

/* Bounding set, identity, then the capability sets: `caps` for uid 0,
 * nothing for anyone else (setresuid without KEEPCAPS cleared them). */
static void exec_drop_privileges(const struct child_ctx *c, const struct pyd_exec_spec *s)
{
    int last = s->cap_last_cap > 0 ? s->cap_last_cap : 63;

    for (int cap = 0; cap <= last; cap++) {
        if (s->caps & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL && s->cap_last_cap <= 0)
                break;
            child_fail(c, PYD_STEP_CAP_BOUNDING, cap, errno);
        }
    }
    if (syscall(SYS_setgroups, (size_t)(s->ngroups > 0 ? s->ngroups : 0), s->groups) < 0)
        child_fail(c, PYD_STEP_SETGROUPS, -1, errno);
    if (syscall(SYS_setresgid, s->gid, s->gid, s->gid) < 0)
        child_fail(c, PYD_STEP_SETRESGID, -1, errno);
    if (syscall(SYS_setresuid, s->uid, s->uid, s->uid) < 0)
        child_fail(c, PYD_STEP_SETRESUID, -1, errno);
    if (s->uid == 0) {
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        memset(data, 0, sizeof data);
        data[0].effective = data[0].permitted = (uint32_t)(s->caps & 0xffffffffULL);
        data[1].effective = data[1].permitted = (uint32_t)(s->caps >> 32);
        if (syscall(SYS_capset, &hdr, data) < 0)
            child_fail(c, PYD_STEP_CAPSET, -1, errno);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        child_fail(c, PYD_STEP_CAPSET, -1, errno);
}

/* The exec process, inside every namespace and cgroup of the container. */
static void __attribute__((noreturn)) exec_process(const struct pyd_exec_spec *s, int err_fd, int sock)
{
    /* setup_stdio and do_exec read these fields of a pyd_spec. */
    struct pyd_spec ps;
    struct child_ctx c;

    memset(&ps, 0, sizeof ps);
    ps.argv = s->argv;
    ps.envp = s->envp;
    ps.stdin_fd = s->stdin_fd;
    ps.stdout_fd = s->stdout_fd;
    ps.stderr_fd = s->stderr_fd;
    ps.init_fd = s->init_fd;
    c.spec = &ps;
    c.err_fd = err_fd;
    c.sync_fd = -1;
    c.sock_fd = sock;

    /* No mkdir: a missing working directory is the client's error.  As
     * at start, never through a magic link to a daemon fd (enter_cwd). */
    enter_cwd(&c, s->cwd, CREATE_NONE);
    if (s->tty)
        exec_tty(&c, s->uid);
    else
        setup_stdio(&c);
    harden(&c, s->no_new_privs, s->seccomp_filter, s->seccomp_len);
    exec_drop_privileges(&c, s);

    /* As in child_main: CLOEXEC everything above 2 (the error pipe stays
     * usable until execve), reset dispositions, unblock, exec. */
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        for (int fd = 3; fd < 1024; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    {
        struct sigaction sa;
        sigset_t none;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                sigaction(sig, &sa, NULL);
        umask(022);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
    }
    if (ps.init_fd >= 0)
        exec_init(&c);      /* pyd-init --exec: see native/init.c */
    do_exec(&c);
}

/* The intermediate child: cgroups, namespaces, then the exec process. */
static void __attribute__((noreturn)) exec_intermediate(const struct pyd_exec_spec *s, int err_fd, int sock)
{
    struct child_ctx c = {NULL, err_fd, -1, sock};
    struct pyd_report rep;
    ssize_t n;
    long pid;

    /* Joined first, so the exec process starts inside them. */
    for (int i = 0; i < s->ncgroup_fds; i++) {
        n = write(s->cgroup_fds[i], "0", 1);
        if (n != 1)
            child_fail(&c, PYD_STEP_CGROUP, i, n < 0 ? errno : EIO);
    }
    for (int i = 0; i < s->nns_fds; i++)
        if (setns(s->ns_fds[i], 0) < 0)
            child_fail(&c, PYD_STEP_SETNS, i, errno);

    /* Fork-like; the exit signal is ours (SIGCHLD), the parent the daemon. */
    pid = syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
    if (pid < 0)
        child_fail(&c, PYD_STEP_EXEC_CLONE, -1, errno);
    if (pid == 0)
        exec_process(s, err_fd, sock);

    rep.step = PYD_STEP_EXEC_PID;
    rep.err = 0;
    rep.index = (int)pid;
    do {
        n = write(err_fd, &rep, sizeof rep);
    } while (n < 0 && errno == EINTR);
    /* Without the pid the daemon cannot watch it: do not leave it running. */
    if (n != (ssize_t)sizeof rep)
        kill((pid_t)pid, SIGKILL);
    _exit(0);
}

int pyd_exec(const struct pyd_exec_spec *spec, struct pyd_result *res)
{
    int errp[2] = {-1, -1}, sv[2] = {-1, -1};
    sigset_t all, old;
    long pid;
    int err;

    res->pid = -1;
    res->err_fd = res->sync_fd = res->tty_sock = -1;
    if (!spec || !spec->argv || !spec->argv[0] || !spec->cwd)
        return -EINVAL;
    if (pipe2(errp, O_CLOEXEC) < 0)
        goto fail;
    if (spec->tty && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        goto fail;

    /* No Python signal handler may run in the children (see pyd_spawn). */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        close(errp[0]);
        close_if(sv[0]);
        exec_intermediate(spec, errp[1], sv[1]);
    }
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(errp[1]);
    close_if(sv[1]);
    errp[1] = sv[1] = -1;
    if (pid < 0) {
        errno = err;
        goto fail;
    }
    res->pid = (int)pid;
    res->err_fd = errp[0];
    res->tty_sock = sv[0];
    return 0;

fail:
    err = errno;
    close_if(errp[0]);
    close_if(errp[1]);
    close_if(sv[0]);
    close_if(sv[1]);
    return -err;
}
