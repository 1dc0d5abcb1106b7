"""The real docker CLI 28 (/usr/local/bin/docker) against pyd.

Every call goes through `-H tcp://127.0.0.1:PORT` (TestTransport also
through `-H unix://<sock>`), with DOCKER_CONFIG in a temporary directory and
a timeout. Tests are grouped by feature (one class each), so a failing class
names the missing feature. `docker run` always gets `--pull never`: the
image is the imported busybox, and nothing may reach for a registry.

PYD_TESTS_AGAINST=dockerd runs the same tests against a private dockerd 20.10
(docker.io; tests/pydtest/dockerd.py) instead: that checks the tests, not
pyd. /usr/bin/docker is docker.io's 20.10 client and is not used.
"""

import json
import os
import re
import subprocess
import tarfile
import time
import uuid

import pytest

from tests.pydtest import busybox_rootfs_tar, require_mark, wait_for
from tests.pydtest import dockerd as dd

DOCKER = "/usr/local/bin/docker"
TIMEOUT = 60

pytestmark = require_mark(os.access(DOCKER, os.X_OK), f"{DOCKER} (docker CLI 28)")


class Result:
    def __init__(self, p):
        self.rc, self.out, self.err = p.returncode, p.stdout, p.stderr

    def __repr__(self):
        return f"<rc={self.rc} out={self.out[-2000:]!r} err={self.err[-2000:]!r}>"


class Cli:
    """`docker -H <host> ...` with its own config dir; each call bounded by a timeout."""

    def __init__(self, host, config):
        self.host = host
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(DOCKER_CONFIG=str(config), DOCKER_CLI_HINTS="false", NO_COLOR="1")

    def argv(self, *args):
        return [DOCKER, "-H", self.host, *args]

    def __call__(self, *args, input=None, timeout=TIMEOUT, check=True):
        p = subprocess.run(self.argv(*args), input=input, capture_output=True, timeout=timeout, env=self.env,
                           text=not isinstance(input, bytes))
        r = Result(p)
        if check:
            assert r.rc == 0, f"docker {' '.join(args)}: {r}"
        return r

    def out(self, *args, **kw):
        return self(*args, **kw).out.strip()

    def script(self, command, timeout=TIMEOUT):
        """Run `docker ...` (a shell command line, without the binary) under script(1), which gives it a tty."""
        line = " ".join([DOCKER, "-H", self.host, command])
        p = subprocess.run(["script", "-qec", line, "/dev/null"], capture_output=True, timeout=timeout,
                           env=self.env, stdin=subprocess.DEVNULL)
        r = Result(p)
        r.raw = r.out
        r.out, r.err = r.out.decode(errors="replace").replace("\r\n", "\n"), r.err.decode(errors="replace")
        return r


@pytest.fixture(scope="module")
def target(request, tmp_path_factory):
    """pyd (or, with PYD_TESTS_AGAINST=dockerd, a private dockerd), busybox:latest loaded."""
    return dd.client_target(request, tmp_path_factory)


@pytest.fixture(scope="module")
def cli(target, tmp_path_factory):
    return Cli(f"tcp://127.0.0.1:{target.port}", tmp_path_factory.mktemp("docker-config"))


@pytest.fixture(params=["tcp", "unix"])
def any_cli(request, target, tmp_path_factory):
    host = f"tcp://127.0.0.1:{target.port}" if request.param == "tcp" else f"unix://{target.sock}"
    return Cli(host, tmp_path_factory.mktemp("docker-config"))


@pytest.fixture
def name(cli):
    """A fresh container name; whatever has it is removed at the end."""
    made = []

    def make(prefix="cli"):
        n = f"{prefix}-{uuid.uuid4().hex[:10]}"
        made.append(n)
        return n

    yield make
    for n in made:
        cli("rm", "-f", "-v", n, check=False)


def run(cli, *args, **kw):
    return cli("run", "--pull", "never", *args, **kw)


def running(cli, n):
    return cli.out("inspect", "--format", "{{.State.Running}}", n) == "true"


