"""Errors with meanings. No HTTP here: server.status_for() maps them once."""


class PydError(Exception):
    """A failure the client caused or can act on; its text goes to the client."""


class NotFound(PydError):
    """No such container, image or route."""


class BadParameter(PydError):
    """A malformed or out-of-range argument or body."""


class Conflict(PydError):
    """The request contradicts the current state (tag exists, image in use...)."""


class NotModified(PydError):
    """Nothing to do: the object is already in the asked state."""


class Forbidden(PydError):
    """The daemon's configuration does not allow it (a privileged container)."""


class Impossible(PydError):
    """The operation cannot be done now, e.g. attaching to a stopped container."""


class Unauthorized(PydError):
    """Wrong login or password."""


class TooLarge(PydError):
    """A request body over the configured limit."""


class Unavailable(PydError):
    """The daemon is shutting down or out of connection slots."""


class Unsupported(PydError):
    """What pyd was configured not to do for this object (logs of a
    container whose log driver keeps nothing)."""
