"""fairchem-core 1.x adapter (family ``fairchem1``): ``fairchem.core.OCPCalculator``.

The paper's EquiformerV2 (eqV2) and eSEN-30M OMat24/OAM checkpoints are
fairchem-core 1.x files, which fairchem 2.x neither lists nor loads. 1.x needs
torch 2.4 and ``torch_scatter``, so the family runs only in its own environment:
``hetens env create fairchem1 --family fairchem1`` (the recipe, with the PyTorch
and PyG wheel indexes as options: :mod:`hetens.envs`, docs/families.md), then
``python = "env:fairchem1"`` in an ensemble file or ``@python=env:fairchem1``.
The module imports fairchem only inside its functions and is correct in any
environment that has fairchem-core 1.x.

Accepted models:

- a registry name (``EquiformerV2-31M-OMAT24``, ``eSEN-30M-OAM``...), a key of
  fairchem 1.x's own ``pretrained_models.json``: the checkpoint comes from the
  gated Hugging Face repository ``facebook/OMAT24`` through fairchem's own
  ``model_name_to_local_file`` (``hf_hub_download``, Hugging Face cache; accept the
  licence on huggingface.co and log in with ``huggingface-cli login`` first);
- a local fairchem 1.x checkpoint (``.pt``, a dict with ``config`` and
  ``state_dict``, as fairchem's trainers save it and as the OMat24 files are).

``OCPCalculator(checkpoint_path=..., cpu=..., seed=0)``: the seed is fixed so
reruns are identical (fairchem's trainer reseeds Python, NumPy and torch at
load; the caller's random states are restored afterwards). Stress is ASE's
Voigt (6,) in eV/Å³ where the model predicts it. No heads, no options.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import UnknownModelError, WeightsUnavailableError
from hetens.families._common import (
    hub_reachable,
    is_local_path,
    package_versions,
    preserved_torch_state,
    refuse_head_and_options,
)

_HOST = "huggingface.co"
_REPO = "facebook/OMAT24"


def _registry_entry(model: str) -> dict | None:
    """fairchem 1.x's ``pretrained_models.json`` entry of ``model`` (``None``: not a name)."""
    from hetens.catalogue.registry import find_model

    known = find_model("fairchem1", model)
    if known is None:
        return None
    try:
        from fairchem.core.models.model_registry import MODEL_REGISTRY
    except ImportError:
        return {"repo_id": _REPO, "filename": None}
    entry = MODEL_REGISTRY.models.get(known.name)
    return None if entry is None else {"repo_id": getattr(entry, "repo_id", None),
                                        "filename": getattr(entry, "filename", None)}


def _cached(model: str) -> str | None:
    entry = _registry_entry(model)
    if not entry or not entry.get("filename"):
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(entry["repo_id"], entry["filename"])
    return found if isinstance(found, str) else None


def weights_status(model: str) -> str:
    """``local file``, ``cached`` (Hugging Face cache), ``download`` or ``missing`` (unknown name)."""
    if is_local_path(model):
        return "local file"
    if _registry_entry(model) is None:
        return "missing"
    return "cached" if _cached(model) else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """An ``OCPCalculator`` for a registry name or a local fairchem 1.x checkpoint.

    Raises:
        UnknownModelError: a head, or a name fairchem 1.x's registry does not have.
        WeightsUnavailableError: weights not cached and the hub cannot be reached.
    """
    refuse_head_and_options("fairchem1", model, head, options)
    if is_local_path(model):
        path = str(Path(model).expanduser())
    else:
        if _registry_entry(model) is None:
            from hetens.catalogue.registry import models_of_family

            raise UnknownModelError(
                f"unknown fairchem1 model {model!r}; known: "
                f"{', '.join(m.name for m in models_of_family('fairchem1'))} "
                "(or give a fairchem 1.x checkpoint: fairchem1:/path/to/checkpoint.pt)")
        path = _cached(model) or _download(model)
    with _contained():
        from fairchem.core import OCPCalculator

        return OCPCalculator(checkpoint_path=path, cpu=not str(device).startswith("cuda"), seed=0)


def _download(model: str) -> str:
    """fairchem 1.x's own download of a registry model, with one clear error when it fails."""
    from hetens.catalogue.registry import find_model

    name = find_model("fairchem1", model).name
    how = (f"accept the licence of {_REPO} on huggingface.co, run `huggingface-cli login`, then load "
           f"it once on a connected machine, or give the file: fairchem1:/path/to/checkpoint.pt")
    if not hub_reachable(_HOST):
        raise WeightsUnavailableError(f"the weights of fairchem1:{name} are not on this machine and "
                                      f"{_HOST} cannot be reached: {how}")
    from fairchem.core.models.model_registry import model_name_to_local_file

    try:
        return model_name_to_local_file(name, local_cache=str(Path.home() / ".cache" / "fairchem"))
    except Exception as exc:  # gated repository, network error: one line saying what to do
        raise WeightsUnavailableError(
            f"could not download the weights of fairchem1:{name} from {_REPO} "
            f"({type(exc).__name__}: {exc}): {how}") from exc


def versions() -> dict[str, str]:
    return package_versions("fairchem-core", "torch", "torch_geometric", "torch_scatter")


def elements(calculator) -> frozenset[int] | None:
    """fairchem 1.x models do not record their elements: ``None``."""
    return None


@contextlib.contextmanager
def _contained() -> Iterator[None]:
    """Import and load with fairchem's reseeding, dtype and environment changes undone."""
    with preserved_torch_state(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
        yield
