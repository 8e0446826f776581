"""What a scored frame holds, and the one annotation step of every scored file.

:func:`annotated_frames` turns frames and their scores into the frames
``hetens score`` writes, made by :func:`hetens.core.frames.annotate` (ensemble
energy/forces/stress as the frame's results, U and friends under
``hetens_`` keys). Every writer of scored frames calls it: live scoring
(:class:`hetens.jobs.score_live.ScoredBatch`), ``--precomputed``
(:func:`hetens.rescore.precomputed_scoring.write_precomputed`) and the
cluster's chunk tasks (:mod:`hetens.distributed.tasks`). Keys added here
(defined in :mod:`hetens.io.keys`):

=========================  ======  ===========================================
key                        where   meaning
=========================  ======  ===========================================
``hetens_source``          info    ``FILE:INDEX`` the frame was read from
``hetens_eps``             info    with a reference: ``max_i |F_ref - F|``,
                                   F the forces hetens returns (weighted
                                   predictor mean), eV/Å
``hetens_member_forces``   arrays  with ``keep_member_forces``: (N, 3M)
                                   member forces, member-major columns
                                   ``m0x m0y m0z m1x ...``, eV/Å
``hetens_member_stresses`` info    with ``keep_member_forces``: (6M,) member
                                   Voigt stresses, eV/Å³ (periodic frames)
=========================  ======  ===========================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from hetens.errors import AlignmentError
from hetens.core.frames import annotate
from hetens.io.keys import EPS_KEY, MEMBER_FORCES_KEY, MEMBER_STRESSES_KEY, SOURCE_KEY
from hetens.rescore.arrays import PredictionSet
from hetens.io.reading import FrameSource
from hetens.rescore.scoring import EnsembleScores, frame_results

__all__ = [
    "annotated_frames",
    "annotate_scored",
    "pack_member_forces",
    "unpack_member_forces",
    "MEMBER_FORCES_KEY",
    "MEMBER_STRESSES_KEY",
    "EPS_KEY",
    "SOURCE_KEY",
]


def pack_member_forces(member_forces) -> np.ndarray:
    """(M, N, 3) member forces -> (N, 3M) columns ``m0x m0y m0z m1x ...`` for ``atoms.arrays``."""
    forces = np.asarray(member_forces, dtype=float)
    m, n, _ = forces.shape
    return forces.transpose(1, 0, 2).reshape(n, 3 * m)


def unpack_member_forces(array, n_members: int) -> np.ndarray:
    """(N, 3M) as written by :func:`pack_member_forces` -> (M, N, 3)."""
    packed = np.asarray(array, dtype=float)
    if packed.ndim != 2 or packed.shape[1] != 3 * n_members:
        raise ValueError(f"{MEMBER_FORCES_KEY} must be (N, {3 * n_members}); got {packed.shape}")
    return packed.reshape(packed.shape[0], n_members, 3).transpose(1, 0, 2)


def annotate_scored(
    atoms,
    source: FrameSource,
    predictions: PredictionSet,
    scores: EnsembleScores,
    frame: int,
    *,
    keep_member_forces: bool = False,
    eps: float | None = None,
):
    """Frame ``frame`` of ``predictions``/``scores`` as written: ``atoms`` annotated, with its source.

    Args:
        atoms: the frame as read (its ``info`` is kept).
        source: where it was read from (``hetens_source``).
        predictions, scores: the member predictions and ensemble scores of its batch.
        frame: its position in them.
        keep_member_forces: also write each member's forces (and stresses).
        eps: its ``hetens_eps`` (eV/Å), or ``None``.
    """
    results = frame_results(predictions, scores, frame)
    extra = {SOURCE_KEY: f"{source.path}:{source.index if source.index is not None else source.position}"}
    if eps is not None:
        extra[EPS_KEY] = float(eps)
    out = annotate(atoms, results, predictions.names, scores.weights, **extra)
    if keep_member_forces:
        out.arrays[MEMBER_FORCES_KEY] = pack_member_forces(results["member_forces"])
        if "member_stresses" in results:
            out.info[MEMBER_STRESSES_KEY] = np.asarray(results["member_stresses"], dtype=float).reshape(-1)
    return out


def annotated_frames(
    items: Iterable[tuple[FrameSource, Any]],
    predictions: PredictionSet,
    scores: EnsembleScores,
    *,
    keep_member_forces: bool = False,
    eps: np.ndarray | None = None,
) -> Iterator[Any]:
    """The scored frames: each ``(source, atoms)`` of ``items`` annotated with its frame's scores.

    Args:
        items: the frames, in the order of ``predictions`` (F of them).
        predictions, scores: their member predictions and ensemble scores.
        keep_member_forces: also write each member's forces (and stresses).
        eps: (F,) ``hetens_eps`` per frame, eV/Å, or ``None``.

    Raises:
        AlignmentError: ``items`` holds more frames than ``predictions``, or a
            frame with another atom count (a file changed since it was read).
    """
    for f, (source, atoms) in enumerate(items):
        if f >= predictions.n_frames or len(atoms) != predictions.frames.n_atoms[f]:
            raise AlignmentError(f"{source} does not match the frames read before; was the file changed?")
        yield annotate_scored(
            atoms,
            source,
            predictions,
            scores,
            f,
            keep_member_forces=keep_member_forces,
            eps=None if eps is None else eps[f],
        )
