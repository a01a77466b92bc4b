"""The three PATCH flavours and the `kubectl apply` three-way patch, checked against the RFC
examples and the strategic merge semantics kubectl and the Kubernetes API server agree on."""

from __future__ import annotations

import copy

import pytest

from minik8s.api.errors import BadRequest, Invalid
from minik8s.api.patch import (
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
    create_merge_patch,
    create_three_way_patch,
)


# ---------------------------------------------------------------------------------------------
# RFC 7386 JSON merge patch
# ---------------------------------------------------------------------------------------------

# RFC 7386 Appendix A, row by row.
RFC7386_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize("target,patch,expected", RFC7386_EXAMPLES)
def test_merge_patch_rfc7386_examples(target, patch, expected):
    assert apply_merge_patch(target, patch) == expected


def test_merge_patch_rfc7386_section3_example():
    target = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert apply_merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_merge_patch_does_not_mutate_inputs():
    target = {"a": {"b": [1, 2]}, "keep": {"x": 1}}
    patch = {"a": {"c": {"d": 1}}}
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = apply_merge_patch(target, patch)
    result["keep"]["x"] = 99
    result["a"]["c"]["d"] = 99
    assert target == target_before
    assert patch == patch_before


def test_create_merge_patch_round_trips():
    original = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": [1, 2], "y": 1}}
    modified = {"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"x": [1], "y": 1}}
    patch = create_merge_patch(original, modified)
    assert patch == {"metadata": {"labels": {"b": None, "c": "3"}}, "spec": {"x": [1]}}
    assert apply_merge_patch(original, patch) == modified


def test_create_merge_patch_identical_is_empty_and_distinguishes_bool_from_int():
    assert create_merge_patch({"a": {"b": 1}}, {"a": {"b": 1}}) == {}
    assert create_merge_patch({"a": 1}, {"a": True}) == {"a": True}
    assert create_merge_patch({"a": 1}, {"a": 1.0}) == {}
    assert create_merge_patch(None, {"a": 1}) == {"a": 1}


def test_create_merge_patch_type_change_replaces():
    assert create_merge_patch({"a": {"b": 1}}, {"a": "x"}) == {"a": "x"}
    assert create_merge_patch({"a": "x"}, {"a": {"b": 1}}) == {"a": {"b": 1}}


def test_create_merge_patch_rejects_non_object():
    with pytest.raises(BadRequest):
        create_merge_patch({}, ["a"])


# ---------------------------------------------------------------------------------------------
# RFC 6902 JSON patch
# ---------------------------------------------------------------------------------------------

def test_json_patch_a1_add_object_member():
    assert apply_json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {
        "baz": "qux", "foo": "bar"}


def test_json_patch_a2_add_array_element():
    doc = {"foo": ["bar", "baz"]}
    assert apply_json_patch(doc, [{"op": "add", "path": "/foo/1", "value": "qux"}]) == {
        "foo": ["bar", "qux", "baz"]}


def test_json_patch_a3_remove_object_member():
    doc = {"baz": "qux", "foo": "bar"}
    assert apply_json_patch(doc, [{"op": "remove", "path": "/baz"}]) == {"foo": "bar"}


def test_json_patch_a4_remove_array_element():
    doc = {"foo": ["bar", "qux", "baz"]}
    assert apply_json_patch(doc, [{"op": "remove", "path": "/foo/1"}]) == {"foo": ["bar", "baz"]}


def test_json_patch_a5_replace_value():
    doc = {"baz": "qux", "foo": "bar"}
    assert apply_json_patch(doc, [{"op": "replace", "path": "/baz", "value": "boo"}]) == {
        "baz": "boo", "foo": "bar"}


def test_json_patch_a6_move_value():
    doc = {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}
    ops = [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]
    assert apply_json_patch(doc, ops) == {
        "foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}


def test_json_patch_a7_move_array_element():
    doc = {"foo": ["all", "grass", "cows", "eat"]}
    ops = [{"op": "move", "from": "/foo/1", "path": "/foo/3"}]
    assert apply_json_patch(doc, ops) == {"foo": ["all", "cows", "eat", "grass"]}


def test_json_patch_a8_test_success():
    doc = {"baz": "qux", "foo": ["a", 2, "c"]}
    ops = [{"op": "test", "path": "/baz", "value": "qux"},
           {"op": "test", "path": "/foo/1", "value": 2}]
    assert apply_json_patch(doc, ops) == doc


def test_json_patch_a9_test_error():
    with pytest.raises(Invalid, match="test failed"):
        apply_json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])


def test_json_patch_a10_add_nested_member_object():
    ops = [{"op": "add", "path": "/child", "value": {"grandchild": {}}}]
    assert apply_json_patch({"foo": "bar"}, ops) == {"foo": "bar", "child": {"grandchild": {}}}


def test_json_patch_a11_ignores_unrecognized_members():
    ops = [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}]
    assert apply_json_patch({"foo": "bar"}, ops) == {"foo": "bar", "baz": "qux"}


