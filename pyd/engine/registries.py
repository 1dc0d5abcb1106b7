"""Which registry a reference goes to, and with whose credentials.

- **Endpoints.** A Docker Hub image is asked of each `--registry-mirror`
  first, then of the Hub itself, as dockerd does; any other reference goes
  to its own host. `--insecure-registry` entries (and, always, localhost
  and 127.0.0.0/8) may speak plain HTTP.
- **Credentials.** The request's own (X-Registry-Auth, or v1.3's authConfig
  body) win; else those of an earlier `POST /auth` to that registry, kept
  in this process's memory only: nothing here writes a password to disk or
  to the log.
- **Login** (POST /auth) checks the credentials against the registry's
  `/v2/` (through its token server when it has one) before keeping them.
- **Search**: the registry's `/v1/search` (the Hub has it), else its
  `/v2/_catalog` filtered by the term, which makes search work on private
  registries too.
"""

import logging
import threading
import urllib.parse
from typing import NamedTuple

from .. import errors
from ..registry import client as reg
from ..registry import credentials as creds
from ..registry.reference import HUB, HUB_INDEX, api_host, is_host

log = logging.getLogger(__name__)

SEARCH_DEFAULT, SEARCH_MAX = 25, 100
CATALOG_MAX = 10000     # repositories read from one registry's catalog


class SearchHit(NamedTuple):
    name: str
    description: str
    stars: int
    official: bool
    automated: bool


def mirror_endpoint(url):
    """'http://127.0.0.1:5001/' -> ('http', '127.0.0.1:5001'); a bare host means https."""
    text = url.strip()
    parts = urllib.parse.urlsplit(text if "://" in text else "https://" + text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
        raise ValueError(f"invalid registry mirror {url!r}: give scheme://host[:port]")
    return parts.scheme, parts.netloc


class Registries:
    def __init__(self, config):
        self.insecure = tuple(config.insecure_registries)
        self.mirrors = tuple(mirror_endpoint(m) for m in config.registry_mirrors)
        self._logins = {}           # registry ("docker.io", "host:port") -> (user, password)
        self._lock = threading.Lock()

    def credentials(self, registry, auth=None):
        given = creds.of(auth)
        if given:
            return given
        with self._lock:
            return self._logins.get(registry)

    def client(self, registry, auth=None):
        return reg.Registry(api_host(registry), self.insecure, self.credentials(registry, auth))

    def for_pull(self, ref, auth=None):
        """The registries to try for `ref`, in order: mirrors (Hub images only), then its own."""
        out = []
        if ref.registry == HUB:
            out = [reg.Registry(host, self.insecure, None, scheme=scheme) for scheme, host in self.mirrors]
        return out + [self.client(ref.registry, auth)]

    def login(self, auth):
        """POST /auth: the credentials are checked, then kept; returns the status text."""
        if not isinstance(auth, dict):
            raise errors.BadParameter("the body must be a JSON object of username, password and serveraddress")
        registry = creds.server_host(auth.get("serveraddress"))
        given = creds.of(auth)
        if not given:
            raise errors.BadParameter("a username and a password are needed to log in")
        client = reg.Registry(api_host(registry), self.insecure, given)
        try:
            client.check_login()
        except reg.AuthError as e:
            raise errors.Unauthorized(f"login to {registry} failed: {_plain(e, given)}") from None
        with self._lock:
            self._logins[registry] = given
        log.info("login to %s as %s succeeded", registry, given[0])
        return "Login Succeeded"

    def search(self, term, limit=None, auth=None):
        """[SearchHit] for `term` ("name" on the Hub, or "host:port/name")."""
        limit = SEARCH_DEFAULT if limit is None else limit
        if not 1 <= limit <= SEARCH_MAX:
            raise errors.BadParameter(f"limit {limit} is outside the range of [1, {SEARCH_MAX}]")
        term = (term or "").strip()
        first, sep, rest = term.partition("/")
        if sep and is_host(first):
            registry, text = creds.server_host(first), rest
        else:
            registry, text = HUB, term
        if not text:
            raise errors.BadParameter("a search term is needed")
        client = reg.Registry(HUB_INDEX, self.insecure, self.credentials(registry, auth)) \
            if registry == HUB else self.client(registry, auth)
        hits = self._v1_search(client, text, limit)
        if hits is None:
            hits = self._catalog_search(client, registry, text, limit)
        return hits[:limit]

    def _v1_search(self, client, text, limit):
        query = urllib.parse.urlencode({"q": text, "n": limit})
        try:
            with client.request("GET", f"/v1/search?{query}") as resp:
                body = resp.json()
        except reg.AuthError:
            raise
        except reg.RegistryError as e:
            if e.status in (404, 405) or e.status >= 500:
                return None     # no v1 search there: the catalog, then
            raise
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            return None
        return [SearchHit(str(r.get("name") or ""), str(r.get("description") or ""),
                          int(r.get("star_count") or 0), bool(r.get("is_official")),
                          bool(r.get("is_automated")))
                for r in results if isinstance(r, dict) and r.get("name")]

    def _catalog_search(self, client, registry, text, limit):
        names = client.catalog(CATALOG_MAX)
        needle = text.lower()
        found = sorted(n for n in names if isinstance(n, str) and needle in n.lower())
        return [SearchHit(f"{registry}/{n}", "", 0, False, False) for n in found[:limit]]


def _plain(error, given):
    """The registry's refusal, with the password taken out should it echo it."""
    text = str(error)
    password = given[1] if given else ""
    return text.replace(password, "***") if password else text
