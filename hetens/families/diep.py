"""DIEP adapter: ``diep.pretrained.make_calculator`` (diep 2.x, PyTorch Geometric).

The released ``diep_fold1`` (trained on MatPES r2SCAN) ships inside the diep
wheel, in ``diep/pretrained_models/``; the name loads that folder, never
whatever ``$DIEP_MODEL_DIR`` points to. A local exported model folder
(``model.json``, ``model.pt``, ``state.pt``, as written by
``Potential.save``) works too. ``make_calculator`` returns stress in eV/Å³;
the calculator here returns it as ASE's (6,) Voigt vector. DIEP models have
no heads; the one option is ``checkpoint=on|off|N`` (activation checkpointing,
:func:`checkpointed_forward`). An isolated structure (``pbc=False``, no cell) is
supported by DIEP's own graph builder: energy and forces are meaningful,
the stress of a structure without a cell is not.
"""

from __future__ import annotations

import functools
from pathlib import Path

from hetens.errors import UnknownModelError
from hetens.families._common import (
    deterministic_torch,
    is_local_path,
    package_versions,
    preserved_torch_state,
    refuse_head_and_options,
)
from hetens.families.checkpointing import (
    CHECKPOINT_MIN_ATOMS,
    checkpoint_setting,
    checkpointed,
    forward_replaced,
    uses_checkpoint,
)

_FILES = ("model.json", "model.pt", "state.pt")


def _shipped_folder(model: str) -> Path | None:
    """The wheel's ``pretrained_models/MODEL`` folder, or ``None`` when the wheel has no such model."""
    import importlib.util

    spec = importlib.util.find_spec("diep")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "pretrained_models"
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.name.lower() == model.lower() and all((folder / f).is_file() for f in _FILES):
            return folder
    return None


def shipped_models() -> list[str]:
    """Names of the models inside the installed diep wheel."""
    import importlib.util

    spec = importlib.util.find_spec("diep")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations))) / "pretrained_models"
    if not root.is_dir():
        return []
    return sorted(f.name for f in root.iterdir() if all((f / n).is_file() for n in _FILES))


def weights_status(model: str) -> str:
    """``shipped`` (in the diep wheel), ``local file`` for a path, else ``missing``
    (diep has no download source hetens would use)."""
    if is_local_path(model):
        return "local file"
    return "shipped" if _shipped_folder(model) is not None else "missing"


def load(model: str, *, head: str | None, device: str, options: dict[str, str]):
    """A DIEP calculator (stress in eV/Å³, Voigt) for a shipped name or an exported model folder:
    ``make_calculator``'s, with activation checkpointing from ``checkpoint_min_atoms`` atoms.

    Raises:
        UnknownModelError: a head was given, or the name is not a model of the wheel.
        ValueError: an option other than ``checkpoint``, or the folder is not an exported DIEP model.
    """
    options = dict(options)
    from_atoms = checkpoint_setting(options, "diep")
    refuse_head_and_options("diep", model, head, options, accepted=("checkpoint",))
    if is_local_path(model):
        folder = Path(model).expanduser()
    else:
        folder = _shipped_folder(model)
        if folder is None:
            raise UnknownModelError(
                f"diep has no shipped model {model!r}; shipped: {', '.join(shipped_models()) or 'none'} "
                "(or give an exported model folder: diep:/path/to/folder)"
            )
    with preserved_torch_state():
        from diep.pretrained import load_potential

        try:
            # diep.pretrained.make_calculator, with this module's calculator class
            potential = load_potential(folder, device=device, stress=True)
            calculator = _calculator_class()(potential=potential, stress_unit="eV/A3")
        except (FileNotFoundError, ValueError, RuntimeError, KeyError) as exc:
            raise ValueError(
                f"diep member {model}: {folder} is not a loadable DIEP model folder ({exc}); "
                "it needs model.json, model.pt and state.pt as written by Potential.save(folder)"
            ) from exc
    calculator.use_voigt = True  # (6,) Voigt stress as ASE expects; make_calculator gives 3x3
    if from_atoms is not None:
        calculator.checkpoint_min_atoms = from_atoms
    return calculator


def versions() -> dict[str, str]:
    return package_versions("diep", "torch", "torch_geometric", "pymatgen")


def elements(calculator) -> frozenset[int] | None:
    """Atomic numbers of the model's ``element_types`` (Z 1-83 and 89-94 for diep_fold1)."""
    from ase.data import atomic_numbers

    symbols = getattr(calculator, "element_types", None)
    return frozenset(atomic_numbers[s] for s in symbols) if symbols else None


