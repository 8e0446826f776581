"""An exploration campaign: one monitored MD per (structure, condition), resumable, locally or on Dask.

The output folder holds::

    OUT/campaign.json          the plan and settings (written atomically; a resume must match it)
    OUT/runs/RUN_ID/md.csv     every run's uncertainty log
    OUT/runs/RUN_ID/candidates.extxyz, failed.extxyz, halt.extxyz
    OUT/runs/RUN_ID/result.json  written atomically when the run has finished (completed, halted
                               or failed): a run with it is never run again
    OUT/summary.csv, summary.png, candidates.extxyz, failed.extxyz   (see hetens.explore.collect)

A run that fails (a member error, a bad geometry) is recorded as ``failed``
with its error and does not stop the others; a halted run is a finished run.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hetens.explore.conditions import Condition

__all__ = ["ExploreSettings", "RunTask", "CampaignResult", "plan_runs", "run_campaign", "run_one", "explore_task",
           "read_structures"]

CAMPAIGN_FILE = "campaign.json"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class ExploreSettings:
    """What every run of a campaign shares (the MD and the monitoring).

    Attributes:
        timestep_fs, friction_per_fs, taut_fs, taup_fs, bulk_modulus_GPa: as
            for :func:`hetens.monitor.make_md`.
        dynamics: constant-volume dynamics (``langevin``, ``nve``, ``berendsen``).
        npt_dynamics: dynamics of conditions with a pressure (``npt-berendsen``, ``npt-mtk``).
        flag_above, flag_below: the trust window (LO, HI) in eV/Å; ``flag_below``
            ``None``: no upper level.
        flag_spacing: minimum steps between two candidates of one run.
        halt_above: stop a run when U exceeds this (eV/Å).
        driver, check_every: a driver with periodic checks (:mod:`hetens.monitor.driver`), or ``None``.
    """

    timestep_fs: float = 2.0
    dynamics: str = "langevin"
    npt_dynamics: str = "npt-berendsen"
    friction_per_fs: float = 0.01
    taut_fs: float = 100.0
    taup_fs: float = 1000.0
    bulk_modulus_GPa: float = 100.0
    flag_above: float | None = None
    flag_below: float | None = None
    flag_spacing: int = 0
    halt_above: float | None = None
    driver: str | None = None
    check_every: int | None = None


@dataclass
class RunTask:
    """One run: what to simulate and where (picklable, for Dask).

    Attributes:
        run_id: the run's folder name, ``s000_T600K_P-_n200_s0``.
        structure_index: index of the structure in the structures file.
        structure: the starting ``Atoms`` (no calculator).
        condition: the :class:`Condition`.
        settings: the :class:`ExploreSettings`.
        folder: absolute path of ``OUT/runs/RUN_ID``.
        ensemble: an :class:`~hetens.distributed.EnsembleSpec` (for a Dask worker) or ``None``.
        worker_threads: torch threads on a Dask worker.
    """

    run_id: str
    structure_index: int
    structure: Any
    condition: Condition
    settings: ExploreSettings
    folder: str
    ensemble: Any = None
    worker_threads: int | None = None


@dataclass
class CampaignResult:
    """What a campaign did: every run's record (in plan order), which were computed now and which
    reused; the files written; candidates kept (of ``candidates_found`` in the runs, ``candidates_distinct``
    of them no near-duplicate of another; ``--max-candidates`` keeps the highest-U of those) and failed frames."""

    out: Path
    records: list[dict[str, Any]]
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    candidates: int = 0
    candidates_found: int = 0
    candidates_distinct: int = 0
    failed_frames: int = 0


def read_structures(path: str | os.PathLike) -> list:
    """Every frame of an ASE-readable file (calculators removed); ValueError for a missing or empty file."""
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"structures file {path} does not exist")
    try:
        frames = read(path, ":")
    except StopIteration:
        frames = []
    except Exception as exc:  # noqa: BLE001 - ASE raises many kinds for a bad file
        if path.stat().st_size == 0:
            frames = []
        else:
            raise ValueError(f"structures file {path} cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise ValueError(f"structures file {path} holds no structure; give a file with at least one frame")
    for atoms in frames:
        atoms.calc = None
    return frames


def plan_runs(structures: Sequence, conditions: Sequence[Condition], out: str | os.PathLike,
              settings: ExploreSettings, ensemble: Any = None, worker_threads: int | None = None) -> list[RunTask]:
    """One :class:`RunTask` per structure x condition (structure-major order)."""
    folder = Path(out).resolve() / "runs"
    return [
        RunTask(f"s{i:03d}_{c.label()}", i, atoms, c, settings, str(folder / f"s{i:03d}_{c.label()}"),
                ensemble, worker_threads)
        for i, atoms in enumerate(structures) for c in conditions
    ]


def finished_record(task: RunTask) -> dict[str, Any] | None:
    """The run's record when it has finished (``result.json`` readable), else ``None``."""
    path = Path(task.folder) / RESULT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: Path, data: Any) -> None:
    from hetens.io.files import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, default=str))


