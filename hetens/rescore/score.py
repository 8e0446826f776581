"""Rescore structures with the ensemble: live members, or predictions made elsewhere.

- :func:`score_live` streams frames from any ASE-readable files through the
  members (batched where the family allows, see
  :mod:`hetens.rescore.batched`) and appends annotated frames to the output
  as they are done: memory holds one batch of structures, plus three floats
  per frame for the summary.
- :func:`score_precomputed` reads M prediction files, checks they align,
  and computes U for all frames at once (vectorised).

Both write extxyz frames made by :func:`hetens.frames.annotate` (ensemble
energy/forces/stress as the frame's results, U and friends under ``hetens_``
keys) and return a :class:`ScoreResult` whose ``report`` is the summary of
:mod:`hetens.rescore.report`. Extra keys written here:

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

The output appears only when complete (written beside it, then renamed). If
the run stops early (a member fails, Ctrl-C), the frames already scored are
kept in ``OUT.partial.extxyz`` and the error says so.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hetens.atomic_io import check_output, ensure_writable
from hetens.errors import AlignmentError, FrameReadError, Interrupted, MemberFailedError
from hetens.frames import annotate
from hetens.rescore.arrays import FrameArrays, PredictionSet, frame_arrays_from_atoms
from hetens.rescore.precomputed import (
    DEFAULT_POSITION_TOL,
    check_alignment,
    labelled_frame_arrays,
    load_predictions,
    read_frame_arrays,
)
from hetens.rescore.reading import FrameSource, count_frames, iter_frames
from hetens.rescore.report import build_report
from hetens.rescore.scoring import (
    EnsembleScores,
    ReferenceErrors,
    frame_results,
    reference_errors,
    score_predictions,
)
from hetens.weights import inverse_rmse_weights, normalise_weights

__all__ = [
    "ScoreResult",
    "score_live",
    "score_precomputed",
    "score_loaded_predictions",
    "ScoredPredictions",
    "predict_frames",
    "predict_file",
    "resolve_member_weights",
    "score_ensemble_predictions",
    "pack_member_forces",
    "unpack_member_forces",
    "MEMBER_FORCES_KEY",
    "MEMBER_STRESSES_KEY",
    "EPS_KEY",
    "SOURCE_KEY",
]

MEMBER_FORCES_KEY = "hetens_member_forces"
MEMBER_STRESSES_KEY = "hetens_member_stresses"
EPS_KEY = "hetens_eps"
SOURCE_KEY = "hetens_source"
_OUTPUT_SUFFIXES = (".xyz", ".extxyz")


@dataclass
class ScoreResult:
    """What a scoring run produced.

    Attributes:
        report: the summary (see :mod:`hetens.rescore.report`), JSON-ready.
        output: the written file, or ``None``.
        uncertainty: (F,) U per frame, eV/Å.
        n_atoms: (F,) atom counts.
        elapsed_s: wall time of the run, s.
    """

    report: dict[str, Any]
    output: Path | None
    uncertainty: np.ndarray
    n_atoms: np.ndarray
    elapsed_s: float
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ helpers


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


class _Progress:
    """A tqdm bar on a terminal, a log line every ``interval`` seconds otherwise, or nothing."""

    def __init__(self, total: int | None, mode: str = "auto", interval: float = 30.0, label: str = "scoring"):
        if mode not in ("auto", "bar", "log", "off"):
            raise ValueError(f"progress must be auto, bar, log or off; got {mode!r}")
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode, self.total, self.interval, self.label = mode, total, interval, label
        self.count = 0
        self.logged = False
        self.start = self.last = time.perf_counter()
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", desc=label, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "log" and time.perf_counter() - self.last >= self.interval:
            self.last = time.perf_counter()
            self._log()

    def _log(self) -> None:
        self.logged = True
        elapsed = time.perf_counter() - self.start
        of = f"/{self.total}" if self.total else ""
        rate = self.count / elapsed if elapsed > 0 else 0.0
        print(
            f"hetens: {self.label} {self.count}{of} frames, {rate:.2f} frames/s, {elapsed:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log" and self.logged:
            self._log()  # a closing line, when the run was long enough to log at all


class _StagedOutput:
    """Append frames to a hidden file beside ``path``; rename it over ``path`` on success.

    On failure the frames written so far are kept in ``<stem>.partial<suffix>``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = ensure_writable(path)
        if self.path.suffix.lower() not in _OUTPUT_SUFFIXES:
            raise ValueError(f"output {self.path} must be an extxyz file (.extxyz or .xyz)")
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.partial = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        self.count = 0
        self.handle = None

    def __enter__(self) -> _StagedOutput:
        self.handle = open(self.tmp, "w")
        return self

    def write(self, atoms) -> None:
        """Append one frame (formatted first, written in one call, so Ctrl-C never
        leaves half a frame) and flush it to the OS (fsync once, at the end)."""
        from hetens.atomic_io import frame_text

        self.handle.write(frame_text(atoms))
        self.handle.flush()
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
            return
        if self.count:
            os.replace(self.tmp, self.partial)
            note = f"{self.count} frames scored before this were kept in {self.partial}"
            if hasattr(exc, "add_note"):
                exc.add_note(note)  # Python >= 3.11; the CLI prints notes
            else:
                print(f"hetens: {note}", file=sys.stderr)
        else:
            self.tmp.unlink(missing_ok=True)