def test_json_patch_a12_add_to_nonexistent_target():
    with pytest.raises(Invalid, match="/baz"):
        apply_json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}])


def test_json_patch_a14_escape_ordering():
    doc = {"/": 9, "~1": 10}
    assert apply_json_patch(doc, [{"op": "test", "path": "/~01", "value": 10}]) == doc
    assert apply_json_patch(doc, [{"op": "add", "path": "/~1", "value": 1}])["/"] == 1
    assert apply_json_patch(doc, [{"op": "remove", "path": "/~01"}]) == {"/": 9}


def test_json_patch_a15_string_is_not_number():
    with pytest.raises(Invalid):
        apply_json_patch({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}])


def test_json_patch_a16_add_array_value_appends_with_dash():
    ops = [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]
    assert apply_json_patch({"foo": ["bar"]}, ops) == {"foo": ["bar", ["abc", "def"]]}


def test_json_patch_add_at_end_index_and_root():
    assert apply_json_patch({"a": [1]}, [{"op": "add", "path": "/a/1", "value": 2}]) == {
        "a": [1, 2]}
    assert apply_json_patch({"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}]) == {"b": 2}
    assert apply_json_patch({"a": 1}, [{"op": "replace", "path": "", "value": [1]}]) == [1]


def test_json_patch_add_replaces_existing_member_and_empty_key():
    assert apply_json_patch({"a": 1}, [{"op": "add", "path": "/a", "value": 2}]) == {"a": 2}
    assert apply_json_patch({}, [{"op": "add", "path": "/", "value": 1}]) == {"": 1}


def test_json_patch_copy_is_deep():
    doc = {"a": {"b": [1]}}
    result = apply_json_patch(doc, [{"op": "copy", "from": "/a", "path": "/c"},
                                    {"op": "add", "path": "/c/b/-", "value": 2}])
    assert result == {"a": {"b": [1]}, "c": {"b": [1, 2]}}


def test_json_patch_kubernetes_style_ops():
    pod = {"metadata": {"labels": {"app/name": "x"}, "finalizers": ["a", "b"]},
           "spec": {"containers": [{"name": "c", "image": "i:1"}]}}
    ops = [
        {"op": "replace", "path": "/spec/containers/0/image", "value": "i:2"},
        {"op": "remove", "path": "/metadata/labels/app~1name"},
        {"op": "add", "path": "/metadata/finalizers/0", "value": "z"},
        {"op": "test", "path": "/metadata/finalizers", "value": ["z", "a", "b"]},
    ]
    assert apply_json_patch(pod, ops) == {
        "metadata": {"labels": {}, "finalizers": ["z", "a", "b"]},
        "spec": {"containers": [{"name": "c", "image": "i:2"}]}}


def test_json_patch_is_all_or_nothing_and_does_not_mutate():
    doc = {"a": [1, 2]}
    with pytest.raises(Invalid):
        apply_json_patch(doc, [{"op": "remove", "path": "/a/0"},
                               {"op": "remove", "path": "/missing"}])
    assert doc == {"a": [1, 2]}


def test_json_patch_test_distinguishes_bool_and_number_but_not_int_float():
    with pytest.raises(Invalid):
        apply_json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": True}])
    assert apply_json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 1.0}]) == {"a": 1}
    with pytest.raises(Invalid):
        apply_json_patch({"a": {"b": 1}}, [{"op": "test", "path": "/a", "value": {"b": 1, "c": 2}}])


@pytest.mark.parametrize("ops,fragment", [
    ([{"op": "add", "path": "/a/3", "value": 0}], "out of bounds"),
    ([{"op": "add", "path": "/a/01", "value": 0}], "not a valid array index"),
    ([{"op": "add", "path": "/a/-1", "value": 0}], "not a valid array index"),
    ([{"op": "remove", "path": "/a/2"}], "out of bounds"),
    ([{"op": "remove", "path": "/a/-"}], "not a valid array index"),
    ([{"op": "replace", "path": "/a/5", "value": 0}], "out of bounds"),
    ([{"op": "replace", "path": "/nope", "value": 0}], "does not exist"),
    ([{"op": "remove", "path": "/nope"}], "does not exist"),
    ([{"op": "remove", "path": ""}], "whole document"),
    ([{"op": "add", "path": "/s/x", "value": 0}], "parent is not an object or array"),
    ([{"op": "test", "path": "/s/x", "value": 0}], "does not exist"),
    ([{"op": "add", "path": "a", "value": 0}], "must be empty or start with '/'"),
    ([{"op": "add", "path": "/~2", "value": 0}], "invalid '~' escape"),
    ([{"op": "add", "path": "/x"}], "missing 'value'"),
    ([{"op": "test", "path": "/s"}], "missing 'value'"),
    ([{"op": "remove"}], "missing 'path'"),
    ([{"op": "remove", "path": 5}], "must be a string"),
    ([{"op": "move", "path": "/b"}], "missing 'from'"),
    ([{"op": "copy", "from": "/nope", "path": "/b"}], "does not exist"),
    ([{"op": "move", "from": "/o", "path": "/o/inner"}], "into its own child"),
    ([{"op": "move", "from": "/nope", "path": "/nope"}], "does not exist"),
])
def test_json_patch_failures_raise_invalid(ops, fragment):
    doc = {"a": [1, 2], "s": "scalar", "o": {"k": 1}}
    with pytest.raises(Invalid, match=fragment):
        apply_json_patch(doc, ops)