def checkpointed_forward(model, g, state_attr=None, l_g=None, return_all_layer_output: bool = False):
    """``model(g, state_attr)`` (diep's ``DIEP.forward``, the same operations in the same order) with
    activation checkpointing (:func:`hetens.families.checkpointing.checkpointed`) around the
    DIEP integrator (:func:`checkpointed_integrator`) and around each interaction block
    (three-body update and graph convolution). Bit-identical to ``DIEP.forward`` on a CPU (tested); a call costs
    one more forward pass of the integrator and the blocks. ``return_all_layer_output``
    runs ``DIEP.forward`` itself.
    """
    import torch
    from diep import config
    from diep.graph.compute import compute_pair_vector_and_distance, ensure_line_graph_compatibility
    from diep.utils.cutoff import polynomial_cutoff
    from torch_geometric.utils import scatter

    if return_all_layer_output:
        return type(model).forward(model, g, state_attr, l_g, return_all_layer_output)
    node_types = g.node_type.long()
    g.bond_vec, g.bond_dist = compute_pair_vector_and_distance(g)
    use_edges = model.use_edges
    if use_edges:
        ensure_line_graph_compatibility(g, model.threebody_cutoff)
    atomic_table = model.atomic_number_table
    if atomic_table.device != node_types.device:
        atomic_table = atomic_table.to(node_types.device)
    atomic_numbers = atomic_table[node_types].to(config.float_th)
    bond_features, triplet_features = checkpointed_integrator(model.diep_integrator, g, atomic_numbers, use_edges)
    pair_cutoff = polynomial_cutoff(g.bond_dist, model.cutoff)
    g.rbf = bond_features * pair_cutoff.unsqueeze(-1)
    three_body_cutoff = polynomial_cutoff(g.bond_dist, model.threebody_cutoff) if use_edges else None
    node_feat, edge_feat, state_feat = model.embedding(node_types, g.rbf, state_attr)
    for i in range(model.n_blocks):

        def block(node_feat, edge_feat, state_feat, i=i):
            if use_edges:
                edge_feat = model.three_body_interactions[i](g, triplet_features, three_body_cutoff,
                                                             node_feat, edge_feat)
            return model.graph_layers[i](g, edge_feat, node_feat, state_feat)

        edge_feat, node_feat, state_feat = checkpointed(block, node_feat, edge_feat, state_feat)
    g.node_feat = node_feat
    g.edge_feat = edge_feat
    if model.is_intensive:
        field_vec = model.readout(g)
        readout_vec = torch.hstack([field_vec, state_feat]) if model.include_state else field_vec
        output = model.final_layer(readout_vec)
        if model.task_type == "classification":
            output = model.sigmoid(output)
    else:
        atomic_properties = model.final_layer(g)
        g.atomic_properties = atomic_properties
        batch = getattr(g, "batch", None)
        if batch is None:
            batch = torch.zeros(atomic_properties.size(0), dtype=torch.long, device=atomic_properties.device)
        size = int(batch.max()) + 1 if batch.numel() else 1
        output = scatter(atomic_properties, batch, dim=0, dim_size=size, reduce="sum")
    return torch.squeeze(output)


#: Triplets per checkpointed piece of the DIEP integrator's triplet features
#: (:func:`checkpointed_integrator`): each piece's grid tensors, (T, 3, 121) float32 for
#: diep_fold1, take about 140 MB at this size while the backward pass recomputes it.
TRIPLETS_PER_PIECE = 32768


