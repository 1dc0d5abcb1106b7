"""POST /build (issue 12): Docker's classic builder, on both surfaces.

Modern (/v1.41/build) answers a JSON stream of {"stream"}, {"aux"} and
{"errorDetail"} messages, with rm=1 by default; legacy (/build, /v1.3/build)
answers text/plain lines as Docker 0.6 did (`Step N : ...`, `Error build: ...`),
with rm=0 by default. Clients: raw HTTP, the docker CLI 28 with
DOCKER_BUILDKIT=0, docker-py and Debian's docker-compose 1.29.

Every context is a tar made in memory (tarfile); the one the CLI sends comes
from a directory holding the same files. Every wait is bounded.
"""

import bz2
import gzip
import http.server
import io
import json
import lzma
import os
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import uuid

import pytest

from tests.pydtest import UnixHTTPConnection, poll, require, wait_for

DOCKER = "/usr/local/bin/docker"
COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
BUILD_TIMEOUT = 120
MODERN = "/v1.41"


# -- contexts -------------------------------------------------------------------

def entry(data=b"", mode=0o644, uid=0, gid=0, kind="file", link="", mtime=1_600_000_000):
    return {"data": data, "mode": mode, "uid": uid, "gid": gid, "kind": kind, "link": link, "mtime": mtime}


def make_tar(files):
    """files: {name: bytes | str | entry(...)}, in order; directories are implied."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, spec in files.items():
            if not isinstance(spec, dict):
                spec = entry(spec)
            data = spec["data"].encode() if isinstance(spec["data"], str) else spec["data"]
            ti = tarfile.TarInfo(name)
            ti.mode, ti.uid, ti.gid, ti.mtime = spec["mode"], spec["uid"], spec["gid"], spec["mtime"]
            if spec["kind"] == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif spec["kind"] == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, spec["link"]
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def compress(data, kind):
    return {"identity": lambda d: d, "gzip": gzip.compress, "bzip2": bz2.compress,
            "xz": lambda d: lzma.compress(d, format=lzma.FORMAT_XZ)}[kind](data)


def write_dir(root, files):
    """The same files on disk (for the CLI and compose), modes and owners kept."""
    for name, spec in files.items():
        if not isinstance(spec, dict):
            spec = entry(spec)
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if spec["kind"] == "dir":
            os.makedirs(path, exist_ok=True)
        elif spec["kind"] == "symlink":
            os.symlink(spec["link"], path)
            continue
        else:
            data = spec["data"].encode() if isinstance(spec["data"], str) else spec["data"]
            with open(path, "wb") as f:
                f.write(data)
        os.chmod(path, spec["mode"])
        os.chown(path, spec["uid"], spec["gid"])


def token():
    return uuid.uuid4().hex[:10]


# -- the build endpoint ---------------------------------------------------------

def parse_stream(body):
    """Docker's JSON message stream (objects one after another, any whitespace)."""
    dec, text, i, out = json.JSONDecoder(), body.decode(), 0, []
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


class Build:
    """One POST /build answer, read to its end."""

    def __init__(self, status, headers, body, modern):
        self.status, self.headers, self.body, self.modern = status, headers, body, modern
        self.ctype = headers.get("Content-Type", "")
        self.msgs = parse_stream(body) if modern and status == 200 else []

    @property
    def text(self):
        if self.modern:
            return "".join(m.get("stream", "") for m in self.msgs)
        return self.body.decode(errors="replace")

    @property
    def lines(self):
        return self.text.splitlines()

    @property
    def error(self):
        """modern: the errorDetail message (or None); legacy: the `Error build:` line's message."""
        if self.modern:
            errs = [m for m in self.msgs if "errorDetail" in m or "error" in m]
            return errs[-1] if errs else None
        errs = [ln for ln in self.lines if ln.startswith("Error build:")]
        return errs[-1][len("Error build:"):].strip() if errs else None

    @property
    def aux_ids(self):
        return [m["aux"]["ID"] for m in self.msgs if isinstance(m.get("aux"), dict) and "ID" in m["aux"]]

    @property
    def built(self):
        m = re.findall(r"^Successfully built ([0-9a-f]{12})$", self.text, re.M)
        return m[-1] if m else None

    def steps(self):
        """[(header, [lines until the next step])]"""
        rx = re.compile(r"^Step \d+/\d+ : " if self.modern else r"^Step \d+ : ")
        out = []
        for ln in self.lines:
            if rx.match(ln):
                out.append((ln, []))
            elif out:
                out[-1][1].append(ln)
        return out

    def cached(self):
        """For each step: was it served from the cache?"""
        return [" ---> Using cache" in body for _, body in self.steps()]

    def json_message(self):
        try:
            return json.loads(self.body).get("message")
        except (ValueError, AttributeError):
            return None

    def ok(self):
        assert self.status == 200, self
        assert self.error is None, self
        assert self.built, self
        return self

    def __repr__(self):
        return f"<Build {self.status} {self.ctype} {self.body[-3000:]!r}>"


def build(api, context, prefix=MODERN, params=None, headers=None, timeout=BUILD_TIMEOUT):
    """POST {prefix}/build with `context` (bytes) as the body; params may hold lists (t)."""
    qs = urllib.parse.urlencode(params or {}, doseq=True)
    hdrs = {"Content-Type": "application/x-tar"}
    hdrs.update(headers or {})
    r = api.post(f"{prefix}/build" + (f"?{qs}" if qs else ""), context, headers=hdrs, timeout=timeout)
    return Build(r.status, r.headers, r.body, modern=prefix == MODERN)


def dockerfile_ctx(dockerfile, **files):
    return make_tar({"Dockerfile": dockerfile, **files})


# -- images and containers ------------------------------------------------------

def image(api, name):
    r = api.get(f"{MODERN}/images/{name}/json")
    assert r.status == 200, (name, r)
    return r.json()


def image_missing(api, name):
    return api.get(f"{MODERN}/images/{name}/json").status == 404


def history(api, name):
    r = api.get(f"{MODERN}/images/{name}/history")
    assert r.status == 200, r
    return r.json()