def detached(cli, name, *cmd, opts=()):
    """`docker run -d` of a long-running busybox; returns its name once running."""
    n = name()
    run(cli, "-d", "--name", n, *opts, "busybox", *(cmd or ("sleep", "300")))
    wait_for(lambda: running(cli, n), what=f"{n} running")
    return n


def without_warnings(err):
    """stderr less the CLI's "WARNING: ..." lines (create's Warnings, e.g. pyd's note on bridge networking)."""
    return "".join(ln for ln in err.splitlines(keepends=True) if not ln.startswith("WARNING: "))


HEX64 = re.compile(r"^[0-9a-f]{64}$")


class TestTransport:
    """The same commands over TCP and over the unix socket."""

    def test_version(self, any_cli):
        out = any_cli.out("version", "--format", "{{.Server.APIVersion}}|{{.Server.Os}}|{{.Client.Version}}")
        api, os_, client = out.split("|")
        assert api == "1.41" and os_ == "linux" and client.startswith("28.")

    def test_info(self, any_cli):
        out = any_cli.out("info", "--format", "{{json .}}")
        info = json.loads(out)
        assert isinstance(info["Containers"], int) and isinstance(info["Images"], int)
        assert info["Images"] >= 1 and info["OSType"] == "linux"
        text = any_cli.out("info")
        assert "Server Version:" in text and "Containers:" in text

    def test_run_and_ps(self, any_cli, name):
        n = name()
        r = run(any_cli, "--name", n, "busybox", "echo", "over the wire")
        assert r.out == "over the wire\n"
        assert n in any_cli.out("ps", "-a", "--format", "{{.Names}}").split()


class TestImages:
    def test_images_lists_busybox(self, cli):
        rows = cli.out("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").splitlines()
        assert any(r.startswith("busybox:latest ") for r in rows), rows
        assert "<none>" not in " ".join(r for r in rows if r.startswith("busybox"))

    def test_import_with_changes_and_message(self, cli, name):
        ref = f"cli-import-{uuid.uuid4().hex[:8]}:v1"
        r = cli("import", "-c", 'CMD ["echo", "imported"]', "-c", "ENV IMPORTED=yes", "-m", "from the cli",
                "-", ref, input=busybox_rootfs_tar())
        assert r.out.decode().strip().startswith("sha256:")
        try:
            assert ref in cli.out("images", "--format", "{{.Repository}}:{{.Tag}}").split()
            assert cli.out("inspect", "--format", "{{json .Config.Cmd}}", ref) == '["echo","imported"]'
            assert "IMPORTED=yes" in cli.out("inspect", "--format", "{{json .Config.Env}}", ref)
            assert cli.out("inspect", "--format", "{{.Comment}}", ref) == "from the cli"
            assert run(cli, "--rm", ref).out == "imported\n"
        finally:
            cli("rmi", "-f", ref, check=False)

    def test_tag_history_rmi(self, cli):
        ref = f"cli-tag-{uuid.uuid4().hex[:8]}:t1"
        cli("tag", "busybox", ref)
        ids = {cli.out("inspect", "--format", "{{.Id}}", r) for r in ("busybox", ref)}
        assert len(ids) == 1 and ids.pop().startswith("sha256:")
        hist = cli.out("history", "--no-trunc", "--format", "{{.ID}} {{.CreatedBy}}", ref).splitlines()
        assert hist and hist[0].split()[0].startswith("sha256:")
        out = cli.out("rmi", ref)
        assert f"Untagged: {ref}" in out
        assert ref not in cli.out("images", "--format", "{{.Repository}}:{{.Tag}}").split()
        assert cli.out("inspect", "--format", "{{.Id}}", "busybox").startswith("sha256:")  # the image stays

    def test_rmi_unknown(self, cli):
        r = cli("rmi", "cli-nosuch:v9", check=False)
        assert r.rc != 0 and "No such image" in r.err

    def test_image_prune_removes_dangling(self, cli, name):
        ref = f"cli-dangling-{uuid.uuid4().hex[:8]}:v1"
        iid = cli("import", "-m", "to prune", "-", ref, input=busybox_rootfs_tar()).out.decode().strip()
        cli("tag", "busybox", ref)  # ref moves to busybox: the import dangles
        try:
            out = cli.out("image", "prune", "-f")
            assert iid in out or iid.partition(":")[2][:12] in out, out
            assert cli("inspect", iid, check=False).rc != 0
        finally:
            cli("rmi", ref, check=False)

    def test_commit_with_changes_and_message(self, cli, name):
        n = name()
        run(cli, "--name", n, "busybox", "sh", "-c", "echo committed > /marker")
        ref = f"cli-commit-{uuid.uuid4().hex[:8]}:v1"
        out = cli.out("commit", "-c", 'CMD ["cat", "/marker"]', "-c", "LABEL made=by-commit", "-m", "a message", n, ref)
        assert out.startswith("sha256:")
        try:
            assert run(cli, "--rm", ref).out == "committed\n"
            assert cli.out("inspect", "--format", "{{.Comment}}|{{index .Config.Labels \"made\"}}", ref) == "a message|by-commit"
            assert "a message" in cli.out("history", "--format", "{{.Comment}}", ref)
        finally:
            cli("rmi", ref, check=False)


