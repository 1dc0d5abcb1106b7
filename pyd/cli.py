"""Command line: flags, logging, signals, and the wiring Config -> Engine, Api -> Server.

    pyd [-H unix:///var/run/pyd.sock] [-H tcp://127.0.0.1:4243] [-g DIR]
        [-p PIDFILE] [--api-enable-cors] [-b BRIDGE|none] [--bip CIDR] [--ip IP] [-D]
    pyd --version
"""

import argparse
import errno
import fcntl
import logging
import os
import select
import signal
import sys
import time

from . import __version__
from .config import DEFAULT_HOSTS, DEFAULT_TCP_PORT, Config, is_loopback, parse_host
from .http.tls import DEFAULT_TLS_PORT, default_cert_dir

log = logging.getLogger("pyd")

DEFAULT_TLS_HOSTS = (DEFAULT_HOSTS[0], f"tcp://127.0.0.1:{DEFAULT_TLS_PORT}")
PLAIN_TCP_PAUSE = 15     # seconds, as dockerd


def build_parser():
    p = argparse.ArgumentParser(prog="pyd", description="A small Docker-compatible container daemon (Remote API v1.3).")
    p.add_argument("-H", "--host", action="append", dest="hosts", metavar="HOST",
                   help="listen on unix:///path or tcp://host:port; repeat for more "
                        "(default: %s)" % " and ".join(DEFAULT_HOSTS))
    p.add_argument("-g", "--root", "--graph", default=Config.root, help="data root (default %(default)s)")
    p.add_argument("-p", "--pidfile", default=Config.pidfile, help="pid file (default %(default)s)")
    p.add_argument("-s", "--storage-driver", choices=("auto", "overlay2", "vfs"), default="auto",
                   help="how container filesystems are made (default: overlay2 when it works, else vfs)")
    p.add_argument("--api-enable-cors", action="store_true", help="answer cross-origin requests")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a name TCP clients may send in Host besides this machine's addresses, localhost "
                        "and its hostname (repeatable; others get 403: the DNS-rebinding defence)")
    p.add_argument("--allow-privileged", action="store_true",
                   help="allow privileged containers (HostConfig.Privileged): they hold every capability")
    p.add_argument("-b", "--bridge", default=None,
                   help="the default bridge's name (default pyd0; made if missing); 'none' turns networking off")
    p.add_argument("--bip", default=None, type=_interface,
                   help="the default bridge's address and subnet, e.g. 172.30.0.1/16 (default: a free subnet)")
    p.add_argument("--ip", default="127.0.0.1", type=_address,
                   help="host address published ports bind to when a binding names none (default %(default)s)")
    for flag, what in (("--iptables", "add narrow accept rules (and masquerade) with iptables or nft"),
                       ("--ip-forward", "set net.ipv4.ip_forward for containers' outbound traffic"),
                       ("--ip-masq", "masquerade containers' outbound traffic")):
        p.add_argument(flag, nargs="?", const=True, default=True, type=_bool, metavar="BOOL",
                       help=f"{what} (default true; --{flag[2:]}=false turns it off)")
    p.add_argument("--userland-proxy", nargs="?", const=True, default=False, type=_bool, metavar="BOOL",
                   help="serve published ports by the in-daemon proxy only (default false: the kernel "
                        "forwards them where iptables is there, 127.0.0.1 included)")
    p.add_argument("--dns-upstream", action="append", type=_upstream, metavar="IP[:PORT]",
                   help="where the DNS server of user networks forwards names it does not know "
                        "(repeatable; default: the host's resolv.conf nameservers; 'none': nowhere)")
    for flag, what in (("--tls", "serve TLS on TCP listeners (--tlscert, --tlskey)"),
                       ("--tlsverify", "serve TLS and require client certificates signed by --tlscacert")):
        p.add_argument(flag, nargs="?", const=True, default=None, type=_bool, metavar="BOOL",
                       help=f"{what}; a tcp listener without a port then gets 2376")
    for flag, name in (("--tlscacert", "ca.pem"), ("--tlscert", "cert.pem"), ("--tlskey", "key.pem")):
        p.add_argument(flag, default=None, metavar="PATH",
                       help=f"(default: $DOCKER_CERT_PATH/{name}, else ~/.docker/{name})")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]|CIDR",
                   help="a registry that may be spoken to over plain HTTP or unverified HTTPS (repeatable; "
                        "localhost and 127.0.0.0/8 always may)")
    p.add_argument("--registry-mirror", action="append", default=[], type=_mirror, metavar="URL",
                   help="a Docker Hub mirror (scheme://host[:port]) tried before the Hub (repeatable)")
    p.add_argument("--default-pids-limit", type=int, default=Config.default_pids_limit, metavar="N",
                   help="pids.max of containers that set no PidsLimit (default %(default)s; 0: none)")
    p.add_argument("--max-layer-size", type=_size, default=Config.max_layer_size, metavar="SIZE",
                   help="the most one layer's decompressed tar (import, load, pull) may hold, e.g. 64g "
                        "(default 64g)")
    p.add_argument("--max-connections", type=int, default=Config.max_connections, metavar="N",
                   help="connections served at once (default %(default)s); past it a new client takes the "
                        "slot of a slow or idle one, or gets 503 when all are busy")
    p.add_argument("--log-driver", default=None, metavar="DRIVER",
                   help="containers' default log driver: json-file, local or none (default json-file)")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="containers' default log options: max-size=SIZE, max-file=N (repeatable; "
                        "without them a container keeps 2 files of 8 MiB)")
    p.add_argument("-D", "--debug", action="store_true", help="log every request and debug details")
    p.add_argument("-d", "--daemon", action="store_true", help=argparse.SUPPRESS)  # docker -d habit
    p.add_argument("--version", action="store_true", help="print the version and exit")
    return p


