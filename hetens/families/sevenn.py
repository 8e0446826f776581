"""SevenNet adapter: ``sevenn.calculator.SevenNetCalculator``.

7net-0, 7net-0_22may2024, 7net-l3i5 and 7net-mf-0 ship inside the sevenn
wheel; other names download on first use; a local checkpoint path works too.
Multi-fidelity models take their modal as the head (``7net-mf-0@PBE``).
Many structures run in one forward pass with :func:`evaluate_batch`.

Several SevenNet members of an ensemble on one structure go through
:func:`evaluate_group`: the neighbour list (SevenNet's own graph builder) is
computed once per cutoff and shared; each model then runs exactly as in its
calculator (bit-identical results). The heads of one network (``7net-mf-0@PBE``
and ``@R2SCAN`` are one set of weights) run as one batch of the graph with
each modality when :func:`heads_in_one_pass` says it pays (a GPU, or small
structures on a CPU); that batch agrees with the heads evaluated alone to
float32 rounding (batched sums add in another order).
"""

from __future__ import annotations

import functools
import hashlib
import warnings
import weakref
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
from hetens.families.checkpointing import CHECKPOINT_MIN_ATOMS, checkpoint_setting, checkpointed, uses_checkpoint

_HOST = "github.com"


def _checkpoint(model: str):
    """A context manager giving the checkpoint file to load (see :func:`_load`)."""
    import contextlib

    if is_local_path(model):
        return contextlib.nullcontext(str(Path(model).expanduser()))
    path = _local_copy(model)
    if path is not None:
        return contextlib.nullcontext(path)
    target = _download_target(model)
    if target is None:  # not a downloadable sevenn name: sevenn's own resolver says why
        require_download(f"sevenn:{model}", _HOST, "Load it once with SevenNetCalculator on a connected machine.")
        from sevenn.util import pretrained_name_to_path

        return contextlib.nullcontext(pretrained_name_to_path(model))
    from hetens.families._download import fresh_download

    url, path = target
    # hetens fetches the file (atomic; removed again if it does not load) into sevenn's user
    # cache, ~/.cache/sevennet, which sevenn's resolver also reads; sevenn's own download would
    # write into site-packages.
    return fresh_download(url, path, spec=f"sevenn:{model}",
                          how="Load it once with SevenNetCalculator on a connected machine.")


def _download_target(model: str) -> tuple[str, str] | None:
    """(URL, file in ~/.cache/sevennet) of a downloadable sevenn name, from sevenn's own
    ``CHECKPOINT_DOWNLOAD_LINKS``; ``None`` for any other name."""
    import os.path

    from sevenn import _const

    constant = getattr(_const, _CONSTANTS.get(model.lower(), ""), None)
    url = _const.CHECKPOINT_DOWNLOAD_LINKS.get(constant) if constant else None
    if url is None:
        return None
    return url, constant.replace(_const._prefix, os.path.expanduser("~/.cache/sevennet"))


#: sevenn's names -> the ``sevenn._const`` constant holding the checkpoint's path.
_CONSTANTS = {
    "7net-0": "SEVENNET_0_11Jul2024",
    "7net-0_22may2024": "SEVENNET_0_22May2024",
    "7net-l3i5": "SEVENNET_l3i5",
    "7net-mf-0": "SEVENNET_MF_0",
    "7net-mf-ompa": "SEVENNET_MF_ompa",
    "7net-omat": "SEVENNET_omat",
}


def _local_copy(model: str) -> str | None:
    import os.path

    from sevenn import _const

    constant = getattr(_const, _CONSTANTS.get(model.lower(), ""), None)
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
    from hetens.catalogue.registry import find_model

    known = find_model("sevenn", model)
    if known is not None and head:
        head = known.canonical_head(head)  # sevenn compares modal names case-sensitively
    with _checkpoint(model) as checkpoint, warnings.catch_warnings():
        # sevenn warns on every construction that no CUDA tensor-product
        # accelerator is enabled; that is expected on CPU.
        warnings.filterwarnings("ignore", message="No tensor product accelerator")
        warnings.filterwarnings("ignore", message="The TorchScript type system")
        options = dict(options)
        from_atoms = checkpoint_setting(options, "sevenn")
        calculator = _deterministic_calculator_class()(str(checkpoint), device=device, modal=head, **options)
    if from_atoms is not None:
        calculator.checkpoint_min_atoms = from_atoms
    return calculator


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
    import sevenn._keys as KEY
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    graphs = []
    for atoms in frames:
        data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, calculator.cutoff, with_shift=False))
        if calculator.modal:
            data[KEY.DATA_MODALITY] = calculator.modal
        graphs.append(data)
    return _batched_pass(calculator, graphs, [len(atoms) for atoms in frames])


