"""Rescoring datasets, calibrating on reference data, selecting frames for DFT, and plots.

One job per module:

- :mod:`~hetens.rescore.reading`: stream frames from any ASE-readable file.
- :mod:`~hetens.rescore.arrays`: frames and member predictions as flat arrays.
- :mod:`~hetens.rescore.precomputed`: read prediction files, check alignment.
- :mod:`~hetens.rescore.batches`: the one rule cutting frames into model batches.
- :mod:`~hetens.rescore.batched`: evaluate a member on many structures at once.
- :mod:`~hetens.rescore.predict`: every member on a batch of frames.
- :mod:`~hetens.rescore.scoring`: U and the ensemble results for many frames (vectorised).
- :mod:`~hetens.rescore.output`: what a scored frame holds; the annotation step.
- :mod:`~hetens.rescore.metrics`: RMSE, Spearman rho, conformal factors, DFT fractions.
- :mod:`~hetens.rescore.report`: the score summary and :class:`ScoreResult`.
- :mod:`~hetens.rescore.live`: ``hetens score`` with live members, and the one
  scoring step local and cluster runs take (``score_batch``).
- :mod:`~hetens.rescore.precomputed_scoring`: ``hetens score --precomputed``.
- :mod:`~hetens.rescore.score`: the scoring names of both, importable in one place.
- :mod:`~hetens.rescore.calibrate`: ``hetens calibrate``.
- :mod:`~hetens.rescore.select`: ``hetens select``.
- :mod:`~hetens.rescore.plots`: ``hetens plot`` (matplotlib imported on use).

The main entry points are importable from here; nothing heavy is imported
until they are used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "score_live": "hetens.rescore.live",
    "score_precomputed": "hetens.rescore.precomputed_scoring",
    "load_predictions": "hetens.rescore.precomputed",
    "read_frame_arrays": "hetens.rescore.precomputed",
    "write_weights_file": "hetens.rescore.calibrate",
    "select_frames": "hetens.rescore.select",
    "evaluate_batch": "hetens.rescore.batched",
    "score_predictions": "hetens.rescore.scoring",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hetens.rescore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
