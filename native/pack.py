"""Pack a PyInstaller one-folder build of pyd and glibc behind pydboot
(native/pydboot.c) into one static executable (docs/static.md).

    python3 native/pack.py BOOT ONEDIR OUT LIB...

BOOT: the static pydboot; ONEDIR: the one-folder build (its bootloader
ONEDIR/pyd, already given a placeholder PT_INTERP and the RPATH
$ORIGIN/glibc:$ORIGIN/_internal by build.sh); LIB...: glibc's loader and
libraries, copied to glibc/. The archive is compressed with the zstd command
(-19 --long); OUT is BOOT + the frame + a 32-byte trailer.
"""

import os
import stat
import struct
import subprocess
import sys
import tempfile

MAGIC = b"PYDBOOT1"
ARCHIVE_MAGIC = b"PYDA1\n"


def record(kind, mode, path, data=b""):
    p = path.encode()
    return struct.pack("<cIQH", kind, mode, len(data), len(p)) + p + data


def archive(onedir, libs):
    out = [ARCHIVE_MAGIC]
    for root, dirs, files in os.walk(onedir):
        dirs.sort()
        rel_root = os.path.relpath(root, onedir)
        if rel_root != ".":
            out.append(record(b"d", stat.S_IMODE(os.lstat(root).st_mode), rel_root))
        for name in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(root, d))):
            full = os.path.join(root, name)
            rel = os.path.normpath(os.path.join(rel_root, name))
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out.append(record(b"l", 0o777, rel, os.readlink(full).encode()))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    kind = b"x" if rel == "pyd" else b"f"
                    out.append(record(kind, stat.S_IMODE(st.st_mode), rel, f.read()))
    out.append(record(b"d", 0o755, "glibc"))
    for lib in libs:
        with open(os.path.realpath(lib), "rb") as f:
            out.append(record(b"f", 0o755, "glibc/" + os.path.basename(lib), f.read()))
    out.append(b"e")
    return b"".join(out)


def main(boot, onedir, dest, *libs):
    if not os.path.isfile(os.path.join(onedir, "pyd")):
        sys.exit(f"pack.py: no bootloader {onedir}/pyd")
    raw = archive(onedir, libs)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "archive")
        with open(src, "wb") as f:
            f.write(raw)
        subprocess.run(["zstd", "-q", "-19", "--long=24", "-f", src, "-o", src + ".zst"], check=True)
        with open(src + ".zst", "rb") as f:
            frame = f.read()
    with open(boot, "rb") as f:
        head = f.read()
    part = dest + ".part"
    with open(part, "wb") as f:
        f.write(head)
        f.write(frame)
        f.write(struct.pack("<QQQ8s", len(head), len(frame), len(raw), MAGIC))
    os.chmod(part, 0o755)
    os.replace(part, dest)
    print(f"pack.py: {dest}: {len(head) + len(frame) + 32} bytes "
          f"(pydboot {len(head)}, archive {len(raw)} -> {len(frame)})", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