def _chunks(
    items: Iterable[tuple[FrameSource, Any]], size: int, max_atoms: int | None = None
) -> Iterator[list[tuple[FrameSource, Any]]]:
    """Consecutive frames of one file: at most ``size`` frames and (beyond the first) ``max_atoms`` atoms."""
    chunk: list[tuple[FrameSource, Any]] = []
    atoms_in_chunk = 0
    for item in items:
        n = len(item[1])
        if chunk and (
            len(chunk) == size
            or item[0].path != chunk[0][0].path
            or (max_atoms is not None and atoms_in_chunk + n > max_atoms)
        ):
            yield chunk
            chunk, atoms_in_chunk = [], 0
        chunk.append(item)
        atoms_in_chunk += n
    if chunk:
        yield chunk


def _geometry(chunk: list[tuple[FrameSource, Any]]) -> FrameArrays:
    sources = [s for s, _ in chunk]
    return frame_arrays_from_atoms(
        [a for _, a in chunk],
        path=sources[0].path,
        indices=[s.index if s.index is not None else s.position for s in sources],
    )


# -------------------------------------------------------------- live members


def predict_frames(calc, chunk: list[tuple[FrameSource, Any]], *, batched: bool = True) -> PredictionSet:
    """Evaluate every member of ``calc`` on a list of ``(source, atoms)``; member arrays out.

    Members with a batched path (:mod:`hetens.rescore.batched`) take the
    whole chunk in one call; the others run frame by frame as the ensemble
    calculator runs them (isolated members in their worker processes,
    concurrently).

    Member failures follow ``calc.on_member_error``. ``"raise"``: the first
    one raises. ``"drop"``: the member is left out of the frames it failed
    on (a batch that fails is re-run frame by frame to find them), its
    entries there are NaN, ``dropped`` records why, and ``calc.min_members``
    is enforced per frame, as in MD.

    Raises:
        MemberFailedError: naming the member and the file and frame it failed on.
    """
    from hetens.rescore.batched import evaluate_batch, has_batched_path
    from hetens.workers.pool import evaluate_members, start_workers

    frames = [atoms for _, atoms in chunk]
    members = calc.members
    dropping = calc.on_member_error == "drop"
    with_stress = [bool(calc.provides_stress(atoms)) for atoms in frames]
    in_batches = [m for m, member in enumerate(members) if batched and has_batched_path(member)]
    one_by_one = [m for m in range(len(members)) if m not in in_batches]
    outputs: list[list] = [[None] * len(frames) for _ in members]
    start_workers(members)
    # Before any model runs: structure problems always raise, naming the frame;
    # a member lacking an element raises, or (drop) sits those frames out.
    failures = [calc.check_structure(atoms, label=str(source)) for source, atoms in chunk]
    for m in in_batches:
        member = members[m]
        todo = [f for f in range(len(frames)) if member.name not in failures[f]]
        try:
            results = evaluate_batch(member, [frames[f] for f in todo], [with_stress[f] for f in todo])
        except Exception as exc:
            if not dropping:
                _name_failing_frame(member, [chunk[f] for f in todo], [with_stress[f] for f in todo], exc)
            results = _one_by_one(member, chunk, with_stress, todo, failures)
        for f, result in zip(todo, results):
            outputs[m][f] = result
    for f, ((source, atoms), flag) in enumerate(zip(chunk, with_stress)):
        group = [m for m in one_by_one if members[m].name not in failures[f]]
        try:
            results = evaluate_members(
                [members[m] for m in group], atoms, flag, failures=failures[f] if dropping else None
            ) if group else []
        except Exception as exc:
            for m in group:  # name the member that fails on this frame
                _name_failing_frame(members[m], [(source, atoms)], [flag], None)
            raise MemberFailedError(
                f"evaluating {source} ({atoms.get_chemical_formula()}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        for m, result in zip(group, results):
            outputs[m][f] = result
        if failures[f]:
            failures[f] = {name: _naming(source, exc) for name, exc in failures[f].items()}
            calc.report_drops(atoms, failures[f], len(members) - len(failures[f]), label=str(source))
        if not calc.allow_mixed_reference:
            by_name = {members[m].name: outputs[m][f] for m in range(len(members)) if outputs[m][f] is not None}
            calc.check_energy_reference(by_name, atoms, label=str(source))
    return _prediction_set(calc, chunk, outputs, any(with_stress), failures)


def _one_by_one(member, chunk, with_stress, todo: list[int], failures: list[dict]) -> list:
    """``member`` on frames ``todo`` one at a time; a frame it fails on gets ``None`` and a failure."""
    from hetens.calculator import evaluate_member

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


def _naming(source: FrameSource, error: Exception) -> Exception:
    """``error`` with ``source`` (file and frame) in front of its message, once."""
    if str(error).startswith(f"{source}:"):
        return error
    named = MemberFailedError(f"{source}: {error}")
    named.__cause__ = error
    return named


def _prediction_set(calc, chunk, outputs: list[list], with_stress: bool, failures: list[dict]) -> PredictionSet:
    """Member outputs (M lists of F ``(energy, forces, stress)`` or ``None``) as arrays; NaN where dropped."""
    from hetens.combine import stack_member_outputs

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
    from hetens.calculator import evaluate_member

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
    batch_size: int = 16,
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
    bar = _Progress(sum(counts) if None not in counts else None, progress, label="predicting")
    parts = []
    try:
        for chunk in _chunks(iter_frames(paths, index, format), batch_size, 4096):
            parts.append(predict_frames(calc, chunk, batched=batched))
            bar.update(len(chunk))
    finally:
        bar.close()
    if not parts:
        raise FrameReadError(f"no frames selected from {', '.join(map(str, paths))} (index {index!r})")
    return concatenate_predictions(parts)


def _annotated(atoms, source, predictions, scores, frame, names, *, keep_member_forces, eps=None):
    results = frame_results(predictions, scores, frame)
    extra = {SOURCE_KEY: f"{source.path}:{source.index if source.index is not None else source.position}"}
    if eps is not None:
        extra[EPS_KEY] = float(eps)
    out = annotate(atoms, results, names, scores.weights, **extra)
    if keep_member_forces:
        out.arrays[MEMBER_FORCES_KEY] = pack_member_forces(results["member_forces"])
        if "member_stresses" in results:
            out.info[MEMBER_STRESSES_KEY] = np.asarray(results["member_stresses"], dtype=float).reshape(-1)
    return out


def score_live(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    calc=None,
    *,
    index: Any = ":",
    format: str | None = None,
    reference: str | os.PathLike | None = None,
    reference_energy_key: str = "energy",
    reference_forces_key: str = "forces",
    position_tol: float = DEFAULT_POSITION_TOL,
    batch_size: int = 16,
    max_batch_atoms: int = 4096,
    batched: bool = True,
    keep_member_forces: bool = False,
    progress: str = "auto",
) -> ScoreResult:
    """Score every selected frame of ``inputs`` with live members, streaming to ``output``.

    Args:
        inputs: one or more ASE-readable files.
        output: extxyz file to write (complete or not at all).
        calc: a :class:`~hetens.HeterogeneousEnsembleCalculator`; the default
            offline ensemble when ``None``.
        index: frame selection applied to each input (ASE syntax).
        format: ASE format of the inputs, guessed when ``None``.
        reference: a file with reference (DFT) energies/forces for the same
            frames; adds errors, eps and rho to the report.
        reference_energy_key, reference_forces_key: where the reference
            labels are (``REF_energy``...; default: the calculator results).
        position_tol: Å, for checking the reference holds the same frames.
        batch_size: frames evaluated per model call (where batched).
        max_batch_atoms: atoms per model call at most (a larger frame goes alone),
            to bound memory (GPU memory above all) on big cells.
        batched: use the families' batched paths (``False``: per-frame ASE loop).
        keep_member_forces: also write each member's forces and stress.
        progress: ``auto`` (bar on a terminal, a log line every 30 s
            otherwise), ``bar``, ``log`` or ``off``.

    Raises:
        hetens.errors.Interrupted: on Ctrl-C (a ``KeyboardInterrupt``), once the
            complete frames scored so far are kept in ``OUT.partial.extxyz``.
    """
    if calc is None:
        from hetens.ensemble import default_ensemble

        calc = default_ensemble()
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1; got {batch_size}")
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    check_output(output, [*paths, reference])
    start = time.perf_counter()
    counts = [count_frames(p, index, format) for p in paths]
    total = sum(counts) if all(c is not None for c in counts) else None
    ref_frames = None
    if reference is not None:
        ref_count = count_frames(reference, index)
        if total is not None and ref_count is not None and ref_count != total:
            raise AlignmentError(
                f"reference {reference} holds {ref_count} selected frames but the inputs hold {total}; "
                "the reference must hold the same frames in the same order"
            )
        ref_frames = iter_frames(reference, index)
    names = calc.member_names
    u_parts, n_parts, std_parts, error_parts, dropped_parts = [], [], [], [], []
    bar = _Progress(total, progress)
    out = _StagedOutput(output)
    current = None  # the frame being scored, for an interrupt's message
    try:
        with out:
            for chunk in _chunks(iter_frames(paths, index, format), batch_size, max_batch_atoms):
                current = chunk[0][0]
                predictions = predict_frames(calc, chunk, batched=batched)
                scores = score_ensemble_predictions(calc, predictions)
                eps = None
                if ref_frames is not None:
                    errors = _reference_chunk(
                        ref_frames,
                        reference,
                        predictions,
                        scores,
                        len(chunk),
                        reference_energy_key,
                        reference_forces_key,
                        position_tol,
                    )
                    error_parts.append(errors)
                    eps = errors.eps
                for f, (source, atoms) in enumerate(chunk):
                    current = source
                    out.write(
                        _annotated(
                            atoms,
                            source,
                            predictions,
                            scores,
                            f,
                            names,
                            keep_member_forces=keep_member_forces,
                            eps=None if eps is None else eps[f],
                        )
                    )
                current = None
                u_parts.append(scores.uncertainty)
                n_parts.append(predictions.frames.n_atoms)
                std_parts.append(scores.energy_std)
                dropped_parts.append(dropped_counts(predictions))
                bar.update(len(chunk))
            if ref_frames is not None and next(ref_frames, None) is not None:
                raise AlignmentError(
                    f"reference {reference} holds more frames than the inputs; "
                    "the reference must hold the same frames in the same order"
                )
            if not u_parts:
                raise FrameReadError(
                    f"no frames selected from {', '.join(map(str, paths))} (index {index!r})"
                )
    except KeyboardInterrupt as exc:  # Ctrl-C: complete frames are in OUT.partial.extxyz
        where = str(current) if current is not None else None
        raise Interrupted(out.count, total, where=where, kept=out.partial if out.count else None) from exc
    finally:
        bar.close()
    return _result(
        names, calc.weights, u_parts, n_parts, std_parts, error_parts, Path(output), start, dropped_parts,
        roles=calc.roles,
    )


def _reference_chunk(ref_frames, reference, predictions, scores, size, energy_key, forces_key, tol):
    items = list(itertools.islice(ref_frames, size))
    if len(items) < size:
        raise AlignmentError(
            f"reference {reference} ends before the inputs do "
            f"(after {predictions.frames.frame_label(len(items))}"
            " there is no reference frame); it must hold the same frames in the same order"
        )
    labels = labelled_frame_arrays(
        items, str(reference), energy_key=energy_key, forces_key=forces_key, require_energy=False
    )
    check_alignment(predictions.frames, labels, tol)
    return reference_errors(predictions, scores, labels)


def dropped_counts(predictions: PredictionSet) -> np.ndarray:
    """(M,) how many of the frames of ``predictions`` each member was dropped from."""
    return np.array([sum(name in why for why in predictions.dropped.values()) for name in predictions.names])


def score_ensemble_predictions(calc, predictions: PredictionSet) -> EnsembleScores:
    """:func:`score_predictions` with the weights and roles of the ensemble ``calc``.

    With witnesses, the predictions equal those of the predictors-only
    ensemble bit for bit (the calculator's ``combine_weights``).
    """
    if not calc.has_witnesses:
        return score_predictions(predictions, calc.weights)
    return score_predictions(predictions, calc.combine_weights, predictors=calc.predictor_mask)


def _result(
    names, weights, u_parts, n_parts, std_parts, error_parts, output, start, dropped_parts=(), roles=None
) -> ScoreResult:
    u = np.concatenate(u_parts) if u_parts else np.zeros(0)
    n_atoms = np.concatenate(n_parts) if n_parts else np.zeros(0, dtype=np.int64)
    errors = ReferenceErrors.concatenate(error_parts) if error_parts else None
    dropped = np.sum(dropped_parts, axis=0) if len(dropped_parts) else None
    report = build_report(
        names, weights, u, n_atoms, np.concatenate(std_parts) if std_parts else [], errors, dropped, roles=roles
    )
    elapsed = time.perf_counter() - start
    report["elapsed_s"] = round(elapsed, 3)
    report["frames_per_s"] = round(u.size / elapsed, 3) if elapsed > 0 else None
    report["output"] = str(output) if output else None
    return ScoreResult(report=report, output=output, uncertainty=u, n_atoms=n_atoms, elapsed_s=elapsed)


# ------------------------------------------------------- precomputed members


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
    *,
    names: Sequence[str] | None = None,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    force_rmse: Sequence[float] | None = None,
    reference: str | os.PathLike | None = None,
    index: Any = ":",
    energy_key: str = "energy",
    forces_key: str = "forces",
    reference_energy_key: str = "energy",
    reference_forces_key: str = "forces",
    position_tol: float = DEFAULT_POSITION_TOL,
    keep_member_forces: bool = False,
    jobs: int = 1,
    progress: str = "auto",
    witnesses: Sequence[str] = (),
) -> ScoreResult:
    """Score predictions made elsewhere: one file per member, the same frames in each.

    Args:
        predictions: (M,) prediction files, or a loaded :class:`PredictionSet`.
        output: extxyz file to write, or ``None`` for the summary only.
        names: (M,) member names (default: file names without suffix).
        weights: (M,) weights, or name -> weight (e.g. from
            :func:`hetens.read_weights_file`; unnamed members are dropped).
        force_rmse: (M,) member force RMSEs, eV/Å (inverse-RMSE weights).
        reference: reference (DFT) labels for the same frames: adds member
            errors, eps and rho to the report, ``hetens_eps`` to each frame.
        index, energy_key, forces_key, reference_energy_key,
        reference_forces_key, position_tol, jobs: see
            :func:`hetens.rescore.precomputed.load_predictions`.
        keep_member_forces: also write each member's forces (and stresses).
        progress: progress display while writing (see :func:`score_live`).
        witnesses: names (among ``names``) of the members that are witnesses:
            their forces enter U only (docs/witnesses.md).

    Raises:
        AlignmentError: the files do not hold the same frames (names file and frame).
    """
    start = time.perf_counter()
    if output is not None:
        inputs = [] if isinstance(predictions, PredictionSet) else list(predictions)
        check_output(output, [*inputs, reference])
    scored = score_loaded_predictions(
        predictions,
        names=names,
        weights=weights,
        force_rmse=force_rmse,
        reference=reference,
        index=index,
        energy_key=energy_key,
        forces_key=forces_key,
        reference_energy_key=reference_energy_key,
        reference_forces_key=reference_forces_key,
        position_tol=position_tol,
        jobs=jobs,
        witnesses=witnesses,
    )
    predictions, scores, errors = scored.predictions, scored.scores, scored.errors
    out_path = None
    if output is not None:
        template = (
            reference if reference is not None else predictions.sources[0] if predictions.sources else None
        )
        _write_precomputed(output, template, index, predictions, scores, errors, keep_member_forces, progress)
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
        result = _result(
            self.predictions.names,
            self.weights,
            [self.scores.uncertainty],
            [self.predictions.frames.n_atoms],
            [self.scores.energy_std],
            [self.errors] if self.errors is not None else [],
            output,
            start,
            roles=self.roles,
        )
        if self.left_out:
            result.report["dropped_members"] = self.left_out
            result.notes.append(f"members not in the weights were left out: {', '.join(self.left_out)}")
        return result


