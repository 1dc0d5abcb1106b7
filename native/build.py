"""cffi API-mode builder for pyd's native shim (native/shim.c -> pyd/_shim).

Run ``python3 native/build.py`` from anywhere: the extension lands at
``<repo>/pyd/_shim.cpython-*.so``.  build.sh may call :func:`build` instead.
Flags: -O2 -Wall; needs only gcc and the python3-dev headers.
Importing this module only defines ``ffibuilder``; nothing is compiled.
"""

import os

import cffi

NATIVE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(NATIVE_DIR)

# Mirrors native/shim.h (cffi's cdef cannot read the header's #include
# lines).  Keep both in step.
CDEF = """
enum pyd_step {
    PYD_STEP_READY = 0,
    PYD_STEP_MAKE_PRIVATE = 1,
    PYD_STEP_ROOTFS,
    PYD_STEP_MOUNT,
    PYD_STEP_DEVICES,
    PYD_STEP_MASK,
    PYD_STEP_READONLY,
    PYD_STEP_BIND,
    PYD_STEP_LOOPBACK,
    PYD_STEP_PIVOT_ROOT,
    PYD_STEP_HOSTNAME,
    PYD_STEP_CWD,
    PYD_STEP_TTY,
    PYD_STEP_STDIO,
    PYD_STEP_SYNC,
    PYD_STEP_CAP_BOUNDING,
    PYD_STEP_SETGROUPS,
    PYD_STEP_SETRESGID,
    PYD_STEP_SETRESUID,
    PYD_STEP_CAPSET,
    PYD_STEP_CLOSE_FDS,
    PYD_STEP_EXEC,
    PYD_STEP_COUNT
};

typedef unsigned int uid_t;
typedef unsigned int gid_t;

struct pyd_bind {
    const char *source;
    const char *target;
    int readonly;
};

struct pyd_spec {
    const char *rootfs;
    const char *hostname;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    uid_t uid;
    gid_t gid;
    int ngroups;
    const gid_t *groups;
    const char *overlay_data;
    const char *layers_dir;
    const char *rootfs_source;
    int nbinds;
    const struct pyd_bind *binds;
    int tty;
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    int cap_last_cap;
};

struct pyd_result {
    int pid;
    int err_fd;
    int sync_fd;
    int tty_sock;
};

struct pyd_report {
    int step;
    int err;
    int index;
};

int pyd_spawn(const struct pyd_spec *spec, struct pyd_result *res);
int pyd_recv_fd(int sock);
int pyd_mount(const char *source, const char *target, const char *fstype,
              unsigned long flags, const char *data);
int pyd_umount(const char *target, int flags);
int pyd_set_pdeathsig(int sig);
const char *pyd_step_name(int step);
const char *pyd_step_object(int step, int index);
"""

ffibuilder = cffi.FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "pyd._shim",
    '#include "shim.c"\n',
    include_dirs=[NATIVE_DIR],
    depends=[os.path.join(NATIVE_DIR, "shim.c"), os.path.join(NATIVE_DIR, "shim.h")],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
)


def build(tmpdir=None):
    """Compile the extension and install it as ``<repo>/pyd/_shim*.so``.

    The compiler runs in ``tmpdir`` (a fresh temporary directory when None,
    removed afterwards).  Not in the repo root: distutils would parse the
    repo's setup.cfg there (``version = attr: pyd.__version__`` imports
    pyd.py), and the generated C and object files would litter pyd/.
    The .so is copied in with a rename, so a running daemon that already
    mapped the old one is not disturbed.  Returns the installed path.
    """
    import shutil
    import tempfile

    own = tmpdir is None
    if own:
        tmpdir = tempfile.mkdtemp(prefix="pyd-shim-build-")
    try:
        built = ffibuilder.compile(tmpdir=tmpdir, verbose=False)
        dest = os.path.join(REPO_ROOT, "pyd", os.path.basename(built))
        if os.path.abspath(built) != os.path.abspath(dest):
            tmp = dest + ".tmp"
            shutil.copyfile(built, tmp)
            os.chmod(tmp, 0o755)
            os.replace(tmp, dest)
        return dest
    finally:
        if own:
            shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    print(build())
