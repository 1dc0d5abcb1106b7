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


def time_to_iso(t):
    """Epoch seconds -> RFC 3339 with nanosecond digits, as Go prints them."""
    dt = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(round(t * 1e9)) % 1_000_000_000:09d}Z"


def ns_to_iso(ns):
    dt = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"


def parse_time(text):
    """A client's time (Docker's --since/--until): epoch seconds with optional
    fraction ("1700000000.5"), or RFC 3339. Returns epoch seconds, or raises ValueError."""
    text = (text or "").strip()
    try:
        return float(text)
    except ValueError:
        pass
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.timestamp()