def containers(api):
    r = api.get(f"{MODERN}/containers/json?all=1")
    assert r.status == 200, r
    return {c["Id"]: c for c in r.json()}


def remove_container(api, cid):
    r = api.delete(f"{MODERN}/containers/{cid}?force=1&v=1")
    assert r.status in (204, 404), r


def remove_image(api, name):
    api.delete(f"{MODERN}/images/{name}?force=1")


def logs(api, cid):
    """A container's output through the modern logs endpoint, frames joined (no TTY)."""
    r = api.get(f"{MODERN}/containers/{cid}/logs?stdout=1&stderr=1")
    assert r.status == 200, r
    data, out = r.body, b""
    while len(data) >= 8:
        n = int.from_bytes(data[4:8], "big")
        out += data[8:8 + n]
        data = data[8 + n:]
    assert data == b"", r
    return out.decode(errors="replace")


def run_image(api, name, cmd=None, user=None, network_disabled=False):
    """Run the image to its end; returns (exit code, output)."""
    cfg = {"Image": name}
    if cmd is not None:
        cfg["Cmd"] = cmd
    if user is not None:
        cfg["User"] = user
    r = api.post(f"{MODERN}/containers/create", cfg)
    assert r.status == 201, r
    cid = r.json()["Id"]
    try:
        r = api.post(f"{MODERN}/containers/{cid}/start")
        assert r.status == 204, r
        r = api.post(f"{MODERN}/containers/{cid}/wait", timeout=60)
        assert r.status == 200, r
        return r.json()["StatusCode"], logs(api, cid)
    finally:
        remove_container(api, cid)


def sh(api, name, script, user="0"):
    """Run `script` with sh -c in the image (as root by default), whatever its entrypoint."""
    cfg = {"Image": name, "Entrypoint": ["/bin/sh", "-c"], "Cmd": [script], "User": user}
    r = api.post(f"{MODERN}/containers/create", cfg)
    assert r.status == 201, r
    cid = r.json()["Id"]
    try:
        assert api.post(f"{MODERN}/containers/{cid}/start").status == 204
        r = api.post(f"{MODERN}/containers/{cid}/wait", timeout=60)
        assert r.status == 200, r
        out = logs(api, cid)
        assert r.json()["StatusCode"] == 0, out
        return out
    finally:
        remove_container(api, cid)


def tagged_names(api):
    r = api.get(f"{MODERN}/images/json")
    assert r.status == 200, r
    return {t for img in r.json() for t in (img.get("RepoTags") or []) if t != "<none>:<none>"}


# -- 1. every instruction, multi-stage -------------------------------------------

FULL_DOCKERFILE = """\
# a comment, then a meta ARG used by FROM
ARG BASE=busybox
FROM ${BASE} AS builder
ARG GREETING=hello
RUN echo "builder says $GREETING"
RUN mkdir -p /out && echo "$GREETING from the builder stage" > /out/greeting && touch /out/builder-only

FROM scratch AS blank
COPY --from=builder /out/greeting /scratch-greeting

FROM $BASE
MAINTAINER Pyd Tester <tester@example.invalid>
SHELL ["/bin/sh", "-c"]
ENV APP_HOME=/app LEVEL="3 deep"
ENV MODE production
ENV FALLBACK=${UNSET_THING:-fallback-value} HOME_AGAIN=$APP_HOME
ARG VERSION=1.0
LABEL org.test.version="${VERSION}" org.test.mode=$MODE "org.test.spaced"="a b"
EXPOSE 8080 9000/udp
VOLUME ["/data"]
WORKDIR ${APP_HOME}
WORKDIR sub
COPY --from=builder /out/greeting ./greeting
COPY --from=blank /scratch-greeting /via-scratch
COPY --chown=1000:50 owned.txt /app/owned.txt
COPY script.sh secret.txt /files/
COPY dir /dircopy/
COPY glob-*.txt /globbed/
ADD data.tar.gz /unpacked/
RUN echo "run as $(id -u) in $(pwd) mode=$MODE" > /app/run-proof
USER 1000
HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD test -f /app/owned.txt
STOPSIGNAL SIGUSR1
ONBUILD RUN echo "onbuild trigger ran" > /tmp/onbuild-marker
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo mode=$MODE level=$LEVEL user=$(id -u) cwd=$(pwd)"]
"""

INNER_TAR = make_tar({"inner/hello.txt": entry(b"hello from inside the tar\n", mode=0o640)})


def full_files():
    return {
        "Dockerfile": FULL_DOCKERFILE,
        "owned.txt": entry(b"owned\n", uid=1234, gid=1234),
        "script.sh": entry(b"#!/bin/sh\necho script\n", mode=0o755, uid=1234, gid=1234),
        "secret.txt": entry(b"secret\n", mode=0o600),
        "dir/a.txt": entry(b"a\n"),
        "dir/nested/b.txt": entry(b"b\n", mode=0o640),
        "glob-1.txt": b"g1\n",
        "glob-2.txt": b"g2\n",
        "other.txt": b"not globbed\n",
        "data.tar.gz": gzip.compress(INNER_TAR),
    }


