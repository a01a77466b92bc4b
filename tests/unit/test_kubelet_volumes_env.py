"""Kubelet pieces of issue 5 without Docker: service environment variables, the atomic
writer, projected/downward payloads and the token cache."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest

from kubelet.envvars import ContainerConfigError, build_env, service_env
from kubelet.volumes import (DATA_DIR, TokenManager, VolumeManager, container_mounts,
                             make_pod_dir, setup_volumes, write_atomic)


def svc(name, ns, ip, *ports):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": list(ports)}}


SERVICES = [
    svc("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443,
                                               "protocol": "TCP"}),
    svc("web-db", "app", "10.96.3.4", {"port": 5432},
        {"name": "metrics-port", "port": 9187, "protocol": "UDP"}),
    svc("headless", "app", "None", {"port": 80}),
    svc("other", "elsewhere", "10.96.9.9", {"port": 80}),
]


def test_service_env_as_kubernetes_names_them():
    env = service_env(SERVICES, "app")
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP_PROTO"] == "tcp"
    assert env["KUBERNETES_PORT_443_TCP_PORT"] == "443"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.96.0.1"
    assert env["WEB_DB_SERVICE_HOST"] == "10.96.3.4"
    assert env["WEB_DB_SERVICE_PORT"] == "5432"
    assert env["WEB_DB_SERVICE_PORT_METRICS_PORT"] == "9187"
    assert env["WEB_DB_PORT"] == "tcp://10.96.3.4:5432"
    assert env["WEB_DB_PORT_9187_UDP"] == "udp://10.96.3.4:9187"
    assert env["WEB_DB_PORT_9187_UDP_PROTO"] == "udp"
    assert not any(k.startswith(("HEADLESS_", "OTHER_")) for k in env)
    assert len(env) == 8 + 12


def test_service_links_off_keeps_only_kubernetes():
    env = service_env(SERVICES, "app", enable_service_links=False)
    assert set(env) == {k for k in service_env(SERVICES, "x") if k.startswith("KUBERNETES_")}


async def test_user_env_wins_and_expands_service_vars():
    async def get(kind, ns, name):
        return None
    c = {"name": "c", "env": [{"name": "WEB_DB_SERVICE_HOST", "value": "mine"},
                              {"name": "URL", "value": "http://$(WEB_DB_PORT_5432_TCP_ADDR)/"}]}
    env = await build_env(c, {"metadata": {"namespace": "app"}}, get,
                          services=service_env(SERVICES, "app"))
    assert env["WEB_DB_SERVICE_HOST"] == "mine"
    assert env["URL"] == "http://10.96.3.4/"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


# --- atomic writer --------------------------------------------------------------------------


def test_atomic_writer_layout_update_and_removal(tmp_path: Path):
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o400)})
    first = os.readlink(target / DATA_DIR)
    assert first.startswith("..") and (target / first).is_dir()
    assert os.readlink(target / "a") == f"{DATA_DIR}/a"
    assert (target / "a").read_bytes() == b"1"
    assert (target / "dir" / "b").read_bytes() == b"2"
    assert os.stat(target / "dir" / "b").st_mode & 0o777 == 0o400
    assert not write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o400)})
    assert os.readlink(target / DATA_DIR) == first
    assert write_atomic(target, {"a": (b"new", 0o644)})
    second = os.readlink(target / DATA_DIR)
    assert second != first and not (target / first).exists()
    assert (target / "a").read_bytes() == b"new"
    assert not os.path.lexists(target / "dir")
    assert sorted(p.name for p in target.iterdir()) == sorted([DATA_DIR, second, "a"])


def test_atomic_writer_replaces_plain_files_and_refuses_escapes(tmp_path: Path):
    target = tmp_path / "vol"
    target.mkdir()
    (target / "a").write_text("old plain file")
    (target / "gone").write_text("x")
    write_atomic(target, {"a": (b"v", 0o644)})
    assert (target / "a").is_symlink() and (target / "a").read_text() == "v"
    assert not (target / "gone").exists()
    for bad in ("../x", "/etc/passwd", "..data", "a/../../x"):
        with pytest.raises(ContainerConfigError):
            write_atomic(target, {bad: (b"", 0o644)})


def test_atomic_writer_readers_never_see_a_mix(tmp_path: Path):
    """A reader resolving through ..data sees one version's files together."""
    target = tmp_path / "vol"
    write_atomic(target, {"x": (b"0", 0o644), "y": (b"0", 0o644)})
    for i in range(1, 30):
        data = os.readlink(target / DATA_DIR)
        x, y = (target / data / "x").read_bytes(), (target / data / "y").read_bytes()
        assert x == y
        write_atomic(target, {"x": (str(i).encode(), 0o644), "y": (str(i).encode(), 0o644)})


# --- volumes of a pod -----------------------------------------------------------------------


class FakeClient:
    def __init__(self):
        self.requests = []

    async def create(self, kind, body, ns, subresource=None, name=None):
        self.requests.append((kind, ns, name, subresource, body))
        return {"spec": {"expirationSeconds": body["spec"]["expirationSeconds"]},
                "status": {"token": f"tok{len(self.requests)}",
                           "expirationTimestamp": "2100-01-01T00:00:00Z"}}


