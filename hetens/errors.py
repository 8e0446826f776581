"""Exceptions raised by hetens, and when.

Every class derives from :class:`HetensError` and from the builtin that a
caller would naturally catch (``ValueError`` for bad input, ``ImportError``
for a missing package...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "HetensError",
    "MemberSpecError",
    "UnknownModelError",
    "MissingFamilyError",
    "WeightsUnavailableError",
    "MixedReferenceError",
    "MemberFailedError",
    "FrameReadError",
    "AlignmentError",
    "WorkerError",
    "WorkerTimeoutError",
    "EnvironmentBuildError",
    "UncertaintyHalt",
    "InvalidStructureError",
    "UnsupportedElementError",
    "MemberDroppedWarning",
]


class HetensError(Exception):
    """Base class of every error hetens raises on purpose."""


class MemberSpecError(HetensError, ValueError):
    """Raised before loading when a member spec such as ``sevenn:7net-0`` cannot be parsed."""


class UnknownModelError(HetensError, ValueError):
    """Raised before loading when a spec names a family or model hetens does not know."""


class MissingFamilyError(HetensError, ImportError):
    """Raised when a member's model package is not installed; the message names the pip extra."""


class WeightsUnavailableError(HetensError, FileNotFoundError):
    """Raised when a model's weights are neither on this machine nor downloadable now."""


class MixedReferenceError(HetensError, ValueError):
    """Raised when an ensemble would average energies from different levels of theory."""


class MemberFailedError(HetensError, RuntimeError):
    """Raised during a calculation when a member fails or returns unusable output.

    The message names the member, the property and the structure's formula.
    """


class FrameReadError(HetensError, ValueError):
    """Raised while reading structures when a file or one of its frames cannot be
    read, or lacks a quantity the command needs (energy, forces, U...).

    The message names the file and the frame (0-based index in the file).
    """


class AlignmentError(HetensError, ValueError):
    """Raised before scoring when prediction or reference files do not hold the same
    frames in the same order (frame count, atom count, species, positions, cell).

    The message names the file, the frame and what differs.
    """


class WorkerError(MemberFailedError):
    """Raised when the worker process of an isolated member (see :mod:`hetens.workers`)
    cannot start, exits or is killed, or breaks the protocol.

    The message names the member, the interpreter, the exit status and the
    worker's last stderr lines. The next use of the member starts a new worker.
    """


class WorkerTimeoutError(WorkerError, TimeoutError):
    """Raised when an isolated member's worker does not answer within its timeout
    (``timeout`` for a calculation, ``start_timeout`` for loading the model).

    The worker is stopped before this is raised, so nothing keeps running.
    """


class EnvironmentBuildError(HetensError, OSError):
    """Raised by ``hetens env create`` (:func:`hetens.catalogue.envs.create_environment`) when a
    step fails (creating the venv, a pip install, the final import check).

    The message names the step, the command and its last output lines; the
    half-built environment is left in place for inspection and must be removed
    before trying again.
    """


