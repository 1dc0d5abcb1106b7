"""The fixed list of requests both daemons get, in order, and what is kept of
each answer.

`run(api)` plays the whole scenario against one daemon (pyd or dockerd)
and returns its records, one per request, each labelled. Steps that need an
earlier answer (an exec id) take it from `ctx`; when the earlier step
failed on one daemon the later one still runs, with "missing" in its path,
so a missing feature shows as a cascade of differences, never as a crash of
the harness. Every request has a timeout; nothing here can pull an image
(create does not pull, and every image named is imported or made here).

What a record keeps: the status code, the kind of body (json, json-stream,
raw-stream, tar, text, empty, with the media type), the shape of a JSON body
(tests/differential/shape.py), and for some kinds a small payload to
compare: _ping's text, the demuxed log frames, the member names of an
archive tar, the (Type, Action) pairs of an event stream.
"""

import base64
import io
import json
import struct
import tarfile
import time
import urllib.parse

from tests.differential.shape import merge, shape

V = "/v1.41"
BUSYBOX = "busybox:latest"
TIMEOUT = 30


def q(obj):
    return urllib.parse.quote(json.dumps(obj, separators=(",", ":")))


def demux(body):
    """8-byte framed stream -> [(stream, bytes)]; None when it is not framed."""
    frames, i = [], 0
    while i < len(body):
        if len(body) - i < 8 or body[i] not in (0, 1, 2) or body[i + 1:i + 4] != b"\0\0\0":
            return None
        n = struct.unpack(">I", body[i + 4:i + 8])[0]
        frames.append((body[i], body[i + 8:i + 8 + n]))
        i += 8 + n
    return frames


def tar_names(body):
    try:
        with tarfile.open(fileobj=io.BytesIO(body)) as tf:
            return sorted(m.name.rstrip("/") for m in tf.getmembers())
    except tarfile.TarError:
        return None


def json_lines(body):
    """A stream of JSON objects (one per line, or back to back) -> list, or None."""
    dec, i, out, text = json.JSONDecoder(), 0, [], body.decode(errors="replace")
    while i < len(text):
        while i < len(text) and text[i] in " \r\n\t":
            i += 1
        if i >= len(text):
            break
        try:
            obj, i = dec.raw_decode(text, i)
        except ValueError:
            return None
        out.append(obj)
    return out


