"""API versions and the surfaces they select: the one place where the shape
of a reply depends on the version the client asked for.

A surface answers "how does this version spell X": error bodies, attach
framing, the hijack handshake, and the shaping helpers that handlers call.
Handlers never compare version numbers themselves.
"""

import json
import re

from ..errors import BadParameter

LEGACY_MIN, LEGACY_MAX = (1, 0), (1, 3)
# The version announced in the API-Version header and by /version.
ADVERTISED = "1.3"
DEFAULT = LEGACY_MAX  # unversioned paths: old Docker treated them as its own version

_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")


def split(path):
    """'/v1.3/containers/json' -> ((1, 3), '/containers/json')."""
    m = _PREFIX.match(path)
    if not m:
        return DEFAULT, path
    return (int(m.group(1)), int(m.group(2))), m.group(3)


class Legacy:
    """API 1.0-1.3: plain-text errors, raw attach streams, flat shapes."""

    name = "legacy"
    framed_output = False

    def __init__(self, version):
        self.version = version

    def error_body(self, message):
        return "text/plain; charset=utf-8", (message.rstrip("\n") + "\n").encode()

    def hijack_head(self, headers):
        """The status line and headers written when attach takes the socket."""
        return "HTTP/1.1 200 OK", [("Content-Type", "application/vnd.docker.raw-stream")]

    # Progress streams (import, insert, pull, push): JSON objects, one a line.

    def status_msg(self, status, id_=None):
        return _line({"status": status})

    def progress_msg(self, status, current, total, id_=None):
        if total:
            text = f"{human_size(current)}/{human_size(total)} ({int(current * 100 / total)}%)"
        else:
            text = f"{human_size(current)}/? (n/a)"
        return _line({"status": status, "progress": text})

    def error_msg(self, message):
        return _line({"error": message})

    def top(self, procs, ps_args=None):
        """v1.3 top: a list of {PID, Tty, Time, Cmd}; ps_args arrived in 1.4."""
        return [{"PID": str(p["pid"]), "Tty": p["tty"], "Time": p["time"], "Cmd": p["cmd"]} for p in procs]

    def text_stream_error(self, message):
        return f"Error: {message}\n".encode()


def _line(obj):
    return json.dumps(obj).encode() + b"\r\n"


def human_size(n):
    """Docker's HumanSize: 1000-based, three significant digits."""
    units = ["B", "kB", "MB", "GB", "TB"]
    size, i = float(n), 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g} {units[i]}"


def surface_for(version):
    if LEGACY_MIN <= version <= LEGACY_MAX:
        return Legacy(version)
    v = "%d.%d" % version
    if version > LEGACY_MAX:
        raise BadParameter(f"client version {v} is too new. Maximum supported API version is {ADVERTISED}")
    raise BadParameter(f"client version {v} is too old. Minimum supported API version is 1.0")
