"""A driver with periodic checks: one member (or the predictors' mean) drives, the ensemble checks every K steps.

DeePMD-kit's LAMMPS pair style (``pair_style deepmd m0.pb m1.pb ... out_freq 10``)
and DP-GEN's exploration (``trj_freq``) propagate with one model and evaluate
the model deviation only every few steps. :class:`CheckedDriverCalculator`
does the same with a :class:`~hetens.HeterogeneousEnsembleCalculator` that is
already loaded (its members are used as they are, never loaded again):

- every calculation returns the *driver's* energy, forces and stress, so the
  trajectory is continuous and, in NVE, conserves the driver's energy;
- every K-th calculation (the first one included: in ASE's MD and optimizers
  one calculation per step, so steps 0, K, 2K...) is a *check*: the whole
  ensemble is evaluated (:meth:`HeterogeneousEnsembleCalculator.calculate`,
  the same code, so U is the ensemble's U exactly) and ``results`` carries
  every ensemble key besides the driver's energy/forces/stress;
- ``results["uncertainty_fresh"]`` says which: ``True`` on a check, ``False``
  otherwise, when ``results`` holds no U at all (a stale U is never kept).

The driver is a predictor (a witness's energies are on another reference) or
``"predictors"``: the predictors' weighted mean, which leaves only the
witnesses out between checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from hetens.core.combine import ENSEMBLE_RESULT_KEYS, combine_predictions, stack_member_outputs

__all__ = ["CheckedDriverCalculator", "PREDICTORS", "DEFAULT_CHECK_EVERY", "check_driver_choice", "resolve_driver"]

#: The driver name meaning "the predictors' weighted mean".
PREDICTORS = "predictors"
#: The check interval ``hetens md --driver`` uses by default (docs/monitoring.md, the K study).
DEFAULT_CHECK_EVERY = 10

#: Keys on a check step holding the ensemble's own mean (the driver's replace energy/forces/stress).
ENSEMBLE_MEAN_KEYS = {"energy": "ensemble_energy", "forces": "ensemble_forces", "stress": "ensemble_stress"}


def check_driver_choice(driver: str, names: Sequence[str], roles: Sequence[str],
                        specs: Sequence[str | None] | None = None) -> int | None:
    """The index of the member ``driver`` names (``None`` for ``"predictors"``), checked.

    Args:
        driver: ``"predictors"``, a member name (``chgnet:0.3.0``) or its spec.
        names: (M,) member names; roles: (M,) ``"predictor"``/``"witness"``;
        specs: (M,) member specs, also accepted as names.

    Raises:
        ValueError: no member of that name (lists them), or a witness (its
            energies are on another reference, so it cannot drive).
    """
    if driver == PREDICTORS:
        return None
    specs = list(specs) if specs is not None else [None] * len(names)
    for i, (name, spec) in enumerate(zip(names, specs)):
        if driver in (name, spec):
            if roles[i] != "predictor":
                predictors = ", ".join(n for n, r in zip(names, roles) if r == "predictor")
                raise ValueError(
                    f"driver {driver} is a witness: its energies are on another reference, so it cannot drive "
                    f"the dynamics; choose a predictor ({predictors}) or '{PREDICTORS}'"
                )
            return i
    raise ValueError(
        f"unknown driver {driver!r}: not a member of the ensemble ({', '.join(names)}); give one of "
        f"them or '{PREDICTORS}' (the predictors' mean)"
    )


def resolve_driver(driver: str, ensemble) -> int | None:
    """:func:`check_driver_choice` against a built ensemble."""
    return check_driver_choice(driver, ensemble.member_names, ensemble.roles,
                               [m.spec for m in ensemble.members])


class CheckedDriverCalculator(Calculator):
    """The driver's energy/forces/stress every step; the ensemble's U every ``check_every`` steps.

    Args:
        ensemble: a :class:`~hetens.HeterogeneousEnsembleCalculator` (its
            loaded members are used; closing this calculator leaves it open).
        driver: a predictor's name or spec (``"chgnet:0.3.0"``), or
            ``"predictors"`` (the predictors' weighted mean; saves only the
            witnesses between checks, so the ensemble must have some).
        check_every: K >= 1; K = 1 evaluates the ensemble every step (the
            driver still propagates).

    ``results`` on every calculation: ``energy``/``free_energy`` (eV),
    ``forces`` (N, 3) eV/Å, ``stress`` (6,) eV/Å³ when the ensemble gives
    stress: the driver's; ``uncertainty_fresh`` (bool); ``check_index``
    (the calculation number of the last check). On a check also every key
    of :data:`~hetens.core.combine.ENSEMBLE_RESULT_KEYS` (U exactly as the
    ensemble computes it) and ``ensemble_energy``/``ensemble_forces``/
    ``ensemble_stress``, the ensemble's own mean.

    Attributes:
        calls: state-changing calculations so far (the step count in MD).
        checks: ensemble evaluations so far.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress", *ENSEMBLE_RESULT_KEYS)

    def __init__(self, ensemble, driver: str = PREDICTORS, check_every: int = DEFAULT_CHECK_EVERY, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(check_every, bool) or not isinstance(check_every, (int, np.integer)) or check_every < 1:
            raise ValueError(f"check_every must be a whole number of steps >= 1; got {check_every!r}")
        self.ensemble = ensemble
        self.driver = str(driver)
        self.driver_index = resolve_driver(self.driver, ensemble)
        if self.driver_index is None and not ensemble.has_witnesses and check_every > 1:
            raise ValueError(
                f"driver '{PREDICTORS}' is the ensemble's own mean and saves only the witnesses' cost between "
                f"checks; this ensemble has none ({', '.join(ensemble.member_names)}): drive with one member "
                "instead (e.g. the cheapest predictor)"
            )
        self.check_every = int(check_every)
        self.calls = 0
        self.checks = 0
        self.last_check: int | None = None
        self._check_next = False

    # -- what observers and writers read, as on the ensemble -----------------------------------
    @property
    def members(self):
        return self.ensemble.members

    @property
    def member_names(self) -> list[str]:
        return self.ensemble.member_names

    @property
    def weights(self) -> np.ndarray:
        return self.ensemble.weights

    @property
    def roles(self) -> list[str]:
        return self.ensemble.roles

    @property
    def driver_name(self) -> str:
        """The driving member's name, or ``"predictors"``."""
        return PREDICTORS if self.driver_index is None else self.ensemble.member_names[self.driver_index]

    def provenance(self) -> dict[str, Any]:
        return {**self.ensemble.provenance(), "driver": self.driver_name, "check_every": self.check_every}

    def check_next(self) -> None:
        """Make the next calculation a check, whatever the schedule."""
        self._check_next = True

    def close(self) -> None:
        """Nothing of its own to release; the ensemble is the caller's to close."""

    # -- the calculation -----------------------------------------------------------------------
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        stepped = bool(system_changes)
        wants_u = any(p in ENSEMBLE_RESULT_KEYS for p in properties)
        if stepped:
            index = self.calls
            self.calls += 1
        else:  # same structure, a property the last calculation lacked (U asked on an unchecked step)
            index = self.calls - 1
        check = self._check_next or wants_u or index % self.check_every == 0
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if check:
            self._check_next = False
            self.checks += 1
            self.results = self._checked(atoms, properties, index)
        else:
            self.results = self._driven(atoms, index)

    def _checked(self, atoms, properties, index: int) -> dict[str, Any]:
        ens = self.ensemble
        ens.calculate(atoms, properties, all_changes)  # the ensemble's own code: U exactly as it computes it
        full = ens.results
        results = dict(full)
        for key, mean_key in ENSEMBLE_MEAN_KEYS.items():
            if key in full:
                results[mean_key] = full[key]
        if self.driver_index is not None:
            i = self.driver_index
            results["energy"] = results["free_energy"] = float(full["member_energies"][i])
            results["forces"] = np.array(full["member_forces"][i], dtype=float)
            if "stress" in full and full.get("member_stresses") is not None:
                results["stress"] = np.array(full["member_stresses"][i], dtype=float)
        results["uncertainty_fresh"] = True
        results["check_index"] = self.last_check = index
        return results

    def _driven(self, atoms, index: int) -> dict[str, Any]:
        from hetens.core.validation import check_structure
        from hetens.core.pool import evaluate_members, start_workers

        ens = self.ensemble
        check_structure(atoms, min_distance=ens.min_distance or 0.0)
        atoms.set_constraint()  # members see the bare structure, as the ensemble's do
        with_stress = ens.provides_stress(atoms)
        if self.driver_index is None:
            chosen = [m for m in ens.members if m.role == "predictor"]
            weights = ens.predictor_weights[ens.predictor_mask]
        else:
            chosen = [ens.members[self.driver_index]]
            weights = np.ones(1)
        start_workers(chosen)
        outputs = evaluate_members(chosen, atoms, with_stress)
        energies, forces, stresses, _ = stack_member_outputs(outputs, len(atoms), with_stress)
        if len(chosen) == 1:
            energy, force, stress = energies[0], forces[0], (stresses[0] if with_stress else None)
        else:
            mean = combine_predictions(energies, forces, weights, stresses if with_stress else None)
            energy, force, stress = mean["energy"], mean["forces"], mean.get("stress")
        results: dict[str, Any] = {"energy": float(energy), "free_energy": float(energy),
                                   "forces": np.array(force, dtype=float)}
        if with_stress and stress is not None:
            results["stress"] = np.array(stress, dtype=float)
        results["uncertainty_fresh"] = False
        results["check_index"] = self.last_check
        return results

    def __repr__(self) -> str:
        return f"CheckedDriverCalculator(driver={self.driver_name}, check_every={self.check_every}, {self.ensemble!r})"