class UncertaintyHalt(HetensError):
    """Raised by an uncertainty observer (:mod:`hetens.monitor`) to stop MD or a relaxation.

    ASE dynamics have no stop signal, so a halt is this exception propagating
    out of ``dyn.run()``; :func:`hetens.monitor.run_monitored` catches it and
    returns the outcome instead. Raised when U exceeded ``threshold`` (for
    ``consecutive`` observations in a row).

    Attributes:
        step: the dynamics' step count (``dyn.nsteps``) of the offending frame.
        uncertainty: U of the offending frame, eV/Å.
        threshold: the halt threshold, eV/Å.
        consecutive: how many observations in a row were above it.
        time_fs: simulation time of the offending frame in fs (``None`` for optimizers).
        atoms: the offending frame, annotated (:func:`hetens.core.frames.annotate`).
        last_safe: the last observed frame with U at or below the threshold,
            annotated, or ``None`` if there was none (:attr:`at_start`: the
            start structure was already above the threshold).
        saved_to: the file the frames were written to (both, or only the
            offending one when there was no safe frame), or ``None``.
    """

    def __init__(self, step, uncertainty, threshold, *, consecutive=1, time_fs=None,
                 atoms=None, last_safe=None, saved_to=None):
        self.step = int(step)
        self.uncertainty = float(uncertainty)
        self.threshold = float(threshold)
        self.consecutive = int(consecutive)
        self.time_fs = time_fs
        self.atoms = atoms
        self.last_safe = last_safe
        self.saved_to = saved_to
        streak = f" for {self.consecutive} observations in a row" if self.consecutive > 1 else ""
        when = f"step {self.step}" + (f" (t = {time_fs:.1f} fs)" if time_fs is not None else "")
        if self.at_start:
            saved = f"; the offending frame saved to {saved_to} (no safe frame to save)" if saved_to else ""
            text = (f"halted at {when}: the START structure is already above the halt threshold: "
                    f"U = {self.uncertainty:.4g} eV/A > {self.threshold:.4g} eV/A{streak}{saved}; "
                    "raise the threshold or start from a structure the members agree on")
        else:
            saved = f"; last safe and offending frames saved to {saved_to}" if saved_to else ""
            text = (f"halted at {when}: U = {self.uncertainty:.4g} eV/A exceeded the halt threshold "
                    f"{self.threshold:.4g} eV/A{streak}{saved}")
        super().__init__(text)

    @property
    def at_start(self) -> bool:
        """Whether no observed frame was safe: the run started above the threshold."""
        return self.last_safe is None


class InvalidStructureError(HetensError, ValueError):
    """Raised before any model runs when a structure cannot be evaluated.

    Empty, non-finite positions, a periodic direction without a cell vector,
    atoms on top of each other, or an element no member supports; the
    message names the atoms or elements at fault.
    """


class Interrupted(KeyboardInterrupt):
    """Raised instead of a bare ``KeyboardInterrupt`` when Ctrl-C stops a long run
    (:func:`hetens.jobs.score_live.score_live`) after the work already done was saved.

    Deliberately a ``KeyboardInterrupt`` and not a :class:`HetensError`, so
    ``except Exception`` never swallows Ctrl-C.

    Attributes:
        done: frames completed and saved.
        total: frames planned, or ``None`` when unknown.
        where: what was being processed when it stopped (``"FILE frame I"``), or ``None``.
        kept: the file holding the completed frames, or ``None`` when none were done.
    """

    def __init__(self, done, total=None, *, where=None, kept=None):
        self.done = int(done)
        self.total = None if total is None else int(total)
        self.where = where
        self.kept = kept
        of = f" of {self.total}" if self.total is not None else ""
        at = f" ({where})" if where else ""
        saved = f"; {self.done} scored frames kept in {kept}" if kept else "; no frame was complete"
        super().__init__(f"interrupted at frame {self.done}{of}{at}{saved}")


__all__ += ["Interrupted"]


class MissingExtraError(HetensError, ImportError):
    """Raised when an optional feature's packages are missing (``--cluster`` needs Dask);
    the message names the pip extra to install (``pip install 'hetens[dask]'``).
    """


__all__ += ["MissingExtraError"]


class UnsupportedElementError(MemberFailedError):
    """Raised before a member runs when the structure holds an element outside its training set.

    A member failure like any other: ``on_member_error="drop"`` drops the
    member for that structure. An element that no member supports is an
    :class:`InvalidStructureError` instead.
    """


class MemberDroppedWarning(UserWarning):
    """Issued once per member when ``on_member_error="drop"`` leaves it out of a result."""


class TooFewMembersError(HetensError, ValueError):
    """Raised before any model runs (or when drops leave too few) when an ensemble has
    fewer than two members in U (predictors plus witnesses) or no predictor.

    U of a single model is identically 0, which would silently disable every
    flag and halt; the message says how many members of each role there are.
    """


__all__ += ["TooFewMembersError"]


class ConformanceError(HetensError, AssertionError):
    """Raised by :func:`hetens.testing.check_member` when a member fails a conformance check.

    The message names the member, the check (``force_gradient``,
    ``rotation``...), the values that disagree and the tolerance, by its name
    in :class:`hetens.testing.Tolerances`. An ``AssertionError``, so test
    runners report it as a failed test.
    """


__all__ += ["ConformanceError"]
