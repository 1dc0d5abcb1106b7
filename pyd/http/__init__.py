"""HTTP transport on http.server/socketserver, knowing nothing of Docker:
listeners (server), the one error -> status table (status), the request
and reply objects handlers see and return (messages), and Conn, the duplex
stream of a hijacked or upgraded connection (conn). The API layer gives
the server its router and version negotiation (pyd.api.Api); cli wires
them together. See docs/design.md for why http sits below api."""
