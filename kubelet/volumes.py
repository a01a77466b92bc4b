"""Pod volumes as host directories bind-mounted into the pod's containers.

Each volume that the kubelet materialises lives under ``<pod dir>/volumes/<name>``, so
removing the pod dir removes them all (hostPath is the exception: it is the host's own
path). ``medium: Memory`` emptyDirs are plain directories: a tmpfs would need a mount the
kubelet would then have to track and unmount.

ConfigMap, Secret, downwardAPI and projected volumes (the service-account token volume
among them) are written by ``write_atomic``, Kubernetes' AtomicWriter: the files go into a
fresh timestamped directory ``..<time>``, the symlink ``..data`` is switched to it with one
rename, and each visible name is a symlink through ``..data``; a reader inside the container
sees either every old file or every new one, never a mix or half a file. Every sync rewrites
them when their source changed, so the periodic resync (``--sync-frequency``, 30 s) brings a
ConfigMap or Secret change to the files within a minute; an ``immutable`` one is read once.
A ``subPath`` mount binds the file the symlinks resolve to at container start, so it keeps
the content it started with, as in Kubernetes.

Service-account tokens come from the API server's TokenRequest, bound to the pod, and are
cached by ``TokenManager`` until 80% of their lifetime has passed (Kubernetes' kubelet token
manager), so the API server signs one token per pod per refresh, not one per sync.

A ``persistentVolumeClaim`` volume is a Docker named volume, ``minik8s-pvc-<ns>-<claim>``,
which Docker creates on first mount and keeps when pods come and go: the data lives on this
node, so the first kubelet to mount a claim binds it here (annotation ``minik8s.io/node``)
and the scheduler sends every later pod of that claim back. The volume outlives the claim
(nothing deletes it yet: ``docker volume rm`` by name)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import posixpath
import random
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from kubelet.envvars import ContainerConfigError, ObjectGetter, resource_field_value
from kubelet.runtime.base import Mount
from minik8s.api.errors import StatusError
from minik8s.api.meta import Obj

log = logging.getLogger(__name__)

DATA_DIR = "..data"
Payload = dict[str, tuple[bytes, int]]  # relative path -> (content, mode)

# Written on a claim by the kubelet that binds it; the scheduler's VolumeBinding filter reads
# the same key (scheduler.plugins.volumes.CLAIM_NODE_ANNOTATION: daemons share no imports).
CLAIM_NODE_ANNOTATION = "minik8s.io/node"


def volume_dir(pod_dir: Path, name: str) -> Path:
    return pod_dir / "volumes" / name


def make_pod_dir(pod_dir: Path) -> None:
    """Create the pod's directory, inside a pods dir only root may enter (0700, set again
    when it exists with another mode): Secret volumes and service-account tokens live
    below it, and their files are 0644 by default. Containers see only what is
    bind-mounted, so the modes above the mounts do not concern them."""
    pods_dir = pod_dir.parent
    pods_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if pods_dir.stat().st_mode & 0o777 != 0o700:
        os.chmod(pods_dir, 0o700)
    pod_dir.mkdir(exist_ok=True)


def _items_payload(data: dict[str, bytes], source: Obj, what: str,
                   default_mode: int) -> Payload:
    """The files of a ConfigMap/Secret (volume or projection): every key, or ``items``
    (key -> path, with their own mode); a missing key is an error unless ``optional``."""
    items = source.get("items")
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out: Payload = {}
    for item in items:
        key = item.get("key")
        if key not in data:
            if source.get("optional"):
                continue
            raise ContainerConfigError(f"configmap references non-existent config key: {key}"
                                       if what == "configmaps" else
                                       f"references non-existent secret key: {key}")
        out[item.get("path") or key] = (data[key], file_mode(item.get("mode"), default_mode))
    return out


def file_mode(value: Any, default: int) -> int:
    """A file mode from a volume spec: permission bits only. Validation already refuses
    anything outside 0..0777; this is the second guard, so that no spec reaching the kubelet
    another way can plant a setuid or setgid file on the node."""
    if value is None:
        return default & 0o777
    if not isinstance(value, int) or isinstance(value, bool):
        raise ContainerConfigError(f"invalid file mode {value!r}")
    return value & 0o777


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


# --- the atomic writer ----------------------------------------------------------------------


def _clean_path(rel: str) -> str:
    """A payload path as Kubernetes' validation allows it: relative, no ``..`` element, not
    starting with ``..`` (names of the writer's own entries)."""
    if not rel or os.path.isabs(rel) or rel.startswith(".."):
        raise ContainerConfigError(f"invalid volume file path {rel!r}")
    norm = posixpath.normpath(rel)
    if any(part == ".." for part in norm.split("/")) or norm.startswith(".."):
        raise ContainerConfigError(f"invalid volume file path {rel!r}")
    return norm


def _current_files(ts_dir: Path) -> Payload:
    out: Payload = {}
    for root, _dirs, names in os.walk(ts_dir):
        for n in names:
            p = Path(root) / n
            try:
                out[str(p.relative_to(ts_dir))] = (p.read_bytes(), p.stat().st_mode & 0o7777)
            except OSError:
                continue
    return out


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def write_atomic(target: Path, payload: Payload) -> bool:
    """Make ``target`` show exactly ``payload`` (Kubernetes' AtomicWriter); whether anything
    was written. Visible names are symlinks ``name -> ..data/name``; ``..data`` points at a
    timestamped directory holding this version, switched by one ``rename``."""
    files = {_clean_path(rel): (content, file_mode(mode, 0o644))
             for rel, (content, mode) in payload.items()}
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / DATA_DIR
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tops = {rel.split("/", 1)[0] for rel in files}
    visible_ok = all((target / t).is_symlink() and os.readlink(target / t) == f"{DATA_DIR}/{t}"
                     for t in tops)
    stale = [e for e in target.iterdir() if not e.name.startswith("..") and e.name not in tops]
    if (old is not None and visible_ok and not stale
            and _current_files(target / old) == files):
        return False
    stamp = datetime.now(timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.")
    ts_dir = Path(tempfile.mkdtemp(prefix=stamp, dir=target))
    os.chmod(ts_dir, 0o755)
    for rel, (content, mode) in files.items():
        path = ts_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)
        os.chmod(path, mode)
    tmp_link = target / f"{DATA_DIR}_tmp"
    tmp_link.unlink(missing_ok=True)
    os.symlink(ts_dir.name, tmp_link)
    os.rename(tmp_link, data_link)  # the switch: atomic on one filesystem
    for top in tops:
        link = target / top
        if link.is_symlink() and os.readlink(link) == f"{DATA_DIR}/{top}":
            continue
        _remove(link)  # a file from before the writer, or a stale link
        os.symlink(f"{DATA_DIR}/{top}", link)
    for entry in stale:
        _remove(entry)
    if old and old != ts_dir.name and old.startswith(".."):
        shutil.rmtree(target / old, ignore_errors=True)
    return True


# --- service-account tokens ---------------------------------------------------------------


class TokenManager:
    """Tokens for projected ``serviceAccountToken`` sources, one per (pod, audience,
    lifetime), asked of the API server (TokenRequest bound to the pod) and reused until
    80% of their lifetime has passed or 24 hours, with a little jitter, as the kubelet's
    token manager does. When a refresh fails, a token that has not expired is kept."""

    MAX_TTL = 24 * 3600.0
    MAX_JITTER = 10.0

    def __init__(self, client: Any, clock: Callable[[], float] = time.time):
        self.client = client
        self.clock = clock
        self._tokens: dict[tuple[str, ...], tuple[str, float, float]] = {}  # token, iat, exp

    def requires_refresh(self, iat: float, exp: float, now: float) -> bool:
        jitter = random.uniform(0, self.MAX_JITTER)
        ttl = exp - iat
        return now > iat + self.MAX_TTL - jitter or now > exp - ttl * 0.2 - jitter

    async def token(self, pod: Obj, audience: str, expiration: int) -> str:
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        ns, sa = md.get("namespace") or "default", spec.get("serviceAccountName") or "default"
        key = (md.get("uid", ""), ns, sa, audience, str(expiration))
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and not self.requires_refresh(cached[1], cached[2], now):
            return cached[0]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience] if audience else [],
                         "expirationSeconds": int(expiration),
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                            "name": md.get("name"), "uid": md.get("uid")}}}
        try:
            tr = await self.client.create("serviceaccounts", body, ns, subresource="token",
                                          name=sa)
            token = (tr.get("status") or {})["token"]
            exp = _parse_time((tr.get("status") or {}).get("expirationTimestamp")) or \
                now + int(expiration)
        except (StatusError, KeyError, TypeError, OSError) as exc:
            if cached is not None and now < cached[2]:
                log.warning("refreshing the token of pod %s/%s failed (kept the current "
                            "one): %s", ns, md.get("name"), exc)
                return cached[0]
            raise ContainerConfigError(f'failed to fetch token: {exc}') from None
        iat = exp - int((tr.get("spec") or {}).get("expirationSeconds") or expiration)
        self._tokens[key] = (token, iat, exp)
        return token

    def forget_pod(self, uid: str) -> None:
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class VolumeManager:
    """What volume setup keeps between syncs: the token cache and the immutable
    ConfigMaps and Secrets already read (an ``immutable`` object never changes, so it is
    not read again). The latter are remembered per pod, as the kubelet's caching object
    manager registers them per pod: a pod keeps what it started with, a new pod reads the
    object afresh (it may have been deleted and recreated with other content), and a pod's
    entries go with it (``forget_pod``), so the cache is bounded by the pods on the node."""

    def __init__(self, client: Any, clock: Callable[[], float] = time.time):
        self.tokens = TokenManager(client, clock)
        self._immutable: dict[tuple[str, str, str, str], Obj] = {}  # pod uid, kind, ns, name

    async def get(self, get: ObjectGetter, pod_uid: str, kind: str, ns: str,
                  name: str) -> Obj | None:
        key = (pod_uid, kind, ns, name)
        if key in self._immutable:
            return self._immutable[key]
        obj = await get(kind, ns, name)
        if obj is not None and obj.get("immutable") is True:
            self._immutable[key] = obj
        return obj

    def forget_pod(self, uid: str) -> None:
        self.tokens.forget_pod(uid)
        for key in [k for k in self._immutable if k[0] == uid]:
            del self._immutable[key]


