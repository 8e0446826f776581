"""SevenNet adapter: ``sevenn.calculator.SevenNetCalculator``.

7net-0, 7net-0_22may2024, 7net-l3i5 and 7net-mf-0 ship inside the sevenn
wheel; other names download on first use; a local checkpoint path works too.
Multi-fidelity models take their modal as the head (``7net-mf-0@PBE``).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

from hetens.families._common import deterministic_torch, is_local_path, package_versions, require_download

_HOST = "github.com"


def _checkpoint(model: str) -> str:
    if is_local_path(model):
        return str(Path(model).expanduser())
    path = _local_copy(model)
    if path is not None:
        return path
    require_download(f"sevenn:{model}", _HOST, "Load it once with SevenNetCalculator on a connected machine.")
    from sevenn.util import pretrained_name_to_path

    return pretrained_name_to_path(model)


def _local_copy(model: str) -> str | None:
    import os.path

    from sevenn import _const

    names = {
        "7net-0": "SEVENNET_0_11Jul2024",
        "7net-0_22may2024": "SEVENNET_0_22May2024",
        "7net-l3i5": "SEVENNET_l3i5",
        "7net-mf-0": "SEVENNET_MF_0",
        "7net-mf-ompa": "SEVENNET_MF_ompa",
        "7net-omat": "SEVENNET_omat",
    }
    constant = getattr(_const, names.get(model.lower(), ""), None)
    if constant is None:
        return None
    for path in (constant, constant.replace(_const._prefix, os.path.expanduser("~/.cache/sevennet"))):
        if os.path.exists(path):
            return path
    return None


def weights_status(model: str) -> str:
    """``shipped`` (in the wheel), ``cached``, ``local file`` or ``download``."""
    if is_local_path(model):
        return "local file"
    path = _local_copy(model)
    if path is None:
        return "download"
    from sevenn import _const

    return "shipped" if path.startswith(_const._prefix) else "cached"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``SevenNetCalculator`` for a pretrained name or checkpoint path (deterministic on CPU)."""
    checkpoint = _checkpoint(model)
    with warnings.catch_warnings():
        # sevenn warns on every construction that no CUDA tensor-product
        # accelerator is enabled; that is expected on CPU.
        warnings.filterwarnings("ignore", message="No tensor product accelerator")
        warnings.filterwarnings("ignore", message="The TorchScript type system")
        return _deterministic_calculator_class()(checkpoint, device=device, modal=head, **options)


def versions() -> dict[str, str]:
    return package_versions("sevenn", "torch", "e3nn")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers the checkpoint was trained on: the keys of its type map."""
    type_map = getattr(calculator, "type_map", None)
    return frozenset(int(z) for z in type_map) if type_map else None


@functools.cache
def _deterministic_calculator_class():
    from sevenn.calculator import SevenNetCalculator

    class DeterministicSevenNetCalculator(SevenNetCalculator):
        """SevenNet's calculator with torch's deterministic kernels on CPU: the same structure
        gives bit-identical results, call to call and run to run
        (:func:`hetens.families._common.deterministic_torch`)."""

        def calculate(self, *args, **kwargs) -> None:
            with deterministic_torch(str(self.device)):
                super().calculate(*args, **kwargs)

    return DeterministicSevenNetCalculator
