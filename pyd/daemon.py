"""The backend facade: one method per operation. Handlers call only this."""

import logging
import os

from . import __version__, sysinfo

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config):
        self.config = config

    # -- life ------------------------------------------------------------

    def start(self):
        for d in (self.config.tmp_dir,):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def shutdown(self):
        pass

    # -- misc ------------------------------------------------------------

    def version(self):
        return {"Version": __version__, "GitCommit": sysinfo.git_commit(),
                "GoVersion": sysinfo.runtime_version()}

    def info(self):
        from . import cgroups
        return {
            "Containers": 0,
            "Images": 0,
            "Debug": self.config.debug,
            "NFd": sysinfo.open_fds(),
            "NGoroutines": sysinfo.threads(),
            "MemoryLimit": cgroups.memory_limit_supported(),
            "SwapLimit": cgroups.swap_limit_supported(),
            "EventsListeners": "0",
            "LXCVersion": "",
            "KernelVersion": sysinfo.kernel_version(),
        }
