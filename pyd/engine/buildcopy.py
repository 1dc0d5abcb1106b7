"""ADD and COPY for the builder: where each source lands, and the tar that
puts it there.

The sources are host paths already checked to stay inside their root (the
context, or a copy of a stage's files: buildcontext.context_sources). This
module decides the destinations as moby's classic builder does
(builder/dockerfile/copy.go) and writes them as one tar, every entry owned
by root or by --chown, permission bits and mtimes kept; the builder
extracts it inside the step's container with the hostile-tar-safe
extractor, which never follows a link out of the root.
"""

import email.utils
import os
import posixpath
import stat
import tarfile
import urllib.parse

from .. import errors
from ..fs import tarsafe
from . import buildcontext, fsops

_TAR_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))


def is_url(src):
    return src.startswith("http://") or src.startswith("https://")


def dest_path(dest, workdir):
    """The destination as an absolute container path, relative to WORKDIR
    when it is not absolute; a trailing "/" (it names a directory) is kept."""
    trailing = dest.endswith("/") or dest.endswith("/.") or dest in (".", "")
    joined = posixpath.normpath(posixpath.join("/", workdir or "/", dest))
    if trailing and joined != "/":
        joined += "/"
    return joined


def cache_text(cmd, sources, chown, dest):
    """The step's comment in history and the cache key: moby's
    `COPY file:<sha> in /dest `, with dir: or multi: for a directory or
    several sources, and --chown kept (a different owner is another step)."""
    if len(sources) == 1:
        kind = "dir" if stat.S_ISDIR(os.lstat(sources[0].path).st_mode) else "file"
    else:
        kind = "multi"
    digest = buildcontext.source_hash(sources).partition(":")[2]
    flag = f" --chown={chown}" if chown else ""
    return f"{cmd}{flag} {kind}:{digest} in {dest} "


def url_name(url):
    """The file name a URL is saved as when the destination is a directory."""
    path = urllib.parse.urlsplit(url).path
    return posixpath.basename(path.rstrip("/")) or "index.html"


def download(url, into, max_bytes, open_url):
    """Fetch `url` into the directory `into`; returns the host path. The file
    is 0600 as in Docker, with the Last-Modified time if the server sent one."""
    resp, total = open_url(url)
    if total is not None and total > max_bytes:
        resp.close()
        raise errors.BadParameter(f"{url}: {total} bytes is over the limit of {max_bytes}")
    path = os.path.join(into, url_name(url))
    done = 0
    with resp, open(path, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        while True:
            chunk = resp.read(1 << 20)
            if not chunk:
                break
            done += len(chunk)
            if done > max_bytes:
                raise errors.BadParameter(f"{url}: more than the limit of {max_bytes} bytes")
            out.write(chunk)
        modified = _http_date(resp.headers.get("Last-Modified"))
    if modified is not None:
        os.utime(path, (modified, modified))
    return path


def _http_date(value):
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError):
        return None


def is_archive(path):
    """A local file ADD extracts: a tar, plain or compressed (moby's
    IsArchivePath: it decompresses and asks for a first header)."""
    try:
        with open(path, "rb", buffering=0) as f:
            head = f.read(512)
    except OSError:
        return False
    if any(head.startswith(m) for m, _ in _TAR_MAGIC):
        try:
            with open(path, "rb") as f:
                head = tarsafe.open_decompressed(f).read(512)
        except (OSError, EOFError, ValueError, tarsafe.BadTar) as e:
            del e
            return False
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


class Item:
    """One source's place: the host path, the archive name below the
    extraction directory, and whether it is a tar to extract there."""

    def __init__(self, path, name, extract=False, mode=None):
        self.path, self.name, self.extract, self.mode = path, name, extract, mode


def layout(sources, dest, dest_is_dir, add, url_paths=()):
    """Where each source goes, relative to the extraction directory:
    returns (directory, [Item]). `dest_is_dir`: the destination exists as a
    directory in the image. As moby: a directory source copies its
    contents; a file goes to dest/<name> when dest ends in "/" or is a
    directory, else to dest itself; ADD extracts a local tar into dest;
    several sources need a directory destination that ends in "/"."""
    many = len(sources) > 1
    if many and not dest.endswith("/"):
        raise errors.BadParameter(f"When using {'ADD' if add else 'COPY'} with more than one source file, "
                                  "the destination must be a directory and end with a /")
    items = []
    into_dir = dest.endswith("/") or dest_is_dir
    for src in sources:
        st = os.lstat(src.path)
        if stat.S_ISDIR(st.st_mode):
            items.append(Item(src.path, "."))
        elif add and src.path not in url_paths and stat.S_ISREG(st.st_mode) and is_archive(src.path):
            items.append(Item(src.path, ".", extract=True))
        elif into_dir:
            items.append(Item(src.path, posixpath.basename(src.path) if src.path in url_paths
                              else posixpath.basename(src.rel.rstrip("/")) or posixpath.basename(src.path)))
        else:
            return posixpath.dirname(dest.rstrip("/")) or "/", [Item(src.path, posixpath.basename(dest))]
    return dest.rstrip("/") or "/", items


def _entries(items, prefix, owner):
    """(TarInfo, data) for write_tar: the missing directories `prefix` first,
    then each item's tree, all owned by `owner`."""
    uid, gid = owner
    parts = [p for p in prefix.split("/") if p]
    for i in range(len(parts)):
        ti = tarfile.TarInfo("/".join(parts[:i + 1]))
        ti.type, ti.mode, ti.uid, ti.gid = tarfile.DIRTYPE, 0o755, uid, gid
        yield ti, None
    base = "/".join(parts)
    for item in items:
        if item.extract:
            continue
        st = os.lstat(item.path)
        top = posixpath.normpath(posixpath.join(base, item.name)) if base or item.name != "." else "."
        if stat.S_ISDIR(st.st_mode):
            if top != ".":
                yield _info(top, item.path, st, uid, gid), None
            for rel, full, sub in buildcontext.walk(item.path):
                name = rel if top == "." else f"{top}/{rel}"
                yield _info(name, full, sub, uid, gid), (full if stat.S_ISREG(sub.st_mode) else None)
        else:
            yield _info(top, item.path, st, uid, gid), (item.path if stat.S_ISREG(st.st_mode) else None)


def _info(name, path, st, uid, gid):
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
    ti = tarsafe.tarinfo_from_stat(name, st, linkname=link)
    ti.uid, ti.gid = uid, gid
    return ti


def write_into(extract, items, prefix, owner):
    """Stream the tar of `items` (below the missing directories `prefix`)
    into `extract(fileobj)` through a pipe: nothing is staged on disk."""
    def write(out):
        try:
            tarsafe.write_tar(out, _entries(items, prefix, owner))
        except BrokenPipeError:
            raise
        except Exception as e:  # reading a source failed: say what the copy hit
            raise errors.PydError(f"copying: {e}") from e
    fsops.piped(write, extract, "build-copy")
