"""Scoring with live members: the one scoring step, and the local run around it.

:func:`score_batch` is the step every live-member run takes, locally
(:func:`score_live`) and on a cluster (:func:`hetens.distributed.tasks.run_live_chunk`,
through :func:`score_batches`): the members on one batch
(:func:`hetens.rescore.predict.predict_frames`), the ensemble's U and
results (:func:`score_ensemble_predictions`), the errors against a
reference (:class:`ReferenceFrames`), and the annotated frames
(:meth:`ScoredBatch.annotated`). Batches are cut by
:func:`hetens.rescore.batches.batches`, the same rule the cluster planner
uses, so a cluster run writes the local run's bytes.

:func:`score_live` streams frames from any ASE-readable files through that
step and appends the annotated frames to the output as they are done:
memory holds one batch of structures, plus three floats per frame for the
summary (:class:`~hetens.rescore.report.ScoreSummary`). The output appears
only when complete (written beside it, then renamed). If the run stops
early (a member fails, Ctrl-C), the frames already scored are kept in
``OUT.partial.extxyz`` and the error says so.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetens.errors import AlignmentError, FrameReadError, Interrupted
from hetens.io.files import EXTXYZ_SUFFIXES, StagedOutput, check_output
from hetens.io.progress import Progress
from hetens.io.reading import FrameSource, count_frames, iter_frames
from hetens.rescore.arrays import PredictionSet
from hetens.rescore.batches import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_ATOMS, batches
from hetens.rescore.options import ScoreOptions
from hetens.rescore.output import annotated_frames
from hetens.rescore.precomputed import DEFAULT_POSITION_TOL, check_alignment, labelled_frame_arrays
from hetens.rescore.predict import dropped_counts, predict_frames
from hetens.rescore.report import ScoreResult, ScoreSummary
from hetens.rescore.scoring import (
    EnsembleScores,
    ReferenceErrors,
    check_error_reference,
    reference_errors,
    score_predictions,
)

__all__ = [
    "score_live",
    "score_batch",
    "score_batches",
    "ScoredBatch",
    "ReferenceFrames",
    "score_ensemble_predictions",
]


class ReferenceFrames:
    """Reference (DFT) labels read alongside the inputs, one batch at a time.

    Args:
        frames: ``(source, atoms)`` of the reference, in the inputs' order.
        label: the reference file, as errors name it.
        energy_key, forces_key: where its labels are (see
            :func:`hetens.rescore.precomputed.read_frame_arrays`).
        position_tol: Å, for checking it holds the same frames.
        error_reference: what eps is the error of (:data:`hetens.rescore.scoring.ERROR_REFERENCES`).
    """

    def __init__(
        self,
        frames: Iterable[tuple[FrameSource, Any]],
        label: str,
        *,
        energy_key: str = "energy",
        forces_key: str = "forces",
        position_tol: float = DEFAULT_POSITION_TOL,
        error_reference: str = "returned",
    ):
        self.frames = iter(frames)
        self.label, self.energy_key, self.forces_key, self.position_tol = label, energy_key, forces_key, position_tol
        self.error_reference = check_error_reference(error_reference)

    def errors(self, predictions: PredictionSet, scores: EnsembleScores) -> ReferenceErrors:
        """The errors of the batch ``predictions`` against the next reference frames.

        Raises:
            AlignmentError: the reference ends first, or its frames are not the batch's.
        """
        size = predictions.n_frames
        items = list(itertools.islice(self.frames, size))
        if len(items) < size:
            raise AlignmentError(
                f"reference {self.label} ends before the inputs do "
                f"(after {predictions.frames.frame_label(len(items))}"
                " there is no reference frame); it must hold the same frames in the same order"
            )
        labels = labelled_frame_arrays(
            items, self.label, energy_key=self.energy_key, forces_key=self.forces_key, require_energy=False
        )
        check_alignment(predictions.frames, labels, self.position_tol)
        return reference_errors(predictions, scores, labels, self.error_reference)

    def check_exhausted(self) -> None:
        """Raise :class:`AlignmentError` if the reference holds more frames than were scored."""
        if next(self.frames, None) is not None:
            raise AlignmentError(
                f"reference {self.label} holds more frames than the inputs; "
                "the reference must hold the same frames in the same order"
            )


@dataclass
class ScoredBatch:
    """One batch of frames, scored.

    Attributes:
        frames: the batch's ``(source, atoms)``, as read.
        predictions: every member's predictions on them.
        scores: the ensemble's results and U.
        errors: errors against the reference, or ``None``.
        keep_member_forces: whether :meth:`annotated` adds each member's forces.
    """

    frames: list[tuple[FrameSource, Any]]
    predictions: PredictionSet
    scores: EnsembleScores
    errors: ReferenceErrors | None = None
    keep_member_forces: bool = False

    @property
    def dropped(self) -> np.ndarray:
        """(M,) frames of the batch each member was dropped from."""
        return dropped_counts(self.predictions)

    def annotated(self) -> Iterator[Any]:
        """The batch's frames as written (:func:`hetens.rescore.output.annotated_frames`)."""
        return annotated_frames(
            self.frames,
            self.predictions,
            self.scores,
            keep_member_forces=self.keep_member_forces,
            eps=None if self.errors is None else self.errors.eps,
        )


