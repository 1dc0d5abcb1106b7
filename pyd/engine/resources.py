"""Docker's rules for `update`: which resource fields a client may change on
a container, their ranges, how they merge into the record's host fields,
and the cgroup limits that follow (runtime.cgroups.Cgroup.update's
arguments). Pure functions: the facade applies the result.

As in dockerd (container.UpdateContainer), 0 means "leave as it is" for
every number but PidsLimit, whose absence (or null) does; NanoCpus and
CpuPeriod/CpuQuota exclude each other; a RestartPolicy without a Name
changes nothing.
"""

from .. import errors
from ..runtime.cgroups import CFS_PERIOD_US, MIN_MEMORY
from .createconfig import check_int

INT_FIELDS = ("Memory", "MemorySwap", "CpuShares", "CpuQuota", "CpuPeriod", "NanoCpus")
FIELDS = INT_FIELDS + ("PidsLimit", "RestartPolicy")
RESTART_NAMES = ("", "no", "always", "unless-stopped", "on-failure")


def _int(body, k):
    v = body.get(k)
    return 0 if v is None else check_int(k, v)


def check_update(body, host, ncpus):
    """(the host fields to store, the cgroup limits to apply) for an update
    `body` (Docker's UpdateConfig) of a container whose host fields are
    `host`. Raises BadParameter for bad values, Conflict for values that
    contradict what the container has."""
    if not isinstance(body, dict):
        raise errors.BadParameter("the update body must be a JSON object")
    # The docker CLI sends every Resources field, unset ones as 0, "" or null:
    # only a field that asks for something pyd cannot do is refused.
    for k, v in body.items():
        if k not in FIELDS and v not in (None, 0, "", [], {}, False):
            raise errors.BadParameter(f"pyd cannot update {k}")
    given = {k: _int(body, k) for k in INT_FIELDS}
    memory, swap = given["Memory"], given["MemorySwap"]
    if swap < -1:
        raise errors.BadParameter("MemorySwap must not be negative (-1 means unlimited swap)")
    if memory < 0 or 0 < memory < MIN_MEMORY:
        raise errors.BadParameter(f"Minimum memory limit allowed is {MIN_MEMORY >> 20}MB")
    old_swap = host.get("MemorySwap") or 0
    if memory > 0 and swap == 0 and old_swap > 0 and memory > old_swap:
        raise errors.Conflict("Memory limit should be smaller than already set memoryswap limit, "
                              "update the memoryswap at the same time")
    eff_memory = memory or host.get("Memory") or 0
    if swap > 0 and eff_memory > 0 and swap < eff_memory:
        raise errors.BadParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap and eff_memory <= 0:
        raise errors.BadParameter("You should always set the Memory limit when using Memoryswap limit")
    if given["CpuShares"] < 0:
        raise errors.BadParameter("CpuShares must not be negative")
    period, quota, nano = given["CpuPeriod"], given["CpuQuota"], given["NanoCpus"]
    if period and not 1000 <= period <= 1000000:
        raise errors.BadParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger "
                                  "than 1 second (i.e. 1000000)")
    if quota and quota != -1 and quota < 1000:
        raise errors.BadParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if nano and not 10**7 <= nano <= ncpus * 10**9:
        raise errors.BadParameter(f"Range of CPUs is from 0.01 to {ncpus}.00, as there are only "
                                  f"{ncpus} CPUs available")
    if nano and (period or quota):
        raise errors.BadParameter("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    for mine, theirs, what in (
            (nano, "CpuPeriod", "Nano CPUs cannot be updated as CPU Period has already been set"),
            (nano, "CpuQuota", "Nano CPUs cannot be updated as CPU Quota has already been set"),
            (period, "NanoCpus", "CPU Period cannot be updated as NanoCPUs has already been set"),
            (quota, "NanoCpus", "CPU Quota cannot be updated as NanoCPUs has already been set")):
        if mine and host.get(theirs):
            raise errors.Conflict("Conflicting options: " + what)
    changes = {k: v for k, v in given.items() if v}
    pids = None
    if body.get("PidsLimit") is not None:
        pids = _int(body, "PidsLimit")
        changes["PidsLimit"] = pids
    policy = body.get("RestartPolicy")
    if policy is not None:
        policy = _restart_policy(policy, host)
        if policy:
            changes["RestartPolicy"] = policy
    if nano:
        cpu_period, cpu_quota = CFS_PERIOD_US, nano * CFS_PERIOD_US // 10**9
    else:
        cpu_period, cpu_quota = period or None, quota or None
    limits = {"memory": memory or None, "memory_swap": swap or None, "pids_limit": pids,
              "cpu_shares": given["CpuShares"] or None, "cpu_quota": cpu_quota, "cpu_period": cpu_period}
    return changes, limits