def instructions(dockerfile):
    return [ln.strip() for ln in dockerfile.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def final_stage(dockerfile):
    ins = instructions(dockerfile)
    last = max(i for i, ln in enumerate(ins) if ln.upper().startswith("FROM "))
    return ins[last + 1:]


def check_full_image(api, name):
    """Everything the full Dockerfile promises, in inspect and in a running container."""
    img = image(api, name)
    cfg = img["Config"]
    assert cfg["Cmd"] == ["echo mode=$MODE level=$LEVEL user=$(id -u) cwd=$(pwd)"], cfg
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"], cfg
    for e in ("APP_HOME=/app", "LEVEL=3 deep", "MODE=production", "FALLBACK=fallback-value", "HOME_AGAIN=/app"):
        assert e in cfg["Env"], (e, cfg["Env"])
    assert not any(e.startswith(("VERSION=", "GREETING=", "BASE=")) for e in cfg["Env"]), cfg["Env"]  # ARGs stay out
    assert cfg["User"] == "1000", cfg
    assert cfg["WorkingDir"] == "/app/sub", cfg
    labels = cfg.get("Labels") or {}
    assert {k: labels.get(k) for k in ("org.test.version", "org.test.mode", "org.test.spaced")} == \
        {"org.test.version": "1.0", "org.test.mode": "production", "org.test.spaced": "a b"}, labels
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "test -f /app/owned.txt"], "Interval": 30_000_000_000,
                                  "Timeout": 3_000_000_000, "Retries": 2}, cfg["Healthcheck"]
    assert cfg["StopSignal"] == "SIGUSR1", cfg
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}}, cfg
    assert cfg["Volumes"] == {"/data": {}}, cfg
    assert cfg["OnBuild"] == ['RUN echo "onbuild trigger ran" > /tmp/onbuild-marker'], cfg
    assert img["Author"] == "Pyd Tester <tester@example.invalid>", img.get("Author")

    # The image's own CMD under its ENTRYPOINT, as its USER in its WORKDIR.
    code, out = run_image(api, name)
    assert (code, out) == (0, "mode=production level=3 deep user=1000 cwd=/app/sub\n"), (code, out)

    files = ["/app/owned.txt", "/files/script.sh", "/files/secret.txt", "/dircopy/a.txt",
             "/dircopy/nested/b.txt", "/globbed/glob-1.txt", "/globbed/glob-2.txt", "/unpacked/inner/hello.txt"]
    out = sh(api, name, "stat -c '%n %u:%g %a' " + " ".join(files) + "; echo ---; "
             "cat /app/sub/greeting /via-scratch /unpacked/inner/hello.txt /app/run-proof; echo ---; "
             "ls /globbed; echo ---; "
             "for p in /out /out/builder-only /dircopy/dir /data.tar.gz /unpacked/data.tar.gz; do "
             "  test -e $p && echo present $p || echo absent $p; done")
    stats, cats, globbed, presence = out.split("---\n")
    assert stats.splitlines() == [
        "/app/owned.txt 1000:50 644",        # --chown
        "/files/script.sh 0:0 755",          # uid 1234 in the context, root in the image; bits kept
        "/files/secret.txt 0:0 600",
        "/dircopy/a.txt 0:0 644",            # a directory source copies its contents
        "/dircopy/nested/b.txt 0:0 640",
        "/globbed/glob-1.txt 0:0 644",
        "/globbed/glob-2.txt 0:0 644",
        "/unpacked/inner/hello.txt 0:0 640",  # ADD of a local .tar.gz extracts it
    ], stats
    assert cats.splitlines() == ["hello from the builder stage", "hello from the builder stage",
                                 "hello from inside the tar", "run as 0 in /app/sub mode=production"], cats
    assert globbed.split() == ["glob-1.txt", "glob-2.txt"], globbed
    assert presence.splitlines() == ["absent /out", "absent /out/builder-only", "absent /dircopy/dir",
                                     "absent /data.tar.gz", "absent /unpacked/data.tar.gz"], presence

    # History: the base's entries, then one per step of the final stage.
    base = history(api, "busybox")
    hist = history(api, name)
    steps = final_stage(FULL_DOCKERFILE)
    assert len(hist) == len(base) + len(steps), (len(hist), len(base), len(steps), hist)
    assert hist[0]["Id"] == img["Id"], (hist[0], img["Id"])
    mine = list(reversed(hist))[len(base):]  # oldest first
    for step, h in zip(steps, mine):
        keyword, _, args = step.partition(" ")
        cb = h["CreatedBy"]
        if keyword == "RUN":
            assert "#(nop)" not in cb and ("/bin/sh -c " + args) in cb, (step, cb)
        else:
            assert "#(nop)" in cb and keyword in cb, (step, cb)
    cmd = mine[-1]["CreatedBy"]
    assert cmd.startswith("/bin/sh -c #(nop)") and 'CMD ["echo mode=$MODE' in cmd, cmd
    return img


