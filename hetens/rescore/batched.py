"""Evaluate a member on many structures at once, where its family allows it.

:func:`evaluate_batch` is the one entry point: it uses the family adapter's
batched path when it has one (:class:`hetens.families.contract.BatchedEvaluation`:
SevenNet and CHGNet today) and otherwise loops over the frames with
:func:`hetens.core.evaluation.evaluate_member`. Either way it returns the same
thing, checked the same way: one ``(energy, forces, stress)`` per frame,
float64, in eV, eV/Å and Voigt eV/Å³.

This module is the family-independent driver: it groups frames by atom
count, calls the adapter and checks its outputs. What a package needs (its
graphs, keys, units, Voigt order) lives in the family's adapter, which
mirrors what the package's ASE calculator does for one structure (tests
check agreement to float32 precision). If a batched call fails, the frames
are re-run one by one so that the error names the structure that caused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hetens.core.evaluation import MemberOutput, checked_outputs, evaluate_member
from hetens.families import FAMILIES
from hetens.families.contract import BatchedEvaluation
from hetens.core.group_evaluation import evaluate_alone

if TYPE_CHECKING:
    from hetens.core.member import Member

__all__ = ["evaluate_batch", "has_batched_path", "MemberOutput", "CPU_BATCH_ATOMS"]


def _batched_adapter(member: Member) -> BatchedEvaluation | None:
    """The member's family adapter when it can run this member's calculator batched."""
    family = FAMILIES.get(member.family)
    if family is None or not family.installed:  # "ase": a wrapped calculator
        return None
    adapter = family.adapter()
    if isinstance(adapter, BatchedEvaluation) and adapter.batchable(member.calculator):
        return adapter
    return None


def has_batched_path(member: Member) -> bool:
    """Whether :func:`evaluate_batch` runs ``member`` on many frames in one model call."""
    return _batched_adapter(member) is not None


#: Most atoms per batched call on a CPU, unless the family adapter sets its own
#: ``CPU_BATCH_ATOMS`` (CHGNet does: its batches gain at every size). The gain
#: of batching on a CPU comes from small cells (per-call overhead, 30-50 ms per
#: call for SevenNet and CHGNet in benchmarks/bench_batched.py's fit); past a few
#: dozen atoms a CPU batch costs *more* per atom, once its edge tensors outgrow
#: the caches. 64 small W cells (2-16 atoms), frames/s
#: over the per-frame loop, 2 threads, by atoms per call (32, 64, 128, 256, 512):
#: 7net-0 1.55x, 1.64x, 1.55x, 1.41x, 1.05x; CHGNet 0.3.0 2.75x, 2.84x, 2.70x,
#: 2.58x, 2.43x. So on a CPU frames share a call up to this many atoms; on a
#: GPU batches are limited only by the caller (``max_batch_atoms``).
CPU_BATCH_ATOMS = 64


def _on_cpu(member: Member) -> bool:
    device = getattr(member.calculator, "device", None) or member.device or "cpu"
    return str(device).startswith("cpu")


def _groups(sizes: Sequence[int], max_atoms: int | None) -> list[list[int]]:
    """Consecutive frame indices, each group at most ``max_atoms`` atoms (a bigger frame alone)."""
    groups: list[list[int]] = []
    total = 0
    for index, size in enumerate(sizes):
        if groups and (max_atoms is None or total + size <= max_atoms):
            groups[-1].append(index)
            total += size
        else:
            groups.append([index])
            total = size
    return groups


def evaluate_batch(
    member: Member,
    frames: Sequence,
    with_stress: Sequence[bool] | bool = False,
    *,
    batched: bool = True,
    max_atoms: int | None = None,
) -> list[MemberOutput]:
    """Run ``member`` on every structure of ``frames``.

    Args:
        member: the ensemble member.
        frames: ASE ``Atoms`` objects (not modified).
        with_stress: one flag per frame (or one for all): return the stress
            for that frame; ``None`` is returned in its place otherwise.
        batched: use the family's batched path when it has one; ``False``
            forces the per-frame ASE loop (for benchmarks and checks).
        max_atoms: most atoms per model call; ``None`` means
            :data:`CPU_BATCH_ATOMS` (or the adapter's own) on a CPU and no
            limit on a GPU. A frame with more atoms runs on its own, through
            the family's group path for one member where it has one (CHGNet:
            its calculator to float32 rounding, faster), else its calculator.

    Returns:
        One ``(energy, forces, stress)`` per frame: energy in eV, forces
        (N, 3) eV/Å, stress (6,) Voigt eV/Å³ or ``None``; float64.

    Raises:
        MemberFailedError: the member failed or returned unusable output on
            a frame (the message names the member and the structure).
    """
    frames = list(frames)
    flags = [bool(with_stress)] * len(frames) if isinstance(with_stress, bool) else list(with_stress)
    if len(flags) != len(frames):
        raise ValueError(f"with_stress has {len(flags)} flags for {len(frames)} frames")
    adapter = _batched_adapter(member) if batched else None
    if adapter is None:
        return [evaluate_member(member, atoms, flag) for atoms, flag in zip(frames, flags)]
    if max_atoms is None and _on_cpu(member):
        max_atoms = getattr(adapter, "CPU_BATCH_ATOMS", CPU_BATCH_ATOMS)
    outputs: list[MemberOutput] = []
    for group in _groups([len(a) for a in frames], max_atoms):
        outputs += _run_group(member, adapter, [frames[i] for i in group], [flags[i] for i in group])
    return outputs


def _run_group(member: Member, adapter: BatchedEvaluation, frames: list, flags: list[bool]) -> list[MemberOutput]:
    if len(frames) == 1:
        return [evaluate_alone(member, frames[0], flags[0])]
    try:
        raw = adapter.evaluate_batch(member.calculator, frames)
    except Exception:
        # Re-run one by one: the failing frame then raises with its own message.
        return [evaluate_member(member, atoms, flag) for atoms, flag in zip(frames, flags)]
    return [
        checked_outputs(member.name, atoms, energy, forces, stress if flag else None)
        for atoms, flag, (energy, forces, stress) in zip(frames, flags, raw)
    ]
