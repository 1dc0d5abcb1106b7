"""A cgroup-v2-only Linux host for tests: Debian's kernel in qemu.

This machine's kernel binds memory, pids and cpu to cgroup v1 hierarchies,
so their v2 files cannot be had here. A small VM can: Debian's own kernel
(the package's files, unpacked, never installed), booted with
`cgroup_no_v1=all` and an initramfs that holds busybox, a few modules and
the frozen pyd (with the libraries it links, if it is not static). Its
/init mounts cgroup2 and starts pyd on tcp 0.0.0.0:2375 inside the VM.

qemu's user network gives the host one way in, 127.0.0.1:<port> forwarded
to the guest's daemon; `restrict=on` gives the guest no way out at all, so
nothing the VM does can leave this machine (the network rule).

qemu emulates the CPU (TCG): on this machine /dev/kvm opens, but a guest
under nested KVM hangs right after the kernel is unpacked. PYD_TEST_KVM=1
asks for KVM where it works. Emulated, the kernel boots in about 3 s.
"""

import gzip
import io
import os
import re
import shutil
import socket
import stat
import subprocess
import time

from . import BUSYBOX, Api, free_port

CACHE = os.environ.get("PYD_TEST_CACHE", "/var/cache/pyd-tests")
# Loaded in order (bridge needs llc and stp); e1000 is the NIC qemu gives.
MODULES = ("llc", "stp", "bridge", "veth", "overlay", "e1000")
GUEST_PORT = 2375

INIT = """#!/bin/busybox sh
export PATH=/bin
if [ ! -e /.stage2 ]; then
    # The initramfs's own root (rootfs) cannot be pivot_root'ed away from,
    # as every container start does: move into a tmpfs first, as a booted
    # system would be on its root filesystem.
    /bin/busybox mkdir /newroot
    /bin/busybox mount -t tmpfs -o size=800m root /newroot
    for f in /*; do [ "$f" = /newroot ] || /bin/busybox cp -a "$f" /newroot/; done
    /bin/busybox touch /newroot/.stage2
    exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
mount -t cgroup2 none /sys/fs/cgroup
mkdir -p /var/lib/pyd
mount -t tmpfs -o size=512m data /var/lib/pyd
for m in {modules}; do insmod /modules/$m.ko || echo "PYD-VM: insmod $m failed"; done
ip link set lo up
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo PYD-VM: starting pyd
/pyd -H tcp://0.0.0.0:{port} -H unix:///var/run/pyd.sock -g /var/lib/pyd --tls=false \\
     --allow-host 127.0.0.1 --dns-upstream none -D {args}
echo "PYD-VM: pyd exited with $?"
poweroff -f
"""


def kvm_wanted():
    return os.environ.get("PYD_TEST_KVM") == "1" and os.path.exists("/dev/kvm")