# The record's fields and the cgroup limits (check_update's) they become.
LIMIT_OF = {"Memory": "memory", "MemorySwap": "memory_swap", "CpuShares": "cpu_shares",
            "CpuPeriod": "cpu_period", "CpuQuota": "cpu_quota", "PidsLimit": "pids_limit"}


def discard_unsupported(cfg, support):
    """Docker's verifyPlatformContainerResources: the limits in `cfg` (create's
    flat config, changed in place) that this host's cgroups cannot carry
    (`support`: runtime.cgroups.support()) are dropped, each with dockerd's
    warning; returns the warnings. NanoCpus without CFS is an error, as there."""
    warnings = []
    if cfg.get("Memory") and not support["memory"]:
        warnings.append("Your kernel does not support memory limit capabilities or the cgroup is "
                        "not mounted. Limitation discarded.")
        cfg["Memory"] = cfg["MemorySwap"] = 0
    if cfg.get("Memory") and cfg.get("MemorySwap") and not support["swap"]:
        warnings.append("Your kernel does not support swap limit capabilities or the cgroup is "
                        "not mounted. Memory limited without swap.")
        cfg["MemorySwap"] = 0
    if cfg.get("NanoCpus") and not support["cpu_cfs"]:
        raise errors.BadParameter("NanoCPUs can not be set, as your kernel does not support CPU CFS "
                                  "scheduler or the cgroup is not mounted")
    for key, feature, what in (("CpuShares", "cpu_shares", "CPU shares or the cgroup is not mounted. "
                                "Shares discarded."),
                               ("CpuPeriod", "cpu_cfs", "CPU CFS period or the cgroup is not mounted. "
                                "Period discarded."),
                               ("CpuQuota", "cpu_cfs", "CPU CFS quota or the cgroup is not mounted. "
                                "Quota discarded.")):
        if cfg.get(key) and not support[feature]:
            warnings.append("Your kernel does not support " + what)
            cfg[key] = 0
    if (cfg.get("PidsLimit") or 0) > 0 and not support["pids"]:
        warnings.append("Your kernel does not support PIDs limit capabilities or the cgroup is "
                        "not mounted. PIDs limit discarded.")
        cfg["PidsLimit"] = None
    return warnings


def _restart_policy(policy, host):
    if not isinstance(policy, dict):
        raise errors.BadParameter("RestartPolicy must be an object {Name, MaximumRetryCount}")
    name, count = policy.get("Name") or "", policy.get("MaximumRetryCount") or 0
    if not isinstance(name, str) or name not in RESTART_NAMES:
        raise errors.BadParameter(f"invalid restart policy {name!r}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise errors.BadParameter("maximum retry count cannot be negative")
    if not name:
        return None
    if count and name != "on-failure":
        raise errors.BadParameter(f"maximum retry count cannot be used with restart policy '{name}'")
    if host.get("AutoRemove") and name != "no":
        raise errors.Conflict("Restart policy cannot be updated because AutoRemove is enabled for the container")
    return {"Name": name, "MaximumRetryCount": count}
