"""NequIP / Allegro adapter: ``nequip.integrations.ase.NequIPCalculator`` (nequip 0.19, allegro 0.8).

Allegro models are members of this family: both architectures load through
the same calculator. nequip needs e3nn >= 0.6, which sevenn and fairchem in
the main environment cannot take, so the family runs in its own environment
(``hetens env create nequip --family nequip``, then
``nequip:MODEL@python=PATH``); the adapter is nonetheless correct in-process.

Accepted models:

- a compiled model ``*.nequip.pt2`` (``nequip-compile --mode aotinductor
  --target ase``): ``NequIPCalculator.from_compiled_model``, nequip's
  recommended route (compile on the machine and for the device it runs on);
- a package file ``*.nequip.zip`` (``nequip-package``; the form nequip.net
  distributes) or a training checkpoint ``*.ckpt``: nequip's eager loader
  (``NequIPCalculator._from_saved_model``, which builds the model with
  ``nequip.model.saved_models.load_utils.load_saved_model``; what nequip's own
  integration tests use as the reference);
- a registry name (``NequIP-OAM-L-0.1``, ``Allegro-OAM-L-0.1``...): the
  nequip.net model ``nequip.net:mir-group/NAME:VERSION``, downloaded by nequip
  into ``~/.nequip/model_cache`` on first use (needs nequip.net).

TorchScript files (``.nequip.pth``) are not accepted: nequip refuses
TorchScript on torch >= 2.10.

Process-wide state nequip changes, all restored after the load and after each
calculation (``set_global_state``, run by the eager loader once per process):
torch's default dtype (float64), every random generator (Lightning's
``seed_everything(123)``: Python, NumPy, torch) and the environment variables
``PL_GLOBAL_SEED``/``PL_SEED_WORKERS``/``PYTORCH_JIT_USE_NNC_NOT_NVFUSER``,
TorchScript's fusion strategy, e3nn's optimisation defaults, two
``torch._dynamo`` flags, torch's multiprocessing sharing strategy and, on a
CUDA machine, the TF32 settings. Each calculation runs with float64 as the
default dtype (what nequip's models are built for), then the caller's dtype
comes back. The model's type names must be chemical symbols (true of every
nequip.net model); stress is ASE's Voigt (6,) in eV/Å³. No heads, no options.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import UnknownModelError, WeightsUnavailableError
from hetens.families._common import (
    is_local_path,
    package_versions,
    refuse_head_and_options,
    require_download,
)

_HOST = "nequip.net"
_GROUP = "mir-group"
_SAVED_SUFFIXES = (".nequip.zip", ".ckpt")
_COMPILED_SUFFIX = ".nequip.pt2"


def _model_id(model: str) -> str | None:
    """nequip.net ID of a registry name (``NequIP-OAM-L-0.1`` -> ``nequip.net:mir-group/NequIP-OAM-L:0.1``)."""
    from hetens.catalogue.registry import find_model

    known = find_model("nequip", model)
    if known is None:
        return None
    name, _, version = known.name.rpartition("-")
    return f"{_HOST}:{_GROUP}/{name}:{version}"


def weights_status(model: str) -> str:
    """``local file`` for a path, ``download`` for a registry name (nequip.net), else ``missing``."""
    if is_local_path(model):
        return "local file"
    return "download" if _model_id(model) is not None else "missing"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``NequIPCalculator`` for a compiled model, a package file, a checkpoint or a registry name.

    Raises:
        UnknownModelError: a head was given, or an unknown name.
        ValueError: options given, or a file nequip cannot load this way.
        WeightsUnavailableError: a registry name while nequip.net cannot be reached.
    """
    spec = f"nequip:{model}"
    refuse_head_and_options("nequip", model, head, options)
    if is_local_path(model):
        source = str(Path(model).expanduser())
        if source.endswith(".nequip.pth"):
            raise ValueError(
                f"{spec}: TorchScript models (.nequip.pth) do not run on torch >= 2.10; give the "
                "package file (.nequip.zip) or compile with nequip-compile --mode aotinductor --target ase"
            )
        if not source.endswith((_COMPILED_SUFFIX, *_SAVED_SUFFIXES)):
            raise ValueError(
                f"{spec}: not a nequip model file; expected a compiled model (*{_COMPILED_SUFFIX}), "
                f"a package file (*.nequip.zip) or a checkpoint (*.ckpt)"
            )
    else:
        source = _model_id(model)
        if source is None:
            from hetens.catalogue.registry import models_of_family

            known = ", ".join(m.name for m in models_of_family("nequip"))
            raise UnknownModelError(
                f"unknown nequip model {model!r}; known: {known} (or give a .nequip.zip/.nequip.pt2/.ckpt file)"
            )
        require_download(spec, _HOST, f"Fetch it once on a connected machine (nequip-package "
                         f"build is not needed: nequip.net serves {source} as a package file), "
                         "or download the .nequip.zip from nequip.net.")
    with _nequip_global_state():
        calculator_class = _calculator_class()
        try:
            if source.endswith(_COMPILED_SUFFIX):
                calc = calculator_class.from_compiled_model(
                    source, device=device, chemical_species_to_atom_type_map=True)
            else:
                calc = calculator_class._from_saved_model(
                    source, device=device, chemical_species_to_atom_type_map=True)
        except ValueError as exc:
            if "Invalid chemical symbol" in str(exc):
                raise ValueError(
                    f"{spec}: the model's type names are not chemical symbols ({exc}); hetens "
                    "maps chemical species to types one to one"
                ) from exc
            raise
        except (OSError, ConnectionError) as exc:  # a download that failed half-way
            if source.startswith(_HOST):
                raise WeightsUnavailableError(f"nequip could not fetch {source}: {exc}") from exc
            raise
    return calc


