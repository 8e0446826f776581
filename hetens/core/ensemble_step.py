"""The one evaluation step: an ensemble's members on one structure, with every check and policy.

Both the ASE calculator (:meth:`HeterogeneousEnsembleCalculator.calculate`,
MD and relaxations) and rescoring (:func:`hetens.rescore.predict.predict_frames`,
``hetens score``) evaluate members through :func:`evaluate_ensemble`, so a
structure gets the same checks, the same drop/raise policy, the same group
paths and the same errors whichever way it comes. The step, in order:

1. :func:`check_frame`: the structure checks (:func:`hetens.core.validation.check_structure`),
   worker start-up (workers report their members' elements), and the
   unsupported-element policy (an element no member knows raises; one a
   member lacks raises with ``on_member_error="raise"``, sits that member out
   with ``"drop"``);
2. the members, workers concurrently and in-process members through their
   family's group path (:func:`hetens.core.pool.evaluate_members`);
3. the member-error policy: raise the first failure, or report the drops
   (warn once per member; too few survivors raise);
4. the energy-reference check over the predictors
   (``calc.check_energy_reference``), the one place it is called.

The calculator combines the outputs into its results; rescoring stacks them
into arrays for many frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ase.calculators.calculator import PropertyNotImplementedError

from hetens.core.evaluation import MemberOutput
from hetens.core.pool import evaluate_members, start_workers
from hetens.core.validation import check_structure, element_symbols, unsupported_elements
from hetens.errors import InvalidStructureError, MemberFailedError, UnsupportedElementError

if TYPE_CHECKING:
    from hetens.core.calculator import HeterogeneousEnsembleCalculator

__all__ = ["EnsembleOutputs", "check_frame", "evaluate_ensemble"]


@dataclass
class EnsembleOutputs:
    """What the members gave on one structure.

    Attributes:
        outputs: member name -> ``(energy eV, forces (N, 3) eV/Å, stress (6,) eV/Å³ or None)``,
            for the members that gave results, in member order.
        failures: member name -> why it was left out (empty unless ``on_member_error="drop"``).
        with_stress: whether stress was computed.
    """

    outputs: dict[str, MemberOutput]
    failures: dict[str, Exception]
    with_stress: bool


def check_frame(
    calc: HeterogeneousEnsembleCalculator, atoms, label: str | None = None, *, require_stress: bool = False
) -> dict[str, Exception]:
    """The checks before any model runs; the members that sit this structure out.

    Raises :class:`~hetens.errors.InvalidStructureError` (see
    :func:`hetens.core.validation.check_structure`; also an element no member
    supports), ``PropertyNotImplementedError`` when ``require_stress`` and the
    ensemble cannot give stress here, and, with ``on_member_error="raise"``,
    the :class:`~hetens.errors.UnsupportedElementError` of a member lacking an
    element. With ``"drop"`` such members are returned, name -> error (empty
    when every member knows every element). ``label`` (``"traj.xyz frame 12"``)
    prefixes the messages. Workers are started here: they report their
    members' elements.
    """
    check_structure(atoms, min_distance=calc.min_distance or 0.0, label=label)
    start_workers(calc.members)
    if require_stress and not calc.provides_stress(atoms):
        raise PropertyNotImplementedError(calc.why_no_stress(atoms))
    failures = unsupported_element_failures(calc, atoms, label)
    if failures and calc.on_member_error != "drop":
        raise next(iter(failures.values()))
    return failures


def unsupported_element_failures(calc, atoms, label: str | None = None) -> dict[str, Exception]:
    """Members whose training set lacks an element of ``atoms``, with the error for each.

    Raises :class:`~hetens.errors.InvalidStructureError` when no member supports an element.
    """
    supported = {m.name: m.supported_elements() for m in calc.members}
    missing, nobody = unsupported_elements(atoms, supported)
    where = f"{label}: " if label else ""
    formula = atoms.get_chemical_formula()
    if nobody:
        raise InvalidStructureError(
            f"{where}{formula}: no member of the ensemble was trained on element(s) "
            f"{element_symbols(nobody)}; use members that were"
        )
    return {
        name: UnsupportedElementError(
            f"{where}member {name} was not trained on element(s) {element_symbols(lacking)} "
            f"(structure {formula}); leave it out, or pass on_member_error='drop' to use "
            "the other members for such structures"
        )
        for name, lacking in missing.items()
    }


def evaluate_ensemble(
    calc: HeterogeneousEnsembleCalculator,
    atoms,
    *,
    label: str | None = None,
    with_stress: bool | None = None,
    info_changed: bool = False,
    require_stress: bool = False,
    checked: dict[str, Exception] | None = None,
    done: dict[str, MemberOutput] | None = None,
) -> EnsembleOutputs:
    """Every member of ``calc`` on ``atoms``: checks, evaluation, member-error policy, energy reference.

    Args:
        calc: the ensemble (its members, ``on_member_error``, ``min_members``,
            ``min_distance``, ``allow_mixed_reference``).
        atoms: the structure (left unchanged; members see it without constraints).
        label: names the structure in every message (``"traj.xyz frame 12"``);
            ``None`` in MD, where the formula does.
        with_stress: compute stress (default: when the ensemble provides it here).
        info_changed: ``atoms.info`` changed since the last call: members
            recompute even when their cache looks valid.
        require_stress: stress was asked for; ``PropertyNotImplementedError``
            (after the structure checks) when it is not available.
        checked: the result of an earlier :func:`check_frame` of this structure
            (rescoring checks a whole batch before any model runs); the checks
            run here otherwise. Members that failed elsewhere on this
            structure (a batched path) may be added to it under ``"drop"``.
        done: member name -> output already computed for this structure (a
            batched path); those members are not evaluated again.

    Returns:
        :class:`EnsembleOutputs`.

    Raises:
        InvalidStructureError, UnsupportedElementError: see :func:`check_frame`.
        MemberFailedError: a member failed (``"raise"``), naming it and the
            structure; or too few members are left (``"drop"``).
        MixedReferenceError: predictor energies on different references.
    """
    failures = dict(check_frame(calc, atoms, label, require_stress=require_stress) if checked is None else checked)
    if with_stress is None:
        with_stress = bool(calc.provides_stress(atoms))
    if atoms.constraints:  # constraints act on the ensemble's forces through ASE; members see the bare structure
        atoms = atoms.copy()
        atoms.set_constraint()
    done = done or {}
    dropping = calc.on_member_error == "drop"
    todo = [m for m in calc.members if m.name not in failures and m.name not in done]
    caught: dict[str, Exception] = {}
    try:
        # Workers concurrently, in-process members meanwhile; members of one family
        # share one prepared input there (the adapters' evaluate_group paths).
        results = evaluate_members(todo, atoms, with_stress, info_changed, failures=caught) if todo else []
    except Exception as exc:  # not a member's failure: the pool's own
        if label is None:
            raise
        raise MemberFailedError(
            f"evaluating {label} ({atoms.get_chemical_formula()}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    if caught and not dropping:
        name, error = next((m.name, caught[m.name]) for m in todo if m.name in caught)
        if label is None:
            raise error
        raise MemberFailedError(
            f"member {name} failed on {label} ({atoms.get_chemical_formula()}): {type(error).__name__}: {error}"
        ) from error
    failures.update(caught)
    computed = {m.name: out for m, out in zip(todo, results) if out is not None}
    outputs = {m.name: done.get(m.name, computed.get(m.name)) for m in calc.members}
    outputs = {name: out for name, out in outputs.items() if out is not None}
    if failures:
        if label is not None:
            failures = {name: _naming(label, error) for name, error in failures.items()}
        calc.report_drops(atoms, failures, survivors=len(outputs), label=label)
    if not calc.allow_mixed_reference:
        calc.check_energy_reference(outputs, atoms, label=label)
    return EnsembleOutputs(outputs, failures, with_stress)


def _naming(label: str, error: Exception) -> Exception:
    """``error`` with ``label`` (file and frame) in front of its message, once."""
    if str(error).startswith(f"{label}:"):
        return error
    named = MemberFailedError(f"{label}: {error}")
    named.__cause__ = error
    return named
