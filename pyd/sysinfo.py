"""Facts about the host, read from the kernel when asked (never at import)."""

import os
import platform
import threading


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