@pytest.fixture(scope="module")
def cli_built(daemon, api, busybox, tmp_path_factory):
    """The full Dockerfile built by `docker build` (classic builder) from a directory."""
    require(os.access(DOCKER, os.X_OK), f"{DOCKER} (docker CLI 28)")
    work = tmp_path_factory.mktemp("cli-build")
    ctx = work / "ctx"
    write_dir(str(ctx), full_files())
    (work / "cfg").mkdir()
    tag = f"full-{token()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_BUILDKIT="0", DOCKER_CONFIG=str(work / "cfg"), DOCKER_CLI_HINTS="false", NO_COLOR="1")
    sock = daemon.sock
    before = tagged_names(api)
    p = subprocess.run([DOCKER, "-H", f"unix://{sock}", "build", "-t", tag, "."], cwd=ctx, env=env,
                       capture_output=True, text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
    yield tag, p, before
    remove_image(api, tag)


class TestEveryInstruction:
    def test_cli_build(self, api, cli_built):
        tag, p, before = cli_built
        assert p.returncode == 0, f"rc={p.returncode}\n{p.stdout}\n{p.stderr}"
        out = p.stdout
        n = len(instructions(FULL_DOCKERFILE))
        heads = re.findall(r"^Step (\d+)/(\d+) : (.*)$", out, re.M)
        assert [int(i) for i, _, _ in heads] == list(range(1, n + 1)), out
        assert {int(t) for _, t, _ in heads} == {n}, out
        assert heads[0][2] == "ARG BASE=busybox" and heads[1][2] == "FROM ${BASE} AS builder", heads[:2]
        assert "builder says hello" in out, out  # RUN output
        assert re.search(r"^ ---> Running in [0-9a-f]{12}$", out, re.M), out
        img = image(api, tag)
        assert f"Successfully built {img['Id'].split(':')[1][:12]}\n" in out, out
        assert f"Successfully tagged {tag}:latest\n" in out, out
        # Only the final stage is tagged.
        assert tagged_names(api) - before == {f"{tag}:latest"}, tagged_names(api) - before

    def test_cli_built_image(self, api, cli_built):
        tag, p, _ = cli_built
        assert p.returncode == 0, p.stderr
        check_full_image(api, tag)

    def test_onbuild_triggers_run_in_a_child(self, api, cli_built):
        tag, p, _ = cli_built
        assert p.returncode == 0, p.stderr
        child = f"child-{token()}"
        b = build(api, dockerfile_ctx(f"FROM {tag}\nRUN cat /tmp/onbuild-marker > /tmp/child-saw\n"),
                  params={"t": child}).ok()
        try:
            assert "onbuild-marker" in b.text, b  # the trigger is shown as it runs
            out = sh(api, child, "cat /tmp/onbuild-marker /tmp/child-saw; id -u", user="")
            assert out == "onbuild trigger ran\nonbuild trigger ran\n1000\n", out
            assert not image(api, child)["Config"].get("OnBuild"), image(api, child)["Config"]  # not inherited
        finally:
            remove_image(api, child)

    @pytest.mark.parametrize("prefix", ["", "/v1.3"])
    def test_legacy_paths(self, api, busybox, prefix):
        """The full Dockerfile over raw HTTP on the legacy surface; nocache, so RUNs run.
        /build keeps its RUN containers (rm=0 by default); /v1.3/build gets rm=1."""
        tag = f"legacy-{token()}"
        params = {"t": tag, "nocache": 1}
        if prefix:
            params["rm"] = 1
        before = containers(api)
        b = build(api, make_tar(full_files()), prefix=prefix, params=params)
        kept = [c for c in containers(api) if c not in before]
        try:
            assert b.status == 200 and b.ctype.startswith("text/plain"), b
            assert b.error is None, b
            heads = [h for h, _ in b.steps()]
            n = len(instructions(FULL_DOCKERFILE))
            assert [int(re.match(r"Step (\d+) :", h).group(1)) for h in heads] == list(range(1, n + 1)), b.text
            assert heads[0] == "Step 1 : ARG BASE=busybox" and heads[1].startswith("Step 2 : FROM "), heads
            assert "builder says hello" in b.text, b
            ran = re.findall(r"^ ---> Running in ([0-9a-f]{12})$", b.text, re.M)
            assert len(ran) >= 3, b.text  # three RUNs at least (WORKDIR may run one too)
            img = image(api, tag)
            assert b.built == img["Id"].split(":")[1][:12], (b.built, img["Id"])
            assert re.search(r"^ ---> [0-9a-f]{12}$", b.text, re.M), b.text
            kept12 = {c[:12] for c in kept}
            if prefix:
                assert kept12.isdisjoint(ran), (kept12, ran)  # rm=1
            else:
                assert set(ran) <= kept12, (ran, kept12)  # rm=0: Docker 0.6 kept them
            check_full_image(api, tag)
        finally:
            for c in kept:
                remove_container(api, c)
            remove_image(api, tag)


def test_copy_from_index_and_image(api, busybox):
    tag = f"from-{token()}"
    ctx = dockerfile_ctx("FROM busybox\nRUN echo stage-zero > /zero\n"
                         "FROM busybox\nCOPY --from=0 /zero /from-index\nCOPY --from=busybox /etc/motd /from-image\n")
    build(api, ctx, params={"t": tag}).ok()
    try:
        assert sh(api, tag, "cat /from-index /from-image") == \
            "stage-zero\nhello from the busybox test image\n"
    finally:
        remove_image(api, tag)


def test_shell_changes_the_shell_form(api, busybox):
    tag = f"shell-{token()}"
    wrapper = 'echo via-custom-shell >> /shell-proof; eval "$1"'
    ctx = dockerfile_ctx("FROM busybox\n"
                         f"SHELL [\"/bin/sh\", \"-c\", {json.dumps(wrapper)}, \"wrap\"]\n"
                         "RUN echo ran > /ran\nCMD echo from-cmd\n")
    build(api, ctx, params={"t": tag}).ok()
    try:
        assert image(api, tag)["Config"]["Cmd"] == ["/bin/sh", "-c", wrapper, "wrap", "echo from-cmd"]
        assert sh(api, tag, "cat /shell-proof /ran") == "via-custom-shell\nran\n"
    finally:
        remove_image(api, tag)


# -- 2. compressed contexts, dockerfile=, .dockerignore, local tars ----------------

@pytest.mark.parametrize("kind", ["identity", "gzip", "bzip2", "xz"])
def test_compressed_contexts(api, busybox, kind):
    tag = f"ctx-{kind}-{token()}"
    ctx = compress(dockerfile_ctx("FROM busybox\nCOPY hello.txt /hello.txt\n", **{"hello.txt": f"{kind}\n"}), kind)
    build(api, ctx, params={"t": tag}).ok()
    try:
        assert sh(api, tag, "cat /hello.txt") == f"{kind}\n"
    finally:
        remove_image(api, tag)


def test_add_extracts_local_tars_of_any_compression(api, busybox):
    tag = f"addtar-{token()}"
    inner = make_tar({"inner.txt": b"inner\n"})
    ctx = dockerfile_ctx(
        "FROM busybox\n"
        "ADD t.tar /t/plain/\nADD t.tar.gz /t/gz/\nADD t.tar.bz2 /t/bz2/\nADD t.tar.xz /t/xz/\n"
        "COPY t.tar.gz /copied/\n",
        **{"t.tar": inner, "t.tar.gz": gzip.compress(inner), "t.tar.bz2": bz2.compress(inner),
           "t.tar.xz": lzma.compress(inner)})
    build(api, ctx, params={"t": tag}).ok()
    try:
        out = sh(api, tag, "cat /t/plain/inner.txt /t/gz/inner.txt /t/bz2/inner.txt /t/xz/inner.txt; ls /copied")
        assert out == "inner\n" * 4 + "t.tar.gz\n", out  # COPY never extracts
    finally:
        remove_image(api, tag)


def test_dockerfile_param(api, busybox):
    tag = f"alt-{token()}"
    ctx = make_tar({"Dockerfile": "FROM busybox\nRUN exit 9\n",
                    "sub/Dockerfile.alt": "FROM busybox\nLABEL which=alt\nCOPY sub/x.txt /x.txt\n",
                    "sub/x.txt": "x\n"})
    build(api, ctx, params={"t": tag, "dockerfile": "sub/Dockerfile.alt"}).ok()
    try:
        assert image(api, tag)["Config"]["Labels"].get("which") == "alt"
        assert sh(api, tag, "cat /x.txt") == "x\n"
    finally:
        remove_image(api, tag)


def test_dockerignore(api, busybox):
    tag = f"ign-{token()}"
    ctx = make_tar({
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\n",
        ".dockerignore": "# comment\n*.log\n!keep.log\n**/tmp\n",
        "a.log": "ignored\n", "keep.log": "kept\n", "keep.txt": "kept\n",
        "tmp/x": "ignored\n", "deep/er/tmp/y": "ignored\n", "deep/er/z.txt": "kept\n",
        "deep/notes.log": "kept: *.log is for the top directory only\n",
    })
    build(api, ctx, params={"t": tag}).ok()
    try:
        found = set(sh(api, tag, "cd /ctx && find . | sort").split())
        assert found == {".", "./.dockerignore", "./Dockerfile", "./keep.log", "./keep.txt", "./deep",
                         "./deep/er", "./deep/er/z.txt", "./deep/notes.log"}, found
    finally:
        remove_image(api, tag)
    # Ignoring the Dockerfile and .dockerignore themselves: the build still reads them, COPY leaves them out.
    b = build(api, make_tar({"Dockerfile": "FROM busybox\nCOPY . /ctx/\n", ".dockerignore": "Dockerfile\n.dockerignore\n",
                             "keep.txt": "kept\n"}), params={"t": tag}).ok()
    try:
        assert sh(api, tag, "cd /ctx && find . | sort").split() == [".", "./keep.txt"], b
    finally:
        remove_image(api, tag)
    # An ignored file is not in the context: ADD of it fails.
    b = build(api, make_tar({"Dockerfile": "FROM busybox\nADD a.log /\n", ".dockerignore": "*.log\n",
                             "a.log": "x"}), params={"t": tag})
    assert b.status >= 400 or b.error, b
    assert image_missing(api, tag)


# -- 3. the cache ---------------------------------------------------------------

def cache_ctx(mark, data=b"data one\n", mtime=1_600_000_000):
    return make_tar({
        "Dockerfile": f"FROM busybox\nRUN echo {mark} > /first\nADD data.txt /data.txt\n"
                      "RUN cat /data.txt > /copy\nENV X=1\nCMD [\"cat\", \"/copy\"]\n",
        "data.txt": entry(data, mtime=mtime),
    })


def test_cache(api, busybox):
    mark = token()
    first = build(api, cache_ctx(mark)).ok()
    assert first.cached() == [False] * 6, first.text
    again = build(api, cache_ctx(mark)).ok()
    assert again.cached() == [False] + [True] * 5, again.text  # every step after FROM
    assert again.aux_ids == first.aux_ids and again.built == first.built, (first.aux_ids, again.aux_ids)
    assert "Running in" not in again.text, again.text

    changed = build(api, cache_ctx(mark, data=b"data onE\n")).ok()  # one byte
    assert changed.cached() == [False, True, False, False, False, False], changed.text
    assert changed.built != first.built
    assert sh(api, changed.built, "cat /copy") == "data onE\n"

    touched = build(api, cache_ctx(mark, mtime=1_700_000_000)).ok()  # mtime only
    assert touched.cached() == [False] + [True] * 5, touched.text
    assert touched.built == first.built, (touched.built, first.built)

    fresh = build(api, cache_ctx(mark), params={"nocache": 1}).ok()
    assert fresh.cached() == [False] * 6, fresh.text
    runs = [body for head, body in fresh.steps() if ": RUN " in head]
    assert len(runs) == 2 and all(any(ln.startswith(" ---> Running in ") for ln in body) for body in runs), fresh.text
    assert first.aux_ids and all(re.fullmatch(r"sha256:[0-9a-f]{64}", i) for i in first.aux_ids), first.msgs
    assert first.built == first.aux_ids[-1][7:19]


def test_cache_on_legacy(api, busybox):
    mark = token()
    first = build(api, cache_ctx(mark), prefix="", params={"rm": 1}).ok()
    assert first.cached() == [False] * 6, first.text
    assert first.ctype.startswith("text/plain"), first
    again = build(api, cache_ctx(mark), prefix="/v1.3", params={"rm": 1}).ok()
    assert again.cached() == [False] + [True] * 5, again.text
    assert again.built == first.built, (first.built, again.built)


def test_cache_survives_a_restart(new_daemon, busybox_tar):
    d = new_daemon().start()
    r = d.api.post("/images/create?fromSrc=-&repo=busybox&tag=latest", busybox_tar,
                   headers={"Content-Type": "application/x-tar"})
    assert r.status == 200 and b'"error"' not in r.body, r
    mark = token()
    first = build(d.api, cache_ctx(mark), params={"t": "cached"}).ok()
    assert d.stop() == 0, d.log()
    d.start()
    again = build(d.api, cache_ctx(mark)).ok()
    assert again.cached() == [False] + [True] * 5, again.text
    assert again.built == first.built


# -- 4. escapes -----------------------------------------------------------------

def assert_refused(b):
    """A clean failure on either surface."""
    if b.modern:
        if b.status == 200:
            assert b.error and b.error.get("errorDetail", {}).get("message"), b
            assert not b.built, b
        else:
            assert 400 <= b.status < 500 and b.json_message(), b
    else:
        assert b.status == 200 and b.error, b
        assert b.lines[-1].startswith("Error build:"), b
        assert not b.built, b


@pytest.mark.parametrize("prefix", [MODERN, ""])
def test_add_parent_path_fails(api, busybox, prefix):
    tag = f"esc-{token()}"
    b = build(api, dockerfile_ctx("FROM busybox\nADD ../x /\n", x="in the context\n"), prefix=prefix,
              params={"t": tag})
    assert_refused(b)
    assert image_missing(api, tag)


@pytest.mark.parametrize("prefix", [MODERN, ""])
def test_symlink_out_of_the_context_is_not_followed(api, busybox, prefix):
    tag = f"esc-{token()}"
    ctx = make_tar({"Dockerfile": "FROM busybox\nADD evil/passwd /stolen\n",
                    "evil": entry(kind="symlink", link="/etc")})
    b = build(api, ctx, prefix=prefix, params={"t": tag})
    if not image_missing(api, tag):
        with open("/etc/passwd") as f:
            host = f.read()
        got = sh(api, tag, "cat /stolen")
        remove_image(api, tag)
        pytest.fail(f"ADD through a link out of the context succeeded; host's /etc/passwd copied: {got == host}")
    assert_refused(b)


@pytest.mark.parametrize("prefix", [MODERN, ""])
def test_context_member_outside_is_refused(api, daemon, busybox, prefix):
    name = f"pyd-escape-{token()}"
    ctx = make_tar({"Dockerfile": "FROM busybox\n", f"../{name}": "escaped\n",
                    f"../../../../../../../../../tmp/{name}": "escaped\n"})
    tag = f"esc-{token()}"
    b = build(api, ctx, prefix=prefix, params={"t": tag})
    assert_refused(b)
    assert image_missing(api, tag)
    assert not os.path.exists(f"/tmp/{name}")
    hits = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.dirname(daemon.root)) for f in fs if f == name]
    assert hits == [], hits


