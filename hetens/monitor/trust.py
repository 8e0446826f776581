"""DP-GEN's trust window: accurate below LO, candidate in (LO, HI], failed above HI.

DP-GEN sorts the frames of its exploration runs by the model deviation with
two trust levels (``model_devi_f_trust_lo``, ``model_devi_f_trust_hi``):
below the low one a frame is *accurate* (the models agree: nothing to learn),
between the two it is a *candidate* for DFT, above the high one it has
*failed* (an unphysical frame that DFT should not be spent on). hetens
applies the same window to U (eV/Å): ``hetens md --flag-between LO HI``.
``--flag-above LO`` is the window with no upper level (HI = infinity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TRUST_LEVELS", "TrustWindow"]

#: The three classes, in order of U.
TRUST_LEVELS = ("accurate", "candidate", "failed")


@dataclass(frozen=True)
class TrustWindow:
    """Trust levels ``lo < hi`` in eV/Å (``hi`` may be ``inf``).

    Raises:
        ValueError: ``lo`` not positive, or ``lo >= hi`` (names both values).
    """

    lo: float
    hi: float = math.inf

    def __post_init__(self) -> None:
        if not self.lo > 0:
            raise ValueError(f"the trust window's low level must be a positive U in eV/A; got {self.lo}")
        if not self.hi > self.lo:
            raise ValueError(
                f"the trust window needs LO < HI; got LO = {self.lo:g} and HI = {self.hi:g} eV/A "
                "(frames in (LO, HI] are candidates, above HI failed)"
            )

    def level(self, uncertainty: float) -> str:
        """``"accurate"`` (U <= lo), ``"candidate"`` (lo < U <= hi) or ``"failed"`` (U > hi);
        ``""`` for NaN (a step without a fresh U)."""
        if math.isnan(uncertainty):
            return ""
        if uncertainty <= self.lo:
            return "accurate"
        return "candidate" if uncertainty <= self.hi else "failed"
