"""Networks: /networks (Engine API 1.41), and connect/disconnect of containers."""

from .. import errors
from ..engine import filters as flt
from ..http.messages import Reply


def list_(req):
    nets = req.engine.network_list(flt.parse(req.arg("filters"), flt.NETWORK))
    return Reply.json([req.surface.network(n, members=None) for n in nets])


def inspect(req):
    rec, members = req.engine.network_inspect(req.params["id"])
    return Reply.json(req.surface.network(rec, members=members))


def create(req):
    body = req.json()
    if not isinstance(body, dict):
        raise errors.BadParameter("the network config must be a JSON object")
    ipam = body.get("IPAM") or {}
    if not isinstance(ipam, dict) or not isinstance(ipam.get("Config") or [], list):
        raise errors.BadParameter("IPAM must be an object with a Config list")
    if ipam.get("Driver") not in (None, "", "default"):
        raise errors.NotFound(f"plugin \"{ipam['Driver']}\" not found")
    configs = ipam.get("Config") or []
    if len(configs) > 1:
        raise errors.BadParameter("pyd's networks have one IPv4 subnet: give at most one IPAM Config")
    cfg = configs[0] if configs else {}
    if not isinstance(cfg, dict):
        raise errors.BadParameter("an IPAM Config entry must be an object")
    if body.get("EnableIPv6"):
        raise errors.BadParameter("pyd's networks are IPv4 only (EnableIPv6)")
    for k in ("Labels", "Options"):
        v = body.get(k)
        if v is not None and not (isinstance(v, dict) and all(isinstance(x, str) for x in v.values())):
            raise errors.BadParameter(f"{k} must be an object of strings")
    rec = req.engine.network_create(body.get("Name"), driver=body.get("Driver"), subnet=cfg.get("Subnet"),
                                    gateway=cfg.get("Gateway"), labels=body.get("Labels"),
                                    options=body.get("Options"), internal=bool(body.get("Internal")),
                                    attachable=bool(body.get("Attachable")))
    return Reply.json({"Id": rec["Id"], "Warning": ""}, status=201)


def delete(req):
    req.engine.network_delete(req.params["id"])
    return Reply.empty(204)


def prune(req):
    names = req.engine.networks_prune(flt.parse(req.arg("filters"), flt.PRUNE))
    return Reply.json({"NetworksDeleted": names or None})


def connect(req):
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
        raise errors.BadParameter("the body must be {\"Container\": id, \"EndpointConfig\": {...}}")
    ep = body.get("EndpointConfig") or {}
    if not isinstance(ep, dict):
        raise errors.BadParameter("EndpointConfig must be an object")
    req.engine.network_connect(req.params["id"], body["Container"], ep)
    return Reply.empty(200)


def disconnect(req):
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("Container"), str):
        raise errors.BadParameter("the body must be {\"Container\": id, \"Force\": bool}")
    req.engine.network_disconnect(req.params["id"], body["Container"], bool(body.get("Force")))
    return Reply.empty(200)
