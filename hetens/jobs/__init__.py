"""The jobs hetens runs for a user: each composes the core, the monitor and io into one run.

- :mod:`~hetens.jobs.singlepoint`: ``hetens single``, one structure through the ensemble.
- :mod:`~hetens.jobs.md`: :func:`run_monitored`, the monitored MD run (``hetens md``).
- :mod:`~hetens.jobs.relax`: :func:`run_relaxation` (``hetens relax``).
- :mod:`~hetens.jobs.score_live`: :func:`score_live` (``hetens score`` with live
  members) and the scoring step local and cluster runs share.

The names are imported on first use (:func:`hetens._lazy.lazy_exports`); see
docs/architecture.md for what a job may import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hetens._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

if TYPE_CHECKING:  # pragma: no cover  (the export table: see hetens._lazy.lazy_exports)
    from hetens.jobs.singlepoint import single_point
    from hetens.jobs.md import RunOutcome, StopOnInterrupt, run_monitored
    from hetens.jobs.relax import Relaxation, run_relaxation
    from hetens.jobs.score_live import score_batch, score_batches, score_live
