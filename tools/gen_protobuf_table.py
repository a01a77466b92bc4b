"""Regenerate ``minik8s/api/protobuf_table.py`` from Kubernetes' ``generated.proto`` files.

kubectl's typed generators (``kubectl create deployment|job|configmap ...``) send request
bodies as ``application/vnd.kubernetes.protobuf``. Decoding them needs the protobuf field
number of every field of every kind we serve, and those numbers exist only in the
``generated.proto`` files that go-to-protobuf writes next to the Go types (k8s.io/api and
k8s.io/apimachinery). They cannot be fetched at run time (no network, no new dependency), so
this script distils them once into a small data-only table that is committed, next to
``schema.json``.

Input: a directory of ``.proto`` files, verbatim ``generated.proto`` copies or the same with
the comments stripped (comments are ignored; a first-line comment naming the source is copied
into the table). The committed table was made from copies read through the project's code
search (repository, path and commit are listed at the top of the table):

- core/v1, apps/v1, batch/v1, coordination/v1, autoscaling/v2, certificates/v1 and
  authentication/v1 (TokenRequest, the body of ``serviceaccounts/NAME/token``):
  kubernetes/kubernetes ``staging/src/k8s.io/api/<group>/<version>/generated.proto``
- meta/v1: a copy of k8s.io/apimachinery v0.26.0, ``pkg/apis/meta/v1/generated.proto``
- runtime, util/intstr, api/resource: kubernetes/kubernetes
  ``staging/src/k8s.io/apimachinery/pkg/{runtime,util/intstr,api/resource}/generated.proto``

Field numbers never change once released, so a newer copy only adds fields.

What the .proto files do not say, and this script lists by hand after the Go types
(``types.go``):

- POINTERS: scalar fields that are pointers in Go (``*int32``, ``*bool``, ``*string``...).
  Every go-to-protobuf field is ``optional``, and non-pointer scalars are always written,
  zero or not; only for pointers does a zero on the wire mean "set to zero". The decoder
  keeps zeros of these and drops the others, as Go's JSON ``omitempty`` would.
- INLINE: embedded structs that JSON flattens (``json:",inline"``) but protobuf nests as a
  field named after the type (``Volume.volumeSource``, ``Probe.handler``...).
- SPECIAL: messages with a custom JSON form (Time, IntOrString, Quantity, RawExtension...).

Only messages reachable from the registry's kinds (plus the few subresource bodies in
EXTRA_ROOTS) are emitted. ``--check`` compares the table with ``schema.json`` field names.

Usage: ``python tools/gen_protobuf_table.py PROTO_DIR [--output PATH]``
       ``python tools/gen_protobuf_table.py --check``  (the committed table vs schema.json)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minik8s.api.registry import REGISTRY  # noqa: E402

OUTPUT = ROOT / "minik8s" / "api" / "protobuf_table.py"

SCALARS = frozenset({"string", "bytes", "bool", "int32", "int64", "uint32", "uint64",
                     "sint32", "sint64", "fixed32", "fixed64", "sfixed32", "sfixed64",
                     "double", "float"})

META = "k8s.io.apimachinery.pkg.apis.meta.v1."
SPECIAL = {
    META + "Time": "time",
    META + "MicroTime": "microtime",
    META + "Duration": "duration",
    META + "FieldsV1": "rawjson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "rawjson",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "intstr",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
    # ``type ExtraValue []string``: protobuf needs a message to hold a list as a map value.
    "k8s.io.api.certificates.v1.ExtraValue": "stringlist",
}

# API groups as go-to-protobuf names their packages.
GROUP_PACKAGES = {"": "core", "coordination.k8s.io": "coordination",
                  "certificates.k8s.io": "certificates"}

# Request bodies of subresources, which are not kinds of the registry.
EXTRA_ROOTS = {
    "v1/Binding": "k8s.io.api.core.v1.Binding",
    "authentication.k8s.io/v1/TokenRequest": "k8s.io.api.authentication.v1.TokenRequest",
}

# Go pointer scalars, from the k8s.io/api and apimachinery ``types.go`` of the same release
# (package-relative message name -> JSON field names).
POINTERS: dict[str, tuple[str, ...]] = {
    "meta.v1.ObjectMeta": ("deletionGracePeriodSeconds",),
    "meta.v1.OwnerReference": ("controller", "blockOwnerDeletion"),
    "apps.v1.DeploymentSpec": ("replicas", "revisionHistoryLimit", "progressDeadlineSeconds",
                               "podReplacementPolicy"),
    "apps.v1.DeploymentStatus": ("collisionCount", "terminatingReplicas"),
    "apps.v1.DaemonSetSpec": ("revisionHistoryLimit",),
    "apps.v1.DaemonSetStatus": ("collisionCount",),
    "apps.v1.ReplicaSetSpec": ("replicas",),
    "apps.v1.ReplicaSetStatus": ("terminatingReplicas",),
    "apps.v1.StatefulSetSpec": ("replicas", "revisionHistoryLimit"),
    "apps.v1.StatefulSetStatus": ("collisionCount",),
    "apps.v1.RollingUpdateStatefulSetStrategy": ("partition",),
    "batch.v1.CronJobSpec": ("timeZone", "startingDeadlineSeconds", "suspend",
                             "successfulJobsHistoryLimit", "failedJobsHistoryLimit"),
    "batch.v1.JobSpec": ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                         "backoffLimitPerIndex", "maxFailedIndexes", "manualSelector",
                         "ttlSecondsAfterFinished", "completionMode", "suspend",
                         "podReplacementPolicy", "managedBy"),
    "batch.v1.JobStatus": ("terminating", "failedIndexes", "ready"),
    "batch.v1.PodFailurePolicyOnExitCodesRequirement": ("containerName",),
    "batch.v1.SuccessPolicyRule": ("succeededIndexes", "succeededCount"),
    "coordination.v1.LeaseSpec": ("holderIdentity", "leaseDurationSeconds", "leaseTransitions",
                                  "strategy", "preferredHolder"),
    "autoscaling.v2.HPAScalingRules": ("stabilizationWindowSeconds", "selectPolicy"),
    "autoscaling.v2.HorizontalPodAutoscalerSpec": ("minReplicas",),
    "autoscaling.v2.HorizontalPodAutoscalerStatus": ("observedGeneration",),
    "autoscaling.v2.MetricTarget": ("averageUtilization",),
    "autoscaling.v2.MetricValueStatus": ("averageUtilization",),
    "certificates.v1.CertificateSigningRequestSpec": ("expirationSeconds",),
    "authentication.v1.TokenRequestSpec": ("expirationSeconds",),
    "core.v1.AppArmorProfile": ("localhostProfile",),
    "core.v1.AzureDiskVolumeSource": ("cachingMode", "fsType", "readOnly", "kind"),
    "core.v1.CSIVolumeSource": ("readOnly", "fsType"),
    "core.v1.ClientIPConfig": ("timeoutSeconds",),
    "core.v1.ClusterTrustBundleProjection": ("name", "signerName", "optional"),
    "core.v1.ConfigMap": ("immutable",),
    "core.v1.ConfigMapEnvSource": ("optional",),
    "core.v1.ConfigMapKeySelector": ("optional",),
    "core.v1.ConfigMapProjection": ("optional",),
    "core.v1.ConfigMapVolumeSource": ("defaultMode", "optional"),
    "core.v1.Container": ("restartPolicy",),
    "core.v1.ContainerStatus": ("started", "stopSignal"),
    "core.v1.DownwardAPIVolumeFile": ("mode",),
    "core.v1.DownwardAPIVolumeSource": ("defaultMode",),
    "core.v1.EndpointAddress": ("nodeName",),
    "core.v1.EndpointPort": ("appProtocol",),
    "core.v1.EphemeralContainerCommon": ("restartPolicy",),
    "core.v1.FCVolumeSource": ("lun",),
    "core.v1.FileKeySelector": ("optional",),
    "core.v1.GRPCAction": ("service",),
    "core.v1.HostPathVolumeSource": ("type",),
    "core.v1.ISCSIVolumeSource": ("initiatorName",),
    "core.v1.KeyToPath": ("mode",),
    "core.v1.Lifecycle": ("stopSignal",),
    "core.v1.LoadBalancerIngress": ("ipMode",),
    "core.v1.NodeFeatures": ("supplementalGroupsPolicy", "containerUlimits"),
    "core.v1.NodeRuntimeHandlerFeatures": ("recursiveReadOnlyMounts", "userNamespaces"),
    "core.v1.NodeSwapStatus": ("capacity",),
    "core.v1.PersistentVolumeClaimSpec": ("storageClassName", "volumeMode",
                                          "volumeAttributesClassName"),
    "core.v1.PersistentVolumeClaimStatus": ("currentVolumeAttributesClassName",),
    "core.v1.PodCertificateProjection": ("maxExpirationSeconds",),
    "core.v1.PodDNSConfigOption": ("value",),
    "core.v1.PodResourceClaim": ("resourceClaimName", "resourceClaimTemplateName"),
    "core.v1.PodResourceClaimStatus": ("resourceClaimName",),
    "core.v1.PodSecurityContext": ("runAsUser", "runAsGroup", "runAsNonRoot",
                                   "supplementalGroupsPolicy", "fsGroup", "fsGroupChangePolicy",
                                   "seLinuxChangePolicy"),
    "core.v1.PodSpec": ("terminationGracePeriodSeconds", "activeDeadlineSeconds",
                        "automountServiceAccountToken", "shareProcessNamespace", "priority",
                        "runtimeClassName", "enableServiceLinks", "preemptionPolicy",
                        "setHostnameAsFQDN", "hostUsers", "hostnameOverride"),
    "core.v1.PortStatus": ("error",),
    "core.v1.Probe": ("terminationGracePeriodSeconds",),
    "core.v1.ProjectedVolumeSource": ("defaultMode",),
    "core.v1.ResourceHealth": ("message",),
    "core.v1.SeccompProfile": ("localhostProfile",),
    "core.v1.Secret": ("immutable",),
    "core.v1.SecretEnvSource": ("optional",),
    "core.v1.SecretKeySelector": ("optional",),
    "core.v1.SecretProjection": ("optional",),
    "core.v1.SecretVolumeSource": ("defaultMode", "optional"),
    "core.v1.SecurityContext": ("privileged", "runAsUser", "runAsGroup", "runAsNonRoot",
                                "readOnlyRootFilesystem", "allowPrivilegeEscalation",
                                "procMount"),
    "core.v1.ServiceAccount": ("automountServiceAccountToken",),
    "core.v1.ServiceAccountTokenProjection": ("expirationSeconds",),
    "core.v1.ServicePort": ("appProtocol",),
    "core.v1.ServiceSpec": ("ipFamilyPolicy", "allocateLoadBalancerNodePorts",
                            "loadBalancerClass", "internalTrafficPolicy", "trafficDistribution"),
    "core.v1.Toleration": ("tolerationSeconds",),
    "core.v1.TopologySpreadConstraint": ("minDomains", "nodeAffinityPolicy", "nodeTaintsPolicy"),
    "core.v1.TypedLocalObjectReference": ("apiGroup",),
    "core.v1.TypedObjectReference": ("apiGroup", "namespace"),
    "core.v1.VolumeMount": ("recursiveReadOnly", "mountPropagation"),
    "core.v1.VolumeMountStatus": ("recursiveReadOnly",),
    "core.v1.WindowsSecurityContextOptions": ("gmsaCredentialSpecName", "gmsaCredentialSpec",
                                              "runAsUserName", "hostProcess"),
}

# Embedded structs (``json:",inline"``) that protobuf carries as a nested message.
INLINE: dict[str, tuple[str, ...]] = {
    "core.v1.ConfigMapEnvSource": ("localObjectReference",),
    "core.v1.ConfigMapKeySelector": ("localObjectReference",),
    "core.v1.ConfigMapProjection": ("localObjectReference",),
    "core.v1.ConfigMapVolumeSource": ("localObjectReference",),
    "core.v1.SecretEnvSource": ("localObjectReference",),
    "core.v1.SecretKeySelector": ("localObjectReference",),
    "core.v1.SecretProjection": ("localObjectReference",),
    "core.v1.Volume": ("volumeSource",),
    "core.v1.Probe": ("handler",),
    "core.v1.EphemeralContainer": ("ephemeralContainerCommon",),
}

REPEATED, POINTER, INLINED = 1, 2, 4

_FIELD_RE = re.compile(r"^(optional|repeated|required)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*[;\[]")
_MAP_RE = re.compile(r"^map\s*<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*[;\[]")


def _short(full: str) -> str:
    """``k8s.io.api.core.v1.Pod`` -> ``core.v1.Pod``; ``...apis.meta.v1.X`` -> ``meta.v1.X``."""
    parts = full.split(".")
    return ".".join(parts[-3:])


def parse_protos(directory: Path) -> tuple[dict[str, list[tuple]], list[str]]:
    """All messages of the .proto files: full name -> [(number, name, type, label)] where
    type is a scalar, a full message name or ``map:<value type>``; and the files' headers."""
    messages: dict[str, list[tuple]] = {}
    sources: list[str] = []
    for path in sorted(directory.glob("*.proto")):
        text = path.read_text()
        first = text.splitlines()[0] if text else ""
        if first.startswith("//"):
            sources.append(first.lstrip("/ ").strip())
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        package, current = "", None
        for raw in text.splitlines():
            line = raw.split("//", 1)[0].strip()
            if not line:
                continue
            if m := re.match(r"^package\s+([\w.]+)\s*;", line):
                package = m.group(1)
            elif m := re.match(r"^message\s+(\w+)\s*\{", line):
                current = f"{package}.{m.group(1)}"
                messages[current] = []
                if line.endswith("}"):
                    current = None
            elif line == "}":
                current = None
            elif current is not None:
                if m := _MAP_RE.match(line):
                    key, value, name, number = m.groups()
                    if key != "string":
                        raise SystemExit(f"{current}.{name}: map keys other than string")
                    messages[current].append(
                        (int(number), name, "map:" + _resolve(value, package), "map"))
                elif m := _FIELD_RE.match(line):
                    label, typ, name, number = m.groups()
                    messages[current].append((int(number), name, _resolve(typ, package), label))
                else:
                    raise SystemExit(f"{path.name}: cannot parse {raw!r}")
    return messages, sources


