"""The legacy surface, API 1.0-1.3: how those versions spell every reply.

The projections here turn engine views (engine.views) into the v1.3 wire
shapes: container inspect and list rows (with the `Status` string), image
inspect, list rows, history and viz, top, version and info, and the
progress and error objects of streams. Inbound, `create_config` reads a
v1.3 create body into the engine's flat config. A new API version is a
second module like this one; no store or engine code changes.
"""

import json
import time

from .. import timefmt
from ..engine import createconfig, ports

MIN, MAX = (1, 0), (1, 3)


class Legacy:
    """API 1.0-1.3: plain-text errors, raw attach streams, flat shapes."""

    name = "legacy"
    framed_output = False
    start_takes_host_config = True   # v1.3 gives Binds at start
    wait_flushes_head = False        # v1.3's wait answers once the container has stopped
    tag_needs_force = True           # moving an existing tag takes force=1
    top_runs_ps = False              # v1.3 top lists {PID, Tty, Time, Cmd} from /proc

    def __init__(self, version, negotiate=None):
        self.version = version
        self.negotiate = negotiate  # (min, max) of the modern surface, on unversioned paths

    def daemon_version(self, facts):
        out = daemon_version(facts)
        if self.negotiate:
            # Clients that negotiate (the docker SDK's version="auto") read these
            # from unversioned /version before they pick a path (docs/api-choices.md).
            out.update(MinAPIVersion=self.negotiate[0], ApiVersion=self.negotiate[1])
        return out

    def error_body(self, message):
        return "text/plain; charset=utf-8", (message.rstrip("\n") + "\n").encode()

    def hijack_head(self, headers):
        """The status line and headers written when attach takes the socket."""
        return "HTTP/1.1 200 OK", [("Content-Type", "application/vnd.docker.raw-stream")]

    # Build output (api.build): Docker 0.6's plain text, every failure after
    # the 200 as "Error build: ..."; intermediate containers are kept unless
    # rm=1, as Docker 0.6 kept them.

    build_content_type = "text/plain; charset=utf-8"
    build_errors_in_stream = True
    build_rm_default = False
    build_quiet_id_only = False   # q hides only RUN output (Docker 0.6)

    def build_step(self, n, total, text):
        word, _, rest = text.partition(" ")
        return f"Step {n} : {word.upper()} {rest.strip()}\n".encode()

    def build_text(self, text):
        return text.encode()

    def build_built(self, image_id):
        return b""

    def build_tagged(self, repo, tag):
        return b""

    def build_error(self, message, code=None):
        return f"Error build: {message}\n".encode()

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

    def imported_msg(self, image_id):
        return self.status_msg(image_id[:12])

    def committed(self, image_id):
        return {"Id": image_id}

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


# -- containers ----------------------------------------------------------------

def human_duration(seconds):
    """Docker's HumanDuration, used in container Status strings."""
    s = int(seconds)
    if seconds < 1:
        return "Less than a second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = s // 3600
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 3:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def status_string(state, now=None):
    if state["status"] in ("running", "paused"):
        up = "Up " + human_duration((now or time.time()) - timefmt.iso_to_time(state["started_at"]))
        return up + " (Paused)" if state["status"] == "paused" else up
    return f"Exit {state.get('exit_code', 0)}"


def create_config(body):
    """A v1.3 create body is already the engine's flat config (Docker 0.6's
    Config, host fields included)."""
    return body


def _running_network(d):
    return (d["state"].get("network") or {}) if d["state"]["status"] in ("running", "paused") else {}


def network_settings(d):
    """Docker 0.6's NetworkSettings of the container's first bridge network
    (the document spells IPAddress IpAddress: both), empty when stopped."""
    net = _running_network(d)
    ep = next(iter((net.get("endpoints") or {}).values()), None)
    if ep is None:
        return {"IPAddress": "", "IpAddress": "", "IPPrefixLen": 0, "IpPrefixLen": 0,
                "Gateway": "", "Bridge": "", "PortMapping": None}
    return {"IPAddress": ep["IPAddress"], "IpAddress": ep["IPAddress"], "IPPrefixLen": ep["IPPrefixLen"],
            "IpPrefixLen": ep["IPPrefixLen"], "Gateway": ep["Gateway"], "Bridge": net.get("bridge", ""),
            "PortMapping": ports.legacy_mapping(net.get("ports"))}


def ports_string(d):
    return ports.legacy_string(_running_network(d).get("ports"))


def container_inspect(view):
    d, path = view.data, view.path
    st = d["state"]
    return {
        "Id": d["id"],
        "Created": d["created"],
        "Path": d["argv"][0] if d["argv"] else "",
        "Args": list(d["argv"][1:]),
        "Config": createconfig.join(d["config"], d["host"]),  # v1.3's Config holds the host fields
        "State": {"Running": st["status"] in ("running", "paused"), "Pid": st["pid"], "ExitCode": st["exit_code"],
                  "StartedAt": st["started_at"], "FinishedAt": st["finished_at"], "Ghost": False,
                  "OOMKilled": st["oom_killed"], "Error": st["error"]},
        "Image": d["image"],
        "NetworkSettings": network_settings(d),
        "SysInitPath": "",
        "ResolvConfPath": f"{path}/resolv.conf",
        "HostnamePath": f"{path}/hostname",
        "HostsPath": f"{path}/hosts",
        "Volumes": {m["target"]: m["source"] for m in d["mounts"]},
        "VolumesRW": {m["target"]: m["rw"] for m in d["mounts"]},
        "HostConfig": {"Binds": d["host"].get("Binds")},
        "Driver": d["driver"],
    }