# --- payloads -------------------------------------------------------------------------------


def _format_map(m: dict[str, Any]) -> str:
    """Labels/annotations as the downward API writes them: ``key="value"`` lines, sorted."""
    return "\n".join(f"{k}={json.dumps(str(m[k]), ensure_ascii=False)}" for k in sorted(m))


def _downward_value(pod: Obj, item: Obj) -> bytes:
    md = pod.get("metadata") or {}
    if isinstance(item.get("fieldRef"), dict):
        path = item["fieldRef"].get("fieldPath", "")
        simple = {"metadata.name": md.get("name"), "metadata.namespace": md.get("namespace"),
                  "metadata.uid": md.get("uid")}
        if path in simple:
            return str(simple[path] or "").encode()
        if path in ("metadata.labels", "metadata.annotations"):
            return _format_map(md.get(path.split(".")[1]) or {}).encode()
        for kind in ("labels", "annotations"):
            prefix = f"metadata.{kind}['"
            if path.startswith(prefix) and path.endswith("']"):
                return str((md.get(kind) or {}).get(path[len(prefix):-2], "")).encode()
        raise ContainerConfigError(f"unsupported downward API fieldPath {path!r}")
    if isinstance(item.get("resourceFieldRef"), dict):
        ref = item["resourceFieldRef"]
        name = ref.get("containerName") or ""
        containers = (pod.get("spec") or {}).get("containers") or []
        container = next((c for c in containers if c.get("name") == name), None)
        if container is None:
            raise ContainerConfigError(f"resourceFieldRef: no container {name!r}")
        return resource_field_value(container, ref).encode()
    raise ContainerConfigError(f"downward API item {item.get('path')!r} has no source")


