"""Paths resolved inside a container's root, never outside it.

A `Root` is a directory fd standing for a container's "/": its
/proc/<pid>/root, or a detached mount tree made for a stopped container
(engine.archive). Its mounts are the kernel's, crossed as the walk opens
names.

Resolution works like openat2(RESOLVE_IN_ROOT), done in Python one
component at a time: every step opens a single name relative to a
directory fd with O_NOFOLLOW, so the kernel never follows a symlink or
a ".." for us. A symlink is read and its target pushed back onto the
path to walk (an absolute one restarts at the root); ".." pops the
stack of directory fds we came through and stops at the root. Nothing
can climb out, whatever the container's links say or do meanwhile.
Python rather than the shim's open_in_root (openat2(RESOLVE_IN_ROOT)):
the callers need the container path the walk reached (Docker's linkTarget,
which mount a write lands in), which the kernel does not give back.

Map:
  Root(fd).lookup(path, follow)          -> Node (fd, stat, container path)
  Root.real_path(path)                   -> the container path links lead to
  Root.tar_entries(node, top)            -> (TarInfo, data) for tarsafe.write_tar
"""

import errno
import os
import posixpath
import stat
import tarfile

from . import tarsafe

_O_NODE = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_HOPS = 40


def split(path):
    return [p for p in path.split("/") if p]


class Node:
    """An object found inside the root: an O_PATH fd of it (a symlink is not
    followed), its lstat, and the container path it was found at."""

    __slots__ = ("fd", "st", "path")

    def __init__(self, fd, st, path):
        self.fd, self.st, self.path = fd, st, path

    def close(self):
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    __del__ = close  # a safety net for a node dropped unclosed (a reply never sent)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def reopen(self, flags):
        """A real fd of the node (O_PATH fds cannot be read): through the
        magic link of the fd we already hold, not through any path."""
        return os.open(f"/proc/self/fd/{self.fd}", flags | os.O_CLOEXEC)

    def proc_path(self):
        """A path naming this node for APIs that take paths (tarsafe.extract)."""
        return f"/proc/self/fd/{self.fd}"


