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



def _cdef():
    """The declarations of native/shim.h as cffi's cdef wants them: without
    preprocessor lines, and with the two types <sys/types.h> would give."""
    with open(os.path.join(NATIVE_DIR, "shim.h")) as f:
        body = "".join(line for line in f if not line.lstrip().startswith("#"))
    return "typedef unsigned int uid_t;\ntypedef unsigned int gid_t;\n" + body


ffibuilder = cffi.FFI()
ffibuilder.cdef(_cdef())
ffibuilder.set_source(
    "pyd._shim",
    '#include "shim.c"\n#include "exec.c"\n',
    include_dirs=[NATIVE_DIR],
    depends=[os.path.join(NATIVE_DIR, n) for n in ("shim.c", "exec.c", "shim.h")],
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
