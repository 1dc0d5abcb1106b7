"""Engine API 1.41's ContainerStats (the `docker stats` object) from the
engine's samples (engine.Engine.container_stats): the field names and the
omissions of dockerd's encoding (Go's omitempty), so a reply decodes in
the docker CLI and SDK as dockerd's does.

pyd has no bridge network yet, so `networks` is left out (as dockerd does
for a container without one).
"""

from .. import timefmt

_OTHER_BLKIO = ("io_queue_recursive", "io_service_time_recursive", "io_wait_time_recursive",
                "io_merged_recursive", "io_time_recursive", "sectors_recursive")


def _omit_zero(d):
    return {k: v for k, v in d.items() if v}


def cpu_stats(stats):
    """cpu_stats (or precpu_stats) from a cgroup sample; the zero shape for None."""
    cpu = (stats or {}).get("cpu") or {}
    throttling = cpu.get("throttling") or {}
    usage = {"total_usage": cpu.get("total", 0), "usage_in_kernelmode": cpu.get("system", 0),
             "usage_in_usermode": cpu.get("user", 0)}
    if cpu.get("percpu"):
        usage["percpu_usage"] = list(cpu["percpu"])
    out = {"cpu_usage": usage}
    if stats:
        out.update(_omit_zero({"system_cpu_usage": stats.get("system_cpu_usage", 0),
                               "online_cpus": stats.get("online_cpus", 0)}))
    out["throttling_data"] = {"periods": throttling.get("periods", 0),
                              "throttled_periods": throttling.get("throttled_periods", 0),
                              "throttled_time": throttling.get("throttled_time", 0)}
    return out


def memory_stats(stats):
    mem = (stats or {}).get("memory")
    if not mem:
        return {}
    return _omit_zero({"usage": mem.get("usage", 0), "max_usage": mem.get("max_usage", 0),
                       "stats": dict(mem.get("stat") or {}), "failcnt": mem.get("failcnt", 0),
                       "limit": mem.get("limit", 0)})


def blkio_stats(stats):
    blkio = (stats or {}).get("blkio")
    out = {"io_service_bytes_recursive": [], "io_serviced_recursive": []}
    if blkio is not None:
        for k in out:
            out[k] = [dict(e) for e in blkio.get(k) or []]
    out.update({k: [] for k in _OTHER_BLKIO})  # not read by pyd (CFQ-only counters): empty, as dockerd's
    return out


def stats_json(sample, previous=None):
    """One ContainerStats object: `sample` from the engine, `previous` the
    sample before it in the same reply (precpu_stats, preread), or None."""
    stats = sample.get("stats")
    pre = previous.get("stats") if previous else None
    out = {
        "read": sample["read"] if stats is not None else timefmt.ZERO_TIME,
        "preread": previous["read"] if pre is not None else timefmt.ZERO_TIME,
        "pids_stats": _omit_zero(dict((stats or {}).get("pids") or {})),
        "blkio_stats": blkio_stats(stats),
        "num_procs": 0,          # Windows only
        "storage_stats": {},     # Windows only
        "cpu_stats": cpu_stats(stats),
        "precpu_stats": cpu_stats(pre),
        "memory_stats": memory_stats(stats),
    }
    if sample.get("name"):
        out["name"] = "/" + sample["name"].lstrip("/")
    out["id"] = sample["id"]
    return out
