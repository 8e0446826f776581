"""Tiny randomly initialised models of the own-environment families, built in THEIR environment.

These families cannot be imported in the test process (nequip needs e3nn 0.6,
GRACE needs TensorFlow, deepmd its own torch), so each builder here is a small
Python program run with the family environment's interpreter (``python -I``).
It builds the model in code, saves it in the family's own format through the
package's own tools and prints nothing but the saved path on its last stdout
line. The adapters then load that file back through the official loader,
inside a worker of the same environment.

Builders never touch the network.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

__all__ = ["run_in", "build_nequip_model", "build_grace_model", "build_deepmd_model"]


def run_in(python: str | os.PathLike, script: str, *, cwd: str | os.PathLike,
           timeout: float = 600) -> str:
    """Run ``script`` with ``python -I`` in ``cwd``; return the last line of its stdout.

    Raises:
        AssertionError: the script failed (its stderr tail in the message).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HETENS_OFFLINE="1")
    result = subprocess.run([str(python), "-I", "-c", script], cwd=str(cwd), capture_output=True,
                            text=True, timeout=timeout, env=env)
    assert result.returncode == 0, (
        f"model builder failed (exit {result.returncode}):\n{result.stderr[-4000:]}\n{result.stdout[-2000:]}"
    )
    return result.stdout.strip().splitlines()[-1]


# --- NequIP / Allegro -------------------------------------------------------------------------

#: Model blocks of the tiny NequIP and Allegro models (hydra config, nequip 0.19 / allegro 0.8).
_NEQUIP_MODELS = {
    "nequip": """
    _target_: nequip.model.NequIPGNNModel
    seed: 7
    model_dtype: float64
    type_names: [W, Mo]
    r_max: 4.0
    l_max: 1
    parity: true
    num_layers: 2
    num_features: 8
    radial_mlp_depth: 1
    radial_mlp_width: 8
    avg_num_neighbors: 14.0
    per_type_energy_shifts: {W: -12.9, Mo: -10.9}
    per_type_energy_scales: {W: 0.5, Mo: 0.6}
""",
    "allegro": """
    _target_: allegro.model.AllegroModel
    seed: 7
    model_dtype: float64
    type_names: [W, Mo]
    r_max: 4.0
    l_max: 1
    parity: true
    radial_chemical_embed:
      _target_: allegro.nn.TwoBodyBesselScalarEmbed
      num_bessels: 4
    radial_chemical_embed_dim: 8
    scalar_embed_mlp_hidden_layers_depth: 1
    scalar_embed_mlp_hidden_layers_width: 8
    num_layers: 1
    num_scalar_features: 8
    num_tensor_features: 4
    allegro_mlp_hidden_layers_depth: 1
    allegro_mlp_hidden_layers_width: 8
    readout_mlp_hidden_layers_depth: 1
    readout_mlp_hidden_layers_width: 8
    avg_num_neighbors: 14.0
    per_type_energy_shifts: {W: -12.9, Mo: -10.9}
    per_type_energy_scales: {W: 0.5, Mo: 0.6}
""",
}

_NEQUIP_CONFIG = """\
run: [train]
seed: 3
data:
  _target_: nequip.data.datamodule.ASEDataModule
  seed: 3
  train_file_path: {data}
  val_file_path: {data}
  transforms:
    - _target_: nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper
      model_type_names: [W, Mo]
      chemical_species_to_atom_type_map: {{W: W, Mo: Mo}}
    - _target_: nequip.data.transforms.NeighborListTransform
      r_max: 4.0
  train_dataloader: {{_target_: torch.utils.data.DataLoader, batch_size: 2}}
  val_dataloader: {{_target_: torch.utils.data.DataLoader, batch_size: 2}}
trainer:
  _target_: lightning.Trainer
  accelerator: cpu
  max_epochs: 1
  limit_train_batches: 1
  limit_val_batches: 1
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - _target_: lightning.pytorch.callbacks.ModelCheckpoint
      dirpath: {out}
      filename: tiny
      save_last: false
training_module:
  _target_: nequip.train.EMALightningModule
  loss:
    _target_: nequip.train.EnergyForceStressLoss
    per_atom_energy: true
    coeffs: {{total_energy: 1.0, forces: 1.0, stress: 1.0}}
  val_metrics:
    _target_: nequip.train.EnergyForceStressMetrics
    coeffs: {{total_energy_mae: 1.0, forces_mae: 1.0, stress_mae: 1.0}}
  optimizer:
    _target_: torch.optim.Adam
    lr: 0.0
  model:
{model}
"""

