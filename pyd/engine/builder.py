"""The classic builder: POST /build runs a Dockerfile step by step on the
engine's own paths. RUN is container_create, container_start and the
container's log; ADD and COPY extract into a created container's root as
docker cp does; every step commits an image (engine.fsops), a metadata step
without a layer. See docs/build.md.

The cache is the image store itself, as in moby's classic builder: a step's
image records the config it was made from (container_config, whose Cmd
names the step: `/bin/sh -c #(nop) ENV a=b`, or the RUN command, or
`COPY file:<content sha256> in /dest`), and a step whose parent image has
a child with an equal container_config reuses that child. It so survives a
restart, and ADD and COPY hit only when the content they copy is the same.

`Build.run()` is a generator of messages (Step, Text, Built) and None
ticks, so that the API can notice a client that went away while a RUN is
quiet; closing the generator kills and removes the running step's
container. Errors are raised: BuildError for what Docker reports in the
stream (a failing RUN carries its exit code).
"""

import json
import logging
import os
import posixpath
import signal
import stat
from dataclasses import dataclass, field
from typing import NamedTuple

from .. import errors
from ..fs import inroot, tarsafe
from ..runtime import users
from ..registry import reference
from . import pull as pulling
from . import buildcontext, buildcopy, createconfig, dockerfile, fsops
from .fetch import open_url

log = logging.getLogger(__name__)

SHELL = ["/bin/sh", "-c"]


class BuildError(errors.PydError):
    """A failure after the build started; `code` is a failing RUN's exit code."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


class Step(NamedTuple):
    n: int
    total: int
    text: str


class Text(NamedTuple):
    text: str


class Built(NamedTuple):
    image_id: str


class Tagged(NamedTuple):
    repo: str
    tag: str


@dataclass
class Options:
    tags: list = field(default_factory=list)        # [(repo, tag)], checked already
    quiet: bool = False
    nocache: bool = False
    rm: bool = True
    forcerm: bool = False
    pull: bool = False
    build_args: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    target: str = ""
    memory: int = 0
    memswap: int = 0
    network_mode: str = ""
    dockerfile: str = "Dockerfile"
    legacy: bool = False    # v1.3: unknown instructions are skipped, not refused
    registry_auth: dict = field(default_factory=dict)   # registry host -> authConfig (X-Registry-Config)


@dataclass
class _State:
    """The stage being built: its image so far and the config it carries."""
    image: object           # store.images.Image, or None (scratch, nothing committed yet)
    config: dict
    args: dict = field(default_factory=dict)     # ARGs declared in the stage: name -> value or None
    shell: list = field(default_factory=lambda: list(SHELL))
    cmd_set: bool = False
    author: str = ""        # MAINTAINER: the author of every later step's image


def _plain(value):
    """A JSON-shaped deep copy (tuples become lists): what a stored config holds."""
    return json.loads(json.dumps(value))


def _canon(cfg):
    return json.dumps(cfg or {}, sort_keys=True)


def _go_quote(words):
    """Go's %q of a []string, as moby writes CMD and ENTRYPOINT comments."""
    return "[" + " ".join(json.dumps(w) for w in words) + "]"


class Plan(NamedTuple):
    stages: list        # the stages to build, up to the target
    meta: list          # the ARG instructions before the first FROM
    total: int          # steps, for "Step n/total"
    globals: dict       # the values of those ARGs (defaults and build args)


def prepare(text, opts):
    """Parse and check everything that can fail before the first byte of
    output (a 4xx on modern paths, as dockerd): the Dockerfile, the target,
    the labels."""
    df = dockerfile.parse(text)
    if not opts.legacy:
        for instr in df.instructions:
            if instr.cmd not in dockerfile.KNOWN:
                raise errors.BadParameter(f"Dockerfile parse error line {instr.line}: "
                                          f"unknown instruction: {instr.cmd}")
    all_stages = dockerfile.stages(df, opts.build_args)
    stages = all_stages
    if opts.target:
        chosen = dockerfile.stage_by_name(all_stages, opts.target)
        if chosen is None or chosen.name != opts.target.lower():
            raise errors.BadParameter(f"failed to reach build target {opts.target} in Dockerfile")
        stages = all_stages[:chosen.index + 1]
    if opts.labels:
        # moby adds the labels as a last LABEL instruction of the final stage.
        text = "LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in sorted(opts.labels.items()))
        stages[-1].instructions.append(dockerfile.parse(text).instructions[0])
    meta = []
    for instr in df.instructions:
        if instr.cmd == "FROM":
            break
        meta.append(instr)
    total = len(meta) + sum(1 + len(s.instructions) for s in stages)
    return Plan(stages, meta, total, dockerfile.global_args(df, opts.build_args))


