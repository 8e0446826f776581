"""What runs on a Dask worker: score one chunk and save it in the chunk store.

A worker process builds the ensemble from its :class:`EnsembleSpec` at its
first chunk and keeps it (:func:`cached_ensemble`) for every later chunk:
one model load per worker process, never one per chunk. Chunks in one
process run one at a time (the ensemble is not thread-safe).

A chunk is scored by the step :func:`hetens.jobs.score_live.score_live` takes,
:func:`hetens.jobs.score_live.score_batch` (through
:func:`~hetens.jobs.score_live.score_batches`), on the same batches, and written
with the same :func:`hetens.io.extxyz.frame_text`, so its frames are the
local run's frames byte for byte. A ``--precomputed`` chunk is annotated by
:func:`hetens.rescore.output.annotated_frames`, as a local run's frames are.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hetens.distributed.ensemble_spec import EnsembleSpec
from hetens.distributed.plan import FrameTable, read_frames
from hetens.distributed.store import ChunkStore
from hetens.io.extxyz import frame_text

__all__ = [
    "LiveChunk", "WritingChunk", "run_live_chunk", "run_writing_chunk", "cached_ensemble", "worker_device", "busy",
]

_LOCK = threading.Lock()
_ENSEMBLES: dict[str, Any] = {}


@dataclass
class LiveChunk:
    """One chunk of a live-member run: which frames, how to score them, where to save.

    Attributes:
        chunk: the chunk's number (its place in the output).
        store: the chunk folder (absolute) and ``run_id``.
        ensemble: how to build the ensemble.
        tables: the chunk's frames, as rows of the inputs' frame tables, in order.
        reference: the reference rows aligned with them, or ``None``.
        options: ``batch_size``, ``max_batch_atoms``, ``batched``,
            ``keep_member_forces``, ``reference_energy_key``,
            ``reference_forces_key``, ``position_tol``, ``reference_label``,
            ``worker_threads``.
    """

    chunk: int
    store: str
    run_id: str
    ensemble: EnsembleSpec
    tables: list[FrameTable]
    reference: list[FrameTable] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class WritingChunk:
    """One chunk of a ``--precomputed`` run: frames whose scores the driver computed.

    Attributes:
        chunk, store, run_id: as in :class:`LiveChunk`.
        tables: the template file's rows (reference or first prediction file).
        predictions, scores: :class:`~hetens.rescore.arrays.PredictionSet` and
            :class:`~hetens.rescore.scoring.EnsembleScores` of these frames only.
        eps: (F,) ``hetens_eps`` per frame, or ``None``.
        keep_member_forces: also write each member's forces.
    """

    chunk: int
    store: str
    run_id: str
    tables: list[FrameTable]
    predictions: Any
    scores: Any
    eps: np.ndarray | None = None
    keep_member_forces: bool = False


def worker_device(requested: str) -> str:
    """One GPU per worker: ``auto``/``cuda`` become ``cuda:R % G`` with G visible GPUs (G > 1).

    R is the worker's rank: its Dask name (``LocalCluster`` names workers
    0, 1...) or the number ending it (dask-jobqueue names a job's workers
    ``JOB-0``, ``JOB-1``...). With one visible GPU (the usual batch job) or
    none, the request is returned unchanged.
    """
    if requested not in ("auto", "cuda"):
        return requested
    try:
        import torch
    except ImportError:
        return requested
    count = torch.cuda.device_count()
    if count <= 1:
        return requested
    return f"cuda:{_worker_rank() % count}"


def _worker_rank() -> int:
    name = _worker_name()
    tail = str(name).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def busy() -> bool:
    """Whether this worker process is scoring a chunk now (for ``client.run(busy)``)."""
    return _LOCK.locked()


def cached_ensemble(spec: EnsembleSpec, threads: int | None = None) -> tuple[Any, float]:
    """This process's ensemble for ``spec`` (built at the first call): ``(calc, seconds spent loading)``.

    Call with ``_LOCK`` held.
    """
    key = spec.key()
    if key in _ENSEMBLES:
        return _ENSEMBLES[key], 0.0
    from hetens.core.factory import ignore_upstream_warnings

    ignore_upstream_warnings()  # as the CLI does: warnings that say nothing to a user
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    start = time.perf_counter()
    calc = spec.build(device=worker_device(spec.device))
    _ENSEMBLES[key] = calc
    return calc, time.perf_counter() - start


def run_live_chunk(task: LiveChunk) -> dict[str, Any]:
    """Score the chunk's frames with the worker's ensemble and save them; return the chunk's record."""
    from hetens.jobs.score_live import ReferenceFrames, score_batches
    from hetens.rescore.report import ScoreSummary

    store = ChunkStore(task.store, task.run_id)
    done = store.record(task.chunk)
    if done is not None:  # a duplicate attempt finished first
        return done
    options = task.options
    with _LOCK:
        store.mark_attempt(task.chunk)
        start = time.perf_counter()
        calc, load_s = cached_ensemble(task.ensemble, options.get("worker_threads"))
        begin = time.perf_counter()
        items = [item for table in task.tables for item in read_frames(table)]
        reference = None
        if task.reference is not None:
            reference = ReferenceFrames(
                [item for table in task.reference for item in read_frames(table)],
                options["reference_label"],
                energy_key=options["reference_energy_key"],
                forces_key=options["reference_forces_key"],
                position_tol=options["position_tol"],
                error_reference=options.get("error_reference", "returned"),
            )
        summary = ScoreSummary(calc.member_names, calc.weights, calc.roles)
        texts = []
        for scored in score_batches(
            calc,
            items,
            batch_size=options["batch_size"],
            max_batch_atoms=options["max_batch_atoms"],
            batched=options["batched"],
            keep_member_forces=options["keep_member_forces"],
            reference=reference,
        ):
            texts.extend(frame_text(atoms) for atoms in scored.annotated())
            summary.add(scored.predictions, scored.scores, scored.errors, scored.dropped)
        compute_s = time.perf_counter() - begin
        record = store.save(
            task.chunk,
            "".join(texts),
            summary.arrays(),
            {
                "frames": len(items),
                "members": calc.member_names,
                "weights": [float(w) for w in calc.weights],
                "roles": calc.roles,
                "devices": sorted({str(m.device) for m in calc.members}),
                **_where_and_when(load_s, compute_s, start),
            },
        )
    return record


def run_writing_chunk(task: WritingChunk) -> dict[str, Any]:
    """Annotate the template's frames with the driver's scores and save them (``--precomputed``)."""
    from hetens.rescore.output import annotated_frames

    store = ChunkStore(task.store, task.run_id)
    done = store.record(task.chunk)
    if done is not None:
        return done
    with _LOCK:
        store.mark_attempt(task.chunk)
        start = time.perf_counter()
        items = [item for table in task.tables for item in read_frames(table)]
        frames = annotated_frames(
            items, task.predictions, task.scores, keep_member_forces=task.keep_member_forces, eps=task.eps
        )
        record = store.save(
            task.chunk,
            "".join(frame_text(atoms) for atoms in frames),
            {"uncertainty": task.scores.uncertainty},
            {"frames": len(items), **_where_and_when(0.0, time.perf_counter() - start, start)},
        )
    return record


def _where_and_when(load_s: float, compute_s: float, start: float) -> dict[str, Any]:
    return {
        "worker": _worker_name(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "load_s": round(load_s, 4),
        "compute_s": round(compute_s, 4),
        "task_s": round(time.perf_counter() - start, 4),
        "finished": time.time(),
    }
