"""CHGNet adapter: ``chgnet.model.dynamics.CHGNetCalculator``.

0.3.0, 0.2.0 and r2scan ship inside the chgnet wheel; a local ``.pth.tar``
file loads with ``CHGNet.from_file``. CHGNet returns float32 arrays and
stress already converted to eV/Å³, but as a 3x3 matrix: the calculator made
here returns ASE's (6,) Voigt vector (``Atoms.get_stress`` warns otherwise).
"""

from __future__ import annotations

import contextlib
import functools
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

    # CHGNet prints "CHGNet will run on cpu" from its loaders; keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        if is_local_path(model):
            network = CHGNet.from_file(str(Path(model).expanduser()))
        else:
            network = CHGNet.load(model_name=model, use_device=device, verbose=False)
        return _voigt_calculator_class()(network, use_device=device, **options)


def versions() -> dict[str, str]:
    return package_versions("chgnet", "torch", "pymatgen")


def elements(calculator) -> frozenset[int]:
    """Atomic numbers 1..n of CHGNet's atom embedding (n = 94 for the shipped models)."""
    n_elements = calculator.model.atom_embedding.embedding.num_embeddings
    return frozenset(range(1, n_elements + 1))


@functools.cache
def _voigt_calculator_class():
    from ase.stress import full_3x3_to_voigt_6_stress
    from chgnet.model.dynamics import CHGNetCalculator

    class VoigtCHGNetCalculator(CHGNetCalculator):
        """CHGNet's calculator with stress as ASE's (6,) Voigt vector, eV/Å³."""

        def calculate(self, atoms=None, properties=None, system_changes=None, task="efsm") -> None:
            super().calculate(atoms, properties, system_changes, task)
            stress = self.results.get("stress")
            if stress is not None and getattr(stress, "shape", None) == (3, 3):
                self.results["stress"] = full_3x3_to_voigt_6_stress(stress)

    return VoigtCHGNetCalculator
