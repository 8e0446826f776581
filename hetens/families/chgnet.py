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

Two faster paths share one evaluation core, :func:`energy_forces_stress`:
:func:`evaluate_batch` (many structures in one model call, for ``hetens
score``) and :func:`evaluate_group` (several CHGNet members of an ensemble on
one structure: the pymatgen ``Structure`` is built once, and the crystal graph
once per converter setting, so ``0.3.0`` and ``r2scan``, both 6 Å / 3 Å,
share one graph, and ``0.2.0``, 5 Å / 3 Å, gets its own). Both build the
graph with :func:`hetens.families.chgnet_graph.crystal_graph`: CHGNet's
converter with its Python adjacency lists done in numpy (equal tensors, a
tenth of the converter's time). The core runs
CHGNet's own ``_compute`` and takes forces and stress from one backward pass
(CHGNet's ``predict_graph`` makes two, one for forces and one for stress, and
calls ``model.eval()`` on every call), and without recording the backward
graph (CHGNet's ``create_graph=True``, which only training needs, costs about
a sixth of a call on a CPU). On one structure the energy is bit-identical to
``CHGNetCalculator``'s and forces and stress agree with it to float32
rounding (about 1e-5 eV/Å); in a batch of several structures everything
agrees to float32 rounding (tests check both).
With ``checkpoint=on|off|N`` (a member option) every interaction layer runs
under activation checkpointing (:func:`checkpointing`), in both paths:
bit-identical results, less memory on a large structure.
With ``exact=True`` the core keeps CHGNet's backward setting and is
``CHGNetCalculator`` bit for bit, which the tests use to show that the graph
and the forward pass are CHGNet's own.
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
from hetens.families.checkpointing import (
    CHECKPOINT_MIN_ATOMS,
    checkpoint_setting,
    checkpointed,
    forward_replaced,
    uses_checkpoint,
)
from hetens.families.chgnet_graph import crystal_graph

_SHIPPED = ("0.3.0", "0.2.0", "r2scan")

#: Most atoms per batched call on a CPU (:func:`hetens.rescore.batched.evaluate_batch`).
#: Unlike SevenNet's, CHGNet's CPU batches stay cheaper per atom as they grow
#: (benchmarks/bench_batched.py, 2 threads: 16 frames of 100 W atoms in one call
#: 1.6-1.9x the frames/s of one call each; 2-16-atom cells 2.9-3.3x the per-frame
#: loop at 16 frames per call).
CPU_BATCH_ATOMS = 2048


def weights_status(model: str) -> str:
    """``shipped`` for the three wheel models, ``local file`` for a path."""
    if is_local_path(model):
        return "local file"
    return "shipped" if model in _SHIPPED else "download"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A ``CHGNetCalculator`` for a shipped model name or a local checkpoint (option
    ``checkpoint=on|off|N``: activation checkpointing, :func:`checkpointing`)."""
    options = dict(options)
    from_atoms = checkpoint_setting(options, "chgnet")
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
    if from_atoms is not None:
        calculator.checkpoint_min_atoms = from_atoms
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


def energy_forces_stress(model, graphs: Sequence, *, exact: bool = False) -> list[tuple]:
    """CHGNet ``model`` on crystal ``graphs`` (already on the model's device), one forward and
    one backward pass for all of them.

    What ``CHGNet.predict_graph(graphs, task="efs")`` computes, with forces and
    stress from a single ``torch.autograd.grad`` over positions and strains
    (CHGNet makes one pass for each). By default a plain backward pass: about
    a sixth faster on a CPU than CHGNet's ``create_graph=True``, forces and
    stresses equal to CHGNet's to float32 rounding (1e-5 eV/Å, energies
    unchanged). ``exact=True`` keeps CHGNet's setting (its backward formulas,
    hence its bits): for the tests that compare the core with CHGNet.

    Returns:
        One ``(energy_per_atom, forces, stress)`` per graph, numpy float32:
        eV/atom for an intensive model (eV otherwise), (N, 3) eV/Å, (3, 3) GPa;
        ``predict_graph``'s ``e``, ``f``, ``s`` (bit for bit when ``exact``).
    """
    import torch
    from chgnet.model.model import BatchedGraph

    if model.training:
        model.eval()
    intensive = model.is_intensive
    with quiet_prediction():
        batched = BatchedGraph.from_graphs(
            list(graphs),
            bond_basis_expansion=model.bond_basis_expansion,
            angle_basis_expansion=model.angle_basis_expansion,
            compute_stress=True,
        )
        composition_energy = 0 if model.composition_model is None else model.composition_model(list(graphs))
        model.is_intensive = False  # the extensive energy, before CHGNet divides it in place
        try:
            with checkpointing(model, sum(len(graph.atomic_number) for graph in graphs)):
                prediction = model._compute(batched)
        finally:
            model.is_intensive = intensive
    energy = prediction["e"]
    n = len(graphs)
    grads = torch.autograd.grad(
        energy.sum(), [*batched.atom_positions, *batched.strains], create_graph=exact, retain_graph=exact
    )
    scale = 1 / batched.volumes * 160.21766208  # eV/A^3 -> GPa, as CHGNet
    energy = energy.detach()
    if intensive:
        energy = energy / prediction["atoms_per_graph"]
    energy = energy + composition_energy
    return [
        (
            energy[i].cpu().numpy(),
            (-1 * grads[i]).detach().cpu().numpy(),
            (grads[n + i] * scale[i]).detach().cpu().numpy(),
        )
        for i in range(n)
    ]


@contextlib.contextmanager
def checkpointing(model, n_atoms: int):
    """For the block's duration, when ``model`` (a ``CHGNet``) checkpoints ``n_atoms`` atoms
    (its ``checkpoint_min_atoms``): each interaction layer (atom, bond and angle
    convolutions) runs under activation checkpointing
    (:func:`hetens.families.checkpointing.checkpointed`): its intermediate tensors are
    recomputed in the backward pass, with the same operations, so the results are
    bit-identical (tested); a call costs one more forward pass of the layers."""
    if not uses_checkpoint(model, n_atoms):
        yield
        return
    layers = [layer for layer in (*model.atom_conv_layers, *model.bond_conv_layers, *model.angle_layers)
              if layer is not None]
    with contextlib.ExitStack() as stack:
        for layer in layers:
            stack.enter_context(forward_replaced(layer, functools.partial(_checkpointed_layer, layer)))
        yield


def _checkpointed_layer(layer, **inputs):
    return checkpointed(functools.partial(type(layer).forward, layer), **inputs)


def _to_ase_units(calculator, atoms, energy, forces, stress) -> tuple:
    """One structure's core output with ``CHGNetCalculator``'s conversions: energy times the atom
    count for an intensive model, stress in GPa times ``stress_weight``."""
    factor = len(atoms) if calculator.model.is_intensive else 1
    return energy * factor, forces, stress * calculator.stress_weight


def evaluate_batch(calculator, frames: Sequence) -> list[tuple]:
    """:func:`energy_forces_stress` on the frames' crystal graphs, in one call, with the unit
    conversions of CHGNetCalculator (energy per atom times atoms, stress in GPa times
    ``stress_weight``); a structure without periodicity is boxed as in :func:`load`.
    Forces and stresses equal CHGNet's to float32 rounding (a plain backward pass, and the
    sums of a batch in another order).

    Returns:
        One ``(energy, forces, stress)`` per frame: eV, (N, 3) eV/Å, (3, 3) eV/Å³ (float32).
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    model = calculator.model
    label = getattr(calculator, "member_label", "chgnet")
    structures = [AseAtomsAdaptor.get_structure(periodic_structure(atoms, model, label)) for atoms in frames]
    graphs = [crystal_graph(model.graph_converter, structure).to(calculator.device) for structure in structures]
    return [
        _to_ase_units(calculator, atoms, *out)
        for atoms, out in zip(frames, energy_forces_stress(model, graphs))
    ]


