"""pyd: a small Docker-compatible container daemon (Remote API v1.3).

Map of the package (imports follow these layers, top to bottom):
  cli       flags, logging, signals; wires Config -> Daemon -> Server
  server    HTTP core on http.server/socketserver; the one error->status table
  routes    every endpoint as data
  api/      handlers: parse the request, call the daemon, shape per API version
  daemon    the backend facade: one method per operation
  images, containers, runtime, stdio, cgroups   stores and the container runtime
  tarsafe, layerfs                             hostile-tar extraction, layer views
  native    the only importer of the compiled shim (pyd._shim)
"""

__version__ = "0.1.0"
