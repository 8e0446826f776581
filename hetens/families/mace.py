"""MACE adapter: ``mace.calculators.MACECalculator``.

A local ``.model`` file loads with ``MACECalculator(model_paths=...)``; a
registry name (``medium-omat-0``...) goes through ``mace_mp``, which downloads
from GitHub into ``~/.cache/mace`` (``$XDG_CACHE_HOME/mace``) on first use. No
MACE weights ship inside the mace-torch wheel.

MACE changes process-wide state when imported and loaded; all of it is
confined to the load here:

- ``import mace`` prints to stdout and sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
  (its model files are whole pickled modules, so ``torch.load`` needs it);
- ``MACECalculator.__init__`` extends ASE's class-level
  ``BaseCalculator.implemented_properties`` list in place, so every ASE
  calculator without a list of its own would then claim energy/forces/stress;
- older releases call ``torch.set_default_dtype`` in the constructor.

Option ``dtype=float32|float64`` (default ``float64``: exact gradients for
finite-difference checks and relaxations; ``float32`` is about twice as fast
for MD). A multi-head model takes its head as ``mace:/path.model@HEAD``.
Model files are pickles: load only files you trust.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import UnknownModelError, WeightsUnavailableError
from hetens.families._common import (
    is_local_path,
    package_versions,
    preserved_torch_state,
    without_upstream_noise,
)

_HOST = "github.com"
_DTYPES = ("float32", "float64")
_OPTIONS = ("dtype",)


def weights_status(model: str) -> str:
    """``local file``, ``shipped`` (inside the mace package), ``cached`` (in MACE's cache) or ``download``."""
    if is_local_path(model):
        return "local file"
    with _mace_loading():
        from mace.calculators import foundations_models

    if model == "medium-mpa-0" and os.path.isfile(foundations_models.local_model_path):
        return "shipped"
    path = _cache_path(model)
    return "cached" if path is not None and path.is_file() else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``MACECalculator`` for a local model file or a ``mace_mp`` model name.

    Raises:
        ValueError: an unknown option or dtype.
        UnknownModelError: ``head`` is not one of the model's heads.
        WeightsUnavailableError: hub weights not cached and GitHub unreachable.
    """
    dtype = _dtype(model, options)
    head_kwargs = {"head": head} if head else {}
    spec = f"mace:{model}"
    with _mace_loading():
        from mace.calculators import MACECalculator, mace_mp

        if is_local_path(model):
            # A Path (not a str): MACE glob-expands strings.
            calc = MACECalculator(
                model_paths=Path(model).expanduser(), device=device, default_dtype=dtype, **head_kwargs
            )
        else:
            from mace.calculators.foundations_models import mace_mp_urls

            from hetens.families._download import fresh_download

            url, cached = mace_mp_urls.get(model), _cache_path(model)
            # hetens fetches the file into MACE's own cache (atomic, removed again if it does not
            # load); mace_mp then finds it there and loads it as it would its own download.
            download = (fresh_download(url, cached, spec=spec, how=_how_to_download(model))
                        if url is not None else contextlib.nullcontext())
            with download:
                try:
                    calc = mace_mp(model=model, device=device, default_dtype=dtype, **head_kwargs)
                except RuntimeError as exc:  # mace_mp wraps every download failure in RuntimeError
                    raise WeightsUnavailableError(
                        f"MACE could not download the weights of {spec} ({exc.__cause__ or exc}). "
                        f"{_how_to_download(model)}"
                    ) from exc
        if head and head not in calc.available_heads:
            # MACE itself only logs a warning and silently uses its last head.
            raise UnknownModelError(
                f"{spec} has no head {head!r}; its heads are {list(calc.available_heads)}"
            )
        # Give the calculator its own list before the shared one is restored.
        calc.implemented_properties = list(dict.fromkeys(calc.implemented_properties))
    return calc


def versions() -> dict[str, str]:
    return package_versions("mace-torch", "torch", "e3nn")


def elements(calculator) -> frozenset[int]:
    """Atomic numbers of the model's element table (``z_table``)."""
    return frozenset(int(z) for z in calculator.z_table.zs)


def _dtype(model: str, options: dict[str, str]) -> str:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(
            f"mace member {model}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(_OPTIONS)}"
        )
    dtype = options.get("dtype", "float64")
    if dtype not in _DTYPES:
        raise ValueError(f"mace member {model}: dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
    return dtype


def _cache_path(model: str) -> Path | None:
    """Where ``mace_mp`` keeps the download of ``model``, or ``None`` for an unknown name."""
    from mace.calculators.foundations_models import mace_mp_urls
    from mace.tools.utils import get_cache_dir

    url = mace_mp_urls.get(model)
    if url is None:
        return None
    # The same file name mace's download_mace_mp_checkpoint derives from the URL.
    name = "".join(c for c in os.path.basename(url) if c.isalnum() or c in "_")
    return Path(get_cache_dir()) / name


def _how_to_download(model: str) -> str:
    with _mace_loading():
        from mace.calculators.foundations_models import mace_mp_urls
    url = mace_mp_urls.get(model)
    if url is None:
        return "Load it once with mace.calculators.mace_mp on a connected machine."
    return (
        f"Load it once with mace.calculators.mace_mp(model={model!r}) on a connected machine, "
        f"or download {url} yourself and give the file as mace:/path/to/file.model@level=LEVEL."
    )


@contextlib.contextmanager
def _mace_loading() -> Iterator[None]:
    """Import and load MACE without its process-wide side effects (see module docstring)."""
    from ase.calculators.calculator import BaseCalculator

    shared = BaseCalculator.implemented_properties
    shared_before = list(shared)
    with (
        without_upstream_noise(),
        preserved_torch_state(),
        contextlib.redirect_stdout(sys.stderr),
        warnings.catch_warnings(),
    ):
        # Model files are whole pickled modules: torch.load must not default to
        # weights_only. Set for the load only (the import sets it just once per process).
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
        warnings.filterwarnings("ignore", message="cuequivariance", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*TorchScript type system.*", category=UserWarning)
        try:
            yield
        finally:
            shared[:] = shared_before
