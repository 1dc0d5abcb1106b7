"""Downloads for import from a URL and for insert: http and https only."""

import urllib.error
import urllib.parse
import urllib.request

from .. import errors

TIMEOUT = 30


def check_url(url):
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise errors.BadParameter(f"unsupported URL {url!r}: only http:// and https:// are allowed")
    return url


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http and https (urllib would follow ftp too)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(url):
    """Open `url` for streaming; returns (response, length or None)."""
    check_url(url)
    req = urllib.request.Request(url, headers={"User-Agent": "pyd"})
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        resp = opener.open(req, timeout=TIMEOUT)
    except urllib.error.HTTPError as e:
        raise errors.PydError(f"downloading {url}: HTTP {e.code} {e.reason}") from e
    except errors.PydError:
        raise
    except (urllib.error.URLError, OSError) as e:
        raise errors.PydError(f"downloading {url}: {getattr(e, 'reason', e)}") from e
    length = resp.headers.get("Content-Length")
    return resp, int(length) if length and length.isdigit() else None
