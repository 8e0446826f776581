"""``hetens`` entry point: one module per subcommand, no heavy imports here.

Each subcommand module provides ``add_parser(subparsers)`` (which registers
the parser and sets ``func``) and a ``run(args) -> int``. User mistakes
(:class:`hetens.errors.HetensError`, ``ValueError``, ``OSError``) print one
line and exit 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hetens._version import __version__
from hetens.errors import HetensError

#: Subcommand modules, in the order ``hetens --help`` lists them.
SUBCOMMANDS = ("md", "relax", "single", "models", "score", "calibrate", "select", "merge", "plot", "env")

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """A command line argparse refused; ``prog`` is the (sub)command it concerns."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are raised (as :class:`UsageError`) for :func:`main` to
    print as one line, instead of a usage block and ``sys.exit``. Subparsers inherit the class."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self.prog, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hetens",
        description="Heterogeneous ensembles of pretrained uMLIPs with a universal uncertainty U.",
    )
    parser.add_argument("--version", action="version", version=f"hetens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"hetens.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            raise UsageError(_subcommand(parser, args).prog, _unknown_message(_subcommand(parser, args), unknown))
    except UsageError as exc:
        print(f"{exc.prog}: error: {_usage_message(exc, argv)} (see {exc.prog} --help)", file=sys.stderr)
        return EXIT_BAD_INPUT
    from hetens.cli.config import apply_config

    args = apply_config(parser, args, argv)  # the subcommand's --config file, under the command line
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        from hetens.core.factory import quiet_upstream_warnings

        with quiet_upstream_warnings():  # the caller's filters are restored after
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("hetens: interrupted", file=sys.stderr)
        return 130
    except (HetensError, ValueError, OSError, ImportError, KeyError) as exc:
        if args.debug:
            raise
        print(f"hetens {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _subcommand(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the subcommand ``args`` were parsed for (``parser`` itself when none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, "command", None):
            return action.choices[args.command]
    return parser


def _unknown_message(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """``unrecognized arguments`` with the closest option of ``parser`` for a mistyped one."""
    import difflib

    options = [o for o in parser._option_string_actions if o.startswith("--")]
    for word in unknown:
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1, cutoff=0.6)
            if close:
                return f"unrecognized option {word}; did you mean {close[0]}?"
    return f"unrecognized arguments: {' '.join(unknown)}"


def _usage_message(exc: UsageError, argv: list[str]) -> str:
    """argparse's message, or, when files given after ``--models`` left a positional missing, why."""
    message = str(exc)
    if "--models" in argv and "required" in message:
        from types import SimpleNamespace

        from hetens.cli.options import check_model_specs

        start = argv.index("--models") + 1
        end = next((i for i in range(start, len(argv)) if argv[i].startswith("-")), len(argv))
        command = next((w for w in argv if w in SUBCOMMANDS), None)
        try:
            check_model_specs(SimpleNamespace(models=argv[start:end], command=command))
        except ValueError as found:
            return str(found)
    return " ".join(message.split())


def _one_line(exc: BaseException) -> str:
    """The error and its notes (``exc.add_note``: what was kept, say) as one line."""
    text = str(exc) if not isinstance(exc, KeyError) else str(exc.args[0] if exc.args else exc)
    parts = [" ".join(text.split()) or type(exc).__name__]
    parts += [" ".join(str(note).split()) for note in getattr(exc, "__notes__", ())]
    return "; ".join(p for p in parts if p)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
