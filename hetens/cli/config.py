"""``--config FILE.yaml``: a subcommand's options from a YAML file (as janus-core does).

The file is one mapping whose keys are the command's long option names,
with dashes or underscores (``halt-above`` or ``halt_above``), and whose
values are what the option takes::

    models: [sevenn:7net-0, chgnet:0.3.0]
    temperature: 600
    dynamics: npt-berendsen
    pressure: 0.0
    no_plot: true          # a flag: true gives it, false leaves it out

Options given on the command line win over the file. Positional arguments
(the structure file) stay on the command line. An unknown key, a value of
the wrong type or outside the option's choices is an error naming the file
and the key (with the closest valid key), exit code 2, before anything loads.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_config_option", "apply_config", "load_config", "parse_args"]

_UNSET = object()


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML",
                        help="read options from a YAML mapping of long option names to values "
                        "(options given here win over the file)")


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with the subcommand's ``--config`` file applied under the command line.

    A bad config file prints one line (``hetens CMD: error: ...``) on stderr
    and exits 2, as argparse does for a bad option.
    """
    return apply_config(parser, parser.parse_args(argv), argv)


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Set on ``args`` (parsed from ``argv``) the options of its subcommand's ``--config`` file that
    the command line did not give; the same one-line error and exit 2 as :func:`parse_args`."""
    path = getattr(args, "config", None)
    if not path:
        return args
    sub = _subparser(parser, args.command)
    try:
        values = load_config(path, sub)
    except (ValueError, OSError) as exc:
        print(f"hetens {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    given = _given_on_command_line(parser, sub, argv)
    blocked = {a.dest for group in sub._mutually_exclusive_groups
               if any(b.dest in given for b in group._group_actions) for a in group._group_actions}
    for dest, value in values.items():
        if dest not in given and dest not in blocked:
            setattr(args, dest, value)
    return args


def load_config(path: str | Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The options a YAML config file sets for ``parser``: ``{dest: value}``, converted and checked.

    Raises:
        ValueError: the file is not a YAML mapping, a key is not a long option
            of the command (names the closest one), or a value does not fit
            its option (type, choices, a flag that is not true/false).
        OSError: the file cannot be read.
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ValueError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file is a mapping of option names to values; "
                         f"found a {type(data).__name__}")
    options = {
        option[2:]: action for action in parser._actions for option in action.option_strings
        if option.startswith("--") and action.dest not in ("help", "config", "version")
    }
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("_", "-")
        action = options.get(name)
        if action is None:
            close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(sorted(options))}"
            raise ValueError(f"{path}: unknown key '{key}' for 'hetens {parser.prog.split()[-1]}'{hint}")
        out[action.dest] = _convert(path, key, action, value)
    return out


def _convert(path: Path, key: Any, action: argparse.Action, value: Any) -> Any:
    """One config value as the option would have stored it from the command line."""
    where = f"{path}: key '{key}'"
    if action.nargs == 0:  # a flag: store_true / store_false / store_const
        if not isinstance(value, bool):
            raise ValueError(f"{where} is a flag: give true or false, not {value!r}")
        return action.const if value else action.default
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if many:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if action.nargs == "+" and not items:
            raise ValueError(f"{where} needs at least one value")
        if isinstance(action.nargs, int) and len(items) != action.nargs:
            raise ValueError(f"{where} needs {action.nargs} values; got {len(items)}")
        return [_item(where, action, item) for item in items]
    if isinstance(value, (list, tuple, dict)):
        raise ValueError(f"{where} takes one value; got {value!r}")
    return _item(where, action, value)


def _item(where: str, action: argparse.Action, value: Any) -> Any:
    if value is None or isinstance(value, (dict, list, tuple)):
        raise ValueError(f"{where}: {value!r} is not a value for --{action.dest.replace('_', '-')}")
    if isinstance(value, bool) and action.type not in (None, str):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    converted: Any = text
    if callable(action.type):
        try:
            converted = action.type(text)
        except (TypeError, ValueError):
            name = getattr(action.type, "__name__", "value")
            kind = {"int": "an integer", "float": "a number"}.get(name, f"a {name}")
            raise ValueError(f"{where}: expected {kind}, got {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise ValueError(f"no subcommand {command!r}")  # pragma: no cover - the parser has them


def _given_on_command_line(parser: argparse.ArgumentParser, sub: argparse.ArgumentParser,
                           argv: Sequence[str] | None) -> set[str]:
    """Destinations of the subcommand's options that ``argv`` sets (parsed with every default unset)."""
    saved = {id(a): a.default for a in sub._actions}
    saved_defaults = dict(sub._defaults)
    try:
        for action in sub._actions:
            if action.option_strings:
                action.default = _UNSET
        sub._defaults = {k: v for k, v in sub._defaults.items() if k == "func"}
        probe = parser.parse_args(argv)
    finally:
        for action in sub._actions:
            action.default = saved[id(action)]
        sub._defaults = saved_defaults
    return {a.dest for a in sub._actions if a.option_strings and getattr(probe, a.dest, _UNSET) is not _UNSET}
