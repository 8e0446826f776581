"""SevenNet adapter: ``sevenn.calculator.SevenNetCalculator``.

7net-0, 7net-0_22may2024, 7net-l3i5 and 7net-mf-0 ship inside the sevenn
wheel; other names download on first use; a local checkpoint path works too.
Multi-fidelity models take their modal as the head (``7net-mf-0@PBE``).
Many structures run in one forward pass with :func:`evaluate_batch`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

from hetens.families._common import (
    deterministic_torch,
    is_local_path,
    is_own_calculator,
    package_versions,
    preserved_torch_state,
    require_download,
)

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
    with preserved_torch_state():  # the first import of sevenn sets environment variables
        path = _local_copy(model)
    if path is None:
        return "download"
    from sevenn import _const

    return "shipped" if path.startswith(_const._prefix) else "cached"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``SevenNetCalculator`` for a pretrained name or checkpoint path (deterministic on CPU).

    Importing sevenn sets environment variables (scikit-learn's ``KMP_*``, torch inductor's
    cache folder) and building the network draws from torch's generator: both undone.
    """
    with preserved_torch_state():
        return _load(model, head, device, options)


def _load(model: str, head: str | None, device: str, options: dict[str, str]):
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


def batchable(calculator) -> bool:
    """Whether ``calculator`` is SevenNet's own calculator or the one :func:`load` makes
    (a user's subclass may compute differently; a worker is not in this process)."""
    return is_own_calculator(calculator, "sevenn.calculator", "SevenNetCalculator", _deterministic_calculator_class)


def evaluate_batch(calculator, frames: Sequence) -> list[tuple]:
    """One forward pass over ``frames``: ``AtomGraphData`` graphs collated as ``sevenn inference``
    does, outputs split per frame with SevenNetCalculator's sign and Voigt order.

    Returns:
        One ``(energy, forces, stress)`` per frame: eV, (N, 3) eV/Å, (6,) Voigt eV/Å³ (float32).
    """
    import numpy as np
    import sevenn._keys as KEY
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.data import Batch

    graphs = []
    for atoms in frames:
        data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, calculator.cutoff, with_shift=False))
        if calculator.modal:
            data[KEY.DATA_MODALITY] = calculator.modal
        graphs.append(data)
    batch = Batch.from_data_list(graphs).to(calculator.device)
    model = calculator.model
    model.set_is_batch_data(True)
    try:
        with deterministic_torch(str(calculator.device)):
            output = model(batch)
    finally:
        # The calculator shares this model and expects single-graph mode.
        model.set_is_batch_data(False)
    sizes = [len(atoms) for atoms in frames]
    energies = output[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy().reshape(-1)
    forces = np.split(output[KEY.PRED_FORCE].detach().cpu().numpy(), np.cumsum(sizes)[:-1])
    # Same sign and Voigt reordering (xx yy zz xy yz zx -> xx yy zz yz zx xy) as
    # SevenNetCalculator.output_to_results.
    stresses = (
        (-output[KEY.PRED_STRESS]).detach().cpu().numpy().reshape(len(frames), 6)[:, [0, 1, 2, 4, 5, 3]]
    )
    return list(zip(energies, forces, stresses))


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