def score_loaded_predictions(
    predictions: Sequence[str | os.PathLike] | PredictionSet,
    *,
    names: Sequence[str] | None = None,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    force_rmse: Sequence[float] | None = None,
    reference: str | os.PathLike | None = None,
    index: Any = ":",
    energy_key: str = "energy",
    forces_key: str = "forces",
    reference_energy_key: str = "energy",
    reference_forces_key: str = "forces",
    position_tol: float = DEFAULT_POSITION_TOL,
    jobs: int = 1,
    witnesses: Sequence[str] = (),
) -> ScoredPredictions:
    """The steps of :func:`score_precomputed` before writing: load, weigh, score all frames at once.

    Arguments as for :func:`score_precomputed`.
    """
    if not isinstance(predictions, PredictionSet):
        predictions = load_predictions(
            predictions,
            names,
            index=index,
            energy_key=energy_key,
            forces_key=forces_key,
            position_tol=position_tol,
            jobs=jobs,
        )
    unknown = [n for n in witnesses if n not in predictions.names]
    if unknown:
        raise ValueError(
            f"witness name(s) {', '.join(unknown)} match no prediction file; the members are "
            f"{', '.join(predictions.names)} (name them with --names)"
        )
    kept, w, left_out = resolve_member_weights(predictions.names, weights, force_rmse)
    if left_out:
        predictions = predictions.subset(kept)
    roles = ["witness" if n in witnesses else "predictor" for n in predictions.names]
    from hetens.calculator import check_member_counts

    check_member_counts(roles)
    if "witness" in roles:
        scores = score_predictions(predictions, w, predictors=np.array([r == "predictor" for r in roles]))
    else:
        scores = score_predictions(predictions, w)
    errors = None
    if reference is not None:
        ref_arrays = read_frame_arrays(
            reference,
            index,
            energy_key=reference_energy_key,
            forces_key=reference_forces_key,
            require_energy=False,
        )
        check_alignment(predictions.frames, ref_arrays, position_tol)
        errors = reference_errors(predictions, scores, ref_arrays)
    return ScoredPredictions(predictions, w, scores, errors, left_out, roles if "witness" in roles else None)


def _write_precomputed(output, template, index, predictions, scores, errors, keep_member_forces, progress):
    """Annotate the template file's frames (keeping their info) or, without one, frames built from arrays."""
    frames = predictions.frames
    if template is not None:
        items = iter_frames(template, index)
    else:
        items = ((FrameSource("", i, i), frames.to_atoms(i)) for i in range(frames.n_frames))
    bar = _Progress(frames.n_frames, progress, label="writing")
    try:
        with _StagedOutput(output) as out:
            for f, (source, atoms) in enumerate(items):
                if f >= frames.n_frames or len(atoms) != frames.n_atoms[f]:
                    raise AlignmentError(
                        f"{source} does not match the frames read before; was the file changed?"
                    )
                out.write(
                    _annotated(
                        atoms,
                        source,
                        predictions,
                        scores,
                        f,
                        predictions.names,
                        keep_member_forces=keep_member_forces,
                        eps=None if errors is None else errors.eps[f],
                    )
                )
                bar.update(1)
    finally:
        bar.close()
