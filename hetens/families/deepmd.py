"""DeePMD adapter: ``deepmd.calculator.DP`` (deepmd-kit 3.2, PyTorch backend; DPA3, DPA-2).

deepmd-kit's compiled PyTorch ops are built against torch 2.11 exactly
(``deepmd-kit[torch]`` requires ``torch==2.11.0``), so the family runs in its
own environment (``hetens env create deepmd --family deepmd``, which
installs that torch; then ``deepmd:MODEL@python=PATH``). hetens never patches
deepmd to run on another torch.

Accepted models: a frozen model (``.pth``, TorchScript, as ``dp --pt freeze``
writes), a training checkpoint (``.pt``), or a registry name of deepmd's own
pretrained list (``DPA-3.1-3M``...), which deepmd downloads into
``~/.cache/deepmd/pretrained/models`` on first use. Multi-head (multi-task)
models need their head: ``deepmd:DPA-3.1-3M@HEAD``; the head decides the
level of theory (the registry's ``heads``). ``DP(model=..., head=...)`` loads
all of them.

Process-wide state deepmd changes, restored after the load: importing
``deepmd.pt`` sets ``DP_INTRA_OP_PARALLELISM_THREADS`` and
``DP_INTER_OP_PARALLELISM_THREADS`` (to 0) in ``os.environ`` and may call
``torch.set_num_threads``; torch's default dtype and the random states are
guarded too. Stress is ASE's Voigt (6,) in eV/Å³ (``DP`` computes it from the
virial). No options.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import UnknownModelError
from hetens.families._common import is_local_path, package_versions, preserved_torch_state, require_download

_HOST = "huggingface.co"
_CACHE = Path.home() / ".cache" / "deepmd" / "pretrained" / "models"


def _registry_file(model: str) -> str | None:
    """File name deepmd's pretrained registry stores ``model`` under (``None``: not a deepmd name)."""
    from hetens.catalogue.registry import find_model

    if find_model("deepmd", model) is None:
        return None
    try:
        from deepmd.pretrained.registry import MODEL_REGISTRY
    except ImportError:
        return f"{model}.pt"
    for name, info in MODEL_REGISTRY.items():
        if name.lower() == model.lower():
            return info["filename"]
    return None


def weights_status(model: str) -> str:
    """``local file``, ``cached`` (deepmd's pretrained cache), ``download`` or ``missing``."""
    if is_local_path(model):
        return "local file"
    filename = _registry_file(model)
    if filename is None:
        return "missing"
    return "cached" if (_CACHE / filename).is_file() else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``DP`` calculator for a frozen model, a checkpoint or a deepmd pretrained name.

    Raises:
        UnknownModelError: an unknown name, or a head the model does not have.
        ValueError: options given.
        WeightsUnavailableError: an uncached pretrained model while the hub cannot be reached.
    """
    spec = f"deepmd:{model}"
    if options:
        raise ValueError(f"deepmd member {model}: deepmd takes no options; got {', '.join(sorted(options))}")
    if is_local_path(model):
        path = str(Path(model).expanduser())
    else:
        filename = _registry_file(model)
        if filename is None:
            from hetens.catalogue.registry import models_of_family

            raise UnknownModelError(f"unknown deepmd model {model!r}; known: "
                                    f"{', '.join(m.name for m in models_of_family('deepmd'))} "
                                    "(or give a .pth/.pt file: deepmd:/path/to/model.pth)")
        path = str(_CACHE / filename)
        if not (_CACHE / filename).is_file():
            path = _download(model, spec)
    with _deepmd_loading(device):
        from deepmd.calculator import DP

        try:
            return DP(model=path, head=head)
        except (KeyError, ValueError, AssertionError) as exc:
            if head and head in str(exc):
                raise UnknownModelError(f"{spec} has no head {head!r} ({exc})") from exc
            raise


def _download(model: str, spec: str) -> str:
    """deepmd's own ``download_model``: the fastest of its mirrors, written under a temporary
    name and renamed only after its SHA-256 matched (deepmd's ``MODEL_REGISTRY``); one clear
    error when every source failed."""
    from hetens.errors import WeightsUnavailableError
    from hetens.catalogue.registry import find_model

    how = (f"Download it once on a connected machine with `dp pretrained download {model}` (it lands "
           f"in {_CACHE}), or give the file: deepmd:/path/to/model.pth.")
    require_download(spec, _HOST, how)
    name = find_model("deepmd", model).name
    with _deepmd_loading("cpu"):
        from deepmd.pretrained.download import download_model
        from deepmd.pretrained.registry import MODEL_REGISTRY

        urls = ", ".join(MODEL_REGISTRY.get(name, {}).get("urls", []))
        try:
            return str(download_model(name, cache_dir=_CACHE))
        except (RuntimeError, ValueError, OSError) as exc:
            raise WeightsUnavailableError(
                f"could not download the weights of {spec} ({exc}; sources: {urls}); deepmd keeps no "
                f"partial file. {how}") from exc


def versions() -> dict[str, str]:
    return package_versions("deepmd-kit", "torch")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers of the model's type map (``DeepPot.get_type_map()``)."""
    from ase.data import atomic_numbers

    try:
        names = calculator.dp.get_type_map()
    except AttributeError:
        return None
    found = frozenset(atomic_numbers[n] for n in names if n in atomic_numbers)
    return found or None


@contextlib.contextmanager
def _deepmd_loading(device: str) -> Iterator[None]:
    """Load with deepmd's environment variables and torch thread counts restored afterwards."""
    import torch

    environment = dict(os.environ)
    threads = torch.get_num_threads()
    if str(device).startswith("cpu"):
        os.environ["DEVICE"] = "cpu"  # deepmd.pt.utils.env reads it at import
    try:
        with preserved_torch_state():
            yield
    finally:
        for key in set(os.environ) - set(environment):
            del os.environ[key]
        for key, value in environment.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
