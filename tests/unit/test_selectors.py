"""Label and field selectors: grammar, matching semantics and Kubernetes' error wording."""

import pytest

from minik8s.api.errors import BadRequest
from minik8s.api.registry import REGISTRY
from minik8s.api.selectors import (DOES_NOT_EXIST, EQUALS, EXISTS, IN, NOT_EQUALS, NOT_IN,
                                   Requirement, field_value, label_key_errors,
                                   label_value_errors, parse_field_selector,
                                   parse_label_selector, selector_from_dict,
                                   selector_from_set, supported_fields)

PODS = REGISTRY.resolve("pods")
NODES = REGISTRY.resolve("nodes")
EVENTS = REGISTRY.resolve("events")
SECRETS = REGISTRY.resolve("secrets")
JOBS = REGISTRY.resolve("jobs")
NAMESPACES = REGISTRY.resolve("namespaces")
DEPLOYMENTS = REGISTRY.resolve("deployments")


# --- label selector parsing ------------------------------------------------------------------

@pytest.mark.parametrize("text, requirements", [
    ("a=b", [("a", EQUALS, ("b",))]),
    ("a==b", [("a", EQUALS, ("b",))]),
    ("a!=b", [("a", NOT_EQUALS, ("b",))]),
    ("a in (x,y)", [("a", IN, ("x", "y"))]),
    ("a notin (y, x)", [("a", NOT_IN, ("x", "y"))]),
    ("a", [("a", EXISTS, ())]),
    ("!a", [("a", DOES_NOT_EXIST, ())]),
    ("a=", [("a", EQUALS, ("",))]),
    ("a in (x,)", [("a", IN, ("", "x"))]),
    ("  tier in ( web , db ) ,  !canary ,app = web ", [
        ("app", EQUALS, ("web",)), ("canary", DOES_NOT_EXIST, ()),
        ("tier", IN, ("db", "web"))]),
    ("app.kubernetes.io/name=web", [("app.kubernetes.io/name", EQUALS, ("web",))]),
    ("", []),
    ("   ", []),
])
def test_parse_label_selector(text, requirements):
    sel = parse_label_selector(text)
    assert [(r.key, r.operator, r.values) for r in sel.requirements] == requirements


@pytest.mark.parametrize("text, rendered", [
    ("a==b", "a=b"),
    ("b,a!=x", "a!=x,b"),
    ("x notin (b,a)", "x notin (a,b)"),
    ("!a,z in (1)", "!a,z in (1)"),
    ("", ""),
])
def test_label_selector_renders_query_syntax(text, rendered):
    sel = parse_label_selector(text)
    assert str(sel) == rendered
    assert parse_label_selector(str(sel)) == sel


@pytest.mark.parametrize("text, detail", [
    ("a b", "found 'b', expected: in, notin, =, ==, !=, or end of string"),
    ("a=b=c", "found '=', expected: ',' or 'end of string'"),
    ("=b", "found '=', expected: identifier"),
    ("a in (x", "found 'end of string', expected: ',', ')' or identifier"),
    ("a in x", "found 'x', expected: '('"),
    ("a in (x y)", "found 'y', expected: ',', ')' or identifier"),
    ("!", "found 'end of string', expected: identifier"),
    ("a,", "found 'end of string', expected: identifier"),
    ("in=b", "found 'in', expected: identifier"),
])
def test_parse_label_selector_syntax_errors(text, detail):
    with pytest.raises(BadRequest) as err:
        parse_label_selector(text)
    assert err.value.message == f"unable to parse requirement: {detail}"
    assert err.value.code == 400


@pytest.mark.parametrize("text, fragment", [
    ("a=-b", 'values[0][a]: Invalid value: "-b": a valid label must be an empty string'),
    ("a=" + "x" * 64, "must be no more than 63 characters"),
    ("Foo.com/a=b", 'key: Invalid value: "Foo.com/a": prefix part a lowercase RFC 1123'),
    ("-a=b", 'key: Invalid value: "-a": name part must consist of alphanumeric'),
    ("a/b/c", "a qualified name must consist of alphanumeric characters"),
])
def test_parse_label_selector_rejects_bad_keys_and_values(text, fragment):
    with pytest.raises(BadRequest) as err:
        parse_label_selector(text)
    assert err.value.message.startswith("unable to parse requirement: ")
    assert fragment in err.value.message


