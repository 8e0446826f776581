"""The heterogeneous-ensemble ASE calculator.

:class:`HeterogeneousEnsembleCalculator` only gathers member outputs; the
arithmetic is :func:`hetens.core.combine.combine_predictions` (pure numpy).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from hetens.core.combine import ENSEMBLE_RESULT_KEYS, combine_predictions, stack_member_outputs
from hetens.errors import MemberDroppedWarning, MemberFailedError, MixedReferenceError
from hetens.core.ensemble_step import evaluate_ensemble
from hetens.io import keys
from hetens.core.member import Member, as_member, check_role
from hetens.catalogue.spec import MemberSpec, as_spec, as_worker_spec
from hetens.core.policy import DEFAULT_MAX_ENERGY_DEVIATION, check_member_counts, check_policy
from hetens.core.validation import DEFAULT_MIN_DISTANCE
from hetens.core.weights import raw_weights, resolve_weights
from hetens.core.pool import assign_threads, close_workers, start_workers

__all__ = [
    "HeterogeneousEnsembleCalculator",
    "check_levels_of_theory",
    "check_energy_reference",
]

#: ``atoms.info`` keys with this prefix are hetens' own annotations; they never
#: invalidate results (members do not read them).
INFO_PREFIX = keys.PREFIX


def check_levels_of_theory(members: Sequence[Member], allow_mixed_reference: bool = False) -> None:
    """Refuse to average energies from different levels of theory.

    Only predictors are compared (a witness's energy is never averaged, so it
    may have any level); members with level ``"unknown"`` are not compared.
    Raises :class:`MixedReferenceError` listing which member has which level.
    """
    known = {
        m.name: m.level_of_theory
        for m in members
        if m.level_of_theory != "unknown" and m.role == "predictor"
    }
    if len(set(known.values())) > 1 and not allow_mixed_reference:
        listing = ", ".join(f"{name} ({level})" for name, level in known.items())
        raise MixedReferenceError(
            f"the members were trained on different levels of theory: {listing}. Their energies "
            "are on different scales and must not be averaged. Use members of one level, or pass "
            "allow_mixed_reference=True if you really mean to mix them."
        )


def check_energy_reference(
    names: Sequence[str],
    energies,
    n_atoms: int,
    max_deviation: float = DEFAULT_MAX_ENERGY_DEVIATION,
    label: str | None = None,
) -> None:
    """Refuse predictor energies that cannot share one energy reference.

    Needs no level of theory: a member whose energy per atom is more than
    ``max_deviation`` from the median of the members given is on another
    energy scale (EMT next to a uMLIP, say), and averaging it is meaningless.

    Args:
        names: (P,) names of the members compared (the predictors).
        energies: (P,) their energies of one structure, eV.
        n_atoms: the structure's atom count.
        max_deviation: threshold, eV/atom.
        label: names the structure in the message (``"Cu32"``).

    Raises:
        MixedReferenceError: naming every member with its energy per atom.
    """
    per_atom = np.asarray(energies, dtype=float) / max(int(n_atoms), 1)
    if per_atom.size < 2:
        return
    median = float(np.median(per_atom))
    if np.max(np.abs(per_atom - median)) <= max_deviation:
        return
    listing = ", ".join(f"{name} {e:.3f}" for name, e in zip(names, per_atom))
    where = f" on {label}" if label else ""
    raise MixedReferenceError(
        f"member energies{where} are more than {max_deviation:g} eV/atom from their median "
        f"{median:.3f} eV/atom, so they are on different energy references: {listing} (eV/atom). "
        "Use members of one reference, pass max_energy_deviation (--max-energy-deviation) if "
        "this spread is real, or allow_mixed_reference=True (--allow-mixed-reference) to average anyway"
    )


def declared_role(item: Any) -> str:
    """The role an item of ``members`` has before it is loaded (a parsed spec's ``@role=``)."""
    if isinstance(item, Member):
        return item.role
    if isinstance(item, MemberSpec):
        return check_role(item.options.get("role", "predictor"), str(item))
    return "predictor"


def _info_snapshot(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in info.items() if not str(k).startswith(INFO_PREFIX)}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except Exception:
        return a is b


class HeterogeneousEnsembleCalculator(Calculator):
    """Weighted mean of several pretrained uMLIPs, plus the universal uncertainty U.

    A drop-in for ``atoms.calc`` in MD and relaxations. After a calculation
    ``results`` holds:

    - ``energy``, ``free_energy``: weighted mean predictor energy, eV;
    - ``forces``: weighted mean predictor forces, (N, 3) eV/Å (the exact
      negative gradient of ``energy``, so MD stays conservative);
    - ``stress``: weighted mean predictor stress, (6,) Voigt eV/Å³, when
      every member provides stress and the cell is 3D periodic;
    - ``uncertainty``: U (eV/Å, float), exactly as in Liu et al. (2026), over
      every member (predictors and witnesses);
    - ``atomic_uncertainty`` (N,) eV/Å; ``energy_std`` eV/atom;
      ``member_energies`` (M,) eV; ``member_forces`` (M, N, 3) eV/Å;
      ``member_stresses`` (M, 6); ``member_max_deviation`` (M,) eV/Å;
      ``most_deviating_member`` (index into ``member_names``);
      ``member_weights`` (M,) the normalised U weights used (0 for a dropped
      member); ``predictor_weights`` (M,) the normalised predictor weights
      (0 for witnesses and dropped members); ``member_roles`` the role of
      each member; ``dropped_members`` dict name -> why (empty unless
      ``on_member_error="drop"`` left someone out).

    Predictors and witnesses: every member is a predictor unless it is given
    in ``witnesses`` (or as a spec with ``@role=witness``). A witness's forces
    enter U, per-atom u, ``member_max_deviation`` and
    ``most_deviating_member``; nothing else (see docs/witnesses.md). Raw
    weights (one per member) are normalised over every member for U and over
    the predictors for the returned energy, forces, stress and energy_std.

    Args:
        members: ASE calculators, :class:`hetens.Member` objects or member
            specs (``"sevenn:7net-0"``), in any mix.
        weights: (M,) weights, one per member in :attr:`member_names` order
            (witnesses included), or a mapping member name -> weight (e.g.
            from :func:`hetens.read_weights_file`); uniform when omitted.
        witnesses: members whose forces enter U only (the same kinds of
            items as ``members``), added after ``members`` with role
            ``"witness"``. Their level of theory may differ from the
            predictors'. U needs two members at least, and one predictor.
        force_rmse: (M,) member force RMSEs in eV/Å, giving the paper's
            inverse-RMSE weights instead of ``weights``.
        allow_mixed_reference: allow predictors of different levels of theory
            (PBE+U and r2SCAN, say) or of different energy references to be
            averaged. Off by default.
        max_energy_deviation: eV/atom. A predictor whose energy per atom is
            further than this from the predictors' median on a structure is
            a :class:`~hetens.errors.MixedReferenceError` naming every
            predictor's energy per atom (default 1 eV/atom), unless
            ``allow_mixed_reference``. Witnesses are exempt.
        device: device for members given as specs (``"auto"``: CUDA if present).
        parallel: evaluate members concurrently: members given as specs run in
            worker processes under this interpreter (members given as objects
            stay in this process and run while the workers compute). Members
            with their own interpreter (``@python=``) are workers anyway.
        lazy: start worker processes at the first calculation (default) rather
            than now. Either way they start together and stop on :meth:`close`,
            ``with`` exit, garbage collection or interpreter exit. See
            :mod:`hetens.workers`.
        min_distance: atoms closer than this (Å) make the structure invalid:
            :class:`~hetens.errors.InvalidStructureError` before any model
            runs (as do an empty structure, non-finite positions and a
            periodic direction without a cell vector). ``None`` skips the
            distance check.
        on_member_error: what a member failure does (an exception in the
            model, NaN/infinite or mis-shaped output, a dead or hung worker,
            an element outside its training set). ``"raise"`` (default):
            :class:`~hetens.errors.MemberFailedError` naming the member, the
            property or element and the formula. ``"drop"``: the other members
            carry on with their weights renormalised, for this structure only
            (the member is tried again on the next); ``results["dropped_members"]``
            maps each left-out member to why, its rows of the ``member_*``
            arrays are NaN, ``results["member_weights"]`` holds the weights
            used, and a :class:`~hetens.errors.MemberDroppedWarning` is issued
            once per member. Never a silent fallback.
        min_members: with ``"drop"``, fewer surviving members (predictors and
            witnesses) than this raise :class:`~hetens.errors.MemberFailedError`
            listing every failure; so does losing every predictor. Default
            and minimum 2 (U needs two members to mean anything).

    An element that no member was trained on is an
    :class:`~hetens.errors.InvalidStructureError` before any model runs,
    whatever the policy.
    """

    implemented_properties = (
        "energy",
        "free_energy",
        "forces",
        "stress",
        *ENSEMBLE_RESULT_KEYS,
    )

    def __init__(
        self,
        members: Iterable[Any],
        weights: Sequence[float] | Mapping[str, float] | None = None,
        *,
        witnesses: Iterable[Any] | None = None,
        force_rmse: Sequence[float] | None = None,
        allow_mixed_reference: bool = False,
        max_energy_deviation: float = DEFAULT_MAX_ENERGY_DEVIATION,
        device: str = "auto",
        parallel: bool = False,
        lazy: bool = True,
        min_distance: float | None = DEFAULT_MIN_DISTANCE,
        on_member_error: str = "raise",
        min_members: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Each spec is parsed once, here (or already by plan_ensemble); the parsed
        # value goes on to the role count, the worker spec and load_member.
        members = [as_spec(item) for item in members]
        witnesses = [as_spec(item) for item in witnesses or ()]
        if not members:
            raise ValueError("an ensemble needs at least one member; got an empty list")
        # Counted and checked before any model loads.
        check_member_counts([declared_role(item) for item in members] + ["witness"] * len(witnesses))
        check_policy(on_member_error, min_members, max_energy_deviation)
        self.max_energy_deviation = float(max_energy_deviation)
        if parallel:
            members = [as_worker_spec(item) for item in members]
            witnesses = [as_worker_spec(item) for item in witnesses]
        loaded = [as_member(item, device=device) for item in members]
        loaded += [_as_witness(item, device) for item in witnesses]
        self.members: list[Member] = _with_unique_names(loaded)
        check_member_counts(self.roles)
        if isinstance(weights, Mapping):
            weights = _weights_by_name(weights, self.member_names)
        #: (M,) U weights: the raw weights normalised over every member.
        self.weights: np.ndarray = resolve_weights(len(self.members), weights, force_rmse)
        mask = self.predictor_mask
        self._witness_weights: np.ndarray | None = None
        if not mask.all():
            raw = raw_weights(len(self.members), weights, force_rmse)
            if raw[mask].sum() <= 0:
                raise ValueError("the predictors' weights are all zero; at least one predictor needs a positive weight")
            # Scaled so that its predictor entries are exactly the predictors' own
            # normalised weights: predictions equal a predictors-only ensemble's bit for bit.
            self._witness_weights = raw / raw[mask].sum()
        check_levels_of_theory(self.members, allow_mixed_reference)
        self.allow_mixed_reference = allow_mixed_reference
        self._info: dict[str, Any] | None = None
        self.min_distance = min_distance
        policy = check_policy(on_member_error, min_members, max_energy_deviation, n_members=len(self.members))
        self.on_member_error, self.min_members = policy.on_member_error, policy.min_members
        self._warned: set[str] = set()
        assign_threads(self.members)
        if not lazy:
            start_workers(self.members)

    @property
    def member_names(self) -> list[str]:
        """Names of the members (predictors and witnesses, in the order given); unique."""
        return [m.name for m in self.members]

    @property
    def roles(self) -> list[str]:
        """Role of each member (``"predictor"`` or ``"witness"``), in :attr:`member_names` order."""
        return [m.role for m in self.members]

    @property
    def predictor_mask(self) -> np.ndarray:
        """(M,) bool, True for predictors."""
        return np.array([r == "predictor" for r in self.roles], dtype=bool)

    @property
    def has_witnesses(self) -> bool:
        """Whether any member is a witness."""
        return any(r == "witness" for r in self.roles)

    @property
    def combine_weights(self) -> np.ndarray:
        """(M,) the weights given to :func:`combine_predictions`: :attr:`weights` without
        witnesses; with them, the raw weights over the predictors' sum (so the
        predictor entries are the predictors' normalised weights exactly)."""
        return self.weights if self._witness_weights is None else self._witness_weights

    @combine_weights.setter
    def combine_weights(self, value) -> None:
        if self._witness_weights is None:
            self.weights = np.asarray(value, dtype=float)
        else:
            self._witness_weights = np.asarray(value, dtype=float)

    @property
    def predictor_weights(self) -> np.ndarray:
        """(M,) normalised predictor weights (0 for witnesses); :attr:`weights` without witnesses."""
        if self._witness_weights is None:
            return self.weights.copy()
        return np.where(self.predictor_mask, self._witness_weights, 0.0)

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """ASE's checks plus ``atoms.info`` (members such as UMA read charge/spin there)."""
        changes = super().check_state(atoms, tol=tol)
        if not changes and self._info is not None and not _same(self._info, _info_snapshot(atoms.info)):
            changes = [*changes, "info"]
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        # The one evaluation step rescoring also takes: checks, members, policy, energy reference.
        step = evaluate_ensemble(
            self, self.atoms, info_changed="info" in system_changes, require_stress="stress" in properties
        )
        self.results = self._combine(step.outputs, step.failures, step.with_stress)
        self._info = _info_snapshot(self.atoms.info)

    def check_energy_reference(self, by_name: Mapping[str, Any], atoms, label: str | None = None) -> None:
        """:func:`check_energy_reference` over the predictors in ``by_name`` (name -> (energy, ...))."""
        names = [m.name for m in self.members if m.role == "predictor" and m.name in by_name]
        where = f"{label} ({atoms.get_chemical_formula()})" if label else atoms.get_chemical_formula()
        check_energy_reference(
            names, [by_name[n][0] for n in names], len(atoms), self.max_energy_deviation, where
        )

    def report_drops(
        self, atoms, failures: Mapping[str, Exception], survivors: int, label: str | None = None
    ) -> None:
        """Warn once per dropped member; raise when fewer than ``min_members`` survive.

        ``label`` (``"traj.xyz frame 12"``) names the structure in the error.
        """
        predictors_left = [m.name for m in self.members if m.role == "predictor" and m.name not in failures]
        if survivors < self.min_members or not predictors_left:
            listing = "; ".join(f"{name}: {error}" for name, error in failures.items())
            where = f"{label} ({atoms.get_chemical_formula()})" if label else atoms.get_chemical_formula()
            what = (f"only {survivors} of {len(self.members)} members gave results for "
                    f"{where} (min_members={self.min_members})")
            if not predictors_left:
                what = f"no predictor gave results for {where} (witnesses alone make no prediction)"
            raise MemberFailedError(f"{what}: {listing}")
        for name, error in failures.items():
            if name not in self._warned:
                self._warned.add(name)
                # The error's own advice ("pass on_member_error='drop'") is already followed here.
                reason = str(error).split("; leave it out, or pass on_member_error='drop'")[0]
                warnings.warn(
                    f"hetens: member {name} dropped: {reason}. The other {survivors} members carry "
                    "on with their weights renormalised (warned once per member; "
                    "results['dropped_members'] lists each structure's drops)",
                    MemberDroppedWarning,
                    stacklevel=2,
                )

    def _combine(self, by_name, failures, with_stress: bool) -> dict[str, Any]:
        """:func:`combine_predictions` over the surviving members, member arrays in full (M, ...) order."""
        outputs = [by_name.get(name) for name in self.member_names]
        energies, forces, stresses, present = stack_member_outputs(outputs, len(self.atoms), with_stress)
        results = combine_predictions(
            energies,
            forces,
            self.combine_weights,
            stresses,
            predictors=self.predictor_mask if self.has_witnesses else None,
            present=present,
        )
        results["member_roles"] = self.roles
        results["dropped_members"] = {name: str(error) for name, error in failures.items()}
        return results

    def provides_stress(self, atoms) -> bool:
        """Whether stress is available: every member implements it and the cell is 3D periodic."""
        return atoms.pbc.all() and atoms.cell.rank == 3 and all(
            "stress" in getattr(m.calculator, "implemented_properties", ()) for m in self.members
        )

    def why_no_stress(self, atoms) -> str:
        """Why :meth:`provides_stress` is False for ``atoms``, as one sentence."""
        if not (atoms.pbc.all() and atoms.cell.rank == 3):
            return "stress needs a 3D periodic cell; this structure is not periodic in all directions"
        missing = [
            m.name for m in self.members
            if "stress" not in getattr(m.calculator, "implemented_properties", ())
        ]
        return f"stress is not available: member(s) {', '.join(missing)} do not provide it"

    def close(self) -> None:
        """Stop the worker processes of isolated members; in-process members are left alone."""
        close_workers(self.members)

    def __enter__(self) -> HeterogeneousEnsembleCalculator:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def get_uncertainty(self, atoms=None) -> float:
        """U in eV/Å for ``atoms`` (computing if needed)."""
        return self.get_property("uncertainty", atoms)

    def get_atomic_uncertainty(self, atoms=None) -> np.ndarray:
        """Per-atom uncertainty, (N,) eV/Å."""
        return self.get_property("atomic_uncertainty", atoms)

    def provenance(self) -> dict[str, Any]:
        """JSON-serialisable description of the ensemble, for output files."""
        from hetens._version import __version__

        return {
            keys.VERSION_KEY: __version__,
            "members": [m.provenance() for m in self.members],
            "weights": [float(w) for w in self.weights],
            "roles": self.roles,
            "predictor_weights": [float(w) for w in self.predictor_weights],
            "allow_mixed_reference": self.allow_mixed_reference,
            "max_energy_deviation": self.max_energy_deviation,
        }

    def todict(self) -> dict[str, Any]:
        return {"members": self.member_names, "weights": [float(w) for w in self.weights]}

    def __repr__(self) -> str:
        parts = ", ".join(f"{n} ({w:.3f})" for n, w in zip(self.member_names, self.weights))
        return f"HeterogeneousEnsembleCalculator([{parts}])"


def _as_witness(item: Any, device: str) -> Member:
    """A :class:`Member` with role ``"witness"`` (a copy when a Member is given)."""
    member = as_member(item, device=device)
    return member if member.role == "witness" else dataclasses.replace(member, role="witness")


def _with_unique_names(members: list[Member]) -> list[Member]:
    """Suffix repeated names with ``#2``, ``#3``... (on copies: callers' Members are untouched)."""
    seen: dict[str, int] = {}
    unique = []
    for member in members:
        count = seen.get(member.name, 0)
        seen[member.name] = count + 1
        unique.append(dataclasses.replace(member, name=f"{member.name}#{count + 1}") if count else member)
    return unique


def _weights_by_name(table: Mapping[str, float], names: Sequence[str]) -> list[float]:
    missing = [n for n in names if n not in table]
    extra = [n for n in table if n not in names]
    if missing or extra:
        raise ValueError(
            f"weights by name must cover exactly the members {list(names)}; "
            f"missing {missing}, unknown {extra}"
        )
    return [table[n] for n in names]
