"""The files a container sees as /etc/hostname, /etc/hosts and
/etc/resolv.conf, written into its directory at create and bind-mounted."""

import os

NAMES = (("hostname", "/etc/hostname"), ("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"))


def write(cdir, hostname, dns, extra_hosts=None, search=None, options=None, host_network=False,
          address=None, nameserver=None):
    """`extra_hosts`: ["name:ip"] (HostConfig.ExtraHosts), appended to /etc/hosts.
    On the host's network (NetworkMode host) the container gets the host's
    /etc/hosts and resolv.conf, loopback servers included, as Docker does.
    At a start on a bridge (engine.networking) `address` names the container
    in /etc/hosts, and on a user network `nameserver` is the network's DNS
    server (the gateway), unless Dns was given. The files are rewritten in
    place: a running container's bind mounts hold their inodes."""
    _write(os.path.join(cdir, "hostname"), hostname + "\n")
    extra = "".join(f"{ip}\t{name}\n" for name, _, ip in (e.partition(":") for e in extra_hosts or []))
    base = _read("/etc/hosts") if host_network else None
    if base is None:
        base = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                + (f"{address}\t{hostname}\n" if address else f"127.0.1.1\t{hostname}\n"))
    _write(os.path.join(cdir, "hosts"), base + ("" if base.endswith("\n") or not base else "\n") + extra)
    if nameserver and not dns:
        # Docker's embedded DNS: its server only, with the host's search domains.
        text = "".join(ln + "\n" for ln in resolv_conf(None).splitlines() if ln.startswith("search ")) + \
            f"nameserver {nameserver}\noptions ndots:0\n"
    else:
        text = resolv_conf(dns, keep_loopback=host_network)
    if search:
        text = "".join(ln + "\n" for ln in text.splitlines() if not ln.startswith("search ")) + \
            f"search {' '.join(search)}\n"
    if options:
        text += f"options {' '.join(options)}\n"
    _write(os.path.join(cdir, "resolv.conf"), text)


def mounts(cdir):
    """[(host, target, readonly)] for the launch plan."""
    return [(os.path.join(cdir, name), target, False) for name, target in NAMES]


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def resolv_conf(dns, host_file="/etc/resolv.conf", keep_loopback=False):
    """The container's resolv.conf: its Dns list, or the host's without loopback
    servers (unreachable from another network namespace)."""
    if dns:
        return "".join(f"nameserver {d}\n" for d in dns)
    try:
        with open(host_file) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    kept = [ln for ln in lines if keep_loopback or not (ln.split()[:1] == ["nameserver"] and len(ln.split()) > 1
                                                        and _is_loopback(ln.split()[1]))]
    if not any(ln.split()[:1] == ["nameserver"] for ln in kept):
        kept += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]  # Docker's fallback
    return "\n".join(kept) + "\n"


def _is_loopback(addr):
    return addr.startswith("127.") or addr == "::1"


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
