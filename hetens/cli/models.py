"""``hetens models``: the registry, the families and the presets, and what runs here now."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list known pretrained models, families and presets, and what runs here",
        description="List the models hetens knows by name (family, level of theory, training "
        "data, heads, the paper's OMat24 force RMSE, and whether the weights are on this machine: "
        "shipped in a wheel, cached, or would be downloaded), then each family (runs in-process, "
        "needs its own environment, not installed) and each preset ensemble file (runnable here "
        "now, or what each member lacks).",
    )
    parser.add_argument("--family", help="only this family's models")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: {\"models\": [...], \"families\": [...], \"presets\": [...]}")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hetens.catalogue.availability import family_rows
    from hetens.catalogue.models_table import model_rows, preset_rows

    rows = [r for r in model_rows() if not args.family or r.family == args.family]
    families = [f for f in family_rows() if not args.family or f.family == args.family]
    presets = preset_rows()
    if args.json:
        print(json.dumps({
            "models": [asdict(r) for r in rows],
            "families": [asdict(f) for f in families],
            "presets": [{**asdict(p), "members": [{**asdict(m), "runnable": m.runnable} for m in p.members]}
                        for p in presets],
        }, indent=2))
        return 0
    _table(("spec", "level", "training data", "heads", "paper RMSE[eV/A]", "weights"),
           [(r.spec, r.level_of_theory, r.training_data, r.heads or "-", _paper(r.spec), r.weights)
            for r in rows])
    print()
    _table(("family", "runs", "how"), [(f.family, f.runs, f.detail) for f in families])
    print()
    for preset in presets:
        state = "runnable here now" if preset.runnable else "not runnable here now"
        print(f"preset {preset.name}: {state} ({preset.path})")
        _table(("  member", "spec", "runs in", "missing"),
               [("  " + m.name, m.spec, m.runs_in, "; ".join(m.missing) or "-") for m in preset.members])
    return 0


def _paper(spec: str) -> str:
    """The paper's name(s) and force RMSE for a registry model (one per head), or ``-``."""
    from hetens.catalogue.registry import PAPER_POOL

    found = []
    for model in PAPER_POOL:
        base, _, head = model.spec.partition("@")
        if base == spec:
            rmse = f" {model.force_rmse:g}" if model.force_rmse is not None else ""
            found.append(f"{model.paper_name}{rmse}" + (f" (@{head})" if head else ""))
    return ", ".join(found) or "-"


def _table(headers: tuple[str, ...], table: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
