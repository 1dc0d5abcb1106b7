/*
 * devfilter.c - the device cgroup of cgroup v2: an eBPF program.
 *
 * cgroup v1 has a devices controller with devices.allow/deny files. cgroup
 * v2 has none: the kernel runs a BPF_PROG_TYPE_CGROUP_DEVICE program at
 * every open and mknod of a device node by a task of the cgroup, and the
 * program's 1 or 0 allows or refuses it (EPERM). This builds that program
 * from an allow list, the way runc's devicefilter does: deny by default,
 * one block of compares per rule, the first matching rule allows.
 *
 * The program is made here in the daemon, not in a cloned child, and is
 * attached to the container's cgroup directory before the container's
 * first process joins it. It stays attached until the cgroup is removed,
 * so the program's fd is closed at once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>

#include "shim.h"

#define DEVFILTER_MAX_RULES 64
/* Six loads, then at most 8 instructions a rule, then the deny. */
#define DEVFILTER_MAX_INSNS (6 + 8 * DEVFILTER_MAX_RULES + 2)

static struct bpf_insn bpf_insn_make(__u8 code, __u8 dst, __u8 src, __s16 off, __s32 imm)
{
    struct bpf_insn i;
    memset(&i, 0, sizeof i);
    i.code = code;
    i.dst_reg = dst;
    i.src_reg = src;
    i.off = off;
    i.imm = imm;
    return i;
}

/* struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }:
 * access_type is (access << 16) | type. */
#define LDX_W(dst, off)     bpf_insn_make(BPF_LDX | BPF_W | BPF_MEM, dst, 1, off, 0)
#define AND_K(dst, k)       bpf_insn_make(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, k)
#define RSH_K(dst, k)       bpf_insn_make(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, k)
#define MOV_X(dst, src)     bpf_insn_make(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
#define MOV_K(dst, k)       bpf_insn_make(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, k)
#define JNE_K(dst, k, off)  bpf_insn_make(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, k)
#define JNE_X(dst, src, off) bpf_insn_make(BPF_JMP | BPF_JNE | BPF_X, dst, src, off, 0)
#define EXIT()              bpf_insn_make(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* The instructions of one rule into out[] (room for 8); returns how many.
 * Registers: r2 type, r3 access, r4 major, r5 minor; r1 is scratch by then. */
static int rule_block(const struct pyd_dev_rule *r, struct bpf_insn *out)
{
    /* Which compares the rule needs decides the block's length, and every
     * jump goes to the instruction after the block: count first. */
    int checks = (r->type != 0) + (r->access != 7 ? 3 : 0) + (r->major >= 0) + (r->minor >= 0);
    int len = checks + 2, n = 0;
#define NEXT (len - n - 1)
    if (r->type != 0) {
        out[n] = JNE_K(2, r->type, NEXT);
        n++;
    }
    if (r->access != 7) {
        /* Every access asked for must be in the rule: (access & rule) == access. */
        out[n++] = MOV_X(1, 3);
        out[n++] = AND_K(1, r->access);
        out[n] = JNE_X(1, 3, NEXT);
        n++;
    }
    if (r->major >= 0) {
        out[n] = JNE_K(4, r->major, NEXT);
        n++;
    }
    if (r->minor >= 0) {
        out[n] = JNE_K(5, r->minor, NEXT);
        n++;
    }
#undef NEXT
    out[n++] = MOV_K(0, 1);
    out[n++] = EXIT();
    return n;
}

int pyd_device_filter(int cgroup_fd, const struct pyd_dev_rule *rules, int nrules)
{
    struct bpf_insn prog[DEVFILTER_MAX_INSNS];
    union bpf_attr attr;
    int n = 0, i, pfd, rc;

    if (nrules < 0 || nrules > DEVFILTER_MAX_RULES)
        return -E2BIG;
    for (i = 0; i < nrules; i++) {
        const struct pyd_dev_rule *r = &rules[i];
        if ((r->type != 0 && r->type != PYD_DEV_BLOCK && r->type != PYD_DEV_CHAR) ||
            r->access < 1 || r->access > 7 || r->major < -1 || r->minor < -1)
            return -EINVAL;
    }
    prog[n++] = LDX_W(2, 0);
    prog[n++] = AND_K(2, 0xffff);
    prog[n++] = LDX_W(3, 0);
    prog[n++] = RSH_K(3, 16);
    prog[n++] = LDX_W(4, 4);
    prog[n++] = LDX_W(5, 8);
    for (i = 0; i < nrules; i++)
        n += rule_block(&rules[i], prog + n);
    prog[n++] = MOV_K(0, 0);
    prog[n++] = EXIT();

    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (__u64)(unsigned long)prog;
    attr.insn_cnt = (__u32)n;
    attr.license = (__u64)(unsigned long)"Apache";
    pfd = (int)syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    if (pfd < 0)
        return -errno;

    memset(&attr, 0, sizeof attr);
    attr.target_fd = (__u32)cgroup_fd;
    attr.attach_bpf_fd = (__u32)pfd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    /* Multi, as runc and systemd attach theirs: a program on a parent
     * cgroup (systemd's own device policy) still runs, and both must allow. */
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    rc = (int)syscall(__NR_bpf, BPF_PROG_ATTACH, &attr, sizeof attr) < 0 ? -errno : 0;
    close(pfd);
    return rc;
}