def run_one(task: RunTask, calc) -> dict[str, Any]:
    """Run one task with ``calc`` (the ensemble); write its files and ``result.json``; return the record.

    Never raises for a failing run: the record has ``status = "failed"`` and
    the error's one-line message (``KeyboardInterrupt`` still propagates).
    """
    from hetens.jobs.md import run_monitored
    from hetens.monitor.observers import UncertaintyMonitor
    from hetens.monitor.driver import CheckedDriverCalculator
    from hetens.monitor.dynamics import make_md

    s, c = task.settings, task.condition
    folder = Path(task.folder)
    folder.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "run": task.run_id, "structure": task.structure_index,
        "formula": task.structure.get_chemical_formula(), "condition": c.describe(), **c.as_dict(),
        "dynamics": s.npt_dynamics if c.npt else s.dynamics, "log": str(folder / "md.csv"),
    }
    start = time.perf_counter()
    try:
        atoms = task.structure.copy()
        atoms.calc = calc if s.driver is None else CheckedDriverCalculator(calc, s.driver, s.check_every or 10)
        dyn = make_md(atoms, timestep_fs=s.timestep_fs, temperature_K=c.temperature_K, dynamics=record["dynamics"],
                      friction_per_fs=s.friction_per_fs, taut_fs=s.taut_fs,
                      pressure_GPa=c.pressure_GPa or 0.0, taup_fs=s.taup_fs,
                      bulk_modulus_GPa=s.bulk_modulus_GPa, seed=c.seed)
        with UncertaintyMonitor(
            dyn, log=folder / "md.csv",
            flag_above=s.flag_above, flagged=folder / "candidates.extxyz" if s.flag_above is not None else None,
            flag_spacing=s.flag_spacing, flag_below=s.flag_below,
            failed=folder / "failed.extxyz" if s.flag_below is not None else None,
            halt_above=s.halt_above, halt_file=folder / "halt.extxyz" if s.halt_above is not None else None,
        ) as monitor:
            outcome = run_monitored(dyn, c.steps, monitor)
        record.update(outcome.as_dict())
        record["candidates"] = outcome.flagged
        if outcome.trust is not None:
            record.update(outcome.trust)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing run is recorded, the campaign goes on
        line = " ".join(str(exc).split()) or type(exc).__name__
        record.update(status="failed", error=f"{type(exc).__name__}: {line}",
                      traceback=traceback.format_exc(limit=4))
    record["wall_s"] = round(time.perf_counter() - start, 3)
    record["finished"] = time.time()
    _write_json_atomic(folder / RESULT_FILE, record)
    return record


def explore_task(task: RunTask) -> dict[str, Any]:
    """What a Dask worker runs: the worker's cached ensemble (built once per process), then :func:`run_one`."""
    from hetens.distributed.tasks import WORKER_LOCK, cached_ensemble

    done = finished_record(task)
    if done is not None:  # a duplicate attempt finished first
        return done
    with WORKER_LOCK:
        calc, _ = cached_ensemble(task.ensemble, task.worker_threads)
        return run_one(task, calc)


