"""Timestamps as the API spells them: RFC 3339 in UTC."""

import datetime

ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time, what Docker shows for "never"


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def iso_to_time(text):
    """Seconds since the epoch; 0 for anything unparsable."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return 0.0