class TestRun:
    def test_attached_output_and_exit_code(self, cli, name):
        r = run(cli, "--name", name(), "busybox", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
        assert r.rc == 7 and r.out == "out\n" and without_warnings(r.err) == "err\n", r

    def test_detached_prints_id(self, cli, name):
        n = name()
        out = run(cli, "-d", "--name", n, "busybox", "sleep", "300").out.strip()
        assert HEX64.match(out), out
        assert cli.out("inspect", "--format", "{{.Id}}", n) == out
        wait_for(lambda: running(cli, n), what="running")

    def test_rm_removes_the_container(self, cli, name):
        n = name()
        assert run(cli, "--rm", "--name", n, "busybox", "echo", "gone").out == "gone\n"
        wait_for(lambda: n not in cli.out("ps", "-a", "--format", "{{.Names}}").split(), what="removed")
        r = cli("inspect", n, check=False)
        assert r.rc != 0 and "No such object" in r.err

    def test_env_workdir_user(self, cli, name):
        r = run(cli, "--rm", "-e", "GREETING=hi there", "-w", "/tmp", "-u", "1000:50", "busybox",
                "sh", "-c", 'echo "$GREETING"; pwd; id -u; id -g')
        assert r.out.splitlines() == ["hi there", "/tmp", "1000", "50"]
        r = run(cli, "--rm", "-u", "user", "busybox", "id", "-un")
        assert r.out == "user\n"

    def test_interactive_piped_stdin(self, cli):
        r = run(cli, "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo done", input="piped in\nline two\n")
        assert r.out == "PIPED IN\nLINE TWO\ndone\n"

    def test_tty_under_script(self, cli):
        r = cli.script("run --pull never --rm -t busybox sh -c 'test -t 0 && test -t 1 && echo has-a-tty'")
        assert r.rc == 0, r
        lines = [ln.strip() for ln in r.out.splitlines() if ln.strip()]
        assert "has-a-tty" in lines, r
        assert re.search(rb"has-a-tty\r+\n", r.raw), r.raw  # a tty's line discipline (onlcr), not a pipe

    def test_restart_on_failure(self, cli, name):
        n = name()
        run(cli, "-d", "--name", n, "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")
        # Three deaths (the first run and two restarts): "2 false" from inspect
        # alone also holds while the second restart is still starting.
        def dies():
            out = cli.out("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter",
                          f"container={n}", "--filter", "event=die", "--format", "{{.Action}}")
            return out.split().count("die")
        wait_for(lambda: dies() == 3, timeout=40, what="two restarts, then stopped")
        assert cli.out("inspect", "--format", "{{.RestartCount}} {{.State.Running}}", n) == "2 false"
        assert cli.out("inspect", "--format", "{{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}}", n) == "3 on-failure"

    def test_health_cmd(self, cli, name):
        n = name()
        run(cli, "-d", "--name", n, "--health-cmd", "test -e /tmp/ok", "--health-interval", "1s",
            "--health-retries", "1", "busybox", "sh", "-c", "sleep 2; touch /tmp/ok; exec sleep 300")
        # dockerd reports "starting" from the start, before the first check has run
        first = cli.out("inspect", "--format", "{{json .State.Health}}", n)
        assert first != "null" and json.loads(first)["Status"] in ("starting", "unhealthy", "healthy"), first
        wait_for(lambda: cli.out("inspect", "--format", "{{json .State.Health}}", n).find('"healthy"') > 0,
                 timeout=30, what="healthy")
        assert "(healthy)" in cli.out("ps", "--filter", f"name={n}", "--format", "{{.Status}}")
        log = json.loads(cli.out("inspect", "--format", "{{json .State.Health.Log}}", n))
        assert log and log[-1]["ExitCode"] == 0

    def test_unknown_image_is_an_error(self, cli):
        r = run(cli, "--rm", "cli-nosuch-image:v0", "true", check=False)
        assert r.rc != 0 and "cli-nosuch-image" in r.err

    def test_name_in_use(self, cli, name):
        n = detached(cli, name)
        r = run(cli, "-d", "--name", n, "busybox", "true", check=False)
        assert r.rc != 0 and "already in use" in r.err


class TestPs:
    def test_all_quiet_filter_format(self, cli, name):
        up = detached(cli, name)
        done = name()
        run(cli, "--name", done, "busybox", "true")
        running_names = cli.out("ps", "--format", "{{.Names}}").split()
        assert up in running_names and done not in running_names
        assert done in cli.out("ps", "-a", "--format", "{{.Names}}").split()
        ids = cli.out("ps", "-q").split()
        assert cli.out("inspect", "--format", "{{.Id}}", up)[:12] in ids
        assert cli.out("ps", "-a", "--filter", f"name={done}", "--format", "{{.Names}}") == done
        exited = cli.out("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}").split()
        assert done in exited and up not in exited
        row = cli.out("ps", "--filter", f"name={up}", "--format", "{{.Names}}|{{.Image}}|{{.Command}}|{{.Status}}")
        n, image, command, status = row.split("|")
        assert (n, image) == (up, "busybox") and "sleep" in command and status.startswith("Up")
        table = cli.out("ps", "-a")
        assert table.splitlines()[0].split()[:2] == ["CONTAINER", "ID"]

    def test_label_filter(self, cli, name):
        n = name()
        run(cli, "--name", n, "--label", "cli-test=labelled", "busybox", "true")
        assert cli.out("ps", "-a", "--filter", "label=cli-test=labelled", "--format", "{{.Names}}") == n


class TestLogs:
    def test_logs_tail_timestamps(self, cli, name):
        n = name()
        run(cli, "--name", n, "busybox", "sh", "-c", "echo one; echo two; echo three; echo four >&2")
        r = cli("logs", n)
        assert r.out == "one\ntwo\nthree\n" and without_warnings(r.err) == "four\n"
        r = cli("logs", "--tail", "2", n)
        last = (r.out + r.err).split()  # the order between stdout and stderr is the copiers', not fixed
        assert len(last) == 2 and set(last) <= {"two", "three", "four"}, r
        assert cli("logs", "--tail", "0", n).out == ""
        stamped = cli("logs", "-t", n).out.splitlines()
        assert len(stamped) == 3
        assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (one|two|three)$", ln) for ln in stamped), stamped

    def test_follow(self, cli, name):
        n = detached(cli, name, "sh", "-c", "echo first; sleep 1; echo second; exec sleep 300")
        p = subprocess.Popen(cli.argv("logs", "-f", n), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=cli.env, text=True)
        try:
            lines = []
            deadline = time.monotonic() + 20
            while len(lines) < 2 and time.monotonic() < deadline:
                line = p.stdout.readline()
                if not line:
                    break
                lines.append(line)
            assert lines == ["first\n", "second\n"]
            assert p.poll() is None  # still following
        finally:
            p.kill()
            p.wait(10)

    def test_follow_ends_with_the_container(self, cli, name):
        n = detached(cli, name, "sh", "-c", "sleep 1; echo bye")
        assert cli("logs", "-f", n, timeout=30).out.endswith("bye\n")


class TestExec:
    def test_exec_forms(self, cli, name):
        n = detached(cli, name)
        assert cli("exec", n, "true").rc == 0
        assert cli("exec", n, "sh", "-c", "exit 5", check=False).rc == 5
        assert cli.out("exec", "-u", "1000", n, "id", "-u") == "1000"
        assert cli.out("exec", "-w", "/etc", n, "pwd") == "/etc"
        assert cli.out("exec", "-e", "FOO=bar baz", n, "sh", "-c", 'echo "$FOO"') == "bar baz"
        assert cli("exec", "-i", n, "cat", input="through stdin\n").out == "through stdin\n"
        r = cli.script(f"exec -t {n} sh -c 'test -t 1 && echo exec-tty'")
        assert r.rc == 0 and "exec-tty" in r.out, r
        r = cli.script(f"exec -i -t -u 1000 -w /tmp {n} sh -c 'id -u; pwd'")
        # script(1) echoes the NUL it reads at end of input as ^@
        assert [ln.replace("^@", "").strip() for ln in r.out.splitlines() if ln.replace("^@", "").strip()] == ["1000", "/tmp"], r

    def test_output_after_a_silence_reaches_the_cli(self, cli, name):
        """The CLI half-closes its side at once when it has no stdin to send;
        output that comes after seconds of silence still reaches it, with the
        exit code (a regression: sessions once ended after 1 s of silence)."""
        n = detached(cli, name)
        r = cli("exec", n, "sh", "-c", "sleep 1.5; echo late; exit 3", check=False)
        assert (r.rc, r.out) == (3, "late\n"), r
        r = cli("exec", n, "timeout", "-s", "KILL", "1", "sleep", "5", check=False)
        assert r.rc == 137, r
        assert run(cli, "--rm", "busybox", "sh", "-c", "sleep 1.5; echo late").out == "late\n"
        r = cli.script(f"exec -t {n} sh -c 'sleep 1.5; echo late-tty'")
        assert r.rc == 0 and "late-tty" in r.out, r

    def test_exec_in_stopped_container(self, cli, name):
        n = name()
        run(cli, "--name", n, "busybox", "true")
        r = cli("exec", n, "true", check=False)
        assert r.rc != 0 and "is not running" in r.err


class TestLifecycle:
    def test_stop_kill_restart_wait(self, cli, name):
        n = detached(cli, name)
        assert cli.out("stop", "-t", "1", n) == n
        assert cli.out("inspect", "--format", "{{.State.Status}}", n) == "exited"
        cli("start", n)
        wait_for(lambda: running(cli, n), what="started again")
        pid1 = cli.out("inspect", "--format", "{{.State.Pid}}", n)
        assert cli.out("restart", "-t", "1", n) == n
        wait_for(lambda: running(cli, n), what="restarted")
        assert cli.out("inspect", "--format", "{{.State.Pid}}", n) != pid1
        assert cli.out("kill", n) == n
        assert cli.out("wait", n) == "137"
        assert cli.out("inspect", "--format", "{{.State.ExitCode}}", n) == "137"
        r = cli("kill", n, check=False)
        assert r.rc != 0 and "is not running" in r.err

    def test_kill_with_signal(self, cli, name):
        n = detached(cli, name, "sh", "-c", "trap 'exit 42' USR1; while :; do sleep 0.1; done")
        cli("kill", "-s", "USR1", n)
        assert cli.out("wait", n) == "42"

    def test_wait_exit_code(self, cli, name):
        n = detached(cli, name, "sh", "-c", "sleep 1; exit 9")
        assert cli.out("wait", n) == "9"

    def test_pause_unpause(self, cli, name):
        n = detached(cli, name, "sh", "-c", "while :; do date +%s%N > /tmp/tick; sleep 0.05; done")
        cli("pause", n)
        assert cli.out("inspect", "--format", "{{.State.Status}} {{.State.Paused}}", n) == "paused true"
        assert "(Paused)" in cli.out("ps", "--filter", f"name={n}", "--format", "{{.Status}}")
        r = cli("exec", n, "true", check=False)
        assert r.rc != 0 and "paused" in r.err
        cli("unpause", n)
        assert cli.out("inspect", "--format", "{{.State.Status}}", n) == "running"
        assert cli("exec", n, "cat", "/tmp/tick").rc == 0

    def test_rm_force_and_volumes(self, cli, name):
        n = detached(cli, name, opts=("-v", "/data"))
        vol = cli.out("inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", n)
        assert vol and vol in cli.out("volume", "ls", "-q").split()
        r = cli("rm", n, check=False)
        assert r.rc != 0 and ("running" in r.err.lower())
        assert cli.out("rm", "-f", "-v", n) == n
        assert cli("inspect", n, check=False).rc != 0
        assert vol not in cli.out("volume", "ls", "-q").split()

    def test_rename(self, cli, name):
        n = detached(cli, name)
        new = name("renamed")
        cli("rename", n, new)
        assert cli.out("inspect", "--format", "{{.Name}}", new) == "/" + new
        assert cli("inspect", n, check=False).rc != 0
        r = cli("rename", "cli-nosuch-ctr", name(), check=False)
        assert r.rc != 0 and "No such container" in r.err

    def test_update(self, cli, name):
        n = detached(cli, name)
        cli("update", "--memory", "64m", "--memory-swap", "128m", "--restart", "unless-stopped", n)
        got = cli.out("inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}", n)
        assert got == f"{64 << 20} unless-stopped"
        limit = cli.out("exec", n, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes", check=False)
        if limit:  # cgroup v1 view inside the container
            assert int(limit) == 64 << 20

    def test_stats_no_stream(self, cli, name):
        n = detached(cli, name)
        out = cli.out("stats", "--no-stream", "--format", "{{.Name}}|{{.MemUsage}}|{{.PIDs}}", n)
        nm, mem, pids = out.split("|")
        assert nm == n and re.match(r"^[\d.]+[KMG]?i?B / [\d.]+[KMGT]?i?B$", mem.strip()), mem
        assert int(pids) >= 1

    def test_top(self, cli, name):
        n = detached(cli, name, "sleep", "301")
        lines = cli.out("top", n).splitlines()
        assert "PID" in lines[0].split()
        assert any("sleep 301" in ln for ln in lines[1:]), lines
        lines = cli.out("top", n, "-o", "pid,comm").splitlines()
        assert lines[0].split() == ["PID", "COMMAND"] and any(ln.split()[-1] == "sleep" for ln in lines[1:])

    def test_inspect_format_and_unknown(self, cli, name):
        n = detached(cli, name)
        assert cli.out("inspect", "--format", "{{.Name}} {{.Config.Image}} {{.State.Running}}", n) == f"/{n} busybox true"
        assert cli.out("inspect", "--type", "image", "--format", "{{.Os}}", "busybox") == "linux"
        r = cli("inspect", "cli-nosuch-thing", check=False)
        assert r.rc == 1 and "No such object" in r.err

    def test_container_prune(self, cli, name):
        """Pruned by label, so that other tests' stopped containers on the shared daemon stay."""
        mark = f"cli-prune={uuid.uuid4().hex[:8]}"
        done, other = name(), name()
        up = detached(cli, name, opts=("--label", mark))
        run(cli, "--name", done, "--label", mark, "busybox", "true")
        run(cli, "--name", other, "busybox", "true")
        out = cli.out("container", "prune", "-f", "--filter", f"label={mark}")
        assert "Total reclaimed space" in out and cli.out("inspect", "--format", "{{.Id}}", other) not in out
        assert cli("inspect", done, check=False).rc != 0
        assert running(cli, up)
        assert cli.out("inspect", "--format", "{{.State.Status}}", other) == "exited"


class TestFilesystem:
    def test_diff(self, cli, name):
        n = name()
        run(cli, "--name", n, "busybox", "sh", "-c", "touch /tmp/new; rm /etc/motd; echo x >> /etc/hostname")
        rows = set(cli.out("diff", n).splitlines())
        assert {"A /tmp/new", "C /tmp", "D /etc/motd", "C /etc"} <= rows, rows

    def test_export(self, cli, name, tmp_path):
        n = name()
        run(cli, "--name", n, "busybox", "sh", "-c", "echo exported > /marker")
        out = tmp_path / "c.tar"
        cli("export", "-o", str(out), n)
        with tarfile.open(out) as tf:
            names = set(m.name.lstrip("./") for m in tf.getmembers())
            assert {"bin/busybox", "etc/passwd", "marker"} <= names
            assert tf.extractfile(next(m for m in tf.getmembers() if m.name.lstrip("./") == "marker")).read() == b"exported\n"

    def test_cp_both_ways(self, cli, name, tmp_path):
        n = detached(cli, name)
        src = tmp_path / "dir"
        (src / "sub").mkdir(parents=True)
        (src / "a.txt").write_text("alpha\n")
        (src / "sub" / "b.txt").write_text("beta\n")
        cli("cp", str(src / "a.txt"), f"{n}:/tmp/a.txt")
        assert cli.out("exec", n, "cat", "/tmp/a.txt") == "alpha"
        cli("cp", str(src), f"{n}:/tmp/")
        assert cli.out("exec", n, "cat", "/tmp/dir/sub/b.txt") == "beta"
        cli("exec", n, "sh", "-c", "mkdir -p /out/deep && echo gamma > /out/deep/c.txt")
        dst = tmp_path / "back"
        cli("cp", f"{n}:/out", str(dst))
        assert (dst / "deep" / "c.txt").read_text() == "gamma\n"
        cli("cp", f"{n}:/etc/motd", str(tmp_path / "motd"))
        assert (tmp_path / "motd").read_text() == "hello from the busybox test image\n"
        r = cli("cp", f"{n}:/cli-nosuch", str(tmp_path / "x"), check=False)
        assert r.rc != 0 and ("No such" in r.err or "Could not find" in r.err), r
        # a stopped container works too
        cli("stop", "-t", "1", n)
        cli("cp", str(src / "a.txt"), f"{n}:/stopped.txt")
        cli("cp", f"{n}:/stopped.txt", str(tmp_path / "stopped.txt"))
        assert (tmp_path / "stopped.txt").read_text() == "alpha\n"

    def test_cp_symlink_outside_stays_inside(self, cli, name, tmp_path):
        secret = tmp_path / "host-secret"
        secret.write_text("host only\n")
        hostdir = tmp_path / "host-dir"
        hostdir.mkdir()
        n = detached(cli, name)
        # links that point at host paths and above the root, from inside
        cli("exec", n, "sh", "-c", f"ln -s {secret} /leak && ln -s ../../../../../{hostdir} /updir "
                                    f"&& mkdir -p {hostdir} && echo inside > {secret}")
        r = cli("cp", "-L", f"{n}:/leak", str(tmp_path / "got"), check=False)
        if r.rc == 0:
            assert (tmp_path / "got").read_text() == "inside\n"  # resolved in the container's root
        got = cli("cp", f"{n}:/leak", str(tmp_path / "link"))
        assert got.rc == 0 and os.path.islink(tmp_path / "link")  # copied as a link, not followed
        (tmp_path / "in.txt").write_text("through the link\n")
        cli("cp", str(tmp_path / "in.txt"), f"{n}:/updir/")
        assert list(hostdir.iterdir()) == []  # nothing written on the host
        assert cli.out("exec", n, "cat", f"{hostdir}/in.txt") == "through the link"
        assert secret.read_text() == "host only\n"


class TestEvents:
    def test_since_until_filter(self, cli, name):
        since = int(time.time()) - 1
        n = name()
        run(cli, "--name", n, "busybox", "true")
        cli("rm", n)
        until = int(time.time()) + 1
        time.sleep(1.2)
        out = cli.out("events", "--since", str(since), "--until", str(until), "--filter", f"container={n}",
                      "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
        rows = out.splitlines()
        actions = [r.split()[1] for r in rows]
        for a in ("create", "attach", "start", "die", "destroy"):
            assert a in actions, rows
        assert all(r.startswith("container ") and r.endswith(" " + n) for r in rows), rows
        assert actions.index("create") < actions.index("start") < actions.index("die") < actions.index("destroy")
        out = cli.out("events", "--since", str(since), "--until", str(until), "--filter", f"container={n}",
                      "--filter", "event=die", "--format", "{{json .}}")
        evs = [json.loads(ln) for ln in out.splitlines()]
        assert len(evs) == 1 and evs[0]["Action"] == "die" and evs[0]["Actor"]["Attributes"]["exitCode"] == "0"
        assert isinstance(evs[0]["timeNano"], int) and evs[0]["scope"] == "local"

    def test_live_stream(self, cli, name):
        """`docker events` without --until follows: a container's events arrive while it runs."""
        n = name()
        p = subprocess.Popen(cli.argv("events", "--filter", f"container={n}", "--format", "{{.Action}}"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env, text=True)
        try:
            time.sleep(0.5)  # the stream is open before the container exists
            run(cli, "--name", n, "busybox", "true")
            seen, deadline = [], time.monotonic() + 20
            while "die" not in seen and time.monotonic() < deadline:
                line = p.stdout.readline()
                if not line:
                    break
                seen.append(line.strip())
            assert seen[:1] == ["create"] and "start" in seen and "die" in seen, seen
        finally:
            p.kill()
            p.wait(10)

    def test_image_and_volume_events(self, cli):
        since = int(time.time()) - 1
        ref = f"cli-ev-{uuid.uuid4().hex[:8]}:v1"
        vol = f"cli-ev-{uuid.uuid4().hex[:8]}"
        cli("tag", "busybox", ref)
        cli("rmi", ref)
        cli("volume", "create", vol)
        cli("volume", "rm", vol)
        until = int(time.time()) + 1
        time.sleep(1.2)
        out = cli.out("events", "--since", str(since), "--until", str(until),
                      "--filter", "type=image", "--filter", "type=volume", "--format", "{{.Type}} {{.Action}}")
        rows = set(out.splitlines())
        assert {"image tag", "image untag", "volume create", "volume destroy"} <= rows, rows


class TestVolumes:
    def test_create_ls_inspect_rm(self, cli, name):
        vol = f"cli-vol-{uuid.uuid4().hex[:8]}"
        assert cli.out("volume", "create", "--label", "k=v", vol) == vol
        try:
            assert vol in cli.out("volume", "ls", "-q").split()
            assert cli.out("volume", "ls", "--filter", "label=k=v", "--format", "{{.Name}} {{.Driver}}") == f"{vol} local"
            info = json.loads(cli.out("volume", "inspect", vol))[0]
            assert info["Name"] == vol and info["Driver"] == "local" and info["Labels"] == {"k": "v"}
            assert os.path.isabs(info["Mountpoint"])
            n = name()
            run(cli, "--name", n, "-v", f"{vol}:/data", "busybox", "sh", "-c", "echo kept > /data/f")
            assert run(cli, "--rm", "-v", f"{vol}:/data", "busybox", "cat", "/data/f").out == "kept\n"
            r = cli("volume", "rm", vol, check=False)
            assert r.rc != 0 and "in use" in r.err
            cli("rm", n)
        finally:
            cli("volume", "rm", "-f", vol, check=False)
        assert vol not in cli.out("volume", "ls", "-q").split()
        r = cli("volume", "inspect", vol, check=False)
        assert r.rc != 0 and "no such volume" in r.err.lower()

    def test_system_df(self, cli):
        out = cli.out("system", "df")
        kinds = [ln.split()[0] for ln in out.splitlines()[1:]]
        assert kinds[:3] == ["Images", "Containers", "Local"], out
        rows = json.loads("[" + ",".join(cli.out("system", "df", "--format", "{{json .}}").splitlines()) + "]")
        images = next(r for r in rows if r["Type"] == "Images")
        assert int(images["TotalCount"]) >= 1
        verbose = cli.out("system", "df", "-v")
        assert "busybox" in verbose
