"""``hetens models``: the registry, with level of theory and weight availability."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list known pretrained models and whether their weights are here",
        description="List the models hetens knows by name: family, level of theory, training "
        "data, heads, and whether the weights are on this machine (shipped in a wheel, cached) "
        "or would be downloaded.",
    )
    parser.add_argument("--family", help="only this family")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hetens.models_table import model_rows

    rows = [r for r in model_rows() if not args.family or r.family == args.family]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    headers = ("spec", "level", "training data", "heads", "weights")
    table = [(r.spec, r.level_of_theory, r.training_data, r.heads or "-", r.weights) for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return 0
