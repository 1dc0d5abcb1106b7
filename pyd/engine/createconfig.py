"""The create-config schema: what a container is made from, its validation,
and Docker's rules for filling it from the image (MergeConfig) and for
commit.

The engine stores a container's config in two parts (docs/storage.md):
`config`, what belongs to the container and its image (Cmd, Env, User...),
and `host`, what belongs to this host (Memory, MemorySwap, Dns,
VolumesFrom, Binds). Validation and merging work on the flat form, which is
also what an image config's "config" holds (Docker's image format):
join() and split() move between the two.
"""

import ipaddress
import re

from .. import errors
from ..runtime.cgroups import MIN_MEMORY
from ..store.containers import HOST_FIELDS, LEGACY_HOST_FIELDS
from . import launchopts, mounts

_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,61}[A-Za-z0-9])?\Z")
INT64 = (-(1 << 63), (1 << 63) - 1)


def check_int(k, v):
    """An integer field as dockerd decodes it: a JSON number that fits int64."""
    if not isinstance(v, int) or isinstance(v, bool):
        raise errors.BadParameter(f"{k} must be an integer")
    if not INT64[0] <= v <= INT64[1]:
        raise errors.BadParameter(f"{k} is out of range: {v} does not fit a signed 64-bit integer")
    return v
_LIST_FIELDS = ("Cmd", "Entrypoint", "Env", "Dns", "PortSpecs")
_BOOL_FIELDS = ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce")
_STR_FIELDS = ("Hostname", "User", "VolumesFrom", "WorkingDir", "Image", "Domainname", "StopSignal")
_HOST_BOOLS = ("AutoRemove", "Privileged", "ReadonlyRootfs", "PublishAllPorts")
_HOST_INTS = ("PidsLimit", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "ShmSize")
_HOST_LISTS = ("CapAdd", "CapDrop", "ExtraHosts", "DnsSearch", "DnsOptions", "SecurityOpt")
RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")


def empty_config():
    """Every field, at its default: the flat config of Docker's image format."""
    return {"Hostname": "", "User": "", "Memory": 0, "MemorySwap": 0, "AttachStdin": False,
            "AttachStdout": False, "AttachStderr": False, "PortSpecs": None, "Tty": False,
            "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None, "Dns": None,
            "Image": "", "Volumes": None, "VolumesFrom": "", "Entrypoint": None, "WorkingDir": ""}


# Engine API 1.41 fields of the container's own config, beyond v1.3's; a
# flat config has them only when a client sent them (legacy shapes stay exact).
MODERN_CONFIG = {"Domainname": "", "Labels": None, "Healthcheck": None, "ExposedPorts": None,
                 "StopSignal": "", "StopTimeout": None, "OnBuild": None}


def split(flat):
    """Flat config -> (config, host)."""
    config = {k: v for k, v in flat.items() if k not in HOST_FIELDS}
    host = {k: flat.get(k) for k in HOST_FIELDS}
    return config, host


def join(config, host):
    """(config, host) -> the flat config of v1.3 and of Docker's image format,
    fields in Docker's order: the host fields v1.3 had, not HostConfig's."""
    flat = empty_config()
    flat.update(config)
    for k in LEGACY_HOST_FIELDS:
        if k in host:
            flat[k] = host[k]
    return flat


def argv(config):
    return list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])