#: Most atoms (all heads together) for which the heads of one network share one batched
#: pass on a CPU. Above it a CPU batch costs more per atom than separate passes (memory
#: traffic of SevenNet's edge tensors; benchmarks/bench_batched.py), so on a CPU larger
#: structures run one pass per head on the shared graph.
CPU_HEADS_BATCH_ATOMS = 64


def heads_in_one_pass(device, n_atoms: int, n_heads: int) -> bool:
    """Whether ``n_heads`` heads of one network on an ``n_atoms`` structure run as one batch."""
    return n_heads > 1 and (not str(device).startswith("cpu") or n_atoms * n_heads <= CPU_HEADS_BATCH_ATOMS)


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _network(calculator) -> tuple:
    """What makes two calculators the same network: device, cutoff and a digest of every
    parameter and buffer (computed once per model)."""
    model = calculator.model
    digest = _FINGERPRINTS.get(model)
    if digest is None:
        h = hashlib.sha256()
        for name, tensor in (*model.named_parameters(), *model.named_buffers()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest = _FINGERPRINTS[model] = h.hexdigest()
    return str(calculator.device), float(calculator.cutoff), type(model).__name__, digest


def _copied(graph: dict) -> dict:
    """A copy of a prepared graph (``AtomGraphData.from_numpy_dict`` converts its dict in place)."""
    import numpy as np

    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in graph.items()}


def _single_pass(calculator, graph: dict) -> tuple:
    """``calculator``'s model on one prepared graph, exactly as ``SevenNetCalculator.calculate``."""
    import numpy as np
    import sevenn._keys as KEY
    from sevenn.atom_graph_data import AtomGraphData

    data = AtomGraphData.from_numpy_dict(_copied(graph))
    if calculator.modal:
        data[KEY.DATA_MODALITY] = calculator.modal
    data.to(calculator.device)
    with deterministic_torch(str(calculator.device)):
        output = _forward(calculator, data, int(graph[KEY.NUM_ATOMS]))
    num_atoms = output["num_atoms"].item()
    energy = output[KEY.PRED_TOTAL_ENERGY].detach().cpu().item()
    forces = output[KEY.PRED_FORCE].detach().cpu().numpy()[:num_atoms, :]
    stress = np.array((-output[KEY.PRED_STRESS]).detach().cpu().numpy()[[0, 1, 2, 4, 5, 3]])
    return energy, forces, stress


def _heads_pass(calculators: Sequence, graph: dict) -> list[tuple]:
    """The heads of one network (``calculators`` share weights) as one batch of ``graph``."""
    import sevenn._keys as KEY
    from sevenn.atom_graph_data import AtomGraphData

    graphs = []
    for calculator in calculators:
        data = AtomGraphData.from_numpy_dict(_copied(graph))
        data[KEY.DATA_MODALITY] = calculator.modal
        graphs.append(data)
    return _batched_pass(calculators[0], graphs, [int(graph[KEY.NUM_ATOMS])] * len(graphs))