def _converter_key(calculator) -> tuple:
    """What decides a calculator's crystal graph: converter settings and device."""
    converter = calculator.model.graph_converter
    return (
        float(converter.atom_graph_cutoff),
        float(converter.bond_graph_cutoff),
        converter.algorithm,
        getattr(converter, "on_isolated_atoms", None),
        str(calculator.device),
    )


def evaluate_group(calculators: Sequence, atoms, with_stress: bool) -> list[tuple] | None:
    """Several CHGNet calculators (or one) on ``atoms`` (not modified): the pymatgen ``Structure``
    built once, one crystal graph per converter setting (:func:`_converter_key`) shared by
    every calculator with that setting, each model evaluated with
    :func:`energy_forces_stress`.

    Each calculator's energy is bit-identical to its own; forces and stresses agree to
    float32 rounding (the plain backward pass, see the module docstring). A
    structure without periodicity is boxed per cutoff as in :func:`load`, and
    gets no stress. Returns ``None`` (evaluate one by one) for a calculator
    this adapter did not make (:func:`batchable`).

    Returns:
        One ``(energy, forces, stress)`` per calculator: eV, (N, 3) eV/Å,
        (6,) Voigt eV/Å³ or ``None`` (float32).
    """
    from ase.stress import full_3x3_to_voigt_6_stress
    from pymatgen.io.ase import AseAtomsAdaptor

    if not calculators or not all(batchable(c) for c in calculators):
        return None
    structures: dict[int, tuple] = {}  # id(periodic copy) -> (copy, Structure)
    graphs: dict[tuple, object] = {}
    outputs = []
    for calculator in calculators:
        periodic = periodic_structure(atoms, calculator.model, getattr(calculator, "member_label", "chgnet"))
        if id(periodic) not in structures:
            structures[id(periodic)] = (periodic, AseAtomsAdaptor.get_structure(periodic))
        structure = structures[id(periodic)][1]
        key = (*_converter_key(calculator), id(periodic))
        if key not in graphs:
            graphs[key] = crystal_graph(calculator.model.graph_converter, structure).to(calculator.device)
        ((energy, forces, stress),) = energy_forces_stress(calculator.model, [graphs[key]])
        energy, forces, stress = _to_ase_units(calculator, atoms, energy, forces, stress)
        keep_stress = with_stress and periodic is atoms
        outputs.append((energy, forces, full_3x3_to_voigt_6_stress(stress) if keep_stress else None))
    return outputs