class Build:
    def __init__(self, engine, context_dir, plan, opts):
        self.engine = engine
        self.context_dir = context_dir
        self.plan = plan
        self.opts = opts
        self.n = 0
        self.busted = False         # a cache miss: later steps are not looked up
        self.live = None            # the id of the container of the step being run
        self.kept = []              # intermediate containers not removed yet
        self.results = {}           # stage index -> Image (or None)
        self.consumed = set()       # build args some ARG declared

    # -- the whole build ----------------------------------------------------

    def run(self):
        ok = False
        try:
            image = yield from self._stages()
            ok = True
        finally:
            self._cleanup(ok)
        if image is None:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        unused = sorted(set(self.opts.build_args) - self.consumed - _PREDEFINED)
        if unused:
            yield Text(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        yield Built(image.id)
        yield Text(f"Successfully built {image.id[:12]}\n")
        for repo, tag in self.opts.tags:
            self.engine._tag(image.id, repo, tag, force=True)
            yield Tagged(repo, tag)

    def _cleanup(self, ok):
        """A step cut short (the client left, or the daemon is stopping) loses
        its container, as in dockerd; a failed one stays unless forcerm."""
        if self.live is not None:
            cid, self.live = self.live, None
            self._remove(cid, kill=True)
        if self.opts.forcerm or (ok and self.opts.rm):
            for cid in self.kept:
                self._remove(cid)
            self.kept.clear()

    def _remove(self, cid, kill=False):
        try:
            if kill:
                self.engine.container_kill(cid, signal.SIGKILL)
        except errors.PydError:
            pass
        try:
            self.engine.container_delete(cid, remove_volumes=True, force=True)
        except errors.NotFound:
            pass
        except errors.PydError as e:
            log.warning("build: removing intermediate container %s: %s", cid[:12], e)

    def _stages(self):
        for instr in self.plan.meta:
            yield self._step(instr)
            for name, _ in dockerfile.instruction_args(instr):
                self.consumed.add(name)
        st = None
        for stage in self.plan.stages:
            yield self._step(stage.origin)
            st = yield from self._from(stage)
            for instr in stage.instructions:
                yield self._step(instr)
                yield from self._dispatch(st, instr)
            self.results[stage.index] = st.image
        return st.image if st is not None else None

    def _step(self, instr):
        self.n += 1
        return Step(self.n, self.plan.total, instr.original)

    # -- FROM -------------------------------------------------------------------

    def _from(self, stage):
        base = stage.base
        want = (stage.platform or "").split("/")
        if stage.platform and (want[0] != "linux" or (len(want) > 1 and want[1] != fsops.architecture())):
            raise BuildError(f"FROM --platform={stage.platform}: pyd builds for linux/{fsops.architecture()} only")
        if base.lower() == "scratch":
            image, config = None, createconfig.empty_config()
        else:
            prior = next((s for s in self.plan.stages[:stage.index] if s.name and s.name == base.lower()), None)
            if prior is not None:
                image = self.results[prior.index]
            else:
                # As dockerd's classic builder: pull=1 always asks the registry,
                # and a base image that is not here is pulled.
                if self.opts.pull or not self._have(base):
                    yield from self._pull(base)
                try:
                    image = self.engine.images.resolve(base)
                except errors.NotFound as e:
                    raise BuildError(f"No such image: {base}") from e
            config = _plain(image.run_config) if image is not None else createconfig.empty_config()
        st = _State(image, config)
        if image is not None:
            yield Text(f" ---> {image.id[:12]}\n")
        triggers = list(st.config.get("OnBuild") or [])
        st.config["OnBuild"] = None     # triggers run in the child only, never in a grandchild
        if triggers:
            yield Text(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for text in triggers:
                instr = dockerfile.parse(text).instructions[0]
                if instr.cmd in ("ONBUILD", "FROM", "MAINTAINER"):
                    raise BuildError(f"{instr.cmd} isn't allowed as an ONBUILD trigger")
                yield from self._dispatch(st, instr)
        return st

    def _have(self, base):
        try:
            self.engine.images.resolve(base)
            return True
        except errors.NotFound:
            return False

    def _pull(self, base):
        """The base image from its registry, its statuses as text lines."""
        bare = "@" not in base and ":" not in base.rsplit("/", 1)[-1]
        try:
            host = reference.parse(base).registry
            for msg in self.engine.image_pull(base, "latest" if bare else None, None, None,
                                              self.opts.registry_auth.get(host) or {}):
                if isinstance(msg, pulling.Status):
                    yield Text(f"{msg.id + ': ' if msg.id else ''}{msg.text}\n")
                elif msg is None:
                    yield None
        except errors.PydError as e:
            raise BuildError(f"pull access to {base} failed: {e}") from e

    # -- one instruction --------------------------------------------------------

    def _env(self, st):
        """The environment words are substituted with: ENV, then ARGs in scope."""
        env = list(st.config.get("Env") or [])
        keys = {e.partition("=")[0] for e in env}
        env += [f"{k}={v}" for k, v in st.args.items() if v is not None and k not in keys]
        return env

    def _arg_env(self, st):
        """The build args a RUN sees (and that moby prefixes to its cache key):
        ARGs in scope with a value, ENV winning over them."""
        keys = {e.partition("=")[0] for e in st.config.get("Env") or []}
        return sorted(f"{k}={v}" for k, v in st.args.items() if v is not None and k not in keys)

    def _dispatch(self, st, instr):
        cmd = instr.cmd
        if cmd not in dockerfile.KNOWN:
            yield Text(f"# Skipping unknown instruction {cmd}\n")
            return
        if cmd == "RUN":
            yield from self._run(st, instr)
            return
        if cmd in ("ADD", "COPY"):
            yield from self._copy(st, instr)
            return
        if cmd == "WORKDIR":
            yield from self._workdir(st, instr)
            return
        words = dockerfile.instruction_args(instr, self._env(st))
        cfg = st.config
        if cmd == "MAINTAINER":
            st.author = " ".join(words)
            comment = f"MAINTAINER {' '.join(words)}"
        elif cmd in ("ENV", "LABEL"):
            if cmd == "ENV":
                env = list(cfg.get("Env") or [])
                for k, v in words:
                    env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
                cfg["Env"] = env
            else:
                cfg["Labels"] = dict(cfg.get("Labels") or {}, **dict(words))
            comment = cmd + " " + " ".join(f"{k}={v}" for k, v in words)
        elif cmd == "ARG":
            for name, default in words:
                # A build arg wins; else the default; else, redeclared without
                # one, the global ARG of that name (moby's meta args).
                self.consumed.add(name)
                if name in self.opts.build_args:
                    st.args[name] = self.opts.build_args[name]
                else:
                    st.args[name] = default if default is not None else self.plan.globals.get(name)
            comment = "ARG " + " ".join(k if v is None else f"{k}={v}" for k, v in words)
        elif cmd == "CMD":
            cfg["Cmd"] = dockerfile.command(instr, st.shell)
            st.cmd_set = True
            comment = f"CMD {_go_quote(cfg['Cmd'])}"
        elif cmd == "ENTRYPOINT":
            cfg["Entrypoint"] = dockerfile.command(instr, st.shell) if (instr.json or instr.args.strip()) else None
            if not st.cmd_set:
                cfg["Cmd"] = None   # moby: an ENTRYPOINT resets a CMD the image inherited
            comment = f"ENTRYPOINT {_go_quote(cfg['Entrypoint'] or [])}"
        elif cmd == "EXPOSE":
            cfg["ExposedPorts"] = dict(cfg.get("ExposedPorts") or {}, **{p: {} for p in words})
            comment = "EXPOSE " + " ".join(sorted(cfg["ExposedPorts"]))
        elif cmd == "VOLUME":
            paths = [p for w in words for p in ([w] if instr.json else w.split())]
            cfg["Volumes"] = dict(cfg.get("Volumes") or {}, **{p: {} for p in paths})
            comment = f"VOLUME [{' '.join(paths)}]"
        elif cmd == "USER":
            cfg["User"] = words[0]
            comment = f"USER {words[0]}"
        elif cmd == "STOPSIGNAL":
            from .facade import parse_signal
            parse_signal(words[0])
            cfg["StopSignal"] = words[0]
            comment = f"STOPSIGNAL {words[0]}"
        elif cmd == "HEALTHCHECK":
            hc = words[0]
            cfg["Healthcheck"] = hc
            comment = "HEALTHCHECK " + json.dumps(hc, separators=(",", ":"))
        elif cmd == "ONBUILD":
            cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [words[0]]
            comment = f"ONBUILD {words[0]}"
        elif cmd == "SHELL":
            if not instr.json:
                raise BuildError("SHELL requires the arguments to be in JSON form")
            st.shell = list(instr.args)
            cfg["Shell"] = list(instr.args)
            comment = f"SHELL {_go_quote(st.shell)}"
        else:  # FROM inside a stage cannot happen: stages() split on it
            raise BuildError(f"unexpected instruction {cmd}")
        yield from self._commit_meta(st, comment)

    # -- commits and the cache -------------------------------------------------------

    def _configs(self, st, cmd):
        """(run config, container config) of a step: what the image holds, and
        what it was made with (the cache key, and history's CreatedBy)."""
        run = dict(st.config)
        run["Image"] = ("sha256:" + st.image.id) if st.image is not None else ""
        run = _plain(run)
        return run, dict(run, Cmd=list(cmd))

    def _cached(self, st, cc):
        if self.opts.nocache or self.busted:
            return None
        key = _canon(cc)
        parent = st.image.id if st.image is not None else ""
        images = self.engine.images
        hits = [img for img in (images.get(i) for i in images.children(parent))
                if _canon(img.config.get("container_config")) == key]
        if not hits:
            self.busted = True
            return None
        return max(hits, key=lambda img: img.created)

    def _reused(self, st, cc):
        """A generator: on a cache hit, move the stage to the cached image,
        say so, and return True."""
        hit = self._cached(st, cc)
        if hit is None:
            return False
        yield Text(" ---> Using cache\n")
        yield self._use(st, hit)
        return True

    def _use(self, st, img):
        st.image = img
        return Text(f" ---> {img.id[:12]}\n")

    def _commit_meta(self, st, comment):
        run, cc = self._configs(st, SHELL + ["#(nop) " + comment])
        if (yield from self._reused(st, cc)):
            return
        img = fsops.commit_config(self.engine.images, st.image, run, cc, st.author)
        yield self._use(st, img)

    # -- RUN ------------------------------------------------------------------------

    def _create(self, st, cmd=None, entrypoint=None, env=()):
        """A step's container, from the stage's image as it is now."""
        flat = {"Image": st.image.id, "Healthcheck": {"Test": ["NONE"]}}
        if entrypoint is not None:
            # moby's withEntrypointOverride: no entrypoint, the command as Cmd
            flat.update(Entrypoint=[""], Cmd=entrypoint, Env=list(env) or None)
        else:
            flat["Cmd"] = cmd
        if self.opts.memory:
            flat["Memory"] = self.opts.memory
            flat["MemorySwap"] = self.opts.memswap
        if self.opts.network_mode:
            flat["NetworkMode"] = self.opts.network_mode
        cid, _ = self.engine.container_create(flat)
        return cid

    def _run(self, st, instr):
        argv = dockerfile.command(instr, st.shell)
        args = self._arg_env(st)
        key = ([f"|{len(args)}"] + args + argv) if args else argv
        run, cc = self._configs(st, key)
        if (yield from self._reused(st, cc)):
            return
        if st.image is None or not st.image.diff_ids:
            raise BuildError(f"The command '{' '.join(argv)}' cannot run: the image has no filesystem "
                             "(FROM scratch with nothing added)")
        cid = self._create(st, entrypoint=argv, env=args)
        self.kept.append(cid)
        yield Text(f" ---> Running in {cid[:12]}\n")
        self.live = cid
        self.engine.container_start(cid)
        _, lines = self.engine.container_logs(cid, follow=True)
        try:
            for item in lines:
                if item is None:
                    yield None
                elif not self.opts.quiet:
                    yield Text(item[1].decode("utf-8", errors="replace"))
        finally:
            lines.close()
        code, err = self.engine.container_wait(cid)()
        self.live = None
        if code != 0:
            raise BuildError(f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
        img = self._commit_container(cid, st, run, cc)
        yield from self._done(cid)
        yield self._use(st, img)

    def _commit_container(self, cid, st, run, cc):
        c = self.engine.containers.get(cid)
        layers, driver, _ = self.engine._stack(c)
        with c.lock:
            return fsops.commit_step(self.engine.images, c, layers, driver, st.image, run, cc,
                                     self.engine.config.tmp_dir, st.author)

    def _done(self, cid):
        if self.opts.rm:
            self.kept.remove(cid)
            self._remove(cid)
            yield Text(f"Removing intermediate container {cid[:12]}\n")

    # -- ADD, COPY, WORKDIR --------------------------------------------------------------

    def _sources(self, st, instr, srcs, work):
        """The sources as buildcontext.Sources: in the context, in a copy of
        another stage's (or image's) files for --from, or downloaded URLs."""
        add = instr.cmd == "ADD"
        ref = instr.flags.get("from") if instr.cmd == "COPY" else None
        url_paths = set()
        if ref:
            root = os.path.join(work, "from")
            os.mkdir(root, 0o755)
            self._copy_from(ref, srcs, root)
            return buildcontext.context_sources(root, srcs), url_paths
        local, out = [], []
        for s in srcs:
            if buildcopy.is_url(s):
                if not add:
                    raise BuildError(f"source can't be a URL for COPY: {s}")
                into = os.path.join(work, f"url{len(url_paths)}")
                os.mkdir(into, 0o755)
                path = buildcopy.download(s, into, self.engine.config.max_build_download, open_url)
                url_paths.add(path)
                out.append(buildcontext.Source(os.path.basename(path), path))
            else:
                local.append(s)
        if local:
            out = buildcontext.context_sources(self.context_dir, local) + out
        return out, url_paths

    def _copy_from(self, ref, srcs, root):
        """Copy what `srcs` name from a stage's image (or any image) into
        `root`, each at its own path, through docker cp's read path."""
        stage = dockerfile.stage_by_name(self.plan.stages[:max(self.results, default=-1) + 1], ref)
        if stage is not None and stage.index in self.results:
            image = self.results[stage.index]
        else:
            try:
                image = self.engine.images.resolve(ref)
            except errors.NotFound as e:
                raise BuildError(f"invalid from flag value {ref}: No such image or build stage") from e
        if image is None or not image.diff_ids:
            raise BuildError(f"COPY --from={ref}: that image has no files")
        cid, _ = self.engine.container_create({"Image": image.id, "Cmd": ["#(nop) copy-from"],
                                               "Healthcheck": {"Test": ["NONE"]}})
        try:
            for src in srcs:
                path = "/" + src.lstrip("/")
                if any(ch in path for ch in "*?["):
                    path = path[:min(path.index(ch) for ch in "*?[" if ch in path)]
                    path = path.rsplit("/", 1)[0] or "/"
                path = posixpath.normpath(path)
                if buildcontext._climbs(path.lstrip("/")):
                    raise BuildError(f"forbidden path outside the image: {src}")
                try:
                    _, produce = self.engine.container_archive(cid, path)
                except errors.NotFound as e:
                    raise BuildError(f"COPY --from={ref}: {src}: no such file or directory") from e
                parent = os.path.join(root, posixpath.dirname(path).lstrip("/"))
                os.makedirs(parent, 0o755, exist_ok=True)
                if path == "/":
                    parent = root
                _extract_producer(produce, parent)
        finally:
            self._remove(cid)

    def _owner(self, st, instr, env):
        chown = instr.flags.get("chown")
        if not chown or chown is True:
            return (0, 0), ""
        chown = dockerfile.expand(chown, env, instr.escape)
        layers = self.engine.images.layer_dirs(st.image) if st.image is not None else []
        user, _, group = chown.partition(":")
        try:
            uid, gid, _, _ = users.resolve(chown if group or not user.isdigit() else user, layers)
        except errors.PydError as e:
            raise BuildError(f"unable to convert uid/gid chown string to host mapping: {e}") from e
        if user.isdigit() and not group:
            gid = int(user)     # moby: --chown=10 is 10:10
        return (uid, gid), chown

    def _copy(self, st, instr):
        env = self._env(st)
        words = dockerfile.instruction_args(instr, env)
        if len(words) < 2:
            raise BuildError(f"{instr.cmd} requires at least two arguments")
        srcs, dest = words[:-1], words[-1]
        owner, chown = self._owner(st, instr, env)
        dest = buildcopy.dest_path(dest, st.config.get("WorkingDir"))
        work = fsops.new_work_dir(self.engine.config.tmp_dir, "copy")
        try:
            try:
                sources, url_paths = self._sources(st, instr, srcs, work)
            except (errors.NotFound, errors.BadParameter) as e:
                raise BuildError(f"{instr.cmd} failed: {e}") from e
            comment = buildcopy.cache_text(instr.cmd, sources, chown, dest)
            run, cc = self._configs(st, SHELL + ["#(nop) " + comment])
            if (yield from self._reused(st, cc)):
                return
            add = instr.cmd == "ADD"
            img = self._into_root(st, run, cc, dest, lambda is_dir: buildcopy.layout(
                sources, dest, is_dir, add, url_paths), owner)
            yield self._use(st, img)
        finally:
            tarsafe.remove_tree(work)

    def _workdir(self, st, instr):
        path = dockerfile.instruction_args(instr, self._env(st))[0]
        path = posixpath.normpath(posixpath.join("/", st.config.get("WorkingDir") or "/", path))
        st.config["WorkingDir"] = path
        run, cc = self._configs(st, SHELL + [f"#(nop) WORKDIR {path}"])
        if (yield from self._reused(st, cc)):
            return
        # The directory is made in the image, as dockerd 20.10 does, so that a
        # later COPY or RUN finds it (a layer only if it was missing).
        img = self._into_root(st, run, cc, path + "/", lambda is_dir: (path, []), (0, 0))
        yield self._use(st, img)

    def _into_root(self, st, run, cc, dest, layout, owner):
        """Lay files into the stage's filesystem and commit it: inside a
        created container's root (its links resolved inside it), or, with no
        filesystem yet, in a fresh directory."""
        if st.image is None or not st.image.diff_ids:
            tree = fsops.new_work_dir(self.engine.config.tmp_dir, "scratch")
            try:
                directory, items = layout(False)
                fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    _lay(inroot.Root(fd), directory, items, owner)
                finally:
                    os.close(fd)
                return fsops.commit_dir(self.engine.images, tree, st.image, run, cc,
                                        self.engine.config.tmp_dir, st.author)
            finally:
                tarsafe.remove_tree(tree)
        cid = self._create(st, cmd=cc["Cmd"])
        self.kept.append(cid)
        c = self.engine.containers.get(cid)
        with c.lock, self.engine._archive_open(c, write=True) as opened:
            is_dir = _is_dir(opened.root, dest.rstrip("/") or "/")
            directory, items = layout(is_dir)
            _lay(opened.root, directory, items, owner)
        img = self._commit_container(cid, st, run, cc)
        if self.opts.rm:
            self.kept.remove(cid)
            self._remove(cid)
        return img


_PREDEFINED = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
               "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}


def _is_dir(root, path):
    try:
        with root.lookup(path, follow=True) as node:
            return stat.S_ISDIR(node.st.st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _lay(root, directory, items, owner):
    """Extract the items under `directory` inside `root`: the existing part of
    the path is found with every link resolved inside the root, the missing
    part is created, owned by `owner`."""
    node, rest = root._walk(directory, follow=True, missing_ok=True)
    with node:
        if not stat.S_ISDIR(node.st.st_mode):
            raise BuildError(f"cannot copy to {directory}: {node.path} is not a directory")
        prefix = "/".join(rest)
        dest = node.proc_path()

        def extract(src):
            try:
                tarsafe.extract(src, dest, whiteouts=False, root_attrs=False)
            except tarsafe.BadTar as e:
                raise errors.BadParameter(f"copying: {e}") from e
        buildcopy.write_into(extract, items, prefix, owner)
        for item in items:
            if item.extract:
                target = os.path.join(dest, prefix) if prefix else dest
                os.makedirs(target, 0o755, exist_ok=True)
                with open(item.path, "rb") as f:
                    try:
                        tarsafe.extract(f, target, whiteouts=False, root_attrs=False)
                    except tarsafe.BadTar as e:
                        raise BuildError(f"ADD {os.path.basename(item.path)}: {e}") from e


def _extract_producer(produce, into):
    """Run a docker cp producer (send(bytes) calls) into tarsafe.extract."""
    try:
        fsops.piped(lambda out: produce(out.write),
                    lambda src: tarsafe.extract(src, into, whiteouts=False, root_attrs=False), "build-from")
    except BuildError:
        raise
    except (tarsafe.BadTar, errors.PydError, OSError) as e:
        raise BuildError(f"copying from the image: {e}") from e