def _downward_payload(pod: Obj, source: Obj, default_mode: int) -> Payload:
    out: Payload = {}
    for item in source.get("items") or []:
        out[item.get("path") or ""] = (_downward_value(pod, item),
                                       file_mode(item.get("mode"), default_mode))
    return out


async def _object_payload(kind: str, source: Obj, ns: str, get: Any,
                          default_mode: int) -> Payload:
    name = source.get("name") or source.get("secretName") or ""
    obj = await get(kind, ns, name)
    if obj is None:
        if source.get("optional"):
            return {}
        word = "configmap" if kind == "configmaps" else "secret"
        raise ContainerConfigError(f'{word} "{name}" not found')
    return _items_payload(_decoded(obj, kind == "secrets"), source, kind, default_mode)


async def _projected_payload(pod: Obj, source: Obj, ns: str, get: Any,
                             tokens: TokenManager | None) -> Payload:
    default_mode = file_mode(source.get("defaultMode"), 0o644)
    out: Payload = {}
    for src in source.get("sources") or []:
        if isinstance(src.get("configMap"), dict):
            out.update(await _object_payload("configmaps", src["configMap"], ns, get,
                                             default_mode))
        elif isinstance(src.get("secret"), dict):
            out.update(await _object_payload("secrets", src["secret"], ns, get, default_mode))
        elif isinstance(src.get("downwardAPI"), dict):
            out.update(_downward_payload(pod, src["downwardAPI"], default_mode))
        elif isinstance(src.get("serviceAccountToken"), dict):
            sat = src["serviceAccountToken"]
            if tokens is None:
                raise ContainerConfigError("service-account tokens are not available here")
            token = await tokens.token(pod, sat.get("audience") or "",
                                       int(sat.get("expirationSeconds") or 3600))
            out[sat.get("path") or "token"] = (token.encode(), default_mode)
    return out


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


