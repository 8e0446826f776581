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

from hetens.rescore import live, output, precomputed_scoring, predict
from hetens.rescore.live import *  # noqa: F403
from hetens.rescore.output import *  # noqa: F403
from hetens.rescore.precomputed_scoring import *  # noqa: F403
from hetens.rescore.predict import *  # noqa: F403
from hetens.rescore.report import ScoreResult, ScoreSummary

__all__ = [
    *live.__all__, *predict.__all__, *precomputed_scoring.__all__, *output.__all__, "ScoreResult", "ScoreSummary"
]
