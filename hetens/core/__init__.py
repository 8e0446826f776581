"""The heart of hetens: an ensemble of members evaluated on structures and combined, with U.

- :mod:`~hetens.core.calculator`: :class:`HeterogeneousEnsembleCalculator`, the ASE calculator.
- :mod:`~hetens.core.ensemble_step`: the one evaluation step (structure checks,
  unsupported elements, workers, group paths, drops, energy reference) shared
  by the calculator and rescoring.
- :mod:`~hetens.core.member`: a member (calculator, name, role) and :func:`load_member`.
- :mod:`~hetens.core.evaluation`, :mod:`~hetens.core.group_evaluation`: one
  member, or a family's members together, on one structure.
- :mod:`~hetens.core.pool`: isolated members evaluated concurrently (threads, start-up).
- :mod:`~hetens.core.validation`: structure checks before any member runs.
- :mod:`~hetens.core.uncertainty`, :mod:`~hetens.core.combine`,
  :mod:`~hetens.core.weights`: U, the weighted means and the weights (pure numpy).
- :mod:`~hetens.core.frames`: the ensemble's results written into a frame.
- :mod:`~hetens.core.device`: the torch device a member runs on.
- :mod:`~hetens.core.factory`, :mod:`~hetens.core.ensemble`,
  :mod:`~hetens.core.ensemble_file`: building an ensemble (specs, the default
  ensemble, ensemble files and presets).

This package imports nothing at import time; see docs/architecture.md for
what may import what.
"""
