"""Image references as registries see them: `[host[:port]/]path[:tag][@sha256:digest]`.

Docker's rules (distribution/reference): the first component is a registry
host only if it has a "." or a ":" or is "localhost"; otherwise the image is
on Docker Hub, whose API host is registry-1.docker.io and whose one-word
names live under library/. Locally, names stay in their familiar form
(pyd.refs.familiar): "busybox", not "docker.io/library/busybox".
"""

import ipaddress
import re
from typing import NamedTuple, Optional

from .. import errors
from ..refs import DEFAULT_TAG, familiar, validate_repo, validate_tag

HUB = "docker.io"
HUB_API = "registry-1.docker.io"
HUB_INDEX = "index.docker.io"       # the Hub's v1 search
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}\Z")


class Reference(NamedTuple):
    registry: str           # "docker.io", "127.0.0.1:5000"
    path: str               # "library/busybox", "user/app"
    tag: Optional[str]      # None when pulled by digest only
    digest: Optional[str]   # "sha256:..." or None

    @property
    def repo(self):
        """The local repository name (familiar)."""
        return familiar(f"{HUB}/{self.path}" if self.registry == HUB else f"{self.registry}/{self.path}")

    @property
    def ref(self):
        """What the manifest is fetched by: the digest if given, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self):
        out = self.repo
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def is_host(component):
    return "." in component or ":" in component or component == "localhost"


def parse(name, tag=None, registry=None):
    """A Reference from `name` (which may carry :tag and @digest), a separate
    `tag` (the query's tag=, which may also be a digest) and v1.3's
    `registry=` parameter, which names the host when the name has none."""
    name = (name or "").strip()
    if not name:
        raise errors.BadParameter("an image name is needed")
    digest = None
    if "@" in name:
        name, _, digest = name.partition("@")
    if tag and tag.startswith("sha256:"):
        digest, tag = tag, None
    if digest is not None and not _DIGEST_RE.match(digest):
        raise errors.BadParameter(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, own = name.rpartition(":")
        tag = tag or own
    first, sep, rest = name.partition("/")
    if sep and is_host(first):
        host, path = first, rest
    elif registry:
        host, path = registry.strip().rstrip("/").split("://")[-1], name
    else:
        host, path = HUB, name
    if host in ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"):
        host = HUB
    if host == HUB and "/" not in path:
        path = "library/" + path
    validate_repo(path)
    if tag is not None:
        validate_tag(tag)
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(host, path, tag, digest)


def api_host(registry):
    """The host the registry's API answers on."""
    return HUB_API if registry == HUB else registry


def is_insecure(host, insecure=()):
    """Plain HTTP allowed: `--insecure-registry` entries (host[:port] or a
    CIDR) and, as in Docker, localhost and 127.0.0.0/8 always."""
    bare = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
    if bare == "localhost" or host in insecure or bare in insecure:
        return True
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    for entry in insecure:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
