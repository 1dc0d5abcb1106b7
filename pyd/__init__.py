"""pyd: a small Docker-compatible container daemon (Remote API v1.3).

Map of the package; a module imports only from its own package or from
the ones below it (tests/unit/test_layers.py checks this):
  cli          flags, logging, signals; wires Config -> Engine, Api -> Server
  api/         routes, version negotiation, handlers, one projection module per surface
  http/        listeners, dispatch, the one error->status table, Request/Reply/Stream, Conn
  engine/      the facade, create-config rules, lifecycle, events, plans, fs operations
  store/       pyd's own records: containers, images by digest, layers by diff id, format
  runtime/     LaunchPlan -> spec, processes, stdio, attach sessions, cgroups, users
  fs/          hostile-tar extraction, tar writing, layer views, storage drivers
  native       the only importer of the compiled shim (pyd._shim)
  errors, config, timefmt, sysinfo   meanings, paths and defaults, time, host facts
"""

__version__ = "0.2.0"