def _resolve(typ: str, package: str) -> str:
    if typ in SCALARS:
        return typ
    if typ.startswith("."):
        return typ[1:]
    if "." in typ:  # a qualified name without the leading dot (older generators)
        return typ
    return f"{package}.{typ}"


def roots() -> dict[str, str]:
    out = {}
    for rt in REGISTRY:
        pkg = GROUP_PACKAGES.get(rt.group, rt.group.split(".")[0])
        out[f"{rt.api_version}/{rt.kind}"] = f"k8s.io.api.{pkg}.{rt.version}.{rt.kind}"
    out.update(EXTRA_ROOTS)
    return out


def build(messages: dict[str, list[tuple]]) -> tuple[dict[str, str], dict[str, dict]]:
    kinds = roots()
    for name, full in kinds.items():
        if full not in messages:
            raise SystemExit(f"{name}: no message {full} in the .proto files")
    for table, what in ((POINTERS, "pointer"), (INLINE, "inline")):
        for short, fields in table.items():
            matches = [m for m in messages if _short(m) == short]
            if len(matches) != 1:
                raise SystemExit(f"{what} list: no single message {short}")
            names = {f[1] for f in messages[matches[0]]}
            for f in fields:
                if f not in names:
                    raise SystemExit(f"{what} list: {short} has no field {f}")
    out: dict[str, dict] = {}
    todo = list(kinds.values())
    while todo:
        full = todo.pop()
        if full in out or full in SPECIAL:
            continue
        if full not in messages:
            raise SystemExit(f"message {full} is referenced but not in the .proto files")
        short = _short(full)
        fields = {}
        for number, name, typ, label in messages[full]:
            if number in fields:
                raise SystemExit(f"{full}: field number {number} twice")
            value = typ[4:] if typ.startswith("map:") else typ
            flags = REPEATED if label == "repeated" else 0
            if name in POINTERS.get(short, ()):
                if value not in SCALARS:
                    raise SystemExit(f"{full}.{name}: only scalars need the pointer mark")
                flags |= POINTER
            if name in INLINE.get(short, ()):
                flags |= INLINED
            kind = SPECIAL.get(value, value)
            if value not in SCALARS and value not in SPECIAL:
                todo.append(value)
            fields[number] = (name, ("map:" + kind) if typ.startswith("map:") else kind, flags)
        out[full] = fields
    return kinds, out


