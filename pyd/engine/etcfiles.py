"""The files a container sees as /etc/hostname, /etc/hosts and
/etc/resolv.conf, written into its directory at create and bind-mounted."""

import os

NAMES = (("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"))


def write(cdir, hostname, dns, extra_hosts=None, search=None, options=None):
    """`extra_hosts`: ["name:ip"] (HostConfig.ExtraHosts), appended to /etc/hosts."""
    _write(os.path.join(cdir, "hostname"), hostname + "\n")
    extra = "".join(f"{ip}\t{name}\n" for name, _, ip in (e.partition(":") for e in extra_hosts or []))
    _write(os.path.join(cdir, "hosts"),
           "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
           f"127.0.1.1\t{hostname}\n" + extra)
    text = resolv_conf(dns)
    if search:
        text = "".join(ln + "\n" for ln in text.splitlines() if not ln.startswith("search ")) + \
            f"search {' '.join(search)}\n"
    if options:
        text += f"options {' '.join(options)}\n"
    _write(os.path.join(cdir, "resolv.conf"), text)


def mounts(cdir):
    """[(host, target, readonly)] for the launch plan."""
    return [(os.path.join(cdir, name), target, False) for name, target in NAMES]


def resolv_conf(dns, host_file="/etc/resolv.conf"):
    """The container's resolv.conf: its Dns list, or the host's without loopback servers."""
    if dns:
        return "".join(f"nameserver {d}\n" for d in dns)
    try:
        with open(host_file) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    kept = [ln for ln in lines if not (ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1
                                       and _is_loopback(ln.split()[1]))]
    if not any(ln.split()[:1] == ["nameserver"] for ln in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]  # Docker's fallback
    return "\n".join(kept) + "\n"


def _is_loopback(addr):
    return addr.startswith("127.") or addr == "::1"


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
