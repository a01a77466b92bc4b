"""The OpenAPI documents kubectl reads, generated from the kind registry.

kubectl never needs full schemas from this server, but it does read the documents to decide
how to talk to it, and a wrong answer turns into wrong behaviour rather than an error:

* ``create``/``apply``/``replace`` with the default ``--validate=strict`` (kubectl 1.32) ask
  whether the server supports the ``fieldValidation`` query parameter before sending
  ``?fieldValidation=Strict``. cli-runtime's ``queryParamVerifierV3`` fetches ``/openapi/v3``,
  then the group-version document, and looks for a PATCH operation whose
  ``x-kubernetes-group-version-kind`` is the object's GVK and whose own ``parameters`` list
  ``fieldValidation``. If ``/openapi/v3`` fails (404 included) it falls back to ``/openapi/v2``
  (protobuf). If neither shows support, kubectl validates client-side against the v2
  models instead. Every write operation here declares ``fieldValidation``, ``dryRun`` and
  ``fieldManager`` so the server does the validating.
* Client-side ``apply`` computes a strategic merge patch from the v3 schema only when the
  GVK's PATCH operation accepts ``application/strategic-merge-patch+json``. The schemas
  here are loose (no ``x-kubernetes-patch-merge-key``), and a patch built from them would
  replace lists such as ``containers`` instead of merging them. So that content type is left
  out on purpose: kubectl then uses its compiled-in patch metadata for these built-in
  kinds, which is exact. The server still accepts strategic merge patches.
* ``explain`` (1.32) renders the v3 group-version document. It finds the GVK on an
  operation of ``/api[s]/<gv>/[namespaces/{namespace}/]<plural>[/{name}]`` and then the
  ``components.schemas`` entry whose ``x-kubernetes-group-version-kind`` *list* contains it.
  Operations carry a single GVK object; schemas carry a list. Only when ``/openapi/v3``
  fails (or with ``--output plaintext-openapiv2``) does it use the v2 models instead.
* kubectl 1.20 only reads ``/openapi/v2``, with ``Accept:
  application/com.github.proto-openapi.spec.v2@v1.0+protobuf``, for client-side
  validation and apply. A 200 with an empty body decodes as an empty document, so
  validation finds no model and is skipped, and apply uses compiled-in patch metadata.

Routes (wired elsewhere) and what each function answers:

``GET /openapi/v3`` -> ``openapi_v3_root(registry)``, ``application/json``.
``GET /openapi/v3/api/v1`` and ``GET /openapi/v3/apis/{group}/{version}`` ->
``openapi_v3_group_version(registry, group, version)`` (404 when it returns None),
``application/json``. The ``?hash=`` in the root's URLs is ``openapi_v3_hash(...)``. When
the request's hash matches, the response can be sent with ``ETag: "<hash>"`` and
``Cache-Control: public, immutable``. The protobuf form of v3 (``V3_PROTOBUF``) is not
offered (406): kubectl asks for JSON.
``GET /openapi/v2`` -> with an Accept naming protobuf (``V2_PROTOBUF``, what every
client-go sends), 200 with an empty body and that content type. With any other Accept,
``openapi_v2(registry)`` as ``application/json``, for tools that read Swagger JSON.

Documents are built once per registry and cached. Callers share the returned dicts and must
not mutate them. The hash is the SHA-512 of the canonical JSON, so it is stable across
processes and API server replicas.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from minik8s.api.registry import Registry, ResourceType

V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V3_PROTOBUF = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"

GVK = tuple[str, str, str]  # (group, version, kind)
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
PATCH_BODY_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                    "application/apply-patch+yaml")
_RESPONSE_TYPES = ("application/json", "application/yaml")

# --------------------------------------------------------------------------- parameters

_QUERY: dict[str, tuple[str, str]] = {
    "allowWatchBookmarks": ("boolean", "Request watch events of type BOOKMARK."),
    "command": ("string", "Command to execute; repeat the parameter for each argument."),
    "container": ("string", "The container the request is for; defaults to the only one."),
    "continue": ("string", "Continue token from a previous, limited list call."),
    "dryRun": ("string", "'All' processes the request fully but persists nothing."),
    "fieldManager": ("string", "Name of the actor making the change, for field ownership."),
    "fieldSelector": ("string", "Restrict the returned objects by their fields."),
    "fieldValidation": ("string", "Handling of unknown or duplicate fields in the body: "
                                  "Ignore, Warn or Strict (reject the request)."),
    "follow": ("boolean", "Stream the log as it grows."),
    "force": ("boolean", "Re-acquire fields owned by other managers (apply only)."),
    "gracePeriodSeconds": ("integer", "Seconds to wait before the object is deleted."),
    "labelSelector": ("string", "Restrict the returned objects by their labels."),
    "limit": ("integer", "Maximum number of items in a list response."),
    "limitBytes": ("integer", "Stop returning log output after this many bytes."),
    "orphanDependents": ("boolean", "Deprecated: use propagationPolicy=Orphan."),
    "ports": ("integer", "Pod ports to forward; repeat for each port."),
    "pretty": ("string", "If 'true', the output is pretty printed."),
    "previous": ("boolean", "Return the log of the previous, terminated container."),
    "propagationPolicy": ("string", "Garbage collection of dependents: Orphan, Background "
                                    "or Foreground."),
    "resourceVersion": ("string", "Read or watch from this resource version."),
    "resourceVersionMatch": ("string", "How resourceVersion applies to list calls."),
    "sendInitialEvents": ("boolean", "Start a watch with synthetic ADDED events."),
    "sinceSeconds": ("integer", "Only log lines newer than this many seconds."),
    "stderr": ("boolean", "Redirect the standard error stream of the process."),
    "stdin": ("boolean", "Redirect the standard input stream of the process."),
    "stdout": ("boolean", "Redirect the standard output stream of the process."),
    "tailLines": ("integer", "Number of lines from the end of the log to show."),
    "timeoutSeconds": ("integer", "Timeout for the list or watch call."),
    "timestamps": ("boolean", "Prefix every log line with an RFC3339 timestamp."),
    "tty": ("boolean", "Allocate a terminal for the process."),
    "watch": ("boolean", "Watch for changes and stream them as events."),
}
_PATH: dict[str, str] = {
    "name": "name of the object",
    "namespace": "object name and auth scope, such as for teams and projects",
}

_LIST_Q = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
           "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds",
           "watch")
_WRITE_Q = ("dryRun", "fieldManager", "fieldValidation")
_PATCH_Q = _WRITE_Q + ("force",)
_DELETE_Q = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_DELETECOLLECTION_Q = _DELETE_Q + ("continue", "fieldSelector", "labelSelector", "limit",
                                   "resourceVersion", "resourceVersionMatch",
                                   "sendInitialEvents", "timeoutSeconds")
_LOG_Q = ("container", "follow", "limitBytes", "previous", "sinceSeconds", "tailLines",
          "timestamps")
_EXEC_Q = ("command", "container", "stderr", "stdin", "stdout", "tty")

# --------------------------------------------------------------------------- operation model


@dataclass(frozen=True)
class _Op:
    method: str                 # HTTP method, lower case
    action: str                 # x-kubernetes-action
    operation_id: str
    gvk: GVK
    query: tuple[str, ...] = ()
    body: str | None = None     # schema name of the request body
    response: str | None = None  # schema name of the 2xx response; None: plain text
    created: bool = False       # may answer 201 Created


@dataclass(frozen=True)
class _PathItem:
    path: str
    path_params: tuple[str, ...]
    ops: tuple[_Op, ...]


@dataclass(frozen=True)
class _Sub:
    """How a subresource is exposed: its methods and what its body is."""
    methods: tuple[str, ...]
    body_kind: GVK | None = None  # None: the parent kind
    connect: bool = False
    query: tuple[str, ...] = ()
    text: bool = False           # answers plain text


_SUBRESOURCES: dict[str, _Sub] = {
    "status": _Sub(("get", "put", "patch")),
    "scale": _Sub(("get", "put", "patch"), body_kind=("autoscaling", "v1", "Scale")),
    "finalize": _Sub(("put",)),
    "binding": _Sub(("post",), body_kind=("", "v1", "Binding")),
    "token": _Sub(("post",), body_kind=("authentication.k8s.io", "v1", "TokenRequest")),
    "eviction": _Sub(("post",), body_kind=("policy", "v1", "Eviction")),
    "log": _Sub(("get",), query=_LOG_Q, text=True),
    "exec": _Sub(("get", "post"), body_kind=("", "v1", "PodExecOptions"), connect=True,
                 query=_EXEC_Q, text=True),
    "portforward": _Sub(("get", "post"), body_kind=("", "v1", "PodPortForwardOptions"),
                        connect=True, query=("ports",), text=True),
    "proxy": _Sub(("get", "put", "post", "patch", "delete"), connect=True, text=True),
}

# Top-level fields of kinds that are not spec/status shaped. Everything is still open to
# unknown fields; these exist so that ``kubectl explain`` has something to show.
_STR = {"type": "string"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJ = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_OBJ_LIST = {"type": "array", "items": _OBJ}
_TOP_LEVEL: dict[str, dict[str, dict]] = {
    "ConfigMap": {"data": _STR_MAP, "binaryData": _STR_MAP, "immutable": {"type": "boolean"}},
    "Secret": {"data": _STR_MAP, "stringData": _STR_MAP, "type": _STR,
               "immutable": {"type": "boolean"}},
    "Endpoints": {"subsets": _OBJ_LIST},
    "ServiceAccount": {"secrets": _OBJ_LIST, "imagePullSecrets": _OBJ_LIST,
                       "automountServiceAccountToken": {"type": "boolean"}},
    "Event": {"involvedObject": _OBJ, "reason": _STR, "message": _STR, "type": _STR,
              "count": {"type": "integer", "format": "int32"}, "source": _OBJ,
              "firstTimestamp": {"type": "string", "format": "date-time"},
              "lastTimestamp": {"type": "string", "format": "date-time"},
              "eventTime": {"type": "string", "format": "date-time"}, "series": _OBJ,
              "action": _STR, "related": _OBJ, "reportingComponent": _STR,
              "reportingInstance": _STR},
    "Scale": {"spec": _OBJ, "status": _OBJ},
    "Binding": {"target": _OBJ},
    "Eviction": {"deleteOptions": _OBJ},
    "PodExecOptions": {}, "PodPortForwardOptions": {},
    "PodProxyOptions": {}, "ServiceProxyOptions": {}, "NodeProxyOptions": {},
}


def schema_name(gvk: GVK) -> str:
    """``io.k8s.api.core.v1.Pod`` style definition names (package = first label of group)."""
    group, version, kind = gvk
    package = group.split(".")[0] if group else "core"
    return f"io.k8s.api.{package}.{version}.{kind}"


def _camel(group: str) -> str:
    return (group.split(".")[0] if group else "core").capitalize()


def _gvk(rt: ResourceType) -> GVK:
    return (rt.group, rt.version, rt.kind)


# x-kubernetes-action -> (operationId verb, infix), as Kubernetes names its operations
_OPERATION_IDS = {"list": ("list", ""), "post": ("create", ""),
                  "deletecollection": ("delete", "Collection"), "get": ("read", ""),
                  "put": ("replace", ""), "patch": ("patch", ""), "delete": ("delete", "")}


@dataclass(frozen=True)
class _Naming:
    """Path and operationId pieces of one kind."""
    rt: ResourceType

    @property
    def stem(self) -> str:  # CoreV1, AppsV1, CoordinationV1
        return f"{_camel(self.rt.group)}{self.rt.version.capitalize()}"

    @property
    def scoped(self) -> str:  # NamespacedPod, Node
        return f"Namespaced{self.rt.kind}" if self.rt.namespaced else self.rt.kind

    @property
    def collection(self) -> str:
        base = self.rt.group_version_path
        return (f"{base}/namespaces/{{namespace}}/{self.rt.plural}" if self.rt.namespaced
                else f"{base}/{self.rt.plural}")

    @property
    def scope_params(self) -> tuple[str, ...]:
        return ("namespace",) if self.rt.namespaced else ()

    def operation_id(self, action: str, subject: str = "") -> str:
        verb, infix = _OPERATION_IDS[action]
        return f"{verb}{self.stem}{infix}{subject or self.scoped}"


def _crud_paths(rt: ResourceType) -> list[_PathItem]:
    """Collection, object and all-namespaces list paths of one kind, as allowed by its verbs."""
    names, gvk, kind = _Naming(rt), _gvk(rt), schema_name(_gvk(rt))
    delete_options, status = _META + "DeleteOptions", _META + "Status"
    # (registry verb, HTTP method, x-kubernetes-action, query, body, response, 201?)
    collection_ops = (
        ("list", "get", "list", _LIST_Q, None, f"{kind}List", False),
        ("create", "post", "post", _WRITE_Q, kind, kind, True),
        ("deletecollection", "delete", "deletecollection", _DELETECOLLECTION_Q,
         delete_options, status, False),
    )
    object_ops = (
        ("get", "get", "get", (), None, kind, False),
        ("update", "put", "put", _WRITE_Q, kind, kind, True),
        ("patch", "patch", "patch", _PATCH_Q, _META + "Patch", kind, True),
        ("delete", "delete", "delete", _DELETE_Q, delete_options, status, False),
    )

    def ops(table: tuple, subject: str = "") -> tuple[_Op, ...]:
        return tuple(_Op(method, action, names.operation_id(action, subject), gvk, query=query,
                         body=body, response=response, created=created)
                     for verb, method, action, query, body, response, created in table
                     if verb in rt.verbs)

    items = [_PathItem(names.collection, names.scope_params, ops(collection_ops)),
             _PathItem(f"{names.collection}/{{name}}", (*names.scope_params, "name"),
                       ops(object_ops))]
    if rt.namespaced:
        items.append(_PathItem(f"{rt.group_version_path}/{rt.plural}", (),
                               ops(collection_ops[:1], f"{rt.kind}ForAllNamespaces")))
    return [i for i in items if i.ops]


def _sub_op(names: _Naming, sub: str, shape: _Sub, method: str) -> _Op:
    rt = names.rt
    if sub == "proxy":
        body_gvk: GVK = ("", "v1", f"{rt.kind}ProxyOptions")
    else:
        body_gvk = shape.body_kind or _gvk(rt)
    body = schema_name(body_gvk)
    response = None if shape.text else body
    subject = f"{names.scoped}{sub.capitalize()}"
    if shape.connect:
        return _Op(method, "connect", f"connect{names.stem}{method.capitalize()}{subject}",
                   body_gvk, query=shape.query, response=response)
    if method == "get":
        return _Op(method, "get", names.operation_id("get", subject), body_gvk,
                   query=shape.query, response=response)
    return _Op(method, method, names.operation_id(method, subject), body_gvk,
               query=_PATCH_Q if method == "patch" else _WRITE_Q,
               body=_META + "Patch" if method == "patch" else body,
               response=response, created=True)


def _sub_paths(rt: ResourceType) -> list[_PathItem]:
    names = _Naming(rt)
    params = (*names.scope_params, "name")
    return [_PathItem(f"{names.collection}/{{name}}/{sub}", params,
                      tuple(_sub_op(names, sub, _SUBRESOURCES[sub], m)
                            for m in _SUBRESOURCES[sub].methods))
            for sub in rt.subresources if sub in _SUBRESOURCES]


# --------------------------------------------------------------------------- schemas


@dataclass(frozen=True)
class _Flavor:
    """What differs between the OpenAPI 3.0 and Swagger 2.0 renderings of the same model."""
    v3: bool

    @property
    def prefix(self) -> str:
        return "#/components/schemas/" if self.v3 else "#/definitions/"

    def ref(self, name: str) -> dict:
        return {"$ref": self.prefix + name}

    def field(self, name: str, description: str) -> dict:
        """A described reference: v3 wraps it in allOf, v2 keeps $ref with siblings."""
        if self.v3:
            return {"allOf": [self.ref(name)], "description": description}
        return {**self.ref(name), "description": description}

    def param(self, name: str, where: str, kind: str, description: str) -> dict:
        out = {"name": name, "in": where, "description": description}
        if where == "path":
            out["required"] = True
        typed = {"type": kind, "uniqueItems": True}
        return {**out, "schema": typed} if self.v3 else {**out, **typed}

    def response(self, description: str, schema: dict, media: tuple[str, ...]) -> dict:
        if self.v3:
            return {"description": description,
                    "content": {m: {"schema": schema} for m in media}}
        return {"description": description, "schema": schema}


_V3 = _Flavor(v3=True)
_V2 = _Flavor(v3=False)


def _gvk_ext(gvk: GVK) -> dict:
    group, version, kind = gvk
    return {"group": group, "kind": kind, "version": version}


def _type_meta() -> dict:
    return {"apiVersion": {"type": "string", "description": "Versioned schema of this object."},
            "kind": {"type": "string", "description": "REST resource this object represents."}}


def _kind_schema(gvk: GVK, has_status: bool, flavor: _Flavor) -> dict:
    kind = gvk[2]
    fields = _TOP_LEVEL.get(kind)
    if fields is None:
        fields = {"spec": {**_OBJ, "description": f"Desired state of the {kind}."}}
        if has_status:
            fields["status"] = {**_OBJ, "description": f"Observed state of the {kind}."}
    return {
        "description": f"{kind} ({'/'.join(p for p in gvk[:2] if p)}).",
        "type": "object",
        "properties": {**_type_meta(),
                       "metadata": flavor.field(_META + "ObjectMeta", "Standard object metadata."),
                       **fields},
        "x-kubernetes-preserve-unknown-fields": True,
        "x-kubernetes-group-version-kind": [_gvk_ext(gvk)],
    }


def _list_schema(gvk: GVK, flavor: _Flavor) -> dict:
    return {
        "description": f"A list of {gvk[2]} objects.",
        "type": "object",
        "properties": {**_type_meta(),
                       "metadata": flavor.field(_META + "ListMeta", "Standard list metadata."),
                       "items": {"type": "array", "items": flavor.ref(schema_name(gvk))}},
        "required": ["items"],
        "x-kubernetes-group-version-kind": [_gvk_ext((gvk[0], gvk[1], gvk[2] + "List"))],
    }


def _meta_schemas(flavor: _Flavor) -> dict[str, dict]:
    time = {"type": "string", "format": "date-time"}
    return {
        _META + "ObjectMeta": {
            "description": "Metadata all persisted objects have.",
            "type": "object",
            "properties": {
                "name": _STR, "generateName": _STR, "namespace": _STR, "uid": _STR,
                "resourceVersion": _STR, "generation": {"type": "integer", "format": "int64"},
                "creationTimestamp": time, "deletionTimestamp": time,
                "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
                "labels": _STR_MAP, "annotations": _STR_MAP, "ownerReferences": _OBJ_LIST,
                "finalizers": {"type": "array", "items": _STR}, "managedFields": _OBJ_LIST,
            },
            "x-kubernetes-preserve-unknown-fields": True,
        },
        _META + "ListMeta": {
            "description": "Metadata of a list response.",
            "type": "object",
            "properties": {"resourceVersion": _STR, "continue": _STR,
                           "remainingItemCount": {"type": "integer", "format": "int64"}},
        },
        _META + "Status": {
            "description": "The result of an operation that returns no object.",
            "type": "object",
            "properties": {**_type_meta(),
                           "metadata": flavor.field(_META + "ListMeta", "Standard list metadata."),
                           "status": _STR, "message": _STR, "reason": _STR, "details": _OBJ,
                           "code": {"type": "integer", "format": "int32"}},
            "x-kubernetes-group-version-kind": [_gvk_ext(("", "v1", "Status"))],
        },
        _META + "DeleteOptions": {
            "description": "Options of a delete request.",
            "type": "object",
            "properties": {**_type_meta(),
                           "dryRun": {"type": "array", "items": _STR},
                           "gracePeriodSeconds": {"type": "integer", "format": "int64"},
                           "preconditions": _OBJ, "propagationPolicy": _STR,
                           "orphanDependents": {"type": "boolean"}},
        },
        _META + "Patch": {"description": "A patch document in one of the accepted formats.",
                          "type": "object"},
    }


def _schemas(types: list[ResourceType], items: list[_PathItem], flavor: _Flavor) -> dict:
    out = _meta_schemas(flavor)
    for rt in types:
        out[schema_name(_gvk(rt))] = _kind_schema(_gvk(rt), rt.has_status, flavor)
        out[schema_name(_gvk(rt)) + "List"] = _list_schema(_gvk(rt), flavor)
    for item in items:  # kinds that only appear as subresource bodies (Scale, Binding, ...)
        for op in item.ops:
            name = schema_name(op.gvk)
            if name not in out:
                out[name] = _kind_schema(op.gvk, False, flavor)
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- rendering

def _query(name: str, flavor: _Flavor) -> dict:
    kind, description = _QUERY[name]
    return flavor.param(name, "query", kind, description)


def _consumes(op: _Op) -> tuple[str, ...]:
    return PATCH_BODY_TYPES if op.method == "patch" else ("*/*",)


def _responses(op: _Op, flavor: _Flavor) -> dict:
    text = op.response is None
    schema = {"type": "string"} if text else flavor.ref(op.response)
    media = ("text/plain",) if text else _RESPONSE_TYPES
    codes = [("200", "OK")]
    if op.created:
        codes.append(("201", "Created"))
    if op.method == "delete" and not text:
        codes.append(("202", "Accepted"))
    out = {code: flavor.response(description, schema, media) for code, description in codes}
    out["401"] = {"description": "Unauthorized"}
    return out


def _tag(group: str, version: str) -> str:
    return f"{(group.split('.')[0] if group else 'core')}_{version}"


def _operation(op: _Op, tag: str, flavor: _Flavor) -> dict:
    out: dict[str, Any] = {"description": f"{op.action} {op.gvk[2]}",
                           "operationId": op.operation_id, "tags": [tag]}
    params = [_query(q, flavor) for q in op.query]
    if op.body is not None and flavor.v3:
        out["requestBody"] = {"content": {t: {"schema": flavor.ref(op.body)}
                                          for t in _consumes(op)}}
    elif op.body is not None:
        params.append({"name": "body", "in": "body", "required": op.method != "delete",
                       "schema": flavor.ref(op.body)})
    if not flavor.v3:
        out["schemes"] = ["https"]
        out["consumes"] = list(_consumes(op))
        out["produces"] = ["text/plain"] if op.response is None else list(_RESPONSE_TYPES)
    if params:
        out["parameters"] = params
    out["responses"] = _responses(op, flavor)
    out["x-kubernetes-action"] = op.action
    out["x-kubernetes-group-version-kind"] = _gvk_ext(op.gvk)
    return out


def _render_paths(items: list[tuple[_PathItem, str]], flavor: _Flavor) -> dict:
    """Path items (with their tag) as a ``paths`` object, sorted by path."""
    paths = {}
    for item, tag in sorted(items, key=lambda pair: pair[0].path):
        rendered: dict[str, Any] = {op.method: _operation(op, tag, flavor) for op in item.ops}
        rendered["parameters"] = [
            *(flavor.param(p, "path", "string", _PATH[p]) for p in item.path_params),
            _query("pretty", flavor)]
        paths[item.path] = rendered
    return paths


def _info() -> dict:
    return {"title": "minik8s", "version": "unversioned"}


# --------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class _Documents:
    v3: dict[tuple[str, str], dict]
    hashes: dict[tuple[str, str], str]
    root: dict
    v2: dict


def _digest(doc: dict) -> str:
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha512(canonical).hexdigest().upper()


def _gv_url_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@lru_cache(maxsize=None)
def _documents(registry: Registry) -> _Documents:
    v3, hashes = {}, {}
    all_items: list[tuple[_PathItem, str]] = []
    for group, versions in registry.groups().items():
        for version in versions:
            types = registry.in_group_version(group, version)
            tag = _tag(group, version)
            items = [(i, tag) for rt in types for i in (*_crud_paths(rt), *_sub_paths(rt))]
            doc = {"openapi": "3.0.0", "info": _info(), "paths": _render_paths(items, _V3),
                   "components": {"schemas": _schemas(types, [i for i, _ in items], _V3)}}
            v3[(group, version)], hashes[(group, version)] = doc, _digest(doc)
            all_items += items
    root = {"paths": {
        _gv_url_path(g, v): {"serverRelativeURL": f"/openapi/v3/{_gv_url_path(g, v)}?hash={h}"}
        for (g, v), h in hashes.items()}}
    v2 = {"swagger": "2.0", "info": _info(), "paths": _render_paths(all_items, _V2),
          "definitions": _schemas(list(registry), [i for i, _ in all_items], _V2)}
    return _Documents(v3, hashes, root, v2)


def openapi_v3_root(registry: Registry) -> dict:
    """``GET /openapi/v3``: the group-version index, each URL pinned by its content hash."""
    return _documents(registry).root


def openapi_v3_group_version(registry: Registry, group: str, version: str) -> dict | None:
    """``GET /openapi/v3/api/v1`` or ``/openapi/v3/apis/<group>/<version>``; None if unknown."""
    return _documents(registry).v3.get((group, version))


def openapi_v3_hash(registry: Registry, group: str, version: str) -> str | None:
    """The ``?hash=``/ETag of a group-version document; None if unknown."""
    return _documents(registry).hashes.get((group, version))


def openapi_v2(registry: Registry) -> dict:
    """``GET /openapi/v2`` as JSON: one Swagger 2.0 document over every group-version."""
    return _documents(registry).v2


__all__ = ["GVK", "PATCH_BODY_TYPES", "V2_PROTOBUF", "V3_PROTOBUF", "openapi_v2",
           "openapi_v3_group_version", "openapi_v3_hash", "openapi_v3_root", "schema_name"]
