"""Observers that watch U during any ASE dynamics (MD or optimizer).

Attach them as ASE expects::

    dyn = Langevin(atoms, 2 * units.fs, temperature_K=300, friction=0.01 / units.fs)
    with UncertaintyLogger(dyn, "u.csv") as log, FlagWriter(dyn, "flagged.extxyz", 0.5) as flag:
        dyn.attach(log, interval=1)
        dyn.attach(flag, interval=1)
        dyn.attach(HaltOnUncertainty(dyn, 1.0, save_to="halt.extxyz"), interval=1)
        dyn.run(1000)

Each reads the U that the ensemble computed for the current step (see
:mod:`hetens.monitor.observation`); none evaluates a model. :class:`UncertaintyMonitor`
combines the three with tiered thresholds (log always, flag above
``flag_above``, halt above ``halt_above``) and reads the results once per step.

Every observer takes ``atoms`` (default: the dynamics' structure, unwrapped
from a cell filter) and ``calc`` (default ``atoms.calc``; give the ensemble
when it is wrapped in another calculator).

With a driver (:class:`~hetens.monitor.driver.CheckedDriverCalculator`) only
the check steps have a U (:attr:`Observation.fresh`): the logger writes every
step, with U left empty between checks; flagging, halting and the statistics
act on check steps only, and the halt file's ``last_safe`` frame is the last
*checked* frame below the threshold. A check above the halt threshold that
does not yet halt (``consecutive`` > 1) makes the next step a check too, so a
halt is confirmed on consecutive steps, not K steps apart.
"""

from __future__ import annotations

import csv
from abc import ABC, abstractmethod
import os
import sys
from pathlib import Path
from typing import IO, Any

from hetens.io.files import append_frame, ensure_writable, sync_handle, write_frames_atomic
from hetens.errors import UncertaintyHalt
from hetens.monitor.csvlog import format_row, log_columns
from hetens.monitor.observation import DynamicsView, Observation, annotate_state, underlying_atoms

__all__ = [
    "UncertaintyLogger",
    "FlagWriter",
    "TrajectoryWriter",
    "HaltOnUncertainty",
    "UncertaintyMonitor",
]