def versions() -> dict[str, str]:
    return package_versions("nequip", "nequip-allegro", "torch", "e3nn")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers the model's species-to-type table maps (its ``ChemicalSpeciesToAtomTypeMapper``)."""
    for transform in getattr(calculator, "transforms", ()):
        table = getattr(transform, "lookup_table", None)
        if table is not None and hasattr(transform, "model_type_names"):
            return frozenset(int(z) for z in (table >= 0).nonzero().flatten().tolist())
    return None


_CLASS = None


def _calculator_class():
    """``NequIPCalculator`` whose calculations run under float64 with nequip's state contained."""
    global _CLASS
    if _CLASS is None:
        from nequip.integrations.ase import NequIPCalculator

        class HetensNequIPCalculator(NequIPCalculator):
            """nequip's calculator; each ``calculate`` runs with float64 as torch's default dtype
            (nequip's global dtype) and leaves the process's state as it found it."""

            def calculate(self, *args, **kwargs):
                with _nequip_global_state():
                    return super().calculate(*args, **kwargs)

        _CLASS = HetensNequIPCalculator
    return _CLASS


@contextlib.contextmanager
def _nequip_global_state() -> Iterator[None]:
    """Run with nequip's float64 default dtype; restore everything ``set_global_state`` changes."""
    import random

    import numpy as np
    import torch

    environment = dict(os.environ)
    dtype = torch.get_default_dtype()
    matmul = torch.get_float32_matmul_precision()
    python_random = random.getstate()
    numpy_random = np.random.get_state()
    torch_random = torch.random.get_rng_state()
    cuda = torch.cuda.is_available()
    cuda_random = torch.cuda.get_rng_state_all() if cuda else None
    tf32 = _tf32_state(torch) if cuda else None
    fusion = torch.jit.set_fusion_strategy([("STATIC", 2), ("DYNAMIC", 10)])
    torch.jit.set_fusion_strategy(fusion)
    sharing = torch.multiprocessing.get_sharing_strategy()
    dynamo = _dynamo_flags(torch)
    e3nn_defaults = _e3nn_defaults()
    try:
        torch.set_default_dtype(torch.float64)
        with warnings.catch_warnings():
            # nequip warns about its own deprecated paths and e3nn about torch.jit.
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"(nequip|e3nn)(\.|$)")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(nequip|e3nn|torch\.jit)(\.|$)")
            yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_float32_matmul_precision(matmul)
        random.setstate(python_random)
        np.random.set_state(numpy_random)
        torch.random.set_rng_state(torch_random)
        if cuda:
            torch.cuda.set_rng_state_all(cuda_random)
            _set_tf32_state(torch, tf32)
        torch.jit.set_fusion_strategy(fusion)
        if torch.multiprocessing.get_sharing_strategy() != sharing:
            torch.multiprocessing.set_sharing_strategy(sharing)
        for name, value in dynamo.items():
            setattr(torch._dynamo.config, name, value)
        if e3nn_defaults is not None:
            import e3nn

            e3nn.set_optimization_defaults(**e3nn_defaults)
        for key in set(os.environ) - set(environment):
            del os.environ[key]
        for key, value in environment.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


_DYNAMO_FLAGS = ("capture_dynamic_output_shape_ops", "capture_scalar_outputs")


def _dynamo_flags(torch) -> dict[str, bool]:
    import importlib

    config = importlib.import_module("torch._dynamo.config")
    return {name: getattr(config, name) for name in _DYNAMO_FLAGS if hasattr(config, name)}


def _e3nn_defaults() -> dict | None:
    """e3nn's optimisation defaults when e3nn is already imported (nequip imports it anyway)."""
    import importlib.util

    if importlib.util.find_spec("e3nn") is None:
        return None
    import e3nn

    getter = getattr(e3nn, "get_optimization_defaults", None)
    return dict(getter()) if getter is not None else None


def _tf32_state(torch) -> dict[str, object]:
    """CUDA TF32 settings; a flag torch refuses to read (the legacy cuDNN flag once
    ``fp32_precision`` is ``"ieee"`` on torch >= 2.13) is left out."""
    getters = {
        "fp32_precision": lambda: torch.backends.fp32_precision,
        "matmul": lambda: torch.backends.cuda.matmul.allow_tf32,
        "cudnn": lambda: torch.backends.cudnn.allow_tf32,
    }
    state = {}
    for name, getter in getters.items():
        with contextlib.suppress(AttributeError, RuntimeError):
            state[name] = getter()
    return state


def _set_tf32_state(torch, state: dict[str, object]) -> None:
    setters = {
        "fp32_precision": lambda v: setattr(torch.backends, "fp32_precision", v),
        "matmul": lambda v: setattr(torch.backends.cuda.matmul, "allow_tf32", v),
        "cudnn": lambda v: setattr(torch.backends.cudnn, "allow_tf32", v),
    }
    for name, value in state.items():
        with contextlib.suppress(AttributeError, RuntimeError):
            setters[name](value)
