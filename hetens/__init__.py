"""hetens: heterogeneous ensembles of pretrained uMLIPs with a universal uncertainty U.

``import hetens`` loads no model package and no ASE calculator machinery:
the names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hetens._version import __version__

_EXPORTS = {
    "HeterogeneousEnsembleCalculator": "hetens.calculator",
    "Member": "hetens.member",
    "load_member": "hetens.member",
    "default_ensemble": "hetens.ensemble",
    "DEFAULT_MEMBERS": "hetens.ensemble",
    "DEFAULT_WITNESSES": "hetens.ensemble",
    "compute_uncertainty": "hetens.uncertainty",
    "atomic_uncertainty": "hetens.uncertainty",
    "member_max_deviation": "hetens.uncertainty",
    "energy_spread": "hetens.uncertainty",
    "max_force_error": "hetens.uncertainty",
    "most_deviating_member": "hetens.uncertainty",
    "reference_forces": "hetens.uncertainty",
    "weighted_mean": "hetens.uncertainty",
    "combine_predictions": "hetens.combine",
    "annotate": "hetens.frames",
    "read_annotation": "hetens.frames",
    "normalise_weights": "hetens.weights",
    "inverse_rmse_weights": "hetens.weights",
    "read_weights_file": "hetens.weights",
    "parse_spec": "hetens.spec",
    "KNOWN_MODELS": "hetens.registry",
    "load_ensemble_file": "hetens.ensemble_file",
    "load_preset": "hetens.ensemble_file",
    "preset_names": "hetens.presets",
    "IsolatedCalculator": "hetens.workers.isolated",
}

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


if TYPE_CHECKING:  # pragma: no cover
    from hetens.calculator import HeterogeneousEnsembleCalculator
    from hetens.ensemble import DEFAULT_MEMBERS, DEFAULT_WITNESSES, default_ensemble
    from hetens.frames import annotate, read_annotation
    from hetens.member import Member, load_member
    from hetens.uncertainty import compute_uncertainty
