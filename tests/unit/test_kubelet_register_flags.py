"""``--register-with-taints`` and ``--node-labels``: their parsing and refusals (a kubelet may
not give its node a role), and that they shape only a Node the kubelet creates."""

from __future__ import annotations

import pytest

from fakes import FakeClient
from kubelet.config import KubeletConfig
from kubelet.main import parse_args
from kubelet.network import NoNetwork
from kubelet.node import NodeAgent, is_kubelet_label, parse_node_labels, parse_taints
from kubelet.runtime.fake import FakeRuntime

CP = "node-role.kubernetes.io/control-plane"


@pytest.mark.parametrize("text,expected", [
    ("", []),
    (f"{CP}:NoSchedule", [{"key": CP, "effect": "NoSchedule"}]),
    ("a=b:PreferNoSchedule, example.com/c=d:NoExecute",
     [{"key": "a", "value": "b", "effect": "PreferNoSchedule"},
      {"key": "example.com/c", "value": "d", "effect": "NoExecute"}]),
    ("a=:NoSchedule", [{"key": "a", "effect": "NoSchedule"}]),
    ("a:NoSchedule,a:NoExecute", [{"key": "a", "effect": "NoSchedule"},
                                  {"key": "a", "effect": "NoExecute"}]),
])
def test_taints_parse(text, expected):
    assert parse_taints(text) == expected


@pytest.mark.parametrize("text,message", [
    (CP, "expected key[=value]:Effect"),
    ("a=b:Never", "effect 'Never' is not one of NoSchedule, PreferNoSchedule, NoExecute"),
    ("a=b:noschedule", "is not one of"),
    (":NoSchedule", "key:"),
    ("-a:NoSchedule", "key:"),
    ("a=b=c:NoSchedule", "value:"),
    ("a=" + "v" * 64 + ":NoSchedule", "value: must be no more than 63 characters"),
    ("a:NoSchedule,a=b:NoSchedule", "taint a:NoSchedule is given twice"),
])
def test_bad_taints_are_refused(text, message):
    with pytest.raises(ValueError, match="invalid taint|given twice") as info:
        parse_taints(text)
    assert message in str(info.value)


def test_labels_parse_and_the_kubelet_namespaces():
    assert parse_node_labels("") == {}
    assert parse_node_labels("disk=ssd, example.com/rack=r1,empty=") == {
        "disk": "ssd", "example.com/rack": "r1", "empty": ""}
    allowed = ["kubernetes.io/hostname", "topology.kubernetes.io/zone",
               "node.kubernetes.io/instance-type", "node.kubernetes.io/anything",
               "x.node.kubernetes.io/y", "kubelet.kubernetes.io/z", "example.com/k8s.io",
               "notkubernetes.io/a"]
    assert all(is_kubelet_label(k) for k in allowed)
    refused = [CP, "kubernetes.io/role", "node-restriction.kubernetes.io/a", "k8s.io/a",
               "foo.k8s.io/a", "foo.kubernetes.io/a"]
    assert not any(is_kubelet_label(k) for k in refused)


@pytest.mark.parametrize("text,message", [
    (f"{CP}=", "a kubelet may not give its node a role (node-role.kubernetes.io/"
               "control-plane): node-role.kubernetes.io/* labels are set with admin "
               "credentials"),
    ("a=b,node-role.kubernetes.io/worker=x", "mkctl label node NAME "
                                             "node-role.kubernetes.io/worker="),
    ("foo.k8s.io/a=1", "unknown 'kubernetes.io' or 'k8s.io' labels: foo.k8s.io/a"),
    ("node-restriction.kubernetes.io/a=1", "unknown 'kubernetes.io' or 'k8s.io' labels"),
    ("disk", "invalid node label 'disk': expected key=value"),
    ("a b=c", "invalid node label 'a b=c': key:"),
    ("a=-x", "invalid node label 'a=-x': value:"),
])
def test_bad_node_labels_are_refused(text, message):
    with pytest.raises(ValueError) as info:
        parse_node_labels(text)
    assert message in str(info.value)


def test_flags_and_config_file(tmp_path, capsys):
    c = parse_args(["--node-name", "n1", "--kubeconfig", "k", "--register-with-taints",
                    f"{CP}:NoSchedule", "--node-labels", "disk=ssd"])
    assert c.register_with_taints == f"{CP}:NoSchedule" and c.node_labels == "disk=ssd"
    # a --config file's lists become the comma-separated flag values
    cfg = tmp_path / "kubelet.yaml"
    cfg.write_text(f"register-with-taints: ['{CP}:NoSchedule', 'a=b:NoExecute']\n"
                   "node-labels: [disk=ssd, example.com/rack=r1]\n")
    c = parse_args(["--node-name", "n1", "--kubeconfig", "k", "--config", str(cfg)])
    assert parse_taints(c.register_with_taints)[1] == {"key": "a", "value": "b",
                                                       "effect": "NoExecute"}
    assert parse_node_labels(c.node_labels) == {"disk": "ssd", "example.com/rack": "r1"}
    for flag, value, message in (
            ("--register-with-taints", "a=b:Sometimes", "--register-with-taints: invalid "
                                                        "taint 'a=b:Sometimes'"),
            ("--node-labels", f"{CP}=", "--node-labels: a kubelet may not give its node a "
                                        "role")):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(["--node-name", "n1", "--kubeconfig", "k", flag, value])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


async def test_taints_and_labels_only_on_the_node_it_creates(tmp_path):
    client = FakeClient()
    config = KubeletConfig(node_name="n1", root_dir=str(tmp_path), node_ip="10.1.0.1",
                           register_with_taints=f"{CP}:NoSchedule,a=b:PreferNoSchedule",
                           node_labels="disk=ssd,kubernetes.io/hostname=other")
    node = await NodeAgent(config, client, NoNetwork(), FakeRuntime()).register()
    assert node["spec"]["taints"] == [{"key": CP, "effect": "NoSchedule"},
                                      {"key": "a", "value": "b",
                                       "effect": "PreferNoSchedule"}]
    labels = node["metadata"]["labels"]
    assert labels["disk"] == "ssd"
    assert labels["kubernetes.io/hostname"] == "n1"  # the kubelet's own labels win

    # an admin removes a taint and a label; a restarted kubelet re-registers
    stored = client.stored("nodes", "n1")
    stored["spec"]["taints"] = [{"key": "a", "value": "b", "effect": "PreferNoSchedule"}]
    del stored["metadata"]["labels"]["disk"]
    await NodeAgent(config, client, NoNetwork(), FakeRuntime()).register()
    stored = client.stored("nodes", "n1")
    assert stored["spec"]["taints"] == [{"key": "a", "value": "b",
                                         "effect": "PreferNoSchedule"}]
    assert "disk" not in stored["metadata"]["labels"]

    # no flags: no taints key at all on a new Node
    plain = KubeletConfig(node_name="n2", root_dir=str(tmp_path), node_ip="10.1.0.2")
    node = await NodeAgent(plain, client, NoNetwork(), FakeRuntime()).register()
    assert "taints" not in node["spec"]
