"""Refusing a structure too large for the memory left, before any member runs on it.

A member's memory grows with the atoms it evaluates (activations kept for
the backward pass that gives the forces: about 2.5-4 MB per atom on a CPU
for the default ensemble's members, docs/performance.md). A run that
outgrows the machine is otherwise ended by the OS ("Killed", no word why).
:class:`MemoryGuard` estimates what a structure needs before the members see
it and raises :class:`~hetens.errors.InsufficientMemoryError` with one line
(the structure's size, the estimate, what is available, what to do) when the
estimate exceeds what is available.

The estimate is a figure of bytes per atom times the structure's atoms,
scaled up for a cell denser than bcc W (more neighbours, so more edges, per
atom). The figure is measured in this process on the calls the ensemble makes
(the peak resident memory above what the loaded models hold, on the largest
structure so far of at least :data:`MEASURE_MIN_ATOMS` atoms), or, before
such a call, shipped per family (:data:`FAMILY_BYTES_PER_ATOM`). Members run
one after another, so in-process members need the largest member's figure;
members in worker processes run at once, so theirs add up.

A structure that does not fit with the members' plain figures but does with
activation checkpointing (the members whose calculator has
``checkpoint_min_atoms``: SevenNet, DIEP, CHGNet; not one set to
``@checkpoint=off``) is not refused: :meth:`MemoryGuard.check` turns
checkpointing on for those members, from the size where the plain estimate
reaches what is available (so for that structure, larger ones and smaller
ones that would not fit plain either), and says
so once (one line, logger ``hetens.core.memory_guard``). Checkpointed results
are bit-identical; a call takes about 1.3-1.6x as long.

Available memory is ``psutil.virtual_memory().available`` on a CPU (plus what
this process already holds above its models, which it reuses), the device's
free memory on a GPU, capped by ``$HETENS_MEMORY_LIMIT`` when set
(``"6G"``, ``"500M"``, bytes): a machine shared with others, or a test.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hetens.errors import InsufficientMemoryError

_LOG = logging.getLogger(__name__)

__all__ = [
    "FAMILY_BYTES_PER_ATOM",
    "DEFAULT_BYTES_PER_ATOM",
    "MEASURE_MIN_ATOMS",
    "REFERENCE_DENSITY",
    "MemoryGuard",
    "MemoryEstimate",
    "memory_guard",
    "parse_bytes",
    "effective_atoms",
    "release_freed_memory",
    "prepare_for_large_evaluation",
    "cpu_memory_returned",
]

#: Bytes per atom one member needs for energy and forces on a CPU (bcc W, float32 models),
#: measured with benchmarks/bench_scaling.py (benchmarks/results/scaling_cpu.jsonl): each
#: member's peak resident memory above its loaded model, evaluated alone with hetens' 1 MiB
#: mmap threshold (:func:`prepare_for_large_evaluation`), over the atoms; at 686 and 1458
#: atoms 7net-mf-0 2.96 and 2.99 MB, DIEP 3.19 and 3.17 MB, CHGNet 0.3.0 2.24 and 2.24 MB,
#: rounded up by about 5 %. ``FAMILY@checkpoint``: the member checkpointing the structure
#: (:mod:`hetens.families.checkpointing`; benchmarks/results/scaling_checkpoint_cpu.jsonl),
#: at 686 and 1458 atoms 7net-mf-0 1.21 and 1.26 MB, DIEP 1.06 and 0.88 MB, CHGNet 0.60 and
#: 0.53 MB, the larger rounded up by about 5 %. Used until this process has measured its own.
FAMILY_BYTES_PER_ATOM: dict[str, float] = {
    "sevenn": 3.1e6,
    "sevenn@checkpoint": 1.32e6,
    "diep": 3.35e6,
    "diep@checkpoint": 1.12e6,
    "chgnet": 2.35e6,
    "chgnet@checkpoint": 0.63e6,
}
#: For a family without a shipped figure (a user's own calculator, a hub family): the
#: largest shipped figure, so the guard errs towards refusing.
DEFAULT_BYTES_PER_ATOM = 4.1e6
#: Structures smaller than this are not measured: their peak is mostly fixed costs
#: (first-call set-up, the allocator's arenas), which would inflate a per-atom figure.
MEASURE_MIN_ATOMS = 200
#: Atoms per Å³ of bcc W (a = 3.17 Å), where the figures were measured. A denser cell
#: has more neighbours within a cutoff, hence more edges and more memory per atom.
REFERENCE_DENSITY = 2 / 3.17**3
#: The environment variable capping the memory the guard takes as available.
LIMIT_VARIABLE = "HETENS_MEMORY_LIMIT"


def parse_bytes(text: str) -> float:
    """``"6G"``, ``"500M"``, ``"1.5GB"``, ``"2e9"`` -> bytes (K, M, G, T are powers of 1024)."""
    value = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(value[-1:], 1)
    try:
        number = float(value[:-1] if scale != 1 else value)
    except ValueError:
        raise ValueError(f"{LIMIT_VARIABLE}={text!r} is not a size; give bytes or e.g. 6G, 500M") from None
    if not number > 0:
        raise ValueError(f"{LIMIT_VARIABLE}={text!r} must be positive")
    return number * scale


def effective_atoms(atoms) -> float:
    """``len(atoms)`` scaled by the cell's density over bcc W's when denser (3D periodic cells only)."""
    n = len(atoms)
    if n and atoms.pbc.all() and atoms.cell.rank == 3:
        density = n / abs(atoms.cell.volume)
        return n * max(1.0, density / REFERENCE_DENSITY)
    return float(n)


def _gb(value: float) -> str:
    return f"{value / 1e9:.1f} GB"


@dataclass(frozen=True)
class MemoryEstimate:
    """What a structure is estimated to need and what is available, bytes.

    Attributes:
        needed: memory the evaluation needs beyond what this process already holds.
        available: memory available to it (device or system, capped by the limit).
        bytes_per_atom: the figure used (per effective atom, see :func:`effective_atoms`).
        source: where the figure comes from (``"measured on 686 atoms"``, ``"shipped"``).
        device: ``"cpu"`` or the GPU's name (``"cuda:0"``).
    """

    needed: float
    available: float
    bytes_per_atom: float
    source: str
    device: str

    @property
    def fits(self) -> bool:
        return self.needed <= self.available


class MemoryGuard:
    """Estimates each new largest structure's memory and refuses one that would not fit.

    Args:
        enabled: ``False`` turns every check off (``--no-memory-check``).
        available: a function returning the bytes available, for tests and
            callers that know better; default: psutil (CPU) or the device's free memory.
        bytes_per_atom: family -> bytes per atom, replacing :data:`FAMILY_BYTES_PER_ATOM` entries.

    Only structures larger (in effective atoms) than every structure evaluated
    so far are checked: an MD run checks its first step only.
    """

    def __init__(self, enabled: bool = True, *, available=None,
                 bytes_per_atom: Mapping[str, float] | None = None) -> None:
        self.enabled = bool(enabled)
        self._available = available
        self.family_bytes = {**FAMILY_BYTES_PER_ATOM, **dict(bytes_per_atom or {})}
        #: Largest effective atom count evaluated so far in this process.
        self.largest_seen = 0.0
        #: (bytes per effective atom, atoms measured on), once measured.
        self.measured: tuple[float, int] | None = None
        self._baseline: float | None = None  # memory held with the models loaded, before any evaluation

    # -- estimating -----------------------------------------------------------------------
    def estimate(self, atoms, members: Sequence[Any], checkpointing: Sequence[Any] = ()) -> MemoryEstimate:
        """The memory ``members`` need for ``atoms`` beyond what is held now, and what is available;
        with the members in ``checkpointing`` counted as checkpointed (their shipped
        ``FAMILY@checkpoint`` figures, and no figure measured before they checkpointed)."""
        device = _device_of(members)
        n_eff = effective_atoms(atoms)
        local = [m for m in members if not _in_worker(m)]
        workers = [m for m in members if _in_worker(m)]
        assumed = {id(m) for m in checkpointing}
        if self.measured is not None and local and not assumed:
            per_atom, on = self.measured
            source = f"measured in this process on {on} atoms"
        else:
            per_atom = max((self._figure(m, len(atoms), id(m) in assumed) for m in local), default=0.0)
            source = "shipped per family" + (", checkpointed" if assumed else "")
        # Workers run concurrently, each in its own process: their figures add up.
        worker_bytes = sum(self._figure(m, len(atoms)) for m in workers) * n_eff
        held = self._held_above_baseline(device)
        needed = max(0.0, per_atom * n_eff - held) + worker_bytes
        return MemoryEstimate(needed, self.available(device), per_atom, source, device)

    def _figure(self, member: Any, n_atoms: int, checkpointed: bool = False) -> float:
        family = getattr(member, "family", None)
        if checkpointed or getattr(member.calculator, "checkpoint_min_atoms", float("inf")) <= n_atoms:
            family = f"{family}@checkpoint"  # activation checkpointing (SevenNet, DIEP, CHGNet)
        return self.family_bytes.get(family, self.family_bytes.get(getattr(member, "family", None),
                                                                   DEFAULT_BYTES_PER_ATOM))

    def available(self, device: str = "cpu") -> float:
        """Bytes available: the given function's, else the system's or the device's, capped by the limit."""
        if self._available is not None:
            free = float(self._available())
        elif device.startswith("cuda"):
            free = _cuda_free(device)
        else:
            import psutil

            free = float(psutil.virtual_memory().available)
        limit = os.environ.get(LIMIT_VARIABLE)
        return min(free, parse_bytes(limit)) if limit else free

    # -- checking ---------------------------------------------------------------------------
    def check(self, atoms, members: Sequence[Any], label: str | None = None) -> None:
        """Raise :class:`~hetens.errors.InsufficientMemoryError` if ``atoms`` is larger than every
        structure seen so far and its estimate exceeds what is available; else return."""
        if not self.enabled or effective_atoms(atoms) <= self.largest_seen or not members:
            return
        if self._baseline is None:
            self._baseline = self._baseline_now(_device_of(members))
        estimate = self.estimate(atoms, members)
        if estimate.fits:
            return
        switchable = [m for m in members if _can_switch_on_checkpointing(m, len(atoms))]
        if switchable:
            checkpointed = self.estimate(atoms, members, checkpointing=switchable)
            if checkpointed.fits:
                # From the size where the plain estimate reaches what is available: this structure,
                # larger ones, and smaller ones that come later (not checked again) but would not fit.
                from_atoms = max(1, min(len(atoms), int(len(atoms) * estimate.available / estimate.needed)))
                for member in switchable:
                    member.calculator.checkpoint_min_atoms = from_atoms
                _LOG.warning(checkpointing_message(atoms, estimate, checkpointed, switchable, from_atoms, label))
                return
            estimate = checkpointed
        raise InsufficientMemoryError(refusal_message(atoms, estimate, len(members), label))

    @contextlib.contextmanager
    def measuring(self, atoms, members: Sequence[Any]) -> Iterator[None]:
        """Around an evaluation of ``atoms`` by ``members``: records the structure as seen and, on a
        new largest structure of at least :data:`MEASURE_MIN_ATOMS` atoms evaluated in this process,
        the bytes per atom it took (peak above the loaded models)."""
        n_eff = effective_atoms(atoms)
        device = _device_of(members)
        new_largest = self.enabled and n_eff > self.largest_seen
        if self._baseline is None and self.enabled:
            self._baseline = self._baseline_now(device)
        measure = (new_largest and len(atoms) >= MEASURE_MIN_ATOMS
                   and any(not _in_worker(m) for m in members))
        if measure:
            _reset_peak(device)
        yield
        if measure:
            extra = max(0.0, _peak(device) - self._baseline)
            self.measured = (extra / n_eff, len(atoms))
        self.largest_seen = max(self.largest_seen, n_eff)

    def _baseline_now(self, device: str) -> float:
        return _current(device)

    def _held_above_baseline(self, device: str) -> float:
        if self._baseline is None:
            return 0.0
        return max(0.0, _current(device) - self._baseline)