#: Runs in the nequip environment: label a few W/Mo cells (ASE's Lennard-Jones, any labels
#: do: the learning rate is 0, so the model keeps its random initialisation), one
#: ``nequip-train`` step writes a real nequip checkpoint, ``nequip-package`` turns it into a
#: package file (``.nequip.zip``, the form nequip.net distributes its models in).
_NEQUIP_SCRIPT = """\
import os, subprocess, sys
from pathlib import Path
import numpy as np
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
import ase.io

out = Path({out!r})
frames = []
rng = np.random.default_rng(5)
for i in range(4):
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.symbols[rng.choice(len(atoms), 5, replace=False)] = "Mo"
    atoms.rattle(0.05, seed=i)
    atoms.calc = LennardJones(sigma=2.6, epsilon=0.1, rc=4.0)
    atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(),
                                       forces=atoms.get_forces(), stress=atoms.get_stress())
    frames.append(atoms)
ase.io.write(out / "data.xyz", frames, format="extxyz")
(out / "tiny.yaml").write_text({config!r})
bin_dir = Path(sys.executable).parent
def run(*command):
    done = subprocess.run([str(bin_dir / command[0]), *command[1:]], cwd=out, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{{' '.join(command)}} failed:\\n{{done.stdout[-3000:]}}\\n{{done.stderr[-5000:]}}")
run("nequip-train", "-cp", str(out), "-cn", "tiny", f"hydra.run.dir={{out / 'run'}}")
run("nequip-package", "build", str(out / "tiny.ckpt"), str(out / {name!r}))
print(out / {name!r})
"""


def nequip_model_script(folder: str | os.PathLike, kind: str = "nequip") -> str:
    """The builder program for a tiny ``kind`` (``nequip`` or ``allegro``) model in ``folder``."""
    folder = Path(folder)
    model = textwrap.indent(textwrap.dedent(_NEQUIP_MODELS[kind]).strip(), "    ")
    config = _NEQUIP_CONFIG.format(data=folder / "data.xyz", out=folder, model=model)
    return _NEQUIP_SCRIPT.format(out=str(folder), config=config, name=f"tiny-{kind}.nequip.zip")


def build_nequip_model(python: str | os.PathLike, folder: str | os.PathLike, kind: str = "nequip") -> Path:
    """Build a tiny W/Mo ``kind`` model (one training step at learning rate 0: the random
    initialisation) with the nequip environment's ``python``; return its ``.nequip.zip``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(run_in(python, nequip_model_script(folder, kind), cwd=folder))


# --- GRACE (tensorpotential) ----------------------------------------------------------------

#: Runs in the grace environment: a one-layer GRACE (the GRACE-1L preset of the foundation
#: models, made tiny) for W and Mo with random weights, saved as a TensorFlow SavedModel
#: by tensorpotential's own ``TensorPotential.save_model``.
_GRACE_SCRIPT = """\
import os
from pathlib import Path
import tensorpotential  # sets TF_USE_LEGACY_KERAS before TensorFlow is imported
import tensorflow as tf
from tensorpotential.potentials.presets import GRACE_1LAYER_v2_25
from tensorpotential.tensorpot import TensorPotential

out = Path({out!r})
os.chdir(out)  # TensorPotential makes an output folder in the working directory
instructions = GRACE_1LAYER_v2_25(
    element_map={{"Mo": 0, "W": 1}}, rcut=4.0, avg_n_neigh=14.0, constant_out_shift=-11.0,
    lmax=2, n_rad_base=4, n_rad_max=4, prod_func_n_max=8, embedding_size=8, n_mlp_dens=4,
    max_order=2,
).get_instructions()
tp = TensorPotential(potential=instructions, param_dtype=tf.float64, jit_compile=False, seed=7)
tp.save_model(exact_path=str(out / "tiny-grace"), jit_compile=False)
print(out / "tiny-grace")
"""


def build_grace_model(python: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """A tiny random W/Mo GRACE-1L SavedModel folder built with the grace environment's ``python``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(run_in(python, _GRACE_SCRIPT.format(out=str(folder)), cwd=folder))


# --- DeePMD (deepmd-kit, PyTorch backend) ---------------------------------------------------

#: Runs in the deepmd environment: a tiny DPA3 (repflow descriptor + energy fitting) for W and
#: Mo, its config normalised by deepmd's own argument checker, built with
#: ``deepmd.pt.model.model.get_model`` and frozen as ``dp --pt freeze`` does
#: (``torch.jit.script`` + ``torch.jit.save`` with the ``data_modifier.pth`` extra file).
_DEEPMD_SCRIPT = """\
import os
os.environ.setdefault("DEVICE", "cpu")
from pathlib import Path
import torch
from deepmd.utils.argcheck import model_args
from deepmd.pt.model.model import get_model

out = Path({out!r})
params = {{
    "type_map": ["Mo", "W"],
    "descriptor": {{
        "type": "dpa3",
        "repflow": {{
            "n_dim": 8, "e_dim": 6, "a_dim": 4, "nlayers": 2,
            "e_rcut": 4.0, "e_rcut_smth": 3.5, "e_sel": 40,
            "a_rcut": 3.5, "a_rcut_smth": 3.0, "a_sel": 20, "axis_neuron": 2,
        }},
        "precision": "float64",
        "seed": 7,
    }},
    "fitting_net": {{"neuron": [8, 8], "precision": "float64", "seed": 7}},
}}
params = model_args().normalize_value(params, trim_pattern="_*")
torch.manual_seed(7)
model = get_model(params)
model.eval()
path = out / "tiny-dpa3.pth"
torch.jit.save(torch.jit.script(model), str(path), {{"data_modifier.pth": ""}})
print(path)
"""


def build_deepmd_model(python: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """A tiny random W/Mo DPA3 frozen model (``.pth``) built with the deepmd environment's ``python``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(run_in(python, _DEEPMD_SCRIPT.format(out=str(folder)), cwd=folder))