def _pod():
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "uid-1",
                         "labels": {"b": "2", "a": "x\"y"}},
            "spec": {"serviceAccountName": "robot", "containers": [
                {"name": "c", "resources": {"limits": {"memory": "64Mi"}}}],
                "volumes": [
                    {"name": "api", "projected": {"defaultMode": 0o640, "sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"configMap": {"name": "kube-root-ca.crt",
                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                            "fieldPath": "metadata.namespace"}}]}}]}},
                    {"name": "info", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "mem", "resourceFieldRef": {"containerName": "c",
                                                             "resource": "limits.memory",
                                                             "divisor": "1Mi"}}]}},
                    {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o600,
                                                  "items": [{"key": "k", "path": "sub/k",
                                                             "mode": 0o444}]}},
                    {"name": "opt", "secret": {"secretName": "absent", "optional": True}}]}}


async def test_setup_volumes_projected_downward_items_and_token_cache(tmp_path: Path):
    objects = {("configmaps", "kube-root-ca.crt"): {"data": {"ca.crt": "PEM"}},
               ("configmaps", "cfg"): {"data": {"k": "v", "other": "o"}, "immutable": True,
                                       "metadata": {"uid": "c1"}}}
    reads = []

    async def get(kind, ns, name):
        reads.append((kind, name))
        return objects.get((kind, name))

    client = FakeClient()
    manager = VolumeManager(client)
    paths = await setup_volumes(_pod(), tmp_path, get, manager=manager)
    api = Path(paths["api"])
    assert (api / "token").read_text() == "tok1"
    assert (api / "ca.crt").read_text() == "PEM" and (api / "namespace").read_text() == "ns"
    assert os.stat(api / "token").st_mode & 0o777 == 0o640
    kind, ns, name, sub, body = client.requests[0]
    assert (kind, ns, name, sub) == ("serviceaccounts", "ns", "robot", "token")
    assert body["spec"]["boundObjectRef"] == {"apiVersion": "v1", "kind": "Pod", "name": "p",
                                              "uid": "uid-1"}
    assert body["spec"]["expirationSeconds"] == 3607
    info = Path(paths["info"])
    assert (info / "labels").read_text() == 'a="x\\"y"\nb="2"'
    assert (info / "mem").read_text() == "64"
    cfg = Path(paths["cfg"])
    assert (cfg / "sub" / "k").read_text() == "v" and not (cfg / "other").exists()
    assert os.stat(cfg / "sub" / "k").st_mode & 0o777 == 0o444
    assert all(p.name.startswith("..") for p in Path(paths["opt"]).iterdir())
    # a second sync: the token is reused, the immutable ConfigMap is not read again
    reads.clear()
    await setup_volumes(_pod(), tmp_path, get, manager=manager)
    assert len(client.requests) == 1
    assert ("configmaps", "cfg") not in reads and ("configmaps", "kube-root-ca.crt") in reads


def test_token_refresh_after_80_percent():
    tm = TokenManager(None)
    tm.MAX_JITTER = 0.0
    assert not tm.requires_refresh(0, 1000, 790)
    assert tm.requires_refresh(0, 1000, 801)
    assert tm.requires_refresh(0, 10 * 86400, 86401)


async def test_token_refresh_failure_keeps_a_valid_token():
    now = [0.0]

    class Failing(FakeClient):
        fail = False

        async def create(self, *a, **kw):
            if self.fail:
                from minik8s.api.errors import StatusError
                raise StatusError("boom")
            return await super().create(*a, **kw)

    client = Failing()
    tm = TokenManager(client, clock=lambda: now[0])
    pod = _pod()
    first = await tm.token(pod, "", 3600)
    client.fail = True
    now[0] = 4_000_000_000.0 - 10  # past 80% of its life (exp 2100), not expired
    tm._tokens[next(iter(tm._tokens))] = (first, 0.0, 4_000_000_000.0)
    assert await tm.token(pod, "", 3600) == first
    now[0] = 4_000_000_001.0
    with pytest.raises(ContainerConfigError, match="failed to fetch token"):
        await tm.token(pod, "", 3600)


def test_subpath_binds_the_resolved_file(tmp_path: Path):
    target = tmp_path / "vol"
    write_atomic(target, {"k": (b"1", 0o644)})
    mounts = container_mounts({"name": "c", "volumeMounts": [
        {"name": "v", "mountPath": "/etc/k", "subPath": "k"}]}, {"v": str(target)})
    source = mounts[0].host_path
    assert source == os.path.realpath(target / "k") and DATA_DIR not in source
    assert source.startswith(str(target.resolve()) + "/..")


