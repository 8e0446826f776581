"""Every call of a hetens function written in the docs matches the function's signature.

The docs write calls as ```hetens.load_member(spec, device="auto")```; this test
imports each documented function and checks that the documented positional
arguments are its parameters in order and that every keyword is a parameter
(or that it takes ``**kwargs``). ``...`` stands for arguments left out; a
literal (``"default"``) only counts as a position. Issue 22 (9).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

#: Names the docs use without their module.
SHORT = {
    "HeterogeneousEnsembleCalculator": "hetens.HeterogeneousEnsembleCalculator",
    "FlagWriter": "hetens.monitor.FlagWriter",
    "TrajectoryWriter": "hetens.monitor.TrajectoryWriter",
    "UncertaintyLogger": "hetens.monitor.UncertaintyLogger",
    "UncertaintyMonitor": "hetens.monitor.UncertaintyMonitor",
    "HaltOnUncertainty": "hetens.monitor.HaltOnUncertainty",
    "run_monitored": "hetens.monitor.run_monitored",
    "plot_log": "hetens.monitor.plot_log",
    "read_log": "hetens.monitor.csvlog.read_log",
    "check_member": "hetens.testing.check_member",
    "Tolerances": "hetens.testing.Tolerances",
    "score_precomputed_on_cluster": "hetens.distributed.score_precomputed_on_cluster",
}
CALL = re.compile(r"`((?:hetens\.)?[A-Za-z_][\w.]*)\(([^`]*)\)`")


def _resolve(dotted: str):
    dotted = SHORT.get(dotted, dotted)
    if not dotted.startswith("hetens."):
        return None
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def _split(args: str) -> list[str]:
    """Top-level comma-separated arguments."""
    out, depth, word = [], 0, ""
    for char in args:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            out.append(word.strip())
            word = ""
        else:
            word += char
    return [w for w in [*out, word.strip()] if w]


def _documented_calls():
    for page in PAGES:
        for line_no, line in enumerate(page.read_text().splitlines(), 1):
            for match in CALL.finditer(line):
                name = match.group(1)
                if name in SHORT or name.startswith("hetens."):
                    yield pytest.param(name, match.group(2), id=f"{page.name}:{line_no}:{name}")


@pytest.mark.parametrize(("name", "args"), list(_documented_calls()))
def test_documented_call_matches_the_signature(name, args):
    target = _resolve(name)
    signature = inspect.signature(target)
    params = [p for p in signature.parameters.values() if p.name != "self"]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    takes_args = any(p.kind is p.VAR_POSITIONAL for p in params)
    names = {p.name for p in params}
    position, skipped = 0, False
    for arg in _split(args):
        if arg == "...":
            skipped = True
            continue
        if arg.startswith("**"):
            assert takes_kwargs, f"{name} takes no **kwargs; the docs write {args!r}; signature {signature}"
            continue
        key = re.match(r"^([A-Za-z_]\w*)\s*=", arg)
        if key:
            assert key.group(1) in names or takes_kwargs, (
                f"{name} has no parameter {key.group(1)!r}; signature {signature}")
            continue
        if skipped:
            continue  # a position after "..." is not known
        if position >= len(positional):
            assert takes_args, f"{name} takes {len(positional)} positional arguments; the docs write {args!r}"
            continue
        if re.fullmatch(r"[a-z_]\w*", arg):
            assert arg == positional[position].name, (
                f"{name}: the docs write {arg!r} at position {position}, the code has "
                f"{positional[position].name!r}; signature {signature}")
        position += 1


def test_documented_calls_are_found():
    assert sum(1 for _ in _documented_calls()) >= 20
