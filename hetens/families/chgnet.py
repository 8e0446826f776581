"""CHGNet adapter: ``chgnet.model.dynamics.CHGNetCalculator``.

0.3.0, 0.2.0 and r2scan ship inside the chgnet wheel; a local ``.pth.tar``
file loads with ``CHGNet.from_file``. CHGNet returns float32 arrays and
stress already converted to eV/Å³.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from hetens.families._common import is_local_path, package_versions

_SHIPPED = ("0.3.0", "0.2.0", "r2scan")


def weights_status(model: str) -> str:
    """``shipped`` for the three wheel models, ``local file`` for a path."""
    if is_local_path(model):
        return "local file"
    return "shipped" if model in _SHIPPED else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``CHGNetCalculator`` for a shipped model name or a local checkpoint."""
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    # CHGNet prints "CHGNet will run on cpu" from its loaders; keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        if is_local_path(model):
            network = CHGNet.from_file(str(Path(model).expanduser()))
        else:
            network = CHGNet.load(model_name=model, use_device=device, verbose=False)
        return CHGNetCalculator(network, use_device=device, **options)


def versions() -> dict[str, str]:
    return package_versions("chgnet", "torch", "pymatgen")
