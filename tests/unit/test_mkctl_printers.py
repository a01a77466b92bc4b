"""mkctl's output must be byte-for-byte kubectl's: Go tabwriter alignment, the table
printer's decorations, and Go-style YAML/JSON. Expected strings here were taken from the real
kubectl 1.32 against the same objects."""

from __future__ import annotations

import json

import yaml

from minik8s.api.registry import REGISTRY
from minik8s.api.meta import human_duration
from minik8s.cli.printers import (TableOptions, TabWriter, compact_json,
                                  object_name, print_objects, print_tables, table_view,
                                  table_writer, to_json, to_yaml)

POD = REGISTRY.resolve("pods")
DEPLOY = REGISTRY.resolve("deployments")


def test_tabwriter_pads_columns_to_widest_cell_plus_padding():
    w = TabWriter(minwidth=0, padding=2)
    w.write("Name:\tp1\nService Account:\tdefault\nNode:\t<none>\n")
    assert w.flush() == ("Name:             p1\n"
                         "Service Account:  default\n"
                         "Node:             <none>\n")


def test_tabwriter_blocks_end_at_a_line_without_tabs():
    # "A:" is aligned alone; "Volumes:" follows the Image/Host Port lines directly, so it
    # shares their block (which is why kubectl's describe output re-aligns after lists).
    w = TabWriter(minwidth=0, padding=2)
    w.write("A:\t1\nContainers:\n  c:\n    Image:\tx\n    Host Port:\t<none>\nVolumes:\t<none>\n")
    assert w.flush() == ("A:  1\n"
                         "Containers:\n"
                         "  c:\n"
                         "    Image:      x\n"
                         "    Host Port:  <none>\n"
                         "Volumes:        <none>\n")


def test_table_writer_minimum_width_and_unpadded_last_cell():
    w = table_writer()
    w.write("p1\t0/1\tPending\t0\t29s\n")
    # minwidth 6 includes the 3 spaces of padding; the last cell is never padded
    assert w.flush() == "p1    0/1   Pending   0     29s\n"


def test_tabwriter_empty_cells_keep_their_column():
    w = table_writer()
    w.write("NAME\tSHORTNAMES\tKIND\nsecrets\t\tSecret\nconfigmaps\tcm\tConfigMap\n")
    assert w.flush() == ("NAME         SHORTNAMES   KIND\n"
                         "secrets                   Secret\n"
                         "configmaps   cm           ConfigMap\n")


def test_remembered_widths_keep_watch_rows_under_their_header():
    w = table_writer(remember_widths=True)
    w.write("NAME\tDATA\tAGE\nw1\t0\t0s\n")
    assert w.flush() == "NAME   DATA   AGE\nw1     0      0s\n"
    w.write("a-longer-name\t0\t1s\n")
    assert w.flush() == "a-longer-name   0      1s\n"
    w.write("w1\t0\t2s\n")
    assert w.flush() == "w1              0      2s\n"


def _pod_table(*rows: list, extra_meta: dict | None = None) -> dict:
    cols = [("Name", 0, "name"), ("Ready", 0, ""), ("Status", 0, ""), ("Restarts", 0, ""),
            ("Age", 0, ""), ("IP", 1, ""), ("Node", 1, "")]
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "columnDefinitions": [{"name": n, "type": "string", "format": f, "priority": p}
                              for n, p, f in cols],
        "rows": [{"cells": list(r), "object": {"metadata": {
            "name": r[0], "namespace": "default", "labels": (extra_meta or {}).get(r[0], {})}}}
            for r in rows],
    }


def test_table_view_hides_priority_columns_unless_wide():
    table = _pod_table(["p1", "0/1", "Pending", 0, "5s", "<none>", "<none>"])
    narrow = table_view(POD, table, TableOptions())
    assert narrow.headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert narrow.rows == [["p1", "0/1", "Pending", "0", "5s"]]
    wide = table_view(POD, table, TableOptions(wide=True))
    assert wide.headers[-2:] == ["IP", "NODE"]


def test_table_view_namespace_kind_and_label_columns():
    table = _pod_table(["p1", "0/1", "Pending", 0, "5s", "", ""],
                       extra_meta={"p1": {"app": "web", "tier": "a"}})
    view = table_view(POD, table, TableOptions(with_namespace=True, with_kind=True,
                                               show_labels=True, label_columns=["app"]))
    assert view.headers == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP",
                            "LABELS"]
    assert view.rows == [["default", "pod/p1", "0/1", "Pending", "0", "5s", "web",
                          "app=web,tier=a"]]
    deploy = {"columnDefinitions": [{"name": "Name", "type": "string", "format": "name"}],
              "rows": [{"cells": ["web"]}]}
    assert table_view(DEPLOY, deploy, TableOptions(with_kind=True)).rows == [
        ["deployment.apps/web"]]