@pytest.mark.parametrize("ops,fragment", [
    ({"op": "add"}, "JSON array"),
    ("nope", "JSON array"),
    (["add"], "operation 0 is not a JSON object"),
    ([{"path": "/a"}], "has no 'op'"),
    ([{"op": "frob", "path": "/a"}], "op 'frob' is not supported"),
    ([{"op": 5, "path": "/a"}], "op 5 is not supported"),
])
def test_json_patch_malformed_documents_raise_bad_request(ops, fragment):
    with pytest.raises(BadRequest, match=fragment):
        apply_json_patch({"a": 1}, ops)


def test_json_patch_move_to_same_place_is_a_no_op():
    assert apply_json_patch({"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}]) == {"a": 1}


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: maps, nulls and map directives
# ---------------------------------------------------------------------------------------------

def smp(target, patch, kind="Pod"):
    return apply_strategic_merge_patch(target, patch, kind)


def test_smp_maps_merge_and_null_deletes():
    target = {"metadata": {"labels": {"a": "1", "b": "2"}, "name": "p"}}
    patch = {"metadata": {"labels": {"a": None, "c": "3"}, "missing": None}}
    assert smp(target, patch) == {"metadata": {"labels": {"b": "2", "c": "3"}, "name": "p"}}


def test_smp_new_nested_value_drops_nulls_and_directives():
    patch = {"spec": {"securityContext": {"runAsUser": 1, "fsGroup": None}}}
    assert smp({"spec": {}}, patch) == {"spec": {"securityContext": {"runAsUser": 1}}}


def test_smp_patch_replace_in_map():
    target = {"spec": {"nodeSelector": {"a": "1", "b": "2"}}}
    patch = {"spec": {"nodeSelector": {"$patch": "replace", "c": "3"}}}
    assert smp(target, patch) == {"spec": {"nodeSelector": {"c": "3"}}}


def test_smp_patch_delete_in_map_empties_it():
    target = {"spec": {"nodeSelector": {"a": "1"}, "x": 1}}
    assert smp(target, {"spec": {"nodeSelector": {"$patch": "delete"}}}) == {
        "spec": {"nodeSelector": {}, "x": 1}}


def test_smp_patch_merge_in_map_is_the_default():
    target = {"spec": {"nodeSelector": {"a": "1"}}}
    patch = {"spec": {"nodeSelector": {"$patch": "merge", "b": "2"}}}
    assert smp(target, patch) == {"spec": {"nodeSelector": {"a": "1", "b": "2"}}}


def test_smp_unknown_map_directive_is_bad_request():
    with pytest.raises(BadRequest, match="unknown \\$patch directive 'frob'"):
        smp({"spec": {}}, {"spec": {"$patch": "frob"}})


def test_smp_rejects_non_object_patch():
    with pytest.raises(BadRequest):
        smp({}, [{"op": "add"}])


def test_smp_does_not_mutate_inputs():
    target = {"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "E"}]}]}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "F", "value": "1"}]}]}}
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    result = smp(target, patch)
    result["spec"]["containers"][0]["env"][0]["value"] = "mutated"
    assert target == target_before and patch == patch_before


def test_smp_scalar_and_type_changes_replace():
    target = {"spec": {"a": {"b": 1}, "c": [1], "d": "x"}}
    patch = {"spec": {"a": "now-a-string", "c": {"k": 1}, "d": {"e": None, "f": 1}}}
    assert smp(target, patch) == {"spec": {"a": "now-a-string", "c": {"k": 1}, "d": {"f": 1}}}


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: lists merged by key
# ---------------------------------------------------------------------------------------------

def pod(*containers, **spec):
    return {"kind": "Pod", "spec": {"containers": list(containers), **spec}}


def test_smp_containers_merge_by_name():
    target = pod({"name": "nginx", "image": "nginx:1", "ports": [{"containerPort": 80}]})
    patch = {"spec": {"containers": [{"name": "log", "image": "busybox"},
                                     {"name": "nginx", "image": "nginx:2"}]}}
    assert smp(target, patch)["spec"]["containers"] == [
        {"name": "log", "image": "busybox"},
        {"name": "nginx", "image": "nginx:2", "ports": [{"containerPort": 80}]},
    ]


def test_smp_list_element_delete_directive():
    target = pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    patch = {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}
    assert smp(target, patch)["spec"]["containers"] == [{"name": "b", "image": "y"}]


def test_smp_list_replace_directive():
    target = pod({"name": "a", "image": "x"}, {"name": "b", "image": "y"})
    patch = {"spec": {"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}}
    assert smp(target, patch)["spec"]["containers"] == [{"name": "c", "image": "z"}]


def test_smp_lone_merge_element_is_ignored_and_merge_element_merges():
    target = pod({"name": "a", "image": "x"})
    patch = {"spec": {"containers": [{"$patch": "merge"},
                                     {"name": "a", "image": "y", "$patch": "merge"}]}}
    assert smp(target, patch)["spec"]["containers"] == [{"name": "a", "image": "y"}]


def test_smp_list_element_errors():
    target = pod({"name": "a"})
    with pytest.raises(Invalid, match="merge key 'name'"):
        smp(target, {"spec": {"containers": [{"image": "x"}]}})
    with pytest.raises(Invalid, match="merge key 'name'"):
        smp(target, {"spec": {"containers": [{"$patch": "delete"}]}})
    with pytest.raises(Invalid, match="expected an object"):
        smp(target, {"spec": {"containers": ["a"]}})
    with pytest.raises(BadRequest, match="unknown \\$patch directive"):
        smp(target, {"spec": {"containers": [{"name": "a", "$patch": "explode"}]}})


def test_smp_nested_container_lists_merge_by_their_keys():
    target = pod({
        "name": "c",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "ports": [{"containerPort": 80, "protocol": "TCP"}],
        "volumeMounts": [{"mountPath": "/data", "name": "v1"}],
        "volumeDevices": [{"devicePath": "/dev/x", "name": "d1"}],
        "envFrom": [{"configMapRef": {"name": "cm1"}}],
        "args": ["a", "b"],
    })
    patch = {"spec": {"containers": [{
        "name": "c",
        "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
        "ports": [{"containerPort": 443}],
        "volumeMounts": [{"mountPath": "/data", "readOnly": True}],
        "volumeDevices": [{"devicePath": "/dev/y", "name": "d2"}],
        "envFrom": [{"secretRef": {"name": "s1"}}],
        "args": ["c"],
    }]}}
    (c,) = smp(target, patch)["spec"]["containers"]
    assert c["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"},
                        {"name": "C", "value": "3"}]
    # Without $setElementOrder, patch items lead unless a live-only item came before them.
    assert c["ports"] == [{"containerPort": 443}, {"containerPort": 80, "protocol": "TCP"}]
    assert c["volumeMounts"] == [{"mountPath": "/data", "name": "v1", "readOnly": True}]
    assert c["volumeDevices"] == [{"devicePath": "/dev/y", "name": "d2"},
                                  {"devicePath": "/dev/x", "name": "d1"}]
    assert c["envFrom"] == [{"secretRef": {"name": "s1"}}]  # atomic
    assert c["args"] == ["c"]  # atomic


def test_smp_pod_spec_keyed_lists():
    target = pod(
        {"name": "c"},
        initContainers=[{"name": "init", "image": "a"}],
        ephemeralContainers=[{"name": "dbg", "image": "a"}],
        volumes=[{"name": "v", "emptyDir": {}}],
        imagePullSecrets=[{"name": "s1"}],
        hostAliases=[{"ip": "1.1.1.1", "hostnames": ["a"]}],
        topologySpreadConstraints=[{"topologyKey": "zone", "maxSkew": 1}],
        tolerations=[{"key": "a", "operator": "Exists"}],
    )
    patch = {"spec": {
        "initContainers": [{"name": "init", "image": "b"}],
        "ephemeralContainers": [{"name": "dbg2", "image": "b"}],
        "volumes": [{"name": "w", "configMap": {"name": "cm"}}],
        "imagePullSecrets": [{"name": "s2"}],
        "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["b"]}, {"ip": "2.2.2.2"}],
        "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
        "tolerations": [{"key": "b", "operator": "Exists"}],
    }}
    spec = smp(target, patch)["spec"]
    assert spec["initContainers"] == [{"name": "init", "image": "b"}]
    assert [c["name"] for c in spec["ephemeralContainers"]] == ["dbg2", "dbg"]
    assert spec["volumes"] == [{"name": "w", "configMap": {"name": "cm"}},
                               {"name": "v", "emptyDir": {}}]
    assert spec["imagePullSecrets"] == [{"name": "s2"}, {"name": "s1"}]
    assert spec["hostAliases"] == [{"ip": "1.1.1.1", "hostnames": ["b"]}, {"ip": "2.2.2.2"}]
    assert spec["topologySpreadConstraints"] == [{"topologyKey": "zone", "maxSkew": 2}]
    assert spec["tolerations"] == [{"key": "b", "operator": "Exists"}]  # atomic


def test_smp_unlisted_lists_are_atomic():
    target = {"spec": {"containers": [{"name": "c", "command": ["a", "b"]}]}}
    patch = {"spec": {"containers": [{"name": "c", "command": ["z"]}]}}
    assert smp(target, patch)["spec"]["containers"][0]["command"] == ["z"]


def test_smp_pod_templates_in_workloads_and_cronjob():
    template = {"metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}
    patch_spec = {"containers": [{"name": "b", "image": "2"}]}
    expected = [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]
    for kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job",
                 "ReplicationController"):
        target = {"spec": {"template": copy.deepcopy(template)}}
        result = smp(target, {"spec": {"template": {"spec": patch_spec}}}, kind)
        assert result["spec"]["template"]["spec"]["containers"] == expected, kind
    cron = {"spec": {"jobTemplate": {"spec": {"template": copy.deepcopy(template)}}}}
    patch = {"spec": {"jobTemplate": {"spec": {"template": {"spec": patch_spec}}}}}
    result = smp(cron, patch, "CronJob")
    assert result["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] == expected
    podtemplate = smp({"template": copy.deepcopy(template)},
                      {"template": {"spec": patch_spec}}, "PodTemplate")
    assert podtemplate["template"]["spec"]["containers"] == expected


def test_smp_unknown_kind_replaces_lists_but_keeps_metadata_rules():
    target = {"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}}
    patch = {"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "b"}]}}
    assert smp(target, patch, "Widget") == {
        "metadata": {"finalizers": ["b", "a"]}, "spec": {"containers": [{"name": "b"}]}}


def test_smp_service_ports_merge_by_port():
    svc = {"spec": {"clusterIP": "10.0.0.1",
                    "ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    patch = {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 9000}]}}
    assert smp(svc, patch, "Service")["spec"] == {
        "clusterIP": "10.0.0.1",
        "ports": [{"port": 80, "targetPort": 9090}, {"port": 9000}, {"port": 443}],
    }


def test_smp_status_conditions_merge_by_type():
    for kind in ("Pod", "Node", "Deployment", "ReplicaSet", "Job", "Namespace",
                 "PersistentVolumeClaim", "HorizontalPodAutoscaler", "Service"):
        target = {"status": {"conditions": [{"type": "Ready", "status": "False"},
                                            {"type": "Other", "status": "True"}]}}
        patch = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        assert smp(target, patch, kind)["status"]["conditions"] == [
            {"type": "Ready", "status": "True"}, {"type": "Other", "status": "True"}], kind


def test_smp_node_status_kubelet_style_patch():
    node = {"spec": {"podCIDRs": ["10.0.0.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "1.2.3.4"}],
                       "conditions": [{"type": "Ready", "status": "False", "reason": "Boot"}]}}
    patch = {"status": {
        "$setElementOrder/conditions": [{"type": "MemoryPressure"}, {"type": "Ready"}],
        "conditions": [{"type": "MemoryPressure", "status": "False"},
                       {"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "addresses": [{"type": "Hostname", "address": "n1"}],
    }}
    status = smp(node, patch, "Node")["status"]
    assert status["conditions"] == [
        {"type": "MemoryPressure", "status": "False"},
        {"type": "Ready", "status": "True", "reason": "KubeletReady"},
    ]
    assert status["addresses"] == [{"type": "Hostname", "address": "n1"},
                                   {"type": "InternalIP", "address": "1.2.3.4"}]


def test_smp_owner_references_merge_by_uid():
    target = {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}
    patch = {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"},
                                              {"uid": "1", "controller": True}]}}
    assert smp(target, patch)["metadata"]["ownerReferences"] == [
        {"uid": "2", "name": "b"}, {"uid": "1", "name": "a", "controller": True}]


def test_smp_merge_keys_compare_as_json_values():
    target = pod({"name": "c", "ports": [{"containerPort": 80, "name": "http"}]})
    patch = {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80.0,
                                                              "protocol": "TCP"}]}]}}
    assert smp(target, patch)["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "name": "http", "protocol": "TCP"}]


def test_smp_new_keyed_list_strips_delete_elements():
    patch = {"spec": {"containers": [{"name": "a"}, {"name": "gone", "$patch": "delete"}]}}
    assert smp({"spec": {}}, patch)["spec"]["containers"] == [{"name": "a"}]


def test_smp_null_deletes_whole_list():
    target = pod({"name": "a"}, volumes=[{"name": "v"}])
    assert "volumes" not in smp(target, {"spec": {"volumes": None}})["spec"]


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: primitive lists
# ---------------------------------------------------------------------------------------------

def test_smp_finalizers_are_a_set_union():
    target = {"metadata": {"finalizers": ["a", "b"]}}
    patch = {"metadata": {"finalizers": ["c", "a"]}}
    assert smp(target, patch)["metadata"]["finalizers"] == ["c", "a", "b"]


def test_smp_delete_from_primitive_list():
    target = {"metadata": {"finalizers": ["a", "b", "c"]}}
    patch = {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]}}
    assert smp(target, patch)["metadata"]["finalizers"] == ["a", "c"]


def test_smp_delete_from_primitive_list_with_order_and_additions():
    target = {"metadata": {"finalizers": ["a", "b", "c"]}}
    patch = {"metadata": {"$setElementOrder/finalizers": ["d", "c", "a"],
                          "$deleteFromPrimitiveList/finalizers": ["b"],
                          "finalizers": ["d"]}}
    assert smp(target, patch)["metadata"]["finalizers"] == ["d", "c", "a"]


def test_smp_primitive_list_replace_and_errors():
    target = {"metadata": {"finalizers": ["a", "b"]}}
    patch = {"metadata": {"finalizers": ["x", {"$patch": "replace"}]}}
    assert smp(target, patch)["metadata"]["finalizers"] == ["x"]
    with pytest.raises(Invalid, match="scalar"):
        smp(target, {"metadata": {"finalizers": [{"a": 1}]}})
    with pytest.raises(BadRequest, match="must name a field and be a list"):
        smp(target, {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}})
    with pytest.raises(BadRequest, match="must name a field"):
        smp(target, {"metadata": {"$deleteFromPrimitiveList/": ["a"]}})


def test_smp_node_pod_cidrs_are_a_set():
    node = {"spec": {"podCIDRs": ["10.0.0.0/24"]}}
    result = smp(node, {"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}}, "Node")
    assert result["spec"]["podCIDRs"] == ["10.0.0.0/24", "fd00::/64"]


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: $setElementOrder
# ---------------------------------------------------------------------------------------------

def names(obj):
    return [c["name"] for c in obj["spec"]["containers"]]


def test_smp_set_element_order_reorders_merged_list():
    target = pod({"name": "a"}, {"name": "b"}, {"name": "c"})
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"},
                                                      {"name": "a"}],
                      "containers": [{"name": "b", "image": "new"}]}}
    result = smp(target, patch)
    assert names(result) == ["c", "b", "a"]
    assert result["spec"]["containers"][1] == {"name": "b", "image": "new"}


def test_smp_set_element_order_without_the_list_reorders_live_list():
    target = pod({"name": "a"}, {"name": "b"})
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}]}}
    assert names(smp(target, patch)) == ["b", "a"]


