"""docker cp: stat, read (as a tar) and write (from a tar) a path inside a
container, running or stopped. See docs/archive.md.

Where the files are:
  running   /proc/<init pid>/root: the container's own root with its binds,
            volumes and etc files, exactly as its processes see them.
  stopped   a *detached* mount tree, attached nowhere and gone with its fd:
            overlay2, an overlay of the container's layers
            (native.overlay_mount_fd), read-only without an upper dir for
            reading, with the container's upper and work dirs for writing;
            vfs, a bind of its rootfs copy. Its etc files and c.data["mounts"]
            are bound onto it (native.attach_bind) as a start would, so
            volumes and read-only binds behave as in the running container.
Every path is resolved by fs.inroot, inside that root; tars are written by
tarsafe.extract, which never follows a symlink and refuses escapes.

Semantics are moby's (daemon/archive*.go, container/archive.go): a path
ending in "/" or "/." follows a final symlink; a directory is archived
under its own name (or "." for "dir/."); the stat is {name, size, mode
(Go os.FileMode bits), mtime, linkTarget}.
"""

import datetime
import errno
import logging
import os
import posixpath
import stat

from .. import errors, native
from ..fs import inroot, tarsafe
from ..runtime import users
from . import etcfiles, lifecycle as lc
from .fsops import ChunkWriter

log = logging.getLogger(__name__)

# Go's os.FileMode type bits
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def go_mode(mode):
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFBLK: _GO_DEVICE,
            stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV, stat.S_IFIFO: _GO_PIPE,
            stat.S_IFSOCK: _GO_SOCKET}.get(kind, 0)
    for bit, go in ((stat.S_ISUID, _GO_SETUID), (stat.S_ISGID, _GO_SETGID), (stat.S_ISVTX, _GO_STICKY)):
        if mode & bit:
            out |= go
    return out


def go_time(ns):
    """RFC 3339 with nanoseconds, trailing zeros cut, as Go marshals a time."""
    sec, frac = divmod(ns, 1_000_000_000)
    t = datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return t + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def abs_path(path):
    """Docker's PreserveTrailingDotOrSeparator(Join("/", path), path)."""
    clean = posixpath.normpath("/" + path)
    if clean.startswith("//"):
        clean = "/" + clean.lstrip("/")
    if clean != "/":
        if path.endswith("/."):
            clean += "/."
        elif path.endswith("/"):
            clean += "/"
    return clean


def base_name(path):
    """Go's filepath.Base: trailing slashes dropped; "/" stays "/"."""
    stripped = path.rstrip("/")
    return posixpath.basename(stripped) if stripped else "/"


def _follows(absp):
    return absp == "/" or absp.endswith("/") or absp.endswith("/.")


# -- the container's root ------------------------------------------------------

class Opened:
    """A container's root for one operation; close() releases its fds (and so
    a stopped container's private mount tree)."""

    def __init__(self, root, fds):
        self.root, self._fds = root, fds

    def close(self):
        fds, self._fds = getattr(self, "_fds", []), []
        for fd in fds:
            os.close(fd)

    __del__ = close  # a safety net only: every path closes explicitly

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _attach_mounts(c, root, write):
    """Bind the container's etc files and mounts onto its detached root, in
    the start's order (parents first), each target resolved inside the root.
    A target missing from the root is left out: the container never had it
    mounted (a container not started yet has no etc files or volumes; Docker
    makes them at start too). Everything is read-only unless writing."""
    binds = [(os.path.join(c.path, name), target, True) for name, target in etcfiles.NAMES]
    binds += [(m["source"], m["target"], m["rw"]) for m in c.data.get("mounts") or []]
    for source, target, rw in binds:
        try:
            node = root.lookup(target, follow=True)
        except (FileNotFoundError, NotADirectoryError):
            log.debug("%s: no %s to mount %s on", c.short_id, target, source)
            continue
        with node:
            try:
                is_dir = stat.S_ISDIR(os.stat(source).st_mode)
            except FileNotFoundError:
                log.warning("%s: the source %s of %s is gone", c.short_id, source, target)
                continue
            if is_dir != stat.S_ISDIR(node.st.st_mode):
                continue
            native.attach_bind(source, node.fd, readonly=not (write and rw))


