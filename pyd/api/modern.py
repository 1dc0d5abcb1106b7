"""The modern surface, Engine API 1.24-1.41: how those versions spell every reply.

The same engine views as the legacy surface (pyd/api/legacy.py), projected
into the shapes of Engine API 1.41 (dockerd 20.10): JSON errors
{"message"}, upgraded attach and exec streams with 8-byte frames, list
rows with Names/State/Status/Labels, sha256: image ids, RootFS, the
modern events, version and info. Inbound, `create_config` turns a
{Config..., HostConfig, NetworkingConfig} body into the engine's flat
config. Only this module knows these shapes (docs/api-choices.md).
"""

import json
import os
import platform
import time

from .. import timefmt
from ..errors import BadParameter
from ..engine import ports
from ..engine.networking import networks_of
from . import legacy

MIN, MAX = (1, 24), (1, 41)

_RAW = "application/vnd.docker.raw-stream"


class Modern:
    """API 1.24-1.41."""

    name = "modern"
    framed_output = True
    start_takes_host_config = False
    wait_flushes_head = True
    tag_needs_force = False
    top_runs_ps = True  # top is the host's ps with the client's ps_args (engine.container_ps)

    def __init__(self, version):
        self.version = version

    def error_body(self, message):
        return "application/json", json.dumps({"message": message.rstrip("\n")}).encode()

    def hijack_head(self, headers):
        """101 when the client asked to upgrade (the docker CLI and SDK do), as
        dockerd answers; a plain 200 raw stream otherwise."""
        upgrade = (headers.get("Upgrade") or "").lower()
        connection = (headers.get("Connection") or "").lower()
        if upgrade == "tcp" or "upgrade" in connection:
            return "HTTP/1.1 101 UPGRADED", [("Content-Type", _RAW), ("Connection", "Upgrade"),
                                             ("Upgrade", "tcp")]
        return "HTTP/1.1 200 OK", [("Content-Type", _RAW)]

    # Progress streams: status/id, progressDetail, errorDetail with error.

    def status_msg(self, status, id_=None):
        return _line({"status": status, **({"id": id_} if id_ else {})})

    def progress_msg(self, status, current, total, id_=None):
        detail = {"current": current, **({"total": total} if total else {})}
        return _line({"status": status, "progressDetail": detail, "progress": progress_bar(current, total),
                      **({"id": id_} if id_ else {})})

    def error_msg(self, message):
        return _line({"errorDetail": {"message": message}, "error": message})

    def imported_msg(self, image_id):
        return self.status_msg("sha256:" + image_id)

    def committed(self, image_id):
        return {"Id": "sha256:" + image_id}

    def stream_msg(self, text):
        return _line({"stream": text})

    # Build output (api.build): dockerd's JSON stream; failures found before
    # the build starts are HTTP errors, later ones errorDetail with a code.

    build_content_type = "application/json"
    build_errors_in_stream = False
    build_rm_default = True
    build_quiet_id_only = True    # q: the image id alone (dockerd)

    def build_step(self, n, total, text):
        return _line({"stream": f"Step {n}/{total} : {text}\n"})

    def build_text(self, text):
        return _line({"stream": text})

    def build_built(self, image_id):
        return _line({"aux": {"ID": "sha256:" + image_id}})

    def build_tagged(self, repo, tag):
        return _line({"stream": f"Successfully tagged {repo}:{tag}\n"})

    def build_error(self, message, code=None):
        return _line({"errorDetail": {"message": message, **({"code": code} if code else {})},
                      "error": message})

    def aux_msg(self, obj):
        return _line({"aux": obj})

    def top(self, procs, ps_args=None):
        """{Titles, Processes}; `procs` is what the engine's top gives: either
        (titles, rows) from ps, or the runtime's process list."""
        if isinstance(procs, tuple):
            titles, rows = procs
            return {"Titles": titles, "Processes": rows}
        return {"Titles": ["PID", "TTY", "TIME", "CMD"],
                "Processes": [[str(p["pid"]), p["tty"], p["time"], p["cmd"]] for p in procs]}

    def text_stream_error(self, message):
        # After an upgrade the client reads frames: an error is a stderr frame.
        data = f"Error: {message}\n".encode()
        return bytes([2, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def _line(obj):
    return json.dumps(obj).encode() + b"\r\n"


def progress_bar(current, total):
    """Docker's progress text: '[=====>    ]  1.2MB/3.4MB' (no bar without a total)."""
    if not total:
        return f"{legacy.human_size(current)}"
    width = 50
    done = min(width, int(width * current / total))
    bar = "=" * done + (">" if done < width else "") + " " * max(0, width - done - 1)
    return f"[{bar}] {legacy.human_size(current)}/{legacy.human_size(total)}"


def human_duration(seconds):
    """go-units HumanDuration, which the modern Status strings use."""
    s = int(seconds)
    if seconds < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // (24 * 7)} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // (24 * 30)} months"
    return f"{hours // (24 * 365)} years"


def _sha(image_id):
    return "sha256:" + image_id if image_id else ""


def _unix(text):
    return int(timefmt.iso_to_time(text))


# -- containers: create --------------------------------------------------------

# HostConfig fields the engine keeps (store.containers.HOST_FIELDS), by their
# Engine API names; VolumesFrom is a list here and a comma list in the engine.
_HOST_KEYS = ("Memory", "MemorySwap", "Dns", "Binds", "Mounts", "AutoRemove", "RestartPolicy",
              "NetworkMode", "ExtraHosts", "Privileged", "CapAdd", "CapDrop", "ReadonlyRootfs", "Init",
              "PidsLimit", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod", "Tmpfs", "PortBindings",
              "PublishAllPorts", "DnsSearch", "DnsOptions", "ShmSize", "SecurityOpt", "LogConfig")


def create_config(body):
    """{Config fields, HostConfig, NetworkingConfig} -> the engine's flat config."""
    flat = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    host = body.get("HostConfig")
    host = {} if host is None else host
    if not isinstance(host, dict):
        raise BadParameter("HostConfig must be a JSON object")
    for k in _HOST_KEYS:
        if host.get(k) is not None:
            flat[k] = host[k]
    vf = host.get("VolumesFrom")
    if vf:
        flat["VolumesFrom"] = ",".join(vf) if isinstance(vf, list) else vf
    if host.get("PidsLimit") in (0, -1):
        flat["PidsLimit"] = -1  # both mean "no limit" (null: the daemon's default, engine.plan)
    net = body.get("NetworkingConfig")
    if net is not None and not isinstance(net, dict):
        raise BadParameter("NetworkingConfig must be a JSON object")
    if net and net.get("EndpointsConfig"):
        flat["EndpointsConfig"] = net["EndpointsConfig"]
    return flat


# -- containers: shapes --------------------------------------------------------

def _state_name(st, restarting=False):
    s = st["status"]
    if restarting:
        return "restarting"
    if s == "starting":
        return "created" if st.get("started_at", timefmt.ZERO_TIME) == timefmt.ZERO_TIME else "exited"
    return s


def status_string(view, now=None):
    """Docker's container State.String()."""
    st = view.data["state"]
    now = now or time.time()
    s = st["status"]
    if s in ("running", "paused"):
        up = human_duration(now - timefmt.iso_to_time(st["started_at"]))
        if s == "paused":
            return f"Up {up} (Paused)"
        health = (st.get("health") or {}).get("Status")
        if health == "starting":
            return f"Up {up} (health: starting)"
        return f"Up {up}" + (f" ({health})" if health in ("healthy", "unhealthy") else "")
    if view.restarting:
        ago = human_duration(now - timefmt.iso_to_time(st["finished_at"]))
        return f"Restarting ({st.get('exit_code', 0)}) {ago} ago"
    if s == "removing":
        return "Removal In Progress"
    if st.get("started_at", timefmt.ZERO_TIME) == timefmt.ZERO_TIME:
        return "Created"
    ago = human_duration(now - timefmt.iso_to_time(st["finished_at"]))
    return f"Exited ({st.get('exit_code', 0)}) {ago} ago"


def _mounts(view):
    """Inspect's and the list's Mounts: binds, volumes (named by their directory),
    and the tmpfs mounts of HostConfig."""
    out = []
    for m in view.data.get("mounts") or []:
        if m["kind"] == "bind":
            out.append({"Type": "bind", "Source": m["source"], "Destination": m["target"], "Mode": "",
                        "RW": bool(m["rw"]), "Propagation": "rprivate"})
        else:
            out.append({"Type": "volume", "Name": os.path.basename(m["source"]), "Source": m["source"],
                        "Destination": m["target"], "Driver": "local", "Mode": "", "RW": bool(m["rw"]),
                        "Propagation": ""})
    for m in view.data["host"].get("Mounts") or []:
        if m["Type"] == "tmpfs":
            out.append({"Type": "tmpfs", "Source": "", "Destination": m["Target"], "Mode": "",
                        "RW": not m["ReadOnly"], "Propagation": ""})
    return out


def _network_mode(host):
    return host.get("NetworkMode") or "default"


_EMPTY_ENDPOINT = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "", "EndpointID": "",
                   "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                   "GlobalIPv6PrefixLen": 0, "MacAddress": "", "DriverOpts": None}


def _endpoint(got, cfg):
    """One NetworkSettings.Networks entry: what the running container got on
    the network (engine.networking's state), else only what it asked for."""
    ep = dict(_EMPTY_ENDPOINT)
    cfg = cfg or {}
    ep["Aliases"] = (got or {}).get("Aliases") or cfg.get("Aliases") or None
    ep["IPAMConfig"] = cfg.get("IPAMConfig") or None
    if got:
        ep.update({k: got[k] for k in ("NetworkID", "EndpointID", "Gateway", "IPAddress", "IPPrefixLen",
                                       "MacAddress")})
    return ep


def _network_settings(view, full):
    d = view.data
    mode = _network_mode(d["host"])
    net = d["state"].get("network") or {}
    got = net.get("endpoints") or {}
    if mode.startswith("container:"):
        nets = {}
    elif mode in ("host", "none"):
        nets = {mode: _endpoint(None, None)}
    else:
        cfgs = networks_of(d)
        nets = {n: _endpoint(got.get(n), cfgs.get(n)) for n in dict.fromkeys(list(cfgs) + list(got))}
    if not full:
        return {"Networks": nets}
    first = next(iter(got.values()), None) if mode not in ("host", "none") else None
    port_map = {}
    if d["state"]["status"] in ("running", "paused"):
        port_map = {f"{port}/{proto}": None for port, proto in ports.exposed(d["config"])}
        port_map.update(net.get("ports") or {})
    out = {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
           "LinkLocalIPv6PrefixLen": 0, "Ports": port_map, "SandboxKey": "", "SecondaryIPAddresses": None,
           "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
           "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
           "Networks": nets}
    if d["state"].get("pid") and d["state"]["status"] in ("running", "paused"):
        out["SandboxKey"] = f"/proc/{d['state']['pid']}/ns/net"
    if first and "bridge" in got:
        # The top-level fields describe the default bridge only, as in dockerd.
        b = got["bridge"]
        out.update({k: b[k] for k in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress")})
    return out


def _ports_rows(d):
    """The list's Ports: what a running container published, then what it only exposes."""
    running = d["state"]["status"] in ("running", "paused")
    published = (d["state"].get("network") or {}).get("ports") if running else None
    return ports.modern_rows(published, ports.exposed(d["config"]))


def network(rec, members=None):
    """A network record -> dockerd's NetworkResource."""
    subnet = rec.get("subnet")
    out = {"Name": rec["Name"], "Id": rec["Id"], "Created": rec["Created"], "Scope": "local",
           "Driver": rec["Driver"], "EnableIPv6": False,
           "IPAM": {"Driver": "default", "Options": None,
                    "Config": [{"Subnet": subnet, "Gateway": rec["gateway"]}] if subnet else []},
           "Internal": bool(rec.get("Internal")), "Attachable": bool(rec.get("Attachable")), "Ingress": False,
           "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
           "Options": dict(rec.get("Options") or {}), "Labels": dict(rec.get("Labels") or {})}
    for cid, ep in (members or {}).items():
        out["Containers"][cid] = {"Name": ep["Name"], "EndpointID": ep["EndpointID"],
                                  "MacAddress": ep["MacAddress"],
                                  "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}", "IPv6Address": ""}
    return out


def container_config(config, image_ref, empty_labels=None):
    """The Config object of inspect (and of an image's container_config)."""
    c = dict(config)
    out = {"Hostname": c.get("Hostname") or "", "Domainname": c.get("Domainname") or "",
           "User": c.get("User") or "", "AttachStdin": bool(c.get("AttachStdin")),
           "AttachStdout": bool(c.get("AttachStdout")), "AttachStderr": bool(c.get("AttachStderr")),
           "Tty": bool(c.get("Tty")), "OpenStdin": bool(c.get("OpenStdin")), "StdinOnce": bool(c.get("StdinOnce")),
           "Env": c.get("Env"), "Cmd": c.get("Cmd"), "Image": image_ref,
           "Volumes": c.get("Volumes"), "WorkingDir": c.get("WorkingDir") or "", "Entrypoint": c.get("Entrypoint"),
           "OnBuild": c.get("OnBuild"), "Labels": c.get("Labels") or empty_labels}
    if c.get("ExposedPorts"):
        out["ExposedPorts"] = c["ExposedPorts"]
    if c.get("Healthcheck"):
        out["Healthcheck"] = c["Healthcheck"]
    if c.get("StopSignal"):
        out["StopSignal"] = c["StopSignal"]
    if c.get("StopTimeout") is not None:
        out["StopTimeout"] = c["StopTimeout"]
    return out


MASKED_PATHS = ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def _mount_spec(m):
    """A HostConfig.Mounts entry with moby's omitempty fields left out when empty."""
    out = {"Type": m["Type"]}
    if m.get("Source"):
        out["Source"] = m["Source"]
    out["Target"] = m["Target"]
    if m.get("ReadOnly"):
        out["ReadOnly"] = True
    if m.get("TmpfsOptions"):
        out["TmpfsOptions"] = m["TmpfsOptions"]
    return out


def host_config(host):
    h = host
    rp = h.get("RestartPolicy") or {}
    vf = h.get("VolumesFrom") or ""
    return {
        "Binds": h.get("Binds"), "ContainerIDFile": "", "LogConfig": h.get("LogConfig") or {"Type": "json-file", "Config": {}},
        "NetworkMode": _network_mode(h), "PortBindings": h.get("PortBindings"),
        "RestartPolicy": {"Name": rp.get("Name") or "no", "MaximumRetryCount": rp.get("MaximumRetryCount") or 0},
        "AutoRemove": bool(h.get("AutoRemove")), "VolumeDriver": "",
        "VolumesFrom": [v for v in vf.split(",") if v] or None,
        "CapAdd": h.get("CapAdd"), "CapDrop": h.get("CapDrop"), "CgroupnsMode": "host",
        # As given, else null: what dockerd echoes (its empty Go slices are null).
        "Dns": h.get("Dns"), "DnsOptions": h.get("DnsOptions"), "DnsSearch": h.get("DnsSearch"),
        "ExtraHosts": h.get("ExtraHosts"), "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": bool(h.get("Privileged")),
        "PublishAllPorts": bool(h.get("PublishAllPorts")), "ReadonlyRootfs": bool(h.get("ReadonlyRootfs")),
        "SecurityOpt": h.get("SecurityOpt") or None, "UTSMode": "", "UsernsMode": "", "ShmSize": h.get("ShmSize") or 67108864,
        "Runtime": "runc", "ConsoleSize": [0, 0], "Isolation": "",
        "CpuShares": h.get("CpuShares") or 0, "Memory": h.get("Memory") or 0, "NanoCpus": h.get("NanoCpus") or 0,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": None, "BlkioDeviceReadBps": None,
        "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None,
        "CpuPeriod": h.get("CpuPeriod") or 0, "CpuQuota": h.get("CpuQuota") or 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": None, "DeviceCgroupRules": None,
        "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0, "MemoryReservation": 0,
        "MemorySwap": h.get("MemorySwap") or 0, "MemorySwappiness": None, "OomKillDisable": False,
        "PidsLimit": h["PidsLimit"] if (h.get("PidsLimit") or 0) > 0 else None, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0,
        "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        # What the shim masks and mounts read-only (native/shim.c), none when privileged.
        "MaskedPaths": [] if h.get("Privileged") else list(MASKED_PATHS),
        "ReadonlyPaths": [] if h.get("Privileged") else list(READONLY_PATHS),
        **({"Init": h["Init"]} if h.get("Init") is not None else {}),
        **({"Mounts": [_mount_spec(m) for m in h["Mounts"]]} if h.get("Mounts") else {}),
        **({"Tmpfs": h["Tmpfs"]} if h.get("Tmpfs") else {}),
    }


def container_inspect(view):
    d, path = view.data, view.path
    st = d["state"]
    image_ref = d["config"].get("Image") or d["image"]
    state = {"Status": _state_name(st, view.restarting), "Running": st["status"] in ("running", "paused"),
             "Paused": st["status"] == "paused", "Restarting": view.restarting,
             "OOMKilled": bool(st.get("oom_killed")), "Dead": False, "Pid": st.get("pid") or 0,
             "ExitCode": st.get("exit_code") or 0, "Error": st.get("error") or "",
             "StartedAt": st.get("started_at") or timefmt.ZERO_TIME,
             "FinishedAt": st.get("finished_at") or timefmt.ZERO_TIME}
    if st.get("health"):
        state["Health"] = st["health"]
    out = {
        "Id": d["id"], "Created": d["created"],
        "Path": d["argv"][0] if d["argv"] else "", "Args": list(d["argv"][1:]),
        "State": state, "Image": _sha(d["image"]),
        "ResolvConfPath": f"{path}/resolv.conf", "HostnamePath": f"{path}/hostname",
        "HostsPath": f"{path}/hosts", "LogPath": "",
        "Name": "/" + (d.get("name") or ""), "RestartCount": st.get("restart_count") or 0,
        "Driver": d["driver"], "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": list(view.exec_ids) or None,
        "HostConfig": host_config(d["host"]),
        "GraphDriver": {"Data": {"UpperDir": f"{path}/upper", "WorkDir": f"{path}/work",
                                 "MergedDir": f"{path}/rootfs"} if d["driver"] == "overlay2" else None,
                        "Name": d["driver"]},
        "Mounts": _mounts(view),
        "Config": container_config(d["config"], image_ref, empty_labels={}),
        "NetworkSettings": _network_settings(view, full=True),
    }
    if view.size_rw is not None:
        out["SizeRw"], out["SizeRootFs"] = view.size_rw, view.size_rootfs
    return out


def container_row(view, now=None):
    d = view.data
    row = {"Id": d["id"], "Names": ["/" + d["name"]] if d.get("name") else [],
           "Image": d["config"].get("Image") or _sha(d["image"]), "ImageID": _sha(d["image"]),
           "Command": " ".join(d["argv"]), "Created": _unix(d["created"]), "Ports": _ports_rows(d),
           "Labels": d["config"].get("Labels") or {}, "State": _state_name(d["state"], view.restarting),
           "Status": status_string(view, now), "HostConfig": {"NetworkMode": _network_mode(d["host"])},
           "NetworkSettings": _network_settings(view, full=False), "Mounts": _mounts(view)}
    if view.size_rw is not None:
        row["SizeRw"], row["SizeRootFs"] = view.size_rw, view.size_rootfs
    return row


def container_rows(views):
    now = time.time()
    return [container_row(v, now) for v in views]


changes = legacy.changes  # the same shape on both surfaces


# -- images --------------------------------------------------------------------

def _repo_tags(view):
    return [f"{r}:{t}" for r, t in view.tags]


def image_inspect(img):
    c = img.config
    cfg = c.get("config") or {}
    return {
        "Id": _sha(img.id), "RepoTags": _repo_tags(img), "RepoDigests": list(img.digests),
        "Parent": _sha(img.parent), "Comment": c.get("comment") or "", "Created": c.get("created") or "",
        "Container": c.get("container") or "",
        "ContainerConfig": container_config(c.get("container_config") or {}, (c.get("container_config") or {}).get("Image") or ""),
        "DockerVersion": c.get("docker_version") or "", "Author": c.get("author") or "",
        "Config": container_config(cfg, cfg.get("Image") or ""),
        "Architecture": c.get("architecture") or platform_arch(), "Os": c.get("os") or "linux",
        "Size": img.virtual_size, "VirtualSize": img.virtual_size,
        "GraphDriver": {"Data": {"UpperDir": img.layer_dirs[0] if img.layer_dirs else "",
                                 "LowerDir": ":".join(img.layer_dirs[1:])} if img.layer_dirs else None,
                        "Name": "overlay2"},
        "RootFS": {"Type": "layers", "Layers": list(img.image.diff_ids)},
        "Metadata": {"LastTagTime": timefmt.ZERO_TIME},
    }


def image_rows(rows):
    """One row per image (the engine gives one per tag)."""
    by_id = {}
    for r in rows:
        by_id.setdefault(r.image.id, r.image)
    out = []
    for img in by_id.values():
        tags = _repo_tags(img)
        labels = (img.config.get("config") or {}).get("Labels")
        out.append({"Containers": -1, "Created": _unix(img.created), "Id": _sha(img.id), "Labels": labels or None,
                    "ParentId": _sha(img.parent), "RepoDigests": list(img.digests) or (None if tags else ["<none>@<none>"]),
                    "RepoTags": tags or ["<none>:<none>"], "SharedSize": -1, "Size": img.virtual_size,
                    "VirtualSize": img.virtual_size})
    out.sort(key=lambda r: -r["Created"])
    return out


def image_history(chain):
    out = []
    for i, img in enumerate(chain):
        cc = img.config.get("container_config") or {}
        out.append({"Id": _sha(img.id), "Created": _unix(img.created),
                    "CreatedBy": " ".join(cc.get("Cmd") or []), "Tags": _repo_tags(img) or None,
                    "Size": img.size, "Comment": img.config.get("comment") or ""})
    return out


def image_deleted(items):
    return [{"Untagged": ref or _sha(image_id)} if what == "untagged" else {"Deleted": _sha(image_id)}
            for what, image_id, ref in items]


def images_pruned(items, reclaimed):
    return {"ImagesDeleted": image_deleted(items) or None, "SpaceReclaimed": reclaimed}


# -- the daemon ----------------------------------------------------------------

def platform_arch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def daemon_version(facts):
    return {
        "Platform": {"Name": "pyd"},
        "Components": [{"Name": "Engine", "Version": facts["version"],
                        "Details": {"ApiVersion": "%d.%d" % MAX, "MinAPIVersion": "%d.%d" % MIN,
                                    "GitCommit": facts["git_commit"], "GoVersion": facts["runtime"],
                                    "Os": "linux", "Arch": platform_arch(),
                                    "KernelVersion": facts["kernel"], "BuildTime": facts["build_time"]}}],
        "Version": facts["version"], "ApiVersion": "%d.%d" % MAX, "MinAPIVersion": "%d.%d" % MIN,
        "GitCommit": facts["git_commit"], "GoVersion": facts["runtime"], "Os": "linux", "Arch": platform_arch(),
        "KernelVersion": facts["kernel"], "BuildTime": facts["build_time"],
    }


def daemon_info(facts):
    s = facts["states"]
    return {
        "ID": facts["id"], "Containers": facts["containers"], "ContainersRunning": s.get("running", 0),
        "ContainersPaused": s.get("paused", 0), "ContainersStopped": s.get("stopped", 0),
        "Images": facts["images"], "Driver": facts["driver"],
        "DriverStatus": [["Backing Filesystem", facts["backing_fs"]]],
        "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": facts["memory_limit"], "SwapLimit": facts["swap_limit"], "KernelMemory": False,
        "KernelMemoryTCP": False, "CpuCfsPeriod": facts["cpu_cfs"], "CpuCfsQuota": facts["cpu_cfs"],
        "CPUShares": facts["cpu_shares"], "CPUSet": False, "PidsLimit": facts["pids_limit"],
        "IPv4Forwarding": facts["ip_forward"], "BridgeNfIptables": False, "BridgeNfIp6tables": False,
        "Debug": facts["debug"], "NFd": facts["fds"], "OomKillDisable": False, "NGoroutines": facts["threads"],
        "SystemTime": timefmt.time_to_iso(time.time()), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": facts["cgroup_version"],
        "NEventsListener": facts["events_listeners"], "KernelVersion": facts["kernel"],
        "OperatingSystem": facts["os_name"], "OSVersion": facts["os_version"], "OSType": "linux",
        "Architecture": platform.machine(), "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": os.cpu_count() or 1, "MemTotal": facts["mem_total"], "GenericResources": None,
        "DockerRootDir": facts["root"], "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": facts["hostname"],
        "Labels": [], "ExperimentalBuild": False, "ServerVersion": facts["version"],
        "Runtimes": {"pyd": {"path": "pyd"}}, "DefaultRuntime": "pyd",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": False, "Isolation": "", "InitBinary": "", "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""}, "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": facts["security_options"], "Warnings": facts["warnings"],
        # dockerd leaves SystemStatus out when it has nothing to say (omitempty).
        **({"SystemStatus": facts["system_status"]} if facts.get("system_status") else {}),
    }


# -- events, volumes, disk usage -------------------------------------------------

def event(ev):
    """An engine event (engine.events.Event) as /events streams it."""
    attrs = {k: str(v) for k, v in ev.attributes.items()}
    ns = ev.time_ns
    out = {"Type": ev.type, "Action": ev.action, "Actor": {"ID": ev.id, "Attributes": attrs},
           "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns}
    if ev.type in ("container", "image"):
        # The old fields, which dockerd still sends for these types.
        out = {"status": ev.action, "id": ev.id,
               **({"from": attrs["image"]} if ev.type == "container" and "image" in attrs else {}), **out}
    return out


def exec_inspect(rec):
    """GET /exec/{id}/json, as dockerd spells it (ExitCode null until it exits)."""
    pc = {"arguments": list(rec.arguments), "entrypoint": rec.entrypoint, "privileged": rec.privileged,
          "tty": rec.tty}
    if rec.user:
        pc["user"] = rec.user  # omitempty in moby
    return {"CanRemove": rec.can_remove, "ContainerID": rec.container_id, "DetachKeys": rec.detach_keys,
            "ExitCode": rec.exit_code, "ID": rec.id, "OpenStderr": rec.open_stderr,
            "OpenStdin": rec.open_stdin, "OpenStdout": rec.open_stdout, "ProcessConfig": pc,
            "Running": rec.running, "Pid": rec.pid}


def volume(v):
    return {"CreatedAt": v["created"], "Driver": "local", "Labels": v["labels"] or None,
            "Mountpoint": v["path"], "Name": v["name"], "Options": v["options"] or None, "Scope": "local",
            **({"UsageData": {"RefCount": v["refs"], "Size": v["size"]}} if "size" in v else {})}


def volumes(items):
    return {"Volumes": [volume(v) for v in items], "Warnings": None}


def volumes_pruned(names, reclaimed):
    return {"VolumesDeleted": names or None, "SpaceReclaimed": reclaimed}


def containers_pruned(ids, reclaimed):
    return {"ContainersDeleted": ids or None, "SpaceReclaimed": reclaimed}


def disk_usage(facts):
    imgs = [dict(r, Containers=facts["image_containers"].get(r["Id"], 0), SharedSize=0)
            for r in image_rows(facts["images"])]
    return {"LayersSize": facts["layers_size"], "Images": imgs, "BuilderSize": 0,
            "Containers": container_rows(facts["containers"]),
            "Volumes": [volume(v) for v in facts["volumes"]], "BuildCache": None}


def search_results(hits):
    return [{"name": h.name, "description": h.description, "star_count": h.stars,
             "is_official": h.official, "is_automated": h.automated} for h in hits]


def pushed_msg(tag, digest, size):
    """What the CLI reads the pushed digest from (dockerd's aux PushResult)."""
    return _line({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": size}})


for _projection in (create_config, container_inspect, container_rows, changes, image_inspect, image_rows,
                    image_history, image_deleted, images_pruned, daemon_version, daemon_info, event, volume,
                    search_results, pushed_msg,
                    exec_inspect,
                    volumes, volumes_pruned, containers_pruned, disk_usage, network):
    setattr(Modern, _projection.__name__, staticmethod(_projection))
del _projection