def check(body):
    """Validate a flat config; returns it with every field present and normalized."""
    if not isinstance(body, dict):
        raise errors.BadParameter("the container config must be a JSON object")
    cfg = empty_config()
    cfg.update(body)
    if not isinstance(cfg.get("Image"), str) or not cfg["Image"]:
        raise errors.BadParameter("missing Image in the container config")
    for k in _STR_FIELDS:
        if cfg.get(k) is None:
            cfg[k] = ""
        elif not isinstance(cfg[k], str):
            raise errors.BadParameter(f"{k} must be a string")
    for k in _BOOL_FIELDS:
        if not isinstance(cfg.get(k) or False, bool):
            raise errors.BadParameter(f"{k} must be true or false")
        cfg[k] = bool(cfg.get(k))
    for k in _LIST_FIELDS:
        v = cfg.get(k)
        if isinstance(v, str) and k in ("Cmd", "Entrypoint"):
            v = cfg[k] = [v]
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise errors.BadParameter(f"{k} must be a list of strings")
    for k in ("Memory", "MemorySwap"):
        cfg[k] = check_int(k, cfg.get(k) or 0)
    if cfg["Memory"] < 0 or cfg["MemorySwap"] < -1:
        raise errors.BadParameter("Memory and MemorySwap must not be negative (MemorySwap -1 means unlimited)")
    if 0 < cfg["Memory"] < MIN_MEMORY:
        raise errors.BadParameter(f"Minimum memory limit allowed is {MIN_MEMORY >> 20}MB")
    if cfg["Memory"] and cfg["MemorySwap"] == 0:
        cfg["MemorySwap"] = 2 * cfg["Memory"]  # Docker's default: as much swap as memory
    if cfg["MemorySwap"] > 0 and cfg["MemorySwap"] < cfg["Memory"]:
        raise errors.BadParameter("MemorySwap must be at least Memory (it is the total of memory and swap)")
    if cfg["WorkingDir"] and not cfg["WorkingDir"].startswith("/"):
        raise errors.BadParameter(f"the working directory {cfg['WorkingDir']!r} is invalid: it must be an absolute path")
    if cfg.get("Volumes") is not None:
        if not isinstance(cfg["Volumes"], dict):
            raise errors.BadParameter("Volumes must be an object of {path: {}}")
        for p in cfg["Volumes"]:
            mounts.clean_target(p)
    if cfg["Hostname"] and not _HOSTNAME_RE.match(cfg["Hostname"]):
        raise errors.BadParameter(f"invalid Hostname {cfg['Hostname']!r}: use letters, digits, '-' and '.', "
                                  "up to 63 characters")
    for server in cfg.get("Dns") or []:
        try:
            ipaddress.ip_address(server)
        except ValueError as e:
            raise errors.BadParameter(f"invalid Dns server {server!r}: expected an IP address") from e
    for item in cfg.get("Env") or []:
        if "=" not in item or item.startswith("=") or "\0" in item:
            raise errors.BadParameter(f"invalid Env entry {item!r}: expected NAME=value")
    _check_modern_config(cfg)
    _check_host(cfg)
    return cfg


