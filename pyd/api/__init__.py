"""HTTP handlers: each parses its request, calls the daemon, and shapes the
reply through the request's API surface (api.versions)."""