def checkpointing_message(atoms, plain: MemoryEstimate, checkpointed: MemoryEstimate,
                          members: Sequence[Any], from_atoms: int, label: str | None = None) -> str:
    """The one line :meth:`MemoryGuard.check` logs when it turns checkpointing on."""
    where = f"{label}: " if label else ""
    names = ", ".join(getattr(m, "name", "?") for m in members)
    return (
        f"hetens: {where}{atoms.get_chemical_formula()} ({len(atoms)} atoms) needs about {_gb(plain.needed)} "
        f"but {_gb(plain.available)} is available on {plain.device}: activation checkpointing turned on "
        f"for {names} from {from_atoms} atoms on (about {_gb(checkpointed.needed)}; same results, "
        "calls about 1.5x as long)"
    )


def refusal_message(atoms, estimate: MemoryEstimate, n_members: int, label: str | None = None) -> str:
    """The one line of an :class:`~hetens.errors.InsufficientMemoryError`."""
    where = f"{label}: " if label else ""
    return (
        f"{where}{atoms.get_chemical_formula()} ({len(atoms)} atoms) needs about {_gb(estimate.needed)} "
        f"more memory for {n_members} members ({estimate.bytes_per_atom / 1e6:.1f} MB per atom, "
        f"{estimate.source}) but {_gb(estimate.available)} is available on {estimate.device}; "
        "run it on a GPU or a larger machine, with fewer members, in the driver mode "
        "(hetens md --driver MEMBER), or on a smaller cell (--no-memory-check to try anyway)"
    )


