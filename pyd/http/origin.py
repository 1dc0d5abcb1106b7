"""Browser and DNS-rebinding defences.

pyd's API is root on its host. A web page the user visits can send a
"simple" cross-site request (a text/plain POST, an <img> GET) to
127.0.0.1:4243; it cannot read the answer, but the side effect happens.
And a page on a name its owner re-points at 127.0.0.1 (DNS rebinding) can
even read answers, since the browser then thinks it is same-origin. So:

- **Origin and Sec-Fetch-Site.** Only browsers send them. Without
  `--api-enable-cors`, a request carrying an `Origin`, or a `Sec-Fetch-Site`
  other than `none` (the user typed the URL) or `same-origin`, is refused.
  With it, every origin is allowed, as dockerd's `--api-cors-header *`.
- **Host, on TCP listeners.** A request whose `Host` names neither an
  address of this machine, nor `localhost` (or a `*.localhost` name, which
  browsers keep on loopback), nor this machine's hostname, nor a name given
  with `--allow-host`, is refused: that is what a rebinding page sends. A
  request without Host (HTTP/1.0) is let through: browsers always send one.

Refusals are 403 (errors.Forbidden) with a message saying what to do.
"""

import ipaddress
import socket
import threading

from .. import errors

_SAFE_FETCH_SITES = ("none", "same-origin")


class Guard:
    def __init__(self, cors=False, names=()):
        self.cors = cors
        self.names = {n.lower().rstrip(".") for n in names if n}
        self._local = {}            # ip text -> bool (an address of this machine)
        self._lock = threading.Lock()
        self._hostname = None

    def check(self, headers, tcp):
        """Raise Forbidden for a request a browser could have been made to send."""
        if not self.cors:
            origin = headers.get("Origin")
            if origin is not None:
                raise errors.Forbidden(f"cross-origin request refused (Origin: {origin[:100]}): pyd does not "
                                       "answer browsers unless started with --api-enable-cors")
            site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
            if site and site not in _SAFE_FETCH_SITES:
                raise errors.Forbidden(f"cross-site request refused (Sec-Fetch-Site: {site[:40]}): pyd does not "
                                       "answer browsers unless started with --api-enable-cors")
        if tcp:
            host = headers.get("Host")
            if host is not None and not self.host_allowed(host):
                raise errors.Forbidden(f"Host {host[:100]!r} is not a name of this daemon (a DNS rebinding "
                                       "page?): use an address of this machine, or start pyd with "
                                       "--allow-host NAME")

    def host_allowed(self, value):
        host = _strip_port(value.strip()).lower().rstrip(".")
        if not host:
            return False
        if host == "localhost" or host.endswith(".localhost") or host in self.names:
            return True
        if host == self.hostname() or host.split(".", 1)[0] == self.hostname():
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return ip.is_loopback or self._is_local(str(ip), ip.version)

    def hostname(self):
        if self._hostname is None:
            self._hostname = socket.gethostname().lower()
        return self._hostname

    def _is_local(self, ip, version):
        """An address of this machine: one we can bind (no name lookups, no
        netlink dump per request; answers are cached)."""
        with self._lock:
            if ip in self._local:
                return self._local[ip]
        s = socket.socket(socket.AF_INET6 if version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((ip, 0))
            local = True
        except OSError:
            local = False
        finally:
            s.close()
        with self._lock:
            if len(self._local) > 1024:     # a client naming many addresses cannot grow this without bound
                self._local.clear()
            self._local[ip] = local
        return local


def _strip_port(host):
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host
