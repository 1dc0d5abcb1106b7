"""HostConfig.LogConfig: which log driver keeps a container's output, and
how much of it (Docker's `--log-driver` and `--log-opt max-size/max-file`).

pyd keeps output itself (runtime.stdio.Output) in a format of its own, so
the drivers it takes are the ones whose promise that format keeps:
  - "json-file" and "local": kept on disk, read back by logs and attach;
  - "none": nothing kept (logs is 501, as dockerd's "does not support
    reading"; attach still streams live output).
Any other driver (syslog, journald, fluentd...) is refused at create with
dockerd's message, rather than taken and ignored.

Options: max-size (a size, "10m") and max-file (files kept, max-size each).
Unlike dockerd, whose json-file keeps everything unless told, a container
that names no max-size gets the daemon's bound (Config.log_max_size x
Config.log_max_file: 8 MiB x 2), so that nobody's flash fills up with a
chatty container. "compress" is accepted when false. Pure functions.
"""

import re

from .. import errors

DRIVERS = ("json-file", "local", "none")
OPTIONS = ("max-size", "max-file", "compress")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kKmMgGtTpP])?[iI]?[bB]?\Z")
MIN_SIZE = 4096


def parse_size(text):
    """Docker's RAMInBytes ("10m", "512k", "1.5g", "10MiB", "4096"), and -1
    for unlimited as json-file takes it; BadParameter otherwise."""
    t = str(text).strip()
    if t == "-1":
        return -1
    m = _SIZE.match(t)
    if not m:
        raise errors.BadParameter(f"invalid size: {text!r}")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def check(log_config):
    """A LogConfig from a client (None or {"Type", "Config"}) -> the record's
    {"Type", "Config"}, or None where it says nothing. BadParameter for a
    driver or an option pyd cannot honour."""
    if log_config is None:
        return None
    if not isinstance(log_config, dict):
        raise errors.BadParameter("LogConfig must be a JSON object {Type, Config}")
    kind = log_config.get("Type") or ""
    opts = log_config.get("Config") or {}
    if not isinstance(kind, str) or not isinstance(opts, dict):
        raise errors.BadParameter("LogConfig must be {Type: string, Config: {string: string}}")
    if kind and kind not in DRIVERS:
        raise errors.BadParameter(f'logger: no log driver named "{kind}" is registered '
                                  f'(pyd has {", ".join(DRIVERS)})')
    if not kind and not opts:
        return None
    out = {}
    for key, value in opts.items():
        if key not in OPTIONS:
            raise errors.BadParameter(f"unknown log opt '{key}' for {kind or 'json-file'} log driver")
        if not isinstance(value, str):
            raise errors.BadParameter(f"log opt {key} must be a string")
        out[key] = value
    if kind == "none" and out:
        raise errors.BadParameter("the none log driver takes no options")
    if "max-size" in out:
        size = parse_size(out["max-size"])
        if 0 < size < MIN_SIZE:
            raise errors.BadParameter(f"max-size must be at least {MIN_SIZE} bytes")
    if "max-file" in out:
        try:
            files = int(out["max-file"])
        except ValueError:
            raise errors.BadParameter(f"invalid max-file: {out['max-file']!r}") from None
        if files < 1:
            raise errors.BadParameter("max-file cannot be less than 1")
        if files > 1 and "max-size" not in out:
            raise errors.BadParameter("max-file cannot be set when max-size is not set")
    if out.get("compress", "false").lower() not in ("false", "0"):
        raise errors.BadParameter("pyd does not compress logs: compress must be false")
    return {"Type": kind or "json-file", "Config": out}


def limits(log_config, default_size, default_files):
    """(bytes a log file may hold, files kept) for a container's stored
    LogConfig; (0, 0) when nothing is kept (the none driver)."""
    if not log_config:
        return default_size, default_files
    if log_config.get("Type") == "none":
        return 0, 0
    opts = log_config.get("Config") or {}
    if "max-size" not in opts:
        return default_size, default_files
    size = parse_size(opts["max-size"])
    if size <= 0:  # "-1" or "0": dockerd's unlimited; pyd keeps its bound
        return default_size, default_files
    return size, int(opts.get("max-file") or 1)


def keeps_logs(log_config):
    return not log_config or log_config.get("Type") != "none"
