"""Pod workers: the level-triggered ``sync_pod`` that drives one pod's containers toward its
spec, one step per call, from what the runtime shows *now*.

Nothing about a pod's containers is kept only in memory: each sync lists the pod's
containers by its uid label and decides from their labels (kind, container name, attempt)
and states, so a kubelet restarted mid-flight finds the same containers and neither
duplicates nor restarts them. What memory does hold is advisory: the CrashLoopBackOff
schedule, the waiting reason of the last decision (shown in the status), the pod IP of the
current sandbox, and the last status written.

Pods are keyed by uid in a ``WorkQueue``, which hands a key to one worker at a time, so two
syncs of one pod never overlap; informer events, probe changes, container state changes
(a PLEG-style relist of the node's containers) and the periodic resync all just ``enqueue``.
A pod that is gone from the API, or a container whose pod the kubelet does not know, is
cleaned up by the same worker path (``cleanup_pod``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kubelet.config import KubeletConfig
from kubelet.envvars import ContainerConfigError, build_env, expand_command, service_env
from kubelet.probes import ProbeManager, ProbeTarget
from kubelet.runtime.base import (APP, INIT, LABEL_ATTEMPT, LABEL_CONTAINER_NAME, LABEL_HASH,
                                  LABEL_KIND, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
                                  LABEL_POD_UID, SANDBOX, ContainerConfig, ContainerInfo,
                                  ImageInfo)
from kubelet.status import (TERMINAL, ContainerView, image_ref, pod_status, status_patch)
from kubelet.volumes import VolumeManager, container_mounts, make_pod_dir, setup_volumes
from minik8s.api.defaults import image_pull_policy
from minik8s.api.errors import Conflict, NotFound, StatusError
from minik8s.api.meta import Obj
from minik8s.api.quantity import milli_value_of, value_of
from minik8s.client.events import NORMAL, WARNING
from minik8s.runtime.workqueue import REAL_CLOCK, Clock, ShutDown, WorkQueue

log = logging.getLogger(__name__)

SANDBOX_NAME = "POD"
SANDBOX_COMMAND = ["sleep", "2147483647"]
KEEP_DEAD_PER_CONTAINER = 2  # the latest and the one before it (for `logs --previous`)


def fmt_duration(seconds: float) -> str:
    """Go's ``time.Duration`` text for whole seconds: ``10s``, ``1m20s``, ``5m0s``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def spec_hash(container: Obj) -> str:
    """What a running container is checked against: the fields a pod update may change."""
    basis = {k: container.get(k) for k in ("name", "image", "command", "args")}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def _runtime_name(*parts: str) -> str:
    return "mk8s_" + "_".join(p.replace("/", "-") for p in parts)


class WallClock:
    """Epoch seconds (timestamps in status need the wall clock) and asyncio sleep."""

    def now(self) -> float:
        import time
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class Backoff:
    """Kubernetes' per-container restart back-off: the first restart is immediate, then
    ``base`` doubling to ``cap`` between a container's exit and its next start; a container
    that ran for ``reset`` seconds starts over from nothing."""

    def __init__(self, base: float, cap: float, reset: float):
        self.base, self.cap, self.reset = base, cap, reset
        self._delay: dict[tuple[str, str], float] = {}

    def remaining(self, key: tuple[str, str], info: ContainerInfo, now: float) -> float:
        """Seconds to wait before restarting (0: restart now)."""
        started, finished = parse_time(info.started_at), parse_time(info.finished_at)
        if finished is None and info.state == "created":
            finished = parse_time(info.created_at)  # it never started: count from creation
        if started is not None and finished is not None and finished - started >= self.reset:
            self._delay.pop(key, None)
        delay = self._delay.get(key)
        if delay is None or finished is None:
            return 0.0
        return max(0.0, delay - (now - finished))

    def delay(self, key: tuple[str, str]) -> float:
        return self._delay.get(key, self.base)

    def next(self, key: tuple[str, str]) -> None:
        current = self._delay.get(key)
        self._delay[key] = self.base if current is None else min(current * 2, self.cap)

    def forget_pod(self, uid: str) -> None:
        for k in [k for k in self._delay if k[0] == uid]:
            del self._delay[k]


class PodState:
    """What one sync found: the pod's containers grouped by role and name."""

    def __init__(self, infos: list[ContainerInfo]):
        self.sandboxes = sorted((i for i in infos if i.kind == SANDBOX), key=_order)
        self.by_name: dict[tuple[str, str], list[ContainerInfo]] = {}
        for i in infos:
            if i.kind in (INIT, APP):
                self.by_name.setdefault((i.kind, i.container_name), []).append(i)
        for lst in self.by_name.values():
            lst.sort(key=_order)

    @property
    def sandbox(self) -> ContainerInfo | None:
        return self.sandboxes[-1] if self.sandboxes else None

    def history(self, kind: str, name: str) -> list[ContainerInfo]:
        return self.by_name.get((kind, name), [])

    def latest(self, kind: str, name: str) -> ContainerInfo | None:
        h = self.history(kind, name)
        return h[-1] if h else None

    def previous(self, kind: str, name: str) -> ContainerInfo | None:
        h = self.history(kind, name)
        return h[-2] if len(h) > 1 else None

    def all(self) -> list[ContainerInfo]:
        out = list(self.sandboxes)
        for lst in self.by_name.values():
            out.extend(lst)
        return out


