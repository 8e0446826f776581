"""Scoring predictions made elsewhere (``hetens score --precomputed``): the driver.

:func:`score_precomputed` reads M prediction files
(:func:`hetens.rescore.precomputed.load_predictions`, which checks they hold
the same frames), weighs the members (:func:`resolve_member_weights`),
computes U for all frames at once (vectorised,
:func:`score_loaded_predictions`), and writes the annotated frames
(:func:`write_precomputed`, through the annotation step every scored file
shares, :func:`hetens.rescore.output.annotated_frames`). A cluster run
(:func:`hetens.distributed.score_precomputed_on_cluster`) takes the same
steps, with the writing done by its workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetens.core.weights import inverse_rmse_weights, normalise_weights
from hetens.io.files import EXTXYZ_SUFFIXES, StagedOutput, check_output
from hetens.io.progress import Progress
from hetens.io.reading import FrameSource, iter_frames
from hetens.rescore.arrays import PredictionSet
from hetens.rescore.options import ScoreOptions
from hetens.rescore.output import annotated_frames
from hetens.rescore.precomputed import load_predictions, read_reference
from hetens.rescore.report import ScoreResult, ScoreSummary
from hetens.rescore.scoring import EnsembleScores, ReferenceErrors, reference_errors, score_predictions

__all__ = [
    "score_precomputed",
    "score_loaded_predictions",
    "ScoredPredictions",
    "resolve_member_weights",
    "write_precomputed",
]


def resolve_member_weights(
    names: Sequence[str],
    weights: Sequence[float] | Mapping[str, float] | None = None,
    force_rmse: Sequence[float] | None = None,
) -> tuple[list[int], np.ndarray, list[str]]:
    """Which members to use and their weights.

    A mapping (from a weights file) selects its members by name: members it
    does not name are dropped (U's reference mean is over the kept members
    only, as in calibration); a name it has that no member has is an error.

    Returns:
        (kept member positions, (K,) normalised weights, dropped names).
    """
    if weights is not None and force_rmse is not None:
        raise ValueError("give either weights or force RMSEs, not both")
    if isinstance(weights, Mapping):
        unknown = [n for n in weights if n not in names]
        if unknown:
            raise ValueError(
                f"the weights name member(s) {', '.join(unknown)} but the predictions are for "
                f"{', '.join(names)}; name the files with --names to match"
            )
        kept = [i for i, n in enumerate(names) if n in weights]
        dropped = [n for n in names if n not in weights]
        return kept, normalise_weights([weights[names[i]] for i in kept], len(kept)), dropped
    kept = list(range(len(names)))
    if force_rmse is not None:
        w = inverse_rmse_weights(force_rmse)
        if w.size != len(names):
            raise ValueError(f"{len(force_rmse)} force RMSEs given for {len(names)} members")
        return kept, w, []
    return kept, normalise_weights(weights, len(names)), []


def score_precomputed(
    predictions: Sequence[str | os.PathLike] | PredictionSet,
    output: str | os.PathLike | None = None,
    options: ScoreOptions | None = None,
    **overrides: Any,
) -> ScoreResult:
    """Score predictions made elsewhere: one file per member, the same frames in each.

    Args:
        predictions: (M,) prediction files, or a loaded :class:`PredictionSet`.
        output: extxyz file to write, or ``None`` for the summary only.
        options: a :class:`~hetens.rescore.options.ScoreOptions`; single
            fields may be given as keywords instead (``names=[...]``). Fields
            used here: names, weights (a weights file's name -> weight drops
            the unnamed members), force_rmse, witnesses, reference (adds member
            errors, eps and rho to the report, ``hetens_eps`` to each frame),
            index, energy_key, forces_key, reference_energy_key,
            reference_forces_key, position_tol, error_reference, jobs,
            keep_member_forces, progress.

    Raises:
        AlignmentError: the files do not hold the same frames (names file and frame).
    """
    o = ScoreOptions.resolve(options, overrides)
    start = time.perf_counter()
    if output is not None:
        inputs = [] if isinstance(predictions, PredictionSet) else list(predictions)
        check_output(output, [*inputs, o.reference], suffixes=EXTXYZ_SUFFIXES)
    scored = score_loaded_predictions(predictions, o)
    predictions, scores, errors = scored.predictions, scored.scores, scored.errors
    out_path = None
    if output is not None:
        template = (
            o.reference if o.reference is not None else predictions.sources[0] if predictions.sources else None
        )
        write_precomputed(output, template, o.index, predictions, scores, errors, o.keep_member_forces, o.progress)
        out_path = Path(output)
    return scored.result(out_path, start)


@dataclass
class ScoredPredictions:
    """Precomputed predictions with their weights, scores and (with a reference) errors.

    Attributes:
        predictions: the members kept (those the weights name).
        weights: (M,) normalised weights.
        scores: U and the ensemble's results for every frame.
        errors: errors against the reference labels, or ``None``.
        left_out: members the weights did not name (left out).
        roles: (M,) role of each member kept.
    """

    predictions: PredictionSet
    weights: np.ndarray
    scores: EnsembleScores
    errors: ReferenceErrors | None
    left_out: list[str]
    roles: list[str] | None = None

    def result(self, output: Path | None, start: float) -> ScoreResult:
        """The :class:`ScoreResult` of a run that began at ``start`` (``time.perf_counter``)."""
        summary = ScoreSummary(self.predictions.names, self.weights, self.roles)
        summary.add(self.predictions, self.scores, self.errors)
        result = summary.result(output, start)
        if self.left_out:
            result.report["dropped_members"] = self.left_out
            result.notes.append(f"members not in the weights were left out: {', '.join(self.left_out)}")
        return result


def score_loaded_predictions(
    predictions: Sequence[str | os.PathLike] | PredictionSet,
    options: ScoreOptions | None = None,
    **overrides: Any,
) -> ScoredPredictions:
    """The steps of :func:`score_precomputed` before writing: load, weigh, score all frames at once.

    Options as for :func:`score_precomputed`.
    """
    o = ScoreOptions.resolve(options, overrides)
    witnesses = o.witnesses
    if not isinstance(predictions, PredictionSet):
        predictions = load_predictions(predictions, o.names, index=o.index, energy_key=o.energy_key,
                                       forces_key=o.forces_key, position_tol=o.position_tol, jobs=o.jobs)
    unknown = [n for n in witnesses if n not in predictions.names]
    if unknown:
        raise ValueError(
            f"witness name(s) {', '.join(unknown)} match no prediction file; the members are "
            f"{', '.join(predictions.names)} (name them with --names)"
        )
    kept, w, left_out = resolve_member_weights(predictions.names, o.weights, o.force_rmse)
    if left_out:
        predictions = predictions.subset(kept)
    roles = ["witness" if n in witnesses else "predictor" for n in predictions.names]
    from hetens.core.policy import check_member_counts

    check_member_counts(roles)
    if "witness" in roles:
        scores = score_predictions(predictions, w, predictors=np.array([r == "predictor" for r in roles]))
    else:
        scores = score_predictions(predictions, w)
    errors = None
    if o.reference is not None:
        ref_arrays = read_reference(o.reference, o.index, predictions.frames, energy_key=o.reference_energy_key,
                                    forces_key=o.reference_forces_key, position_tol=o.position_tol)
        errors = reference_errors(predictions, scores, ref_arrays, o.error_reference)
    return ScoredPredictions(predictions, w, scores, errors, left_out, roles if "witness" in roles else None)


def write_precomputed(
    output: str | os.PathLike,
    template: str | os.PathLike | None,
    index: Any,
    predictions: PredictionSet,
    scores: EnsembleScores,
    errors: ReferenceErrors | None = None,
    keep_member_forces: bool = False,
    progress: str = "auto",
) -> None:
    """Write the scored frames: the template file's frames annotated (their ``info`` kept) or,
    without a template, frames built from the prediction arrays.

    Args:
        output: the extxyz file (appears when complete).
        template: the file whose frames are annotated (the reference, or the
            first prediction file), or ``None``.
        index: the frame selection the predictions were read with.
        predictions, scores, errors: of every frame, as :func:`score_loaded_predictions` gives them.
        keep_member_forces: also write each member's forces (and stresses).
        progress: ``auto``, ``bar``, ``log`` or ``off``.

    Raises:
        AlignmentError: the template's frames are not the predictions' (a file changed).
    """
    frames = predictions.frames
    if template is not None:
        items = iter_frames(template, index)
    else:
        items = ((FrameSource("", i, i), frames.to_atoms(i)) for i in range(frames.n_frames))
    with Progress(frames.n_frames, progress, label="writing") as bar, StagedOutput(output) as out:
        for atoms in annotated_frames(
            items,
            predictions,
            scores,
            keep_member_forces=keep_member_forces,
            eps=None if errors is None else errors.eps,
        ):
            out.write(atoms)
            bar.update(1)
