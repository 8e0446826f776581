"""Structures annotated with the ensemble's results, ready to be written.

ASE's writers keep only the property names they know from ``calc.results``
(energy, forces, stress...) and drop the rest; ``SinglePointCalculator``
refuses unknown keys. So the ensemble's standard results go into a
``SinglePointCalculator`` and hetens' own quantities into ``atoms.info`` /
``atoms.arrays`` under the ``hetens_`` prefix, which no ASE name uses (the
keys are defined once, in :mod:`hetens.io.keys`):

=========================  ======  ===========================================
key                        where   meaning
=========================  ======  ===========================================
``hetens_U``               info    U, eV/Å
``hetens_max_u``           info    max per-atom uncertainty, eV/Å
``hetens_energy_std``      info    weighted member energy spread, eV/atom
``hetens_member_energies`` info    (M,) member energies, eV (NaN: dropped)
``hetens_most_deviating``  info    name of the member contributing most to U
``hetens_members``         info    member names joined by ``,``
``hetens_weights``         info    (M,) normalised U weights used (0: dropped)
``hetens_roles``           info    with witnesses only: member roles
                                   (``predictor``/``witness``) joined by ``,``
``hetens_predictor_weights`` info  with witnesses only: (M,) normalised
                                   predictor weights (0: witness or dropped)
``hetens_dropped``         info    members left out of this frame, joined by
                                   ``,`` (only when ``on_member_error="drop"``
                                   dropped some)
``hetens_version``         info    hetens version that wrote the frame
``hetens_u``               arrays  (N,) per-atom uncertainty, eV/Å
=========================  ======  ===========================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hetens.io import keys

__all__ = ["INFO_KEYS", "ARRAY_KEYS", "annotate"]

INFO_KEYS = (
    keys.U_KEY,
    keys.MAX_U_KEY,
    keys.ENERGY_STD_KEY,
    keys.MEMBER_ENERGIES_KEY,
    keys.MOST_DEVIATING_KEY,
    keys.MEMBERS_KEY,
    keys.WEIGHTS_KEY,
    keys.VERSION_KEY,
)
ARRAY_KEYS = (keys.ATOMIC_U_KEY,)
_STANDARD = ("energy", "free_energy", "forces", "stress")


def annotate(
    atoms,
    results: Mapping[str, Any] | None = None,
    member_names: Sequence[str] | None = None,
    weights=None,
    **extra_info: Any,
):
    """A copy of ``atoms`` carrying the ensemble's results, safe to write.

    ``ase.io.write`` keeps only the results ASE knows (energy, forces,
    stress) and silently drops U; write ``annotate(atoms)`` instead::

        atoms.calc = hetens.default_ensemble()
        atoms.get_potential_energy()
        ase.io.write("out.extxyz", hetens.annotate(atoms))  # U in info["hetens_U"]

    Args:
        atoms: the structure (not modified). With ``results`` omitted, its
            calculator must be the ensemble (:class:`hetens.HeterogeneousEnsembleCalculator`):
            its results for ``atoms``, member names and weights are used
            (computed first if it has none for this structure).
        results: an ensemble ``calc.results`` (see
            :func:`hetens.core.combine.combine_predictions`); give
            ``member_names`` and ``weights`` with it.
        member_names: (M,) member names, for ``hetens_members`` and
            ``hetens_most_deviating``.
        weights: (M,) normalised weights.
        **extra_info: more ``atoms.info`` entries (e.g. ``hetens_step=12``).

    Returns:
        A new ``Atoms`` with a ``SinglePointCalculator`` holding the weighted
        mean ``energy``/``free_energy``/``forces``/``stress`` and the
        ``hetens_*`` keys above. Existing ``hetens_*`` keys are replaced, so
        re-annotating an annotated frame never raises.
    """
    from ase.calculators.singlepoint import SinglePointCalculator

    from hetens._version import __version__

    if results is None:
        if member_names is not None or weights is not None:
            raise TypeError("annotate: give results with member_names and weights, or none of them "
                            "(then the ensemble attached as atoms.calc is read)")
        results, member_names, weights = _from_attached_ensemble(atoms)
    elif member_names is None or weights is None:
        raise TypeError("annotate: with results, give member_names and weights too "
                        "(or call annotate(atoms) to read the ensemble attached as atoms.calc)")
    frame = atoms.copy()
    for key in [k for k in frame.info if k.startswith(keys.PREFIX)]:
        del frame.info[key]
    for key in [k for k in frame.arrays if k.startswith(keys.PREFIX)]:
        del frame.arrays[key]
    atomic_u = np.asarray(results["atomic_uncertainty"], dtype=float)
    frame.info.update(
        {
            keys.U_KEY: float(results["uncertainty"]),
            keys.MAX_U_KEY: float(atomic_u.max()) if atomic_u.size else 0.0,
            keys.ENERGY_STD_KEY: float(results["energy_std"]),
            keys.MEMBER_ENERGIES_KEY: np.asarray(results["member_energies"], dtype=float),
            keys.MOST_DEVIATING_KEY: str(member_names[int(results["most_deviating_member"])]),
            keys.MEMBERS_KEY: ",".join(member_names),
            keys.WEIGHTS_KEY: np.asarray(results.get("member_weights", weights), dtype=float),
            keys.VERSION_KEY: __version__,
        },
        **extra_info,
    )
    if results.get("dropped_members"):
        frame.info[keys.DROPPED_KEY] = ",".join(results["dropped_members"])
    roles = list(results.get("member_roles") or ())
    if "witness" in roles:
        frame.info[keys.ROLES_KEY] = ",".join(roles)
        frame.info[keys.PREDICTOR_WEIGHTS_KEY] = np.asarray(results["predictor_weights"], dtype=float)
    frame.arrays[keys.ATOMIC_U_KEY] = atomic_u
    standard = {k: results[k] for k in _STANDARD if k in results}
    frame.calc = SinglePointCalculator(frame, **standard)
    return frame


def _from_attached_ensemble(atoms) -> tuple[Mapping[str, Any], list[str], Any]:
    """``(results, member_names, weights)`` of the ensemble attached to ``atoms``, for ``atoms``."""
    calc = atoms.calc
    if calc is None or not hasattr(calc, "member_names") or not hasattr(calc, "get_property"):
        what = "no calculator" if calc is None else f"a {type(calc).__name__}"
        raise ValueError(
            f"annotate(atoms) reads the hetens ensemble attached as atoms.calc, but atoms has {what}; "
            "attach a HeterogeneousEnsembleCalculator (atoms.calc = hetens.default_ensemble()), or "
            "pass results, member_names and weights"
        )
    calc.get_property("uncertainty", atoms)  # computes only when it has no results for these atoms
    return calc.results, list(calc.member_names), calc.weights
