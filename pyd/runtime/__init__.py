"""The container runtime: a LaunchPlan (runtime.plan) becomes the shim's
spec (runtime.spec, a pure function), a process in its namespaces and
cgroup (runtime.process), an output log with live subscribers
(runtime.stdio), and attach sessions over a duplex Conn (runtime.attach).
Also cgroups, users (from the image's own files) and procs (for top).

The runtime knows container ids and plans, never records: it does not
import the stores or the engine, and it never calls back up. The engine's
watcher thread waits on Process.monitor() and records the exit itself."""
