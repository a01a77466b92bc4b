"""``--config FILE`` for every daemon, in one place: a YAML mapping whose keys are the
daemon's own flag names (``node-name: n1`` or ``node_name: n1``, without the dashes in
front), so a config file and a command line say the same things in the same words, a unit
file can carry a short ``ExecStart`` and ``--help`` documents both.

The file is turned into flag tokens placed before the real command line and parsed by the
daemon's own parser, so types, choices and errors are exactly the flags'. A flag also given
on the command line wins (its file value is dropped, which matters for repeatable flags).
Values: a scalar is the flag's value; a list repeats a repeatable flag or is joined with
commas for the others (``etcd-servers: [a, b]``); ``true``/``false`` switch an on/off flag.
Unknown keys are a usage error naming them, never silently ignored."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterable

import yaml

CONFIG_HELP = ("YAML file whose keys are this command's flag names (e.g. `node-name: n1`); "
               "flags given on the command line win")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None,
               *, extra_keys: Iterable[str] = ()) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with ``--config FILE`` support (the option is added to the
    parser when missing). Keys in ``extra_keys`` (snake_case) are settings with no flag; their
    values are returned in ``namespace.config_extras`` (a dict, empty without a file)."""
    if "--config" not in parser._option_string_actions:
        parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    argv = list(argv or [])
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    extras: dict[str, Any] = {}
    tokens: list[str] = []
    if known.config:
        settings = _load(parser, Path(known.config))
        tokens, extras = config_tokens(parser, settings, argv, set(extra_keys),
                                       source=known.config)
    ns = parser.parse_args(tokens + argv)
    ns.config_extras = extras
    return ns


def _load(parser: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        parser.error(f"cannot read --config {path}: {exc}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        parser.error(f"--config {path}: expected a mapping of flag names to values, "
                     f"got {type(data).__name__}")
    return data


def config_tokens(parser: argparse.ArgumentParser, settings: dict[str, Any], argv: list[str],
                  extra_keys: set[str], *, source: str = "--config"
                  ) -> tuple[list[str], dict[str, Any]]:
    """The flag tokens for ``settings`` (minus flags present in ``argv``), and the values of
    keys in ``extra_keys``."""
    given = _given_on_command_line(parser, argv)
    tokens: list[str] = []
    extras: dict[str, Any] = {}
    unknown: list[str] = []
    for raw_key, value in settings.items():
        key = str(raw_key).lstrip("-")
        flag = "--" + key.replace("_", "-")
        action = parser._option_string_actions.get(flag)
        if action is None or key == "config" or action.dest == "help":
            if key.replace("-", "_") in extra_keys:
                extras[key.replace("-", "_")] = value
            else:
                unknown.append(str(raw_key))
            continue
        if action.dest in given or value is None:
            continue
        tokens += _tokens_for(parser, action, flag, value, source)
    if unknown:
        parser.error(f"unknown settings in {source}: {', '.join(sorted(unknown))} "
                     f"(keys are the flag names of `{parser.prog} --help`)")
    return tokens, extras


def _tokens_for(parser: argparse.ArgumentParser, action: argparse.Action, flag: str,
                value: Any, source: str) -> list[str]:
    key = flag[2:]
    if action.nargs == 0:  # an on/off switch (store_true / store_false / store_const)
        if not isinstance(value, bool):
            parser.error(f"{source}: {key} is an on/off setting: use true or false, "
                         f"not {value!r}")
        on = isinstance(action, argparse._StoreFalseAction) is not value
        return [flag] if on else []
    if isinstance(value, dict):
        parser.error(f"{source}: {key} takes a value or a list, not a mapping")
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        return [f"{flag}={_scalar(v)}" for v in values]
    if isinstance(value, list):
        return [f"{flag}={','.join(_scalar(v) for v in value)}"]
    return [f"{flag}={_scalar(value)}"]


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _given_on_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """dests of the options present in argv (exact, ``--flag=value`` or a unique prefix, as
    argparse accepts them)."""
    dests: set[str] = set()
    long_opts = {o: a for o, a in parser._option_string_actions.items() if o.startswith("--")}
    for tok in argv:
        if tok == "--":
            break
        if tok.startswith("--"):
            name = tok.split("=", 1)[0]
            if name in long_opts:
                dests.add(long_opts[name].dest)
                continue
            matches = {a.dest for o, a in long_opts.items() if o.startswith(name)}
            if len(matches) == 1:
                dests |= matches
        elif tok.startswith("-") and len(tok) >= 2:
            action = parser._option_string_actions.get(tok[:2])
            if action is not None:
                dests.add(action.dest)
    return dests


__all__ = ["parse_args", "config_tokens", "CONFIG_HELP"]