def test_cells_render_like_go_and_stop_at_a_newline():
    table = {"columnDefinitions": [{"name": n} for n in ("A", "B", "C", "D")],
             "rows": [{"cells": [True, None, "two\nlines", 1.0]}]}
    assert table_view(POD, table, TableOptions()).rows == [["true", "<nil>", "two...", "1"]]


def test_print_tables_separates_kinds_and_skips_empty_ones():
    pods = table_view(POD, _pod_table(["p1", "0/1", "Pending", 0, "5s", "", ""]),
                      TableOptions(with_kind=True))
    empty = table_view(POD, _pod_table(), TableOptions())
    deploy = table_view(DEPLOY, {"columnDefinitions": [{"name": "Name", "format": "name"},
                                                       {"name": "Ready"}],
                                 "rows": [{"cells": ["web", "0/2"]}]},
                        TableOptions(with_kind=True))
    assert print_tables([pods, empty, deploy]) == (
        "NAME     READY   STATUS    RESTARTS   AGE\n"
        "pod/p1   0/1     Pending   0          5s\n"
        "\n"
        "NAME                  READY\n"
        "deployment.apps/web   0/2\n")
    assert print_tables([pods, deploy], no_headers=True) == (
        "pod/p1   0/1   Pending   0     5s\n"
        "deployment.apps/web   0/2\n")
    assert print_tables([empty]) == ""


def test_yaml_quotes_and_blocks_like_go():
    text = to_yaml({"metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": '{"a":"b"}\n',
        "n": "1", "y": "y", "yes": "yes", "empty": "", "when": "2026-01-01T00:00:00Z",
        "plain": "hello world", "star": "*x"}},
        "spec": {"containers": [{"name": "c", "args": ["1", "a"]}], "on": True}})
    assert text == (
        "metadata:\n"
        "  annotations:\n"
        '    empty: ""\n'
        "    kubectl.kubernetes.io/last-applied-configuration: |\n"
        '      {"a":"b"}\n'
        '    "n": "1"\n'
        "    plain: hello world\n"
        '    star: "*x"\n'
        '    when: "2026-01-01T00:00:00Z"\n'
        '    "y": "y"\n'
        '    "yes": "yes"\n'
        "spec:\n"
        "  containers:\n"
        "  - args:\n"
        '    - "1"\n'
        "    - a\n"
        "    name: c\n"
        '  "on": true\n')
    assert yaml.safe_load(text)["metadata"]["annotations"]["n"] == "1"


def test_json_is_go_marshal_indent():
    assert to_json({"b": 1, "a": "<none> & more"}) == (
        '{\n    "a": "\\u003cnone\\u003e \\u0026 more",\n    "b": 1\n}\n')
    assert compact_json({"b": [1, {"d": 2, "c": 3}], "a": "é"}) == \
        '{"a":"é","b":[1,{"c":3,"d":2}]}'


def test_print_objects_single_list_and_name():
    pod = {"metadata": {"name": "p1"}}
    single = yaml.safe_load(print_objects([(POD, pod)], "yaml", as_single=True))
    assert single == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1"}}
    listed = json.loads(print_objects([(POD, pod)], "json", as_single=False))
    assert listed["kind"] == "List" and listed["metadata"] == {"resourceVersion": ""}
    assert listed["items"][0]["kind"] == "Pod"
    assert print_objects([(POD, pod), (DEPLOY, {"metadata": {"name": "web"}})], "name",
                         as_single=False) == "pod/p1\ndeployment.apps/web\n"
    assert object_name(REGISTRY.resolve("leases"), {"metadata": {"name": "l"}}) == \
        "lease.coordination.k8s.io/l"


def test_human_duration_matches_kubectl():
    cases = {0: "0s", 59: "59s", 119: "119s", 150: "2m30s", 600: "10m", 3 * 3600: "3h",
             4 * 3600 + 1800: "4h30m", 30 * 3600: "30h", 50 * 3600: "2d2h", 40 * 86400: "40d",
             800 * 86400: "2y70d", 9 * 365 * 86400: "9y", -0.5: "0s", -5: "<invalid>"}
    for seconds, text in cases.items():
        assert human_duration(seconds) == text, seconds
