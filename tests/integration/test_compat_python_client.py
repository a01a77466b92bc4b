"""The official ``kubernetes`` Python client, unmodified, against our API server: it reads our
kubeconfig, decodes our objects into its models, and follows our watch stream."""

from __future__ import annotations

import json
import uuid

import pytest

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402
from kubernetes import watch as k8s_watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


@pytest.fixture(scope="module")
def api_client(apiserver):
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(apiserver.kubeconfig), client_configuration=cfg)
    with k8s.ApiClient(cfg) as api:
        yield api


@pytest.fixture
def core(api_client) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(api_client)


@pytest.fixture
def kns(core) -> str:
    name = f"py-{uuid.uuid4().hex[:8]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name


def deployment(name: str, replicas: int = 1) -> k8s.V1Deployment:
    labels = {"app": name}
    return k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name=name, labels=labels),
        spec=k8s.V1DeploymentSpec(
            replicas=replicas,
            selector=k8s.V1LabelSelector(match_labels=labels),
            template=k8s.V1PodTemplateSpec(
                metadata=k8s.V1ObjectMeta(labels=labels),
                spec=k8s.V1PodSpec(containers=[k8s.V1Container(
                    name="web", image="nginx:1.27",
                    ports=[k8s.V1ContainerPort(container_port=80)],
                    env=[k8s.V1EnvVar(name="MODE", value="a")])]))))


def pod(name: str, labels: dict[str, str]) -> k8s.V1Pod:
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name, labels=labels),
                     spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c",
                                                                    image="busybox:1.36")]))


def test_version(api_client):
    info = k8s.VersionApi(api_client).get_code()
    assert info.git_version.startswith("v1.32")
    assert info.major == "1" and info.minor == "32"


def test_deployment_lifecycle(api_client, apps, kns):
    created = apps.create_namespaced_deployment(kns, deployment("web", replicas=2))
    assert isinstance(created, k8s.V1Deployment)
    assert created.metadata.name == "web" and created.metadata.namespace == kns
    assert created.metadata.uid and created.metadata.generation == 1
    assert created.spec.replicas == 2
    assert created.spec.template.spec.containers[0].ports[0].container_port == 80

    listed = apps.list_namespaced_deployment(kns)
    assert isinstance(listed, k8s.V1DeploymentList)
    assert [d.metadata.name for d in listed.items] == ["web"]
    assert listed.metadata.resource_version

    read = apps.read_namespaced_deployment("web", kns)
    assert read.metadata.uid == created.metadata.uid

    # A dict body is sent as a strategic merge patch: env merges by name.
    patched = apps.patch_namespaced_deployment("web", kns, {"spec": {"template": {"spec": {
        "containers": [{"name": "web", "env": [{"name": "EXTRA", "value": "1"}]}]}}}})
    env = {e.name: e.value for e in patched.spec.template.spec.containers[0].env}
    assert env == {"MODE": "a", "EXTRA": "1"}
    assert patched.metadata.generation == 2

    # A list body is a JSON patch.
    patched = apps.patch_namespaced_deployment("web", kns, [
        {"op": "replace", "path": "/spec/template/spec/containers/0/image",
         "value": "nginx:1.28"}])
    assert patched.spec.template.spec.containers[0].image == "nginx:1.28"

    read.spec.replicas = 4
    read.metadata.resource_version = patched.metadata.resource_version
    replaced = apps.replace_namespaced_deployment("web", kns, read)
    assert replaced.spec.replicas == 4

    status = apps.delete_namespaced_deployment("web", kns)  # this client version: a dict
    status = status if isinstance(status, dict) else api_client.sanitize_for_serialization(status)
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"]["name"] == "web"
    with pytest.raises(ApiException) as exc:
        apps.read_namespaced_deployment("web", kns)
    assert exc.value.status == 404


def test_scale_subresource(apps, kns):
    apps.create_namespaced_deployment(kns, deployment("sc", replicas=1))
    scale = apps.patch_namespaced_deployment_scale("sc", kns, {"spec": {"replicas": 3}})
    assert isinstance(scale, k8s.V1Scale)
    assert scale.spec.replicas == 3 and scale.metadata.name == "sc"
    assert apps.read_namespaced_deployment("sc", kns).spec.replicas == 3
    read = apps.read_namespaced_deployment_scale("sc", kns)
    assert read.spec.replicas == 3 and read.status.selector == "app=sc"
    read.spec.replicas = 0
    replaced = apps.replace_namespaced_deployment_scale("sc", kns, read)
    assert replaced.spec.replicas == 0


def test_pod_lifecycle_and_label_selector(core, kns):
    core.create_namespaced_pod(kns, pod("a", {"tier": "front"}))
    core.create_namespaced_pod(kns, pod("b", {"tier": "back"}))
    core.create_namespaced_pod(kns, pod("c", {"tier": "front", "canary": "yes"}))

    front = core.list_namespaced_pod(kns, label_selector="tier=front")
    assert sorted(p.metadata.name for p in front.items) == ["a", "c"]
    stable = core.list_namespaced_pod(kns, label_selector="tier in (front,back),!canary")
    assert sorted(p.metadata.name for p in stable.items) == ["a", "b"]
    named = core.list_namespaced_pod(kns, field_selector="metadata.name=b")
    assert [p.metadata.name for p in named.items] == ["b"]

    read = core.read_namespaced_pod("a", kns)
    assert read.status.phase == "Pending"
    assert read.spec.containers[0].image == "busybox:1.36"

    patched = core.patch_namespaced_pod("a", kns, {"metadata": {"labels": {"tier": "back"}}})
    assert patched.metadata.labels == {"tier": "back"}
    assert sorted(p.metadata.name for p in
                  core.list_namespaced_pod(kns, label_selector="tier=back").items) == ["a", "b"]

    deleted = core.delete_namespaced_pod("a", kns)
    assert deleted.metadata.name == "a"
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("a", kns)
    assert exc.value.status == 404


def test_errors_are_api_exceptions(core, kns):
    core.create_namespaced_config_map(kns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="c")))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(kns, k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name="c")))
    assert exc.value.status == 409
    status = json.loads(exc.value.body)
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'configmaps "c" already exists'

    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod(kns, k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="Bad_Name"),
                                                  spec=k8s.V1PodSpec(containers=[])))
    assert exc.value.status == 422
    assert "metadata.name" in [c["field"] for c in json.loads(exc.value.body)["details"]["causes"]]


def test_watch_stream(core, kns):
    rv = core.list_namespaced_pod(kns).metadata.resource_version
    core.create_namespaced_pod(kns, pod("w", {"a": "b"}))
    core.patch_namespaced_pod("w", kns, {"metadata": {"labels": {"a": "c"}}})
    core.delete_namespaced_pod("w", kns)

    w = k8s_watch.Watch()
    seen = []
    for event in w.stream(core.list_namespaced_pod, kns, resource_version=rv,
                          timeout_seconds=30):
        assert isinstance(event["object"], k8s.V1Pod)
        seen.append((event["type"], event["object"].metadata.name,
                     event["object"].metadata.labels))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w", {"a": "b"}), ("MODIFIED", "w", {"a": "c"}),
                    ("DELETED", "w", {"a": "c"})]


def test_watch_stream_with_initial_state_and_timeout(core, kns):
    core.create_namespaced_pod(kns, pod("x", {}))
    w = k8s_watch.Watch()
    seen = [(e["type"], e["object"].metadata.name)
            for e in w.stream(core.list_namespaced_pod, kns, timeout_seconds=1)]
    # With timeout_seconds the client does not reconnect: the server ending the stream ends
    # the loop.
    assert seen == [("ADDED", "x")]
