"""List: label and field selectors, paging with ``limit``/``continue``, lists across
namespaces, and ``resourceVersion=0`` served from the watch cache."""

from __future__ import annotations

import uuid

import pytest

from minik8s.api.errors import BadRequest, Gone


def names(lst: dict) -> list[str]:
    return sorted(i["metadata"]["name"] for i in lst["items"])


@pytest.fixture
async def labelled(client, ns):
    """Pods with labels: a{app=web,tier=front} b{app=web,tier=back} c{app=db} d{}."""
    specs = {"a": {"app": "web", "tier": "front"}, "b": {"app": "web", "tier": "back"},
             "c": {"app": "db"}, "d": {}}
    for name, labels in specs.items():
        await client.create("pods", {"metadata": {"name": name, "labels": labels},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}, ns)
    return ns


@pytest.mark.parametrize("selector,expected", [
    ("app=web", ["a", "b"]),
    ("app==web", ["a", "b"]),
    ("app!=web", ["c", "d"]),
    ("app in (web,db)", ["a", "b", "c"]),
    ("tier in (front)", ["a"]),
    ("app notin (web)", ["c", "d"]),
    ("tier", ["a", "b"]),
    ("!tier", ["c", "d"]),
    ("app=web,tier=back", ["b"]),
    ("app,!tier", ["c"]),
    ("app=nothing", []),
    ("", ["a", "b", "c", "d"]),
])
async def test_label_selectors(client, labelled, selector, expected):
    ns = labelled
    assert names(await client.list("pods", ns, label_selector=selector)) == expected
    # The watch cache answers the same.
    assert names(await client.list("pods", ns, label_selector=selector,
                                   resource_version="0")) == expected


async def test_field_selectors_on_pods(client, labelled):
    ns = labelled
    await client.create("pods", {"metadata": {"name": "a"}, "target": {"name": "node-x"}}, ns,
                        subresource="binding", name="a")
    await client.patch("pods", "b", {"status": {"phase": "Running"}}, ns, subresource="status")
    cases = {
        "metadata.name=c": ["c"],
        "metadata.name!=c": ["a", "b", "d"],
        f"metadata.namespace={ns}": ["a", "b", "c", "d"],
        "metadata.namespace=elsewhere": [],
        "spec.nodeName=node-x": ["a"],
        "spec.nodeName=": ["b", "c", "d"],
        "spec.nodeName!=": ["a"],
        "status.phase=Running": ["b"],
        "status.phase=Pending": ["a", "c", "d"],
        "status.phase!=Pending,metadata.name!=a": ["b"],
        "status.phase==Running": ["b"],
    }
    for selector, expected in cases.items():
        assert names(await client.list("pods", ns, field_selector=selector)) == expected, selector
        assert names(await client.list("pods", ns, field_selector=selector,
                                       resource_version="0")) == expected, selector
    both = await client.list("pods", ns, label_selector="app=web",
                             field_selector="status.phase=Pending")
    assert names(both) == ["a"]


async def test_field_selector_on_events(client, ns):
    for i, target in enumerate(["web-1", "web-2", "web-1"]):
        await client.create("events", {
            "metadata": {"name": f"ev{i}"},
            "involvedObject": {"kind": "Pod", "name": target, "namespace": ns},
            "reason": "Started" if i else "Pulled", "message": "m", "type": "Normal"}, ns)
    got = await client.list("events", ns, field_selector="involvedObject.name=web-1")
    assert names(got) == ["ev0", "ev2"]
    got = await client.list("events", ns,
                            field_selector="involvedObject.name=web-1,reason=Started")
    assert names(got) == ["ev2"]
    got = await client.list("events", ns, field_selector="involvedObject.kind=Pod")
    assert names(got) == ["ev0", "ev1", "ev2"]


async def test_unsupported_field_selector_is_400(client, ns):
    with pytest.raises(BadRequest) as exc:
        await client.list("configmaps", ns, field_selector="data.a=1")
    assert exc.value.code == 400
    assert "data.a" in str(exc.value)


async def test_paging_through_25_objects(client, ns):
    for i in range(25):
        await client.create("configmaps", {"metadata": {"name": f"cm-{i:02d}"}}, ns)
    seen: list[str] = []
    pages = 0
    token = None
    rvs = set()
    while True:
        page = await client.list("configmaps", ns, limit=10, continue_=token)
        pages += 1
        seen.extend(i["metadata"]["name"] for i in page["items"])
        rvs.add(page["metadata"]["resourceVersion"])
        token = page["metadata"].get("continue")
        if pages < 3:
            assert len(page["items"]) == 10 and token
        else:
            assert len(page["items"]) == 5
        if not token:
            break
    assert pages == 3
    assert seen == [f"cm-{i:02d}" for i in range(25)]
    # All pages come from one snapshot.
    assert len(rvs) == 1