class _Observer(ABC):
    """Shared plumbing: a weak view of the dynamics, the atoms, ``__call__`` -> ``record``."""

    def __init__(self, dyn, atoms=None, calc=None) -> None:
        self.view = DynamicsView(dyn)
        self.atoms = underlying_atoms(dyn.atoms if atoms is None else atoms)
        self.calc = calc

    def observe(self) -> Observation:
        """Read the current step (raises if the ensemble has no current results)."""
        return Observation.read(self.view, self.atoms, self.calc)

    def __call__(self) -> None:
        self.record(self.observe())

    @abstractmethod
    def record(self, obs: Observation) -> None:
        """Act on one observed step (write a row, a frame, or halt)."""

    def close(self) -> None:
        """Release files; nothing to do for observers without one."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _check_threshold(name: str, value: float) -> float:
    value = float(value)
    if not value > 0:  # also refuses NaN
        raise ValueError(f"{name} must be a positive U in eV/A; got {value}")
    return value


def _text_output(target: str | os.PathLike | IO[str], mode: str) -> tuple[IO[str], bool]:
    """An open text handle for ``target`` and whether we own it (and must close it)."""
    if mode not in ("w", "a"):
        raise ValueError(f"mode must be 'w' (overwrite) or 'a' (append); got {mode!r}")
    if hasattr(target, "write"):
        return target, False  # type: ignore[return-value]
    if str(target) == "-":
        return sys.stdout, False
    path = ensure_writable(target)
    return open(path, mode, newline="", encoding="utf-8"), True


class UncertaintyLogger(_Observer):
    """One CSV row per observed step; each row is flushed as it is written.

    Columns (see :mod:`hetens.monitor.csvlog`): ``step, time[fs], U[eV/A],
    max_u[eV/A], energy[eV], energy_std[eV/atom], T[K], most_deviating``,
    and ``P[GPa], V[A^3]`` when the dynamics changes the cell (NPT, an
    optimizer of a cell filter). Read it back with :func:`hetens.monitor.read_log`.

    Args:
        dyn: the ASE dynamics or optimizer (kept as a weak reference).
        logfile: path, ``"-"`` for stdout, or an open text handle (left open).
        atoms, calc: see the module docstring.
        mode: ``"w"`` overwrites, ``"a"`` appends (the header is written only
            to an empty file).
        trust: a :class:`~hetens.monitor.trust.TrustWindow`: a last column
            ``trust`` with each step's level; ``True``: the column, empty (a
            driver run without a window); ``None``: no column.
    """

    def __init__(self, dyn, logfile: str | os.PathLike | IO[str], atoms=None, *, calc=None, mode: str = "w",
                 trust=None):
        super().__init__(dyn, atoms, calc)
        self.trust = trust
        self.path = None if hasattr(logfile, "write") or str(logfile) == "-" else Path(logfile)
        self._handle, self._owned = _text_output(logfile, mode)
        self._writer = csv.writer(self._handle, lineterminator="\n")
        self.rows = 0
        if not (mode == "a" and self.path is not None and self.path.stat().st_size > 0):
            self._writer.writerow(log_columns(self.view.variable_cell, trust is not None and trust is not False))
            self._handle.flush()

    def record(self, obs: Observation) -> None:
        self._writer.writerow(format_row(obs, self.view.variable_cell, self.trust))
        self._handle.flush()
        self.rows += 1

    def close(self) -> None:
        """Flush and fsync the log (a handle given by the caller is flushed, not closed)."""
        if self._handle.closed:
            return
        sync_handle(self._handle)
        if self._owned:
            self._handle.close()


class _FrameAppender:
    """An extxyz file that annotated frames are appended to, each flushed and fsynced."""

    def __init__(self, filename: str | os.PathLike, mode: str, *, lazy: bool = False) -> None:
        if mode not in ("w", "a"):
            raise ValueError(f"mode must be 'w' (overwrite) or 'a' (append); got {mode!r}")
        self.path = ensure_writable(filename)
        check_extxyz_name(self.path)
        self._mode = mode
        self._handle: IO[str] | None = None
        self.frames = 0
        if not lazy:
            # Created (or emptied) now, so a file left by an earlier run is never mistaken for this one's.
            self._handle = open(self.path, mode, encoding="utf-8")
        elif mode == "w" and self.path.exists():
            # Created only with the first frame; an earlier run's file must not pass for this one's.
            self.path.unlink()

    def append(self, frame) -> None:
        if self._handle is None:
            self._handle = open(self.path, self._mode, encoding="utf-8")
        append_frame(self._handle, frame)
        self.frames += 1

    def close(self) -> None:
        """Flush and fsync the file, then close it."""
        if self._handle is not None and not self._handle.closed:
            sync_handle(self._handle)
            self._handle.close()


def check_extxyz_name(path: str | os.PathLike) -> None:
    """Refuse a name other than ``.extxyz``/``.xyz`` for frames with U (ValueError naming the file)."""
    if Path(path).suffix.lower() not in (".extxyz", ".xyz"):
        raise ValueError(
            f"{path}: frames with U are written as extended XYZ; use a .extxyz (or .xyz) "
            "name (ASE's .traj format drops the per-atom uncertainty array)"
        )


class FlagWriter(_Observer):
    """Append frames whose U exceeds ``threshold`` to an extxyz file, ready for DFT.

    Each frame carries the ensemble energy/forces/stress (as ASE results) and
    ``hetens_U``, per-atom ``hetens_u``, ``hetens_energy_std``,
    ``hetens_member_energies``, ``hetens_step`` and ``hetens_time_fs`` (see
    :mod:`hetens.core.frames`); ``ase.io.read(path, ":")`` reads them back.

    Args:
        dyn: the ASE dynamics or optimizer.
        filename: ``.extxyz`` file, created with the first flagged frame (a
            calm run leaves none; with ``mode="w"`` a file of that name left
            by an earlier run is removed now).
        threshold: U in eV/Å; frames with ``U > threshold`` are flagged.
        atoms, calc: see the module docstring.
        min_spacing: at least this many steps (``dyn.nsteps``) between two
            flagged frames, so a long excursion does not write near-duplicates;
            0 flags every observed frame above the threshold.
        mode: ``"w"`` or ``"a"``.
        ceiling: the trust window's high level, eV/Å: frames with ``U >
            ceiling`` are not candidates (they failed) and are not written
            here; default no ceiling.
    """

    def __init__(self, dyn, filename: str | os.PathLike, threshold: float, atoms=None, *,
                 calc=None, min_spacing: int = 0, mode: str = "w", ceiling: float | None = None):
        super().__init__(dyn, atoms, calc)
        self.threshold = _check_threshold("the flag threshold", threshold)
        self.ceiling = None if ceiling is None else float(ceiling)
        if self.ceiling is not None and not self.ceiling > self.threshold:
            raise ValueError(f"the flag ceiling must be above the threshold; got {self.ceiling:g} <= "
                             f"{self.threshold:g}")
        if int(min_spacing) < 0:
            raise ValueError(f"min_spacing must be >= 0 steps; got {min_spacing}")
        self.min_spacing = int(min_spacing)
        self.last_flagged_step: int | None = None
        self._out = _FrameAppender(filename, mode, lazy=True)
        self.path = self._out.path

    @property
    def written(self) -> bool:
        """Whether the flagged file exists (at least one frame was flagged, or ``mode="a"`` found one)."""
        return self.path.exists()

    @property
    def flagged(self) -> int:
        """How many frames were written."""
        return self._out.frames

    def should_flag(self, step: int, uncertainty: float) -> bool:
        """Whether a frame at ``step`` with this U is flagged (above threshold, far enough from the last)."""
        if not uncertainty > self.threshold:  # also NaN: a step without a fresh U
            return False
        if self.ceiling is not None and uncertainty > self.ceiling:
            return False
        return self.last_flagged_step is None or step - self.last_flagged_step >= self.min_spacing

    def record(self, obs: Observation) -> None:
        if self.should_flag(obs.step, obs.uncertainty):
            extra = {} if self.ceiling is None else {"hetens_flag_ceiling": self.ceiling}
            self._out.append(obs.frame(hetens_flag_threshold=self.threshold, **extra))
            self.last_flagged_step = obs.step

    def close(self) -> None:
        self._out.close()


class TrajectoryWriter(_Observer):
    """Append every observed frame, annotated with U, to an extxyz trajectory (flushed).

    Attach with the interval you want frames at: ``dyn.attach(writer, interval=10)``.
    """

    def __init__(self, dyn, filename: str | os.PathLike, atoms=None, *, calc=None, mode: str = "w"):
        super().__init__(dyn, atoms, calc)
        self._out = _FrameAppender(filename, mode)
        self.path = self._out.path

    @property
    def frames(self) -> int:
        return self._out.frames

    def record(self, obs: Observation) -> None:
        self._out.append(obs.frame())

    def close(self) -> None:
        self._out.close()


class HaltOnUncertainty(_Observer):
    """Stop the dynamics by raising :class:`~hetens.errors.UncertaintyHalt` when U is too high.

    Halts at the ``consecutive``-th observation in a row with
    ``U > threshold``. The exception carries the offending frame and the last
    observed frame with ``U <= threshold`` (both annotated); with ``save_to``
    both are also written there (extxyz, ``hetens_role`` = ``"last_safe"`` /
    ``"offending"``). Run the dynamics with
    :func:`hetens.monitor.run_monitored` to get an outcome instead of a
    traceback.

    Args:
        dyn: the ASE dynamics or optimizer.
        threshold: U in eV/Å.
        atoms, calc: see the module docstring.
        consecutive: observations in a row above the threshold before halting.
            With a driver calculator they are checks, and each check above the
            threshold asks the driver for a check on the next step
            (:meth:`~hetens.monitor.driver.CheckedDriverCalculator.check_next`).
        save_to: extxyz file for the two frames, written atomically on halt.
    """

    def __init__(self, dyn, threshold: float, atoms=None, *, calc=None, consecutive: int = 1,
                 save_to: str | os.PathLike | None = None):
        super().__init__(dyn, atoms, calc)
        self.threshold = _check_threshold("the halt threshold", threshold)
        if int(consecutive) < 1:
            raise ValueError(f"consecutive must be >= 1 observation; got {consecutive}")
        self.consecutive = int(consecutive)
        self.save_to = None if save_to is None else ensure_writable(save_to)
        self.streak = 0
        self._last_safe: tuple[Any, Any, Any, int, float | None] | None = None

    def update(self, uncertainty: float) -> bool:
        """Count one observation; whether it is the one that halts."""
        self.streak = self.streak + 1 if uncertainty > self.threshold else 0
        return self.streak >= self.consecutive

    def record(self, obs: Observation) -> None:
        if not obs.fresh:  # between a driver's checks: no U, so no decision and no safe frame
            return
        if not self.update(obs.uncertainty):
            if self.streak == 0:
                # Cheap: a copy of the atoms and a reference to the results dict
                # (the calculator replaces it, never mutates it); annotated only on halt.
                self._last_safe = (obs.atoms.copy(), dict(obs.results), obs.calc, obs.step, obs.time_fs)
            elif hasattr(obs.calc, "check_next"):
                # A driver's check above the threshold is confirmed at the next step, not K steps later.
                obs.calc.check_next()
            return
        offending = obs.frame(hetens_role="offending", hetens_halt_threshold=self.threshold)
        last_safe = None
        if self._last_safe is not None:
            atoms, results, calc, step, time_fs = self._last_safe
            last_safe = annotate_state(atoms, results, calc, step, time_fs, hetens_role="last_safe",
                                       hetens_halt_threshold=self.threshold)
        if self.save_to is not None:
            write_frames_atomic(self.save_to, [f for f in (last_safe, offending) if f is not None],
                                format="extxyz")
        raise UncertaintyHalt(
            obs.step, obs.uncertainty, self.threshold, consecutive=self.streak, time_fs=obs.time_fs,
            atoms=offending, last_safe=last_safe, saved_to=self.save_to,
        )


class UncertaintyMonitor(_Observer):
    """Log, flag and halt in one observer, with tiered thresholds.

    Every observed step is logged (when ``log`` is given); frames with
    ``U > flag_above`` are appended to ``flagged``; ``halt_above`` stops the
    run (after ``halt_consecutive`` observations in a row). The results are
    read once per step and handed to each part in that order, so the halting
    step is logged and, when above ``flag_above``, flagged before the halt.

    Args:
        dyn: the ASE dynamics or optimizer.
        atoms, calc: see the module docstring.
        log: CSV path (or handle) for :class:`UncertaintyLogger`; ``None``: no log.
        flag_above, flagged: threshold (eV/Å) and extxyz path for :class:`FlagWriter`.
        flag_spacing: minimum steps between flagged frames.
        halt_above, halt_consecutive, halt_file: for :class:`HaltOnUncertainty`.
        trajectory, trajectory_interval: optional annotated extxyz trajectory,
            one frame every ``trajectory_interval`` steps (``dyn.nsteps``).
        flag_below, failed: the trust window's high level (eV/Å; DP-GEN's
            ``trust_hi``) and the extxyz for frames above it: frames in
            ``(flag_above, flag_below]`` are candidates (``flagged``), frames
            above ``flag_below`` failed (``failed``, never among the candidates).
            ``failed`` may be ``None`` (counted, not written).

    Attributes:
        history: U (eV/Å) of every step with a fresh U, in order.
        last: the latest :class:`Observation` (``None`` before the first).
        last_checked: the latest observation with a fresh U.
        window: the :class:`~hetens.monitor.trust.TrustWindow` (``None``
            without ``flag_above``).
        trust_counts: ``{"accurate": n, "candidate": n, "failed": n}`` over
            the steps with a fresh U (with a window; else ``None``).
    """

    def __init__(self, dyn, atoms=None, *, calc=None,
                 log: str | os.PathLike | IO[str] | None = None,
                 flag_above: float | None = None, flagged: str | os.PathLike | None = None,
                 flag_spacing: int = 0,
                 halt_above: float | None = None, halt_consecutive: int = 1,
                 halt_file: str | os.PathLike | None = None,
                 trajectory: str | os.PathLike | None = None, trajectory_interval: int = 1,
                 mode: str = "w", flag_below: float | None = None,
                 failed: str | os.PathLike | None = None):
        from hetens.monitor.driver import CheckedDriverCalculator
        from hetens.monitor.trust import TRUST_LEVELS, TrustWindow

        super().__init__(dyn, atoms, calc)
        if flag_below is not None and flag_above is None:
            raise ValueError("flag_below (the trust window's high level) needs flag_above (its low level)")
        self.window = None if flag_above is None else TrustWindow(
            float(flag_above), float("inf") if flag_below is None else float(flag_below))
        self.trust_counts = None if self.window is None else dict.fromkeys(TRUST_LEVELS, 0)
        driven = isinstance(self.calc if self.calc is not None else self.atoms.calc, CheckedDriverCalculator)
        if (flag_above is None) != (flagged is None):
            raise ValueError("give both flag_above (U threshold, eV/A) and flagged (extxyz path), or neither")
        if int(trajectory_interval) < 1:
            raise ValueError(f"trajectory_interval must be >= 1 step; got {trajectory_interval}")
        self.trajectory_interval = int(trajectory_interval)
        self.history: list[float] = []
        self.last: Observation | None = None
        self.last_checked: Observation | None = None
        self.logger = self.flagger = self.halter = self.trajectory = self.failed = None
        parts: list[_Observer] = []
        try:
            if log is not None:
                # The trust column: with a two-level window or a driver (a plain --flag-above log keeps its columns).
                column = self.window if self.window is not None and (flag_below is not None or driven) else None
                self.logger = UncertaintyLogger(dyn, log, self.atoms, calc=calc, mode=mode,
                                                trust=column if column is not None else (driven or None))
                parts.append(self.logger)
            if flag_above is not None:
                self.flagger = FlagWriter(dyn, flagged, flag_above, self.atoms, calc=calc,
                                          min_spacing=flag_spacing, mode=mode, ceiling=flag_below)
                parts.append(self.flagger)
            if flag_below is not None and failed is not None:
                self.failed = FlagWriter(dyn, failed, flag_below, self.atoms, calc=calc, mode=mode)
                parts.append(self.failed)
            if trajectory is not None:
                self.trajectory = TrajectoryWriter(dyn, trajectory, self.atoms, calc=calc, mode=mode)
                parts.append(self.trajectory)
            if halt_above is not None:
                self.halter = HaltOnUncertainty(dyn, halt_above, self.atoms, calc=calc,
                                                consecutive=halt_consecutive, save_to=halt_file)
        except BaseException:
            for part in parts:
                part.close()
            raise
        self._parts = parts

    @property
    def flagged(self) -> int:
        return self.flagger.flagged if self.flagger else 0

    def record(self, obs: Observation) -> None:
        self.last = obs
        if obs.fresh:
            self.last_checked = obs
            self.history.append(obs.uncertainty)
            if self.window is not None:
                self.trust_counts[self.window.level(obs.uncertainty)] += 1
        if self.logger:
            self.logger.record(obs)
        if self.flagger:
            self.flagger.record(obs)
        if self.failed:
            self.failed.record(obs)
        if self.trajectory and obs.step % self.trajectory_interval == 0:
            self.trajectory.record(obs)
        if self.halter:
            self.halter.record(obs)

    @property
    def failed_frames(self) -> int:
        """Frames written to the failed file."""
        return self.failed.flagged if self.failed else 0

    def close(self) -> None:
        for part in self._parts:
            part.close()
