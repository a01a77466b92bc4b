"""Pod volumes as host directories bind-mounted into the pod's containers.

Each volume that the kubelet materialises lives under ``<pod dir>/volumes/<name>``, so
removing the pod dir removes them all (hostPath is the exception: it is the host's own
path). ConfigMap and Secret volumes are written as files and rewritten on every sync, which
the periodic resync turns into "updated within a minute of a change"; a file is replaced by
rename, so a reader never sees half a file. ``medium: Memory`` emptyDirs are plain
directories: a tmpfs would need a mount the kubelet would then have to track and unmount.

A ``persistentVolumeClaim`` volume is a Docker named volume, ``minik8s-pvc-<ns>-<claim>``,
which Docker creates on first mount and keeps when pods come and go: the data lives on this
node, so the first kubelet to mount a claim binds it here (annotation ``minik8s.io/node``)
and the scheduler sends every later pod of that claim back. The volume outlives the claim
(nothing deletes it yet: ``docker volume rm`` by name)."""

from __future__ import annotations

import base64
import os
import posixpath
from pathlib import Path
from typing import Any

from kubelet.envvars import ContainerConfigError, ObjectGetter
from kubelet.runtime.base import Mount
from minik8s.api.meta import Obj

# Written on a claim by the kubelet that binds it; the scheduler's VolumeBinding filter reads
# the same key (scheduler.plugins.volumes.CLAIM_NODE_ANNOTATION: daemons share no imports).
CLAIM_NODE_ANNOTATION = "minik8s.io/node"


def volume_dir(pod_dir: Path, name: str) -> Path:
    return pod_dir / "volumes" / name


def _items_payload(data: dict[str, bytes], source: Obj, what: str, name: str) -> dict[str, tuple[bytes, int | None]]:
    items = source.get("items")
    if not items:
        return {k: (v, None) for k, v in data.items()}
    out: dict[str, tuple[bytes, int | None]] = {}
    for item in items:
        key = item.get("key")
        if key not in data:
            if source.get("optional"):
                continue
            raise ContainerConfigError(f"configmap references non-existent config key: {key}"
                                       if what == "configmaps" else
                                       f"references non-existent secret key: {key}")
        out[item.get("path") or key] = (data[key], item.get("mode"))
    return out


def _decoded(obj: Obj, secret: bool) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if secret:
        for k, v in (obj.get("data") or {}).items():
            out[k] = base64.b64decode(v or "")
        for k, v in (obj.get("stringData") or {}).items():
            out[k] = str(v).encode()
    else:
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v or "")
        for k, v in (obj.get("data") or {}).items():
            out[k] = str(v).encode()
    return out


