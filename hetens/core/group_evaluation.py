"""Several members of one family evaluated on one structure from one prepared input.

The ensemble calculator (through :func:`hetens.core.pool.evaluate_members`)
and the worker program both call :func:`evaluate_groups`; what the members
share is each family adapter's business
(:class:`hetens.families.contract.GroupEvaluation`). Like
:mod:`hetens.core.evaluation`, this depends only on members, families and
errors: a member environment imports nothing of the parent side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hetens.core.evaluation import MemberOutput, checked_outputs, evaluate_member, on_cpu
from hetens.core.memory_guard import cpu_memory_returned
from hetens.families import FAMILIES
from hetens.families.contract import GroupEvaluation

if TYPE_CHECKING:
    from hetens.core.member import Member

__all__ = ["evaluate_groups", "evaluate_alone"]


def evaluate_groups(members: Sequence[Member], atoms, with_stress: bool, force: bool = False
                    ) -> dict[int, MemberOutput]:
    """The in-process ``members`` of each family whose adapter has a group path
    (:class:`hetens.families.contract.GroupEvaluation`), evaluated together on ``atoms``.

    Members whose cached results are still valid (and not ``force``) are left
    out; a worker's calculator is not the adapter's own, so the adapter
    leaves it to be evaluated one by one. The adapter decides what its members share (a
    neighbour list, a crystal graph, one pass for several heads) and returns
    ``None`` when nothing is; any exception from it also leaves the group to
    be evaluated one by one, so that a failure is reported by the member that
    failed. Each member's outputs are checked like a single evaluation and
    stored in its calculator's cache, as its own ``calculate`` would.

    Returns:
        ``id(member)`` -> its :data:`~hetens.core.evaluation.MemberOutput`, for the members done here.
    """
    properties = ["energy", "forces"] + (["stress"] if with_stress else [])
    families: dict[str, list[Member]] = {}
    for member in members:
        calc = member.calculator
        if not hasattr(calc, "calculation_required"):
            continue
        if force or calc.calculation_required(atoms, properties):
            families.setdefault(member.family, []).append(member)
    done: dict[int, MemberOutput] = {}
    for family_name, group in families.items():
        family = FAMILIES.get(family_name)
        if family is None or not family.installed:
            continue
        adapter = family.adapter()
        if not isinstance(adapter, GroupEvaluation):
            continue
        try:
            with cpu_memory_returned(len(atoms), all(on_cpu(m) for m in group)):
                raw = adapter.evaluate_group([m.calculator for m in group], atoms, with_stress)
            if raw is None:
                continue
            checked = [checked_outputs(m.name, atoms, *out) for m, out in zip(group, raw, strict=True)]
        except Exception:
            continue  # one by one: the failing member raises with its own message
        for member, output in zip(group, checked):
            _store(member.calculator, atoms, output)
            done[id(member)] = output
    return done


def evaluate_alone(member: Member, atoms, with_stress: bool, force: bool = False) -> MemberOutput:
    """One member on ``atoms`` as the ensemble evaluates it: through its family's group
    path for a lone member where there is one (CHGNet's: its calculator to float32
    rounding, energy bit for bit, and faster), else :func:`hetens.core.evaluation.evaluate_member`
    (which also reports a failure with the member's own message)."""
    done = evaluate_groups([member], atoms, with_stress, force)
    return done.get(id(member)) or evaluate_member(member, atoms, with_stress, force)


def _store(calc, atoms, output: MemberOutput) -> None:
    """Put a group evaluation's result in the member calculator's cache, as ``calculate`` would."""
    energy, forces, stress = output
    calc.atoms = atoms.copy()
    calc.results = {"energy": energy, "free_energy": energy, "forces": forces.copy()}
    if stress is not None:
        calc.results["stress"] = stress.copy()