def _bool(text):
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _size(text):
    """'64g', '512m', '1048576' -> bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = str(text).strip().lower().rstrip("b")
    try:
        n = int(t[:-1]) * units[t[-1]] if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64g, 512m)") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"a size must be positive: {text!r}")
    return n


def _interface(text):
    import ipaddress
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address) or "/" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: give the bridge's address with its prefix, e.g. 172.30.0.1/16")
    return str(iface)


def _address(text):
    import ipaddress
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _upstream(text):
    if text == "none":
        return None
    host, sep, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    try:
        return (_address(host if sep else text), int(port) if sep else 53)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid DNS upstream {text!r}") from None


def _mirror(text):
    from .engine.registries import mirror_endpoint
    try:
        mirror_endpoint(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


class AlreadyRunning(Exception):
    pass


def _lock_file(path, what, pid):
    """Hold an exclusive flock on `path` for the life of the process."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder else ""
        raise AlreadyRunning(f"another pyd is already running on {what} {os.path.dirname(path) if what == 'data root' else path}{who}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{pid}\n".encode())
    return fd


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.version:
        from .sysinfo import git_commit
        print(f"pyd version {__version__}, build {git_commit()}")
        return 0
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s", stream=sys.stderr)
    tls_on = bool(args.tls or args.tlsverify)
    hosts = args.hosts or (DEFAULT_TLS_HOSTS if tls_on else DEFAULT_HOSTS)
    try:
        listeners = [parse_host(h, DEFAULT_TLS_PORT if tls_on else DEFAULT_TCP_PORT) for h in hosts]
    except ValueError as e:
        print(f"pyd: {e}", file=sys.stderr)
        return 2
    certs = default_cert_dir()
    try:
        log_config = _log_config(args.log_driver, args.log_opt)
    except ValueError as e:
        print(f"pyd: {e}", file=sys.stderr)
        return 2
    config = Config(root=os.path.abspath(args.root), pidfile=os.path.abspath(args.pidfile),
                    hosts=tuple(hosts), cors=args.api_enable_cors, debug=args.debug,
                    tls=tls_on, tls_verify=bool(args.tlsverify),
                    tls_ca=args.tlscacert or os.path.join(certs, "ca.pem"),
                    tls_cert=args.tlscert or os.path.join(certs, "cert.pem"),
                    tls_key=args.tlskey or os.path.join(certs, "key.pem"),
                    allow_privileged=args.allow_privileged, allowed_hosts=tuple(args.allow_host),
                    max_connections=max(1, args.max_connections),
                    default_pids_limit=max(0, args.default_pids_limit),
                    max_layer_size=args.max_layer_size, log_config=log_config,
                    storage_driver=args.storage_driver, bridge=args.bridge, bip=args.bip, default_ip=args.ip,
                    iptables=args.iptables, ip_forward=args.ip_forward, ip_masq=args.ip_masq,
                    userland_proxy=args.userland_proxy,
                    dns_upstream=None if args.dns_upstream is None else [u for u in args.dns_upstream if u],
                    insecure_registries=tuple(args.insecure_registry),
                    registry_mirrors=tuple(args.registry_mirror))
    # dockerd's rule: a network-reachable API without TLS, and no explicit
    # --tls=false, is worth a loud warning and a pause the operator notices.
    explicit_plain = args.tls is False or args.tlsverify is False
    config.extra["plain_tcp_pause"] = 0 if tls_on or explicit_plain else PLAIN_TCP_PAUSE
    try:
        return run(config, listeners)
    except AlreadyRunning as e:
        print(f"pyd: {e}", file=sys.stderr)
        return 1