async def _payload(pod: Obj, vol: Obj, ns: str, get: Any,
                   manager: VolumeManager | None) -> Payload | None:
    """The files of a volume the atomic writer fills; None for other kinds."""
    def mode_of(src: Obj) -> int:
        return file_mode(src.get("defaultMode"), 0o644)

    if isinstance(vol.get("configMap"), dict):
        return await _object_payload("configmaps", vol["configMap"], ns, get,
                                     mode_of(vol["configMap"]))
    if isinstance(vol.get("secret"), dict):
        return await _object_payload("secrets", vol["secret"], ns, get, mode_of(vol["secret"]))
    if isinstance(vol.get("downwardAPI"), dict):
        return _downward_payload(pod, vol["downwardAPI"], mode_of(vol["downwardAPI"]))
    if isinstance(vol.get("projected"), dict):
        return await _projected_payload(pod, vol["projected"], ns, get,
                                        manager.tokens if manager is not None else None)
    return None


async def setup_volumes(pod: Obj, pod_dir: Path, get: ObjectGetter, *, client: Any = None,
                        node_name: str = "",
                        manager: VolumeManager | None = None) -> dict[str, str]:
    """Make (or refresh) every volume of the pod; volume name -> host path (or, for a
    claim, the name of its Docker volume). ``ContainerConfigError`` when a non-optional
    ConfigMap/Secret or a claim is missing. ``client`` lets claims be bound to ``node_name``;
    ``manager`` (kept by the caller across syncs) supplies service-account tokens and
    remembers immutable ConfigMaps/Secrets."""
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    uid = (pod.get("metadata") or {}).get("uid") or ""

    async def getter(kind: str, namespace: str, name: str) -> Obj | None:
        if manager is None:
            return await get(kind, namespace, name)
        return await manager.get(get, uid, kind, namespace, name)

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
        payload = await _payload(pod, vol, ns, getter, manager)
        if payload is not None:
            await asyncio.to_thread(write_atomic, target, payload)
        else:
            # emptyDir, and anything unsupported, is an empty directory of the pod
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, 0o777)
        paths[name] = str(target)
    return paths


def subpath_source(volume: str, sub: str, mount_name: str = "") -> str:
    """The host path a ``subPath`` mount binds: ``sub`` inside the volume, resolved through
    symlinks and refused when it leaves the volume (a container can plant ``evil -> /etc``
    in its emptyDir and ask for ``subPath: evil`` on its next start: CVE-2017-1002101).
    A missing path is made a directory (with the volume's mode, as Kubernetes' SafeMakeDir)
    one component at a time below an open, checked directory, never following a symlink,
    so the creation cannot wander out of the volume either. What remains, as in Kubernetes
    before it bind-mounted the opened fd: a path swapped for a symlink between this check
    and Docker's mount, by another container of the pod that shares the volume."""
    norm = posixpath.normpath(sub)
    if os.path.isabs(sub) or norm == ".." or norm.startswith("../"):
        raise ContainerConfigError(f"invalid subPath {sub!r}")
    root = os.path.realpath(volume)

    def inside(path: str) -> str:
        real = os.path.realpath(path)
        if os.path.commonpath([real, root]) != root:
            raise ContainerConfigError(f'subPath "{sub}" of volumeMount "{mount_name}" '
                                       f"escapes the volume")
        return real

    parts = [p for p in norm.split("/") if p not in ("", ".")]
    i = len(parts)  # the longest existing prefix is checked; the rest is created below it
    while i > 0 and not os.path.lexists(os.path.join(root, *parts[:i])):
        i -= 1
    base = inside(os.path.join(root, *parts[:i]))
    if i == len(parts):
        return base
    perm = os.stat(root).st_mode & 0o777
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[i:]:
            try:
                os.mkdir(part, perm, dir_fd=fd)
                made = True
            except FileExistsError:
                made = False  # made meanwhile: the O_NOFOLLOW open below refuses a symlink
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise ContainerConfigError(f'subPath "{sub}" of volumeMount "{mount_name}": '
                                           f"cannot create {part!r}: {exc.strerror}") from None
            os.close(fd)
            fd = nxt
            if made:
                os.fchmod(fd, perm)  # the volume's mode, not narrowed by the umask
    finally:
        os.close(fd)
    return inside(os.path.join(base, *parts[i:]))


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
            # Bind what the atomic writer's symlinks resolve to now: the container keeps
            # this version of the file (no updates through a subPath, as in Kubernetes).
            host = subpath_source(host, sub, vm.get("name", ""))
        mounts.append(Mount(host, vm.get("mountPath", ""), bool(vm.get("readOnly"))))
    return mounts


__all__ = ["setup_volumes", "container_mounts", "subpath_source", "volume_dir", "make_pod_dir",
           "bind_claim", "claim_volume_name", "CLAIM_NODE_ANNOTATION", "write_atomic",
           "file_mode", "TokenManager", "VolumeManager", "DATA_DIR"]