def memory_guard(setting: Any) -> MemoryGuard:
    """A :class:`MemoryGuard` from a calculator's ``memory_check`` argument (a bool or a guard)."""
    if isinstance(setting, MemoryGuard):
        return setting
    if not isinstance(setting, (bool, np.bool_)):
        raise ValueError(f"memory_check must be True, False or a MemoryGuard; got {setting!r}")
    return MemoryGuard(enabled=bool(setting))


# -- what the process holds -------------------------------------------------------------------
def _can_switch_on_checkpointing(member: Any, n_atoms: int) -> bool:
    """Whether ``member`` checkpoints (its calculator has ``checkpoint_min_atoms``: SevenNet, DIEP,
    CHGNet), does not yet for ``n_atoms`` atoms, and was not set to ``@checkpoint=off``."""
    from hetens.families.checkpointing import NEVER

    setting = getattr(getattr(member, "calculator", None), "checkpoint_min_atoms", None)
    return setting is not None and n_atoms < setting < NEVER and not _in_worker(member)


def _in_worker(member: Any) -> bool:
    return type(getattr(member, "calculator", None)).__name__ == "IsolatedCalculator"


def _device_of(members: Sequence[Any]) -> str:
    """``"cuda:N"`` when an in-process member runs on a GPU, else ``"cpu"``."""
    for member in members:
        device = str(getattr(member, "device", None) or "cpu")
        if device.startswith("cuda") and not _in_worker(member):
            return device if ":" in device else "cuda:0"
    return "cpu"


