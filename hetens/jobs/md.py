"""Run dynamics under uncertainty monitoring and get an outcome, not a traceback."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hetens.errors import UncertaintyHalt

__all__ = ["RunOutcome", "StopOnInterrupt", "run_monitored"]


@dataclass(frozen=True)
class RunOutcome:
    """How a monitored run ended.

    Attributes:
        status: ``"completed"`` (all steps done, or an optimizer stopped on
            its own), ``"halted"`` (U crossed the halt threshold) or
            ``"interrupted"`` (Ctrl-C with ``stop_on_interrupt``: stopped
            after the step it arrived in).
        steps_done: steps taken in this call (``dyn.nsteps`` difference).
        observed: steps the monitor observed.
        u_min, u_median, u_max: U statistics over the observed steps, eV/Å
            (NaN when nothing was observed).
        flagged: frames written by the flagger.
        converged: for optimizers, whether the forces converged; ``None`` for MD.
        wall_s: wall-clock seconds of the run.
        halt: the :class:`~hetens.errors.UncertaintyHalt` that stopped the run
            (step, U, threshold, frames), or ``None``.
    """

    status: str
    steps_done: int
    observed: int = 0
    u_min: float = float("nan")
    u_median: float = float("nan")
    u_max: float = float("nan")
    flagged: int = 0
    converged: bool | None = None
    wall_s: float = 0.0
    halt: UncertaintyHalt | None = field(default=None, repr=False)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def halted(self) -> bool:
        return self.status == "halted"

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    @property
    def halted_at(self) -> int | None:
        """``dyn.nsteps`` of the halting step, or ``None``."""
        return self.halt.step if self.halt else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        out: dict[str, Any] = {
            "status": self.status,
            "steps_done": self.steps_done,
            "observed": self.observed,
            "u_min": _json_float(self.u_min),
            "u_median": _json_float(self.u_median),
            "u_max": _json_float(self.u_max),
            "flagged": self.flagged,
            "converged": self.converged,
            "wall_s": round(self.wall_s, 3),
        }
        if self.halt is not None:
            out.update(
                halted_at=self.halt.step,
                halt_time_fs=self.halt.time_fs,
                halt_U=self.halt.uncertainty,
                halt_threshold=self.halt.threshold,
                halt_file=str(self.halt.saved_to) if self.halt.saved_to else None,
                halt_at_start=self.halt.at_start,
            )
        return out

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [f"steps done     {self.steps_done} ({self.wall_s:.1f} s, {self.observed} observed)"]
        if self.observed:
            lines.append(
                f"U [eV/A]       min {self.u_min:.4f}  median {self.u_median:.4f}  max {self.u_max:.4f}"
            )
        lines.append(f"frames flagged {self.flagged}")
        if self.halt is not None:
            where = f"step {self.halt.step}" + (
                f" (t = {self.halt.time_fs:.1f} fs)" if self.halt.time_fs is not None else ""
            )
            start = " the START structure is already above the halt threshold:" if self.halt.at_start else ""
            lines.append(
                f"outcome        HALTED at {where}:{start} U = {self.halt.uncertainty:.4f} eV/A > "
                f"{self.halt.threshold:.4f}"
            )
            if self.halt.saved_to:
                held = "offending only: no observed frame was below the threshold" if self.halt.at_start \
                    else "last_safe, offending"
                lines.append(f"halt frames    {self.halt.saved_to} ({held})")
        elif self.interrupted:
            lines.append("outcome        interrupted (Ctrl-C) after the last step done")
        else:
            extra = "" if self.converged is None else (" (converged)" if self.converged else " (not converged)")
            lines.append(f"outcome        completed{extra}")
        return "\n".join(lines)


def _json_float(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


class StopOnInterrupt:
    """A context manager: the first Ctrl-C (SIGINT) inside it is only recorded (:attr:`requested`),
    so a loop can stop at its next step boundary; a second one raises ``KeyboardInterrupt`` at once.

    Stopping between steps keeps the log, trajectory and flagged files in step
    with each other (every observer has recorded the last step). Where SIGINT
    cannot be handled here (not the main thread, or SIGINT handled or ignored
    by someone else already), Ctrl-C keeps its usual effect. The previous
    handler is restored on leaving the block.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopOnInterrupt:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc_info) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def run_monitored(
    dyn,
    steps: int,
    monitor=None,
    *,
    interval: int = 1,
    progress: Callable[[int], None] | None = None,
    stop_on_interrupt: bool = False,
    **run_options: Any,
) -> RunOutcome:
    """Run ``dyn`` for ``steps`` steps; return how it ended instead of raising on a halt.

    Args:
        dyn: any ASE dynamics or optimizer whose atoms carry an ensemble.
        steps: steps to run (optimizers may stop earlier when converged).
        monitor: an :class:`~hetens.monitor.UncertaintyMonitor` (or any
            observer); attached with ``interval`` unless it already is. Its
            ``history`` and ``flagged`` feed the outcome's statistics.
        interval: observation interval in steps, when attaching ``monitor``.
        progress: called with the number of steps done after every step.
        stop_on_interrupt: graceful Ctrl-C (:class:`StopOnInterrupt`): the
            first Ctrl-C ends the run after the current step, with every
            observer's record of it written, and the outcome is
            ``status="interrupted"``; a second Ctrl-C raises
            ``KeyboardInterrupt`` at once. Only in the main thread; off by
            default (Ctrl-C raises ``KeyboardInterrupt`` mid-step).
        **run_options: passed on to ``dyn.irun`` (``fmax=0.01`` for an optimizer).

    Returns:
        :class:`RunOutcome`. :class:`~hetens.errors.UncertaintyHalt` raised
        by any attached observer becomes ``status="halted"``; other errors
        (a member failing, say) propagate, with everything written so far
        already flushed by the observers.
    """
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0; got {steps}")
    if monitor is not None and not any(obs[0] is monitor for obs in dyn.observers):
        dyn.attach(monitor, interval=interval)
    start = int(dyn.nsteps)
    history = getattr(monitor, "history", None)
    seen = len(history) if history is not None else 0
    halt = None
    converged = None
    stop = StopOnInterrupt() if stop_on_interrupt else contextlib.nullcontext()
    interrupted = False
    t0 = time.perf_counter()
    with stop:
        try:
            for converged in dyn.irun(steps=int(steps), **run_options):
                if progress is not None:
                    progress(int(dyn.nsteps) - start)
                if stop_on_interrupt and stop.requested:
                    interrupted = True
                    break
        except UncertaintyHalt as exc:
            halt = exc
    wall = time.perf_counter() - t0
    values = np.asarray(history[seen:] if history is not None else [], dtype=float)
    from ase.md.md import MolecularDynamics

    is_md = isinstance(dyn, MolecularDynamics)
    status = "halted" if halt is not None else ("interrupted" if interrupted else "completed")
    return RunOutcome(
        status=status,
        steps_done=int(dyn.nsteps) - start,
        observed=int(values.size),
        u_min=float(values.min()) if values.size else float("nan"),
        u_median=float(np.median(values)) if values.size else float("nan"),
        u_max=float(values.max()) if values.size else float("nan"),
        flagged=int(getattr(monitor, "flagged", 0) or 0),
        converged=None if is_md or status != "completed" else bool(converged),
        wall_s=wall,
        halt=halt,
    )
