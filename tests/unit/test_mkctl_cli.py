"""The command layer without a server: argument shapes resolve as kubectl resolves them, the
same mixtures are refused with kubectl's words, errors become one line, and the last-applied
annotation has kubectl's exact form."""

from __future__ import annotations

import errno
import json

import httpx
import pytest

from minik8s.api.errors import AlreadyExists, Invalid, NotFound, Unauthorized, field_cause
from minik8s.cli import mkctl
from minik8s.cli.errors import CliError
from minik8s.cli.manifests import Manifest
from minik8s.cli.resources import Scope, expand_types, manifest_ref, resolve_type, select

SCOPE = Scope("default")


def test_type_names_resolve_like_kubectl():
    assert resolve_type("po").plural == "pods"
    assert resolve_type("deploy.apps").plural == "deployments"
    assert resolve_type("deployments.v1.apps").plural == "deployments"
    with pytest.raises(CliError) as exc:
        resolve_type("foo")
    assert str(exc.value) == 'the server doesn\'t have a resource type "foo"'
    assert [t.plural for t in expand_types("all")] == [
        "pods", "services", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs",
        "cronjobs", "horizontalpodautoscalers"]
    assert [t.plural for t in expand_types("po,svc,pods")] == ["pods", "services"]


def test_select_shapes():
    sel = select(["pods,svc", "a", "b"], SCOPE)
    assert [(r.rt.plural, r.name, r.namespace) for r in sel.refs] == [
        ("pods", "a", "default"), ("pods", "b", "default"), ("services", "a", "default"),
        ("services", "b", "default")]
    sel = select(["pod/a", "nodes/n1"], SCOPE)
    assert [(r.rt.plural, r.name, r.namespace) for r in sel.refs] == [
        ("pods", "a", "default"), ("nodes", "n1", None)]
    sel = select(["pods"], Scope("default", all_namespaces=True))
    assert [(c.rt.plural, c.namespace) for c in sel.collections] == [("pods", None)]
    assert select(["nodes"], SCOPE).collections[0].namespace is None


@pytest.mark.parametrize("args, kw, message", [
    (["pods", "pod/a"], {}, "there is no need to specify a resource type"),
    (["pods", "a"], {"selector": True}, "name cannot be provided when a selector is specified"),
    (["pods"], {"need_names": True}, "resource(s) were provided, but no name was specified"),
    ([], {"missing": "You must provide one"}, "You must provide one"),
])
def test_select_refuses_what_kubectl_refuses(args, kw, message):
    with pytest.raises(CliError) as exc:
        select(args, SCOPE, **kw)
    assert str(exc.value).startswith(message)
    with pytest.raises(CliError) as exc:
        select(["pods", "a"], Scope("default", all_namespaces=True))
    assert str(exc.value) == "a resource cannot be retrieved by name across all namespaces"


def test_manifest_namespace_rules():
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "c", "namespace": "kube-system"}}
    assert manifest_ref(Manifest(obj, "f.yaml"), SCOPE).namespace == "kube-system"
    with pytest.raises(CliError) as exc:
        manifest_ref(Manifest(obj, "f.yaml"), Scope("default", explicit=True))
    assert str(exc.value) == (
        'the namespace from the provided object "kube-system" does not match the namespace '
        "\"default\". You must pass '--namespace=kube-system' to perform this operation.")
    unknown = {"apiVersion": "example.com/v1", "kind": "Foo", "metadata": {"name": "f"}}
    with pytest.raises(CliError) as exc:
        manifest_ref(Manifest(unknown, "foo.yaml"), SCOPE)
    assert str(exc.value) == ('resource mapping not found for name: "f" namespace: "" from '
                              '"foo.yaml": no matches for kind "Foo" in version "example.com/v1"')


def test_last_applied_is_kubectls_form():
    obj = {"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": "p", "annotations": {mkctl.LAST_APPLIED: "old", "b": "<x>"}}}
    text = mkctl.last_applied(obj)
    assert text == ('{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"b":"\\u003cx'
                    '\\u003e"},"name":"p"}}\n')
    bare = mkctl.last_applied({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}})
    assert json.loads(bare)["metadata"]["annotations"] == {}
    annotated = mkctl.with_last_applied(obj, text)
    assert annotated["metadata"]["annotations"] == {"b": "<x>", mkctl.LAST_APPLIED: text}


def test_label_arguments():
    assert mkctl.split_changes(["pod", "p1", "a=1", "b-"], "label") == (
        ["pod", "p1"], {"a": "1"}, ["b"])
    for args, message in ((["pod", "p1"], "at least one label update is required"),
                          (["pod", "a=1", "p1"],
                           "all resources must be specified before label changes: p1"),
                          (["pod", "p1", "a=1", "a-"],
                           "can not both modify and remove a label in the same command")):
        with pytest.raises(CliError) as exc:
            mkctl.split_changes(args, "label")
        assert str(exc.value) == message
    assert mkctl.overwrite_conflicts({"a": "1"}, {"a": "2"}, "label") == (
        "'a' already has a value (1), and --overwrite is false")
    assert mkctl.overwrite_conflicts({"a": "1"}, {"a": "1"}, "label") == ""


def test_durations():
    assert mkctl.parse_duration("0") is None
    assert mkctl.parse_duration("5") == 5
    assert mkctl.parse_duration("1m30s") == 90
    assert mkctl.parse_duration("250ms") == 0.25
    with pytest.raises(CliError):
        mkctl.parse_duration("soon")


def test_error_lines():
    assert mkctl.error_line(NotFound.object("deployments", "apps", "web")) == \
        'Error from server (NotFound): deployments.apps "web" not found'
    assert mkctl.status_line(AlreadyExists.object("pods", "", "p"), action="creating",
                             source="p.yaml") == \
        'Error from server (AlreadyExists): error when creating "p.yaml": pods "p" already exists'
    invalid = Invalid.object("Pod", "", "p", [field_cause("metadata.labels", "bad key")])
    assert mkctl.error_line(invalid) == 'The Pod "p" is invalid: metadata.labels: bad key'
    assert mkctl.error_line(Unauthorized("Unauthorized")) == \
        "error: You must be logged in to the server (Unauthorized)"
    refused = httpx.ConnectError("All connection attempts failed")
    refused.__cause__ = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
    assert mkctl.error_line(refused, "https://127.0.0.1:6443") == (
        "The connection to the server 127.0.0.1:6443 was refused - did you specify the right "
        "host or port?")
    assert mkctl.error_line(CliError("boom")) == "error: boom"


def test_main_reports_misuse_in_one_line(capsys):
    assert mkctl.main(["frobnicate"]) == 1
    assert capsys.readouterr().err == 'error: unknown command "frobnicate" for "mkctl"\n'
    assert mkctl.main(["get", "pods", "--bogus"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown flag: --bogus")
    assert mkctl.main(["--kubeconfig", "/nonexistent/kubeconfig", "get", "pods"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: kubeconfig ") and err.count("\n") == 1
    assert mkctl.main([]) == 0
    assert "Commands:" in capsys.readouterr().out