def score_ensemble_predictions(calc, predictions: PredictionSet) -> EnsembleScores:
    """:func:`score_predictions` with the weights and roles of the ensemble ``calc``.

    With witnesses, the predictions equal those of the predictors-only
    ensemble bit for bit (the calculator's ``combine_weights``).
    """
    if not calc.has_witnesses:
        return score_predictions(predictions, calc.weights)
    return score_predictions(predictions, calc.combine_weights, predictors=calc.predictor_mask)


def score_batch(
    calc,
    batch: list[tuple[FrameSource, Any]],
    *,
    batched: bool = True,
    keep_member_forces: bool = False,
    reference: ReferenceFrames | None = None,
) -> ScoredBatch:
    """Score one batch of frames with the live ensemble ``calc``: the one scoring step.

    Args:
        calc: a :class:`~hetens.HeterogeneousEnsembleCalculator`.
        batch: ``(source, atoms)`` of one model batch (see :func:`~hetens.rescore.batches.batches`).
        batched: use the families' batched paths (``False``: per-frame ASE loop).
        keep_member_forces: the annotated frames also carry each member's forces.
        reference: reference labels read alongside, or ``None``.

    Raises:
        MemberFailedError: a member failed (naming member, file and frame).
        AlignmentError: the reference does not hold these frames.
    """
    predictions = predict_frames(calc, batch, batched=batched)
    scores = score_ensemble_predictions(calc, predictions)
    errors = reference.errors(predictions, scores) if reference is not None else None
    return ScoredBatch(batch, predictions, scores, errors, keep_member_forces)


def score_batches(
    calc,
    frames: Iterable[tuple[FrameSource, Any]],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_batch_atoms: int | None = DEFAULT_MAX_BATCH_ATOMS,
    batched: bool = True,
    keep_member_forces: bool = False,
    reference: ReferenceFrames | None = None,
) -> Iterator[ScoredBatch]:
    """:func:`score_batch` on every batch of ``frames`` (cut as a local run cuts them), in order."""
    for batch in batches(frames, batch_size, max_batch_atoms):
        yield score_batch(calc, batch, batched=batched, keep_member_forces=keep_member_forces, reference=reference)


def score_live(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    calc=None,
    options: ScoreOptions | None = None,
    **overrides: Any,
) -> ScoreResult:
    """Score every selected frame of ``inputs`` with live members, streaming to ``output``.

    Args:
        inputs: one or more ASE-readable files.
        output: extxyz file to write (complete or not at all).
        calc: a :class:`~hetens.HeterogeneousEnsembleCalculator`; the default
            offline ensemble when ``None``.
        options: a :class:`~hetens.rescore.options.ScoreOptions` (reading,
            reference, batching, output, progress); single fields may be given
            as keywords instead (``batch_size=32``). Fields used here: index,
            format, reference, reference_energy_key, reference_forces_key,
            position_tol, error_reference, batch_size, max_batch_atoms,
            batched, keep_member_forces, progress.

    Raises:
        hetens.errors.Interrupted: on Ctrl-C (a ``KeyboardInterrupt``), once the
            complete frames scored so far are kept in ``OUT.partial.extxyz``.
    """
    if calc is None:
        from hetens.core.ensemble import default_ensemble

        calc = default_ensemble()
    o = ScoreOptions.resolve(options, overrides)
    index, format, reference = o.index, o.format, o.reference
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    check_output(output, [*paths, reference], suffixes=EXTXYZ_SUFFIXES)
    start = time.perf_counter()
    counts = [count_frames(p, index, format) for p in paths]
    total = sum(counts) if all(c is not None for c in counts) else None
    ref = None
    if reference is not None:
        ref_count = count_frames(reference, index)
        if total is not None and ref_count is not None and ref_count != total:
            raise AlignmentError(
                f"reference {reference} holds {ref_count} selected frames but the inputs hold {total}; "
                "the reference must hold the same frames in the same order"
            )
        ref = ReferenceFrames(
            iter_frames(reference, index),
            str(reference),
            energy_key=o.reference_energy_key,
            forces_key=o.reference_forces_key,
            position_tol=o.position_tol,
            error_reference=o.error_reference,
        )
    summary = ScoreSummary(calc.member_names, calc.weights, calc.roles)
    bar = Progress(total, o.progress)
    out = StagedOutput(output)
    current = None  # the frame being scored, for an interrupt's message
    try:
        with out:
            for batch in batches(iter_frames(paths, index, format), o.batch_size, o.max_batch_atoms):
                current = batch[0][0]
                scored = score_batch(
                    calc, batch, batched=o.batched, keep_member_forces=o.keep_member_forces, reference=ref
                )
                for (source, _), atoms in zip(batch, scored.annotated()):
                    current = source
                    out.write(atoms)
                current = None
                summary.add(scored.predictions, scored.scores, scored.errors, scored.dropped)
                bar.update(len(batch))
            if ref is not None:
                ref.check_exhausted()
            if not summary.n_frames:
                raise FrameReadError(
                    f"no frames selected from {', '.join(map(str, paths))} (index {index!r})"
                )
    except KeyboardInterrupt as exc:  # Ctrl-C: complete frames are in OUT.partial.extxyz
        where = str(current) if current is not None else None
        raise Interrupted(out.count, total, where=where, kept=out.partial if out.count else None) from exc
    finally:
        bar.close()
    return summary.result(Path(output), start)
