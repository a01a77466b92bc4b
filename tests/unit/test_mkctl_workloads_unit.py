"""The pure parts of ``mkctl set image``, ``create deployment|job`` and ``get events``: the
objects kubectl's generators build, the image patch, the time order of events, and argument
parsing through mkctl's command table."""

from __future__ import annotations

import pytest

from minik8s.cli import mkctl, workloads
from minik8s.cli.errors import CliError
from minik8s.cli.workloads import (container_name, deployment_object, event_time,
                                   image_patch, job_from_cronjob, job_object, parse_images,
                                   sort_rows)


def test_commands_are_merged_into_mkctl():
    assert mkctl.COMMANDS["set"][2] is workloads.run_set
    assert mkctl.COMMANDS["create"][2] is workloads.run_create
    assert mkctl.COMMANDS["get"][2] is workloads.run_get
    # the order of mkctl's help stays as it was
    assert list(mkctl.COMMANDS)[:4] == ["get", "describe", "apply", "create"]


def test_parse_create_deployment_with_command_after_dashes():
    a = mkctl.parse(["create", "deployment", "web", "--image=minik8s/busybox:1.35",
                     "--replicas", "3", "--port", "80", "--", "sleep", "3600"])
    assert a.args == ["deployment", "web", "sleep", "3600"]
    assert (a.image, a.replicas, a.port) == (["minik8s/busybox:1.35"], 3, 80)
    a = mkctl.parse(["create", "job", "j", "--from=cronjob/cj"])
    assert (a.args, a.from_) == (["job", "j"], "cronjob/cj")
    a = mkctl.parse(["set", "image", "deployment/web", "c=img:1", "-n", "x"])
    assert (a.what, a.args, a.namespace) == ("image", ["deployment/web", "c=img:1"], "x")
    with pytest.raises(CliError):
        mkctl.parse(["set", "env", "deployment/web", "A=1"])


def test_container_name_like_kubectl():
    assert container_name("minik8s/busybox:1.35") == "busybox"
    assert container_name("registry.local:5000/team/my_app@sha256:abc") == "my-app"
    assert container_name("nginx") == "nginx"


def test_deployment_object():
    d = deployment_object("web", ["minik8s/busybox:1.35"], replicas=2, port=8080,
                          command=["sleep", "3600"])
    assert d["metadata"] == {"name": "web", "labels": {"app": "web"}}
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    assert d["spec"]["template"]["spec"]["containers"] == [
        {"name": "busybox", "image": "minik8s/busybox:1.35", "resources": {},
         "command": ["sleep", "3600"], "ports": [{"containerPort": 8080}]}]
    two = deployment_object("w", ["a/x:1", "b/x:2"])
    names = [c["name"] for c in two["spec"]["template"]["spec"]["containers"]]
    assert len(set(names)) == 2 and "ports" not in two["spec"]["template"]["spec"][
        "containers"][0]


def test_job_objects():
    j = job_object("once", "img:1", ["echo", "hi"])
    spec = j["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"] == [{"name": "once", "image": "img:1", "resources": {},
                                   "command": ["echo", "hi"]}]
    cj = {"metadata": {"name": "nightly", "uid": "u1"},
          "spec": {"jobTemplate": {"metadata": {"labels": {"a": "b"},
                                                "annotations": {"x": "y"}},
                                   "spec": {"backoffLimit": 2, "template": {"spec": {}}}}}}
    j = job_from_cronjob("manual", cj)
    assert j["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual",
                                            "x": "y"}
    assert j["metadata"]["labels"] == {"a": "b"}
    assert j["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob",
                                                 "name": "nightly", "uid": "u1",
                                                 "controller": True}]
    assert j["spec"]["backoffLimit"] == 2


def test_image_patch_by_kind():
    dep = {"kind": "Deployment", "spec": {"template": {"spec": {
        "initContainers": [{"name": "init", "image": "i:1"}],
        "containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}}
    patch, missing = image_patch(dep, {"b": "b:2", "nope": "x"})
    assert patch == {"spec": {"template": {"spec": {"containers": [
        {"name": "b", "image": "b:2"}]}}}}
    assert missing == ["nope"]
    patch, _ = image_patch(dep, {"*": "z:9"})
    assert patch["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "z:9"}, {"name": "b", "image": "z:9"}]
    assert patch["spec"]["template"]["spec"]["initContainers"] == [
        {"name": "init", "image": "z:9"}]
    assert image_patch(dep, {"a": "a:1"}) == ({}, [])
    pod = {"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "a:1"}]}}
    assert image_patch(pod, {"a": "a:2"})[0] == {"spec": {"containers": [
        {"name": "a", "image": "a:2"}]}}
    cj = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "a:1"}]}}}}}}
    assert image_patch(cj, {"a": "a:2"})[0] == {"spec": {"jobTemplate": {"spec": {
        "template": {"spec": {"containers": [{"name": "a", "image": "a:2"}]}}}}}}


def test_parse_images():
    assert parse_images(["a=x:1", "*=y:2"]) == {"a": "x:1", "*": "y:2"}
    with pytest.raises(CliError):
        parse_images(["=x"])


def test_events_sorted_by_last_timestamp_then_event_time():
    rows = [
        {"cells": ["c"], "object": {"lastTimestamp": "2024-01-01T00:00:30Z"}},
        {"cells": ["a"], "object": {"eventTime": "2024-01-01T00:00:10.500000Z"}},
        {"cells": ["b"], "object": {"lastTimestamp": "2024-01-01T00:00:20Z",
                                    "eventTime": "2024-01-01T00:00:01.000000Z"}},
        {"cells": ["s"], "object": {"series": {"lastObservedTime":
                                               "2024-01-01T00:00:15.000000Z"}}},
        {"cells": ["z"], "object": {}},
    ]
    table = sort_rows({"rows": rows})
    assert [r["cells"][0] for r in table["rows"]] == ["z", "a", "s", "b", "c"]
    assert event_time({"metadata": {"creationTimestamp": "2024-01-01T00:00:00Z"}}).year == 2024
