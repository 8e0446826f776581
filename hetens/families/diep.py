"""DIEP adapter: ``diep.pretrained.make_calculator`` (diep 2.x, PyTorch Geometric).

The released ``diep_fold1`` (trained on MatPES r2SCAN) ships inside the diep
wheel, in ``diep/pretrained_models/``; the name loads that folder, never
whatever ``$DIEP_MODEL_DIR`` points to. A local exported model folder
(``model.json``, ``model.pt``, ``state.pt``, as written by
``Potential.save``) works too. ``make_calculator`` returns stress in eV/Å³;
the calculator here returns it as ASE's (6,) Voigt vector. DIEP models have
no heads and no options. An isolated structure (``pbc=False``, no cell) is
supported by DIEP's own graph builder: energy and forces are meaningful,
the stress of a structure without a cell is not.
"""

from __future__ import annotations

from pathlib import Path

from hetens.errors import UnknownModelError
from hetens.families._common import (
    is_local_path,
    package_versions,
    preserved_torch_state,
    refuse_head_and_options,
)

_FILES = ("model.json", "model.pt", "state.pt")


def _shipped_folder(model: str) -> Path | None:
    """The wheel's ``pretrained_models/MODEL`` folder, or ``None`` when the wheel has no such model."""
    import importlib.util

    spec = importlib.util.find_spec("diep")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "pretrained_models"
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.name.lower() == model.lower() and all((folder / f).is_file() for f in _FILES):
            return folder
    return None


def shipped_models() -> list[str]:
    """Names of the models inside the installed diep wheel."""
    import importlib.util

    spec = importlib.util.find_spec("diep")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "pretrained_models"
    if not root.is_dir():
        return []
    return sorted(f.name for f in root.iterdir() if all((f / n).is_file() for n in _FILES))


def weights_status(model: str) -> str:
    """``shipped`` (in the diep wheel), ``local file`` for a path, else ``missing``
    (diep has no download source hetens would use)."""
    if is_local_path(model):
        return "local file"
    return "shipped" if _shipped_folder(model) is not None else "missing"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A DIEP calculator (stress in eV/Å³, Voigt) for a shipped name or an exported model folder.

    Raises:
        UnknownModelError: a head was given, or the name is not a model of the wheel.
        ValueError: options given, or the folder is not an exported DIEP model.
    """
    refuse_head_and_options("diep", model, head, options)
    if is_local_path(model):
        folder = Path(model).expanduser()
    else:
        folder = _shipped_folder(model)
        if folder is None:
            raise UnknownModelError(
                f"diep has no shipped model {model!r}; shipped: {', '.join(shipped_models()) or 'none'} "
                "(or give an exported model folder: diep:/path/to/folder)"
            )
    with preserved_torch_state():
        from diep.pretrained import make_calculator

        try:
            calculator = make_calculator(folder, device=device, stress=True)
        except (FileNotFoundError, ValueError, RuntimeError, KeyError) as exc:
            raise ValueError(
                f"diep member {model}: {folder} is not a loadable DIEP model folder ({exc}); "
                "it needs model.json, model.pt and state.pt as written by Potential.save(folder)"
            ) from exc
    calculator.use_voigt = True  # (6,) Voigt stress as ASE expects; make_calculator gives 3x3
    calculator.calculate = _deterministic(calculator.calculate)
    return calculator


def _deterministic(calculate):
    """``calculate`` under torch's deterministic algorithms, the process's setting restored after.

    DIEP's message passing sums with ``scatter_add_``, whose order of addition varies
    from call to call on a CPU: six calls on one 54-atom cell gave six force arrays up
    to 1.9e-6 eV/Å apart, and one under deterministic algorithms, at no measurable
    cost (docs/uncertainty-scale.md, "What is reproducible"). ``warn_only``: an
    operation without a deterministic kernel warns instead of failing the member.
    """
    import functools

    @functools.wraps(calculate)
    def deterministic_calculate(*args, **kwargs):
        import torch

        enabled = torch.are_deterministic_algorithms_enabled()
        warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return calculate(*args, **kwargs)
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)

    return deterministic_calculate


def versions() -> dict[str, str]:
    return package_versions("diep", "torch", "torch_geometric", "pymatgen")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers of the model's ``element_types`` (Z 1-83 and 89-94 for diep_fold1)."""
    from ase.data import atomic_numbers

    symbols = getattr(calculator, "element_types", None)
    return frozenset(atomic_numbers[s] for s in symbols) if symbols else None