def _check_modern_config(cfg):
    labels = cfg.get("Labels")
    if labels is not None and not (isinstance(labels, dict) and
                                   all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise errors.BadParameter("Labels must be an object of string values")
    hc = cfg.get("Healthcheck")
    if hc is not None:
        if not isinstance(hc, dict):
            raise errors.BadParameter("Healthcheck must be an object")
        test = hc.get("Test")
        if test is not None and not (isinstance(test, list) and all(isinstance(x, str) for x in test)):
            raise errors.BadParameter("Healthcheck.Test must be a list of strings")
        if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
            raise errors.BadParameter(f"Healthcheck.Test must start with NONE, CMD or CMD-SHELL, not {test[0]!r}")
        for k in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
            v = hc.get(k) or 0
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise errors.BadParameter(f"Healthcheck.{k} must be a non-negative integer (nanoseconds)")
            if 0 < v < 1_000_000:
                raise errors.BadParameter("Interval in Healthcheck cannot be less than 1ms" if k == "Interval"
                                          else f"{k} in Healthcheck cannot be less than 1ms")
        r = hc.get("Retries") or 0
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            raise errors.BadParameter("Retries in Healthcheck cannot be negative")
    ports = cfg.get("ExposedPorts")
    if ports is not None and not isinstance(ports, dict):
        raise errors.BadParameter("ExposedPorts must be an object of {\"port/proto\": {}}")
    if cfg.get("StopTimeout") is not None:
        check_int("StopTimeout", cfg["StopTimeout"])


def _check_host(cfg):
    """The Engine API 1.41 HostConfig fields, when given."""
    for k in _HOST_BOOLS:
        if not isinstance(cfg.get(k) or False, bool):
            raise errors.BadParameter(f"{k} must be true or false")
    for k in _HOST_INTS:
        if cfg.get(k) is not None:
            check_int(k, cfg[k])
    for k in _HOST_LISTS:
        v = cfg.get(k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise errors.BadParameter(f"{k} must be a list of strings")
    init = cfg.get("Init")
    if init is not None and not isinstance(init, bool):
        raise errors.BadParameter("Init must be true, false or null")
    if (cfg.get("NanoCpus") or 0) < 0 or (cfg.get("CpuShares") or 0) < 0:
        raise errors.BadParameter("NanoCpus and CpuShares cannot be negative")
    if cfg.get("NanoCpus") and (cfg.get("CpuQuota") or cfg.get("CpuPeriod")):
        raise errors.BadParameter("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    if cfg.get("NanoCpus") and cfg["NanoCpus"] < 10_000_000:
        raise errors.BadParameter("Range of CPUs is from 0.01 to the number of CPUs available on the system")
    rp = cfg.get("RestartPolicy")
    if rp is not None:
        if not isinstance(rp, dict):
            raise errors.BadParameter("RestartPolicy must be an object {Name, MaximumRetryCount}")
        name, count = rp.get("Name") or "", rp.get("MaximumRetryCount") or 0
        if name not in RESTART_POLICIES:
            raise errors.BadParameter(f"invalid restart policy '{name}'")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise errors.BadParameter("maximum retry count cannot be negative")
        if count and name != "on-failure":
            raise errors.BadParameter(f"maximum retry count cannot be used with restart policy '{name}'")
        cfg["RestartPolicy"] = {"Name": name, "MaximumRetryCount": count}
        if cfg.get("AutoRemove") and name not in ("", "no"):
            raise errors.BadParameter("can't create 'AutoRemove' container with restart policy")
    mode = cfg.get("NetworkMode") or ""
    if not isinstance(mode, str):
        raise errors.BadParameter("NetworkMode must be a string")
    # Whether a named network or container exists is the engine's to check (engine.networking).
    for entry in cfg.get("ExtraHosts") or []:
        host, sep, addr = entry.partition(":")
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            sep = ""
        if not sep or not host:
            raise errors.BadParameter(f"invalid IP address in add-host: {addr!r} (expected host:ip)")
    tmpfs = cfg.get("Tmpfs")
    if tmpfs is not None:
        if not isinstance(tmpfs, dict) or not all(isinstance(v, str) for v in tmpfs.values()):
            raise errors.BadParameter("Tmpfs must be an object of {path: options}")
        for p in tmpfs:
            mounts.clean_target(p, "tmpfs")
    mounts.validate_binds(cfg.get("Binds"))
    cfg["Mounts"] = mounts.check_mounts(cfg.get("Mounts"))
    # What a start would refuse: capability names, tmpfs options.
    launchopts.check(cfg)


def merge(user, image, given=None):
    """Fill what the request left unset from the image's config (Docker's
    MergeConfig). `given` is the set of fields the client sent (default: the
    keys of `user`)."""
    given = set(user) if given is None else set(given)
    out = dict(user)
    for k in ("Hostname", "User", "WorkingDir"):
        if not out.get(k) and image.get(k):
            out[k] = image[k]
    for k in ("Memory", "MemorySwap"):
        if not out.get(k) and image.get(k):
            out[k] = image[k]
    # `docker run --entrypoint ""` sends [""]: no entrypoint, not the image's,
    # and the client's Cmd alone (moby's merge sees a non-empty Entrypoint).
    reset = out.get("Entrypoint") == [""]
    if reset:
        out["Entrypoint"] = None
    elif not out.get("Cmd") and not out.get("Entrypoint"):
        out["Cmd"] = image.get("Cmd")
    if not reset and not out.get("Entrypoint") and image.get("Entrypoint"):
        out["Entrypoint"] = image["Entrypoint"]
        if not user.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
    if not out.get("Dns") and image.get("Dns"):
        out["Dns"] = image["Dns"]
    if image.get("PortSpecs"):
        out["PortSpecs"] = list(dict.fromkeys((image["PortSpecs"] or []) + (out.get("PortSpecs") or [])))
    if image.get("Env"):
        keys = {e.partition("=")[0] for e in out.get("Env") or []}
        out["Env"] = [e for e in image["Env"] if e.partition("=")[0] not in keys] + list(out.get("Env") or [])
    if image.get("Labels"):
        out["Labels"] = dict(image["Labels"], **(out.get("Labels") or {}))
    if image.get("ExposedPorts"):
        out["ExposedPorts"] = dict(image["ExposedPorts"], **(out.get("ExposedPorts") or {}))
    for k in ("Healthcheck", "StopSignal", "Domainname"):
        if not out.get(k) and image.get(k):
            out[k] = image[k]
    if image.get("Volumes"):
        vols = dict(image["Volumes"])
        vols.update(out.get("Volumes") or {})
        out["Volumes"] = vols
    for k in ("Tty", "OpenStdin", "StdinOnce"):
        if k not in given and image.get(k):
            out[k] = image[k]
    return out


def for_commit(base, body):
    """The image config of a commit: the container's flat config, with the
    fields the commit body sets (non-empty) laid over it."""
    merged = dict(base)
    if body:
        over = check(dict(body, Image=body.get("Image") or base["Image"]))
        for k, v in over.items():
            if k in body and v not in (None, "", [], {}, 0, False):
                merged[k] = v
    return merged
