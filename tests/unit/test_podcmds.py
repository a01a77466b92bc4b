"""mkctl logs/exec/cordon/drain without a server: argument shapes, the exec URL and exit
code, container defaulting and drain's pod filters."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from minik8s.cli import mkctl
from minik8s.cli.errors import CliError
from minik8s.api.selectors import selector_query
from minik8s.cli.podcmds import classify, exec_url, exit_code_of, log_params, pick_container


def test_exec_arguments_after_the_double_dash_are_the_command():
    a = mkctl.parse(["exec", "-it", "web", "-c", "main", "--", "sh", "-c", "echo hi", "-i"])
    assert (a.stdin, a.tty, a.container) == (True, True, "main")
    assert a.args == ["web", "sh", "-c", "echo hi", "-i"]


def test_logs_flags():
    a = mkctl.parse(["logs", "deploy/web", "-f", "--tail", "5", "-p", "--timestamps", "-c",
                     "app", "-n", "prod"])
    assert a.args == ["deploy/web"] and a.namespace == "prod"
    assert log_params(a, "app") == {"container": "app", "follow": "true", "previous": "true",
                                    "timestamps": "true", "tailLines": "5"}
    assert log_params(mkctl.parse(["logs", "x"]), "c") == {"container": "c"}


def test_exec_url_asks_for_the_streams_kubectl_asks_for():
    url = exec_url("https://10.0.0.1:6443", "default", "web", "main", ["sh", "-c", "ls"],
                   stdin=True, tty=False)
    parts = urlsplit(url)
    assert parts.scheme == "wss" and parts.path == "/api/v1/namespaces/default/pods/web/exec"
    assert parse_qsl(parts.query) == [
        ("command", "sh"), ("command", "-c"), ("command", "ls"), ("container", "main"),
        ("stdin", "true"), ("stdout", "true"), ("stderr", "true"), ("tty", "false")]
    tty = dict(parse_qsl(urlsplit(exec_url("https://h", "d", "p", "c", ["sh"], stdin=True,
                                           tty=True)).query))
    assert (tty["tty"], tty["stderr"]) == ("true", "false")  # a tty merges stderr


def test_exit_code_from_the_error_channel():
    assert exit_code_of(b"") == (0, None)
    assert exit_code_of(b'{"metadata":{},"status":"Success"}') == (0, None)
    failed = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
              "message": "command terminated with non-zero exit code",
              "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}}
    assert exit_code_of(json.dumps(failed).encode()) == (42, None)
    assert exit_code_of(json.dumps({"status": "Failure", "message": "boom"}).encode()) == \
        (1, "boom")


def _pod(name, containers=("a",), init=(), annotations=None):
    return {"metadata": {"name": name, "namespace": "default",
                         "annotations": annotations or {}},
            "spec": {"containers": [{"name": c} for c in containers],
                     "initContainers": [{"name": c} for c in init]}}


def test_container_defaulting(capsys):
    assert pick_container(_pod("p"), None) == "a"
    assert pick_container(_pod("p", ("a", "b")), "b") == "b"
    assert pick_container(_pod("p", ("a", "b"), init=("setup",)), None) == "a"
    assert capsys.readouterr().err == 'Defaulted container "a" out of: a, b, setup (init)\n'
    annotated = _pod("p", ("a", "b"),
                     annotations={"kubectl.kubernetes.io/default-container": "b"})
    assert pick_container(annotated, None) == "b"
    with pytest.raises(CliError):
        pick_container(_pod("p", ()), None)


def test_selector_strings():
    assert selector_query({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["a", "b"]},
        {"key": "x", "operator": "DoesNotExist"}]}) == "app=web,tier in (a,b),!x"
    assert selector_query({"app": "web"}) == "app=web"  # a Service's plain map


def _drain_pod(name, *, owner=None, volumes=(), phase="Running", mirror=False):
    md = {"name": name, "namespace": "ns", "annotations": {}}
    if owner:
        md["ownerReferences"] = [{"kind": owner, "name": "o", "uid": "1", "controller": True}]
    if mirror:
        md["annotations"]["kubernetes.io/config.mirror"] = "x"
    return {"metadata": md, "spec": {"volumes": list(volumes)}, "status": {"phase": phase}}


def test_drain_filters_like_kubectl():
    pods = [_drain_pod("rs", owner="ReplicaSet"), _drain_pod("bare"),
            _drain_pod("ds", owner="DaemonSet"), _drain_pod("done", phase="Succeeded"),
            _drain_pod("scratch", owner="ReplicaSet", volumes=[{"name": "v", "emptyDir": {}}]),
            _drain_pod("static", mirror=True)]
    delete, warnings, errors = classify(pods, force=False, ignore_daemonsets=False,
                                        delete_emptydir=False)
    assert [p["metadata"]["name"] for p in delete] == ["rs", "done"]
    assert errors == [
        "cannot delete Pods that declare no controller (use --force to override): ns/bare",
        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): ns/ds",
        "cannot delete Pods with local storage (use --delete-emptydir-data to override): "
        "ns/scratch"]
    delete, warnings, errors = classify(pods, force=True, ignore_daemonsets=True,
                                        delete_emptydir=True)
    assert errors == []
    assert sorted(p["metadata"]["name"] for p in delete) == ["bare", "done", "rs", "scratch"]
    assert warnings == ["deleting Pods that declare no controller: ns/bare",
                        "ignoring DaemonSet-managed Pods: ns/ds",
                        "deleting Pods with local storage: ns/scratch"]
