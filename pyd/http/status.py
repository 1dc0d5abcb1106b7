"""The ONE table from error meanings (pyd.errors) to HTTP status."""

from .. import errors

_STATUS = [
    (errors.NotFound, 404),
    (errors.BadParameter, 400),
    (errors.Conflict, 409),
    (errors.NotModified, 304),
    (errors.Impossible, 406),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.TooLarge, 413),
    (errors.Unavailable, 503),
    (errors.Unsupported, 501),
]


def status_for(exc):
    """Map an exception to its HTTP status. Anything without a meaning is 500."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500
