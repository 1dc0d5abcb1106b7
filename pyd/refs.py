"""Image names: 'host:5000/user/repo:tag', validated by Docker's rules."""

import re

from . import errors

ID_RE = re.compile(r"^[a-f0-9]{64}\Z")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(r"^" + _COMPONENT + r"(?:/" + _COMPONENT + r")*\Z")
_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
DEFAULT_TAG = "latest"


_HUB_PREFIXES = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")


def familiar(repo):
    """Docker Hub names as Docker shows them: 'docker.io/library/busybox' is
    'busybox' (modern clients send the long form)."""
    for p in _HUB_PREFIXES:
        if repo.startswith(p) and len(repo) > len(p):
            return repo[len(p):]
    return repo


def split_name(name):
    """'host:5000/user/repo:tag' -> ('host:5000/user/repo', 'tag'); tag None if absent."""
    repo, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        return familiar(repo), tag
    return familiar(name), None


def _valid_repo(repo):
    first, sep, rest = repo.partition("/")
    # The first component is a registry host only if it looks like one (Docker's rule).
    if sep and ("." in first or ":" in first or first == "localhost"):
        return bool(_HOST_RE.match(first)) and bool(_PATH_RE.match(rest))
    return bool(_PATH_RE.match(repo))


def validate_repo(repo):
    if not repo or len(repo) > 255 or not _valid_repo(repo):
        raise errors.BadParameter(
            f"invalid repository name {repo!r}: use lowercase letters, digits and . _ -, "
            "optionally prefixed by a registry host[:port]/")
    if ID_RE.match(repo):
        raise errors.BadParameter(f"invalid repository name {repo!r}: it cannot be a 64-character hex id")


def validate_tag(tag):
    if not _TAG_RE.match(tag):
        raise errors.BadParameter(f"invalid tag {tag!r}: use up to 128 of A-Z a-z 0-9 _ . -")


def parse_repo_tag(repo, tag=None):
    """Validated (repo, tag) from a repo that may carry ':tag'; tag None if none given."""
    if tag is None:
        repo, tag = split_name(repo)
    repo = familiar(repo)
    validate_repo(repo)
    if tag:
        validate_tag(tag)
    return repo, tag