def test_tar_slip_through_a_symlink_member_writes_nothing_outside(api, busybox, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    ctx = make_tar({"Dockerfile": "FROM busybox\n", "link": entry(kind="symlink", link=str(outside)),
                    "link/pwned": "escaped\n"})
    b = build(api, ctx)  # success (the link resolved inside the context) or a refusal: both are fine
    assert b.status != 200 or not b.error or b.built is None, b
    assert os.listdir(outside) == [], (os.listdir(outside), b)


class _Files(http.server.BaseHTTPRequestHandler):
    files = {}

    def do_GET(self):
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def http_files():
    """A file server on 127.0.0.1 for ADD <url> and remote=; yields (base url, files dict)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    _Files.files = {}
    t = threading.Thread(target=srv.serve_forever, name="test-build-http", daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Files.files
    srv.shutdown()
    srv.server_close()


def test_add_url(api, busybox, http_files):
    base, files = http_files
    files["/remote.txt"] = b"fetched over http\n"
    tag = f"url-{token()}"
    build(api, dockerfile_ctx(f"FROM busybox\nADD {base}/remote.txt /remote.txt\n"), params={"t": tag}).ok()
    try:
        assert sh(api, tag, "cat /remote.txt; stat -c %u:%g /remote.txt") == "fetched over http\n0:0\n"
    finally:
        remove_image(api, tag)
    b = build(api, dockerfile_ctx(f"FROM busybox\nADD {base}/missing.txt /m\n"), params={"t": tag})
    assert_refused(b)
    assert image_missing(api, tag)


def test_remote_context(api, busybox, http_files):
    base, files = http_files
    files["/ctx.tar"] = dockerfile_ctx("FROM busybox\nCOPY r.txt /r.txt\n", **{"r.txt": "remote context\n"})
    tag = f"remote-{token()}"
    build(api, b"", params={"t": tag, "remote": f"{base}/ctx.tar"}).ok()
    try:
        assert sh(api, tag, "cat /r.txt") == "remote context\n"
    finally:
        remove_image(api, tag)


# -- 5. a failing RUN -------------------------------------------------------------

FAILING = "FROM busybox\nRUN echo before-the-failure\nRUN exit 3\nRUN echo never-reached\n"
FAIL_MSG = "The command '/bin/sh -c exit 3' returned a non-zero code: 3"


@pytest.mark.parametrize("params", [{}, {"forcerm": 1}, {"rm": 0, "forcerm": 1}])
def test_failing_run_modern(api, busybox, params):
    """rm=1 (the default) removes the containers of the steps that succeeded; the failed
    step's container stays, exited, for a look (dockerd 20.10 does the same); forcerm=1
    removes it too."""
    tag = f"fail-{token()}"
    before = set(containers(api))
    b = build(api, dockerfile_ctx(FAILING), params={"t": tag, **params})
    left = set(containers(api)) - before
    try:
        assert b.status == 200 and b.ctype.startswith("application/json"), b
        assert b.msgs[-1] == {"errorDetail": {"message": FAIL_MSG, "code": 3}, "error": FAIL_MSG}, b.msgs[-3:]
        assert "before-the-failure" in b.text and "never-reached" not in b.text, b.text
        assert not b.built and not b.aux_ids, b
        assert image_missing(api, tag)
        if params.get("forcerm"):
            assert left == set(), left
        else:
            assert len(left) == 1, left
            c = api.get(f"{MODERN}/containers/{next(iter(left))}/json").json()
            assert (c["State"]["Running"], c["State"]["ExitCode"], c["Path"], c["Args"]) == \
                (False, 3, "/bin/sh", ["-c", "exit 3"]), (c["State"], c["Path"], c["Args"])
    finally:
        for cid in left:
            remove_container(api, cid)


@pytest.mark.parametrize("prefix", ["", "/v1.3"])
def test_failing_run_legacy(api, busybox, prefix):
    tag = f"fail-{token()}"
    before = set(containers(api))
    b = build(api, dockerfile_ctx(FAILING), prefix=prefix, params={"t": tag, "rm": 1})
    try:
        assert b.status == 200 and b.ctype.startswith("text/plain"), b
        assert b.lines[-1].startswith("Error build: ") and "non-zero code: 3" in b.lines[-1], b.lines[-3:]
        assert "never-reached" not in b.text and not b.built, b
        assert image_missing(api, tag)
    finally:
        for c in set(containers(api)) - before:
            remove_container(api, c)


# -- errors before any output; the legacy unknown instruction ----------------------

def test_errors_before_output_are_4xx(api, busybox):
    tag = f"bad-{token()}"
    cases = {
        "broken tar": (b"this is not a tar archive" * 40, {}),
        "missing Dockerfile": (make_tar({"other": "x"}), {}),
        "missing dockerfile=": (dockerfile_ctx("FROM busybox\n"), {"dockerfile": "nope/Dockerfile"}),
        "unknown instruction": (dockerfile_ctx("FROM busybox\nFOO bar\n"), {}),
        "bad buildargs": (dockerfile_ctx("FROM busybox\n"), {"buildargs": "{not json"}),
        "dockerfile= outside": (dockerfile_ctx("FROM busybox\n"), {"dockerfile": "../Dockerfile"}),
        "bad target": (dockerfile_ctx("FROM busybox AS one\n"), {"target": "two"}),
    }
    for what, (ctx, params) in cases.items():
        b = build(api, ctx, params={"t": tag, **params})
        assert 400 <= b.status < 500, (what, b)
        assert b.json_message(), (what, b)
        if what == "unknown instruction":
            assert "dockerfile parse error line 2: unknown instruction: foo" in b.json_message().lower(), b
    assert image_missing(api, tag)


def test_legacy_errors_come_after_the_200(api, busybox):
    tag = f"bad-{token()}"
    for what, ctx in {"broken tar": b"this is not a tar archive" * 40,
                      "missing Dockerfile": make_tar({"other": "x"})}.items():
        b = build(api, ctx, prefix="", params={"t": tag})
        assert b.status == 200 and b.ctype.startswith("text/plain"), (what, b)
        assert b.lines and b.lines[-1].startswith("Error build: "), (what, b)
    assert image_missing(api, tag)


def test_legacy_skips_unknown_instruction(api, busybox):
    tag = f"skip-{token()}"
    b = build(api, dockerfile_ctx("FROM busybox\nFOO bar\nLABEL after=foo\n"), prefix="", params={"t": tag}).ok()
    try:
        assert "# Skipping unknown instruction FOO" in b.lines, b.text
        assert image(api, tag)["Config"]["Labels"].get("after") == "foo"
    finally:
        remove_image(api, tag)


# -- 6. docker-py -----------------------------------------------------------------

def test_docker_py(daemon, busybox):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url="unix://" + daemon.sock, version="1.41", timeout=BUILD_TIMEOUT)
    tags = [f"sdk-tar-{token()}", f"sdk-df-{token()}"]
    try:
        ctx = dockerfile_ctx("FROM busybox\nCOPY f.txt /f.txt\nRUN echo sdk-run\n", **{"f.txt": "f\n"})
        img, logs = client.images.build(fileobj=io.BytesIO(ctx), custom_context=True, tag=tags[0])
        assert img.tags == [f"{tags[0]}:latest"], img.tags
        assert any("sdk-run" in (m.get("stream") or "") for m in logs)
        assert img.id == image(daemon.api, tags[0])["Id"]

        img2, _ = client.images.build(fileobj=io.BytesIO(b"FROM busybox\nLABEL from=dockerfile-bytes\n"),
                                      tag=tags[1])
        assert img2.tags == [f"{tags[1]}:latest"], img2.tags
        assert img2.labels.get("from") == "dockerfile-bytes", img2.labels

        with pytest.raises(docker.errors.BuildError) as e:
            client.images.build(fileobj=io.BytesIO(FAILING.encode()), tag=f"sdk-fail-{token()}")
        assert FAIL_MSG in str(e.value), str(e.value)
    finally:
        for t in tags:
            remove_image(daemon.api, t)
        client.close()


# -- 7. docker-compose ---------------------------------------------------------------

def test_compose_build_up_down(daemon, api, busybox, tmp_path):
    require(os.access(COMPOSE, os.X_OK), "docker-compose (Debian's package)")
    project = f"pydb{token()}"
    mark = f"built-by-compose-{token()}"
    (tmp_path / "docker-compose.yml").write_text(
        'version: "3.7"\nservices:\n  app:\n    build: .\n')
    (tmp_path / "Dockerfile").write_text(
        f'FROM busybox\nRUN echo {mark} > /marker\nCMD ["sh", "-c", "cat /marker; exec sleep 300"]\n')
    (tmp_path / "cfg").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    env.update(DOCKER_HOST=f"unix://{daemon.sock}", DOCKER_CONFIG=str(tmp_path / "cfg"),
               PATH="/usr/local/bin" + os.pathsep + env.get("PATH", "/usr/bin:/bin"),
               COMPOSE_PROJECT_NAME=project, NO_COLOR="1", DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0")

    def compose(*args, check=True):
        p = subprocess.run([COMPOSE, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
        if check:
            assert p.returncode == 0, f"docker-compose {' '.join(args)}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    name = f"{project}_app"
    try:
        built = compose("build")
        assert mark in built.stdout + built.stderr, built.stdout
        img = image(api, name)
        compose("up", "-d")
        mine = [c for c in containers(api).values()
                if (c.get("Labels") or {}).get("com.docker.compose.project") == project]
        assert len(mine) == 1, mine
        c = api.get(f"{MODERN}/containers/{mine[0]['Id']}/json").json()
        assert c["Image"] == img["Id"] and c["State"]["Running"], (c["Image"], img["Id"], c["State"])
        wait_for(lambda: mark in compose("logs", "--no-color", "app").stdout, timeout=20, what="the app's output")
    finally:
        down = compose("down", "--rmi", "local", "-v", "-t", "1", check=False)
    assert down.returncode == 0, down.stderr
    assert image_missing(api, name)
    left = [c for c in containers(api).values()
            if (c.get("Labels") or {}).get("com.docker.compose.project") == project]
    assert left == [], left


# -- 8. a client that goes away mid-build -------------------------------------------

def sleepers(seconds):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if f"sleep {seconds}".encode() in b" ".join(argv):
            found.append(int(pid))
    return found


def test_disconnect_mid_build(api, daemon, busybox):
    seconds = 613  # unique on this host: the process to look for
    tag = f"disc-{token()}"
    before = set(containers(api))
    ctx = dockerfile_ctx(f"FROM busybox\nRUN echo started; sleep {seconds}\n")
    c = UnixHTTPConnection(daemon.sock, timeout=30)
    try:
        c.request("POST", f"{MODERN}/build?t={tag}", body=ctx, headers={"Content-Type": "application/x-tar"})
        r = c.getresponse()
        assert r.status == 200, r.read()
        seen, deadline = b"", time.monotonic() + 60
        while b"started" not in seen and time.monotonic() < deadline:
            chunk = r.read1(4096)
            if not chunk:
                break
            seen += chunk
        assert b"started" in seen, seen
        assert wait_for(lambda: sleepers(seconds), timeout=20, what="the RUN's sleep")
    finally:
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.close()

    def cleaned():
        now = containers(api)
        running = [i for i in set(now) - before if now[i]["State"] == "running"]
        return not running and not sleepers(seconds)
    assert poll(cleaned, timeout=30), (sleepers(seconds), [c for c in containers(api) if c not in before])
    assert image_missing(api, tag)
    left = set(containers(api)) - before
    assert left == set(), left  # rm=1: the build's container is gone too


# -- 9. buildargs, labels, target, q, t, networkmode ------------------------------------

MULTI = """\
FROM busybox AS base
ARG WHO=nobody
ARG UNUSED_DEFAULT=dflt
RUN echo "visible-run-output-$WHO" && echo "who=$WHO" > /who
FROM base AS middle
RUN echo middle > /middle
FROM base
RUN echo final > /final
"""


def test_buildargs_labels_target(api, busybox):
    tag = f"args-{token()}"
    b = build(api, dockerfile_ctx(MULTI), params={
        "t": [tag, f"{tag}-second:v2"], "buildargs": json.dumps({"WHO": "the-builder"}),
        "labels": json.dumps({"com.example.built-by": "test_build", "k2": "v2"}), "target": "middle"}).ok()
    try:
        assert "visible-run-output-the-builder" in b.text, b.text
        assert f"Successfully tagged {tag}:latest" in b.lines and f"Successfully tagged {tag}-second:v2" in b.lines, b
        img = image(api, tag)
        assert img["Id"] == image(api, f"{tag}-second:v2")["Id"]
        assert {k: img["Config"]["Labels"].get(k) for k in ("com.example.built-by", "k2")} == \
            {"com.example.built-by": "test_build", "k2": "v2"}, img["Config"]["Labels"]
        out = sh(api, tag, "cat /who /middle; test -e /final && echo final-stage-built || echo stopped-at-target")
        assert out == "who=the-builder\nmiddle\nstopped-at-target\n", out
        assert not any(e.startswith("WHO=") for e in img["Config"].get("Env") or []), img["Config"]["Env"]
    finally:
        remove_image(api, tag)
        remove_image(api, f"{tag}-second:v2")


def test_quiet(api, busybox):
    mark = token()
    df = f"FROM busybox\nRUN echo loud-$((6 * 7))-{mark}\n"  # the output is not the command's text
    said = f"loud-42-{mark}"
    quiet = build(api, dockerfile_ctx(df), params={"q": 1, "nocache": 1})
    assert quiet.status == 200 and quiet.error is None, quiet
    assert said not in quiet.body.decode(), quiet
    # dockerd's q=1: no steps, just the image id (the CLI prints it).
    assert not quiet.steps() and quiet.lines == [quiet.aux_ids[-1]], quiet
    # As Docker's BoolValue: "False" (what docker-py sends) is false.
    loud = build(api, dockerfile_ctx(df), params={"q": "False", "nocache": 1}).ok()
    assert said in loud.lines, loud
    cached = build(api, dockerfile_ctx(df), params={"nocache": "False"}).ok()
    assert cached.cached() == [False, True], cached
    legacy = build(api, dockerfile_ctx(df), prefix="", params={"q": 1, "nocache": 1, "rm": 1})
    assert legacy.status == 200 and legacy.error is None, legacy
    assert said not in legacy.text and re.search(r"\b[0-9a-f]{12}\b", legacy.text), legacy


def test_memory_param_limits_the_run_containers(api, daemon, busybox):
    require(os.path.isdir("/sys/fs/cgroup/memory"), "cgroup v1 memory files (this test reads them)")
    mib = 72
    ctx = dockerfile_ctx(f"FROM busybox\nRUN echo limited-{token()}; sleep 3\n")
    c = UnixHTTPConnection(daemon.sock, timeout=60)
    try:
        c.request("POST", f"{MODERN}/build?memory={mib * 1024 * 1024}&nocache=1", body=ctx,
                  headers={"Content-Type": "application/x-tar"})
        r = c.getresponse()
        assert r.status == 200, r.read()
        seen, deadline = b"", time.monotonic() + 60
        while not re.search(rb"Running in ([0-9a-f]{12})", seen) and time.monotonic() < deadline:
            chunk = r.read1(4096)
            if not chunk:
                break
            seen += chunk
        cid12 = re.search(rb"Running in ([0-9a-f]{12})", seen).group(1).decode()

        def limit():
            for d in os.listdir("/sys/fs/cgroup/memory/pyd") if os.path.isdir("/sys/fs/cgroup/memory/pyd") else ():
                if d.startswith(cid12):
                    with open(f"/sys/fs/cgroup/memory/pyd/{d}/memory.limit_in_bytes") as f:
                        return int(f.read())
            return None
        got = wait_for(limit, timeout=10, what=f"the cgroup of build container {cid12}")
        rest = seen + r.read()
    finally:
        c.close()
    assert got == mib * 1024 * 1024, got
    b = Build(200, {"Content-Type": "application/json"}, rest, modern=True).ok()
    assert b.built


def test_networkmode_none(api, busybox):
    tag = f"net-{token()}"
    build(api, dockerfile_ctx("FROM busybox\nRUN ls /sys/class/net > /nets\n"),
          params={"t": tag, "networkmode": "none", "nocache": 1}).ok()
    try:
        assert sh(api, tag, "cat /nets") == "lo\n"
    finally:
        remove_image(api, tag)