async def test_paging_is_a_consistent_snapshot(client, ns):
    for i in range(6):
        await client.create("configmaps", {"metadata": {"name": f"s{i}"}}, ns)
    first = await client.list("configmaps", ns, limit=3)
    assert names(first) == ["s0", "s1", "s2"]
    # Changes after the first page are not seen by the rest of the list.
    await client.delete("configmaps", "s4", ns)
    await client.create("configmaps", {"metadata": {"name": "s9"}}, ns)
    rest = await client.list("configmaps", ns, limit=10, continue_=first["metadata"]["continue"])
    assert names(rest) == ["s3", "s4", "s5"]
    assert "continue" not in rest["metadata"]


async def test_paging_with_selector(client, ns):
    for i in range(12):
        await client.create("configmaps", {"metadata": {"name": f"p{i:02d}",
                                                        "labels": {"even": str(i % 2 == 0)}}}, ns)
    got = await client.list_all("configmaps", ns, page_size=2, label_selector="even=True")
    assert names(got) == [f"p{i:02d}" for i in range(0, 12, 2)]


async def test_limit_exactly_the_size_has_no_continue(client, ns):
    for i in range(3):
        await client.create("configmaps", {"metadata": {"name": f"e{i}"}}, ns)
    page = await client.list("configmaps", ns, limit=3)
    assert names(page) == ["e0", "e1", "e2"]
    assert not page["metadata"].get("continue")


async def test_continue_token_of_other_resource_is_400(client, ns):
    for i in range(2):
        await client.create("configmaps", {"metadata": {"name": f"t{i}"}}, ns)
    page = await client.list("configmaps", ns, limit=1)
    with pytest.raises(BadRequest):
        await client.list("secrets", ns, limit=1, continue_=page["metadata"]["continue"])


async def test_list_across_namespaces(client, http):
    a, b = f"x-{uuid.uuid4().hex[:6]}", f"x-{uuid.uuid4().hex[:6]}"
    label = uuid.uuid4().hex[:8]
    for ns in (a, b):
        await client.create("namespaces", {"metadata": {"name": ns}})
        await client.create("pods", {"metadata": {"name": "p", "labels": {"run": label}},
                                     "spec": {"containers": [{"name": "c", "image": "i"}]}}, ns)
    r = await http.get("/api/v1/pods", params={"labelSelector": f"run={label}"})
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "PodList"
    assert sorted((i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]) == \
        sorted([(a, "p"), (b, "p")])
    got = await client.list("pods", all_namespaces=True, label_selector=f"run={label}",
                            field_selector=f"metadata.namespace={b}")
    assert [i["metadata"]["namespace"] for i in got["items"]] == [b]
    # Paged across namespaces too.
    first = await client.list("pods", all_namespaces=True, label_selector=f"run={label}",
                              limit=1)
    assert len(first["items"]) == 1 and first["metadata"]["continue"]
    second = await client.list("pods", all_namespaces=True, label_selector=f"run={label}",
                               limit=1, continue_=first["metadata"]["continue"])
    assert len(second["items"]) == 1
    assert first["items"][0]["metadata"]["namespace"] != second["items"][0]["metadata"]["namespace"]


async def test_resource_version_zero_is_served_from_the_watch_cache(client, ns):
    created = await client.create("configmaps", {"metadata": {"name": "rv0"}}, ns)
    cached = await client.list("configmaps", ns, resource_version="0")
    assert cached["kind"] == "ConfigMapList"
    # The cache's version is at least the object's (the watch may lag a moment: retry).
    for _ in range(50):
        if names(cached) == ["rv0"]:
            break
        cached = await client.list("configmaps", ns, resource_version="0")
    assert names(cached) == ["rv0"]
    assert int(cached["metadata"]["resourceVersion"]) >= int(created["metadata"]["resourceVersion"])
    assert cached["items"][0] == created
    assert "continue" not in cached["metadata"]


async def test_list_resource_version_is_current_revision(client, ns):
    a = await client.create("configmaps", {"metadata": {"name": "a"}}, ns)
    lst = await client.list("configmaps", ns)
    assert int(lst["metadata"]["resourceVersion"]) >= int(a["metadata"]["resourceVersion"])
    empty = await client.list("secrets", ns)
    assert empty["items"] == [] and int(empty["metadata"]["resourceVersion"]) > 0


async def test_expired_continue_token_is_410(apiserver, client, ns):
    """A continue token pinned to a compacted revision answers 410 Expired."""
    import aetcd
    for i in range(3):
        await client.create("configmaps", {"metadata": {"name": f"old{i}"}}, ns)
    page = await client.list("configmaps", ns, limit=1)
    # Write more, then compact etcd past the list's snapshot.
    await client.create("configmaps", {"metadata": {"name": "newer"}}, ns)
    etcd = aetcd.Client(host="127.0.0.1", port=apiserver.etcd.port)
    try:
        latest = await client.list("configmaps", ns)
        await etcd.compact(int(latest["metadata"]["resourceVersion"]))
    finally:
        await etcd.close()
    with pytest.raises(Gone) as exc:
        await client.list("configmaps", ns, limit=1, continue_=page["metadata"]["continue"])
    assert exc.value.code == 410 and exc.value.reason == "Expired"
    assert "continue parameter is too old" in str(exc.value)
