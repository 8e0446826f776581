"""GRACE adapter: ``tensorpotential.calculator.TPCalculator`` (tensorpotential 0.6, TensorFlow 2.20).

GRACE runs on TensorFlow, not torch, and belongs in its own environment
(``hetens env create grace --family grace``, CPU TensorFlow, about 2 GB;
then ``grace:MODEL@python=PATH``): see docs/families.md for the measurements
behind that choice. The adapter is nonetheless correct in-process.

Accepted models: a TensorFlow SavedModel folder (``saved_model.pb`` inside, as
written by ``TensorPotential.save_model`` or downloaded by tensorpotential),
loaded with ``TPCalculator(model=FOLDER)``; or a registry name
(``GRACE-2L-OAM``...), loaded with tensorpotential's ``grace_fm``, which
downloads the model from the Hugging Face hub into ``$GRACE_CACHE``
(``~/.cache/grace``) on first use.

Side effects contained here: ``import tensorpotential`` sets
``TF_USE_LEGACY_KERAS=1`` and prints that it did; the loaders print to
stdout. The variable must stay set while TensorFlow is in use (TensorFlow
reads it when Keras is first touched), so it is kept for the process once
tensorpotential is imported and every other environment variable the import
or a load sets is removed again; stdout goes to stderr. TensorFlow's own
thread pools are process-wide and not torch's: another reason for a worker.
Stress is ASE's Voigt (6,) in eV/Å³. No heads. Option ``mode=diverse|uniform``
(tensorpotential's aggregation engine; default ``diverse``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from hetens.errors import UnknownModelError
from hetens.families._common import (
    is_local_path,
    package_versions,
    refuse_head_and_options,
    require_download,
)

_HOST = "huggingface.co"
_OPTIONS = ("mode",)
_MODES = ("diverse", "uniform")
#: What tensorpotential needs set before TensorFlow is imported (kept for the process).
_KEPT = ("TF_USE_LEGACY_KERAS",)


def _cache_dir() -> Path:
    """tensorpotential's foundation-model cache (``$GRACE_CACHE`` or ``~/.cache/grace``)."""
    return Path(os.environ.get("GRACE_CACHE") or os.path.expanduser("~/.cache/grace"))


def _known(model: str) -> str | None:
    from hetens.catalogue.registry import find_model

    known = find_model("grace", model)
    return known.name if known is not None else None


def weights_status(model: str) -> str:
    """``local file`` (a SavedModel folder), ``cached`` (in tensorpotential's cache), ``download`` or ``missing``."""
    if is_local_path(model):
        return "local file"
    name = _known(model)
    if name is None:
        return "missing"
    return "cached" if (_cache_dir() / name / "saved_model.pb").is_file() else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``TPCalculator`` for a SavedModel folder or a registry name.

    ``device`` is left to TensorFlow (it places the model on a GPU when it sees one).

    Raises:
        UnknownModelError: a head was given, or an unknown name.
        ValueError: unknown options, or a folder without a SavedModel.
        WeightsUnavailableError: an uncached registry model while the hub cannot be reached.
    """
    spec = f"grace:{model}"
    refuse_head_and_options("grace", model, head, options, _OPTIONS)
    mode = options.get("mode", "diverse")
    if mode not in _MODES:
        raise ValueError(f"grace member {model}: mode must be one of {', '.join(_MODES)}; got {mode!r}")
    if is_local_path(model):
        folder = Path(model).expanduser()
        if not (folder / "saved_model.pb").is_file():
            raise ValueError(f"{spec}: {folder} is not a TensorFlow SavedModel folder (no saved_model.pb); "
                             "save one with TensorPotential.save_model or give a registry name")
        with _grace_loading():
            from tensorpotential.calculator import TPCalculator

            return TPCalculator(model=str(folder), mode=mode)
    name = _known(model)
    if name is None:
        from hetens.catalogue.registry import models_of_family

        raise UnknownModelError(f"unknown grace model {model!r}; known: "
                                f"{', '.join(m.name for m in models_of_family('grace'))} "
                                "(or give a SavedModel folder: grace:/path/to/model)")
    if weights_status(name) == "download":
        require_download(spec, _HOST, f"Load it once with tensorpotential.calculator.grace_fm({name!r}) "
                         "on a connected machine (it lands in ~/.cache/grace).")
    with _grace_loading():
        from tensorpotential.calculator import grace_fm

        return grace_fm(name, mode=mode)


def versions() -> dict[str, str]:
    return package_versions("tensorpotential", "tensorflow-cpu", "tensorflow", "tf_keras")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers of the model's element map (``TPCalculator.element_map``)."""
    from ase.data import atomic_numbers

    element_map = getattr(calculator, "element_map", None)
    if not element_map:
        return None
    return frozenset(atomic_numbers[symbol] for symbol in element_map)


@contextlib.contextmanager
def _grace_loading() -> Iterator[None]:
    """Import and load with tensorpotential's output on stderr and only ``TF_USE_LEGACY_KERAS`` kept."""
    environment = dict(os.environ)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for key in set(os.environ) - set(environment) - set(_KEPT):
            del os.environ[key]
        for key, value in environment.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