def one_tar(name, data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime = len(data), 0o644, int(time.time())
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def describe_body(resp):
    """(kind, shape, payload) of a response."""
    media = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
    body = resp.body
    if not body:
        return "empty", None, None
    if media == "application/x-tar":
        return "tar", None, tar_names(body)
    if media in ("application/vnd.docker.raw-stream", "application/vnd.docker.multiplexed-stream"):
        frames = demux(body)
        return "raw-stream", None, sorted(frames) if frames is not None else None
    if media == "application/json" or body[:1] in (b"{", b"["):
        try:
            return "json", shape(json.loads(body)), None
        except ValueError:
            items = json_lines(body)
            if items is not None:
                s = None
                for it in items:
                    s = merge(s, shape(it))
                return "json-stream", ("list", s), sorted({(it.get("Type"), (it.get("Action") or "").split(":")[0])
                                                            for it in items if isinstance(it, dict)})
    frames = demux(body)
    if frames is not None:
        return "raw-stream", None, sorted(frames)
    return "text", None, body.decode(errors="replace").strip()[:200]


class Session:
    """Plays requests against one daemon and keeps a record of each."""

    def __init__(self, api):
        self.api, self.records, self.ctx = api, [], {}

    def req(self, group, label, method, path, body=None, headers=None, prefix=V, payload=False, header=None):
        """One request; `payload`: also compare the payload; `header`: a header whose JSON (base64) shape to keep."""
        full = prefix + path.format(**self.ctx)
        rec = {"group": group, "label": label, "method": method, "path": prefix + path}
        try:
            resp = self.api.request(method, full, body=body, headers=headers, timeout=TIMEOUT)
        except OSError as e:
            rec.update(status=f"error: {type(e).__name__}: {e}", kind=None, shape=None, payload=None)
            self.records.append(rec)
            return None
        kind, shp, pay = describe_body(resp)
        rec.update(status=resp.status, kind=kind, shape=shp, payload=pay if payload else None)
        if header:
            raw = resp.headers.get(header)
            try:
                rec["header"] = shape(json.loads(base64.b64decode(raw))) if raw else None
            except ValueError:
                rec["header"] = "undecodable"
        self.records.append(rec)
        return resp

    def capture(self, key, resp, field="Id"):
        try:
            self.ctx[key] = resp.json()[field]
        except (AttributeError, ValueError, KeyError, TypeError):
            self.ctx[key] = "missing"

    def settle(self, path, pred, timeout=10):
        """Poll GET path until pred(json) holds (a state both daemons reach), bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = self.api.get(V + path.format(**self.ctx), timeout=TIMEOUT)
                if r.status == 200 and pred(r.json()):
                    return True
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        return False


def create_body(cmd, **extra):
    body = {"Image": BUSYBOX, "Cmd": cmd, "HostConfig": {"NetworkMode": "none"}}
    body.update(extra)
    return body


LONG = ["sh", "-c", "echo out; echo err >&2; exec sleep 300"]


def system(s):
    s.req("system", "ping", "GET", "/_ping", payload=True)
    s.req("system", "ping-head", "HEAD", "/_ping")
    s.req("system", "version", "GET", "/version")
    s.req("system", "info", "GET", "/info")
    s.req("system", "version-too-new", "GET", "/v1.99/version", prefix="")


def containers(s):
    g = "containers"
    s.req(g, "create", "POST", "/containers/create?name=diff-c1",
          create_body(LONG, Labels={"diff": "yes"}, Env=["X=1"]))
    s.req(g, "create-name-conflict", "POST", "/containers/create?name=diff-c1", create_body(["true"]))
    s.req(g, "create-unknown-image", "POST", "/containers/create",
          {"Image": "diff-nosuch:latest", "Cmd": ["true"]})
    s.req(g, "create-bad-json", "POST", "/containers/create", b"{not json",
          headers={"Content-Type": "application/json"})
    s.req(g, "start", "POST", "/containers/diff-c1/start")
    s.req(g, "start-again", "POST", "/containers/diff-c1/start")
    s.settle("/containers/diff-c1/json", lambda j: j["State"]["Running"])
    s.req(g, "list", "GET", "/containers/json")
    s.req(g, "list-all-size", "GET", "/containers/json?all=1&size=1")
    s.req(g, "list-filters", "GET", "/containers/json?all=1&filters=" + q({"name": ["diff-c1"], "label": ["diff=yes"]}))
    s.req(g, "list-bad-filters", "GET", "/containers/json?filters=notjson")
    s.req(g, "inspect", "GET", "/containers/diff-c1/json")
    s.req(g, "inspect-size", "GET", "/containers/diff-c1/json?size=1")
    s.req(g, "inspect-unknown", "GET", "/containers/diff-nosuch/json")
    time.sleep(0.3)  # both lines written by the shell
    s.req(g, "logs", "GET", "/containers/diff-c1/logs?stdout=1&stderr=1", payload=True)
    s.req(g, "logs-tail-timestamps", "GET", "/containers/diff-c1/logs?stdout=1&stderr=1&tail=1&timestamps=1")
    s.req(g, "logs-no-stream", "GET", "/containers/diff-c1/logs")
    s.req(g, "top", "GET", "/containers/diff-c1/top")
    s.req(g, "top-ps-args", "GET", "/containers/diff-c1/top?ps_args=-o%20pid,comm")
    s.req(g, "stats-one-shot", "GET", "/containers/diff-c1/stats?stream=0")
    s.req(g, "pause", "POST", "/containers/diff-c1/pause")
    s.req(g, "inspect-paused", "GET", "/containers/diff-c1/json")
    s.req(g, "pause-again", "POST", "/containers/diff-c1/pause")
    s.req(g, "unpause", "POST", "/containers/diff-c1/unpause")
    s.req(g, "unpause-again", "POST", "/containers/diff-c1/unpause")
    s.req(g, "archive-head", "HEAD", "/containers/diff-c1/archive?path=/etc/motd",
          header="X-Docker-Container-Path-Stat")
    s.req(g, "archive-get", "GET", "/containers/diff-c1/archive?path=/etc/motd", payload=True)
    s.req(g, "archive-put", "PUT", "/containers/diff-c1/archive?path=/tmp", one_tar("put.txt", b"put\n"),
          headers={"Content-Type": "application/x-tar"})
    s.req(g, "archive-get-put", "GET", "/containers/diff-c1/archive?path=/tmp/put.txt", payload=True)
    s.req(g, "archive-unknown-path", "GET", "/containers/diff-c1/archive?path=/diff-nosuch")
    s.req(g, "changes", "GET", "/containers/diff-c1/changes")
    s.req(g, "rename", "POST", "/containers/diff-c1/rename?name=diff-c2")
    s.req(g, "rename-unknown", "POST", "/containers/diff-nosuch/rename?name=diff-x")
    s.req(g, "inspect-renamed-old", "GET", "/containers/diff-c1/json")
    s.req(g, "update", "POST", "/containers/diff-c2/update", {"Memory": 64 << 20, "MemorySwap": -1})
    s.req(g, "restart", "POST", "/containers/diff-c2/restart?t=1")
    s.settle("/containers/diff-c2/json", lambda j: j["State"]["Running"])
    s.req(g, "kill", "POST", "/containers/diff-c2/kill?signal=KILL")
    s.req(g, "wait", "POST", "/containers/diff-c2/wait")
    s.req(g, "wait-not-running", "POST", "/containers/diff-c2/wait?condition=not-running")
    s.req(g, "inspect-exited", "GET", "/containers/diff-c2/json")
    s.req(g, "kill-stopped", "POST", "/containers/diff-c2/kill")
    s.req(g, "stop-stopped", "POST", "/containers/diff-c2/stop")
    s.req(g, "export", "GET", "/containers/diff-c2/export")
    r = s.req(g, "commit", "POST", "/commit?container=diff-c2&repo=diff-commit&tag=v1&comment=msg",
              {"Cmd": ["echo", "committed"]})
    s.capture("commit", r)
    s.req(g, "create-second", "POST", "/containers/create?name=diff-c3", create_body(["sleep", "300"]))
    s.req(g, "start-second", "POST", "/containers/diff-c3/start")
    s.req(g, "stop", "POST", "/containers/diff-c3/stop?t=1")
    s.req(g, "start-third", "POST", "/containers/diff-c3/start")
    s.req(g, "delete-running", "DELETE", "/containers/diff-c3")
    s.req(g, "delete-force", "DELETE", "/containers/diff-c3?force=1")
    s.req(g, "delete", "DELETE", "/containers/diff-c2?v=1")
    s.req(g, "delete-unknown", "DELETE", "/containers/diff-nosuch")
    s.req(g, "create-hostconfig", "POST", "/containers/create?name=diff-c5", create_body(
        ["sleep", "300"], Labels={"diff": "rich"}, WorkingDir="/tmp", User="1000", StopSignal="SIGTERM",
        HostConfig={"NetworkMode": "none", "Binds": ["diff-rich:/data"],
                    "Mounts": [{"Type": "tmpfs", "Target": "/scratch"}],
                    "Memory": 64 << 20, "PidsLimit": 100, "CpuShares": 512,
                    "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 1},
                    "CapAdd": ["NET_ADMIN"], "CapDrop": ["MKNOD"], "ReadonlyRootfs": True, "Init": True,
                    "ExtraHosts": ["diff-host:127.0.0.2"], "Dns": ["127.0.0.1"]}))
    s.req(g, "start-hostconfig", "POST", "/containers/diff-c5/start")
    s.settle("/containers/diff-c5/json", lambda j: j["State"]["Running"])
    s.req(g, "inspect-hostconfig", "GET", "/containers/diff-c5/json")
    s.req(g, "list-hostconfig", "GET", "/containers/json?filters=" + q({"label": ["diff=rich"]}))
    s.req(g, "delete-hostconfig", "DELETE", "/containers/diff-c5?force=1&v=1")
    s.req(g, "create-bad-restart", "POST", "/containers/create", create_body(
        ["true"], HostConfig={"RestartPolicy": {"Name": "sometimes"}}))
    s.req(g, "create-for-prune", "POST", "/containers/create?name=diff-c4", create_body(["true"]))
    s.req(g, "prune", "POST", "/containers/prune")


def execs(s):
    g = "exec"
    s.req(g, "create-host", "POST", "/containers/create?name=diff-e1", create_body(["sleep", "300"]))
    s.req(g, "start-host", "POST", "/containers/diff-e1/start")
    r = s.req(g, "exec-create", "POST", "/containers/diff-e1/exec",
              {"Cmd": ["sh", "-c", "echo hi > /tmp/e"], "AttachStdout": True, "AttachStderr": True})
    s.capture("exec", r)
    s.req(g, "exec-inspect-new", "GET", "/exec/{exec}/json")
    s.req(g, "exec-start-detached", "POST", "/exec/{exec}/start", {"Detach": True, "Tty": False})
    s.settle("/exec/{exec}/json", lambda j: not j["Running"] and j.get("ExitCode") is not None)
    s.req(g, "exec-inspect-done", "GET", "/exec/{exec}/json")
    s.req(g, "exec-start-again", "POST", "/exec/{exec}/start", {"Detach": True})
    s.req(g, "exec-inspect-unknown", "GET", "/exec/diff-nosuch/json")
    s.req(g, "exec-create-unknown", "POST", "/containers/diff-nosuch/exec", {"Cmd": ["true"]})
    s.req(g, "changes-after-exec", "GET", "/containers/diff-e1/changes")
    s.req(g, "stop-host", "POST", "/containers/diff-e1/stop?t=1")
    s.req(g, "exec-create-stopped", "POST", "/containers/diff-e1/exec", {"Cmd": ["true"]})
    s.req(g, "delete-host", "DELETE", "/containers/diff-e1")
    s.req(g, "create-healthcheck", "POST", "/containers/create?name=diff-h1", create_body(
        ["sleep", "300"], Healthcheck={"Test": ["CMD-SHELL", "true"], "Interval": 500_000_000, "Retries": 1}))
    s.req(g, "start-healthcheck", "POST", "/containers/diff-h1/start")
    s.settle("/containers/diff-h1/json", lambda j: (j["State"].get("Health") or {}).get("Status") == "healthy")
    s.req(g, "inspect-healthy", "GET", "/containers/diff-h1/json")
    s.req(g, "delete-healthcheck", "DELETE", "/containers/diff-h1?force=1")


def images(s):
    g = "images"
    s.req(g, "list", "GET", "/images/json")
    s.req(g, "list-filter", "GET", "/images/json?filters=" + q({"reference": ["busybox"]}))
    s.req(g, "inspect", "GET", "/images/busybox/json")
    s.req(g, "inspect-unknown", "GET", "/images/diff-nosuch/json")
    s.req(g, "history", "GET", "/images/busybox/history")
    s.req(g, "tag", "POST", "/images/busybox/tag?repo=diff-tag&tag=v1")
    s.req(g, "tag-move", "POST", "/images/diff-commit:v1/tag?repo=diff-tag&tag=v1")  # moves, no force
    # the CLI sends the qualified name (docker.io/library/...): the short one must find it
    s.req(g, "tag-qualified", "POST", "/images/busybox/tag?repo=docker.io/library/diff-full&tag=v1")
    s.req(g, "inspect-qualified-short", "GET", "/images/diff-full:v1/json")
    s.req(g, "delete-qualified-short", "DELETE", "/images/diff-full:v1")
    s.req(g, "tag-unknown", "POST", "/images/diff-nosuch/tag?repo=diff-x&tag=v1")
    s.req(g, "inspect-commit", "GET", "/images/diff-commit:v1/json")
    s.req(g, "delete-tag", "DELETE", "/images/diff-tag:v1")
    s.req(g, "delete-commit", "DELETE", "/images/diff-commit:v1")
    s.req(g, "delete-unknown", "DELETE", "/images/diff-nosuch")
    s.req(g, "create-user", "POST", "/containers/create?name=diff-i1", create_body(["true"]))
    s.req(g, "delete-in-use", "DELETE", "/images/busybox")
    s.req(g, "delete-user", "DELETE", "/containers/diff-i1")
    s.req(g, "prune", "POST", "/images/prune")


def volumes(s):
    g = "volumes"
    s.req(g, "create", "POST", "/volumes/create", {"Name": "diff-vol", "Labels": {"diff": "yes"}})
    s.req(g, "list", "GET", "/volumes")
    s.req(g, "list-filter", "GET", "/volumes?filters=" + q({"label": ["diff=yes"]}))
    s.req(g, "inspect", "GET", "/volumes/diff-vol")
    s.req(g, "inspect-unknown", "GET", "/volumes/diff-nosuch")
    s.req(g, "create-user", "POST", "/containers/create?name=diff-v1",
          create_body(["true"], HostConfig={"NetworkMode": "none", "Binds": ["diff-vol:/data"]}))
    s.req(g, "delete-in-use", "DELETE", "/volumes/diff-vol")
    s.req(g, "delete-user", "DELETE", "/containers/diff-v1")
    s.req(g, "delete", "DELETE", "/volumes/diff-vol")
    s.req(g, "delete-unknown", "DELETE", "/volumes/diff-nosuch")
    s.req(g, "create-for-prune", "POST", "/volumes/create", {"Name": "diff-vol2"})
    s.req(g, "prune", "POST", "/volumes/prune")
    s.req(g, "system-df", "GET", "/system/df")


def events(s):
    g = "events"
    s.ctx["until"] = int(time.time()) + 1
    time.sleep(1.1)  # until is in the past: both daemons answer at once
    s.req(g, "events-since-until", "GET", "/events?since={since}&until={until}", payload=True)
    s.req(g, "events-filtered", "GET", "/events?since={since}&until={until}&filters="
          + q({"type": ["container"], "event": ["start", "die"]}), payload=True)


GROUPS = ("system", "containers", "exec", "images", "volumes", "events")


def run(api):
    """The whole scenario against one daemon; its records, in order."""
    s = Session(api)
    s.ctx["since"] = int(time.time()) - 1
    for fn in (system, containers, execs, images, volumes, events):
        fn(s)
    return s.records
