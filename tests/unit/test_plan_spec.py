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


# -- launch options (HostConfig) ----------------------------------------------

from pyd import errors  # noqa: E402
from pyd.engine import caps as engine_caps  # noqa: E402
from pyd.engine import launchopts  # noqa: E402
from pyd.engine import plan as engine_plan  # noqa: E402
from pyd.runtime import caps as capabilities  # noqa: E402
from pyd.runtime.spec import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, tmpfs_entries, tmpfs_options  # noqa: E402
from pyd.store.containers import Container  # noqa: E402

DEFAULT_FLAGS = MS_NOEXEC | MS_NOSUID | MS_NODEV


def test_default_plan_keeps_todays_launch():
    spec = to_spec(overlay_plan())
    assert spec.caps == native.DEFAULT_CAPS == capabilities.mask(capabilities.DEFAULT)
    assert (spec.privileged, spec.readonly_rootfs, spec.share_netns, spec.init) == (False,) * 4
    assert list(spec.tmpfs) == [] and list(spec.devices) == []


def test_launch_options_reach_the_spec():
    spec = to_spec(overlay_plan(caps=["CAP_KILL", "CAP_NET_ADMIN", 21], readonly_rootfs=True,
                                init=True, network="host", tmpfs=[("/run", "size=1m")]))
    assert spec.caps == (1 << 5) | (1 << 12) | (1 << 21)
    assert spec.readonly_rootfs and spec.init and spec.share_netns
    # the tmpfs goes after both binds (neither is inside /run)
    assert spec.tmpfs == [("/run", DEFAULT_FLAGS, "size=1m", 2)]
    assert not to_spec(overlay_plan(network="none")).share_netns


def test_privileged_asks_for_every_capability():
    spec = to_spec(overlay_plan(privileged=True, caps=[]))
    assert spec.privileged and spec.caps == (1 << len(capabilities.NAMES)) - 1


def test_unknown_capability_in_a_plan_is_refused():
    with pytest.raises(KeyError):
        to_spec(overlay_plan(caps=["CAP_BOGUS"]))


def test_tmpfs_options_follow_docker():
    assert tmpfs_options("") == (DEFAULT_FLAGS, "")
    assert tmpfs_options("size=64m,mode=1777") == (DEFAULT_FLAGS, "size=64m,mode=1777")
    # a later option wins over Docker's defaults and over an earlier one
    assert tmpfs_options("exec,suid,ro") == (MS_NODEV | MS_RDONLY, "")
    assert tmpfs_options("ro,rw,size=1k,size=2k") == (DEFAULT_FLAGS, "size=2k")
    assert tmpfs_options("rprivate, uid=1000 ,,") == (DEFAULT_FLAGS, "uid=1000")
    for bad in ("bogus", "size", "size=", "bind", "rbind", "remount", "lowerdir=/x", "ro=1"):
        with pytest.raises(ValueError, match="invalid tmpfs option"):
            tmpfs_options(bad)


def test_tmpfs_entries_nest_with_binds():
    binds = [("/h/hosts", "/etc/hosts", False), ("/v1", "/data", False), ("/v2", "/data/in", True),
             ("/v3", "/other", False)]
    entries = tmpfs_entries([("/data/in/deep", ""), ("/data//", "mode=700"), ("/run", "")], binds)
    assert [(t, before) for t, _, _, before in entries] == [
        ("/data", 1), ("/run", 4), ("/data/in/deep", 4)]
    for bad in ("relative", "/", "//", "/.."):
        with pytest.raises(ValueError):
            tmpfs_entries([(bad, "")], binds)


def test_capability_rules_follow_docker():
    default = list(capabilities.DEFAULT)
    assert engine_caps.effective(None, None, False) == default
    assert engine_caps.effective(["net_admin"], ["CAP_CHOWN", "Mknod"], False) == \
        [c for c in default if c not in ("CAP_CHOWN", "CAP_MKNOD")] + ["CAP_NET_ADMIN"]
    # adding one that is already there does not repeat it
    assert engine_caps.effective(["KILL"], [], False) == default
    assert engine_caps.effective(["sys_admin"], ["ALL"], False) == ["CAP_SYS_ADMIN"]
    assert engine_caps.effective([], ["all"], False) == []
    everything = capabilities.supported()
    assert engine_caps.effective(["ALL"], ["NET_RAW"], False) == [c for c in everything if c != "CAP_NET_RAW"]
    assert engine_caps.effective(None, ["ALL"], True) == everything
    assert "CAP_SYS_ADMIN" in everything and "CAP_CHOWN" in everything


def test_unknown_capabilities_are_bad_parameters():
    engine_caps.check(["NET_ADMIN", "cap_sys_time", "ALL"], ["audit_write"])
    for add, drop in ((["NET_FLY"], None), (None, ["CAP_BOGUS"]), ([""], None), ([7], None),
                      ("NET_ADMIN", None), (["CAP_"], None)):
        with pytest.raises(errors.BadParameter, match="capabilit"):
            engine_caps.check(add, drop)
    with pytest.raises(errors.BadParameter, match='unknown capability: "CAP_NET_FLY"'):
        engine_caps.effective(["net_fly"], None, False)


