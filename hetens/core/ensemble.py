"""Ready-made ensembles."""

from __future__ import annotations

from typing import Any

from hetens.core.calculator import HeterogeneousEnsembleCalculator

__all__ = ["DEFAULT_MEMBERS", "DEFAULT_WITNESSES", "default_ensemble"]

#: The default predictors: two PBE+U models whose weights ship in the sevenn
#: and chgnet wheels (no download, works on a fresh machine), one per
#: architecture. Energy, forces and stress are their mean. Chosen with
#: benchmarks/bench_quality.py; see docs/default-ensemble.md.
DEFAULT_MEMBERS: tuple[str, ...] = (
    "sevenn:7net-mf-0@PBE",
    "chgnet:0.3.0",
)

#: The default witness: DIEP trained on MatPES r2SCAN (shipped in the diep
#: wheel). It enters U (and U's reference force) but never the returned
#: energy, forces or stress, so its level of theory is never averaged with
#: the predictors'.
DEFAULT_WITNESSES: tuple[str, ...] = (
    "diep:diep_fold1",
)

#: The default before witnesses existed: the five PBE+U models shipped in the
#: sevenn and chgnet wheels, all predictors (benchmarks compare against it).
PREVIOUS_DEFAULT_MEMBERS: tuple[str, ...] = (
    "sevenn:7net-0",
    "sevenn:7net-l3i5",
    "sevenn:7net-mf-0@PBE",
    "chgnet:0.3.0",
    "chgnet:0.2.0",
)


def default_ensemble(device: str = "auto", **kwargs: Any) -> HeterogeneousEnsembleCalculator:
    """The default offline ensemble: :data:`DEFAULT_MEMBERS` as predictors and
    :data:`DEFAULT_WITNESSES` as witnesses, uniform weights.

    Args:
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:N]"``.
        **kwargs: passed to :class:`HeterogeneousEnsembleCalculator`
            (``weights``, ``force_rmse``...).
    """
    return HeterogeneousEnsembleCalculator(
        list(DEFAULT_MEMBERS), witnesses=list(DEFAULT_WITNESSES), device=device, **kwargs
    )