@functools.cache
def _voigt_calculator_class():
    from ase.stress import full_3x3_to_voigt_6_stress
    from chgnet.model.dynamics import CHGNetCalculator

    class VoigtCHGNetCalculator(CHGNetCalculator):
        """CHGNet's calculator with stress as ASE's (6,) Voigt vector, eV/Å³; a structure
        without periodicity is evaluated isolated, in a box (see the module docstring)."""

        member_label = "chgnet"

        @property
        def checkpoint_min_atoms(self) -> int:
            """Structures from this many atoms run checkpointed (:func:`checkpointing`; a setting of the model)."""
            return getattr(self.model, "checkpoint_min_atoms", CHECKPOINT_MIN_ATOMS)

        @checkpoint_min_atoms.setter
        def checkpoint_min_atoms(self, value: int) -> None:
            self.model.checkpoint_min_atoms = int(value)

        def calculate(self, atoms=None, properties=None, system_changes=None, task="efsm") -> None:
            given = atoms if atoms is not None else self.atoms
            periodic = periodic_structure(given, self.model, self.member_label)
            with quiet_prediction(), checkpointing(self.model, len(periodic)):
                super().calculate(periodic, properties, system_changes, task)
            if periodic is not given:
                self.atoms = given.copy()  # the caller's structure, so ASE's caching sees no change
                self.results.pop("stress", None)  # a molecule has no stress
                return
            stress = self.results.get("stress")
            if stress is not None and getattr(stress, "shape", None) == (3, 3):
                self.results["stress"] = full_3x3_to_voigt_6_stress(stress)

    return VoigtCHGNetCalculator
