"""What the engine hands the API layer to project into wire shapes: copies
of records plus the facts a projection needs, never the live records."""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple


@dataclass
class ContainerView:
    data: dict                  # a deep copy of the record (docs/storage.md)
    path: str                   # the container's directory
    image_ref: str = ""         # first repo:tag of its image, or "" when untagged
    size_rw: Optional[int] = None
    size_rootfs: Optional[int] = None
    restarting: bool = False    # exited, and its restart policy will start it again
    exec_ids: List[str] = field(default_factory=list)

    @property
    def id(self):
        return self.data["id"]


def container_view(c, **extra):
    with c.lock:
        data = tree_copy(c.data)
    return ContainerView(data, c.path, **extra)


def tree_copy(obj):
    """A deep copy of JSON-shaped data (dicts, lists, scalars): what a record
    is. Several times faster than copy.deepcopy, which container lists pay once
    per container."""
    if isinstance(obj, dict):
        return {k: tree_copy(v) if isinstance(v, (dict, list)) else v for k, v in obj.items()}
    if isinstance(obj, list):
        return [tree_copy(v) if isinstance(v, (dict, list)) else v for v in obj]
    return obj


@dataclass
class ImageView:
    image: object               # the store's Image: immutable, so shared as it is
    size: int                   # bytes of the layers it adds to its parent's
    virtual_size: int           # bytes of all its layers
    tags: List[Tuple[str, str]] = field(default_factory=list)
    layer_dirs: List[str] = field(default_factory=list)  # top first
    digests: List[str] = field(default_factory=list)     # "repo@sha256:..." (RepoDigests)

    @property
    def id(self):
        return self.image.id

    @property
    def config(self):
        """The image config (Docker's format)."""
        return self.image.config

    @property
    def parent(self):
        return self.image.parent

    @property
    def created(self):
        return self.image.created


@dataclass
class ImageRow:
    """One row of an image list: a repo:tag, or an untagged image (None, None)."""
    repo: Optional[str]
    tag: Optional[str]
    image: ImageView