def open_root(c, runtime, layers, write):
    """The container's root as an Opened. The caller holds c.lock."""
    if c.status == lc.RUNNING:
        p = runtime.process(c.id)
        if p is None:
            raise errors.Conflict(f"container {c.short_id} is not running")
        try:
            fd = os.open(f"/proc/{p.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise errors.Conflict(f"container {c.short_id} is stopping") from e
        # The pid was still the container's when we opened it if its pidfd
        # says it has not exited yet (a live pid is never reused). Once reaped,
        # or with the pidfd closed by the monitor, the exit is about to be
        # recorded: say so rather than guess.
        if not p.alive():
            os.close(fd)
            raise errors.Conflict(f"container {c.short_id} is stopping")
        return Opened(inroot.Root(fd), [fd])
    if c.status not in (lc.CREATED, lc.EXITED):
        raise errors.Conflict(f"container {c.short_id} is {c.status}")
    if c.data["driver"] == "vfs":
        # a detached bind of the copy, so that mounts can be attached to it
        fd = native.tree_fd(c.file("rootfs"), readonly=not write)
    elif write:
        fd = native.overlay_mount_fd(layers, c.file("upper"), c.file("work"))
    else:
        # Reading needs no upper dir: the container's own as the top lower
        # layer, so nothing can be copied up or marked in it.
        fd = native.overlay_mount_fd([c.file("upper")] + list(layers), readonly=True)
    opened = Opened(inroot.Root(fd), [fd])
    try:
        _attach_mounts(c, opened.root, write)
    except BaseException:
        opened.close()
        raise
    return opened


def _not_found(path, ref):
    return errors.NotFound(f"Could not find the file {path} in container {ref}")


def _lookup(opened, path, ref, follow):
    try:
        return opened.root.lookup(path, follow)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise _not_found(path, ref) from e
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise errors.BadParameter(f"{path}: too many levels of symbolic links") from e
        raise


# -- stat and read ----------------------------------------------------------------

def stat_path(opened, path, ref):
    """The stat of `path` (Docker's ContainerPathStat) and its Node (open)."""
    absp = abs_path(path)
    node = _lookup(opened, absp, ref, _follows(absp))
    if _follows(absp) and not stat.S_ISDIR(node.st.st_mode):
        node.close()  # "file/" is ENOTDIR to lstat(2), and so to Docker
        raise _not_found(path, ref)
    link = ""
    if stat.S_ISLNK(node.st.st_mode):
        try:
            link = opened.root.real_path(absp)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            link = os.readlink("", dir_fd=node.fd)  # a loop leads nowhere: its own text
    return {"name": base_name(absp), "size": node.st.st_size, "mode": go_mode(node.st.st_mode),
            "mtime": go_time(node.st.st_mtime_ns), "linkTarget": link}, node


def top_name(path):
    """The name of the archive's top entry: the base of the asked path ("."
    for "dir/.", "/" for the root, whose entries are then "/bin"...: what
    dockerd sends, and what the docker CLI's rebasing expects)."""
    return base_name(abs_path(path))


def producer(opened, node, path):
    """A Stream producer writing the tar of `node` (found at `path`), the very
    object the stat described; it closes `node` and `opened` at its end. A
    reply never sent drops the producer, and their finalizers close them."""
    def produce(send):
        try:
            with ChunkWriter(send) as out:
                tarsafe.write_tar(out, opened.root.tar_entries(node, top_name(path)))
        finally:
            node.close()
            opened.close()
    return produce


# -- write --------------------------------------------------------------------------

def _mount_modes(c):
    """{target: writable} of the container's mounts. A running container's
    tmpfs mounts count too: through its /proc/<pid>/root a copy lands in them
    (a stopped one has none: a copy would land in the rootfs under them)."""
    modes = {m["target"]: m["rw"] for m in c.data.get("mounts") or []}
    if c.status == lc.RUNNING:
        for target, options in (c.host.get("Tmpfs") or {}).items():
            modes.setdefault(target, "ro" not in (options or "").split(","))
        for m in c.host.get("Mounts") or []:
            if m.get("Type") == "tmpfs":
                modes.setdefault(m["Target"], not m.get("ReadOnly"))
    return modes


def _writable(c, real):
    """moby's checkWritablePath: a path in a mount follows the mount's mode,
    any other the rootfs's."""
    best = None
    for target, rw in _mount_modes(c).items():
        t = target.rstrip("/")
        if (real == t or real.startswith(t + "/")) and (best is None or len(t) > len(best[0])):
            best = (t, rw)
    if best is not None:
        if not best[1]:
            raise errors.BadParameter("mounted volume is marked read-only")
        return
    if c.host.get("ReadonlyRootfs"):
        raise errors.BadParameter("container rootfs is marked read-only")


def extract(c, opened, path, ref, body, view, copy_uid_gid, no_overwrite_dir_non_dir):
    """Apply the tar `body` (plain or compressed) under directory `path`."""
    absp = abs_path(path)
    with _lookup(opened, absp, ref, follow=True) as node:
        if not stat.S_ISDIR(node.st.st_mode):
            raise errors.BadParameter("extraction point is not a directory")
        _writable(c, node.path)
        owner = None
        if copy_uid_gid:
            uid, gid, _, _ = users.resolve(c.config.get("User") or "", view)
            owner = (uid, gid)
        try:
            tarsafe.extract(body, node.proc_path(), whiteouts=False,
                            replace_types=not no_overwrite_dir_non_dir, root_attrs=False, owner=owner)
        except tarsafe.BadTar as e:
            raise errors.BadParameter(f"invalid tar: {e}") from e
        except OSError as e:
            if e.errno == errno.EROFS:
                raise errors.BadParameter(f"{path}: read-only file system") from e
            raise