def checkpointed_integrator(integrator, g, atomic_numbers, compute_triplets: bool = True):
    """``integrator(g, atomic_numbers, compute_triplets)`` (diep's ``DIEPIntegrator``), checkpointed.

    The integrator evaluates each bond's and each triplet's electron-ion integral on a 2D
    grid (121 points for diep_fold1): about two fifths of the tensors DIEP keeps for the
    forces, nearly all of them per triplet. The bond features are the integrator's own call
    without triplets, checkpointed whole. The triplet features are diep's code for them,
    run on pieces of :data:`TRIPLETS_PER_PIECE` triplets, each piece checkpointed: the
    backward pass recomputes one piece at a time. Every operation is per triplet, so each
    triplet's features and their gradients are computed as in one piece (bit-identical
    on a CPU with deterministic kernels, tested).
    """
    import torch
    from diep import config

    bond_feat, empty = checkpointed(integrator, g, atomic_numbers, False)
    triple_index = getattr(g, "triple_index", None)
    if not compute_triplets or int(g.edge_index.shape[1]) == 0:
        return bond_feat, empty
    if triple_index is None:
        raise ValueError("triple_index must be present when compute_triplets is True.")
    lg_src, lg_dst = triple_index
    if int(lg_src.shape[0]) == 0:
        return bond_feat, empty
    # From here on diep's DIEPIntegrator.forward, the same operations.
    src, dst = g.edge_index
    pos = g.pos.to(config.float_th)
    bond_vec = g.bond_vec.to(config.float_th)
    center_idx = src[lg_src]
    neighbor_i = dst[lg_src]
    neighbor_k = dst[lg_dst]
    pos_center = pos[center_idx]
    pos_first = pos_center + bond_vec[lg_src]
    pos_second = pos_center + bond_vec[lg_dst]
    raw_coords = torch.stack([pos_first, pos_center, pos_second], dim=1)
    triplet_numbers = atomic_numbers[torch.stack([neighbor_i, center_idx, neighbor_k], dim=1)]
    bond_dist = g.bond_dist.to(config.float_th)
    triplet_length = 0.5 * (bond_dist[lg_src] + bond_dist[lg_dst])
    pieces = [
        checkpointed(functools.partial(_triplet_features, integrator), raw_coords[start:start + TRIPLETS_PER_PIECE],
                     triplet_numbers[start:start + TRIPLETS_PER_PIECE],
                     triplet_length[start:start + TRIPLETS_PER_PIECE])
        for start in range(0, int(raw_coords.shape[0]), TRIPLETS_PER_PIECE)
    ]
    return bond_feat, (pieces[0] if len(pieces) == 1 else torch.cat(pieces)).to(config.float_th)


def _triplet_features(integrator, raw_coords, triplet_numbers, triplet_length):
    """The triplet half of ``DIEPIntegrator.forward``, from the triplets' coordinates on."""
    import torch
    from diep import config
    from diep.layers._diep_core import _bond_anchored_triplets_batch, _canonicalize_triplets_batch

    grid = integrator._grid
    grid_points = grid.points.to(config.float_th)
    delta_area = grid.delta_area.to(config.float_th)
    if integrator.triplet_frame == "bond":
        canonical_coords, ordered_numbers = _bond_anchored_triplets_batch(raw_coords, triplet_numbers)
    else:
        canonical_coords, ordered_numbers = _canonicalize_triplets_batch(raw_coords, triplet_numbers)
    diff_fragment = canonical_coords.unsqueeze(2) - grid_points.unsqueeze(0)
    dist_sq_fragment = torch.sum(diff_fragment**2, dim=-1)
    denom_triplet = torch.sqrt(dist_sq_fragment + integrator.softening_epsilon**2)
    if integrator.use_effective_charge:
        ordered_numbers_eff = torch.sqrt(ordered_numbers.clamp_min(0.0))
    else:
        ordered_numbers_eff = ordered_numbers
    triplet_feat = integrator._integrate(
        dist_sq_fragment, denom_triplet, ordered_numbers_eff, delta_area, length=triplet_length
    )
    if integrator.triplet_frame == "bond" and integrator.mode == "grid":
        triplet_feat = 0.5 * (triplet_feat + triplet_feat[:, integrator._mirror_index])
    return triplet_feat


@functools.cache
def _calculator_class():
    from diep.pretrained import DIEPCalculator

    class CheckpointingDIEPCalculator(DIEPCalculator):
        """diep's calculator, run under torch's deterministic kernels on a CPU
        (:func:`hetens.families._common.deterministic_torch`); a structure of at least
        ``checkpoint_min_atoms`` atoms runs through :func:`checkpointed_forward`
        (bit-identical, less memory).

        DIEP's message passing sums with ``scatter_add_``, whose order of addition varies
        from call to call on a CPU: six calls on one 54-atom cell gave six force arrays up
        to 1.9e-6 eV/Å apart, and one under deterministic kernels, at no measurable cost
        (docs/uncertainty-scale.md, "What is reproducible").
        """

        checkpoint_min_atoms = CHECKPOINT_MIN_ATOMS

        def calculate(self, atoms=None, properties=None, system_changes=None):
            n_atoms = len(atoms if atoms is not None else self.atoms)
            with deterministic_torch(str(self._potential_device() or "cpu")):
                if not uses_checkpoint(self, n_atoms):
                    return super().calculate(atoms, properties, system_changes)
                model = self.potential.model
                with forward_replaced(model, functools.partial(checkpointed_forward, model)):
                    return super().calculate(atoms, properties, system_changes)

    return CheckpointingDIEPCalculator
