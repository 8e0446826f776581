"""MatGL adapter: ``matgl.ext.ase.PESCalculator`` on a ``matgl.apps.pes.Potential``.

``matgl.load_model`` takes a local model folder (``model.pt``, ``state.pt``,
``model.json``, as written by ``Potential.save``) or a pretrained name, which
it downloads from the Hugging Face hub (``materialyze/NAME``) into
``~/.cache/matgl``. A saved bare graph model (not a ``Potential``) is wrapped
in a ``Potential`` with forces and stress.

``PESCalculator`` reports stress in GPa by default; here it is created with
``stress_unit="eV/A3"`` and Voigt output, so stress is (6,) eV/Å³ with ASE's
sign (positive under tension). MatGL models have no heads and no options.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from pathlib import Path

from hetens.errors import UnknownModelError
from hetens.families._common import (
    refuse_head_and_options,
    is_local_path,
    package_versions,
    preserved_torch_state,
    without_upstream_noise,
)
from hetens.families._download import hub_download, hub_endpoint, require_hub

_FILES = ("model.pt", "state.pt", "model.json")


def weights_status(model: str) -> str:
    """``local file``, ``cached`` (all three files in matgl's cache) or ``download``."""
    if is_local_path(model):
        return "local file"
    return "cached" if _cached_folder(model) is not None else "download"


def _repo_and_cache(model: str) -> tuple[str, Path]:
    """The hub repository ``matgl.load_model(model)`` downloads from, and matgl's cache."""
    with without_upstream_noise(), preserved_torch_state():
        from matgl.utils import io as matgl_io  # the cache and hub organisation load_model uses

    return (model if "/" in model else f"{matgl_io.HF_MATGL_ORG}/{model}"), Path(matgl_io.MATGL_CACHE)


def _cached_folder(model: str) -> str | None:
    """The snapshot folder holding all three files of a pretrained name in matgl's cache, or ``None``."""
    from huggingface_hub import try_to_load_from_cache

    repo, cache = _repo_and_cache(model)
    found = [try_to_load_from_cache(repo, name, cache_dir=cache) for name in _FILES]
    if not all(isinstance(f, str) for f in found) or len({str(Path(f).parent) for f in found}) != 1:
        return None
    return str(Path(found[0]).parent)


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``PESCalculator`` (stress in eV/Å³, Voigt) for a model folder or pretrained name.

    Raises:
        ValueError: options given, or the folder does not hold a matgl model.
        UnknownModelError: a head was given (matgl models have none).
        WeightsUnavailableError: hub weights not cached and the hub (``HF_ENDPOINT``)
            unreachable, the download failed, or the downloaded files do not load (they
            are removed again).

    A pretrained name whose three files are cached loads from its snapshot folder, so a
    cached load asks the hub nothing; otherwise ``matgl.load_model(name)`` downloads them.
    """
    refuse_head_and_options("matgl", model, head, options)
    spec = f"matgl:{model}"
    with without_upstream_noise(), preserved_torch_state():
        import matgl
        from matgl.apps.pes import Potential

        download = contextlib.nullcontext()
        if is_local_path(model):
            source = str(Path(model).expanduser())
        elif (cached := _cached_folder(model)) is not None:
            source = cached
        else:
            source = model
            how = f"Load it once with matgl.load_model({model!r}) on a connected machine."
            require_hub(spec, how)
            repo, cache = _repo_and_cache(model)
            download = hub_download(spec, f"{hub_endpoint()}/{repo}", how, cache_dir=cache, repo_id=repo)
        with download:
            try:
                loaded = matgl.load_model(source)
            except (ValueError, RuntimeError) as exc:
                raise ValueError(
                    f"matgl member {model}: matgl.load_model could not load it ({exc}; {exc.__cause__}). "
                    "A local model is a folder with model.pt, state.pt and model.json, as written by "
                    "Potential.save(folder)."
                ) from exc
            potential = loaded if isinstance(loaded, Potential) else Potential(model=loaded)
        potential = potential.to(device)
        return _calculator_class()(potential, stress_unit="eV/A3", use_voigt=True)


def versions() -> dict[str, str]:
    return package_versions("matgl", "torch", "torch_geometric")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers of the model's ``element_types``."""
    from ase.data import atomic_numbers

    symbols = getattr(calculator, "element_types", None)
    return frozenset(atomic_numbers[s] for s in symbols) if symbols else None


@functools.cache
def _calculator_class():
    from matgl.ext.ase import PESCalculator

    class QuietPESCalculator(PESCalculator):
        """matgl's calculator, keeping stdout clean and without a warning about matgl's own code.

        - matgl builds a tensor from ``atoms.get_cell()`` (a ``Cell``, not an
          array), which makes torch warn once per process that this is slow;
        - its neighbour list initialises NVIDIA warp on first use, which prints
          a banner to stdout (sent to stderr here, so piped output stays clean).
        """

        def calculate(self, atoms=None, properties=None, system_changes=None) -> None:
            with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
                warnings.filterwarnings(
                    "ignore", message="Creating a tensor from a list of numpy.ndarrays", category=UserWarning
                )
                super().calculate(atoms, properties, system_changes)

    return QuietPESCalculator
