"""Every member's predictions on a batch of frames, as arrays: the model calls of scoring.

:func:`predict_frames` evaluates the members of an ensemble on one batch of
``(source, atoms)`` (batched where the family allows, see
:mod:`hetens.rescore.batched`; frame by frame otherwise), applies the
ensemble's member-error policy, and returns a
:class:`~hetens.rescore.arrays.PredictionSet`. :func:`predict_file` does it
for whole files in memory (calibration with live members).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from hetens.errors import FrameReadError, MemberFailedError
from hetens.io.progress import Progress
from hetens.io.reading import FrameSource, count_frames, iter_frames
from hetens.rescore.arrays import FrameArrays, PredictionSet, frame_arrays_from_atoms
from hetens.rescore.batches import DEFAULT_BATCH_SIZE, batches

__all__ = ["predict_frames", "predict_file", "dropped_counts"]


def _geometry(chunk: list[tuple[FrameSource, Any]]) -> FrameArrays:
    sources = [s for s, _ in chunk]
    return frame_arrays_from_atoms(
        [a for _, a in chunk],
        path=sources[0].path,
        indices=[s.index if s.index is not None else s.position for s in sources],
    )


def predict_frames(calc, chunk: list[tuple[FrameSource, Any]], *, batched: bool = True) -> PredictionSet:
    """Evaluate every member of ``calc`` on a list of ``(source, atoms)``; member arrays out.

    Members with a batched path (:mod:`hetens.rescore.batched`) take the
    whole chunk in one call; the others run frame by frame through the
    ensemble's one evaluation step (:func:`hetens.core.ensemble_step.evaluate_ensemble`,
    the step the calculator takes in MD: isolated members in their worker
    processes, concurrently), which also applies the member-error policy and
    the energy-reference check to every frame.

    Member failures follow ``calc.on_member_error``. ``"raise"``: the first
    one raises. ``"drop"``: the member is left out of the frames it failed
    on (a batch that fails is re-run frame by frame to find them), its
    entries there are NaN, ``dropped`` records why, and ``calc.min_members``
    is enforced per frame, as in MD.

    Raises:
        MemberFailedError: naming the member and the file and frame it failed on.
    """
    from hetens.core.ensemble_step import check_frame, evaluate_ensemble
    from hetens.rescore.batched import evaluate_batch, has_batched_path

    frames = [atoms for _, atoms in chunk]
    members = calc.members
    dropping = calc.on_member_error == "drop"
    with_stress = [bool(calc.provides_stress(atoms)) for atoms in frames]
    in_batches = [member for member in members if batched and has_batched_path(member)]
    # Before any model runs: structure problems always raise, naming the frame;
    # a member lacking an element raises, or (drop) sits those frames out.
    failures = [check_frame(calc, atoms, label=str(source)) for source, atoms in chunk]
    done: list[dict] = [{} for _ in frames]
    for member in in_batches:
        todo = [f for f in range(len(frames)) if member.name not in failures[f]]
        try:
            results = evaluate_batch(member, [frames[f] for f in todo], [with_stress[f] for f in todo])
        except Exception as exc:
            if not dropping:
                _name_failing_frame(member, [chunk[f] for f in todo], [with_stress[f] for f in todo], exc)
            results = _one_by_one(member, chunk, with_stress, todo, failures)
        for f, result in zip(todo, results):
            if result is not None:
                done[f][member.name] = result
    steps = [
        evaluate_ensemble(calc, atoms, label=str(source), with_stress=flag, checked=failures[f], done=done[f])
        for f, ((source, atoms), flag) in enumerate(zip(chunk, with_stress))
    ]
    outputs = [[step.outputs.get(member.name) for step in steps] for member in members]
    return _prediction_set(calc, chunk, outputs, any(with_stress), [step.failures for step in steps])


def _one_by_one(member, chunk, with_stress, todo: list[int], failures: list[dict]) -> list:
    """``member`` on frames ``todo`` one at a time; a frame it fails on gets ``None`` and a failure."""
    from hetens.core.evaluation import evaluate_member

    results = []
    for f in todo:
        atoms = chunk[f][1]
        try:
            results.append(evaluate_member(member, atoms, with_stress[f]))
        except Exception as exc:
            if not isinstance(exc, MemberFailedError):  # evaluate_member wraps all but hetens' own errors
                failure = MemberFailedError(
                    f"member {member.name} failed on {atoms.get_chemical_formula()}: {type(exc).__name__}: {exc}"
                )
                failure.__cause__, exc = exc, failure
            failures[f][member.name] = exc
            results.append(None)
    return results


def _prediction_set(calc, chunk, outputs: list[list], with_stress: bool, failures: list[dict]) -> PredictionSet:
    """Member outputs (M lists of F ``(energy, forces, stress)`` or ``None``) as arrays; NaN where dropped."""
    from hetens.core.combine import stack_member_outputs

    frames = _geometry(chunk)
    n_frames, n_members = frames.n_frames, len(outputs)
    energies = np.full((n_frames, n_members), np.nan)
    forces = np.full((frames.n_total_atoms, n_members, 3), np.nan)
    stresses = np.full((n_frames, n_members, 6), np.nan)
    for f in range(n_frames):
        frame_outputs = [member_outputs[f] for member_outputs in outputs]
        energies[f], frame_forces, stresses[f], _ = stack_member_outputs(frame_outputs, frames.n_atoms[f])
        forces[frames.offsets[f] : frames.offsets[f + 1]] = frame_forces.transpose(1, 0, 2)
    return PredictionSet(
        names=calc.member_names,
        frames=frames,
        member_energies=energies,
        member_forces=forces,
        member_stresses=stresses if with_stress else None,
        sources=[m.spec or m.name for m in calc.members],
        dropped={f: {name: str(exc) for name, exc in why.items()} for f, why in enumerate(failures) if why},
    )


def _name_failing_frame(member, chunk, with_stress, error: Exception | None) -> None:
    """Re-run ``member`` frame by frame to raise an error naming the frame; else re-raise ``error``.

    With ``error=None``, returns when every frame succeeds.
    """
    from hetens.core.evaluation import evaluate_member

    for (source, atoms), flag in zip(chunk, with_stress):
        try:
            evaluate_member(member, atoms, flag)
        except Exception as exc:
            raise MemberFailedError(
                f"member {member.name} failed on {source} ({atoms.get_chemical_formula()}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if error is not None:
        raise error


def predict_file(
    calc,
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    index: Any = ":",
    format: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    batched: bool = True,
    progress: str = "auto",
) -> PredictionSet:
    """Every member's predictions on the selected frames of ``paths``, in memory.

    For calibration with live members, where all predictions are needed at
    once; to score large files use :func:`score_live`, which streams.
    """
    from hetens.rescore.arrays import concatenate_predictions

    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    counts = [count_frames(p, index, format) for p in paths]
    parts = []
    with Progress(sum(counts) if None not in counts else None, progress, label="predicting") as bar:
        for chunk in batches(iter_frames(paths, index, format), batch_size, 4096):
            parts.append(predict_frames(calc, chunk, batched=batched))
            bar.update(len(chunk))
    if not parts:
        raise FrameReadError(f"no frames selected from {', '.join(map(str, paths))} (index {index!r})")
    return concatenate_predictions(parts)


def dropped_counts(predictions: PredictionSet) -> np.ndarray:
    """(M,) how many of the frames of ``predictions`` each member was dropped from."""
    return np.array([sum(name in why for why in predictions.dropped.values()) for name in predictions.names])
