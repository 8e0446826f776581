"""``hetens env``: build and list per-family environments for isolated members.

``hetens env create NAME --family FAMILY`` prints only the new interpreter's
path on stdout (progress goes to stderr), so
``PY=$(hetens env create mace-env --family mace)`` works in scripts.
"""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "env", help="build Python environments for members that run in their own interpreter",
        description="Build and list virtual environments, one per model family, for members that "
        "run in worker processes (spec option @python=PATH, or python = PATH in an ensemble file). "
        "See docs/workers.md.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create", help="build an environment for one model family and print its interpreter",
        description="Create a venv with the family's torch, its pinned packages and hetens "
        "(--no-deps, from the source tree of the running hetens), check that it imports, and "
        "print the interpreter path on stdout. Pins: docs/workers.md.",
    )
    create.add_argument("name", help="folder name of the environment, e.g. mace-env")
    create.add_argument("--family", required=True,
                        help="model family: sevenn, chgnet, mace, fairchem, matgl, diep, or one that needs "
                        "its own environment: nequip (NequIP/Allegro, e3nn 0.6), grace (GRACE, "
                        "TensorFlow CPU, no torch), deepmd (DPA3/DPA-2, torch 2.11), fairchem1 "
                        "(fairchem-core 1.x: eqV2, eSEN-30M; torch 2.4 and torch_scatter)")
    _add_prefix(create)
    create.add_argument("--python", help="base interpreter for the venv (default: the one running hetens)")
    create.add_argument("--torch", default=None, help="torch version to install first (default: the family's, else 2.13.0)")
    create.add_argument("--extra", nargs="+", default=[], metavar="REQ",
                        help="more pip requirements to install with the family's packages")
    create.add_argument("--torch-index-url", metavar="URL", default=None,
                        help="pip index for torch (default: the family's; fairchem1: "
                        "https://download.pytorch.org/whl/cpu)")
    create.add_argument("--find-links", metavar="URL", nargs="+", default=None,
                        help="wheel pages for the family's packages (default: the family's; fairchem1: "
                        "https://data.pyg.org/whl/torch-2.4.0+cpu.html for torch_scatter)")
    create.add_argument("--quiet", action="store_true", help="pass -q to pip")
    create.add_argument("--no-compile", action="store_true",
                        help="do not byte-compile the packages (faster build; compiled on first import)")
    create.set_defaults(func=run_create)

    listing = actions.add_parser("list", help="list the environments built by hetens env create")
    _add_prefix(listing)
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(func=run_list)

    path = actions.add_parser("path", help="print the interpreter of an environment")
    path.add_argument("name")
    _add_prefix(path)
    path.set_defaults(func=run_path)


def _add_prefix(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prefix", metavar="DIR",
                        help="folder of the environments (default: $HETENS_ENV_DIR or "
                        "~/.local/share/hetens/envs)")


def run_create(args: argparse.Namespace) -> int:
    from hetens.catalogue.envs import create_environment

    interpreter = create_environment(
        args.name, args.family, prefix=args.prefix, python=args.python,
        torch=args.torch, extra=args.extra, quiet=args.quiet,
        torch_index_url=args.torch_index_url, find_links=args.find_links,
        compile=not args.no_compile,
    )
    print(interpreter)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from hetens.catalogue.envs import environment_root, list_environments

    found = list_environments(args.prefix)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(f"no environments under {environment_root(args.prefix)}")
        return 0
    width = max(len(e["name"]) for e in found)
    for entry in found:
        print(f"{entry['name'].ljust(width)}  {entry['family']:<8}  {entry['python']}")
    return 0


def run_path(args: argparse.Namespace) -> int:
    from hetens.catalogue.envs import MARKER, environment_root, interpreter_of

    folder = environment_root(args.prefix) / args.name
    if not (folder / MARKER).exists():
        raise FileNotFoundError(f"no environment {args.name!r} under {folder.parent} "
                                "(build it with: hetens env create NAME --family FAMILY)")
    print(interpreter_of(folder))
    return 0
