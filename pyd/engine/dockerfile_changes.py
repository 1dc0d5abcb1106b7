"""`changes` of commit and import: Dockerfile instructions applied to an
image's config, as `docker commit --change` and `docker import --change`
take them. Docker allows CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
USER, VOLUME, WORKDIR and STOPSIGNAL here; anything else is a 400.
"""

import json
import shlex

from .. import errors

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR",
           "STOPSIGNAL")


def json_array(rest):
    """The exec form ["a","b"] as a list, or None when `rest` is not a JSON
    array of strings (Docker then falls back to the shell form)."""
    rest = rest.strip()
    if rest.startswith("["):
        try:
            v = json.loads(rest)
        except ValueError:
            v = None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    return None


def _json_or_shell(rest):
    """The exec form ["a","b"] as it is; the shell form wrapped in /bin/sh -c."""
    v = json_array(rest)
    return v if v is not None else ["/bin/sh", "-c", rest.strip()]


def _pairs(rest, what):
    """'a=1 b="x y"' or the old 'a 1' form -> [(k, v)]."""
    try:
        words = shlex.split(rest)
    except ValueError as e:
        raise errors.BadParameter(f"{what}: {e}") from e
    if not words:
        raise errors.BadParameter(f"{what} requires at least one argument")
    if "=" not in words[0]:
        if len(words) < 2:
            raise errors.BadParameter(f"{what} {rest!r}: expected name=value")
        return [(words[0], rest.strip()[len(words[0]):].strip())]
    out = []
    for w in words:
        k, sep, v = w.partition("=")
        if not sep or not k:
            raise errors.BadParameter(f"{what} {rest!r}: expected name=value")
        out.append((k, v))
    return out


def apply(config, changes):
    """A copy of the flat `config` with each instruction line of `changes` applied."""
    cfg = dict(config)
    for line in changes or []:
        for text in line.splitlines():
            text = text.strip()
            if not text or text.startswith("#"):
                continue
            word, _, rest = text.partition(" ")
            op = word.upper()
            if op not in ALLOWED:
                raise errors.BadParameter(f"{word} is not a valid change command")
            if op == "CMD":
                cfg["Cmd"] = _json_or_shell(rest)
            elif op == "ENTRYPOINT":
                cfg["Entrypoint"] = _json_or_shell(rest)
            elif op == "ENV":
                env = list(cfg.get("Env") or [])
                for k, v in _pairs(rest, "ENV"):
                    env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
                cfg["Env"] = env
            elif op == "LABEL":
                cfg["Labels"] = dict(cfg.get("Labels") or {}, **dict(_pairs(rest, "LABEL")))
            elif op == "EXPOSE":
                ports = dict(cfg.get("ExposedPorts") or {})
                for p in rest.split():
                    port, _, proto = p.partition("/")
                    if not port.isdigit():
                        raise errors.BadParameter(f"invalid port {p!r} in EXPOSE")
                    ports[f"{port}/{proto or 'tcp'}"] = {}
                cfg["ExposedPorts"] = ports
            elif op == "VOLUME":
                paths = _json_or_shell(rest) if rest.strip().startswith("[") else rest.split()
                if paths[:2] == ["/bin/sh", "-c"]:
                    paths = rest.split()
                cfg["Volumes"] = dict(cfg.get("Volumes") or {}, **{p: {} for p in paths})
            elif op == "ONBUILD":
                cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [rest.strip()]
            elif op == "USER":
                cfg["User"] = rest.strip()
            elif op == "WORKDIR":
                cfg["WorkingDir"] = rest.strip()
            elif op == "STOPSIGNAL":
                cfg["StopSignal"] = rest.strip()
    return cfg
