"""Facts about the host, read from the kernel when asked (never at import)."""

import os
import platform
import threading
import uuid


def kernel_version():
    return os.uname().release


def runtime_version():
    """What /version calls GoVersion: the language runtime pyd runs on."""
    return f"{platform.python_implementation().lower()}{platform.python_version()}"


def open_fds():
    return len(os.listdir("/proc/self/fd")) - 1  # minus the listdir's own fd


def threads():
    return threading.active_count()


def git_commit():
    try:
        from . import _build  # written by build.sh
        return _build.GIT_COMMIT
    except ImportError:
        return "source"


def build_time():
    try:
        from . import _build
        return getattr(_build, "BUILD_TIME", "")
    except ImportError:
        return ""


def os_release():
    """(PRETTY_NAME, VERSION_ID) of the host, from /etc/os-release."""
    fields = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                fields[k] = v.strip('"')
    except OSError:
        pass
    return fields.get("PRETTY_NAME", "Linux"), fields.get("VERSION_ID", "")


def mem_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def ip_forward():
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def cgroup_controller(name):
    """Whether the kernel has cgroup controller `name` enabled (v1 or v2)."""
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            return name in f.read().split()
    except OSError:
        pass
    try:
        with open("/proc/cgroups") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == name:
                    return parts[-1] == "1"
    except OSError:
        pass
    return False


def read_only(path="/"):
    """Whether the mount holding `path` is read-only (an appliance's root, often)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def fs_type(path):
    """The filesystem type of the mount holding `path` (from /proc/self/mounts)."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/")) \
                        and len(parts[1]) >= len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def daemon_id(root):
    """A stable id for this daemon: made once, kept in the data root."""
    path = os.path.join(root, "engine-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        pass
    value = str(uuid.uuid4()).upper()
    try:
        with open(path + ".tmp", "w") as f:
            f.write(value)
        os.replace(path + ".tmp", path)
    except OSError:
        pass
    return value
