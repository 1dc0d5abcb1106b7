#!/usr/bin/env bash
# Build pyd, run it, or run its tests.
#
#   ./build.sh          venv + native shim + frozen one-file binary dist/pyd
#                       (static: needs only a Linux kernel, docs/static.md)
#   ./build.sh run      build, then start dist/pyd on its defaults (foreground)
#   ./build.sh test     install test needs, build, run the whole suite twice:
#                       against the daemon from source and against dist/pyd
#
# As root it installs missing Debian packages itself (python3-venv,
# python3-dev, patchelf, zstd, libzstd-dev; for tests busybox-static, docker-registry, curl).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
TOP=$PWD
VENV=${PYD_VENV:-$TOP/.venv}
PY=${PYTHON:-python3}

say() { printf '>>> %s\n' "$*" >&2; }

apt_need() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "build.sh: missing packages: ${missing[*]} (install them, or run as root on Debian)" >&2
        exit 1
    fi
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

extras() {  # the pinned requirements of setup.cfg's extras, one per line
    "$PY" - "$@" <<'PYEOF'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
reqs = cfg["options"]["install_requires"].split()
for name in sys.argv[1:]:
    reqs += cfg["options.extras_require"][name].split()
print("\n".join(reqs))
PYEOF
}

venv() {
    if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then apt_need python3-venv; fi
    if ! "$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
        apt_need python3-dev
    fi
    [ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
    local want stamp="$VENV/.pyd-requirements"
    want=$(extras build test)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing pinned build and test tools"
        "$VENV/bin/pip" install -q --disable-pip-version-check $want
        printf '%s' "$want" > "$stamp"
    fi
}

native() {
    apt_need gcc libc6-dev  # pyd-init (native/init.c) links statically against libc.a
    say "compiling the native shim (cffi, API mode)"
    "$VENV/bin/python" native/build.py
    local commit
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- 2>/dev/null || commit="$commit-dirty"
    printf 'GIT_COMMIT = "%s"\n' "$commit" > pyd/_build.py
}

freeze() {
    # One static executable (docs/static.md): PyInstaller's one-folder build,
    # glibc's loader and libraries, packed behind native/pydboot.c (linked
    # statically) that unpacks them into $TMPDIR and execs the bootloader.
    apt_need patchelf zstd libzstd-dev
    local work=build/static dir
    dir=$work/onedir/pyd
    say "freezing pyd with PyInstaller (one folder, $dir)"
    rm -rf "$work/onedir"
    mkdir -p "$work"
    # Modules stored uncompressed (level 0): zstd over the whole archive packs
    # raw bytecode better than zlib module by module.
    PYINSTALLER_ZLIB_COMPRESSION_LEVEL=0 "$VENV/bin/pyinstaller" --noconfirm --log-level WARN --onedir --name pyd --strip \
        --distpath "$work/onedir" --workpath build/pyinstaller --specpath build \
        --hidden-import pyd._shim --hidden-import _cffi_backend --hidden-import pyd._build \
        --exclude-module tkinter --exclude-module unittest --exclude-module pydoc \
        --exclude-module doctest --exclude-module pdb --exclude-module sqlite3 \
        --exclude-module multiprocessing --exclude-module asyncio \
        --exclude-module _codecs_jp --exclude-module _codecs_kr --exclude-module _codecs_cn \
        --exclude-module _codecs_hk --exclude-module _codecs_tw --exclude-module _codecs_iso2022 \
        --exclude-module _multibytecodec --exclude-module decimal --exclude-module _decimal \
        --exclude-module pickle --exclude-module _pickle --exclude-module xmlrpc --exclude-module curses \
        --exclude-module setuptools --exclude-module pkg_resources --exclude-module distutils \
        --exclude-module readline \
        pyd.py
    # The host libraries the build still needs (glibc's, as a rule): what ldd
    # finds outside the build, with the loader and libgcc_s (glibc dlopens it
    # for pthread_exit and cancellation).
    local libs f
    libs=$(find "$dir" -type f \( -name pyd -o -name '*.so' -o -name '*.so.*' \) -print0 |
        LD_LIBRARY_PATH="$dir/_internal" xargs -0 ldd 2>/dev/null |
        awk -v d="$(readlink -f "$dir")" '$2 == "=>" && $3 ~ /^\// && index($3, d) != 1 { print $3 }
                                          $1 ~ /^\/.*ld-linux/ { print $1 }' | sort -u)
    libs="$libs $(gcc -print-file-name=libgcc_s.so.1)"
    # A RUNPATH (pyenv's Python has one) would send the loader to the host's
    # libraries first; the bootloader's RPATH names the bundled ones.
    while IFS= read -r -d '' f; do
        if [ -n "$(patchelf --print-rpath "$f" 2>/dev/null)" ]; then patchelf --remove-rpath "$f"; fi
    done < <(find "$dir/_internal" -type f \( -name '*.so' -o -name '*.so.*' \) -print0)
    patchelf --set-interpreter "/$(printf 'pyd-unpack-dir-placeholder/%.0s' {1..9})" \
        --force-rpath --set-rpath '$ORIGIN/glibc:$ORIGIN/_internal' "$dir/pyd"
    say "linking pydboot statically"
    gcc -static -Os -s -Wall -Wextra -o "$work/pydboot" native/pydboot.c -lzstd
    mkdir -p dist
    # shellcheck disable=SC2086  # one path a word
    "$VENV/bin/python" native/pack.py "$work/pydboot" "$dir" dist/pyd $libs
    ls -l dist/pyd >&2
}

build() { venv; native; freeze; }

run_tests() {
    # docker.io (dockerd 20.10, for the differential tests, which start their own
    # private dockerd) would start a system dockerd from its maintainer scripts:
    # policy-rc.d tells them not to.
    if [ "$(id -u)" = 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
    fi
    apt_need busybox-static docker-registry apache2-utils zstd curl iproute2 openssl git docker.io docker-compose iptables nftables qemu-system-x86
    build
    local pytest=("$VENV/bin/python" -m pytest -q -p no:cacheprovider)
    say "test suite against the daemon from source (the differential, soak and frozen-only tests run once, below)"
    PYD_CMD="$VENV/bin/python $TOP/pyd.py" "${pytest[@]}" -m "not differential and not soak and not frozen" tests "$@"
    say "test suite against the frozen binary dist/pyd, with the differential against dockerd 20.10, the soak and the cgroup v2 VM"
    PYD_CMD="$TOP/dist/pyd" "${pytest[@]}" tests "$@"
}

case "${1:-build}" in
    build) build ;;
    run) build; shift; exec "$TOP/dist/pyd" "$@" ;;
    test) shift; run_tests "$@" ;;
    *) echo "usage: $0 [build|run|test]" >&2; exit 2 ;;
esac
