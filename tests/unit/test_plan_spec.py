"""The launch plan -> shim spec step, and the plan's pure pieces: no root,
no kernel, just data."""

import pytest

from pyd import native
from pyd.engine.plan import DEFAULT_PATH, environment
from pyd.runtime.plan import LaunchPlan
from pyd.runtime.spec import to_spec


def overlay_plan(**kw):
    args = dict(cid="c" * 64, rootfs="/root/containers/c/rootfs", argv=["sh", "-c", "echo hi"],
                env=["PATH=/bin", "HOME=/root"], cwd="/work", hostname="box", uid=1000, gid=1000,
                groups=[50], mounts=[("/root/containers/c/hosts", "/etc/hosts", False), ("/v", "/data", True)],
                tty=False, open_stdin=True, memory=64 << 20, memory_swap=128 << 20,
                storage={"lowerdirs": ["/root/layers/sha256/b", "/root/layers/sha256/a"],
                         "upperdir": "/root/containers/c/upper", "workdir": "/root/containers/c/work",
                         "layers_dir": "/root/layers/sha256"})
    args.update(kw)
    return LaunchPlan(**args)


def test_overlay_plan_becomes_the_shim_spec():
    spec = to_spec(overlay_plan())
    assert isinstance(spec, native.LaunchSpec)
    assert spec.rootfs == "/root/containers/c/rootfs"
    assert spec.argv == ["sh", "-c", "echo hi"] and spec.env == ["PATH=/bin", "HOME=/root"]
    assert (spec.cwd, spec.hostname, spec.uid, spec.gid, list(spec.groups)) == ("/work", "box", 1000, 1000, [50])
    assert spec.binds == [("/root/containers/c/hosts", "/etc/hosts", False), ("/v", "/data", True)]
    assert spec.lowerdirs == ["/root/layers/sha256/b", "/root/layers/sha256/a"]
    assert spec.upperdir == "/root/containers/c/upper" and spec.workdir == "/root/containers/c/work"
    assert spec.layers_dir == "/root/layers/sha256" and spec.rootfs_source is None
    assert spec.tty is False
    # stdio is the runtime's to fill in, per start
    assert spec.stdin is spec.stdout is spec.stderr is None
    # the overlay options are relative to layers_dir, so they fit in one page
    assert native._overlay_data(spec) == (b"lowerdir=b:a,upperdir=/root/containers/c/upper,"
                                          b"workdir=/root/containers/c/work")


def test_copy_driver_plan_binds_its_rootfs():
    spec = to_spec(overlay_plan(storage={"rootfs_source": "/root/containers/c/rootfs"}, tty=True))
    assert spec.lowerdirs == [] and spec.upperdir is None
    assert spec.rootfs_source == "/root/containers/c/rootfs" and spec.tty is True
    assert native._overlay_data(spec) is None


def test_plan_lists_are_copied_not_shared():
    plan = overlay_plan()
    spec = to_spec(plan)
    spec.argv.append("x")
    spec.binds.append(("/a", "/b", True))
    assert plan.argv == ["sh", "-c", "echo hi"] and len(plan.mounts) == 2


def test_unknown_storage_or_network_is_refused():
    with pytest.raises(TypeError):
        to_spec(overlay_plan(storage={"lowerdirs": ["/l"], "bogus": 1}))
    with pytest.raises(ValueError, match="network"):
        to_spec(overlay_plan(network="bridge"))


def test_environment_order_and_overrides():
    env = environment({"Env": ["A=1", "HOME=/h", "A=2", "EMPTY="], "Tty": True}, "host1", "/root")
    assert env == [f"PATH={DEFAULT_PATH}", "HOSTNAME=host1", "HOME=/h", "TERM=xterm", "A=2", "EMPTY="]
    assert environment({}, "h", "/") == [f"PATH={DEFAULT_PATH}", "HOSTNAME=h", "HOME=/"]
