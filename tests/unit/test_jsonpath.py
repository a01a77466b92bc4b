"""kubectl's JSONPath dialect: every expected string below is what kubectl 1.32 printed for
the same template on the same Pod (``kubectl label --local -f pod.json z=1 -o jsonpath=``)."""

from __future__ import annotations

import pytest

from minik8s.cli.jsonpath import JSONPathError, render, template_printer

POD = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": "p", "labels": {"app": "web", "k8s.io/x": "dot", "z": "1"},
                    "annotations": {"n": "3"}},
       "spec": {"containers": [{"name": "a", "image": "x",
                                "ports": [{"containerPort": 80}, {"containerPort": 443}]},
                               {"name": "b", "image": "y"}]},
       "status": {"phase": "Running",
                  "conditions": [{"type": "Ready", "status": "True"},
                                 {"type": "PodScheduled", "status": "False"}]}}

KUBECTL = [
    ("{.spec.containers[*].name}", "a b"),
    ("{.spec.containers[-1].name}", "b"),
    ("{.spec.containers[0:1].name}", "a"),
    ("{.spec.containers[1:].name}", "b"),
    ("{.spec.containers[::2].name}", "a"),
    ("{.spec.containers[2:2].name}", ""),
    ("{.spec.containers[0,1].name}", "a b"),
    ("{..containerPort}", "80 443"),
    ("{.metadata.labels.k8s\\.io/x}", "dot"),
    ("{.metadata.labels['app']}", "web"),
    ("{.metadata.labels['k8s.io/x']}", ""),          # kubectl splits the key on its dots
    ("{.spec.containers[*]['name']}", "a b"),
    ('{.status.conditions[?(@.type=="Ready")].status}', "True"),
    ('{.status.conditions[?(@.type!="Ready")].type}', "PodScheduled"),
    ("{.spec.containers[?(@.name=='b')].image}", "y"),
    ("{.spec.containers[?(@.ports)].name}", "a"),
    ("{.spec.containers[*].ports[?(@.containerPort>100)].containerPort}", "443"),
    ("{.spec.containers[*].ports[?(@.containerPort<100)].containerPort}", "80"),
    ('{range .spec.containers[*]}{.name}{"\\t"}{.image}{"\\n"}{end}', "a\tx\nb\ty\n"),
    ("{range .spec.containers[*]}[{.name}:{range .ports[*]}{.containerPort},{end}]{end}",
     "[a:80,443,][b:]"),
    ("{range .spec.containers[*]}{.name}", "ab"),
    ("{.spec.containers[0].ports}", '[{"containerPort":80},{"containerPort":443}]'),
    ("{.spec}", '{"containers":[{"image":"x","name":"a","ports":[{"containerPort":80},'
                '{"containerPort":443}]},{"image":"y","name":"b"}]}'),
    ("{.metadata.nope}x", "x"),
    ("{.a!}", ""),
    ("{.}", ""),
    ("{$.kind}", "Pod"),
    ("pre {.kind} mid {.metadata.name} post", "pre Pod mid p post"),
    ("{'a\\x41'}{\"\\u00e9\"}", "aA\u00e9"),
    ('{.status.phase}{"\\n"}', "Running\n"),
    ("{.metadata.name}{.metadata.name}", "pp"),
    ("{.spec.containers[0].ports[0].containerPort}", "80"),
]


@pytest.mark.parametrize("template,want", KUBECTL)
def test_matches_kubectl(template, want):
    assert render(template, POD) == want


def test_whole_object_is_compact_sorted_json():
    assert render("{@}", {"b": 1, "a": [True, None, 1.5, 2]}) == \
        '{"a":[true,null,1.5,2],"b":1}'


@pytest.mark.parametrize("template,message", [
    ("{.x", "unclosed action"),
    ("{#}", "unrecognized character in action: U+0023 '#'"),
    ("{.spec.containers[x]}", "invalid array index x"),
    ('{.spec.containers[0]["a"]}', 'invalid array index "a"'),
    ('{"bad\\q"}', 'unquote string "bad\\q" error invalid syntax'),
    ("{.items[}", "unterminated array"),
])
def test_parse_errors(template, message):
    with pytest.raises(JSONPathError) as e:
        template_printer("jsonpath=" + template)
    assert str(e.value) == f"error parsing jsonpath {template}, {message}"


@pytest.mark.parametrize("template,message", [
    ("{.spec.containers[5]}", "array index out of bounds: index 5, length 2"),
    ("{.spec.containers[0:5].name}", "array index out of bounds: index 4, length 2"),
    ("{.status.conditions[?(@.type==3)]}", "incompatible types for comparison"),
    ("{foo}", "unrecognized identifier foo"),
    ("{end}", "not in range, nothing to end"),
])
def test_execution_errors(template, message):
    printer = template_printer("jsonpath=" + template)
    with pytest.raises(JSONPathError) as e:
        printer.print(POD)
    assert str(e.value).splitlines() == [
        f'error executing jsonpath "{template}": Error executing template: {message}. '
        f"Printing more information for debugging the template:"]


def test_missing_keys_can_be_errors():
    with pytest.raises(JSONPathError, match="^nope is not found$"):
        render("{.metadata.nope}", POD, allow_missing=False)


def test_custom_columns():
    lst = {"kind": "List", "items": [POD, {"metadata": {"name": "q"}}]}
    printer = template_printer("custom-columns=NAME:.metadata.name,C:spec.containers[*].name,"
                               "PH:{.status.phase},P:.spec.containers[0].ports[0]")
    # kubectl's tabwriter: minimum width 6, padding 3
    assert printer.print(lst) == (
        "NAME   C        PH        P\n"
        "p      a,b      Running   map[containerPort:80]\n"
        "q      <none>   <none>    <none>\n")


def test_custom_columns_errors_and_file(tmp_path):
    with pytest.raises(JSONPathError, match="unexpected custom-columns spec: NAME"):
        template_printer("custom-columns=NAME")
    with pytest.raises(JSONPathError, match="no template given"):
        template_printer("jsonpath=")
    f = tmp_path / "cols"
    f.write_text("NAME  PHASE\n.metadata.name  .status.phase\n")
    printer = template_printer(f"custom-columns-file={f}", no_headers=True)
    assert printer.print(POD) == "p     Running\n"
    assert template_printer("yaml") is None and template_printer(None) is None
