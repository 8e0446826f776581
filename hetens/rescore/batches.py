"""How frames are grouped into model calls: the one batching rule.

A local run (:func:`hetens.jobs.score_live.score_live`), calibration with live
members (:func:`hetens.rescore.predict.predict_file`) and the cluster's chunk
planner (:func:`hetens.distributed.plan.plan_chunks`) all cut frames with
:func:`batches`, so a frame goes through the same model call wherever it is
scored: what makes a cluster run's output the local run's, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Any

from hetens.io.reading import FrameSource

__all__ = ["batches", "DEFAULT_BATCH_SIZE", "DEFAULT_MAX_BATCH_ATOMS", "DEFAULT_CHUNK_SIZE"]

#: Frames per model call, where a family evaluates batches.
DEFAULT_BATCH_SIZE = 16
#: Atoms per model call at most (a larger frame goes alone): bounds (GPU) memory.
DEFAULT_MAX_BATCH_ATOMS = 4096
#: Frames per chunk of a cluster run (whole batches; the unit of scheduling and resumption).
DEFAULT_CHUNK_SIZE = 256


def batches(
    items: Iterable[tuple[FrameSource, Sized]], size: int, max_atoms: int | None = None
) -> Iterator[list[tuple[FrameSource, Any]]]:
    """Consecutive ``(source, atoms)`` of one file: at most ``size`` frames and (beyond the first) ``max_atoms`` atoms.

    A new batch starts at each new file (``source.path``). Only the path and
    ``len(atoms)`` are used, so anything sized can stand in for the atoms
    (the planner passes ranges).
    """
    batch: list[tuple[FrameSource, Any]] = []
    atoms_in_batch = 0
    for item in items:
        n = len(item[1])
        if batch and (
            len(batch) == size
            or item[0].path != batch[0][0].path
            or (max_atoms is not None and atoms_in_batch + n > max_atoms)
        ):
            yield batch
            batch, atoms_in_batch = [], 0
        batch.append(item)
        atoms_in_batch += n
    if batch:
        yield batch