def test_smp_set_element_order_keeps_server_only_items_in_place():
    # "b" is only in the live list; it stays ahead of the patch items that followed it.
    target = pod({"name": "a"}, {"name": "b"}, {"name": "c"})
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}}
    assert names(smp(target, patch)) == ["b", "c", "a"]
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "c"},
                                                      {"name": "d"}],
                      "containers": [{"name": "d"}]}}
    assert names(smp(target, patch)) == ["a", "b", "c", "d"]


def test_smp_patch_order_without_directive_puts_new_items_first():
    target = pod({"name": "a"}, {"name": "b"})
    assert names(smp(target, {"spec": {"containers": [{"name": "new"}]}})) == ["new", "a", "b"]


def test_smp_set_element_order_must_match_patch_list():
    target = pod({"name": "a"}, {"name": "b"})
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                      "containers": [{"name": "b"}, {"name": "a"}]}}
    with pytest.raises(BadRequest, match="does not match"):
        smp(target, patch)
    with pytest.raises(BadRequest, match="merge key 'name'"):
        smp(target, {"spec": {"$setElementOrder/containers": ["a"]}})
    with pytest.raises(BadRequest, match="be a list"):
        smp(target, {"spec": {"$setElementOrder/containers": {"name": "a"}}})


# ---------------------------------------------------------------------------------------------
# Strategic merge patch: $retainKeys
# ---------------------------------------------------------------------------------------------

