"""What the engine hands the API layer to project into wire shapes: copies
of records plus the facts a projection needs, never the live records."""

import copy
from dataclasses import dataclass, field
from typing import List, Optional, Tuple


@dataclass
class ContainerView:
    data: dict                  # a deep copy of the record (docs/storage.md)
    path: str                   # the container's directory
    image_ref: str = ""         # first repo:tag of its image, or "" when untagged
    size_rw: Optional[int] = None
    size_rootfs: Optional[int] = None

    @property
    def id(self):
        return self.data["id"]


def container_view(c, **extra):
    with c.lock:
        data = copy.deepcopy(c.data)
    return ContainerView(data, c.path, **extra)


@dataclass
class ImageView:
    id: str
    config: dict                # the image config (Docker's format)
    size: int                   # bytes of the layers it adds to its parent's
    virtual_size: int           # bytes of all its layers
    tags: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def parent(self):
        p = self.config.get("parent") or ""
        return p[7:] if p.startswith("sha256:") else p

    @property
    def created(self):
        return self.config.get("created") or ""


@dataclass
class ImageRow:
    """One row of an image list: a repo:tag, or an untagged image (None, None)."""
    repo: Optional[str]
    tag: Optional[str]
    image: ImageView