def test_tmpfs_from_the_host_config():
    host = {"Tmpfs": {"/run": "size=64m"},
            "Mounts": [{"Type": "tmpfs", "Target": "/x", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1777}},
                       {"Type": "tmpfs", "Target": "/y", "ReadOnly": True, "TmpfsOptions": {"SizeBytes": 1000}},
                       {"Type": "tmpfs", "Target": "/z"},
                       {"Type": "bind", "Source": "/h", "Target": "/b"}]}
    assert launchopts.tmpfs(host) == [("/run", "size=64m"), ("/x", "mode=1777,size=64m"),
                                       ("/y", "ro,size=1000"), ("/z", "")]
    assert launchopts.tmpfs({}) == []


@pytest.mark.parametrize("host", [
    {"Tmpfs": {"/a": "bogus"}}, {"Tmpfs": {"rel": ""}}, {"Tmpfs": {"/": ""}}, {"Tmpfs": ["/a"]},
    {"Tmpfs": {"/a": 5}},
    {"Tmpfs": {"/a": ""}, "Mounts": [{"Type": "tmpfs", "Target": "/a"}]},
    {"Mounts": [{"Type": "tmpfs"}]},
    {"Mounts": [{"Type": "tmpfs", "Target": "/a", "Source": "/h"}]},
    {"Mounts": [{"Type": "tmpfs", "Target": "/a", "TmpfsOptions": {"SizeBytes": -1}}]},
    {"Mounts": [{"Type": "tmpfs", "Target": "/a", "TmpfsOptions": {"Mode": "1777"}}]},
    {"CapAdd": ["NOPE"]}, {"NetworkMode": "container:"}, {"NetworkMode": 5},
    {"NanoCpus": 10**9, "CpuQuota": 50000}, {"CpuShares": -2}, {"NanoCpus": "1"},
    {"CpuQuota": 999}, {"CpuQuota": -2}, {"CpuPeriod": 999}, {"CpuPeriod": 1000001},
])
def test_bad_launch_options_are_refused_at_create(host):
    with pytest.raises(errors.BadParameter):
        launchopts.check(host)


def test_network_modes_and_cpus():
    assert [launchopts.network({"NetworkMode": m}) for m in ("host", "none", "bridge", "default", "")] == \
        ["host", "none", "none", "none", "none"]
    assert launchopts.network({}) == "none"
    assert launchopts.cpu({"NanoCpus": 1_500_000_000, "CpuShares": 512}) == (512, 150000, 100000)
    assert launchopts.cpu({"CpuQuota": 20000, "CpuPeriod": 50000}) == (0, 20000, 50000)
    assert launchopts.cpu({}) == (0, 0, 0)
    assert launchopts.cpu({"CpuQuota": -1, "CpuPeriod": 1000}) == (0, 0, 1000)  # -1: no quota
    launchopts.check({})


class _Driver:
    def launch_args(self, cdir, layers, layers_dir):
        return {"rootfs_source": cdir + "/rootfs"}


def _record(tmp_path, host):
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    data = {"id": "ab" * 32, "config": {"Cmd": ["sh"], "Hostname": "h"}, "host": host}
    return Container(data, str(tmp_path / "c"))


def test_engine_plan_reads_the_host_fields(tmp_path):
    host = {"CapAdd": ["NET_ADMIN"], "CapDrop": ["chown"], "ReadonlyRootfs": True, "Init": True,
            "NetworkMode": "none", "Tmpfs": {"/run": "size=1m"}, "PidsLimit": 100,
            "NanoCpus": 500_000_000, "CpuShares": 256}
    plan = engine_plan.build(_record(tmp_path, host), [], [str(tmp_path)], _Driver(), None)
    assert plan.caps == [c for c in capabilities.DEFAULT if c != "CAP_CHOWN"] + ["CAP_NET_ADMIN"]
    assert (plan.readonly_rootfs, plan.init, plan.privileged, plan.network) == (True, True, False, "none")
    assert plan.tmpfs == [("/run", "size=1m")]
    assert (plan.pids_limit, plan.cpu_shares, plan.cpu_quota, plan.cpu_period) == (100, 256, 50000, 100000)


def test_engine_plan_of_an_old_record_is_todays_launch(tmp_path):
    plan = engine_plan.build(_record(tmp_path, {"Memory": 0}), [], [str(tmp_path)], _Driver(), None)
    assert plan.caps == list(capabilities.DEFAULT) and plan.network == "none"
    assert (plan.readonly_rootfs, plan.init, plan.privileged, plan.tmpfs) == (False, False, False, [])
    assert (plan.pids_limit, plan.cpu_shares, plan.cpu_quota, plan.cpu_period) == (0, 0, 0, 0)
    # Init null (the API's "daemon default") is off, as dockerd's default.
    assert not engine_plan.build(_record(tmp_path, {"Init": None}), [], [str(tmp_path)], _Driver(), None).init


def test_privileged_plan(tmp_path):
    plan = engine_plan.build(_record(tmp_path, {"Privileged": True, "CapDrop": ["ALL"]}), [],
                             [str(tmp_path)], _Driver(), None)
    assert plan.privileged and plan.caps == capabilities.supported()
