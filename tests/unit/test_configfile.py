"""``--config FILE`` (minik8s.runtime.configfile) as every daemon's parser sees it: keys are
the flag names, the command line wins, bad files are usage errors."""

from __future__ import annotations

import argparse

import pytest

from minik8s.runtime import configfile


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minik8s demo")
    p.add_argument("--kubeconfig")
    p.add_argument("--node-name")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("--etcd-servers")
    p.add_argument("--leader-elect", action="store_true")
    p.add_argument("--advertise-address", action="append", default=None)
    p.add_argument("--network", choices=("none", "bridge"), default="none")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse(tmp_path, text: str, *argv: str, **kw) -> argparse.Namespace:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return configfile.parse_args(parser(), ["--config", str(path), *argv], **kw)


def test_keys_are_flag_names_with_dashes_or_underscores(tmp_path):
    a = parse(tmp_path, "node-name: n1\nmax_pods: 7\nleader-elect: true\nnetwork: bridge\n"
                        "etcd-servers: [http://a:2379, http://b:2379]\n"
                        "advertise-address: [10.0.0.1, m.example]\n")
    assert (a.node_name, a.max_pods, a.leader_elect, a.network) == ("n1", 7, True, "bridge")
    assert a.etcd_servers == "http://a:2379,http://b:2379"
    assert a.advertise_address == ["10.0.0.1", "m.example"]
    assert a.config_extras == {}


def test_command_line_wins_even_for_repeatable_flags(tmp_path):
    a = parse(tmp_path, "node-name: n1\nmax-pods: 7\nadvertise-address: [10.0.0.1]\n",
              "--max-pods=9", "--advertise-address", "10.0.0.2", "--node", "n2")
    assert (a.node_name, a.max_pods, a.advertise_address) == ("n2", 9, ["10.0.0.2"])


def test_false_switch_and_missing_keys_keep_defaults(tmp_path):
    a = parse(tmp_path, "leader-elect: false\nverbose: false\n")
    assert (a.leader_elect, a.verbose, a.max_pods, a.node_name) == (False, False, 110, None)


def test_without_config_it_is_plain_argparse():
    a = configfile.parse_args(parser(), ["--node-name", "x"])
    assert a.node_name == "x" and a.config is None and a.config_extras == {}


def test_extra_keys_are_returned_not_parsed(tmp_path):
    a = parse(tmp_path, "watch_cache_window: 10\nnode-name: n\n", extra_keys={"watch_cache_window"})
    assert a.config_extras == {"watch_cache_window": 10} and a.node_name == "n"


@pytest.mark.parametrize("text, message", [
    ("bogus: 1\nnode-name: n\n", "unknown settings in"),
    ("- a\n- b\n", "expected a mapping"),
    ("leader-elect: yes please\n", "on/off setting"),
    ("max-pods: lots\n", "invalid int value"),
    ("network: weave\n", "invalid choice"),
    ("node-name: {a: 1}\n", "not a mapping"),
    ("config: other.yaml\n", "unknown settings in"),
    ("a: [\n", "cannot read --config"),
])
def test_bad_files_are_usage_errors(tmp_path, capsys, text, message):
    with pytest.raises(SystemExit) as exc:
        parse(tmp_path, text)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_file_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        configfile.parse_args(parser(), ["--config", str(tmp_path / "nope.yaml")])
    assert "cannot read --config" in capsys.readouterr().err


def test_every_daemon_accepts_config(tmp_path):
    """The real parsers: each daemon maps the same file keys onto its settings."""
    from apiserver.server import parse_args as apiserver_args
    from controller.manager import parse_args as cm_args
    from kubelet.main import parse_args as kubelet_args
    from scheduler.main import parse_args as scheduler_args

    f = tmp_path / "x.yaml"
    f.write_text("kubeconfig: /etc/minik8s/x.kubeconfig\nleader-elect: true\n")
    for parse_fn in (scheduler_args, cm_args):
        a = parse_fn(["--config", str(f)])
        assert a.kubeconfig == "/etc/minik8s/x.kubeconfig" and a.leader_elect
    f.write_text("node-name: w1\nkubeconfig: /k\ndrain-on-exit: true\nnetwork: bridge\n")
    k = kubelet_args(["--config", str(f), "--network", "none"])
    assert (k.node_name, k.kubeconfig, k.drain_on_exit, k.network) == ("w1", "/k", True, "none")
    f.write_text("etcd-servers: [https://10.0.0.1:2379]\nsecure-port: 7443\n"
                 "pki-dir: /etc/minik8s/pki\nwatch_cache_window: 10\n")
    s = apiserver_args(["--config", str(f)])
    assert s.etcd_servers == ["https://10.0.0.1:2379"] and s.port == 7443
    assert str(s.pki_dir) == "/etc/minik8s/pki" and s.watch_cache_window == 10
