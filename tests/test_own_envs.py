"""Families that cannot share the main environment, run as isolated members of their own one.

NequIP / Allegro (nequip 0.19 needs e3nn 0.6; the main environment holds e3nn 0.5.1 for
sevenn and fairchem) runs in the default suite: the session builds the environment once
with ``hetens env create --family nequip --no-compile`` (about 75 s here with a warm pip
cache; ``HETENS_TEST_ENV_NEQUIP=/path/bin/python`` reuses one), builds a tiny W/Mo NequIP
model in it with nequip's own tools (``nequip-train`` at learning rate 0, ``nequip-package``:
about 50 s), and runs the conformance check on the member through a worker. Allegro is
``slow`` (one more model build).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

import hetens
from hetens.catalogue.envs import FAMILY_STACKS, hetens_requirement
from hetens.errors import MissingFamilyError
from hetens.families import FAMILIES
from hetens.catalogue.registry import models_of_family
from hetens.testing import CHECKS, check_member

from own_env_models import build_nequip_model, run_in


# -- without any environment ------------------------------------------------------------------


def test_own_environment_families_are_declared():
    """nequip is an own-environment family with a stack, registry entries and levels."""
    family = FAMILIES["nequip"]
    assert family.environment == "own"
    stack = FAMILY_STACKS["nequip"]
    assert "nequip==0.19.1" in stack.packages and "nequip-allegro==0.8.3" in stack.packages
    assert "e3nn==0.6.0" in stack.constraints and stack.torch is None
    names = {m.name: m for m in models_of_family("nequip")}
    assert {"NequIP-OAM-L-0.1", "Allegro-OAM-L-0.1"} <= set(names)
    assert all(m.level_of_theory == "PBE+U" for m in names.values())


@pytest.mark.skipif(FAMILIES["nequip"].installed, reason="nequip is installed in this environment")
def test_own_environment_family_without_python_says_how_to_build_one():
    with pytest.raises(MissingFamilyError) as caught:
        hetens.load_member("nequip:NequIP-OAM-L-0.1", device="cpu")
    message = str(caught.value)
    assert "hetens env create nequip --family nequip" in message and "env:nequip" in message


def test_member_environment_gets_the_running_source_tree():
    """hetens env create installs the hetens that runs it (this tree), editable."""
    assert hetens_requirement() == ["-e", str(Path(hetens.__file__).resolve().parent.parent)]


# -- NequIP in its own environment ----------------------------------------------------------


@pytest.fixture(scope="module")
def nequip_python(family_environment):
    return family_environment("nequip")


@pytest.fixture(scope="module")
def tiny_nequip(nequip_python, tmp_path_factory):
    return build_nequip_model(nequip_python, tmp_path_factory.mktemp("nequip-model"), "nequip")


def _probe():
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.symbols[[1, 4, 6]] = "Mo"
    atoms.rattle(0.04, seed=3)
    return atoms


def test_nequip_environment_runs_this_hetens_and_e3nn_0_6(nequip_python):
    """The worker's interpreter imports hetens (and the nequip adapter) from this tree."""
    out = subprocess.run(
        [nequip_python, "-I", "-c",
         "import json, hetens, hetens.families.nequip as a, e3nn, importlib.util as u; "
         "print(json.dumps([hetens.__file__, a.__file__, e3nn.__version__, "
         "[m for m in ('sevenn', 'fairchem', 'mace', 'chgnet') if u.find_spec(m)]]))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    hetens_file, adapter_file, e3nn_version, others = json.loads(out)
    assert Path(hetens_file).resolve() == Path(hetens.__file__).resolve()
    assert Path(adapter_file).resolve().parent == Path(hetens.__file__).resolve().parent / "families"
    assert e3nn_version == "0.6.0" and others == []


def test_tiny_nequip_passes_check_member_through_a_worker(nequip_python, tiny_nequip):
    """A tiny NequIP model saved by nequip (package file), loaded back by nequip's loader
    inside a worker of the nequip environment: the full conformance check, from here."""
    member = hetens.load_member(f"nequip:{tiny_nequip}@level=PBE+U@python={nequip_python}", device="cpu")
    with member.calculator:
        report = check_member(member)
        assert report.passed == list(CHECKS) and not report.skipped, report
        assert member.supported_elements() == frozenset({42, 74})
        assert member.versions["nequip"] == "0.19.1" and member.versions["e3nn"] == "0.6.0"
        atoms = _probe()
        atoms.calc = member.calculator
        isolated = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
    reference = json.loads(run_in(nequip_python, _OFFICIAL_SCRIPT.format(model=str(tiny_nequip)),
                                  cwd=tiny_nequip.parent))
    np.testing.assert_allclose(isolated[0], reference["energy"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(isolated[1], reference["forces"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(isolated[2], reference["stress"], rtol=0, atol=1e-12)


#: nequip's own calculator on the probe, without hetens (what the member must equal).
_OFFICIAL_SCRIPT = textwrap.dedent("""\
    import json
    from ase.build import bulk
    from nequip.integrations.ase import NequIPCalculator
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.symbols[[1, 4, 6]] = "Mo"
    atoms.rattle(0.04, seed=3)
    atoms.calc = NequIPCalculator._from_saved_model({model!r}, device="cpu",
                                                    chemical_species_to_atom_type_map=True)
    print(json.dumps({{"energy": float(atoms.get_potential_energy()),
                      "forces": atoms.get_forces().tolist(), "stress": atoms.get_stress().tolist()}}))
""")


#: In the nequip environment, in one process: what loading and calculating through the
#: adapter leaves behind (nequip's set_global_state changes all of it when uncontained).
_CONTAINMENT_SCRIPT = textwrap.dedent("""\
    import json, os, random
    import numpy as np, torch
    import hetens

    def state():
        import torch._dynamo.config as dynamo
        return {{
            "dtype": str(torch.get_default_dtype()),
            "matmul": torch.get_float32_matmul_precision(),
            "random": random.random(), "numpy": float(np.random.random()),
            "torch": float(torch.rand(1)),
            "env": sorted(os.environ.items()),
            "fusion": str(torch.jit.set_fusion_strategy([("STATIC", 2), ("DYNAMIC", 10)])),
            "sharing": torch.multiprocessing.get_sharing_strategy(),
            "dynamo": [dynamo.capture_dynamic_output_shape_ops, dynamo.capture_scalar_outputs],
        }}

    def seeded_state():
        random.seed(1); np.random.seed(1); torch.manual_seed(1)
        return state()

    before = seeded_state()
    random.seed(1); np.random.seed(1); torch.manual_seed(1)
    member = hetens.load_member({spec!r}, device="cpu")
    after_load = state()
    atoms = __import__("ase.build", fromlist=["bulk"]).bulk("W", "bcc", a=3.17, cubic=True)
    random.seed(1); np.random.seed(1); torch.manual_seed(1)
    atoms.calc = member.calculator
    atoms.get_forces()
    after_call = state()
    import nequip.utils.global_state as g
    print(json.dumps({{"before": before, "after_load": after_load, "after_call": after_call,
                      "nequip_initialised": g.global_state_initialized()}}))
""")


def test_nequip_adapter_contains_set_global_state_in_process(nequip_python, tiny_nequip):
    """Loaded in-process (in the nequip environment), the adapter leaves torch's dtype, every
    RNG, os.environ, the fusion strategy and the dynamo flags as they were, although nequip
    did run set_global_state (float64, seed 123)."""
    spec = f"nequip:{tiny_nequip}@level=PBE+U"
    result = json.loads(run_in(nequip_python, _CONTAINMENT_SCRIPT.format(spec=spec), cwd=tiny_nequip.parent))
    assert result["nequip_initialised"]
    for stage in ("after_load", "after_call"):
        for key, value in result["before"].items():
            got = result[stage][key]
            assert got == value, f"{stage}: {key} changed: {value!r} -> {got!r}"


def test_hetens_models_names_the_environment_of_an_own_environment_family(nequip_python, monkeypatch):
    """`hetens models`: an own-environment family says where its environment is, or how to make one."""
    from hetens.catalogue.models_table import _not_here

    folder = Path(nequip_python).parents[1]
    if not (folder / "hetens-env.json").is_file():
        pytest.skip("HETENS_TEST_ENV_NEQUIP names an environment not built by hetens env create")
    monkeypatch.setenv("HETENS_ENV_DIR", str(folder.parent))
    assert _not_here(FAMILIES["nequip"]) == f"own environment: @python={nequip_python}"
    monkeypatch.setenv("HETENS_ENV_DIR", str(folder / "no-environments-here"))
    assert _not_here(FAMILIES["nequip"]) == (
        "own environment, not created (hetens env create nequip --family nequip)")


@pytest.mark.slow
def test_tiny_allegro_passes_check_member_through_a_worker(nequip_python, tmp_path):
    """Allegro models are nequip members: the same environment, loader and checks."""
    model = build_nequip_model(nequip_python, tmp_path, "allegro")
    member = hetens.load_member(f"nequip:{model}@level=PBE+U@python={nequip_python}", device="cpu")
    with member.calculator:
        report = check_member(member)
        assert report.passed == list(CHECKS) and not report.skipped, report
        assert member.supported_elements() == frozenset({42, 74})


# -- GRACE (TensorFlow) in its own environment: slow (the environment is about 2 GB) ---------


def test_grace_stack_has_no_torch_and_no_cuda_tensorflow():
    stack = FAMILY_STACKS["grace"]
    assert FAMILIES["grace"].environment == "own" and not stack.with_torch
    assert "tensorflow-cpu==2.20.0" in stack.packages
    # tensorpotential declares tensorflow[and-cuda], tf_keras declares tensorflow: both no-deps.
    assert set(stack.no_deps) == {"tf_keras==2.20.1", "tensorpotential==0.6.2.1"}
    assert {m.name for m in models_of_family("grace")} >= {"GRACE-1L-OAM", "GRACE-2L-OAM", "GRACE-2L-OMAT"}


#: tensorpotential's own calculator on the probe, without hetens.
_GRACE_OFFICIAL = textwrap.dedent("""\
    import json
    from ase.build import bulk
    import tensorpotential
    from tensorpotential.calculator import TPCalculator
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.symbols[[1, 4, 6]] = "Mo"
    atoms.rattle(0.04, seed=3)
    atoms.calc = TPCalculator(model={model!r})
    print(json.dumps({{"energy": float(atoms.get_potential_energy()),
                      "forces": atoms.get_forces().tolist(), "stress": atoms.get_stress().tolist()}}))
""")


@pytest.mark.slow
def test_tiny_grace_passes_check_member_through_a_worker(family_environment, tmp_path):
    """hetens env create --family grace (CPU TensorFlow), a tiny random GRACE-1L saved by
    tensorpotential as a SavedModel, loaded by TPCalculator in a worker: the conformance
    check from here, and the same numbers as tensorpotential's own calculator."""
    from own_env_models import build_grace_model

    python = family_environment("grace")
    probe = subprocess.run([python, "-I", "-c", "import importlib.util as u; "
                            "print([m for m in ('torch', 'nvidia', 'tensorflow') if u.find_spec(m)])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert probe == "['tensorflow']", probe  # neither torch nor CUDA libraries
    model = build_grace_model(python, tmp_path)
    member = hetens.load_member(f"grace:{model}@level=PBE+U@python={python}", device="cpu")
    with member.calculator:
        report = check_member(member)
        print(report)
        assert report.passed == list(CHECKS) and not report.skipped, report
        assert member.supported_elements() == frozenset({42, 74})
        assert member.versions["tensorpotential"] == "0.6.2.1"
        atoms = _probe()
        atoms.calc = member.calculator
        isolated = (atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
    reference = json.loads(run_in(python, _GRACE_OFFICIAL.format(model=str(model)), cwd=tmp_path))
    np.testing.assert_allclose(isolated[0], reference["energy"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(isolated[1], reference["forces"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(isolated[2], reference["stress"], rtol=0, atol=1e-12)


# -- DeePMD (DPA3) in its own environment with torch 2.11: slow (several GB, CUDA torch) -----


def test_deepmd_stack_carries_its_torch():
    stack = FAMILY_STACKS["deepmd"]
    assert FAMILIES["deepmd"].environment == "own"
    assert stack.torch == "2.11.0" and "deepmd-kit[torch]==3.2.0" in stack.packages
    dpa3 = next(m for m in models_of_family("deepmd") if m.name == "DPA-3.1-3M")
    assert dpa3.heads and dpa3.default_head is None  # the head must be named: it decides the level


@pytest.mark.slow
def test_tiny_dpa3_passes_check_member_through_a_worker(family_environment, tmp_path):
    """hetens env create --family deepmd (torch 2.11), a tiny random DPA3 frozen as
    ``dp --pt freeze`` does, loaded by deepmd's DP calculator in a worker: the checks from here."""
    from own_env_models import build_deepmd_model

    python = family_environment("deepmd")
    torch_version = subprocess.run([python, "-I", "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    assert torch_version.startswith("2.11.0"), torch_version
    model = build_deepmd_model(python, tmp_path)
    member = hetens.load_member(f"deepmd:{model}@level=PBE+U@python={python}", device="cpu")
    with member.calculator:
        report = check_member(member)
        print(report)
        assert report.passed == list(CHECKS) and not report.skipped, report
        assert member.supported_elements() == frozenset({42, 74})
        assert member.versions["deepmd-kit"] == "3.2.0"
