"""The engine: what pyd does, whatever the API version.

  facade       Engine: one method per operation; the only thing handlers call
  createconfig the create-config schema, its validation and merge rules
  lifecycle    the ONLY writer of container state: state machine, persist, event
  events       the in-process event bus (bounded subscriber queues)
  plan         a container + its image -> one LaunchPlan, resolved once per start
  mounts       binds, volumes and VolumesFrom -> the container's mounts
  fsops        filesystem operations: import, insert, commit, changes, export
  etcfiles     the container's hostname, hosts and resolv.conf
  views        what the engine hands the API to project (records stay inside)
  fetch        downloads for import-from-URL and insert (http and https only)
"""