def _source_lines(source: str) -> list[str]:
    """A .proto file's first line (``stripped from REPO PATH @ COMMIT ...``), wrapped."""
    where, _, rest = source.partition(" @ ")
    lines = [f"  {where.removeprefix('stripped from ')}"]
    if rest:
        commit, _, note = rest.partition(" ")
        lines.append(f"    @ {commit}")
        if note:
            lines.append(f"    {note}")
    return lines


def render(kinds: dict[str, str], table: dict[str, dict], sources: list[str]) -> str:
    lines = [
        '"""Protobuf field numbers of every message reachable from the kinds minik8s serves.',
        "",
        "GENERATED by tools/gen_protobuf_table.py from Kubernetes' generated.proto files; do not",
        "edit by hand. Sources:",
        *[line for s in sources for line in _source_lines(s)],
        "",
        "MESSAGES maps a message to {field number: (JSON name, type, flags)}. A type is a",
        "protobuf scalar, another message of this table, ``map:<value type>`` (string keys), or",
        "one with a custom JSON form: time, microtime, duration, intstr, quantity, rawjson,",
        "stringlist. Flags: 1 repeated, 2 pointer scalar (a zero is kept), 4 inlined in JSON.",
        '"""',
        "",
        "REPEATED, POINTER, INLINED = 1, 2, 4",
        "",
        "# apiVersion/kind -> message",
        "KINDS: dict[str, str] = {",
        *[f"    {k!r}: {v!r}," for k, v in sorted(kinds.items())],
        "}",
        "",
        "MESSAGES: dict[str, dict[int, tuple[str, str, int]]] = {",
    ]
    for full in sorted(table):
        lines.append(f"    {full!r}: {{")
        for number in sorted(table[full]):
            name, typ, flags = table[full][number]
            lines.append(f"        {number}: ({name!r}, {typ!r}, {flags}),")
        lines.append("    },")
    lines += ["}", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ cross-check with schema

_SCHEMA_LEAF = {"string": {"string"}, "bytes": {"bytes"}, "bool": {"boolean"},
                "int32": {"integer"}, "int64": {"integer"}, "double": {"number"},
                "time": {"date-time"}, "microtime": {"date-time"}, "quantity": {"quantity"},
                "intstr": {"int-or-string"}, "rawjson": {"object"}, "duration": {"string"}}


def check(kinds: dict[str, str], table: dict[str, dict]) -> list[str]:
    """Differences between the table's JSON field names and types and ``schema.json``'s:
    catches a field copied under a wrong name, a missed inline, or a forgotten field."""
    from minik8s.api import schema as schema_mod
    types = schema_mod._types()
    problems: list[str] = []

    def json_fields(full: str) -> dict[str, tuple[str, int]]:
        out = {}
        for name, typ, flags in table[full].values():
            if flags & INLINED:
                out.update(json_fields(typ))
            else:
                out[name] = (typ, flags)
        return out

    for full in sorted(table):
        sname = "io." + full.replace("k8s.io.", "k8s.", 1)
        if sname not in types:
            continue  # messages the client models do not know (newer than them)
        ours = json_fields(full)
        theirs = types[sname].get("fields", {})
        for name in sorted(set(theirs) - set(ours)):
            if name not in ("apiVersion", "kind"):
                problems.append(f"{full}: field {name} of schema.json is missing")
        for name, (typ, flags) in sorted(ours.items()):
            if name not in theirs:
                problems.append(f"{full}: field {name} is not in schema.json")
                continue
            problems += _type_problems(f"{full}.{name}", typ, flags, theirs[name])
    return problems


def _type_problems(where: str, typ: str, flags: int, spec) -> list[str]:
    if typ.startswith("map:"):
        if not (isinstance(spec, dict) and "map" in spec):
            return [f"{where}: a map here, {spec!r} in schema.json"]
        return _type_problems(where, typ[4:], 0, spec["map"])
    if flags & REPEATED or typ == "stringlist":
        if not (isinstance(spec, dict) and "list" in spec):
            return [f"{where}: a list here, {spec!r} in schema.json"]
        return _type_problems(where, "string" if typ == "stringlist" else typ, 0,
                              spec["list"])
    if isinstance(spec, dict):
        return [f"{where}: {typ} here, {spec!r} in schema.json"]
    if typ in _SCHEMA_LEAF:
        return [] if spec in _SCHEMA_LEAF[typ] else [f"{where}: {typ} here, {spec} there"]
    sname = "io." + typ.replace("k8s.io.", "k8s.", 1)
    return [] if spec == sname else [f"{where}: {typ} here, {spec} in schema.json"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("proto_dir", nargs="?", type=Path)
    p.add_argument("--output", type=Path, default=OUTPUT)
    p.add_argument("--check", action="store_true",
                   help="compare the committed table with schema.json and exit")
    args = p.parse_args(argv)
    if args.check or args.proto_dir is None:
        from minik8s.api import protobuf_table
        problems = check(protobuf_table.KINDS, protobuf_table.MESSAGES)
    else:
        messages, sources = parse_protos(args.proto_dir)
        kinds, table = build(messages)
        args.output.write_text(render(kinds, table, sources))
        print(f"wrote {args.output}: {len(table)} messages")
        problems = check(kinds, table)
    for line in problems:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
