import pytest

from minik8s.cache import NAMESPACE_INDEX, Store, field_index, label_index, namespace_index


def pod(name, ns="default", node=None, rv="1", labels=None):
    obj = {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv}, "spec": {}}
    if node:
        obj["spec"]["nodeName"] = node
    if labels:
        obj["metadata"]["labels"] = labels
    return obj


def node(name):
    return {"metadata": {"name": name}}


def test_add_get_list_keys_delete():
    s = Store()
    a, b = pod("a"), pod("b", ns="kube-system")
    s.add(a)
    s.add(b)
    assert s.get_by_key("default/a") is a
    assert s.get("kube-system/b") is b
    assert s.get(pod("a")) is a  # by the key of an object
    assert sorted(s.keys()) == ["default/a", "kube-system/b"]
    assert len(s) == 2 and "default/a" in s
    assert s.delete(a) is a
    assert s.get_by_key("default/a") is None
    assert s.delete("default/a") is None
    assert s.delete("kube-system/b") is b
    assert s.list() == []


def test_cluster_scoped_key_is_the_name():
    s = Store()
    s.add(node("n1"))
    assert s.keys() == ["n1"]


def test_update_replaces_object_and_reindexes():
    s = Store(indexers={"node": field_index("spec.nodeName")})
    s.add(pod("a", node="n1"))
    s.update(pod("a", node="n2", rv="2"))
    assert s.get_by_key("default/a")["metadata"]["resourceVersion"] == "2"
    assert s.by_index("node", "n1") == []
    assert [p["metadata"]["name"] for p in s.by_index("node", "n2")] == ["a"]
    assert s.index_values("node") == ["n2"]


def test_namespace_index():
    s = Store(indexers={NAMESPACE_INDEX: namespace_index})
    s.add(pod("a"))
    s.add(pod("b"))
    s.add(pod("c", ns="other"))
    assert s.index_keys("namespace", "default") == ["default/a", "default/b"]
    assert [p["metadata"]["name"] for p in s.by_index("namespace", "other")] == ["c"]
    s.delete("default/a")
    assert s.index_keys("namespace", "default") == ["default/b"]


def test_field_index_skips_missing_values_and_label_index():
    s = Store(indexers={"node": field_index("spec.nodeName"), "app": label_index("app")})
    s.add(pod("unbound", labels={"app": "web"}))
    s.add(pod("bound", node="n1"))
    assert s.index_values("node") == ["n1"]
    assert s.index_keys("app", "web") == ["default/unbound"]
    assert s.by_index("node", "nope") == []


def test_unknown_index_is_an_error():
    with pytest.raises(KeyError):
        Store().by_index("nope", "x")


def test_replace_rebuilds_items_and_indices():
    s = Store(indexers={"node": field_index("spec.nodeName")})
    s.add(pod("old", node="n1"))
    s.replace([pod("x", node="n2"), pod("y", node="n2")])
    assert sorted(s.keys()) == ["default/x", "default/y"]
    assert s.by_index("node", "n1") == []
    assert s.index_keys("node", "n2") == ["default/x", "default/y"]


def test_add_indexers_later_indexes_existing_objects():
    s = Store()
    s.add(pod("a", node="n1"))
    fn = field_index("spec.nodeName")
    s.add_indexers({"node": fn})
    s.add_indexers({"node": fn})  # same function again: no-op
    assert s.index_keys("node", "n1") == ["default/a"]
    with pytest.raises(ValueError):
        s.add_indexers({"node": field_index("spec.other")})


def test_objects_are_stored_as_given():
    s = Store()
    a = pod("a")
    s.add(a)
    assert s.list()[0] is a