def _batched_pass(calculator, graphs: list, sizes: list[int]) -> list[tuple]:
    """``calculator``'s model on ``graphs`` (``AtomGraphData``) collated in one batch."""
    import numpy as np
    import sevenn._keys as KEY
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(graphs).to(calculator.device)
    model = calculator.model
    model.set_is_batch_data(True)
    try:
        with deterministic_torch(str(calculator.device)):
            output = model(batch)
    finally:
        # The calculator shares this model and expects single-graph mode.
        model.set_is_batch_data(False)
    energies = output[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy().reshape(-1)
    forces = np.split(output[KEY.PRED_FORCE].detach().cpu().numpy(), np.cumsum(sizes)[:-1])
    # Same sign and Voigt reordering (xx yy zz xy yz zx -> xx yy zz yz zx xy) as
    # SevenNetCalculator.output_to_results.
    stresses = (-output[KEY.PRED_STRESS]).detach().cpu().numpy().reshape(len(graphs), 6)[:, [0, 1, 2, 4, 5, 3]]
    return list(zip(energies, forces, stresses))


def evaluate_group(calculators: Sequence, atoms, with_stress: bool) -> list[tuple] | None:
    """Several SevenNet calculators on ``atoms`` (not modified), one neighbour list per cutoff.

    Each calculator's model runs on the shared graph exactly as in its own
    ``calculate`` (bit-identical), except the heads of one network (equal
    weights, :func:`_network`), which run as one batch when
    :func:`heads_in_one_pass` (float32 rounding of a batched sum). Returns
    ``None`` (evaluate one by one) when there is nothing to share (a single
    calculator) or a calculator is not this adapter's (:func:`batchable`).

    Returns:
        One ``(energy, forces, stress)`` per calculator: eV, (N, 3) eV/Å,
        (6,) Voigt eV/Å³ or ``None`` (float32).
    """
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    if len(calculators) < 2 or not all(batchable(c) for c in calculators):
        return None
    graphs: dict[float, dict] = {}
    for calculator in calculators:
        cutoff = float(calculator.cutoff)
        if cutoff not in graphs:
            graphs[cutoff] = unlabeled_atoms_to_graph(atoms, cutoff, with_shift=False)
    networks: dict[tuple, list[int]] = {}
    for index, calculator in enumerate(calculators):
        networks.setdefault(_network(calculator), []).append(index)
    outputs: list = [None] * len(calculators)
    for key, indices in networks.items():
        members = [calculators[i] for i in indices]
        graph = graphs[key[1]]
        modals = [c.modal for c in members]
        if all(modals) and len(set(modals)) == len(modals) and heads_in_one_pass(key[0], len(atoms), len(members)):
            results = _heads_pass(members, graph)
        else:
            results = [_single_pass(c, graph) for c in members]
        for i, (energy, forces, stress) in zip(indices, results):
            outputs[i] = (energy, forces, stress if with_stress else None)
    return outputs


def checkpointed_forward(model, data):
    """``model(data)`` (SevenNet's ``AtomGraphSequential``) with activation checkpointing around
    each interaction block (the modules named ``0_...``, ``1_...``): a block's intermediate
    tensors (per-edge weights and messages) are not kept for the backward pass that gives the
    forces, but recomputed there, one block at a time, from the block's inputs. The same
    operations run on the same inputs, so the outputs are bit-identical on a CPU with
    deterministic kernels (tested); a call costs one more forward pass of the blocks (45 % less
    memory above the model at 686 W atoms). Used from a member's ``checkpoint_min_atoms`` atoms
    (``@checkpoint=on|off|N``; the memory guard sets it for a structure that fits only with it).

    A block reads and writes ``data`` in place; each checkpointed run works on a shallow copy
    of ``data`` as it was at the block's entry, so the recomputation sees those inputs.
    """
    import copy

    data = model._preprocess(data)
    modules = list(model._modules.items())
    i = 0
    while i < len(modules):
        block_id = modules[i][0].split("_", 1)[0]
        if not block_id.isdigit():
            data = modules[i][1](data)
            i += 1
            continue
        block = []
        while i < len(modules) and modules[i][0].split("_", 1)[0] == block_id:
            block.append(modules[i][1])
            i += 1
        entry = copy.copy(data)

        def run(entry=entry, block=block):
            inner = copy.copy(entry)
            for module in block:
                inner = module(inner)
            return {key: inner[key] for key in inner.keys()}

        outputs = checkpointed(run)
        for key, value in outputs.items():
            data[key] = value
    return data


def _forward(calculator, data, n_atoms: int):
    """``calculator.model(data)``, checkpointed from :data:`CHECKPOINT_MIN_ATOMS` atoms (or the
    member's own setting)."""
    if uses_checkpoint(calculator, n_atoms):
        return checkpointed_forward(calculator.model, data)
    return calculator.model(data)


@functools.cache
def _deterministic_calculator_class():
    from ase.calculators.calculator import all_changes
    from sevenn.calculator import SevenNetCalculator

    class DeterministicSevenNetCalculator(SevenNetCalculator):
        """SevenNet's calculator with torch's deterministic kernels on CPU: the same structure
        gives bit-identical results, call to call and run to run
        (:func:`hetens.families._common.deterministic_torch`)."""

        checkpoint_min_atoms = CHECKPOINT_MIN_ATOMS

        def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
            # SevenNetCalculator.calculate, with the forward pass through _forward (checkpointing).
            from ase.calculators.calculator import Calculator
            import sevenn._keys as KEY
            from sevenn.atom_graph_data import AtomGraphData
            from sevenn.train.dataload import unlabeled_atoms_to_graph

            Calculator.calculate(self, atoms, properties, system_changes)
            if atoms is None:
                raise ValueError("No atoms to evaluate")
            data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, self.cutoff, with_shift=False))
            if self.modal:
                data[KEY.DATA_MODALITY] = self.modal
            data.to(self.device)
            with deterministic_torch(str(self.device)):
                output = _forward(self, data, len(atoms))
            self.results = self.output_to_results(output)

    return DeterministicSevenNetCalculator
