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

See ``docs/monitoring.md``.
"""

from __future__ import annotations

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
from hetens.monitor.relax import Relaxation, make_optimizer, run_relaxation
from hetens.monitor.run import RunOutcome, StopOnInterrupt, run_monitored

__all__ = [
    "COLUMNS",
    "FlagWriter",
    "HaltOnUncertainty",
    "Observation",
    "Relaxation",
    "RunOutcome",
    "StopOnInterrupt",
    "TrajectoryWriter",
    "UncertaintyHalt",
    "UncertaintyLogger",
    "UncertaintyMonitor",
    "ensemble_results",
    "make_md",
    "make_optimizer",
    "plot_log",
    "read_log",
    "run_monitored",
    "run_relaxation",
]