def container_row(view, now=None):
    d = view.data
    row = {"Id": d["id"][:12], "Image": view.image_ref or d["image"][:12],
           "Command": " ".join(d["argv"]),
           "Created": int(timefmt.iso_to_time(d["created"])),
           "Status": status_string(d["state"], now), "Ports": ports_string(d)}
    if view.size_rw is not None:
        row["SizeRw"] = view.size_rw
        row["SizeRootFs"] = view.size_rootfs
    return row


def container_rows(views):
    now = time.time()
    return [container_row(v, now) for v in views]


def changes(items):
    return [{"Path": path, "Kind": kind} for path, kind in items]


# -- images --------------------------------------------------------------------

def _unix(text):
    return int(timefmt.iso_to_time(text))


def image_inspect(img):
    c = img.config
    return {"id": img.id, "parent": img.parent, "created": c.get("created") or "",
            "container": c.get("container") or "", "container_config": c.get("container_config") or {},
            "config": c.get("config") or {}, "docker_version": c.get("docker_version") or "",
            "architecture": c.get("architecture") or "", "os": c.get("os") or "linux",
            "comment": c.get("comment") or "", "author": c.get("author") or "", "Size": img.size}


def image_rows(rows):
    out = [{"Repository": r.repo or "<none>", "Tag": r.tag or "<none>", "Id": r.image.id[:12],
            "Created": _unix(r.image.created), "Size": r.image.size, "VirtualSize": r.image.virtual_size}
           for r in rows]
    out.sort(key=lambda r: (-r["Created"], r["Repository"], r["Tag"]))
    return out


def image_history(chain):
    return [{"Id": img.id[:12], "Created": _unix(img.created),
             "CreatedBy": " ".join((img.config.get("container_config") or {}).get("Cmd") or [])}
            for img in chain]


def image_viz(images):
    lines = ["digraph docker {"]
    images = sorted(images, key=lambda i: i.id)
    for img in images:
        if img.parent:
            lines.append(f' "{img.parent[:12]}" -> "{img.id[:12]}"')
        else:
            lines.append(f' base -> "{img.id[:12]}" [style=invis]')
    for img in images:
        if img.tags:
            label = "\\n".join([img.id[:12]] + [f"{r}:{t}" for r, t in sorted(img.tags)])
            lines.append(f' "{img.id[:12]}" [label="{label}",shape=box,'
                         f'fillcolor="paleturquoise",style="filled,rounded"];')
    lines += [" base [style=invisible]", "}"]
    return "\n".join(lines) + "\n"


def image_deleted(items):
    return [{"Untagged" if what == "untagged" else "Deleted": image_id[:12]} for what, image_id, _ in items]


# -- the daemon ----------------------------------------------------------------

def daemon_version(facts):
    return {"Version": facts["version"], "GitCommit": facts["git_commit"], "GoVersion": facts["runtime"]}


def daemon_info(facts):
    return {"Containers": facts["containers"], "Images": facts["images"], "Debug": facts["debug"],
            "NFd": facts["fds"], "NGoroutines": facts["threads"], "MemoryLimit": facts["memory_limit"],
            "SwapLimit": facts["swap_limit"], "EventsListeners": str(facts["events_listeners"]), "LXCVersion": "",
            "KernelVersion": facts["kernel"], "Driver": facts["driver"]}


# The events Docker 0.6 sent; the rest (exec, health, volume...) arrived later.
LEGACY_EVENTS = {("container", a) for a in ("create", "start", "stop", "die", "kill", "restart", "destroy",
                                            "export", "commit")} | \
                {("image", a) for a in ("untag", "delete", "import", "tag", "insert", "pull", "push")}


def event(ev):
    """{"status","id","time"}, ids as Docker 0.6 logged them (12 digits); None
    for events this surface does not know."""
    if (ev.type, ev.action) not in LEGACY_EVENTS:
        return None
    return {"status": ev.action, "id": ev.id[:12], "time": int(ev.time)}


def search_results(hits):
    """v1.3's search answer: Name and Description only."""
    return [{"Name": h.name, "Description": h.description} for h in hits]


def pushed_msg(tag, digest, size):
    """Docker 0.6 said nothing more once a push was done: the status line before was all."""
    return b""


# A request's surface answers for its version: handlers call
# req.surface.container_inspect(view) and never name a version.
for _projection in (create_config, container_inspect, container_rows, changes, image_inspect, image_rows,
                    image_history, image_viz, image_deleted, daemon_info, event, search_results, pushed_msg):
    setattr(Legacy, _projection.__name__, staticmethod(_projection))
del _projection
