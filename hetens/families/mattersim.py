"""MatterSim adapter (mattersim 1.2.x): ``mattersim.forcefield.MatterSimCalculator``.

Models load with ``MatterSimCalculator.from_checkpoint(load_path=..., device=...)``,
MatterSim's own loader:

- ``mattersim:MatterSim-v1.0.0-1M`` and ``-5M`` (the released M3GNet-based
  models) are read from ``~/.local/mattersim/pretrained_models/``, where
  MatterSim downloads them from GitHub on first use (and which it creates on
  every load, even of a local file);
- a local checkpoint (``Potential.save(path)``: a dict with ``model_name``,
  ``model_args``, the state dict and training state) is passed as an absolute
  path: ``mattersim:/models/mattersim-v1.0.0-5M.pth@level=PBE+U``.

Stress: MatterSim computes it in GPa and its calculator converts it back to
eV/Å³ (``stress_weight = ase.units.GPa``) as a (6,) Voigt vector with ASE's
sign. A structure without periodicity is put by MatterSim in a large cubic
box (its warning about that is silenced for the call); energy and forces are
then those of the isolated structure, and no stress is reported. MatterSim
models have no heads and take no options.

Process-wide side effects, all confined to the import and load:

- importing mattersim sets ``KMP_DUPLICATE_LIB_OK`` and ``KMP_INIT_AT_FORK``
  (through scikit-learn) and ``TORCHINDUCTOR_CACHE_DIR``: the environment is
  restored whole;
- ``Potential.__init__`` sets ``torch.backends.cuda.matmul.allow_tf32``: restored;
- its logger setup (``mattersim.utils.logger_utils.get_logger``, run at
  import) removes every handler of the process-wide loguru logger and adds a
  stdout handler with a background thread: during the import, loguru's
  ``add``/``remove`` are made no-ops, so the user's loguru handlers stay and
  MatterSim's messages go where loguru's other messages go (stderr by
  default); its "Loading the model from" lines are dropped during the load.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import UnknownModelError
from hetens.families._common import (
    refuse_head_and_options,
    UPSTREAM_NOISE,
    is_local_path,
    package_versions,
    preserved_torch_state,
    without_upstream_noise,
)

_HOST = "raw.githubusercontent.com"
#: The released checkpoints, by the names MatterSim's loader takes (case-insensitive).
RELEASED = ("MatterSim-v1.0.0-1M", "MatterSim-v1.0.0-5M")
_NOISE = (*UPSTREAM_NOISE, "mattersim.forcefield.potential:from_checkpoint")
#: What ``from_checkpoint`` raises on a file that is not a MatterSim checkpoint.
_NOT_A_CHECKPOINT = (KeyError, AssertionError, RuntimeError, TypeError, ValueError, EOFError, pickle.UnpicklingError)


def checkpoint_folder() -> Path:
    """Where MatterSim keeps the released checkpoints (its loader's fixed folder)."""
    return Path(os.path.expanduser("~/.local/mattersim/pretrained_models"))


def _released(model: str) -> str | None:
    stem = model[:-4] if model.lower().endswith(".pth") else model
    return next((name for name in RELEASED if name.lower() == stem.lower()), None)


def weights_status(model: str) -> str:
    """``local file``, ``cached`` (in MatterSim's folder), ``download`` or ``missing`` (unknown name)."""
    if is_local_path(model):
        return "local file"
    name = _released(model)
    if name is None:
        return "missing"
    # MatterSim's file names: mattersim-v1.0.0-1M.pth (lower-case prefix, upper-case size).
    return "cached" if (checkpoint_folder() / f"mattersim{name[len('MatterSim'):]}.pth").is_file() else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``MatterSimCalculator`` (stress in eV/Å³, Voigt) for a released name or a local checkpoint.

    Raises:
        UnknownModelError: a head was given, or the name is not a released model.
        ValueError: options given, or the file is not a MatterSim checkpoint.
        WeightsUnavailableError: a released model not downloaded and GitHub unreachable.
    """
    refuse_head_and_options("mattersim", model, head, options)
    if is_local_path(model):
        source = str(Path(model).expanduser().resolve())
    else:
        source = _released(model)
        if source is None:
            raise UnknownModelError(
                f"mattersim has no released model {model!r}; released: {', '.join(RELEASED)} "
                "(or give a checkpoint file: mattersim:/path/to/model.pth)"
            )
    with _first_download(model, source) as path, _mattersim_loading(), without_upstream_noise(_NOISE):
        try:
            calculator = _calculator_class().from_checkpoint(load_path=str(path), device=device)
        except _NOT_A_CHECKPOINT as exc:
            raise ValueError(
                f"mattersim member {model}: MatterSimCalculator.from_checkpoint could not load {path} "
                f"({type(exc).__name__}: {exc}); a MatterSim checkpoint is written by Potential.save(path)"
            ) from exc
    return calculator


#: Where MatterSim's own ``download_checkpoint`` fetches the released checkpoints from.
RELEASE_URL = "https://raw.githubusercontent.com/microsoft/mattersim/main/pretrained_models/"


def _first_download(model: str, source: str):
    """The file to load: a local path as given; a released model fetched by hetens
    (:mod:`hetens.families._download`: atomic, removed again if it does not load) into MatterSim's own
    folder, where its loader then finds it."""
    if is_local_path(model):
        return contextlib.nullcontext(source)
    from hetens.families._download import fresh_download

    name = f"mattersim{source[len('MatterSim'):]}.pth"
    how = (f"Load it once with MatterSimCalculator.from_checkpoint(load_path={source!r}) on a connected "
           f"machine (it is saved in {checkpoint_folder()}).")
    return fresh_download(RELEASE_URL + name, checkpoint_folder() / name, spec=f"mattersim:{source}", how=how)


def versions() -> dict[str, str]:
    return package_versions("mattersim", "torch", "torch_geometric", "e3nn")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers 1..max_z of the model's one-hot atom embedding (94 for the released models)."""
    max_z = getattr(getattr(calculator.potential, "model", None), "max_z", None)
    return frozenset(range(1, int(max_z) + 1)) if max_z else None


@contextlib.contextmanager
def _mattersim_loading() -> Iterator[None]:
    """Import and load MatterSim without its process-wide side effects (see the module docstring)."""
    with preserved_torch_state():
        import sys

        if "mattersim.forcefield" in sys.modules:
            yield
            return
        from loguru import logger

        # mattersim's get_logger, run at import, would remove every loguru handler of the
        # process and add its own on stdout; for the import only, both calls do nothing.
        with (
            _no_op(logger, "remove", None),
            _no_op(logger, "add", 0),
            warnings.catch_warnings(),
            without_upstream_noise(),
        ):
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            import mattersim.forcefield  # noqa: F401
        yield


@contextlib.contextmanager
def _no_op(target, name: str, result) -> Iterator[None]:
    """``target.name`` replaced by a function returning ``result`` for the block (an instance
    attribute shadowing the method; removed afterwards)."""
    setattr(target, name, lambda *args, **kwargs: result)
    try:
        yield
    finally:
        delattr(target, name)


@functools.cache
def _calculator_class():
    from mattersim.forcefield import MatterSimCalculator

    class QuietMatterSimCalculator(MatterSimCalculator):
        """MatterSim's calculator; a structure without periodicity is evaluated in MatterSim's
        own large box without its warning, and gets no stress; the random states are left
        as they were (its DataLoader draws a seed per call)."""

        def calculate(self, atoms=None, properties=None, system_changes=None) -> None:
            # Its torch DataLoader draws a seed from torch's generator on every call: restored.
            with warnings.catch_warnings(), preserved_torch_state():
                warnings.filterwarnings("ignore", message="No PBC detected", category=UserWarning)
                super().calculate(atoms, properties, system_changes)
            if not self.atoms.pbc.all():
                self.results.pop("stress", None)  # a molecule has no stress

    return QuietMatterSimCalculator
