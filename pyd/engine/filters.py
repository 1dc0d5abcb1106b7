"""Docker's `filters` query parameter, and what each filter means for
containers, images, volumes and events.

The parameter is JSON, in either of the two spellings clients send:
{"status": ["running"]} (Engine API) or {"status": {"running": true}}
(docker CLI before 1.10 and some SDKs). A value list means "any of".
Unknown filter names are a 400, as in dockerd.
"""

import fnmatch
import json

from .. import errors

CONTAINER = ("status", "name", "id", "label", "ancestor", "exited", "before", "since", "health",
             "volume", "network", "is-task", "publish", "expose")
IMAGE = ("dangling", "label", "reference", "before", "since")
VOLUME = ("dangling", "label", "name", "driver")
NETWORK = ("dangling", "driver", "id", "label", "name", "scope", "type")
EVENT = ("type", "event", "container", "image", "label", "volume", "network", "daemon", "scope")
PRUNE = ("until", "label", "label!")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def parse(text, allowed, what="filter"):
    """{name: [values]} from the query text; {} when absent."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise errors.BadParameter(f"invalid filters: {e}") from e
    if not isinstance(raw, dict):
        raise errors.BadParameter("invalid filters: expected a JSON object")
    out = {}
    for name, values in raw.items():
        if name not in allowed:
            raise errors.BadParameter(f"invalid filter '{name}'")
        if isinstance(values, dict):
            values = [v for v, on in values.items() if on]
        elif isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise errors.BadParameter(f"invalid filter '{name}': expected a list of strings")
        out[name] = values
    return out


def labels_match(labels, wanted):
    """Every wanted "key" or "key=value" is among `labels` ({} or None)."""
    labels = labels or {}
    for w in wanted:
        k, sep, v = w.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    return True


def check_statuses(values):
    for v in values:
        if v not in STATUSES:
            raise errors.BadParameter(f"Unrecognised filter value for status: {v}")


def check_bool(name, values):
    for v in values:
        if v.lower() not in ("true", "false", "1", "0"):
            raise errors.BadParameter(f"Invalid filter '{name}={v}'")
    return any(v.lower() in ("true", "1") for v in values)


def check_ints(name, values):
    try:
        return [int(v) for v in values]
    except ValueError as e:
        raise errors.BadParameter(f"invalid filter '{name}': {e}") from e


def reference_match(pattern, repo, tag):
    """`docker images --filter reference=busybox:*` matching, on repo[:tag]."""
    if ":" in pattern.rsplit("/", 1)[-1]:
        return fnmatch.fnmatchcase(f"{repo}:{tag}", pattern)
    return fnmatch.fnmatchcase(repo, pattern)
