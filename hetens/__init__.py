"""hetens: heterogeneous ensembles of pretrained uMLIPs with a universal uncertainty U.

What a user reaches for is importable from here: the calculator and its
members, the default ensemble and the factory (:func:`build_ensemble`), the U
and combine functions, weights and ensemble files, the monitor and
:func:`run_monitored`, and the scoring entry points. Lower-level helpers stay
in their modules.

``import hetens`` loads no model package and no ASE calculator machinery:
the names below are imported on first use. The ``if TYPE_CHECKING:`` block
at the end of this file is the one list of them: at import,
:func:`hetens._lazy.lazy_exports` reads it (for type checkers it is a plain
import block), so the lazy table and what type checkers see cannot disagree.
The module paths from before the core, catalogue and jobs folders still
import, as aliases, for one release (:data:`hetens._lazy.MOVED`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hetens._lazy import install_moved_aliases, lazy_exports
from hetens._version import __version__

_exported, __getattr__, _ = lazy_exports(__name__, __file__)
__all__ = ["__version__", *_exported]
install_moved_aliases()


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover  (the export table: see hetens._lazy.lazy_exports)
    # The calculator, its members, the default ensemble and the factory.
    from hetens.core.calculator import HeterogeneousEnsembleCalculator
    from hetens.core.member import Member, load_member
    from hetens.core.ensemble import DEFAULT_MEMBERS, DEFAULT_WITNESSES, default_ensemble
    from hetens.core.factory import build_ensemble
    from hetens.catalogue.spec import parse_spec
    from hetens.catalogue.registry import KNOWN_MODELS
    from hetens.workers.isolated import IsolatedCalculator
    # U and the combination of member predictions (pure numpy; docs/method.md).
    from hetens.core.uncertainty import (
        atomic_uncertainty,
        compute_uncertainty,
        energy_spread,
        max_force_error,
        member_max_deviation,
        most_deviating_member,
        reference_forces,
        weighted_mean,
    )
    from hetens.core.combine import combine_predictions
    from hetens.core.frames import annotate
    # Weights and ensemble files.
    from hetens.core.weights import inverse_rmse_weights, normalise_weights, read_weights_file, read_weights_roles
    from hetens.core.ensemble_file import load_ensemble_file, load_preset, write_ensemble_file
    from hetens.catalogue.presets import preset_names
    # Monitoring MD and relaxations.
    from hetens.monitor.observers import UncertaintyMonitor
    from hetens.jobs.md import RunOutcome, run_monitored
    from hetens.jobs.relax import run_relaxation
    # Scoring, calibrating, selecting.
    from hetens.rescore.options import ScoreOptions
    from hetens.jobs.score_live import score_live
    from hetens.rescore import score_precomputed, select_frames, write_weights_file
    from hetens.rescore.calibrate import calibrate
    from hetens.distributed import score_on_cluster
