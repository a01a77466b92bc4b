"""A new pod's app containers are created while its sandbox starts, and started only once
the sandbox is wired: with the address reserved for the pod, a wrong guess undone, and
nothing left behind when the sandbox fails."""

from __future__ import annotations

import pytest

from kubelet.runtime.base import APP, LABEL_KIND, SANDBOX
from test_kubelet_pods import IMAGE, Harness, RecordingNetwork, sleeper


class ReservingNetwork(RecordingNetwork):
    """Hands out ``reserved`` before wiring and ``wired`` at attach; notes both among the
    runtime's calls, so their order against creates and starts shows."""

    def __init__(self, calls: list, reserved: str = "10.244.1.7", wired: str = "10.244.1.7"):
        super().__init__()
        self.calls = calls
        self.reserved, self.wired = reserved, wired

    async def reserve(self, pod_uid):
        self.calls.append(("reserve", pod_uid))
        return self.reserved

    async def attach(self, pod_uid, sandbox_pid):
        self.calls.append(("attach", pod_uid))
        self.attached.append((pod_uid, sandbox_pid))
        return self.wired


def harness(tmp_path, **net) -> Harness:
    h = Harness(tmp_path)
    h.network = ReservingNetwork(h.runtime.calls, **net)
    h.workers = h.new_workers()
    return h


def ip_env(name="c"):
    return sleeper(name, env=[{"name": "IP", "valueFrom": {"fieldRef": {
        "fieldPath": "status.podIP"}}}])


def kinds(h):
    return sorted(c.config.labels[LABEL_KIND] for c in h.runtime.containers.values())


async def test_apps_are_created_beside_the_sandbox_and_started_after_wiring(tmp_path):
    h = harness(tmp_path)
    uid = h.add([ip_env("a"), sleeper("b")])
    await h.sync(uid)
    calls = h.runtime.calls
    sandbox = next(c for c in h.runtime.containers.values()
                   if c.config.labels[LABEL_KIND] == SANDBOX)
    a, b = h.app("a"), h.app("b")
    at = {call: i for i, call in enumerate(calls)}
    attach = at[("attach", uid)]
    assert at[("start", sandbox.id)] < attach
    assert at[("create", a.config.name)] < attach and at[("create", b.config.name)] < attach
    assert attach < at[("start", a.id)] and attach < at[("start", b.id)]
    assert a.config.env["IP"] == "10.244.1.7"
    assert "10.244.1.7\tp" in (tmp_path / "pods" / uid / "hosts").read_text()
    assert h.runtime.count("create") == 3 and h.runtime.count("remove") == 0
    assert h.phase() == "Running" and h.pod()["status"]["podIP"] == "10.244.1.7"
    assert [e["reason"] for e in h.events("Created")] == ["Created"] * 2


async def test_a_container_made_with_an_address_the_pod_did_not_get_is_made_again(tmp_path):
    h = harness(tmp_path, reserved="10.244.1.7", wired="10.244.1.8")
    uid = h.add([ip_env("a"), sleeper("b")])
    await h.sync(uid)
    assert kinds(h) == [APP, APP, SANDBOX]
    assert h.app("a").config.env["IP"] == "10.244.1.8"
    assert all(c.state == "running" for c in h.runtime.containers.values())
    assert h.runtime.count("remove") == 1  # only the one that carried the address
    hosts = (tmp_path / "pods" / uid / "hosts").read_text()
    assert "10.244.1.8\tp" in hosts and "10.244.1.7" not in hosts
    assert h.status("a")["restartCount"] == 0 and h.phase() == "Running"


async def test_without_a_reserved_address_the_address_carrier_waits_for_the_wiring(tmp_path):
    h = harness(tmp_path, reserved="", wired="10.244.1.9")
    uid = h.add([ip_env("a"), sleeper("b")])
    await h.sync(uid)
    assert h.app("a").config.env["IP"] == "10.244.1.9"
    assert h.runtime.count("remove") == 0 and h.runtime.count("create") == 3
    assert h.phase() == "Running"


async def test_a_sandbox_that_fails_to_start_leaves_no_app_container(tmp_path):
    h = harness(tmp_path)
    h.runtime.fail_start["POD"] = "no cgroup for you"
    uid = h.add([sleeper("a")])
    with pytest.raises(RuntimeError, match="cgroup"):
        await h.sync(uid)
    assert kinds(h) == [SANDBOX]  # the exited sandbox only
    del h.runtime.fail_start["POD"]
    await h.sync(uid)
    assert h.phase() == "Running" and h.status("a")["restartCount"] == 0
    assert [c.state for c in h.runtime.by_name("a", uid)] == ["running"]


async def test_a_missing_image_is_reported_once_by_the_usual_path(tmp_path):
    h = harness(tmp_path)
    uid = h.add([sleeper("a", image="ghost:1.0", imagePullPolicy="IfNotPresent"),
                 sleeper("b", image=IMAGE)])
    await h.sync(uid)
    assert len(h.events("ErrImageNeverPull")) == 1
    assert h.status("a")["state"]["waiting"]["reason"] == "ErrImageNeverPull"
    assert h.status("b")["state"].get("running") is not None
    assert h.runtime.count("pull") == 0 and h.runtime.count("remove") == 0


async def test_pods_with_init_containers_start_in_order_as_before(tmp_path):
    h = harness(tmp_path)
    uid = h.add([sleeper("a")], init=[{"name": "i", "command": ["true"]}])
    await h.sync(uid)
    assert h.app("a") is None  # the app waits for the init container
    assert [c.config.labels[LABEL_KIND] for c in h.runtime.containers.values()] == \
        [SANDBOX, "init"]
