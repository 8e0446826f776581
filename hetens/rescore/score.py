"""Rescore structures with the ensemble: live members, or predictions made elsewhere.

The names users import from here, kept importable; each lives in the module
of its job:

- :mod:`hetens.rescore.live`: :func:`score_live` (live members, streamed) and
  the one scoring step both local and cluster runs take, :func:`score_batch`
  (:func:`score_batches` over many).
- :mod:`hetens.rescore.predict`: the members on a batch, :func:`predict_frames`,
  :func:`predict_file`.
- :mod:`hetens.rescore.precomputed_scoring`: :func:`score_precomputed` (M
  prediction files, U for all frames at once) and its steps.
- :mod:`hetens.rescore.output`: what a scored frame holds (the ``hetens_`` keys
  added by scoring) and the annotation step every writer shares.
- :mod:`hetens.rescore.report`: :class:`ScoreResult` and the summary.
"""

from __future__ import annotations

from hetens.rescore.live import (
    ReferenceFrames,
    ScoredBatch,
    score_batch,
    score_batches,
    score_ensemble_predictions,
    score_live,
)
from hetens.rescore.output import (
    EPS_KEY,
    MEMBER_FORCES_KEY,
    MEMBER_STRESSES_KEY,
    SOURCE_KEY,
    annotated_frames,
    pack_member_forces,
    unpack_member_forces,
)
from hetens.rescore.precomputed_scoring import (
    ScoredPredictions,
    resolve_member_weights,
    score_loaded_predictions,
    score_precomputed,
    write_precomputed,
)
from hetens.rescore.predict import dropped_counts, predict_file, predict_frames
from hetens.rescore.report import ScoreResult, ScoreSummary

__all__ = [
    "ScoreResult",
    "ScoreSummary",
    "score_live",
    "score_batch",
    "score_batches",
    "ScoredBatch",
    "ReferenceFrames",
    "score_precomputed",
    "score_loaded_predictions",
    "ScoredPredictions",
    "write_precomputed",
    "predict_frames",
    "predict_file",
    "dropped_counts",
    "resolve_member_weights",
    "score_ensemble_predictions",
    "annotated_frames",
    "pack_member_forces",
    "unpack_member_forces",
    "MEMBER_FORCES_KEY",
    "MEMBER_STRESSES_KEY",
    "EPS_KEY",
    "SOURCE_KEY",
]