class Root:
    def __init__(self, fd):
        self.fd = fd

    def _walk(self, path, follow, missing_ok=False):
        """(Node, rest): the node `path` leads to. With `missing_ok` a missing
        component (or one under a non-directory) ends the walk: the node is
        the last directory reached and `rest` the components not walked."""
        todo = split(path)
        stack = [(os.dup(self.fd), ())]        # (O_PATH fd, container path) per directory
        hops = 0
        try:
            while todo:
                name = todo.pop(0)
                if name == ".":
                    continue
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop()[0])
                    continue
                dir_fd, here = stack[-1]
                parts = here + (name,)
                try:
                    fd = os.open(name, _O_NODE, dir_fd=dir_fd)
                except FileNotFoundError:
                    if missing_ok:
                        return self._node(stack), [name] + todo
                    raise
                st = os.fstat(fd)
                last = not [p for p in todo if p != "."]
                if stat.S_ISLNK(st.st_mode) and (follow or not last):
                    try:
                        target = os.readlink("", dir_fd=fd)   # the link we hold, not the name again
                    finally:
                        os.close(fd)
                    hops += 1
                    if hops > MAX_HOPS:
                        raise OSError(errno.ELOOP, f"too many levels of symbolic links in {path}")
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop()[0])
                    todo = split(target) + todo
                    continue
                if not last and not stat.S_ISDIR(st.st_mode):
                    os.close(fd)
                    if missing_ok:
                        return self._node(stack), [name] + todo
                    raise NotADirectoryError(errno.ENOTDIR, f"{'/' + '/'.join(parts)} is not a directory")
                stack.append((fd, parts))
            return self._node(stack), []
        finally:
            for fd, _ in stack:
                os.close(fd)

    @staticmethod
    def _node(stack):
        fd, parts = stack.pop()
        return Node(fd, os.fstat(fd), "/" + "/".join(parts))

    def lookup(self, path, follow=False):
        """The Node at container path `path`; a final symlink is followed only
        with `follow`. Raises FileNotFoundError / NotADirectoryError."""
        return self._walk(path, follow)[0]

    def real_path(self, path):
        """Where `path` leads with every link followed inside the root, as far
        as it exists; missing components are appended as they are (Docker's
        FollowSymlinkInScope, used for a symlink's linkTarget)."""
        node, rest = self._walk(path, follow=True, missing_ok=True)
        with node:
            return posixpath.normpath("/" + "/".join(split(node.path) + rest))

    # -- archiving -------------------------------------------------------

    def tar_entries(self, node, top):
        """(TarInfo, data) pairs for tarsafe.write_tar: `node` named `top` in
        the archive, and below it, if it is a directory, everything it holds.
        Symlinks are archived, never followed; descending uses fds only."""
        if not stat.S_ISDIR(node.st.st_mode):
            yield from self._one(top, node.st, lambda: node.reopen(os.O_RDONLY),
                                 lambda: os.readlink("", dir_fd=node.fd))  # readlinkat(fd, "")
            return
        fd = node.reopen(os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield tarsafe.tarinfo_from_stat(top, node.st), None
        except BaseException:   # closed before _dir took the fd over
            os.close(fd)
            raise
        yield from self._dir(fd, top, {})

    def _one(self, name, st, open_data, read_link):
        if stat.S_ISSOCK(st.st_mode):
            return
        if stat.S_ISLNK(st.st_mode):
            yield tarsafe.tarinfo_from_stat(name, st, linkname=read_link()), None
        elif stat.S_ISREG(st.st_mode):
            fd = open_data()
            with open(fd, "rb", buffering=0) as f:
                yield tarsafe.tarinfo_from_stat(name, st), f
        else:
            yield tarsafe.tarinfo_from_stat(name, st), None

    def _dir(self, fd, arc, links):
        """Depth first, sorted; `fd` (an O_RDONLY dir fd) is closed here. An
        explicit stack bounds the recursion by fds, not Python frames."""
        stack = [(fd, arc, iter(_entries(fd)))]
        try:
            while stack:
                dfd, darc, it = stack[-1]
                item = next(it, None)
                if item is None:
                    os.close(stack.pop()[0])
                    continue
                name, st = item
                carc = f"{darc.rstrip('/')}/{name}"      # below "/": "/bin"
                if stat.S_ISDIR(st.st_mode):
                    try:
                        sub = os.open(name, _O_DIR, dir_fd=dfd)
                    except OSError as e:
                        if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                            raise
                        continue          # changed while we walked a live container
                    yield tarsafe.tarinfo_from_stat(carc, st), None
                    stack.append((sub, carc, iter(_entries(sub))))
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in links:
                        ti = tarsafe.tarinfo_from_stat(carc, st)
                        ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, links[key], 0
                        yield ti, None
                        continue
                    links[key] = carc
                try:
                    linkname = os.readlink(name, dir_fd=dfd) if stat.S_ISLNK(st.st_mode) else ""
                except FileNotFoundError:
                    continue
                if stat.S_ISSOCK(st.st_mode):
                    continue
                ti = tarsafe.tarinfo_from_stat(carc, st, linkname=linkname)
                # write_tar opens the name with O_NOFOLLOW inside the dir we hold
                yield ti, (f"/proc/self/fd/{dfd}/{name}" if stat.S_ISREG(st.st_mode) else None)
        finally:
            for item in stack:
                os.close(item[0])


def _entries(dir_fd):
    """Sorted (name, lstat) of a directory fd; what vanishes meanwhile is skipped."""
    out = []
    with os.scandir(dir_fd) as it:
        for e in it:
            try:
                out.append((e.name, e.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
    out.sort()
    return out