def kernel(cache=CACHE):
    """(vmlinuz, modules dir) of Debian's current amd64 kernel, unpacked
    from its package into `cache` (downloaded once)."""
    deps = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True,
                          text=True, check=True).stdout
    m = re.search(r"Depends: (linux-image-[0-9][^\s]*)", deps)
    if not m:
        raise RuntimeError(f"no kernel package behind linux-image-amd64:\n{deps}")
    pkg = m.group(1)
    root = os.path.join(cache, pkg)
    release = pkg[len("linux-image-"):]
    vmlinuz = os.path.join(root, "boot", f"vmlinuz-{release}")
    if not os.path.exists(vmlinuz):
        os.makedirs(cache, exist_ok=True)
        work = root + ".part"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        subprocess.run(["apt-get", "download", "-q", pkg], cwd=work, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deb = next(n for n in os.listdir(work) if n.endswith(".deb"))
        subprocess.run(["dpkg-deb", "-x", deb, "."], cwd=work, check=True)
        os.remove(os.path.join(work, deb))
        shutil.rmtree(root, ignore_errors=True)
        os.rename(work, root)
    return vmlinuz, os.path.join(root, "lib", "modules", release)


class _Cpio:
    """A newc cpio archive, what the kernel unpacks as its initramfs."""

    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 1

    def add(self, name, mode, data=b""):
        name_b = name.encode() + b"\0"
        head = b"070701" + b"".join(b"%08X" % v for v in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_b), 0))
        self.ino += 1
        self.out.write(head + name_b)
        self.out.write(b"\0" * (-(110 + len(name_b)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self.add(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o755):
        self.add(name, stat.S_IFREG | mode, data)

    def link(self, name, target):
        self.add(name, stat.S_IFLNK | 0o777, target.encode())

    def close(self):
        self.add("TRAILER!!!", 0)
        return self.out.getvalue()


def _ldd(path):
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0] if parts else ""
        if lib.startswith("/"):
            out.append(lib)
    return out


def _libraries(binary):
    """The host libraries `binary` needs, with the loader: [] for a static
    one. A dynamic one-file binary also loads, after unpacking, the Python
    library and extension modules it carries, which need the host's libc
    family: theirs are read off the Python that built it (sys.executable)."""
    libs = _ldd(binary)
    if not libs:
        return []
    import _ssl
    import sys
    import sysconfig
    extra = [os.path.join(sysconfig.get_config_var("LIBDIR") or "", sysconfig.get_config_var("LDLIBRARY") or "")]
    dynload = os.path.dirname(_ssl.__file__)   # lib-dynload, wherever this Python keeps it
    extra += [os.path.join(dynload, n) for n in os.listdir(dynload) if n.endswith(".so")]
    extra += [sys.executable]
    for path in extra:
        if os.path.exists(path):
            libs += [lib for lib in _ldd(path) if "libpython" not in lib]
    return sorted(set(libs))


def initramfs(binary, modules_dir, daemon_args=()):
    """The gzipped initramfs: busybox, the modules, /init, and `binary` as /pyd."""
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "var", "var/run", "modules", "etc", "mnt"):
        cpio.dir(d)
    cpio.file("etc/hostname", b"pyd-vm\n", 0o644)
    with open(BUSYBOX, "rb") as f:
        cpio.file("bin/busybox", f.read())
    cpio.file("init", INIT.format(modules=" ".join(MODULES), port=GUEST_PORT,
                                  args=" ".join(daemon_args)).encode())
    with open(binary, "rb") as f:
        cpio.file("pyd", f.read())
    made = {""}
    for lib in _libraries(binary):
        real = os.path.realpath(lib)
        parts = lib.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in made:
                cpio.dir(d)
                made.add(d)
        with open(real, "rb") as f:
            cpio.file(lib.strip("/"), f.read())
    for m in MODULES:
        path = next((os.path.join(dp, m + ".ko") for dp, _, names in os.walk(modules_dir)
                     if m + ".ko" in names), None)
        if path is None:
            raise RuntimeError(f"module {m} is not in {modules_dir}")
        with open(path, "rb") as f:
            cpio.file(f"modules/{m}.ko", f.read(), 0o644)
    return gzip.compress(cpio.close(), compresslevel=1)


class VM:
    """A booted VM whose pyd answers on 127.0.0.1:<port>."""

    def __init__(self, workdir, binary, daemon_args=(), memory_mb=1024):
        self.workdir = str(workdir)
        self.binary = binary
        self.daemon_args = list(daemon_args)
        self.memory_mb = memory_mb
        self.port = free_port()
        self.console = os.path.join(self.workdir, "console.log")
        self.proc = None
        self.api = Api(port=self.port)
        self.kvm = kvm_wanted()

    def start(self, timeout=None):
        timeout = timeout or (90 if self.kvm else 600)
        vmlinuz, modules = kernel()
        initrd = os.path.join(self.workdir, "initrd.gz")
        with open(initrd, "wb") as f:
            f.write(initramfs(self.binary, modules, self.daemon_args))
        cmd = ["qemu-system-x86_64", "-machine", "q35", "-m", str(self.memory_mb), "-smp", "2",
               "-kernel", vmlinuz, "-initrd", initrd,
               "-append", "console=ttyS0 panic=-1 cgroup_no_v1=all",
               "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{self.port}-10.0.2.15:{GUEST_PORT}",
               "-device", "e1000,netdev=n0", "-nographic", "-no-reboot", "-monitor", "none",
               "-serial", f"file:{self.console}"]
        cmd += ["-enable-kvm", "-cpu", "host"] if self.kvm else ["-accel", "tcg", "-cpu", "max"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.workdir, "qemu.err"), "wb"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the VM stopped ({self.proc.returncode}):\n{self.log()}")
            try:
                if self.api.get("/_ping", timeout=2).status == 200:
                    return self
            except (OSError, socket.timeout):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"pyd in the VM did not answer in {timeout} s:\n{self.log()}")

    def log(self):
        out = ""
        for name in ("console.log", "qemu.err"):
            try:
                with open(os.path.join(self.workdir, name), errors="replace") as f:
                    out += f"--- {name}\n" + f.read()[-6000:]
            except OSError:
                pass
        return out

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
