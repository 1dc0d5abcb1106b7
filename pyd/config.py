"""Every path and default, derived in one place from the command line."""

import os
from dataclasses import dataclass, field
from typing import Optional

DEFAULT_ROOT = "/var/lib/pyd"
DEFAULT_PIDFILE = "/var/run/pyd.pid"
DEFAULT_HOSTS = ("unix:///var/run/pyd.sock", "tcp://127.0.0.1:4243")
DEFAULT_TCP_PORT = 4243


@dataclass
class Config:
    root: str = DEFAULT_ROOT
    pidfile: str = DEFAULT_PIDFILE
    hosts: tuple = DEFAULT_HOSTS
    cors: bool = False
    debug: bool = False
    storage_driver: str = "auto"  # auto, overlay2 or vfs
    allow_privileged: bool = False  # HostConfig.Privileged is refused unless the operator allows it
    # Names a TCP client may put in Host besides this machine's addresses,
    # localhost and its hostname (http.origin: the DNS-rebinding defence).
    allowed_hosts: tuple = ()
    # Connection handling: each connection gets a thread; past the bound a
    # client gets 503 at once instead of waiting behind idle keep-alives.
    max_connections: int = 1024
    idle_timeout: float = 120.0
    head_timeout: float = 10.0     # the whole request line and headers, from their first byte
    # Bodies parsed in memory (JSON configs) are bounded; streamed bodies
    # (tars for import and build) are not read into memory.
    max_json_body: int = 1 << 20
    # A container's kept output (engine.logconfig): files of log_max_size
    # bytes, log_max_file of them, unless its LogConfig says otherwise;
    # log_config is the daemon's --log-driver/--log-opt default, or None.
    log_max_size: int = 8 << 20
    log_max_file: int = 2
    log_config: Optional[dict] = None
    shutdown_grace: float = 10.0
    # Containers whose PidsLimit is unset get this pids.max (0: none), so
    # that a fork bomb inside one leaves the host and the daemon responsive.
    default_pids_limit: int = 4096
    # Build (engine.builder): the decompressed context, and each ADD of a URL
    # (or a `remote` context), are bounded so that a client cannot fill the disk.
    max_build_context: int = 4 << 30
    max_build_download: int = 1 << 30
    # One layer's decompressed tar (import, load, pull), and a docker load
    # archive: a tar that would write more is refused (--max-layer-size).
    max_layer_size: int = 64 << 30
    # Networking (engine.networking): the default bridge's name (None: pyd0;
    # "none": no networking, as dockerd's -b none), its address (--bip), the
    # host address published ports bind by default (--ip), and dockerd's
    # --iptables, --ip-forward and --ip-masq.
    bridge: object = None
    bip: object = None
    default_ip: str = "127.0.0.1"
    iptables: bool = True
    ip_forward: bool = True
    ip_masq: bool = True
    # Published ports: False (the default) lets the kernel forward them where
    # iptables is there (DNAT, loopback included), with the userland proxy
    # still listening for what the kernel does not take (a container calling
    # a published port, a host without iptables); True: the proxy alone.
    userland_proxy: bool = False
    # Where the DNS server of user networks forwards names it does not know:
    # None = the host's resolv.conf nameservers; else [(ip, port)] ([] = nowhere).
    dns_upstream: object = None
    # Registries (engine.registries): hosts (host[:port] or CIDR) that may speak
    # plain HTTP besides localhost and 127.0.0.0/8, and Docker Hub mirrors
    # (scheme://host[:port]) tried before the Hub.
    insecure_registries: tuple = ()
    # TLS on the TCP listeners (http.tls): --tls, --tlsverify and the PEM files.
    tls: bool = False
    tls_verify: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    registry_mirrors: tuple = ()
    extra: dict = field(default_factory=dict)

    # The data root's layout (docs/storage.md). Paths of the 0.1.0 layout
    # are known only to store.format, which migrates them.
    @property
    def lock_path(self):
        return os.path.join(self.root, "pyd.lock")

    @property
    def format_path(self):
        return os.path.join(self.root, "format.json")

    @property
    def images_dir(self):
        return os.path.join(self.root, "images", "sha256")

    @property
    def layers_dir(self):
        return os.path.join(self.root, "layers", "sha256")

    @property
    def refs_path(self):
        return os.path.join(self.root, "refs.json")

    @property
    def containers_dir(self):
        return os.path.join(self.root, "containers")

    @property
    def volumes_dir(self):
        return os.path.join(self.root, "volumes")

    @property
    def tmp_dir(self):
        return os.path.join(self.root, "tmp")


def parse_host(spec, default_port=DEFAULT_TCP_PORT):
    """Turn a -H value into ("unix", path) or ("tcp", (host, port)).

    Accepts what `docker -d -H` accepted: unix:///path, tcp://host:port,
    host:port, :port and [v6]:port.
    """
    if spec.startswith("unix://"):
        path = spec[len("unix://"):]
        if not path.startswith("/"):
            raise ValueError(f"invalid unix socket path in -H {spec!r}")
        return ("unix", path)
    if spec.startswith("fd://"):
        raise ValueError("fd:// listeners are not supported")
    rest = spec[len("tcp://"):] if spec.startswith("tcp://") else spec
    if "://" in rest:
        raise ValueError(f"invalid -H {spec!r}: unknown scheme")
    rest = rest.rstrip("/")
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, sep, port = rest.rpartition(":")
        if not sep:
            host, port = rest, ""
    host = host or "127.0.0.1"
    try:
        port = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"invalid port in -H {spec!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port in -H {spec!r}")
    return ("tcp", (host, port))


def is_loopback(host):
    return host in ("localhost", "::1") or host.startswith("127.")
