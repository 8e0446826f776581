"""hetens: heterogeneous ensembles of pretrained uMLIPs with a universal uncertainty U.

What a user reaches for is importable from here: the calculator and its
members, the default ensemble and the factory (:func:`build_ensemble`), the U
and combine functions, weights and ensemble files, the monitor and
:func:`run_monitored`, and the scoring entry points. Lower-level helpers stay
in their modules.

``import hetens`` loads no model package and no ASE calculator machinery:
the names below are imported on first use. The ``if TYPE_CHECKING:`` block
at the end of this file is the one list of them: at import, :func:`_exports`
reads it (for type checkers it is a plain import block), so the lazy table
and what type checkers see cannot disagree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hetens._version import __version__


def _exports() -> dict[str, str]:
    """Name -> module, read from this file's ``if TYPE_CHECKING:`` block (``from M import a, b`` lines)."""
    import ast

    with open(__file__, encoding="utf-8") as source:
        tree = ast.parse(source.read(), filename=__file__)
    table: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    table.update({alias.asname or alias.name: statement.module for alias in statement.names})
    return table


_EXPORTS = _exports()

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hetens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover  (the export table: see _exports)
    # The calculator, its members, the default ensemble and the factory.
    from hetens.calculator import HeterogeneousEnsembleCalculator
    from hetens.member import Member, load_member
    from hetens.ensemble import DEFAULT_MEMBERS, DEFAULT_WITNESSES, default_ensemble
    from hetens.factory import build_ensemble
    from hetens.spec import parse_spec
    from hetens.registry import KNOWN_MODELS
    from hetens.workers.isolated import IsolatedCalculator
    # U and the combination of member predictions (pure numpy; docs/method.md).
    from hetens.uncertainty import (
        atomic_uncertainty,
        compute_uncertainty,
        energy_spread,
        max_force_error,
        member_max_deviation,
        most_deviating_member,
        reference_forces,
        weighted_mean,
    )
    from hetens.combine import combine_predictions
    from hetens.frames import annotate
    # Weights and ensemble files.
    from hetens.weights import inverse_rmse_weights, normalise_weights, read_weights_file, read_weights_roles
    from hetens.ensemble_file import load_ensemble_file, load_preset, write_ensemble_file
    from hetens.presets import preset_names
    # Monitoring MD and relaxations.
    from hetens.monitor.observers import UncertaintyMonitor
    from hetens.monitor.run import RunOutcome, run_monitored
    from hetens.monitor.relax import run_relaxation
    # Scoring, calibrating, selecting.
    from hetens.rescore.options import ScoreOptions
    from hetens.rescore import score_live, score_precomputed, select_frames, write_weights_file
    from hetens.rescore.calibrate import calibrate
    from hetens.distributed import score_on_cluster
