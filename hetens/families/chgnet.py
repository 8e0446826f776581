"""CHGNet adapter: ``chgnet.model.dynamics.CHGNetCalculator``.

0.3.0, 0.2.0 and r2scan ship inside the chgnet wheel; a local ``.pth.tar``
file loads with ``CHGNet.from_file``. CHGNet returns float32 arrays and
stress already converted to eV/Å³, but as a 3x3 matrix: the calculator made
here returns ASE's (6,) Voigt vector (``Atoms.get_stress`` warns otherwise).

CHGNet treats every structure as a crystal (a pymatgen ``Structure``), so a
molecule (``pbc=False``) failed with "Singular matrix". The calculator made
here evaluates a structure without periodicity in a box wide enough that no
periodic image falls within CHGNet's 6 Å graph cutoff
(:func:`hetens.families._common.isolated_periodic_copy`): energy and forces
are those of the isolated molecule, and no stress is reported for it.

Many structures run in one ``CHGNet.predict_graph`` call with :func:`evaluate_batch`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

from hetens.families._common import (
    is_local_path,
    is_own_calculator,
    isolated_periodic_copy,
    package_versions,
    preserved_torch_state,
)

_SHIPPED = ("0.3.0", "0.2.0", "r2scan")


def weights_status(model: str) -> str:
    """``shipped`` for the three wheel models, ``local file`` for a path."""
    if is_local_path(model):
        return "local file"
    return "shipped" if model in _SHIPPED else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``CHGNetCalculator`` for a shipped model name or a local checkpoint."""
    # CHGNet prints "CHGNet will run on cpu" from its loaders; keep stdout clean. Building the
    # network draws its untrained weights from torch's generator: its state is restored.
    with contextlib.redirect_stdout(io.StringIO()), preserved_torch_state():
        from chgnet.model import CHGNet

        if is_local_path(model):
            network = CHGNet.from_file(str(Path(model).expanduser()))
        else:
            network = CHGNet.load(model_name=model, use_device=device, verbose=False)
        calculator = _voigt_calculator_class()(network, use_device=device, **options)
    calculator.member_label = f"chgnet:{model}"
    return calculator


def versions() -> dict[str, str]:
    return package_versions("chgnet", "torch", "pymatgen")


def elements(calculator) -> frozenset[int]:
    """Atomic numbers 1..n of CHGNet's atom embedding (n = 94 for the shipped models)."""
    n_elements = calculator.model.atom_embedding.embedding.num_embeddings
    return frozenset(range(1, n_elements + 1))


@contextlib.contextmanager
def quiet_prediction():
    """Silence the UserWarning CHGNet's forward pass raises on every structure
    ("Converting a tensor with requires_grad=True to a scalar", from its own
    ``torch.tensor(volumes)``): for the call only, the user's filters untouched."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Converting a tensor with requires_grad=True to a scalar", category=UserWarning
        )
        yield


def periodic_structure(atoms, model, member: str = "chgnet"):
    """``atoms`` as CHGNet can take it: 3D periodic, images beyond the graph cutoff (see module doc)."""
    return isolated_periodic_copy(atoms, float(model.graph_converter.atom_graph_cutoff), member)


def batchable(calculator) -> bool:
    """Whether ``calculator`` is CHGNet's own calculator or the one :func:`load` makes
    (a user's subclass may compute differently; a worker is not in this process)."""
    return is_own_calculator(calculator, "chgnet.model.dynamics", "CHGNetCalculator", _voigt_calculator_class)


def evaluate_batch(calculator, frames: Sequence) -> list[tuple]:
    """``CHGNet.predict_graph`` on the frames' crystal graphs, in one call, with the unit
    conversions of CHGNetCalculator (energy per atom times atoms, stress in GPa times
    ``stress_weight``); a structure without periodicity is boxed as in :func:`load`.

    Returns:
        One ``(energy, forces, stress)`` per frame: eV, (N, 3) eV/Å, (3, 3) eV/Å³ (float32).
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    model = calculator.model
    label = getattr(calculator, "member_label", "chgnet")
    structures = [AseAtomsAdaptor.get_structure(periodic_structure(atoms, model, label)) for atoms in frames]
    graphs = [model.graph_converter(structure) for structure in structures]
    with quiet_prediction():
        predictions = model.predict_graph(
            [g.to(calculator.device) for g in graphs], task="efs", batch_size=len(graphs)
        )
    if isinstance(predictions, dict):
        predictions = [predictions]
    out = []
    for atoms, pred in zip(frames, predictions):
        factor = len(atoms) if model.is_intensive else 1
        out.append((pred["e"] * factor, pred["f"], pred["s"] * calculator.stress_weight))
    return out


@functools.cache
def _voigt_calculator_class():
    from ase.stress import full_3x3_to_voigt_6_stress
    from chgnet.model.dynamics import CHGNetCalculator

    class VoigtCHGNetCalculator(CHGNetCalculator):
        """CHGNet's calculator with stress as ASE's (6,) Voigt vector, eV/Å³; a structure
        without periodicity is evaluated isolated, in a box (see the module docstring)."""

        member_label = "chgnet"

        def calculate(self, atoms=None, properties=None, system_changes=None, task="efsm") -> None:
            given = atoms if atoms is not None else self.atoms
            periodic = periodic_structure(given, self.model, self.member_label)
            with quiet_prediction():
                super().calculate(periodic, properties, system_changes, task)
            if periodic is not given:
                self.atoms = given.copy()  # the caller's structure, so ASE's caching sees no change
                self.results.pop("stress", None)  # a molecule has no stress
                return
            stress = self.results.get("stress")
            if stress is not None and getattr(stress, "shape", None) == (3, 3):
                self.results["stress"] = full_3x3_to_voigt_6_stress(stress)

    return VoigtCHGNetCalculator