def _log_config(driver, opts):
    """--log-driver and --log-opt as a LogConfig, checked as a container's is."""
    from . import errors
    from .engine import logconfig
    pairs = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq:
            raise ValueError(f"--log-opt {opt!r}: KEY=VALUE expected")
        pairs[key] = value
    try:
        return logconfig.check({"Type": driver or "", "Config": pairs})
    except errors.BadParameter as e:
        raise ValueError(str(e)) from None


def _bootloader_pid():
    """The pid of a one-file bootloader that runs us as its child, or None.

    PyInstaller's own one-file mode unpacks itself and runs the daemon as a
    child of the same executable; users and supervisors see and signal the
    parent, so the pidfile names it, and the daemon asks to die with it: a
    kill -9 of the parent must not leave an orphan holding the data root.
    build.sh's dist/pyd (native/pydboot.c) execs the unpacked program in
    place instead, so there this finds no such parent and the daemon is the
    process that was started. Kept for a one-file build made by hand.
    """
    if not getattr(sys, "frozen", False):
        return None
    ppid = os.getppid()
    try:
        if os.readlink(f"/proc/{ppid}/exe") != os.readlink("/proc/self/exe"):
            return None
    except OSError:
        return None
    from . import native
    native.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != ppid:  # the parent died before prctl took effect
        os._exit(1)
    return ppid


class _StopRequest:
    """What SIGTERM and SIGINT set, and the main thread waits on.

    Not a threading.Event: a signal's handler runs in the main thread, and
    when that thread is inside Event.wait() holding the Event's lock (on the
    way in or out), the handler's set() waits for that lock forever. This is
    a flag and a pipe: set() takes no lock, and the pipe wakes a wait that
    was already asleep in select().
    """

    def __init__(self):
        self._r, self._w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.requested = False

    def set(self):
        self.requested = True
        try:
            os.write(self._w, b"x")
        except OSError:
            pass  # the pipe is full: a wake-up is already there

    def wait(self, timeout):
        """True once a stop is asked for, False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([self._r], [], [], left)
        return True


def run(config, listeners):
    from .api.routes import Api
    from .engine.facade import Engine
    from .http import tls
    from .http.server import App, Server
    from .store.format import RootError

    # 0700: no local user may walk into layers or containers and run a setuid
    # binary found there (CVE-2021-41091); Engine.start tightens an older root.
    os.makedirs(config.root, mode=0o700, exist_ok=True)
    main_pid = _bootloader_pid() or os.getpid()
    root_lock = _lock_file(config.lock_path, "data root", main_pid)
    pid_lock = _lock_file(config.pidfile, "pidfile", main_pid)
    stop = _StopRequest()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    try:
        tls_context = tls.context(config)
    except OSError as e:   # ssl.SSLError is one too
        print(f"pyd: TLS: {e}", file=sys.stderr)
        return 1
    engine = Engine(config)
    server = Server(App(config, engine, Api(), tls=tls_context))
    try:
        engine.start()
        for kind, where in listeners:
            if kind == "unix":
                server.listen_unix(where)
                log.info("listening on unix://%s", where)
            else:
                host, port = where
                port = server.listen_tcp(host, port)
                log.info("listening on tcp://%s:%d", host, port)
                if not is_loopback(host) and not config.tls_verify:
                    log.warning("WARNING: the API on tcp://%s:%d is reachable from the network and "
                                "gives root on this host to anyone who can connect to it%s", host, port,
                                "" if config.tls else "; use --tlsverify with client certificates")
                    pause = config.extra.get("plain_tcp_pause", 0)
                    if pause and not config.tls:
                        log.warning("WARNING: waiting %ds before serving it (--tls=false says you "
                                    "mean it and skips this)", pause)
                        if stop.wait(pause):
                            return 0
        server.start()
        log.info("pyd %s ready (root %s)", __import__("pyd").__version__, config.root)
        while not stop.wait(3600):
            pass
        log.info("shutting down")
    except (OSError, RootError) as e:
        print(f"pyd: {e}", file=sys.stderr)
        return 1
    finally:
        server.stop_accepting()
        engine.shutdown()
        server.close_connections(config.shutdown_grace)
        try:
            os.unlink(config.pidfile)
        except OSError:
            pass
        os.close(pid_lock)
        os.close(root_lock)
    return 0
