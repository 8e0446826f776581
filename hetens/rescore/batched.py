"""Evaluate a member on many structures at once, where its package allows it.

:func:`evaluate_batch` is the one entry point: it uses a family's batched
path when there is one (SevenNet and CHGNet today) and otherwise loops over
the frames with :func:`hetens.calculator.evaluate_member`. Either way it
returns the same thing, checked the same way: one ``(energy, forces, stress)``
per frame, float64, in eV, eV/Å and Voigt eV/Å³.

A batched path only translates: it builds the package's own graphs, runs the
model once on their collation, and splits the outputs, mirroring what the
package's ASE calculator does for one structure (tests check agreement to
float32 precision). If a batched call fails, the frames are re-run one by
one so that the error names the structure that caused it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np

from hetens.calculator import _checked_outputs, evaluate_member
from hetens.families._common import deterministic_torch
from hetens.member import Member

__all__ = ["evaluate_batch", "has_batched_path", "MemberOutput", "CPU_BATCH_ATOMS"]

#: One frame's member output: energy (eV), forces (N, 3) eV/Å, stress (6,) eV/Å³ or None.
MemberOutput = tuple[float, np.ndarray, "np.ndarray | None"]

_RawBatch = Callable[[object, Sequence[object]], list[tuple[object, object, object]]]


def _sevenn_batch(calc, frames):
    """SevenNet: collate ``AtomGraphData`` graphs as ``sevenn inference`` does, one forward pass."""
    import sevenn._keys as KEY
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.data import Batch

    graphs = []
    for atoms in frames:
        data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, calc.cutoff, with_shift=False))
        if calc.modal:
            data[KEY.DATA_MODALITY] = calc.modal
        graphs.append(data)
    batch = Batch.from_data_list(graphs).to(calc.device)
    model = calc.model
    model.set_is_batch_data(True)
    try:
        with deterministic_torch(str(calc.device)):
            output = model(batch)
    finally:
        # The calculator shares this model and expects single-graph mode.
        model.set_is_batch_data(False)
    sizes = [len(atoms) for atoms in frames]
    energies = output[KEY.PRED_TOTAL_ENERGY].detach().cpu().numpy().reshape(-1)
    forces = np.split(output[KEY.PRED_FORCE].detach().cpu().numpy(), np.cumsum(sizes)[:-1])
    # Same sign and Voigt reordering as SevenNetCalculator.output_to_results.
    stresses = (
        (-output[KEY.PRED_STRESS]).detach().cpu().numpy().reshape(len(frames), 6)[:, [0, 1, 2, 4, 5, 3]]
    )
    return list(zip(energies, forces, stresses))


def _chgnet_batch(calc, frames):
    """CHGNet: ``CHGNet.predict_graph`` on a list of crystal graphs, as CHGNetCalculator converts units."""
    from pymatgen.io.ase import AseAtomsAdaptor

    from hetens.families.chgnet import periodic_structure, quiet_prediction

    model = calc.model
    label = getattr(calc, "member_label", "chgnet")
    structures = [AseAtomsAdaptor.get_structure(periodic_structure(atoms, model, label)) for atoms in frames]
    graphs = [model.graph_converter(structure) for structure in structures]
    with quiet_prediction():
        predictions = model.predict_graph([g.to(calc.device) for g in graphs], task="efs", batch_size=len(graphs))
    if isinstance(predictions, dict):
        predictions = [predictions]
    out = []
    for atoms, pred in zip(frames, predictions):
        factor = len(atoms) if model.is_intensive else 1
        out.append((pred["e"] * factor, pred["f"], pred["s"] * calc.stress_weight))
    return out


#: family -> (module and name of the package's ASE calculator class, batched function)
_BATCHED: dict[str, tuple[str, str, _RawBatch]] = {
    "sevenn": ("sevenn.calculator", "SevenNetCalculator", _sevenn_batch),
    "chgnet": ("chgnet.model.dynamics", "CHGNetCalculator", _chgnet_batch),
}


def _batched_function(member: Member) -> _RawBatch | None:
    entry = _BATCHED.get(member.family)
    if entry is None:
        return None
    module_name, class_name, function = entry
    module = sys.modules.get(module_name)  # loaded with the member; never imported here
    package_class = getattr(module, class_name, None)
    calc = member.calculator
    if package_class is None or not isinstance(calc, package_class):
        return None
    # The package's own calculator, or hetens' adapter subclass of it (which only
    # reshapes outputs); a user's subclass may compute differently: per frame.
    if type(calc) is not package_class and type(calc).__module__ != f"hetens.families.{member.family}":
        return None
    return function


def has_batched_path(member: Member) -> bool:
    """Whether :func:`evaluate_batch` runs ``member`` on many frames in one model call."""
    return _batched_function(member) is not None


#: Most atoms per batched call on a CPU. The gain of batching on a CPU comes
#: from small cells (per-call overhead): benchmarks/bench_batched.py measured
#: 1.4-4x more frames/s for batches of 2-16-atom cells, but 0.5-1.15x for
#: 100-atom cells while memory grew to ~3 GB for 16 of them (2 loaded cores,
#: SevenNet and CHGNet). So on a CPU frames share a call up to this many atoms;
#: on a GPU batches are limited only by the caller (``max_batch_atoms``).
CPU_BATCH_ATOMS = 128


def _on_cpu(member: Member) -> bool:
    device = getattr(member.calculator, "device", None) or member.device or "cpu"
    return str(device).startswith("cpu")


def _groups(sizes: Sequence[int], max_atoms: int | None) -> list[list[int]]:
    """Consecutive frame indices, each group at most ``max_atoms`` atoms (a bigger frame alone)."""
    groups: list[list[int]] = []
    total = 0
    for index, size in enumerate(sizes):
        if groups and (max_atoms is None or total + size <= max_atoms):
            groups[-1].append(index)
            total += size
        else:
            groups.append([index])
            total = size
    return groups


def evaluate_batch(
    member: Member,
    frames: Sequence,
    with_stress: Sequence[bool] | bool = False,
    *,
    batched: bool = True,
    max_atoms: int | None = None,
) -> list[MemberOutput]:
    """Run ``member`` on every structure of ``frames``.

    Args:
        member: the ensemble member.
        frames: ASE ``Atoms`` objects (not modified).
        with_stress: one flag per frame (or one for all): return the stress
            for that frame; ``None`` is returned in its place otherwise.
        batched: use the family's batched path when it has one; ``False``
            forces the per-frame ASE loop (for benchmarks and checks).
        max_atoms: most atoms per model call; ``None`` means
            :data:`CPU_BATCH_ATOMS` on a CPU and no limit on a GPU. A frame
            with more atoms runs on its own.

    Returns:
        One ``(energy, forces, stress)`` per frame: energy in eV, forces
        (N, 3) eV/Å, stress (6,) Voigt eV/Å³ or ``None``; float64.

    Raises:
        MemberFailedError: the member failed or returned unusable output on
            a frame (the message names the member and the structure).
    """
    frames = list(frames)
    flags = [bool(with_stress)] * len(frames) if isinstance(with_stress, bool) else list(with_stress)
    if len(flags) != len(frames):
        raise ValueError(f"with_stress has {len(flags)} flags for {len(frames)} frames")
    function = _batched_function(member) if batched else None
    if function is None:
        return [evaluate_member(member, atoms, flag) for atoms, flag in zip(frames, flags)]
    if max_atoms is None and _on_cpu(member):
        max_atoms = CPU_BATCH_ATOMS
    outputs: list[MemberOutput] = []
    for group in _groups([len(a) for a in frames], max_atoms):
        outputs += _run_group(member, function, [frames[i] for i in group], [flags[i] for i in group])
    return outputs


def _run_group(member: Member, function: _RawBatch, frames: list, flags: list[bool]) -> list[MemberOutput]:
    if len(frames) == 1:
        return [evaluate_member(member, frames[0], flags[0])]
    try:
        raw = function(member.calculator, frames)
    except Exception:
        # Re-run one by one: the failing frame then raises with its own message.
        return [evaluate_member(member, atoms, flag) for atoms, flag in zip(frames, flags)]
    return [
        _checked_outputs(member, atoms, energy, forces, stress if flag else None)
        for atoms, flag, (energy, forces, stress) in zip(frames, flags, raw)
    ]
