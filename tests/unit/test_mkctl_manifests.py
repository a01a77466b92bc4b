"""``-f`` must read what kubectl reads, in kubectl's order, and decode YAML the way the API
machinery does (so a manifest yields the same object, and the same last-applied annotation,
with either tool); a broken file is reported in one line naming it."""

from __future__ import annotations

import io
import json

import pytest

from minik8s.cli.errors import CliError
from minik8s.cli.manifests import expand_paths, parse_documents, read_manifests

POD = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n"


def names(manifests) -> list[str]:
    return [m.obj["metadata"]["name"] for m in manifests]


def test_multi_document_yaml_skips_empty_documents():
    text = "---\n" + POD.format("a") + "---\n\n---\n# just a comment\n---\n" + POD.format("b")
    found = parse_documents(text, "x.yaml")
    assert names(found) == ["a", "b"]
    assert {m.source for m in found} == {"x.yaml"}


def test_list_kinds_are_expanded():
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        json.loads(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}})),
        {"apiVersion": "v1", "kind": "PodList", "items": [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}}]}]})
    assert names(parse_documents(text, "l.json")) == ["a", "b"]


def test_values_decode_like_kubernetes_yaml():
    text = POD.format("a") + ("  annotations:\n    when: 2026-01-01\n    at: 2026-01-01T10:00:00Z\n"
                              "spec:\n  priority: 1.0\n  ratio: 0.5\n  1: one\n")
    obj = parse_documents(text, "a.yaml")[0].obj
    assert obj["metadata"]["annotations"] == {"when": "2026-01-01", "at": "2026-01-01T10:00:00Z"}
    assert obj["spec"] == {"priority": 1, "ratio": 0.5, "1": "one"}
    assert isinstance(obj["spec"]["priority"], int)


def test_yaml_errors_name_the_file_and_line():
    with pytest.raises(CliError) as exc:
        parse_documents("kind: Pod\nmetadata: [oops\n", "broken.yaml")
    message = str(exc.value)
    assert message.startswith("error parsing broken.yaml: error converting YAML to JSON: yaml: "
                              "line ")
    assert "\n" not in message


def test_objects_without_kind_or_api_version_are_refused():
    with pytest.raises(CliError) as exc:
        parse_documents("metadata: {name: x}\n", "nokind.yaml")
    assert str(exc.value) == ('error validating "nokind.yaml": error validating data: '
                              '[apiVersion not set, kind not set]')


def test_folders_are_read_in_sorted_order_and_recursively_only_with_r(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.yaml").write_text(POD.format("b"))
    (tmp_path / "a.yml").write_text(POD.format("a"))
    (tmp_path / "c.json").write_text(json.dumps({"apiVersion": "v1", "kind": "Pod",
                                                 "metadata": {"name": "c"}}))
    (tmp_path / "README.md").write_text("# not a manifest")
    (tmp_path / "sub" / "d.yaml").write_text(POD.format("d"))
    assert names(read_manifests([str(tmp_path)])) == ["a", "b", "c"]
    assert names(read_manifests([str(tmp_path)], recursive=True)) == ["a", "b", "c", "d"]
    assert expand_paths([str(tmp_path / "b.yaml"), str(tmp_path / "a.yml")]) == [
        str(tmp_path / "b.yaml"), str(tmp_path / "a.yml")]


def test_stdin_and_missing_paths(tmp_path):
    found = read_manifests(["-"], stdin=io.StringIO(POD.format("from-stdin")))
    assert names(found) == ["from-stdin"] and found[0].source == "STDIN"
    with pytest.raises(CliError) as exc:
        read_manifests([str(tmp_path / "nope.yaml")])
    assert str(exc.value) == f'the path "{tmp_path / "nope.yaml"}" does not exist'
    (tmp_path / "empty").mkdir()
    with pytest.raises(CliError) as exc:
        read_manifests([str(tmp_path / "empty")])
    assert "recognized file extensions are [.json .yaml .yml]" in str(exc.value)