# --- matching ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, labels, expected", [
    ("app=web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app=web", {}, False),
    ("app!=web", {"app": "db"}, True),
    ("app!=web", {}, True),  # != also selects objects without the label
    ("app!=web", {"app": "web"}, False),
    ("tier in (a,b)", {"tier": "b"}, True),
    ("tier in (a,b)", {"tier": "c"}, False),
    ("tier in (a,b)", {}, False),
    ("tier notin (a,b)", {"tier": "c"}, True),
    ("tier notin (a,b)", {}, True),
    ("tier notin (a,b)", {"tier": "a"}, False),
    ("canary", {"canary": ""}, True),
    ("canary", {}, False),
    ("!canary", {}, True),
    ("!canary", {"canary": "yes"}, False),
    ("app=web,!canary", {"app": "web"}, True),
    ("app=web,!canary", {"app": "web", "canary": "1"}, False),
    ("a=", {"a": ""}, True),
    ("", {"anything": "x"}, True),
])
def test_label_selector_matches(text, labels, expected):
    assert parse_label_selector(text).matches(labels) is expected


def test_empty_selector_matches_everything_and_reports_empty():
    sel = parse_label_selector("")
    assert sel.empty
    assert sel.matches({}) and sel.matches(None) and sel.matches({"a": "b"})
    assert not parse_label_selector("a").empty


def test_selector_from_dict_combines_labels_and_expressions():
    sel = selector_from_dict({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["fe", "be"]},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
            {"key": "team", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ]})
    assert str(sel) == "app=web,env notin (dev),!legacy,team,tier in (be,fe)"
    assert sel.matches({"app": "web", "tier": "fe", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "fe", "team": "x", "legacy": "1"})
    assert not sel.matches({"app": "web", "tier": "fe", "team": "x", "env": "dev"})
    assert not sel.matches({"app": "web", "tier": "qa", "team": "x"})


def test_selector_from_dict_empty_matches_everything_none_matches_nothing():
    everything = selector_from_dict({})
    assert everything.empty and everything.matches({}) and everything.matches({"a": "b"})
    nothing = selector_from_dict(None)
    assert not nothing.empty and nothing.nothing
    assert not nothing.matches({}) and not nothing.matches({"a": "b"})
    assert str(nothing) == ""


@pytest.mark.parametrize("sel, fragment", [
    ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
     "'Equals' is not a valid label selector operator"),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
     "for 'in', 'notin' operators, values set can't be empty"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
     "values set must be empty for exists and does not exist"),
    ({"matchLabels": {"a": "b c"}}, 'values[0][a]: Invalid value: "b c"'),
    ({"matchLabels": {"a": 1}}, "keys and values must be strings"),
])
def test_selector_from_dict_rejects_bad_selectors(sel, fragment):
    with pytest.raises(BadRequest) as err:
        selector_from_dict(sel)
    assert fragment in err.value.message


def test_selector_from_set_is_an_and_of_equalities():
    sel = selector_from_set({"app": "web", "tier": "fe"})
    assert str(sel) == "app=web,tier=fe"
    assert sel.matches({"app": "web", "tier": "fe", "x": "y"})
    assert not sel.matches({"app": "web"})
    assert selector_from_set({}).empty and selector_from_set(None).empty


def test_requirement_new_checks_operator_and_value_count():
    assert Requirement.new("a", IN, ["y", "x", "y"]).values == ("x", "y")
    with pytest.raises(BadRequest, match="exact-match compatibility requires one single value"):
        Requirement.new("a", EQUALS, ["x", "y"])
    with pytest.raises(BadRequest, match='operator: Unsupported value: "gt"'):
        Requirement.new("a", "gt", ["1"])


@pytest.mark.parametrize("key, ok", [
    ("app", True), ("app.kubernetes.io/name", True), ("a_b.c-d", True), ("A1", True),
    ("x" * 63, True), ("x" * 64, False), ("-app", False), ("app-", False),
    ("/app", False), ("ex/", False), ("Example.com/app", False), ("a b", False),
    ("a/b/c", False), ("", False), ("e" * 254 + "/a", False),
])
def test_label_key_syntax(key, ok):
    assert (label_key_errors(key) == []) is ok


@pytest.mark.parametrize("value, ok", [
    ("", True), ("web", True), ("Web_1.2-x", True), ("x" * 63, True), ("x" * 64, False),
    ("-web", False), ("web.", False), ("a b", False), ("a/b", False),
])
def test_label_value_syntax(value, ok):
    assert (label_value_errors(value) == []) is ok


# --- field selectors ----------------------------------------------------------------------

POD = {
    "metadata": {"name": "web-1", "namespace": "prod"},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always", "schedulerName":
             "default-scheduler", "serviceAccountName": "default"},
    "status": {"phase": "Running", "podIP": "10.244.1.5"},
}


@pytest.mark.parametrize("text, expected", [
    ("spec.nodeName=node-a", True),
    ("spec.nodeName==node-a", True),
    ("spec.nodeName!=node-a", False),
    ("spec.nodeName=node-b", False),
    ("status.phase=Running,metadata.namespace=prod", True),
    ("status.phase!=Failed,metadata.name=web-1", True),
    ("status.phase=Running,metadata.name=other", False),
    ("spec.restartPolicy=Always", True),
    ("spec.schedulerName=default-scheduler", True),
    ("spec.serviceAccountName=default", True),
    ("status.podIP=10.244.1.5", True),
    ("spec.hostNetwork=false", True),
    ("status.nominatedNodeName=", True),  # missing compares as ""
    ("", True),
    ("spec.nodeName=node-a,", True),
])
def test_field_selector_on_pods(text, expected):
    assert parse_field_selector(text, PODS).matches(POD) is expected


