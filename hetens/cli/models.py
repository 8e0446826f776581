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
    width = _width()
    _table(("spec", "level", "heads", "paper F[eV/A]", "weights"),
           [(r.spec + ("?" if r.unverified else ""), r.level_of_theory, _heads(r), _paper(r.spec),
             _short_weights(r.weights)) for r in rows], width)
    if any(r.unverified for r in rows):
        print("? name not checked against the package's own list (no offline list upstream; "
              "--json says why)")
    print()
    _table(("family", "runs", "how"), [(f.family, f.runs, f.detail) for f in families], width)
    print()
    for preset in presets:
        state = "runnable here now" if preset.runnable else "not runnable here now"
        print(f"preset {preset.name}: {state}")
        _table(("  member", "spec", "runs in", "missing"),
               [("  " + m.name, m.spec, m.runs_in, "; ".join(m.missing) or "-") for m in preset.members],
               width, keep=2)
        if not preset.runnable:
            for command in _commands(preset):
                print(f"  to do: {command}")
    return 0


def _width() -> int:
    """Columns to fit: the terminal's, at most 100 (and at least 60)."""
    import shutil

    return max(60, min(100, shutil.get_terminal_size((100, 24)).columns))


def _commands(preset) -> list[str]:
    """The distinct commands a preset's members ask for (``hetens env create ...``, ``pip install ...``)."""
    import re

    found: list[str] = []
    for member in preset.members:
        for phrase in member.missing:
            for command in re.findall(r"(hetens env create [\w.-]+ --family [\w.-]+|pip install '[^']+')", phrase):
                if command not in found:
                    found.append(command)
    return found


def _short_weights(status: str) -> str:
    """The weights column in the table: an own-environment or not-installed status without the
    command, which the families table below gives (``--json`` keeps the full text)."""
    if status.startswith("own environment, not created"):
        return "own env, not built"
    if status.startswith("own environment"):
        return "own env"
    if status.startswith("not installed"):
        return "not installed"
    return status


def _heads(row) -> str:
    """Head names; ``=LEVEL`` after those whose level is not the model's."""
    if not row.heads:
        return "-"
    parts = [h.partition("=") for h in row.heads.split(", ")]
    return ", ".join(name + (f"={level}" if level != row.level_of_theory else "") for name, _, level in parts)


def _paper(spec: str) -> str:
    """The paper's name(s) and force RMSE for a registry model (one per head), or ``-``."""
    from hetens.catalogue.registry import PAPER_POOL

    found = []
    for model in PAPER_POOL:
        base, _, head = model.spec.partition("@")
        if base == spec:
            rmse = f" {model.force_rmse:.3f}" if model.force_rmse is not None else ""
            found.append(f"{model.paper_name}{rmse}" + (f" (@{head})" if head else ""))
    return ", ".join(found) or "-"


def _table(headers: tuple[str, ...], table: list[tuple[str, ...]], width: int = 100,
           keep: int = 1) -> None:
    """Print ``table`` under ``headers``, no line wider than ``width``: the widest of the
    columns after the first ``keep`` (names, never split) are narrowed (to no less than 12
    characters) and their cells wrapped onto more lines, at spaces where possible."""
    import textwrap

    gap = 2
    widths = [max([len(h), *(len(str(row[i])) for row in table)]) for i, h in enumerate(headers)]
    while sum(widths) + gap * (len(widths) - 1) > width:
        floors = [max(12, len(h)) for h in headers]
        widest = max(range(keep, len(widths)), key=lambda i: widths[i] - floors[i])
        if widths[widest] <= floors[widest]:
            break
        widths[widest] -= 1
    print("  ".join(h[:w].ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in table:
        cells = [textwrap.wrap(str(c), w, break_on_hyphens=False) or [""] for c, w in zip(row, widths)]
        for line in range(max(len(c) for c in cells)):
            print("  ".join((c[line] if line < len(c) else "").ljust(w) for c, w in zip(cells, widths)).rstrip())