def _order(info: ContainerInfo) -> tuple[int, str]:
    return (info.attempt, info.created_at or "")


class PodWorkers:
    def __init__(self, config: KubeletConfig, client: Any, runtime: Any, network: Any,
                 recorder: Any, *, clock: Clock | None = None, host_ip: str = "",
                 probes: ProbeManager | None = None):
        from kubelet.probes import Prober
        self.config = config
        self.client = client
        self.runtime = runtime
        self.network = network
        self.recorder = recorder
        self.clock: Clock = clock or WallClock()
        self.host_ip = host_ip
        self.queue = WorkQueue(f"pods@{config.node_name}",
                               clock=clock or REAL_CLOCK, base_delay=1.0, max_delay=60.0)
        self.probes = probes or ProbeManager(Prober(runtime), clock=self.clock,
                                             on_change=self.enqueue, on_event=self._event)
        self.backoff = Backoff(config.crash_loop_backoff_base, config.crash_loop_backoff_max,
                               config.crash_loop_backoff_reset)
        self.pods: dict[str, Obj] = {}        # uid -> latest pod object seen
        self.last_known: dict[str, Obj] = {}  # uid -> pod, kept after it left the API
        self.waiting: dict[str, dict[str, tuple[str, str]]] = {}  # uid -> name -> reason
        self.pod_ips: dict[str, tuple[str, str]] = {}  # uid -> (sandbox id, ip)
        self.last_status: dict[str, Obj] = {}
        self.observed: dict[str, dict[str, str]] = {}  # uid -> container id -> state seen
        self.synced = asyncio.Event()          # the pod informer has listed once
        self._event_tasks: set[asyncio.Task[None]] = set()
        self._image_cache: dict[str, ImageInfo] = {}
        self.volume_manager = VolumeManager(client)  # tokens, immutable ConfigMaps/Secrets
        # () -> every Service (the kubelet's Services informer), for service env vars;
        # None: no service variables (a kubelet without the informer, unit tests).
        self.services: Any = None

    # --- inputs -------------------------------------------------------------------------

    def enqueue(self, uid: str) -> None:
        self.queue.add(uid)

    def saw_already(self, uid: str, states: dict[str, str]) -> bool:
        """Whether the last sync of the pod ended seeing exactly these containers in
        these states (container id -> state): then a relist that finds them so has
        nothing new to tell it, such as the containers that sync itself started."""
        return self.observed.get(uid) == states

    def pod_added(self, pod: Obj) -> None:
        self._set_pod(pod)

    def pod_updated(self, old: Obj, pod: Obj) -> None:
        if self._own_status_echo(old, pod):
            # the watch bringing back the status this kubelet just wrote: nothing to do,
            # but keep the newest object (and its resourceVersion) for the next sync
            uid = pod["metadata"]["uid"]
            self.pods[uid] = self.last_known[uid] = pod
            return
        self._set_pod(pod)

    def _own_status_echo(self, old: Obj, pod: Obj) -> bool:
        md = pod.get("metadata") or {}
        uid = md.get("uid")
        if not uid or uid not in self.pods or self.last_status.get(uid) is None:
            return False
        if pod.get("status") != self.last_status[uid] or old.get("spec") != pod.get("spec"):
            return False
        skip = ("resourceVersion", "managedFields")
        old_md = old.get("metadata") or {}
        return ({k: v for k, v in md.items() if k not in skip}
                == {k: v for k, v in old_md.items() if k not in skip})

    def pod_deleted(self, pod: Obj) -> None:
        uid = (pod.get("metadata") or {}).get("uid")
        if uid:
            self.pods.pop(uid, None)
            self.last_known[uid] = pod
            self.enqueue(uid)

    def _set_pod(self, pod: Obj) -> None:
        md = pod.get("metadata") or {}
        uid = md.get("uid")
        if not uid:
            return
        if (pod.get("spec") or {}).get("nodeName") != self.config.node_name:
            self.pods.pop(uid, None)  # bound elsewhere: not ours (any more)
        else:
            self.pods[uid] = pod
            self.last_known[uid] = pod
        self.enqueue(uid)

    def _event(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        if self.recorder is None:
            return
        ref = {"kind": "Pod", "apiVersion": "v1", **{k: v for k, v in pod.items()
                                                     if k == "metadata"}}
        task = asyncio.get_running_loop().create_task(
            self.recorder.event(ref, type_, reason, message))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def flush_events(self) -> None:
        while self._event_tasks:
            await asyncio.gather(*list(self._event_tasks), return_exceptions=True)

    # --- running ------------------------------------------------------------------------

    async def run(self) -> None:
        """Worker tasks until cancelled."""
        workers = [asyncio.create_task(self._work(), name=f"pod-worker-{i}")
                   for i in range(max(1, self.config.pod_workers))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self.probes.stop()

    async def _work(self) -> None:
        while True:
            try:
                uid = await self.queue.get()
            except ShutDown:
                return
            try:
                after = await self.sync(uid)
                self.queue.forget(uid)
                if after is not None:
                    self.queue.add_after(uid, after)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sync of pod %s failed: %s", self._describe(uid), exc,
                            exc_info=log.isEnabledFor(logging.DEBUG))
                self.queue.add_rate_limited(uid)
            finally:
                self.queue.done(uid)

    def _describe(self, uid: str) -> str:
        pod = self.pods.get(uid) or self.last_known.get(uid)
        if pod is None:
            return uid
        md = pod["metadata"]
        return f"{md.get('namespace')}/{md.get('name')} ({uid[:8]})"

    async def sync(self, uid: str) -> float | None:
        pod = self.pods.get(uid)
        if pod is None:
            if not self.synced.is_set():
                return 1.0  # the informer has not listed yet: unknown is not "gone"
            await self.cleanup_pod(uid)
            return None
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            await self.terminate_pod(pod)
            return None
        return await self.sync_pod(pod)

    # --- reading the runtime --------------------------------------------------------------

    async def pod_state(self, uid: str) -> PodState:
        listed = await self.runtime.list_containers({LABEL_POD_UID: uid})
        state = PodState(listed)
        # dead containers beyond the latest two of a name (and old sandboxes) go
        doomed = []
        for lst in state.by_name.values():
            doomed += [i for i in lst[:-KEEP_DEAD_PER_CONTAINER] if i.state != "running"]
        doomed += [i for i in state.sandboxes[:-1] if i.state != "running"]
        for info in doomed:
            await self.runtime.remove(info.id)
        if doomed:
            gone = {i.id for i in doomed}
            listed = [i for i in listed if i.id not in gone]
        keep: list[ContainerInfo] = []
        fresh = PodState(listed)
        wanted = set()
        if fresh.sandbox is not None:
            wanted.add(fresh.sandbox.id)
        for lst in fresh.by_name.values():
            wanted.update(i.id for i in lst[-2:])
        for info in listed:
            if info.id in wanted:
                full = await self.runtime.inspect(info.id)
                keep.append(full or info)
            else:
                keep.append(info)
        return PodState(keep)

    async def _refreshed(self, uid: str, state: PodState, ids: list[str]) -> PodState:
        """``state`` with the containers ``ids`` (made or changed by this sync) inspected
        again: what the runtime shows of them now, without listing the whole pod."""
        fresh = await asyncio.gather(*(self.runtime.inspect(cid) for cid in ids))
        if any(info is None for info in fresh):  # gone under us: look at everything again
            return await self.pod_state(uid)
        by_id = {i.id: i for i in state.all()}
        by_id.update((i.id, i) for i in fresh if i is not None)
        return PodState(list(by_id.values()))

    # --- sync ---------------------------------------------------------------------------

    async def sync_pod(self, pod: Obj) -> float | None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        uid = md["uid"]
        policy = spec.get("restartPolicy") or "Always"
        waiting = self.waiting.setdefault(uid, {})
        state = await self.pod_state(uid)
        requeue: list[float] = []
        old_phase = (pod.get("status") or {}).get("phase")

        if old_phase in TERMINAL:
            await self._stop_pod_containers(pod, state, grace=0, sandbox_too=True,
                                            reason=None)
            self.probes.remove_pod(uid)
            return None

        pod_dir = self.config.pod_dir(uid)
        make_pod_dir(pod_dir)
        volume_error = ""
        volume_paths: dict[str, str] = {}
        try:
            volume_paths = await setup_volumes(pod, pod_dir, self._get_object,
                                               client=self.client,
                                               node_name=self.config.node_name,
                                               manager=self.volume_manager)
        except ContainerConfigError as exc:
            volume_error = str(exc)
            self._event(pod, WARNING, "FailedMount", f"MountVolume.SetUp failed: {exc}")
            requeue.append(5.0)

        # --- the sandbox ----------------------------------------------------------------
        sandbox = state.sandbox
        pod_ip = ""
        precreated: dict[str, str] = {}  # app container name -> id, created beside the sandbox
        reserved_ip = ""
        any_ran = any(i.kind in (INIT, APP) for i in state.all())
        if sandbox is None or sandbox.state != "running":
            if sandbox is not None and any_ran:
                # the network namespace is gone: everything in the pod starts over
                self._event(pod, NORMAL, "SandboxChanged",
                            "Pod sandbox changed, it will be killed and re-created.")
                await self._stop_pod_containers(pod, state, grace=0, sandbox_too=False,
                                                reason=None)
                if policy == "Never":
                    await self.network.detach(uid)
                    return await self._write_status(pod, state, "", initialized=True)
            # A new pod's app containers are created while its sandbox starts (they only
            # need the sandbox to exist), and started once the sandbox is wired.
            ahead = [] if any_ran or volume_error or spec.get("initContainers") \
                else list(spec.get("containers") or [])
            sandbox_id = await self._create_sandbox(pod, sandbox, start=not ahead)
            if ahead:
                precreated, reserved_ip = await self._start_sandbox_creating(
                    pod, sandbox_id, ahead, pod_dir, volume_paths)
            try:
                # only the new sandbox changed since the listing above: inspect just it
                state = await self._refreshed(uid, state, [sandbox_id])
                sandbox = state.sandbox
                if sandbox is None or sandbox.state != "running":
                    raise RuntimeError("pod sandbox did not start")
                pod_ip = await self.network.attach(uid, sandbox.pid) or ""
                self.pod_ips[uid] = (sandbox.id, pod_ip)
            except BaseException:
                await self._discard(precreated.values())
                raise
            if pod_ip != reserved_ip:  # built with an address the pod did not get
                stale = [n for n, _ in precreated.items()
                         if _uses_pod_ip(next(c for c in ahead if c["name"] == n))]
                await self._discard(precreated.pop(n) for n in stale)
        cached = self.pod_ips.get(uid)
        if cached is not None and cached[0] == sandbox.id:
            pod_ip = cached[1]
        else:
            pod_ip = await self.network.attach(uid, sandbox.pid) or ""
            self.pod_ips[uid] = (sandbox.id, pod_ip)
        self._write_dns_files(pod, pod_dir, pod_ip)

        # --- init containers, in order ----------------------------------------------------
        init_specs = list(spec.get("initContainers") or [])
        app_ran = any(state.history(APP, c["name"]) for c in spec.get("containers") or [])
        initialized = app_ran
        failed_init = False
        if not initialized:
            initialized = True
            for c in init_specs:
                name = c["name"]
                latest = state.latest(INIT, name)
                if latest is not None and latest.state == "exited" and latest.exit_code == 0:
                    waiting.pop(name, None)
                    continue
                initialized = False
                if latest is not None and latest.state == "running":
                    break
                if latest is not None:  # failed
                    if policy == "Never":
                        waiting.pop(name, None)
                        failed_init = True
                        break
                    wait = self._restart_wait(pod, name, latest, waiting)
                    if wait > 0:
                        requeue.append(wait)
                        break
                if volume_error:
                    waiting[name] = ("PodInitializing", "")
                    break
                await self._start_container(pod, c, INIT, latest, sandbox, pod_ip,
                                            volume_paths, waiting, requeue)
                state = await self.pod_state(uid)
                break

        # --- app containers -----------------------------------------------------------------
        if initialized and not failed_init:
            touched: list[str] = []  # containers this loop started or stopped
            for c in spec.get("containers") or []:
                name = c["name"]
                latest = state.latest(APP, name)
                if latest is not None and latest.state == "running":
                    why = self._kill_reason(pod, c, latest)
                    if why is None:
                        waiting.pop(name, None)
                        continue
                    self._event(pod, NORMAL, "Killing", why)
                    await self.runtime.stop(latest.id, self._grace(pod))
                    touched.append(latest.id)
                    latest = await self.runtime.inspect(latest.id) or latest
                if latest is not None:
                    if not _should_restart(policy, latest):
                        waiting.pop(name, None)
                        continue
                    wait = self._restart_wait(pod, name, latest, waiting)
                    if wait > 0:
                        requeue.append(wait)
                        continue
                if volume_error:
                    waiting[name] = ("ContainerCreating", "")
                    continue
                cid = await self._start_container(pod, c, APP, latest, sandbox, pod_ip,
                                                  volume_paths, waiting, requeue,
                                                  created=precreated.pop(name, None))
                if cid is not None:
                    touched.append(cid)
            if touched:
                state = await self._refreshed(uid, state, touched)
        # made beside the sandbox and not started after all: left, it would count as failed
        await self._discard(precreated.values())

        # --- probes and status ----------------------------------------------------------------
        self._sync_probes(pod, state, sandbox, pod_ip)
        self.observed[uid] = {i.id: i.state for i in state.all()}
        after = await self._write_status(pod, state, pod_ip, initialized=initialized)
        if after is not None:
            requeue.append(after)
        return min(requeue) if requeue else None

    def _kill_reason(self, pod: Obj, c: Obj, info: ContainerInfo) -> str | None:
        uid = pod["metadata"]["uid"]
        want = spec_hash(c)
        if info.labels.get(LABEL_HASH) and info.labels[LABEL_HASH] != want:
            return f"Container {c['name']} definition changed, will be restarted"
        failure = self.probes.failure(uid, c, info.id)
        if failure is not None:
            kind, _ = failure
            return f"Container {c['name']} failed {kind} probe, will be restarted"
        return None

    def _restart_wait(self, pod: Obj, name: str, latest: ContainerInfo,
                      waiting: dict[str, tuple[str, str]]) -> float:
        md = pod["metadata"]
        key = (md["uid"], name)
        wait = self.backoff.remaining(key, latest, self.clock.now())
        if wait > 0:
            delay = self.backoff.delay(key)
            pod_ref = f"{md.get('name')}_{md.get('namespace')}({md['uid']})"
            waiting[name] = ("CrashLoopBackOff", f"back-off {fmt_duration(delay)} restarting "
                             f"failed container={name} pod={pod_ref}")
            self._event(pod, WARNING, "BackOff",
                        f"Back-off restarting failed container {name} in pod {pod_ref}")
            return wait
        return 0.0

    def _grace(self, pod: Obj) -> float:
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        grace = md.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(max(0, grace))

    # --- creating containers ----------------------------------------------------------------

    def _labels(self, pod: Obj, kind: str, name: str, attempt: int) -> dict[str, str]:
        md = pod["metadata"]
        return {LABEL_POD_UID: md["uid"], LABEL_POD_NAME: md.get("name", ""),
                LABEL_POD_NAMESPACE: md.get("namespace", ""), LABEL_CONTAINER_NAME: name,
                **self.config.container_labels, LABEL_KIND: kind, LABEL_ATTEMPT: str(attempt)}

    async def _create_sandbox(self, pod: Obj, previous: ContainerInfo | None, *,
                              start: bool = True) -> str:
        md, spec = pod["metadata"], pod.get("spec") or {}
        attempt = previous.attempt + 1 if previous is not None else 0
        image = self.config.pod_infra_image
        if await self._image(image) is None:
            self._event(pod, WARNING, "FailedCreatePodSandBox",
                        f'Failed to create pod sandbox: pod infra image "{image}" is not '
                        f"present on this node")
            raise RuntimeError(f"pod infra image {image} is not present")
        hostname = (spec.get("hostname") or md.get("name", ""))[:63]
        config = ContainerConfig(
            name=_runtime_name(SANDBOX_NAME, md.get("name", ""), md.get("namespace", ""),
                               md["uid"][:8], str(attempt)),
            image=image, labels=self._labels(pod, SANDBOX, SANDBOX_NAME, attempt),
            command=SANDBOX_COMMAND[:1], args=SANDBOX_COMMAND[1:], network_mode="none",
            ipc_mode="shareable",
            hostname=hostname, init=True, cpu_shares=2, log_max_size="1m", log_max_files=1)
        cid = await self.runtime.create(config)
        if start:
            await self.runtime.start(cid)
        return cid

    async def _start_sandbox_creating(self, pod: Obj, sandbox_id: str, specs: list[Obj],
                                      pod_dir: Path, volume_paths: dict[str, str]
                                      ) -> tuple[dict[str, str], str]:
        """Start the new sandbox while the pod's app containers are created beside it:
        (container name -> id of those created, the address they were made for).

        They need the sandbox to exist, not to run (Docker resolves ``container:`` network
        and IPC modes at start), nor its address, except for a ``status.podIP`` variable:
        that is made with the address reserved for the pod now (``attach`` hands out the
        same one). The mounted resolv.conf and hosts must exist before a create; hosts is
        rewritten in place with the final address once the sandbox is wired. A container
        that cannot be made here (image to pull or missing, a config error, ...) is left
        to the usual path, which reports why."""
        uid = pod["metadata"]["uid"]
        reserve = getattr(self.network, "reserve", None)
        try:
            ip = (await reserve(uid) or "") if reserve is not None else ""
        except Exception as exc:  # attach reports it
            log.debug("reserving an address for %s: %s", self._describe(uid), exc)
            ip = ""
        self._write_dns_files(pod, pod_dir, ip)

        async def make(c: Obj) -> str | None:
            if not ip and _uses_pod_ip(c):
                return None
            return await self._create_container(pod, c, APP, None, sandbox_id, ip,
                                                volume_paths, {}, [], ahead=True)
        results = await asyncio.gather(self.runtime.start(sandbox_id), *map(make, specs),
                                       return_exceptions=True)
        made = {c["name"]: cid for c, cid in zip(specs, results[1:])
                if isinstance(cid, str)}
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                await self._discard(made.values())
                raise r  # cancelled
        if isinstance(results[0], BaseException):
            await self._discard(made.values())
            raise results[0]
        return made, ip

    async def _discard(self, ids: Any) -> None:
        """Remove containers this sync created and will not start."""
        for cid in list(ids):
            try:
                await self.runtime.remove(cid)
            except Exception as exc:
                log.warning("removing unstarted container %s: %s", cid[:12], exc)

    async def _image(self, ref: str) -> ImageInfo | None:
        return await self.runtime.image(ref)

    async def _ensure_image(self, pod: Obj, c: Obj, waiting: dict[str, tuple[str, str]], *,
                            quiet: bool = False) -> ImageInfo | None:
        """The container's image, pulled if the policy says so and pulls are allowed;
        None (with the reason in ``waiting`` and an event) if it cannot be had. ``quiet``:
        None without a word when it would take a pull or is missing."""
        image = c.get("image") or ""
        policy = c.get("imagePullPolicy") or image_pull_policy(image)
        name = c["name"]
        info = await self._image(image)
        allow = self.config.allow_image_pull and policy != "Never"
        if quiet and (info is None or (allow and policy == "Always")):
            return None
        if allow and (policy == "Always" or info is None):
            self._event(pod, NORMAL, "Pulling", f'Pulling image "{image}"')
            try:
                info = await self.runtime.pull(image)
            except Exception as exc:
                msg = f'Failed to pull image "{image}": {exc}'
                waiting[name] = ("ErrImagePull", msg)
                self._event(pod, WARNING, "Failed", msg)
                self._event(pod, WARNING, "Failed", "Error: ErrImagePull")
                return None
            self._event(pod, NORMAL, "Pulled", f'Successfully pulled image "{image}"')
            return info
        if info is None:
            msg = f'Container image "{image}" is not present with pull policy of Never'
            waiting[name] = ("ErrImageNeverPull", msg)
            self._event(pod, WARNING, "ErrImageNeverPull", msg)
            self._event(pod, WARNING, "Failed", "Error: ErrImageNeverPull")
            return None
        self._event(pod, NORMAL, "Pulled",
                    f'Container image "{image}" already present on machine')
        return info

    async def _get_object(self, kind: str, ns: str, name: str) -> Obj | None:
        try:
            return await self.client.get(kind, name, ns)
        except NotFound:
            return None

    async def _start_container(self, pod: Obj, c: Obj, kind: str,
                               latest: ContainerInfo | None, sandbox: ContainerInfo,
                               pod_ip: str, volume_paths: dict[str, str],
                               waiting: dict[str, tuple[str, str]],
                               requeue: list[float], created: str | None = None) -> str | None:
        """Create (unless ``created``, made beside the sandbox already) and start one
        container; the id of the container created, if any."""
        uid, name = pod["metadata"]["uid"], c["name"]
        cid = created or await self._create_container(pod, c, kind, latest, sandbox.id, pod_ip,
                                                      volume_paths, waiting, requeue)
        if cid is None:
            return None
        try:
            await self.runtime.start(cid)
        except Exception as exc:
            waiting[name] = ("RunContainerError", str(exc))
            self._event(pod, WARNING, "Failed", f"Error: {exc}")
            if latest is None:
                self.backoff.next((uid, name))
            requeue.append(1.0)
            return cid
        waiting.pop(name, None)
        self._event(pod, NORMAL, "Started", f"Started container {name}")
        return cid

    async def _create_container(self, pod: Obj, c: Obj, kind: str,
                                latest: ContainerInfo | None, sandbox_id: str, pod_ip: str,
                                volume_paths: dict[str, str],
                                waiting: dict[str, tuple[str, str]], requeue: list[float], *,
                                ahead: bool = False) -> str | None:
        """Create one container; its id, or None if it cannot be made now (the reason in
        ``waiting``). ``ahead`` (beside a starting sandbox): None without a word instead,
        for the usual path to report."""
        md = pod["metadata"]
        uid, name = md["uid"], c["name"]
        attempt = latest.attempt + 1 if latest is not None else 0
        image = await self._ensure_image(pod, c, waiting, quiet=ahead)
        if image is None:
            requeue.append(max(1.0, self.config.crash_loop_backoff_base))
            return None
        try:
            env = await build_env(c, pod, self._get_object, pod_ip=pod_ip, host_ip=self.host_ip,
                                  services=self._service_env(pod))
            mounts = container_mounts(c, volume_paths)
        except ContainerConfigError as exc:
            if ahead:
                return None
            waiting[name] = ("CreateContainerConfigError", str(exc))
            self._event(pod, WARNING, "Failed", f"Error: {exc}")
            requeue.append(max(1.0, self.config.crash_loop_backoff_base))
            return None
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        memory = value_of(limits["memory"]) if limits.get("memory") else None
        cpu_quota = None
        if limits.get("cpu"):
            cpu_quota = max(1000, milli_value_of(limits["cpu"]) * 100_000 // 1000)
        cpu_req = requests.get("cpu") or limits.get("cpu")
        shares = max(2, milli_value_of(cpu_req) * 1024 // 1000) if cpu_req else 2
        pod_dir = self.config.pod_dir(uid)
        config = ContainerConfig(
            name=_runtime_name(name, md.get("name", ""), md.get("namespace", ""), uid[:8],
                               str(attempt)),
            image=c["image"], labels={**self._labels(pod, kind, name, attempt),
                                      LABEL_HASH: spec_hash(c)},
            command=expand_command(c.get("command"), env),
            args=expand_command(c.get("args"), env), env=env,
            working_dir=c.get("workingDir"), mounts=mounts,
            network_mode=f"container:{sandbox_id}", ipc_mode=f"container:{sandbox_id}",
            dns_file=str(pod_dir / "resolv.conf"), hosts_file=str(pod_dir / "hosts"),
            memory_limit=memory, cpu_quota=cpu_quota, cpu_shares=shares,
            tty=bool(c.get("tty")), stdin=bool(c.get("stdin")), init=True,
            privileged=bool((c.get("securityContext") or {}).get("privileged")),
            log_max_size=self.config.container_log_max_size,
            log_max_files=self.config.container_log_max_files)
        try:
            cid = await self.runtime.create(config)
        except Exception as exc:
            if ahead:
                log.debug("creating %s beside its sandbox: %s", name, exc)
                return None
            waiting[name] = ("CreateContainerError", str(exc))
            self._event(pod, WARNING, "Failed", f"Error: {exc}")
            raise
        self._event(pod, NORMAL, "Created", f"Created container {name}")
        if latest is not None:
            self.backoff.next((uid, name))
        return cid

    def _write_dns_files(self, pod: Obj, pod_dir: Path, pod_ip: str) -> None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        ns = md.get("namespace") or "default"
        policy = spec.get("dnsPolicy") or "ClusterFirst"
        dns_config = spec.get("dnsConfig") or {}
        servers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
        if policy != "None":
            dns_ip = self.config.cluster_dns or self.network.dns_ip
            if dns_ip:
                servers.append(dns_ip)
            searches += [f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
            options.append("ndots:5")
        servers += dns_config.get("nameservers") or []
        searches += [s for s in dns_config.get("searches") or [] if s not in searches]
        for opt in dns_config.get("options") or []:
            text = opt.get("name", "") + (f":{opt['value']}" if opt.get("value") else "")
            options = [o for o in options if o.split(":")[0] != opt.get("name")] + [text]
        resolv = "".join(f"nameserver {s}\n" for s in servers)
        if searches:
            resolv += "search " + " ".join(searches) + "\n"
        if options:
            resolv += "options " + " ".join(options) + "\n"
        hostname = (spec.get("hostname") or md.get("name", ""))[:63]
        fqdn = f"{hostname}.{spec['subdomain']}.{ns}.svc.cluster.local" \
            if spec.get("subdomain") else ""
        names = "\t".join(x for x in (fqdn, hostname) if x)
        hosts = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
                 "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
                 "fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
        hosts += f"{pod_ip or '127.0.1.1'}\t{names}\n"
        for alias in spec.get("hostAliases") or []:
            hosts += f"{alias.get('ip')}\t" + "\t".join(alias.get("hostnames") or []) + "\n"
        for fname, content in (("resolv.conf", resolv), ("hosts", hosts)):
            path = pod_dir / fname
            try:
                if path.read_text() == content:
                    continue
            except OSError:
                pass
            tmp = pod_dir / f".{fname}.tmp"
            tmp.write_text(content)
            os.chmod(tmp, 0o644)
            # rewrite in place once mounted: a rename would leave the mount on the old file
            if path.exists():
                path.write_text(content)
                tmp.unlink()
            else:
                os.replace(tmp, path)

    # --- probes and status ----------------------------------------------------------------

    def _sync_probes(self, pod: Obj, state: PodState, sandbox: ContainerInfo | None,
                     pod_ip: str) -> None:
        running: dict[str, tuple[Obj, ProbeTarget]] = {}
        for c in (pod.get("spec") or {}).get("containers") or []:
            latest = state.latest(APP, c["name"])
            if latest is not None and latest.state == "running" and sandbox is not None:
                running[c["name"]] = (c, ProbeTarget(latest.id, pod_ip, sandbox.id, sandbox.pid))
        was_ready = {}
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            if st.get("ready") and str(st.get("containerID", "")).startswith("docker://"):
                was_ready[st["name"]] = st["containerID"][len("docker://"):]
        self.probes.sync(pod, running, was_ready)

    async def _views(self, pod: Obj, state: PodState, kind: str, specs: list[Obj]) -> list[ContainerView]:
        uid = pod["metadata"]["uid"]
        waiting = self.waiting.get(uid, {})
        views = []
        for c in specs:
            latest = state.latest(kind, c["name"])
            v = ContainerView(name=c["name"], image=c.get("image", ""), latest=latest,
                              previous=state.previous(kind, c["name"]),
                              waiting=waiting.get(c["name"]))
            if latest is not None:
                if latest.state == "running":
                    v.started = self.probes.started(uid, c, latest.id) if kind == APP else True
                    v.ready = self.probes.ready(uid, c, latest.id) if kind == APP else False
                v.image_id = await self._image_id(latest)
            if kind == INIT and latest is not None and latest.state == "exited" \
                    and latest.exit_code == 0:
                v.waiting = None
            views.append(v)
        return views

    async def _image_id(self, info: ContainerInfo) -> str:
        if not info.image_id:
            return ""
        img = self._image_cache.get(info.image_id)
        if img is None:
            img = await self.runtime.image(info.image_id)
            if img is not None:
                self._image_cache[info.image_id] = img
        return image_ref(info.image_id, img.digests if img else None)

    async def _write_status(self, pod: Obj, state: PodState, pod_ip: str, *,
                            initialized: bool) -> float | None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        uid = md["uid"]
        init_views = await self._views(pod, state, INIT, list(spec.get("initContainers") or []))
        views = await self._views(pod, state, APP, list(spec.get("containers") or []))
        new = pod_status(pod, init_views, views, now=rfc3339(self.clock.now()),
                         host_ip=self.host_ip, pod_ip=pod_ip, initialized=initialized)
        old = pod.get("status") or {}
        if self.last_status.get(uid) == new:
            return None
        patch = status_patch(old, new)
        if not patch:
            self.last_status[uid] = new
            return None
        try:
            await self.client.patch("pods", md["name"], {"status": patch}, md.get("namespace"),
                                    subresource="status", patch_type="merge")
        except NotFound:
            return None
        except Conflict:
            return 0.5
        self.last_status[uid] = new
        if new["phase"] in TERMINAL:
            # a finished pod keeps no sandbox (its containers stay, for logs)
            await self._stop_pod_containers(pod, state, grace=0, sandbox_too=True, reason=None)
            self.probes.remove_pod(uid)
        return None

    # --- stopping -------------------------------------------------------------------------

    async def _stop_pod_containers(self, pod: Obj | None, state: PodState, *, grace: float,
                                   sandbox_too: bool, reason: str | None) -> None:
        work = []
        for info in state.all():
            if info.kind == SANDBOX or info.state != "running":
                continue
            if pod is not None and reason is not None:
                self._event(pod, NORMAL, "Killing", f"Stopping container {info.container_name}")
            work.append(self.runtime.stop(info.id, grace))
        await asyncio.gather(*work)
        if sandbox_too:
            for info in state.sandboxes:
                if info.state == "running":
                    await self.runtime.stop(info.id, 0)
            if pod is not None:
                uid = pod["metadata"]["uid"]
                await self.network.detach(uid)
                self.pod_ips.pop(uid, None)

    async def terminate_pod(self, pod: Obj) -> None:
        """Graceful deletion: SIGTERM, the grace period, SIGKILL; remove everything; then
        delete the pod object for good."""
        md = pod["metadata"]
        uid = md["uid"]
        state = await self.pod_state(uid)
        self.probes.remove_pod(uid)
        await self._stop_pod_containers(pod, state, grace=self._grace(pod), sandbox_too=True,
                                        reason="Killing")
        await self._remove_pod_resources(uid, state)
        try:
            await self.client.delete("pods", md["name"], md.get("namespace"),
                                     grace_period_seconds=0, preconditions={"uid": uid})
        except (NotFound, Conflict):
            pass
        except StatusError as exc:
            if exc.code != 409:
                raise
        self._forget(uid)

    async def cleanup_pod(self, uid: str) -> None:
        """The pod is gone from the API (or was never ours): remove all of it."""
        state = await self.pod_state(uid)
        pod = self.last_known.get(uid)
        self.probes.remove_pod(uid)
        if state.all():
            grace = min(self._grace(pod), 2.0) if pod is not None else 1.0
            await self._stop_pod_containers(None, state, grace=grace, sandbox_too=True,
                                            reason=None)
        await self._remove_pod_resources(uid, state)
        self._forget(uid)
        self.last_known.pop(uid, None)

    async def _remove_pod_resources(self, uid: str, state: PodState) -> None:
        for info in state.all():
            await self.runtime.remove(info.id)
        await self.network.detach(uid)
        pod_dir = self.config.pod_dir(uid)
        if pod_dir.exists():
            await asyncio.to_thread(shutil.rmtree, pod_dir, True)

    def _service_env(self, pod: Obj) -> dict[str, str] | None:
        if self.services is None:
            return None
        spec = pod.get("spec") or {}
        return service_env(self.services(), pod["metadata"].get("namespace") or "default",
                           spec.get("enableServiceLinks") is not False)

    def _forget(self, uid: str) -> None:
        self.volume_manager.forget_pod(uid)
        self.observed.pop(uid, None)
        self.backoff.forget_pod(uid)
        self.waiting.pop(uid, None)
        self.pod_ips.pop(uid, None)
        self.last_status.pop(uid, None)

    # --- housekeeping -----------------------------------------------------------------------

    async def find_orphans(self) -> set[str]:
        """Pod uids with containers on this node or a pod dir, that the API does not
        have bound here; each is queued for cleanup."""
        if not self.synced.is_set():
            return set()
        infos = await self.runtime.list_containers(self.config.container_labels)
        uids = {i.pod_uid for i in infos if i.pod_uid}
        if self.config.pods_dir.exists():
            uids |= {p.name for p in self.config.pods_dir.iterdir() if p.is_dir()}
        orphans = {u for u in uids if u not in self.pods}
        for uid in orphans:
            self.enqueue(uid)
        return orphans


def _uses_pod_ip(c: Obj) -> bool:
    """Whether the container's environment carries the pod's address."""
    return any(((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
               in ("status.podIP", "status.podIPs") for e in c.get("env") or [])


def _should_restart(policy: str, info: ContainerInfo) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return info.state == "created" or info.exit_code != 0
    return False


__all__ = ["PodWorkers", "PodState", "Backoff", "fmt_duration", "spec_hash", "WallClock"]
