"""fairchem adapter: ``fairchem.core.FAIRChemCalculator`` on an ``MLIPPredictUnit``.

A local checkpoint loads with ``load_predict_unit``; a name from fairchem's
pretrained list (``uma-s-1p1``...) goes through
``pretrained_mlip.get_predict_unit``, which downloads from the Hugging Face
hub (``facebook/UMA`` is gated: accept its license and log in with
``hf auth login``) into ``~/.cache/fairchem`` (``$FAIRCHEM_CACHE_DIR``).

The head is the UMA task (``omat``, ``omol``, ``oc20``, ``odac``, ``omc``); a
single-task checkpoint needs none. Option ``dtype=float32|float64`` sets the
inference precision (default ``float32``, fairchem's own). Inference runs
uncompiled: fairchem's default settings compile on first call (about a minute
on CPU).

fairchem reads ``charge`` and ``spin`` from ``atoms.info`` (the ``omol`` task
uses them) and writes defaults into the caller's ``atoms.info``; the
calculator returned here does that on a copy, so input atoms stay unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

from hetens.errors import UnknownModelError
from hetens.families._common import (
    is_local_path,
    package_versions,
    preserved_torch_state,
    without_upstream_noise,
)
from hetens.families._download import hub_download, require_hub

_DTYPES = ("float32", "float64")
_OPTIONS = ("dtype",)


def weights_status(model: str) -> str:
    """``local file``, ``cached`` (in fairchem's Hugging Face cache) or ``download``."""
    if is_local_path(model):
        return "local file"
    from huggingface_hub import try_to_load_from_cache

    with without_upstream_noise(), preserved_torch_state():
        from fairchem.core.calculate import pretrained_mlip

    entry = pretrained_mlip._MODEL_CKPTS.checkpoints.get(model)
    if entry is None:
        return "download"
    filename = f"{entry.subfolder}/{entry.filename}" if entry.subfolder else entry.filename
    found = try_to_load_from_cache(
        entry.repo_id, filename, cache_dir=pretrained_mlip.CACHE_DIR, revision=entry.revision
    )
    return "cached" if isinstance(found, str) else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``FAIRChemCalculator`` for a local checkpoint or a fairchem pretrained name.

    Raises:
        ValueError: an unknown option or dtype, or a device fairchem cannot use.
        UnknownModelError: ``head`` is not one of the checkpoint's tasks.
        WeightsUnavailableError: hub weights not cached and the hub (``HF_ENDPOINT``)
            unreachable, or the download failed or was refused (gated repository, no
            token), or the downloaded files do not load (they are removed again).
    """
    device = _fairchem_device(model, device)
    spec = f"fairchem:{model}"
    with without_upstream_noise(), preserved_torch_state():  # MLIPPredictUnit reseeds every global RNG
        settings = _settings(model, options)  # imports fairchem (which sets TORCHINDUCTOR_CACHE_DIR)
        from fairchem.core.units.mlip_unit import load_predict_unit

        if is_local_path(model):
            unit = load_predict_unit(Path(model).expanduser(), inference_settings=settings, device=device)
        else:
            if weights_status(model) == "download":
                require_hub(spec, _HOW)
            unit = _hub_unit(spec, model, settings, device)
        task = _task(spec, unit, head)
        return _calculator_class()(unit, task_name=task)


def versions() -> dict[str, str]:
    return package_versions("fairchem-core", "torch")


def elements(calculator) -> None:
    """``None``: fairchem checkpoints do not list the elements they were trained on (not checked)."""
    return None


_HOW = (
    "Load it once on a connected machine (the facebook/UMA repository is gated: accept its "
    "license on https://huggingface.co/facebook/UMA and run `hf auth login` first)."
)


def _hub_unit(spec: str, model: str, settings, device: str):
    """fairchem's own pretrained loader (downloads the checkpoint and its reference energies
    with ``hf_hub_download``), with a failed or unloadable download reported and undone."""
    from fairchem.core.calculate import pretrained_mlip
    from huggingface_hub import hf_hub_url

    def load():
        return pretrained_mlip.get_predict_unit(
            model, inference_settings=settings, device=device, cache_dir=pretrained_mlip.CACHE_DIR
        )

    entry = pretrained_mlip._MODEL_CKPTS.checkpoints.get(model)
    if entry is None:  # not a pretrained name: fairchem's own error
        return load()
    url = hf_hub_url(entry.repo_id, entry.filename, subfolder=entry.subfolder, revision=entry.revision)
    with hub_download(spec, url, _HOW, cache_dir=pretrained_mlip.CACHE_DIR, repo_id=entry.repo_id):
        return load()


def _settings(model: str, options: dict[str, str]):
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(
            f"fairchem member {model}: unknown option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(_OPTIONS)}"
        )
    dtype = options.get("dtype", "float32")
    if dtype not in _DTYPES:
        raise ValueError(f"fairchem member {model}: dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
    from fairchem.core.units.mlip_unit.api.inference import InferenceSettings

    return InferenceSettings(compile=False, merge_mole=False, tf32=False, base_precision_dtype=dtype)


def _fairchem_device(model: str, device: str) -> str:
    """fairchem takes ``cpu`` or ``cuda`` only (it picks the GPU of the local rank)."""
    if device in ("cpu", "cuda", "cuda:0"):
        return device.split(":")[0]
    raise ValueError(
        f"fairchem member {model}: fairchem runs on 'cpu' or 'cuda' only, not {device!r}; "
        "choose the GPU with CUDA_VISIBLE_DEVICES instead"
    )


def _task(spec: str, unit, head: str | None) -> str:
    tasks = sorted(unit.dataset_to_tasks)
    if head is None:
        if len(tasks) == 1:
            return tasks[0]
        raise UnknownModelError(f"{spec} has several tasks; choose one with @TASK, one of {tasks}")
    if head not in tasks:
        raise UnknownModelError(f"{spec} has no task {head!r}; choose one of {tasks}")
    return head


@functools.cache
def _calculator_class():
    """``FAIRChemCalculator`` that leaves the caller's ``atoms.info`` untouched."""
    from fairchem.core.calculate.ase_calculator import FAIRChemCalculator

    class InfoPreservingFAIRChemCalculator(FAIRChemCalculator):
        """fairchem's calculator, computing on a copy of the atoms.

        Upstream validation writes ``charge``/``spin`` defaults into
        ``atoms.info``; here that happens on the copy, and the caller's atoms
        are remembered for ``check_state``. The neighbour list may initialise
        NVIDIA warp, which prints a banner to stdout: it goes to stderr.
        """

        def calculate(self, atoms, properties, system_changes) -> None:
            # A call draws from torch's generator: its state (and the rest) is restored.
            with contextlib.redirect_stdout(sys.stderr), preserved_torch_state():
                super().calculate(atoms.copy(), properties, system_changes)
            self.atoms = atoms.copy()

    return InfoPreservingFAIRChemCalculator