def test_smp_retain_keys_clears_unlisted_fields():
    deploy = {"spec": {"strategy": {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxSurge": "25%"}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert smp(deploy, patch, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_smp_retain_keys_in_volume_entries():
    target = pod({"name": "c"}, volumes=[{"name": "v", "configMap": {"name": "cm"}},
                                         {"name": "w", "emptyDir": {}}])
    patch = {"spec": {"volumes": [{"$retainKeys": ["name", "secret"], "name": "v",
                                   "secret": {"secretName": "s"}}]}}
    assert smp(target, patch)["spec"]["volumes"] == [
        {"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "emptyDir": {}}]


def test_smp_retain_keys_errors():
    deploy = {"spec": {"strategy": {"type": "RollingUpdate"}}}
    with pytest.raises(Invalid, match="not in \\$retainKeys"):
        smp(deploy, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
            "Deployment")
    with pytest.raises(BadRequest, match="\\$retainKeys must be a list"):
        smp(deploy, {"spec": {"strategy": {"$retainKeys": "type"}}}, "Deployment")
    # Nulls are allowed outside the list: they delete anyway.
    result = smp(deploy, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None,
                                                "type": "Recreate"}}}, "Deployment")
    assert result["spec"]["strategy"] == {"type": "Recreate"}


# ---------------------------------------------------------------------------------------------
# Three-way patch (kubectl apply)
# ---------------------------------------------------------------------------------------------

def deployment_manifest(containers, labels=None, strategy=None, replicas=2):
    manifest = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels or {"app": "web"}},
        "spec": {"replicas": replicas,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": containers}}},
    }
    if strategy is not None:
        manifest["spec"]["strategy"] = strategy
    return manifest


def live_from(manifest):
    """What the server holds after creating ``manifest``: defaults and server-owned fields."""
    live = copy.deepcopy(manifest)
    live["metadata"].update(uid="u-1", resourceVersion="7", generation=1)
    live["spec"].setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxSurge": "25%"}})
    for container in live["spec"]["template"]["spec"]["containers"]:
        container.setdefault("imagePullPolicy", "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
    live["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    return live


def apply_three_way(original, modified, current, kind="Deployment"):
    patch = create_three_way_patch(original, modified, current, kind)
    return patch, apply_strategic_merge_patch(current, patch, kind)


def test_three_way_removes_dropped_fields_and_keeps_server_fields():
    original = deployment_manifest(
        [{"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"},
                                                     {"name": "B", "value": "2"}]},
         {"name": "sidecar", "image": "busybox", "args": ["sleep"]}],
        labels={"app": "web", "tier": "frontend"})
    modified = deployment_manifest(
        [{"name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "1"}]}],
        labels={"app": "web"}, replicas=3)
    current = live_from(original)
    current["metadata"]["labels"]["added-by-someone-else"] = "yes"

    patch, result = apply_three_way(original, modified, current)

    # The manifest's removals are removed: a label, an env var, a whole container.
    assert result["metadata"]["labels"] == {"app": "web", "added-by-someone-else": "yes"}
    (web,) = result["spec"]["template"]["spec"]["containers"]
    assert web["name"] == "web" and web["image"] == "nginx:2"
    assert web["env"] == [{"name": "A", "value": "1"}]
    # Server-set and defaulted fields survive.
    assert result["status"] == current["status"]
    assert result["metadata"]["uid"] == "u-1"
    assert web["imagePullPolicy"] == "IfNotPresent"
    assert web["terminationMessagePath"] == "/dev/termination-log"
    assert result["spec"]["strategy"] == {"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": "25%"}}
    assert result["spec"]["replicas"] == 3
    # The patch looks like kubectl's.
    pod_patch = patch["spec"]["template"]["spec"]
    assert pod_patch["$setElementOrder/containers"] == [{"name": "web"}]
    assert {"name": "sidecar", "$patch": "delete"} in pod_patch["containers"]
    assert patch["metadata"]["labels"] == {"tier": None}
    assert "status" not in patch


def test_three_way_service_keeps_cluster_ip_and_merges_ports():
    original = {"kind": "Service", "metadata": {"name": "s"},
                "spec": {"selector": {"app": "x"},
                         "ports": [{"port": 80, "targetPort": 8080},
                                   {"port": 443, "targetPort": 8443}]}}
    modified = {"kind": "Service", "metadata": {"name": "s"},
                "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 9090}]}}
    current = copy.deepcopy(original)
    current["spec"].update(clusterIP="10.96.0.10", type="ClusterIP")
    for port in current["spec"]["ports"]:
        port["protocol"] = "TCP"

    patch, result = apply_three_way(original, modified, current, "Service")

    assert result["spec"]["clusterIP"] == "10.96.0.10"
    assert result["spec"]["type"] == "ClusterIP"
    assert result["spec"]["ports"] == [{"port": 80, "targetPort": 9090, "protocol": "TCP"}]
    assert patch["spec"]["ports"] == [{"port": 80, "targetPort": 9090},
                                      {"port": 443, "$patch": "delete"}]
    assert patch["spec"]["$setElementOrder/ports"] == [{"port": 80}]


def test_three_way_without_last_applied_never_deletes():
    modified = deployment_manifest([{"name": "web", "image": "nginx:2"}])
    current = live_from(deployment_manifest([{"name": "web", "image": "nginx:1"},
                                             {"name": "extra", "image": "x"}]))
    patch, result = apply_three_way(None, modified, current)
    assert names(result["spec"]["template"]) == ["web", "extra"]
    assert result["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert not any("$patch" in c for c in patch["spec"]["template"]["spec"]["containers"])


def test_three_way_no_change_is_empty_patch():
    manifest = deployment_manifest([{"name": "web", "image": "nginx:1"}])
    assert create_three_way_patch(manifest, manifest, live_from(manifest), "Deployment") == {}


def test_three_way_adds_containers_in_manifest_order():
    original = deployment_manifest([{"name": "a", "image": "1"}])
    modified = deployment_manifest([{"name": "z", "image": "1"}, {"name": "a", "image": "1"}])
    patch, result = apply_three_way(original, modified, live_from(original))
    assert names(result["spec"]["template"]) == ["z", "a"]
    assert patch["spec"]["template"]["spec"]["$setElementOrder/containers"] == [
        {"name": "z"}, {"name": "a"}]


def test_three_way_strategy_change_sends_retain_keys():
    original = deployment_manifest([{"name": "web", "image": "1"}],
                                   strategy={"type": "RollingUpdate"})
    modified = deployment_manifest([{"name": "web", "image": "1"}],
                                   strategy={"type": "Recreate"})
    current = live_from(original)
    current["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": "25%"}
    patch, result = apply_three_way(original, modified, current)
    assert patch["spec"]["strategy"] == {"type": "Recreate", "$retainKeys": ["type"]}
    assert result["spec"]["strategy"] == {"type": "Recreate"}


def test_three_way_volume_source_switch_uses_retain_keys():
    original = deployment_manifest([{"name": "web"}])
    original["spec"]["template"]["spec"]["volumes"] = [{"name": "v", "configMap": {"name": "c"}}]
    modified = copy.deepcopy(original)
    modified["spec"]["template"]["spec"]["volumes"] = [{"name": "v", "secret": {"secretName": "s"}}]
    current = live_from(original)
    current["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"] = 420
    patch, result = apply_three_way(original, modified, current)
    (volume_patch,) = patch["spec"]["template"]["spec"]["volumes"]
    assert volume_patch["$retainKeys"] == ["name", "secret"]
    assert volume_patch["configMap"] is None
    assert result["spec"]["template"]["spec"]["volumes"] == [
        {"name": "v", "secret": {"secretName": "s"}}]


def test_three_way_finalizers_use_primitive_directives():
    original = {"metadata": {"name": "x", "finalizers": ["a", "b"]}}
    modified = {"metadata": {"name": "x", "finalizers": ["a", "c"]}}
    current = {"metadata": {"name": "x", "finalizers": ["a", "b", "server"]}}
    patch, result = apply_three_way(original, modified, current, "ConfigMap")
    assert patch == {"metadata": {"finalizers": ["c"],
                                  "$deleteFromPrimitiveList/finalizers": ["b"],
                                  "$setElementOrder/finalizers": ["a", "c"]}}
    assert result["metadata"]["finalizers"] == ["a", "c", "server"]


def test_three_way_removing_a_whole_field_nulls_it():
    original = deployment_manifest([{"name": "web", "image": "1", "command": ["x"]}])
    original["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    modified = deployment_manifest([{"name": "web", "image": "1"}])
    patch, result = apply_three_way(original, modified, live_from(original))
    template_spec = result["spec"]["template"]["spec"]
    assert "nodeSelector" not in template_spec
    assert "command" not in template_spec["containers"][0]
    assert template_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert patch["spec"]["template"]["spec"]["nodeSelector"] is None


def test_three_way_overrides_drift_in_current():
    manifest = deployment_manifest([{"name": "web", "image": "nginx:1"}], replicas=2)
    current = live_from(manifest)
    current["spec"]["replicas"] = 5  # someone scaled it by hand
    current["spec"]["template"]["spec"]["containers"][0]["image"] = "hacked"
    patch, result = apply_three_way(manifest, manifest, current)
    assert result["spec"]["replicas"] == 2
    assert result["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"


def test_three_way_requires_merge_keys_and_objects():
    with pytest.raises(Invalid, match="merge key 'name'"):
        create_three_way_patch(None, pod({"image": "x"}), pod({"name": "a"}), "Pod")
    with pytest.raises(BadRequest):
        create_three_way_patch(None, ["x"], {}, "Pod")


def test_three_way_does_not_mutate_inputs():
    original = deployment_manifest([{"name": "a", "image": "1"}, {"name": "b", "image": "1"}])
    modified = deployment_manifest([{"name": "a", "image": "2"}])
    current = live_from(original)
    snapshot = copy.deepcopy((original, modified, current))
    apply_three_way(original, modified, current)
    assert (original, modified, current) == snapshot


def test_smp_set_element_order_for_primitive_list_only_reorders():
    target = {"metadata": {"finalizers": ["a", "b", "c"]}}
    patch = {"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"]}}
    assert smp(target, patch)["metadata"]["finalizers"] == ["c", "b", "a"]


def test_smp_delete_element_together_with_set_element_order():
    target = pod({"name": "a"}, {"name": "b"}, {"name": "c"})
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                      "containers": [{"name": "c", "image": "new"},
                                     {"name": "b", "$patch": "delete"}]}}
    result = smp(target, patch)
    assert result["spec"]["containers"] == [{"name": "c", "image": "new"}, {"name": "a"}]


def test_smp_delete_of_absent_element_is_a_no_op():
    target = pod({"name": "a"})
    patch = {"spec": {"containers": [{"name": "zzz", "$patch": "delete"}]}}
    assert smp(target, patch)["spec"]["containers"] == [{"name": "a"}]


def test_smp_replace_map_inside_keyed_element():
    target = pod({"name": "a", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}})
    patch = {"spec": {"containers": [{"name": "a", "resources": {
        "$patch": "replace", "limits": {"memory": "1Gi"}}}]}}
    assert smp(target, patch)["spec"]["containers"][0]["resources"] == {
        "limits": {"memory": "1Gi"}}


def test_smp_top_level_patch_delete_empties_object():
    assert smp({"a": 1, "b": {"c": 2}}, {"$patch": "delete"}) == {}
