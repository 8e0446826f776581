"""Live uncertainty monitoring for ASE MD and relaxations.

- :class:`UncertaintyLogger`, :class:`FlagWriter`, :class:`HaltOnUncertainty`,
  :class:`TrajectoryWriter`: observers for ``dyn.attach(observer, interval=n)``;
  they read the U the ensemble already computed and never run a model.
- :class:`UncertaintyMonitor`: the three in one, with tiered thresholds.
- :func:`run_monitored`: run the dynamics and get a :class:`RunOutcome`
  (completed, halted at step s with U, or interrupted by Ctrl-C with
  ``stop_on_interrupt=True``) instead of a traceback.
- :func:`read_log`, :func:`plot_log`: the CSV log back, and a PNG of it.
- :func:`make_md`: the Langevin / NVE / Berendsen / NPT MD that ``hetens md`` runs.
- :func:`run_relaxation`: BFGS/FIRE relaxation (optionally of the cell) with
  the same observers, what ``hetens relax`` runs.

The runs themselves are jobs (:mod:`hetens.jobs.md`, :mod:`hetens.jobs.relax`);
their names stay importable from here, imported on first use like every
name below (:func:`hetens._lazy.lazy_exports`). See ``docs/monitoring.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hetens._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

if TYPE_CHECKING:  # pragma: no cover  (the export table: see hetens._lazy.lazy_exports)
    from hetens.errors import UncertaintyHalt
    from hetens.monitor.csvlog import COLUMNS, read_log
    from hetens.monitor.dynamics import make_md
    from hetens.monitor.observation import Observation, ensemble_results
    from hetens.monitor.observers import (
        FlagWriter,
        HaltOnUncertainty,
        TrajectoryWriter,
        UncertaintyLogger,
        UncertaintyMonitor,
    )
    from hetens.monitor.plot import plot_log
    from hetens.jobs.relax import Relaxation, make_optimizer, run_relaxation
    from hetens.jobs.md import RunOutcome, StopOnInterrupt, run_monitored
