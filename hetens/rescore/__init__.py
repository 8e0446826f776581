"""Rescoring datasets, calibrating on reference data, selecting frames for DFT, and plots.

One job per module:

- :mod:`~hetens.rescore.arrays`: frames and member predictions as flat arrays.
- :mod:`~hetens.rescore.precomputed`: read prediction files, check alignment.
- :mod:`~hetens.rescore.batches`: the one rule cutting frames into model batches.
- :mod:`~hetens.rescore.batched`: evaluate a member on many structures at once.
- :mod:`~hetens.rescore.predict`: every member on a batch of frames.
- :mod:`~hetens.rescore.scoring`: U and the ensemble results for many frames (vectorised).
- :mod:`~hetens.rescore.output`: what a scored frame holds; the annotation step.
- :mod:`~hetens.rescore.metrics`: RMSE, Spearman rho, conformal factors, DFT fractions.
- :mod:`~hetens.rescore.report`: the score summary and :class:`ScoreResult`.
- :mod:`~hetens.rescore.precomputed_scoring`: ``hetens score --precomputed``.
- :mod:`~hetens.rescore.calibrate`: ``hetens calibrate``.
- :mod:`~hetens.rescore.select`: ``hetens select``.
- :mod:`~hetens.rescore.plots`: ``hetens plot`` (matplotlib imported on use).

The live scoring job is :mod:`hetens.jobs.score_live` (``hetens score`` with
live members); frames are read by :mod:`hetens.io.reading`. The main entry
points are importable from here, imported on first use
(:func:`hetens._lazy.lazy_exports`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hetens._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

if TYPE_CHECKING:  # pragma: no cover  (the export table: see hetens._lazy.lazy_exports)
    from hetens.jobs.score_live import score_live
    from hetens.rescore.precomputed_scoring import score_precomputed
    from hetens.rescore.precomputed import load_predictions, read_frame_arrays
    from hetens.rescore.calibrate import write_weights_file
    from hetens.rescore.select import select_frames
    from hetens.rescore.batched import evaluate_batch
    from hetens.rescore.scoring import score_predictions
