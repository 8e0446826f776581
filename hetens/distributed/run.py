"""The driver of a cluster run: plan chunks, run the missing ones on Dask, assemble the output.

:func:`score_on_cluster` and :func:`score_precomputed_on_cluster` write the
file :func:`hetens.jobs.score_live.score_live` and
:func:`~hetens.rescore.precomputed_scoring.score_precomputed` write, byte for byte (on the
same device type, with the same torch threads per process), and return the
same :class:`~hetens.rescore.report.ScoreResult`, whose report gains a
``cluster`` entry (chunks reused and computed, retries, workers, dashboard).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hetens.distributed.cluster import ClusterSpec, connect, import_distributed, parse_cluster_spec
from hetens.distributed.ensemble_spec import EnsembleSpec
from hetens.distributed.plan import chunk_segments, file_stat, frame_table, plan_chunks
from hetens.distributed.store import ChunkStore
from hetens.distributed.tasks import LiveChunk, WritingChunk, run_live_chunk, run_writing_chunk
from hetens.errors import AlignmentError, FrameReadError
from hetens.io import keys
from hetens.io.files import EXTXYZ_SUFFIXES, check_output
from hetens.io.progress import Progress
from hetens.rescore.batches import DEFAULT_CHUNK_SIZE
from hetens.rescore.options import ScoreOptions
from hetens.rescore.report import ScoreSummary

__all__ = ["score_on_cluster", "score_precomputed_on_cluster", "DEFAULT_CHUNK_SIZE"]

#: Frames per chunk by default: large enough that scheduling (a few ms per chunk) is noise.

ChunkHook = Callable[[dict[str, Any]], None]


def score_on_cluster(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    ensemble: Any = None,
    options: ScoreOptions | None = None,
    *,
    on_chunk: ChunkHook | None = None,
    **overrides: Any,
):
    """:func:`~hetens.jobs.score_live.score_live` on a Dask cluster, resumable.

    Args:
        inputs, output: as for :func:`~hetens.jobs.score_live.score_live`.
        options: a :class:`~hetens.rescore.options.ScoreOptions` (or single
            fields as keywords): those of :func:`~hetens.jobs.score_live.score_live`,
            and cluster, chunk_size, worker_threads, restart, keep_chunks (below).
        ensemble: an :class:`EnsembleSpec`, member specs, a calculator whose
            members all come from specs, or ``None`` (the default ensemble).
            Workers build it themselves, once per worker process.
        cluster: ``local:N``, ``tcp://host:port``, a YAML cluster file
            (:func:`~hetens.distributed.cluster.parse_cluster_spec`), or a
            ``distributed.Client`` (left open).
        chunk_size: frames per chunk (whole batches; a chunk is the unit of
            scheduling, retry and resumption).
        worker_threads: torch threads per worker process (default: the
            cluster file's, else what the worker has: 1 under Dask's nanny).
        restart: discard a chunk folder left by another run instead of refusing.
        keep_chunks: keep ``OUT.hetens-chunks/`` after the output is assembled.
        progress: ``auto``, ``bar``, ``log`` or ``off`` (a bar over chunks; the
            dashboard address and reused chunks are printed on stderr unless ``off``).
        on_chunk: called in this process with each chunk's record as it finishes.

    Raises:
        FileExistsError: ``OUT.hetens-chunks`` holds another run's chunks (see ``restart``).
        MissingExtraError: Dask is not installed.
        KeyboardInterrupt: on Ctrl-C, with a note saying how many chunks are
            kept and how to resume (re-run the same command).
    """
    from hetens._version import __version__

    start = time.perf_counter()
    o = ScoreOptions.resolve(options, overrides)
    index, format, reference, chunk_size = o.index, o.format, o.reference, o.chunk_size
    spec = EnsembleSpec.of(ensemble)
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    check_output(output, [*paths, reference], suffixes=EXTXYZ_SUFFIXES)
    tables = [frame_table(p, index, format) for p in paths]
    total = sum(t.n_frames for t in tables)
    if total == 0:
        raise FrameReadError(f"no frames selected from {', '.join(map(str, paths))} (index {index!r})")
    ref_table = None
    if reference is not None:
        ref_table = frame_table(reference, index)
        if ref_table.n_frames != total:
            raise AlignmentError(
                f"reference {reference} holds {ref_table.n_frames} selected frames but the inputs hold "
                f"{total}; the reference must hold the same frames in the same order"
            )
    chunks = plan_chunks(tables, o.batch_size, o.max_batch_atoms, chunk_size)
    cluster_spec = _cluster_spec(o.cluster)
    options = {
        "batch_size": o.batch_size,
        "max_batch_atoms": o.max_batch_atoms,
        "batched": o.batched,
        "keep_member_forces": o.keep_member_forces,
        "reference_label": str(reference) if reference is not None else None,
        "reference_energy_key": o.reference_energy_key,
        "reference_forces_key": o.reference_forces_key,
        "position_tol": o.position_tol,
        "error_reference": o.error_reference,
        "worker_threads": o.worker_threads or getattr(cluster_spec, "worker_threads", None),
    }
    identity = {
        "kind": "live",
        keys.VERSION_KEY: __version__,
        "inputs": [{"label": t.label, "path": t.path, "stat": file_stat(t.path)} for t in tables],
        "index": str(index),
        "format": format,
        "reference": None if ref_table is None else {"path": ref_table.path, "stat": file_stat(ref_table.path)},
        "ensemble": spec.describe(),
        "options": options,
        "chunk_size": chunk_size,
        "n_frames": total,
        "n_chunks": len(chunks),
    }
    store = ChunkStore.open(output, identity, restart=o.restart)

    def task(i: int) -> LiveChunk:
        first, stop = chunks[i]
        rows = [tables[s.table].rows(s.start, s.stop) for s in chunk_segments(tables, first, stop)]
        ref_rows = None if ref_table is None else [ref_table.rows(first, stop)]
        return LiveChunk(i, str(store.folder), store.run_id, spec, rows, ref_rows, options)

    records, info = _run_chunks(store, len(chunks), task, run_live_chunk, o.cluster, o.progress, on_chunk)
    names, weights = _ensemble_of(records)
    store.assemble(output, range(len(chunks)))
    summary = ScoreSummary(names, np.asarray(weights), records[min(records)].get("roles"))
    for i in range(len(chunks)):
        summary.add_arrays(store.arrays(i))
    result = summary.result(Path(output), start)
    return _finish(result, store, records, info, cluster_spec, chunk_size, o.keep_chunks)


def score_precomputed_on_cluster(
    predictions: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    options: ScoreOptions | None = None,
    *,
    on_chunk: ChunkHook | None = None,
    **overrides: Any,
):
    """:func:`~hetens.rescore.precomputed_scoring.score_precomputed` with the output written by Dask workers.

    This process reads the prediction files and computes U for all frames at
    once, exactly as locally (that part is vectorised and fast); the workers
    annotate and write the frames, chunk by chunk (the slow part on large
    files), resumable as in :func:`score_on_cluster`. Arguments as there and
    as for :func:`~hetens.rescore.precomputed_scoring.score_precomputed`.
    """
    from hetens._version import __version__
    from hetens.rescore.precomputed_scoring import score_loaded_predictions

    start = time.perf_counter()
    o = ScoreOptions.resolve(options, overrides)
    index, reference, chunk_size, keep_member_forces = o.index, o.reference, o.chunk_size, o.keep_member_forces
    paths = [str(p) for p in predictions]
    check_output(output, [*paths, reference], suffixes=EXTXYZ_SUFFIXES)
    cluster_spec = _cluster_spec(o.cluster)
    scored = score_loaded_predictions(paths, o)  # as score_precomputed does, on all frames at once
    loaded, w, scores, errors = scored.predictions, scored.weights, scored.scores, scored.errors
    template = frame_table(reference if reference is not None else paths[0], index)
    if template.n_frames != loaded.n_frames:
        raise AlignmentError(f"{template.label} does not match the frames read before; was the file changed?")
    chunks = plan_chunks([template], chunk_size, None, chunk_size)
    identity = {
        "kind": "precomputed",
        keys.VERSION_KEY: __version__,
        "predictions": [{"path": str(Path(p).resolve()), "stat": file_stat(p)} for p in paths],
        "reference": None if reference is None else {"path": template.path, "stat": file_stat(template.path)},
        "names": loaded.names,
        "weights": [float(x) for x in w],
        **({"roles": scored.roles} if scored.roles else {}),
        "options": {
            "index": str(index), "energy_key": o.energy_key, "forces_key": o.forces_key,
            "reference_energy_key": o.reference_energy_key, "reference_forces_key": o.reference_forces_key,
            "position_tol": o.position_tol, "error_reference": o.error_reference,
            "keep_member_forces": keep_member_forces,
        },
        "chunk_size": chunk_size,
        "n_frames": loaded.n_frames,
        "n_chunks": len(chunks),
    }
    store = ChunkStore.open(output, identity, restart=o.restart)

    def task(i: int) -> WritingChunk:
        first, stop = chunks[i]
        sliced, sliced_scores = _frame_slice(loaded, scores, first, stop)
        return WritingChunk(
            i, str(store.folder), store.run_id, [template.rows(first, stop)], sliced, sliced_scores,
            None if errors is None else errors.eps[first:stop], keep_member_forces,
        )

    records, info = _run_chunks(store, len(chunks), task, run_writing_chunk, o.cluster, o.progress, on_chunk)
    store.assemble(output, range(len(chunks)))
    result = scored.result(Path(output), start)
    return _finish(result, store, records, info, cluster_spec, chunk_size, o.keep_chunks)


# ------------------------------------------------------------------ helpers


def _cluster_spec(cluster: Any) -> ClusterSpec | None:
    """The parsed spec, or ``None`` for a Client given by the caller."""
    if isinstance(cluster, ClusterSpec):
        return cluster
    if isinstance(cluster, (str, os.PathLike)):
        return parse_cluster_spec(str(cluster))
    return None


def _say(progress: str, text: str) -> None:
    if progress != "off":
        print(f"hetens: {text}", file=sys.stderr, flush=True)


def _run_chunks(store, n_chunks, task, function, cluster, progress, on_chunk):
    """Run the chunks ``store`` lacks on the cluster; return ``(records by chunk, run info)``.

    On an error or Ctrl-C the other chunks are cancelled, the finished ones
    stay in the store, and the exception gets a note saying how to resume.
    """
    records = {i: r for i in range(n_chunks) if (r := store.record(i)) is not None}
    reused = sorted(records)
    missing = [i for i in range(n_chunks) if i not in records]
    info: dict[str, Any] = {"reused": reused, "computed": missing, "dashboard": None, "workers": None}
    if reused:
        _say(progress, f"reusing {len(reused)} of {n_chunks} chunks finished before (in {store.folder})")
    if not missing:
        return records, info
    distributed = import_distributed()
    with connect(cluster) as client:
        info["dashboard"] = client.dashboard_link
        _say(progress, f"Dask dashboard: {client.dashboard_link}")
        token = uuid.uuid4().hex[:8]
        futures = [
            client.submit(function, task(i), key=f"hetens-chunk-{i:06d}-{token}", pure=False) for i in missing
        ]
        bar = Progress(n_chunks, progress, unit="chunk", label="scored", initial=len(reused))
        try:
            for future in distributed.as_completed(futures):
                record = future.result()
                records[record["chunk"]] = record
                bar.update(1)
                if on_chunk is not None:
                    on_chunk(record)
        except BaseException as exc:
            client.cancel(futures)
            if hasattr(exc, "add_note"):
                exc.add_note(
                    f"{len(records)} of {n_chunks} chunks are finished and kept in {store.folder}; "
                    "run the same command again to compute only the others"
                )
            raise
        finally:
            bar.close()
        info["workers"] = len(client.scheduler_info().get("workers", {}))
    return records, info


def _ensemble_of(records: dict[int, dict[str, Any]]) -> tuple[list[str], list[float]]:
    """Member names and weights, the same in every chunk's record (else an error)."""
    first = records[min(records)]
    for chunk, record in records.items():
        if record["members"] != first["members"] or record["weights"] != first["weights"]:
            raise RuntimeError(
                f"chunk {chunk} was scored by members {record['members']} with weights {record['weights']}, "
                f"chunk {min(records)} by {first['members']} with {first['weights']}; re-run with --restart"
            )
    return list(first["members"]), list(first["weights"])


