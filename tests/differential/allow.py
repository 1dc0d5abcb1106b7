"""Known differences between pyd and dockerd 20.10 that the differential
test accepts, each with its reason. docs/differential.md lists the same.

An entry: step (fnmatch on "<group>/<label>"), what (status, kind, missing,
extra, type, null, payload, header-*, event-missing, event-extra; default
any), path (fnmatch on the JSON path of the difference, on "METHOD /path",
or on "Type/Action" for events; default any), detail (fnmatch on the
difference's text, e.g. "dockerd 500, pyd 400"; default any), reason.
Keep entries narrow: a broad pattern hides the next regression.
"""

ALLOW = [
    # -- Go's encoding, not a different schema --------------------------------
    {"step": "*", "what": "null",
     "reason": "dockerd marshals empty Go slices and maps as null (Dns, Devices, PortBindings, Labels, "
               "RepoDigests, BuildCache...); pyd sends [] or {}. Go clients decode both alike; Python "
               "clients can iterate over pyd's. The reverse (pyd null where dockerd has a value) is not allowed."},
    {"step": "containers/list-all-size", "what": "extra", "path": "[].SizeRw",
     "reason": "moby's SizeRw is omitempty: dockerd drops it when the container wrote nothing; pyd always sends it"},
    # -- what pyd is, not what it lacks -------------------------------------
    {"step": "containers/stats-one-shot", "what": "extra", "path": "pids_stats.limit",
     "reason": "pyd caps every container's pids by default (--default-pids-limit 4096, docs/security.md); "
               "dockerd sets no limit, so it has none to report"},
    {"step": "system/version", "what": "*", "path": "Components*",
     "reason": "dockerd lists containerd, runc and docker-init; pyd has one component (its own engine)"},
    # -- dockerd 20.10's 500s for bad input ----------------------------------
    # moby 20.10 maps these errors to no errdefs class, hence 500; pyd's errors
    # say what kind they are (pyd/errors.py). The CLI prints the message alike.
    {"step": "containers/create-bad-json", "what": "status", "detail": "dockerd 500, pyd 400",
     "reason": "malformed JSON body: dockerd 500, pyd 400 (BadParameter); later dockerd releases answer 400 too"},
    {"step": "containers/list-bad-filters", "what": "status", "detail": "dockerd 500, pyd 400",
     "reason": "filters that are not JSON: dockerd 500, pyd 400 (BadParameter)"},
    {"step": "containers/unpause-again", "what": "status", "detail": "dockerd 500, pyd 409",
     "reason": "unpause of a container that is not paused: dockerd 500, pyd 409 (Conflict, as for pause-again)"},
]