def structure_hash(atoms) -> str:
    """A short hash of a structure (numbers, positions, cell, pbc), to tell a changed structures file."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    rounded = (np.round(atoms.positions, 5) + 0.0, np.round(atoms.cell.array, 5) + 0.0)  # + 0.0: no -0.0
    for array in (atoms.numbers, *rounded, atoms.pbc):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _check_campaign_file(out: Path, description: dict[str, Any], restart: bool) -> None:
    """Write ``campaign.json``, or check that the one there describes the same campaign
    (the same settings, and the same structure at every index both have)."""
    path = out / CAMPAIGN_FILE
    if path.exists() and not restart:
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
        changed = [i for i, (a, b) in enumerate(zip((old or {}).get("structure_hashes", []),
                                                    description["structure_hashes"])) if a != b]
        if changed:
            raise ValueError(
                f"{out} holds a campaign whose structure {changed[0]} differs from this structures file's; use "
                "another output folder, or --restart to discard its runs"
            )
        if old is not None and old.get("settings") != description["settings"]:
            changed = sorted(k for k in description["settings"] if old.get("settings", {}).get(k)
                             != description["settings"][k])
            raise ValueError(
                f"{out} holds a campaign with other settings ({', '.join(changed)} differ); use another output "
                "folder, or --restart to discard its runs"
            )
    out.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(path, description)


def run_campaign(
    structures: str | os.PathLike | Sequence,
    conditions: Sequence[Condition],
    out: str | os.PathLike,
    ensemble: Any = None,
    *,
    settings: ExploreSettings | None = None,
    cluster: Any = None,
    worker_threads: int | None = None,
    restart: bool = False,
    retry_failed: bool = False,
    max_candidates: int | None = None,
    dedup_tol: float | None = None,
    on_run: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CampaignResult:
    """Run (or resume) a campaign; collect its candidates and summary.

    Args:
        structures: a structures file (every frame) or a list of ``Atoms``.
        conditions: the :class:`Condition` list (:func:`~hetens.explore.condition_grid`).
        out: the output folder (created; resumed when it holds the same campaign).
        ensemble: locally, a built :class:`~hetens.HeterogeneousEnsembleCalculator`
            (used as is) or anything :meth:`EnsembleSpec.of` takes (built
            once); with ``cluster`` an :class:`~hetens.distributed.EnsembleSpec`
            or member specs (each worker builds it once).
        settings: :class:`ExploreSettings` (default: Langevin at 2 fs, no window).
        cluster: ``None`` (one run after another here), or what ``hetens score
            --cluster`` takes: ``local:N``, a scheduler address, a YAML cluster file, a Client.
        worker_threads: torch threads per Dask worker.
        restart: discard the runs of an earlier campaign in ``out``.
        retry_failed: run again the runs recorded as failed.
        max_candidates, dedup_tol: for the collected ``candidates.extxyz``
            (:func:`hetens.explore.collect.collect_frames`).
        on_run: called with each run's record as it finishes.
        progress: called with one line per finished run.

    Returns:
        :class:`CampaignResult`. Ctrl-C (or an error outside the runs) leaves
        the finished runs on disk; calling again resumes.
    """
    import shutil

    from hetens.explore.collect import collect_campaign

    settings = settings or ExploreSettings()
    frames = list(read_structures(structures)) if isinstance(structures, (str, os.PathLike)) else list(structures)
    if not frames:
        raise ValueError("a campaign needs at least one structure")
    if not conditions:
        raise ValueError("a campaign needs at least one condition")
    out = Path(out)
    if restart and (out / "runs").exists():
        shutil.rmtree(out / "runs")
    spec = None
    if cluster is not None:
        from hetens.distributed.ensemble_spec import EnsembleSpec

        spec = EnsembleSpec.of(ensemble)
    tasks = plan_runs(frames, conditions, out, settings, spec, worker_threads)
    description = {"settings": asdict(settings), "runs": [t.run_id for t in tasks],
                   "conditions": [c.as_dict() for c in conditions], "structures": len(frames),
                   "structure_hashes": [structure_hash(atoms) for atoms in frames]}
    _check_campaign_file(out, description, restart)
    records: dict[str, dict[str, Any]] = {}
    for task in tasks:
        record = finished_record(task)
        if record is not None and not (retry_failed and record.get("status") == "failed"):
            records[task.run_id] = record
    reused = [t.run_id for t in tasks if t.run_id in records]
    todo = [t for t in tasks if t.run_id not in records]

    def finished(record: dict[str, Any]) -> None:
        records[record["run"]] = record
        if progress is not None:
            progress(_line(record, len(records), len(tasks)))
        if on_run is not None:
            on_run(record)

    if todo:
        if cluster is None:
            _run_here(todo, ensemble, finished)
        else:
            _run_on_cluster(todo, cluster, finished)
    ordered = [records[t.run_id] for t in tasks]
    result = CampaignResult(out, ordered, computed=[t.run_id for t in todo], reused=reused)
    collect_campaign(result, max_candidates=max_candidates, dedup_tol=dedup_tol,
                     window={"flag_above": settings.flag_above, "flag_below": settings.flag_below,
                             "halt_above": settings.halt_above})
    return result


def _line(record: dict[str, Any], done: int, total: int) -> str:
    status = record.get("status", "?")
    extra = record.get("error") if status == "failed" else (
        f"halted at step {record.get('halted_at')}" if status == "halted" else f"{record.get('steps_done')} steps")
    return f"[{done}/{total}] {record['run']}: {status} ({extra})"


def _run_here(tasks: list[RunTask], ensemble: Any, finished) -> None:
    """One run after another in this process, with one ensemble (built here unless given built)."""
    from hetens.core.calculator import HeterogeneousEnsembleCalculator

    if isinstance(ensemble, HeterogeneousEnsembleCalculator):
        for task in tasks:
            finished(run_one(task, ensemble))
        return
    from hetens.distributed.ensemble_spec import EnsembleSpec

    with EnsembleSpec.of(ensemble).build() as calc:
        for task in tasks:
            finished(run_one(task, calc))


def _run_on_cluster(tasks: list[RunTask], cluster: Any, finished) -> None:
    """The runs on Dask workers (one run at a time per worker), the cluster options of ``hetens score``."""
    from hetens.distributed.cluster import connect, import_distributed

    distributed = import_distributed()
    with connect(cluster) as client:
        token = uuid.uuid4().hex[:8]
        futures = [client.submit(explore_task, task, key=f"hetens-explore-{task.run_id}-{token}", pure=False)
                   for task in tasks]
        try:
            for future in distributed.as_completed(futures):
                finished(future.result())
        except BaseException as exc:
            client.cancel(futures)
            if hasattr(exc, "add_note"):
                exc.add_note("the runs finished so far are kept; run the same command again to do only the others")
            raise
