"""Registry credentials as clients send them: the X-Registry-Auth header
(base64url JSON), v1.3's authConfig body, and POST /auth's body, all of
the shape {"username", "password", "auth", "email", "serveraddress",
"identitytoken", "registrytoken"}. They are kept in memory only, and never
logged."""

import base64
import binascii
import json
import urllib.parse

from .. import errors
from .reference import HUB

_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")


def decode_header(value):
    """X-Registry-Auth -> a dict ({} when absent or empty, as clients send "e30=" for {})."""
    if not value:
        return {}
    pad = "=" * (-len(value.rstrip("=")) % 4)
    try:
        # URL-safe, as the docker CLI and docker-py send it; the standard alphabet is taken too.
        data = base64.b64decode(value.rstrip("=").replace("-", "+").replace("_", "/") + pad, validate=True)
        out = json.loads(data) if data.strip() else {}
    except (binascii.Error, ValueError) as e:
        raise errors.BadParameter(f"invalid X-Registry-Auth header: {e}") from None
    if not isinstance(out, dict):
        raise errors.BadParameter("invalid X-Registry-Auth header: not a JSON object")
    return out


def server_host(address):
    """'https://index.docker.io/v1/' -> 'docker.io'; 'http://127.0.0.1:5000/v2/' -> '127.0.0.1:5000'."""
    address = (address or "").strip()
    if not address:
        return HUB
    if "://" in address:
        address = urllib.parse.urlsplit(address).netloc
    host = address.split("/", 1)[0]
    return HUB if host in _HUB_NAMES else host


def of(config):
    """(user, password) or None from an authConfig dict; a registrytoken is
    not supported (a bearer for one registry given by the client)."""
    if not config:
        return None
    user, password = config.get("username") or "", config.get("password") or ""
    if not user and config.get("auth"):
        try:
            user, _, password = base64.b64decode(config["auth"]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise errors.BadParameter("invalid auth in the registry credentials") from None
    if config.get("identitytoken") and not password:
        # An OAuth refresh token from a login: sent as the Basic password (as dockerd does for
        # registries that take it; a token server that wants a refresh grant is not spoken to).
        password = config["identitytoken"]
        user = user or "<token>"
    return (user, password) if user else None

