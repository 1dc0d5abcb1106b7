"""cffi API-mode builder for pyd's native shim (native/shim.c -> pyd/_shim).

Run ``python3 native/build.py`` from anywhere: the extension lands at
``<repo>/pyd/_shim.cpython-*.so``.  build.sh may call :func:`build` instead.
Two compiler runs: native/init.c (pyd-init, the container init of
HostConfig.Init) linked statically, so that it runs in any image, then the
shim with -O2 -Wall, which carries pyd-init's bytes in its read-only data.
Needs gcc, the static libc (libc6-dev) and the python3-dev headers.
Importing this module compiles nothing.
"""

import os
import subprocess

import cffi

NATIVE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(NATIVE_DIR)
SOURCES = [os.path.join(NATIVE_DIR, n) for n in ("shim.c", "exec.c", "shim.h", "init.c")]


def _cdef():
    """The declarations of native/shim.h as cffi's cdef wants them: without
    preprocessor lines, and with the two types <sys/types.h> would give."""
    with open(os.path.join(NATIVE_DIR, "shim.h")) as f:
        body = "".join(line for line in f if not line.lstrip().startswith("#"))
    return "typedef unsigned int uid_t;\ntypedef unsigned int gid_t;\n" + body


def build_init(dest):
    """Link native/init.c statically into the executable `dest`."""
    cc = os.environ.get("CC", "gcc")
    subprocess.run([cc, "-static", "-Os", "-s", "-Wall", "-I", NATIVE_DIR, "-o", dest,
                    os.path.join(NATIVE_DIR, "init.c")], check=True)
    return dest


def ffibuilder(init_path):
    """The shim's cffi builder, embedding the pyd-init executable at `init_path`."""
    if any(ch in init_path for ch in '"\\\n'):
        raise ValueError(f"unusable path for .incbin: {init_path!r}")
    ffi = cffi.FFI()
    ffi.cdef(_cdef())
    ffi.set_source(
        "pyd._shim",
        '#include "shim.c"\n#include "exec.c"\n',
        include_dirs=[NATIVE_DIR],
        define_macros=[("PYD_INIT_PATH", f'"{init_path}"')],
        depends=SOURCES + [init_path],
        extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
    )
    return ffi


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
        init_path = build_init(os.path.join(os.path.abspath(tmpdir), "pyd-init"))
        built = ffibuilder(init_path).compile(tmpdir=tmpdir, verbose=False)
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
