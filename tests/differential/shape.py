"""The shape of a JSON value, and the differences between two shapes.

A shape keeps keys and value types, not values: objects map each key to the
shape of its value, lists keep the merged shape of their elements (so a list
of containers compares like one container with every key any of them had),
and scalars become their JSON type: str, int, float, bool, null. int and
float stay apart because Go clients decode 1.0 into an int64 field as an
error.

Some objects are data, not schema: Labels, Actor.Attributes, volume Options,
NetworkSettings.Networks (keyed by network name) and the like. Their keys
depend on the daemon's content, so `shape` folds them into one "map of
<value shape>" (DATA_MAPS, matched on the last one or two path parts).
"""

import fnmatch

# Objects whose keys are data. Patterns match the dotted path of the object
# ("Config.Labels", "HostConfig.LogConfig.Config", "[].Labels").
DATA_MAPS = (
    "*Labels", "*Attributes", "Options", "*.Options", "*DriverOpts", "*.Networks", "Networks",
    "*ExposedPorts", "*.Ports", "*Volumes", "*GraphDriver.Data", "*LogConfig.Config",
    "*Sysctls", "*StorageOpt", "*.Status", "Status", "*Tmpfs", "*Annotations",
    "*IndexConfigs", "*Runtimes",
    "memory_stats.stats",  # the cgroup's memory.stat, keyed by what the kernel reports
)

SCALARS = {str: "str", bool: "bool", int: "int", float: "float", type(None): "null"}


def is_data_map(path):
    return any(fnmatch.fnmatchcase(path, p) for p in DATA_MAPS)


def shape(value, path=""):
    """('obj', {key: shape}) | ('map', shape) | ('list', shape or None) | 'str' | 'int' | ..."""
    if isinstance(value, dict):
        if path and is_data_map(path):
            inner = None
            for k, v in value.items():
                inner = merge(inner, shape(v, f"{path}.*"))
            return ("map", inner)
        return ("obj", {k: shape(v, f"{path}.{k}" if path else k) for k, v in value.items()})
    if isinstance(value, list):
        inner = None
        for v in value:
            inner = merge(inner, shape(v, f"{path}[]"))
        return ("list", inner)
    return SCALARS[type(value)]


def merge(a, b):
    """The shape of a list holding values of shapes a and b."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0]:
        if a[0] == "obj":
            keys = dict(a[1])
            for k, v in b[1].items():
                keys[k] = merge(keys.get(k), v)
            return ("obj", keys)
        return (a[0], merge(a[1], b[1]))
    if a == b:
        return a
    kinds = set(a[1] if isinstance(a, tuple) and a[0] == "union" else [a])
    kinds |= set(b[1] if isinstance(b, tuple) and b[0] == "union" else [b])
    return ("union", tuple(sorted(kinds, key=repr)))


def describe(s):
    """A short human name of a shape, for difference messages."""
    if s is None:
        return "unknown"
    if isinstance(s, str):
        return s
    kind = s[0]
    if kind == "obj":
        return "object"
    if kind == "map":
        return f"map of {describe(s[1])}"
    if kind == "list":
        return f"list of {describe(s[1])}" if s[1] is not None else "empty list"
    return " or ".join(describe(x) for x in s[1])


def diff(want, have, path=""):
    """Differences between dockerd's shape `want` and pyd's `have`.

    Returns a list of (path, kind, detail) with kind one of: "missing" (a key
    dockerd sends and pyd does not), "extra" (a key only pyd sends), "type"
    (both have it, the types differ), "null" (dockerd null, pyd a list or
    object: Go's empty slices and maps). An empty list on one side says nothing
    about element types, so it is no difference.
    """
    out = []
    where = path or "(top)"
    if isinstance(want, tuple) and isinstance(have, tuple) and want[0] == have[0] and want[0] in ("obj", "map", "list"):
        if want[0] == "obj":
            for k in want[1]:
                sub = f"{path}.{k}" if path else k
                if k not in have[1]:
                    out.append((sub, "missing", describe(want[1][k])))
                else:
                    out += diff(want[1][k], have[1][k], sub)
            for k in have[1]:
                if k not in want[1]:
                    out.append((f"{path}.{k}" if path else k, "extra", describe(have[1][k])))
        elif want[1] is not None and have[1] is not None:
            out += diff(want[1], have[1], f"{path}[]" if want[0] == "list" else f"{path}.*")
        return out
    if want != have:
        # Go marshals an empty slice or map as null; an empty [] or {} (or a full one)
        # where dockerd has null is the "null" class. The reverse, pyd null where
        # dockerd has a value, stays a type difference: clients iterate over it.
        what = "null" if want == "null" and isinstance(have, tuple) and have[0] in ("list", "map", "obj") else "type"
        out.append((where, what, f"dockerd {describe(want)}, pyd {describe(have)}"))
    return out