def _frame_slice(predictions, scores, first: int, stop: int):
    """Frames ``first:stop`` of a :class:`PredictionSet` and its :class:`EnsembleScores` (exact slices)."""
    from dataclasses import replace

    from hetens.rescore.arrays import FrameArrays, PredictionSet

    frames = predictions.frames
    atoms = slice(int(frames.offsets[first]), int(frames.offsets[stop]))
    part = FrameArrays(
        path=frames.path,
        n_atoms=frames.n_atoms[first:stop],
        numbers=frames.numbers[atoms],
        positions=frames.positions[atoms],
        cells=frames.cells[first:stop],
        pbc=frames.pbc[first:stop],
        indices=frames.indices[first:stop],
    )
    sliced = PredictionSet(
        names=list(predictions.names),
        frames=part,
        member_energies=predictions.member_energies[first:stop],
        member_forces=predictions.member_forces[atoms],
        member_stresses=None if predictions.member_stresses is None else predictions.member_stresses[first:stop],
        sources=list(predictions.sources),
    )
    sliced_scores = replace(
        scores,
        uncertainty=scores.uncertainty[first:stop],
        atomic_uncertainty=scores.atomic_uncertainty[atoms],
        member_max_deviation=scores.member_max_deviation[first:stop],
        most_deviating=scores.most_deviating[first:stop],
        energy=scores.energy[first:stop],
        energy_std=scores.energy_std[first:stop],
        forces=scores.forces[atoms],
        stress=None if scores.stress is None else scores.stress[first:stop],
        member_weights=None if scores.member_weights is None else scores.member_weights[first:stop],
        frame_predictor_weights=None
        if scores.frame_predictor_weights is None
        else scores.frame_predictor_weights[first:stop],
    )
    return sliced, sliced_scores


def _finish(result, store, records, info, cluster_spec, chunk_size, keep_chunks):
    """Add the ``cluster`` entry to the report; remove the chunk folder unless asked to keep it."""
    computed = [records[i] for i in info["computed"]]
    result.report["cluster"] = {
        "cluster": cluster_spec.text if cluster_spec is not None else "client",
        "workers": info["workers"],
        "dashboard": info["dashboard"],
        "chunk_size": chunk_size,
        "chunks": len(records),
        "chunks_reused": len(info["reused"]),
        "chunks_computed": len(computed),
        "frames_computed": int(sum(r["frames"] for r in computed)),
        "retries": int(sum(max(0, r["attempts"] - 1) for r in computed)),
        "worker_load_s": [r["load_s"] for r in computed if r.get("load_s")],
        "compute_s": round(sum(r["compute_s"] for r in computed), 3),
        "chunks_folder": str(store.folder) if keep_chunks else None,
        "run_id": store.run_id,
    }
    if not keep_chunks:
        store.remove()
    return result
