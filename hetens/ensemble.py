"""Ready-made ensembles."""

from __future__ import annotations

from typing import Any

from hetens.calculator import HeterogeneousEnsembleCalculator

__all__ = ["DEFAULT_MEMBERS", "DEFAULT_WITNESSES", "default_ensemble"]

#: The default offline ensemble: every PBE+U model whose weights ship inside
#: the sevenn and chgnet wheels (no download, works on a fresh machine).
DEFAULT_MEMBERS: tuple[str, ...] = (
    "sevenn:7net-0",
    "sevenn:7net-l3i5",
    "sevenn:7net-mf-0@PBE",
    "chgnet:0.3.0",
    "chgnet:0.2.0",
)

#: The default witnesses (specs): members whose forces enter U only (see
#: docs/witnesses.md). The CLI default (no ``--models``) uses these too.
DEFAULT_WITNESSES: tuple[str, ...] = ()


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