def _write_files(target: Path, files: dict[str, tuple[bytes, int | None]], default_mode: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    wanted: set[Path] = set()
    for rel, (content, mode) in files.items():
        rel = posixpath.normpath(rel)
        if rel.startswith("..") or rel.startswith("/"):
            continue  # Kubernetes' validation forbids these; never write outside the volume
        path = target / rel
        wanted.add(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        perm = mode if mode is not None else default_mode
        try:
            if path.read_bytes() == content and (path.stat().st_mode & 0o777) == perm:
                continue
        except OSError:
            pass
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, perm)
        os.replace(tmp, path)
    # keys removed from the source disappear from the volume
    for root, _dirs, names in os.walk(target, topdown=False):
        for n in names:
            p = Path(root) / n
            if p not in wanted:
                p.unlink(missing_ok=True)


def claim_volume_name(namespace: str, claim: str) -> str:
    """The Docker named volume backing a PersistentVolumeClaim on this node."""
    return f"minik8s-pvc-{namespace}-{claim}"


async def bind_claim(pod: Obj, source: Obj, get: ObjectGetter, client: Any,
                     node_name: str) -> str:
    """The Docker volume of a ``persistentVolumeClaim`` volume. An unbound claim is bound to
    this node first (annotation, ``volumeName``, then ``Bound`` status); a claim bound to
    another node cannot be mounted here. Docker creates the named volume on first use."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    name = source.get("claimName") or ""
    claim = await get("persistentvolumeclaims", ns, name)
    if claim is None:
        raise ContainerConfigError(f'persistentvolumeclaim "{name}" not found')
    volume = claim_volume_name(ns, name)
    md = claim.get("metadata") or {}
    bound_to = (md.get("annotations") or {}).get(CLAIM_NODE_ANNOTATION)
    if bound_to and bound_to != node_name:
        raise ContainerConfigError(f'persistentvolumeclaim "{name}" is bound to node '
                                   f'"{bound_to}"')
    if client is not None and (not bound_to or
                               (claim.get("status") or {}).get("phase") != "Bound"):
        spec = claim.get("spec") or {}
        if not bound_to:
            claim = await client.patch("persistentvolumeclaims", name, {
                "metadata": {"annotations": {CLAIM_NODE_ANNOTATION: node_name},
                             "resourceVersion": md.get("resourceVersion")},
                "spec": {"volumeName": spec.get("volumeName") or volume}}, ns)
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        await client.patch("persistentvolumeclaims", name, {"status": {
            "phase": "Bound", "accessModes": spec.get("accessModes") or [],
            "capacity": {"storage": storage} if storage else {}}}, ns,
            subresource="status")
    return volume


async def setup_volumes(pod: Obj, pod_dir: Path, get: ObjectGetter, *, client: Any = None,
                        node_name: str = "") -> dict[str, str]:
    """Make (or refresh) every volume of the pod; volume name -> host path (or, for a
    claim, the name of its Docker volume). ``ContainerConfigError`` when a non-optional
    ConfigMap/Secret or a claim is missing. ``client`` lets claims be bound to ``node_name``."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    paths: dict[str, str] = {}
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        name = vol.get("name")
        if not name:
            continue
        if isinstance(vol.get("persistentVolumeClaim"), dict):
            paths[name] = await bind_claim(pod, vol["persistentVolumeClaim"], get, client,
                                           node_name)
            continue
        if "hostPath" in vol:
            hp = vol["hostPath"] or {}
            path = hp.get("path") or "/"
            kind = hp.get("type") or ""
            if kind == "DirectoryOrCreate":
                os.makedirs(path, exist_ok=True)
            elif kind == "FileOrCreate" and not os.path.exists(path):
                os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
                Path(path).touch()
            paths[name] = path
            continue
        target = volume_dir(pod_dir, name)
        for kind, key in (("configmaps", "configMap"), ("secrets", "secret")):
            if key in vol:
                src = vol[key] or {}
                obj_name = src.get("name") or src.get("secretName") or ""
                obj = await get(kind, ns, obj_name)
                if obj is None:
                    if not src.get("optional"):
                        word = "configmap" if kind == "configmaps" else "secret"
                        raise ContainerConfigError(f'{word} "{obj_name}" not found')
                    files: dict[str, tuple[bytes, int | None]] = {}
                else:
                    files = _items_payload(_decoded(obj, kind == "secrets"), src, kind, obj_name)
                mode = src.get("defaultMode")
                _write_files(target, files, 0o644 if mode is None else int(mode))
                break
        else:
            # emptyDir, and anything unsupported, is an empty directory of the pod
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, 0o777)
        paths[name] = str(target)
    return paths


def container_mounts(container: Obj, volume_paths: dict[str, str]) -> list[Mount]:
    mounts = []
    for vm in container.get("volumeMounts") or []:
        host = volume_paths.get(vm.get("name", ""))
        if host is None:
            raise ContainerConfigError(f"cannot find volume \"{vm.get('name')}\" to mount "
                                       f"into container \"{container.get('name')}\"")
        sub = vm.get("subPath") or ""
        if sub and not os.path.isabs(host):
            raise ContainerConfigError(f"subPath is not supported on volume "
                                       f"\"{vm.get('name')}\" (a persistentVolumeClaim)")
        if sub:
            sub = posixpath.normpath(sub)
            if sub.startswith(".."):
                raise ContainerConfigError(f"invalid subPath {vm.get('subPath')!r}")
            host = os.path.join(host, sub)
            if not os.path.exists(host):
                os.makedirs(host, exist_ok=True)
        mounts.append(Mount(host, vm.get("mountPath", ""), bool(vm.get("readOnly"))))
    return mounts


__all__ = ["setup_volumes", "container_mounts", "volume_dir", "bind_claim",
           "claim_volume_name", "CLAIM_NODE_ANNOTATION"]