def test_subpath_through_a_planted_symlink_is_refused(tmp_path: Path):
    """A container that made ``evil -> /etc`` (or a link mid-path) in its emptyDir gets
    CreateContainerConfigError on its next start, not the host's /etc; nothing is created
    outside the volume."""
    vol = tmp_path / "empty"
    vol.mkdir()
    outside = tmp_path / "host"
    (outside / "etc").mkdir(parents=True)
    (vol / "evil").symlink_to(outside / "etc")
    (vol / "up").symlink_to("..")
    (vol / "dangling").symlink_to(outside / "nothing-yet")

    def mount(sub):
        return container_mounts({"name": "c", "volumeMounts": [
            {"name": "v", "mountPath": "/m", "subPath": sub}]}, {"v": str(vol)})

    for sub in ("evil", "evil/shadow", "evil/new/deeper", "up/host", "up/x/y", "dangling",
                "dangling/z"):
        with pytest.raises(ContainerConfigError, match="escapes the volume"):
            mount(sub)
    assert sorted(os.listdir(outside / "etc")) == [] and not (outside / "nothing-yet").exists()
    assert sorted(os.listdir(tmp_path)) == ["empty", "host"]
    for sub in ("../x", "/etc", "a/../../x"):
        with pytest.raises(ContainerConfigError, match="invalid subPath"):
            mount(sub)


def test_subpath_inside_the_volume_is_created_with_its_mode(tmp_path: Path):
    vol = tmp_path / "empty"
    vol.mkdir()
    os.chmod(vol, 0o777)
    (vol / "link").symlink_to("real")  # a link that stays inside is fine
    (vol / "real").mkdir()
    [m] = container_mounts({"name": "c", "volumeMounts": [
        {"name": "v", "mountPath": "/m", "subPath": "a/b/c"}]}, {"v": str(vol)})
    assert m.host_path == str(vol.resolve() / "a" / "b" / "c")
    assert os.stat(m.host_path).st_mode & 0o777 == 0o777
    [m] = container_mounts({"name": "c", "volumeMounts": [
        {"name": "v", "mountPath": "/m", "subPath": "link/x"}]}, {"v": str(vol)})
    assert m.host_path == str(vol.resolve() / "real" / "x") and os.path.isdir(m.host_path)


async def test_file_modes_keep_only_permission_bits(tmp_path: Path):
    """The second guard behind validation: no setuid/setgid/sticky file on the node."""
    async def get(kind, ns, name):
        return {"data": {"k": "dg==", "j": "dw=="}}

    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {"volumes": [
        {"name": "s", "secret": {"secretName": "s", "defaultMode": 0o6755,
                                 "items": [{"key": "k", "path": "k", "mode": 0o4755},
                                           {"key": "j", "path": "j"}]}},
        {"name": "d", "downwardAPI": {"items": [{"path": "n", "mode": 0o2777, "fieldRef": {
            "fieldPath": "metadata.name"}}]}}]}}
    paths = await setup_volumes(pod, tmp_path, get)
    assert os.stat(Path(paths["s"]) / "k").st_mode & 0o7777 == 0o755
    assert os.stat(Path(paths["s"]) / "j").st_mode & 0o7777 == 0o755
    assert os.stat(Path(paths["d"]) / "n").st_mode & 0o7777 == 0o777
    bad = {"metadata": {"name": "p", "uid": "u"}, "spec": {"volumes": [
        {"name": "s", "secret": {"secretName": "s", "defaultMode": "0644"}}]}}
    with pytest.raises(ContainerConfigError, match="invalid file mode"):
        await setup_volumes(bad, tmp_path, get)


async def test_immutable_cache_is_per_pod_and_forgotten_with_it(tmp_path: Path):
    """A deleted-and-recreated immutable Secret reaches new pods; the cache holds only the
    entries of pods still known."""
    current = {"data": {"k": base64.b64encode(b"old").decode()}, "immutable": True,
               "metadata": {"uid": "s1"}}
    reads = []

    async def get(kind, ns, name):
        reads.append(name)
        return current

    def pod(uid):
        return {"metadata": {"name": uid, "namespace": "ns", "uid": uid}, "spec": {
            "volumes": [{"name": "s", "secret": {"secretName": "s"}}]}}

    manager = VolumeManager(FakeClient())
    paths = await setup_volumes(pod("a"), tmp_path / "a", get, manager=manager)
    await setup_volumes(pod("a"), tmp_path / "a", get, manager=manager)
    assert reads == ["s"]  # read once for pod a
    current = {"data": {"k": base64.b64encode(b"new").decode()}, "immutable": True,
               "metadata": {"uid": "s2"}}  # deleted and recreated
    new_paths = await setup_volumes(pod("b"), tmp_path / "b", get, manager=manager)
    assert (Path(new_paths["s"]) / "k").read_text() == "new"
    assert (Path(paths["s"]) / "k").read_text() == "old"  # pod a keeps what it started with
    manager.forget_pod("a")
    manager.forget_pod("b")
    assert manager._immutable == {}


def test_pods_dir_is_private(tmp_path: Path):
    pods = tmp_path / "pods"
    make_pod_dir(pods / "uid-1")
    assert os.stat(pods).st_mode & 0o777 == 0o700 and (pods / "uid-1").is_dir()
    os.chmod(pods, 0o755)  # made by an older kubelet
    make_pod_dir(pods / "uid-2")
    assert os.stat(pods).st_mode & 0o777 == 0o700
