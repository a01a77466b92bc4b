"""Claims of StatefulSet members: the scheduler's VolumeBinding filter and the kubelet's
binding of a claim to its node's Docker named volume."""

import pytest

from fakes import FakeClient
from kubelet.envvars import ContainerConfigError
from kubelet.volumes import bind_claim, claim_volume_name, container_mounts
from scheduler.cache import Snapshot
from scheduler.framework import SKIP, FitError, Framework
from scheduler.nodeinfo import NodeInfo, PodInfo
from scheduler.plugins.volumes import CLAIM_NODE_ANNOTATION, VolumeBinding


def claim(name, node=None):
    md = {"name": name, "namespace": "default"}
    if node:
        md["annotations"] = {CLAIM_NODE_ANNOTATION: node}
    return {"metadata": md, "spec": {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": "1Gi"}}}}


def pod_with(*claims):
    return {"metadata": {"name": "db-0", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "i"}],
                     "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                                 for i, c in enumerate(claims)]}}


def node_info(name):
    return NodeInfo.of({"metadata": {"name": name}, "status": {
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "10"},
        "conditions": [{"type": "Ready", "status": "True"}]}})


def feasible(claims, pod):
    store = {f"default/{c['metadata']['name']}": c for c in claims}
    plugin = VolumeBinding(lambda ns, name: store.get(f"{ns}/{name}"))
    fw = Framework(filters=[plugin], scorers=[])
    nodes = [node_info(n) for n in ("a", "b")]
    try:
        return fw.schedule(PodInfo.of(pod), Snapshot.of(nodes)).node, ""
    except FitError as err:
        return None, err.message()


def test_pod_without_claims_is_skipped():
    plugin = VolumeBinding(lambda ns, name: None)
    assert plugin.pre_filter({}, PodInfo.of(pod_with()), None) == SKIP


def test_bound_claim_pins_the_pod_to_its_node():
    assert feasible([claim("data-db-0", "b")], pod_with("data-db-0")) == ("b", "")


def test_unbound_claim_fits_anywhere():
    node, _ = feasible([claim("data-db-0")], pod_with("data-db-0"))
    assert node in ("a", "b")


def test_missing_claim_and_conflicting_claims_fit_nowhere():
    assert feasible([], pod_with("data-db-0")) == (
        None, '0/2 nodes are available: 2 persistentvolumeclaim "data-db-0" not found.')
    node, msg = feasible([claim("x", "a"), claim("y", "b")], pod_with("x", "y"))
    assert node is None and "volume node affinity conflict" in msg


async def _get(client):
    async def get(kind, ns, name):
        try:
            return await client.get(kind, name, ns)
        except Exception:
            return None
    return get


async def test_kubelet_binds_an_unbound_claim_to_its_node():
    client = FakeClient()
    client.seed("persistentvolumeclaims", claim("data-db-0"))
    pod = pod_with("data-db-0")
    volume = await bind_claim(pod, pod["spec"]["volumes"][0]["persistentVolumeClaim"],
                              await _get(client), client, "node-a")
    assert volume == claim_volume_name("default", "data-db-0") == "minik8s-pvc-default-data-db-0"
    stored = client.stored("persistentvolumeclaims", "data-db-0", "default")
    assert stored["metadata"]["annotations"][CLAIM_NODE_ANNOTATION] == "node-a"
    assert stored["spec"]["volumeName"] == volume
    assert stored["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                                "capacity": {"storage": "1Gi"}}
    # mounted as a named volume, not a host path
    mounts = container_mounts({"name": "c", "volumeMounts": [
        {"name": "v0", "mountPath": "/data"}]}, {"v0": volume})
    assert mounts[0].host_path == volume
    with pytest.raises(ContainerConfigError):
        container_mounts({"name": "c", "volumeMounts": [
            {"name": "v0", "mountPath": "/data", "subPath": "x"}]}, {"v0": volume})


async def test_kubelet_refuses_a_claim_bound_elsewhere_or_missing():
    client = FakeClient()
    client.seed("persistentvolumeclaims", claim("data-db-0", "node-b"))
    pod = pod_with("data-db-0", "nope")
    get = await _get(client)
    with pytest.raises(ContainerConfigError, match="bound to node"):
        await bind_claim(pod, {"claimName": "data-db-0"}, get, client, "node-a")
    with pytest.raises(ContainerConfigError, match="not found"):
        await bind_claim(pod, {"claimName": "nope"}, get, client, "node-a")
