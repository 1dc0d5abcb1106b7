"""TLS for TCP listeners, with dockerd's flags and defaults (stdlib ssl):

- `--tls`: serve TLS with `--tlscert` and `--tlskey`; any client may connect;
- `--tlsverify` (implies --tls): also require a client certificate signed by
  `--tlscacert`, so that only holders of such a certificate reach the API;
- certificate paths default to $DOCKER_CERT_PATH, else ~/.docker, as
  ca.pem, cert.pem and key.pem;
- a tcp listener without a port gets 2376 when TLS is on (4243 otherwise).

The handshake happens in the connection's own thread (Handler.setup),
bounded by the head timeout, so a client that never finishes one holds no
listener. The unix socket never speaks TLS.
"""

import os

DEFAULT_TLS_PORT = 2376


def default_cert_dir():
    return os.environ.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".docker")


def context(config):
    """An ssl.SSLContext for the TCP listeners, or None without TLS. Raises
    OSError (a missing or unreadable file) or ssl.SSLError (a bad one), which
    stop the daemon before it listens."""
    if not (config.tls or config.tls_verify):
        return None
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=config.tls_ca)
    return ctx
