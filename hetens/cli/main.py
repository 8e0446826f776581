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
SUBCOMMANDS = ("md", "relax", "single", "models", "score", "calibrate", "select", "plot", "env")

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hetens",
        description="Heterogeneous ensembles of pretrained uMLIPs with a universal uncertainty U.",
    )
    parser.add_argument("--version", action="version", version=f"hetens {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"hetens.cli.{name}").add_parser(subparsers)
    return parser


#: Upstream warnings that say nothing actionable to a CLI user (the CLI owns its process).
_QUIET_WARNINGS = (
    "Converting a tensor with requires_grad=True to a scalar",  # chgnet, every structure
    "The TorchScript type system",  # e3nn via sevenn, at load
    "No tensor product accelerator",  # sevenn on CPU
)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    for message in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    from hetens.cli.config import parse_args

    parser = build_parser()
    args = parse_args(parser, argv)  # the subcommand's --config file, under the command line
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("hetens: interrupted", file=sys.stderr)
        return 130
    except (HetensError, ValueError, OSError, ImportError, KeyError) as exc:
        if args.debug:
            raise
        print(f"hetens {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _one_line(exc: BaseException) -> str:
    """The error and its notes (``exc.add_note``: what was kept, say) as one line."""
    text = str(exc) if not isinstance(exc, KeyError) else str(exc.args[0] if exc.args else exc)
    parts = [" ".join(text.split()) or type(exc).__name__]
    parts += [" ".join(str(note).split()) for note in getattr(exc, "__notes__", ())]
    return "; ".join(p for p in parts if p)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