def _status(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _current(device: str) -> float:
    """Bytes this process holds now: resident memory, or torch's allocation on the GPU."""
    if device.startswith("cuda"):
        import torch

        return float(torch.cuda.memory_allocated(device))
    rss = _status("VmRSS")
    if rss is None:
        import psutil

        rss = float(psutil.Process().memory_info().rss)
    return rss


def _reset_peak(device: str) -> None:
    """Reset the peak so that :func:`_peak` reports the evaluation's (Linux: ``clear_refs`` 5)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")


def _peak(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return float(torch.cuda.max_memory_allocated(device))
    peak = _status("VmHWM")
    return _current(device) if peak is None else peak


def _cuda_free(device: str) -> float:
    """The device's free memory plus what torch holds cached but unused."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return float(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


# -- giving freed memory back between members ---------------------------------------------------
#: Structures from this many atoms hand the memory a member freed back to the OS after it ran
#: (:func:`release_freed_memory`); below it the few milliseconds are not worth it.
RELEASE_MIN_ATOMS = 200


@functools.cache
def _glibc(name: str, *argtypes: str):
    """glibc's function ``name`` (``ctypes`` argument type names, returning int), or ``None`` on
    another C library or system."""
    import ctypes
    import ctypes.util

    try:
        function = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = [getattr(ctypes, t) for t in argtypes]
    function.restype = ctypes.c_int
    return function


#: glibc's ``M_MMAP_THRESHOLD`` parameter number (``malloc.h``).
_M_MMAP_THRESHOLD = -3

#: Blocks from this size up are served by ``mmap`` once a large structure is evaluated on a CPU
#: (:func:`prepare_for_large_evaluation`); ``$HETENS_MMAP_THRESHOLD`` (bytes, ``0`` = leave
#: glibc's own) overrides it.
MMAP_THRESHOLD_BYTES = 1 << 20


@functools.cache
def _serve_large_blocks_by_mmap() -> bool:
    """Once per process: glibc's mmap threshold fixed at :data:`MMAP_THRESHOLD_BYTES`.

    Left alone when ``$MALLOC_MMAP_THRESHOLD_`` already sets it, when
    ``$HETENS_MMAP_THRESHOLD`` is ``0``, or without glibc. Returns whether it was set."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    setting = os.environ.get("HETENS_MMAP_THRESHOLD", "").strip()
    if setting in ("0", "off"):
        return False
    try:
        threshold = int(parse_bytes(setting)) if setting else MMAP_THRESHOLD_BYTES
    except ValueError:
        raise ValueError(f"HETENS_MMAP_THRESHOLD={setting!r} is not a size; give bytes, e.g. 1M, "
                         "or 0 to leave glibc's threshold alone") from None
    mallopt = _glibc("mallopt", "c_int", "c_int")
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def prepare_for_large_evaluation(n_atoms: int) -> None:
    """Before a member evaluates ``n_atoms`` atoms on a CPU: from :data:`RELEASE_MIN_ATOMS` atoms on,
    blocks of :data:`MMAP_THRESHOLD_BYTES` and more come from ``mmap`` (once per process).

    glibc raises its mmap threshold as large blocks are freed (up to 32 MiB), so a
    model's large activations end up in the arenas, where :func:`release_freed_memory`
    gives back only whole free pages and fragmentation keeps the rest: members run
    one after another then peak above the largest alone. Served by ``mmap``, each
    block goes back to the OS when it is freed (docs/performance.md, "Large systems")."""
    if n_atoms >= RELEASE_MIN_ATOMS:
        _serve_large_blocks_by_mmap()


@contextlib.contextmanager
def cpu_memory_returned(n_atoms: int, on_cpu: bool = True) -> Iterator[None]:
    """Around one member's (or one family group's) evaluation of ``n_atoms`` atoms computing
    on a CPU in this process: large blocks served by ``mmap`` before
    (:func:`prepare_for_large_evaluation`), freed memory handed back after, however the
    block ends (:func:`release_freed_memory`), so the next member starts from the loaded
    models. Nothing when ``on_cpu`` is false (a GPU, a worker process)."""
    if on_cpu:
        prepare_for_large_evaluation(n_atoms)
    try:
        yield
    finally:
        if on_cpu:
            release_freed_memory(n_atoms)


def release_freed_memory(n_atoms: int) -> None:
    """After a member's evaluation of ``n_atoms`` atoms on a CPU: return the memory it freed to the OS.

    A member frees its activations when its call ends, but glibc keeps the freed
    blocks in its arenas (one per thread that allocated them), where the next
    member, with other block sizes and other threads, reuses them only in part:
    members run one after another then peak above the largest alone
    (docs/performance.md, "Large systems"). ``malloc_trim(0)`` gives every
    arena's free pages back, so each member starts from the loaded models.
    Nothing happens below :data:`RELEASE_MIN_ATOMS` atoms or without glibc.
    """
    if n_atoms >= RELEASE_MIN_ATOMS:
        trim = _glibc("malloc_trim", "c_size_t")
        if trim is not None:
            trim(0)