def test_field_selector_missing_field_compares_as_empty():
    unscheduled = {"metadata": {"name": "p"}, "spec": {}}
    assert parse_field_selector("spec.nodeName=", PODS).matches(unscheduled)
    assert not parse_field_selector("spec.nodeName!=", PODS).matches(unscheduled)
    assert parse_field_selector("spec.nodeName!=", PODS).matches(POD)


@pytest.mark.parametrize("rt, obj, text, expected", [
    (NODES, {"metadata": {"name": "n1"}, "spec": {}}, "spec.unschedulable=false", True),
    (NODES, {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}},
     "spec.unschedulable=true", True),
    (NODES, {"metadata": {"name": "n1"}}, "metadata.name=n1", True),
    (NODES, {"metadata": {"name": "n1"}}, "metadata.namespace=", True),
    (SECRETS, {"metadata": {"name": "s"}, "type": "kubernetes.io/tls"},
     "type=kubernetes.io/tls", True),
    (SECRETS, {"metadata": {"name": "s"}, "type": "Opaque"}, "type!=Opaque", False),
    (NAMESPACES, {"metadata": {"name": "ns"}, "status": {"phase": "Terminating"}},
     "status.phase=Terminating", True),
    (JOBS, {"metadata": {"name": "j"}, "status": {"succeeded": 3}}, "status.successful=3",
     True),
    (JOBS, {"metadata": {"name": "j"}}, "status.successful=0", True),
    (EVENTS, {"metadata": {"name": "e", "namespace": "d"}, "reason": "Scheduled",
              "type": "Normal", "source": {"component": "default-scheduler"},
              "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "d",
                                 "uid": "u1", "apiVersion": "v1", "resourceVersion": "7",
                                 "fieldPath": "spec.containers{c}"}},
     "involvedObject.kind=Pod,involvedObject.name=web-1,involvedObject.namespace=d,"
     "involvedObject.uid=u1,involvedObject.apiVersion=v1,involvedObject.resourceVersion=7,"
     "involvedObject.fieldPath=spec.containers{c},reason=Scheduled,type=Normal,"
     "source=default-scheduler", True),
    (EVENTS, {"metadata": {"name": "e"}, "type": "Normal"}, "type=Warning", False),
])
def test_field_selector_per_kind(rt, obj, text, expected):
    assert parse_field_selector(text, rt).matches(obj) is expected


@pytest.mark.parametrize("rt, field", [
    (PODS, "spec.containers"),
    (PODS, "type"),
    (SECRETS, "spec.nodeName"),
    (DEPLOYMENTS, "status.phase"),
    (NODES, "status.phase"),
])
def test_field_selector_unsupported_field(rt, field):
    with pytest.raises(BadRequest) as err:
        parse_field_selector(f"{field}=x", rt)
    assert err.value.message == f"field label not supported: {field}"
    assert err.value.code == 400


def test_field_selector_term_without_operator():
    with pytest.raises(BadRequest) as err:
        parse_field_selector("spec.nodeName", PODS)
    assert err.value.message == ("invalid selector: 'spec.nodeName'; "
                                 "can't understand 'spec.nodeName'")


def test_field_selector_escapes_and_rendering():
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d", PODS)
    assert sel.requirements[0].value == "a,b=c\\d"
    assert sel.matches({"metadata": {"name": "a,b=c\\d"}})
    assert str(sel) == r"metadata.name=a\,b\=c\\d"
    with pytest.raises(BadRequest, match="invalid escape sequence"):
        parse_field_selector(r"metadata.name=a\x", PODS)


def test_field_selector_exact_and_empty():
    sel = parse_field_selector("spec.nodeName=n1,status.phase!=Failed", PODS)
    assert sel.exact("spec.nodeName") == "n1"
    assert sel.exact("status.phase") is None
    assert str(sel) == "spec.nodeName=n1,status.phase!=Failed"
    assert not sel.empty
    assert parse_field_selector("", PODS).empty
    assert parse_field_selector(None, PODS).matches({})


def test_supported_fields_and_field_value():
    assert supported_fields(SECRETS) == ["metadata.name", "metadata.namespace", "type"]
    assert "spec.unschedulable" in supported_fields(NODES)
    assert field_value(PODS, POD, "status.phase") == "Running"
    with pytest.raises(BadRequest, match="field label not supported: nope"):
        field_value(PODS, POD, "nope")
