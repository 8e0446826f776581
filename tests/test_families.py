"""Every model family through ``hetens.load_member``: conformance, loaders, molecules, noise.

The physics checks are hetens' own shipped conformance check,
:func:`hetens.testing.check_member`, run here on every family: the first
shipped model of the families whose weights are in their wheel (sevenn,
chgnet, diep) and a tiny model built in code (tests/tiny_models.py) for the
hub families, through their official loaders, offline. The family lists
come from the tables (``FAMILIES``, the registry, ``TINY_BUILDERS``), so a
new family is tested once it has an adapter, registry rows and a tiny-model
builder. A family whose package is missing is skipped with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import BaseCalculator
from tiny_models import TINY_BUILDERS, TINY_HEADS, tiny_fairchem_checkpoint, tiny_mace_model, tiny_matgl_model

import hetens
from hetens.errors import ConformanceError, UnknownModelError, WeightsUnavailableError
from hetens.families import FAMILIES
from hetens.registry import models_of_family
from hetens.testing import CHECKS, Tolerances, check_member, probe_cell

#: The conformance check's defaults, used by the tests below as well.
TOLERANCES = Tolerances()
ENERGY_ATOL_PER_ATOM = TOLERANCES.energy_atol_per_atom
FORCE_ATOL = TOLERANCES.force_atol


def _first(family: str, source: str) -> str | None:
    return next((m.spec for m in models_of_family(family) if m.source == source), None)


#: family -> the shipped model tested (the first of the family in the wheel).
SHIPPED = {f: _first(f, "wheel") for f in FAMILIES if _first(f, "wheel") and f not in TINY_BUILDERS}
TINY = dict(TINY_BUILDERS)
ALL_FAMILIES = (*SHIPPED, *TINY)
#: What users pass offline for the hub families (registry names): these three are
#: also laid out in a fake cache below; other hub families use their first hub model.
HUB_NAMES = {
    **{f: _first(f, "hub") for f in TINY if _first(f, "hub")},
    "mace": "mace:medium-omat-0",
    "fairchem": "fairchem:uma-s-1p1",
    "matgl": "matgl:TensorNet-MatPES-PBE-v2025.1-PES",
}
CACHED_LAYOUTS = ("mace", "fairchem", "matgl")


def require_family(family: str) -> None:
    info = FAMILIES[family]
    if not info.installed:
        pytest.skip(f"{family}: package(s) {', '.join(info.packages)} not installed "
                    f"(pip install 'hetens[{info.extra}]')")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_models")


def member_spec(family: str, folder) -> str:
    """The spec that loads ``family``'s test model: shipped weights or a tiny model file."""
    if family in SHIPPED:
        return SHIPPED[family]
    path = TINY[family](folder)
    head = f"@{TINY_HEADS[family]}" if family in TINY_HEADS else ""
    return f"{family}:{path}{head}@level=PBE+U"


@pytest.fixture(scope="session")
def members(tiny_dir):
    """Members loaded once per session, by family; loaded on first use."""
    cache = {}

    def get(family: str):
        require_family(family)
        if family not in cache:
            cache[family] = hetens.load_member(member_spec(family, tiny_dir), device="cpu")
        return cache[family]

    return get


def energy(calc, atoms) -> float:
    return float(calc.get_potential_energy(atoms))


def snapshot(atoms) -> dict:
    return {
        "positions": atoms.positions.copy(), "numbers": atoms.numbers.copy(),
        "cell": atoms.cell.array.copy(), "pbc": atoms.pbc.copy(), "info": dict(atoms.info),
        "arrays": sorted(atoms.arrays), "calc": atoms.calc,
    }


def assert_unchanged(atoms, before: dict, family: str) -> None:
    after = snapshot(atoms)
    for key in ("positions", "numbers", "cell", "pbc"):
        np.testing.assert_array_equal(after[key], before[key], err_msg=f"{family} changed atoms.{key}")
    assert after["info"] == before["info"], f"{family} changed atoms.info: {after['info']}"
    assert after["arrays"] == before["arrays"], f"{family} added arrays {after['arrays']}"
    assert after["calc"] is before["calc"], f"{family} attached a calculator to the input atoms"


# ---------------------------------------------------------------- interference


def test_members_do_not_interfere_in_one_process(members):
    """Every installed family loaded one after another in one process: each member's energy right
    after its own load equals its energy inside the ensemble after all loads, shipped
    models keep their reference energies (FIELD_NOTES: rattled 54-atom W), and no load
    leaks torch's default dtype, the weights-only env variable, ASE's shared property
    list or the global random state."""
    import torch

    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(3)
    atoms.rattle(0.05, seed=42)
    reference = {"sevenn": -687.26, "chgnet": -687.76}  # eV, FIELD_NOTES
    dtype = torch.get_default_dtype()
    env = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    shared_properties = list(BaseCalculator.implemented_properties)
    numpy_state = np.random.get_state()[1].copy()

    # chgnet after mace: MACE once broke CHGNet loaded later in the same process.
    preferred = ("sevenn", "mace", "chgnet", "fairchem", "matgl", "diep")
    order = [f for f in (*preferred, *(f for f in ALL_FAMILIES if f not in preferred)) if FAMILIES[f].installed]
    loaded, alone = [], {}
    for family in order:
        member = members(family)  # first use in the session: loaded now
        alone[family] = energy(member.calculator, atoms.copy())
        loaded.append(member)
        assert torch.get_default_dtype() == dtype, f"loading {family} changed torch's default dtype"
        assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == env, f"loading {family} leaked the env"
        assert BaseCalculator.implemented_properties == shared_properties, (
            f"loading {family} changed ASE's class-level implemented_properties")
        np.testing.assert_array_equal(np.random.get_state()[1], numpy_state,
                                      err_msg=f"loading {family} reseeded NumPy's global generator")
    for family, value in reference.items():
        if family in alone:
            assert alone[family] == pytest.approx(value, abs=0.01), family

    # The tiny hub models are untrained (energies off the real models' reference by up to
    # 6 eV/atom) and diep is r2SCAN: mixed on purpose, this checks interference only.
    calc = hetens.HeterogeneousEnsembleCalculator(loaded, allow_mixed_reference=True)
    probe = atoms.copy()
    probe.calc = calc
    assert np.isfinite(probe.get_potential_energy())
    assert np.isfinite(probe.get_forces()).all()
    assert np.isfinite(probe.get_stress()).all()
    assert np.isfinite(calc.results["uncertainty"])
    # float32 sums may differ in the last bit between calls; interference would show far above.
    np.testing.assert_allclose(calc.results["member_energies"], [alone[f] for f in order],
                               rtol=0, atol=ENERGY_ATOL_PER_ATOM)
    assert torch.get_default_dtype() == dtype


# ---------------------------------------------------------------- conformance


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_family_conformance(family, members):
    """hetens.testing.check_member on every family: shapes, conservative forces and stress,
    translation/lattice-shift/rotation/permutation invariance, one-atom cell, recomputation
    on change, no input mutation."""
    member = members(family)
    if family in ("mace", "matgl"):
        assert member.supported_elements() == {8, 29, 42, 74}  # the tiny models' element tables
    report = check_member(member, tolerances=TOLERANCES)
    expected_skips = {} if "stress" in member.calculator.implemented_properties else {
        "stress_strain_derivative": "the calculator implements no stress"}
    assert report.skipped == expected_skips, report
    assert report.member == member.name and report.evaluations >= 14


class _ScaledForces:
    """EMT with its forces scaled: no longer the gradient of its energy."""

    def __new__(cls, factor: float):
        from ase.calculators.emt import EMT

        class Scaled(EMT):
            def calculate(self, *args, **kwargs):
                super().calculate(*args, **kwargs)
                self.results["forces"] = self.results["forces"] * factor

        return Scaled()


def copper_probe():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=3)
    return atoms


def test_check_member_on_a_users_wrapped_calculator():
    """A user's calculator (ASE's EMT), wrapped, passes every check on a probe of its elements;
    the report says what ran and how many evaluations it took."""
    from ase.calculators.emt import EMT

    member = hetens.Member.wrap(EMT(), name="emt", level_of_theory="EMT")
    report = check_member(member, copper_probe())
    assert report.passed == list(CHECKS), report
    assert report.skipped == {}
    assert "emt: 10 checks passed" in str(report)
    from ase import Atoms

    cluster = Atoms("Cu3", positions=[[0.0, 0.0, 0.0], [2.5, 0.1, 0.0], [1.1, 2.2, 0.3]])  # no cell
    report = check_member(EMT(), cluster)
    assert report.skipped == {"stress_strain_derivative": "the probe has no 3D periodic cell",
                              "lattice_shift": "the probe has no 3D periodic cell"}, report
    report = check_member(EMT(), cluster, checks=("force_gradient",))
    assert report.passed == ["force_gradient"] and report.skipped["rotation"] == "not asked for"


def test_check_member_names_the_failing_check_member_and_tolerance():
    member = hetens.Member.wrap(_ScaledForces(1.5), name="scaled")
    with pytest.raises(ConformanceError, match=r"member scaled fails check 'force_gradient': .*tolerance .* "
                                               r"force_fd_atol \+ force_fd_rtol") as caught:
        check_member(member, copper_probe())
    assert isinstance(caught.value, AssertionError)
    with pytest.raises(ConformanceError, match=r"elements \[74\] the member does not declare"):
        from ase.calculators.emt import EMT

        wrapped = hetens.Member.wrap(EMT(), name="emt")
        wrapped.elements = frozenset({29})
        probe = copper_probe()
        probe[0].symbol = "W"
        check_member(wrapped, probe, checks=("outputs",))
    with pytest.raises(ValueError, match="unknown check"):
        check_member(member, copper_probe(), checks=("gradient",))


# ---------------------------------------------------------------- loaders


@pytest.mark.parametrize("family", tuple(HUB_NAMES))
def test_hub_name_offline_fails_fast_with_a_clear_error(family):
    """HF_HUB_OFFLINE=1 (conftest): an uncached hub model raises at once, saying what to do."""
    require_family(family)
    spec = HUB_NAMES[family]
    adapter = FAMILIES[family].adapter()
    if adapter.weights_status(spec.split(":", 1)[1]) != "download":
        pytest.skip(f"{spec} is cached on this machine")
    with pytest.raises(WeightsUnavailableError) as caught:
        hetens.load_member(spec, device="cpu")
    message = str(caught.value)
    assert spec in message and "cannot be reached" in message
    assert f"{family}:/path/to/weights" in message


def fake_hub_cache(cache_dir, repo_id: str, files: dict) -> None:
    """Lay ``files`` (path in repo -> local file) out as huggingface_hub's cache does."""
    import shutil

    commit = "0" * 40
    repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for name, source in files.items():
        target = repo / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)


@pytest.mark.parametrize("family", CACHED_LAYOUTS)
def test_cached_hub_weights_load_offline_through_the_family_loader(family, tiny_dir, tmp_path, monkeypatch):
    """A hub name whose weights are in the family's own cache loads offline through the
    family's download path (mace_mp, fairchem's pretrained loader, matgl.load_model):
    the tiny model stands in for the real weights in a cache folder made here."""
    require_family(family)
    spec = HUB_NAMES[family]
    name = spec.split(":", 1)[1]
    if family == "mace":
        from hetens.families.mace import _cache_path

        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
        _cache_path(name).parent.mkdir(parents=True)
        _cache_path(name).write_bytes(tiny_mace_model(tiny_dir).read_bytes())
    elif family == "fairchem":
        from fairchem.core.calculate import pretrained_mlip

        monkeypatch.setattr(pretrained_mlip, "CACHE_DIR", str(tmp_path))
        entry = pretrained_mlip._MODEL_CKPTS.checkpoints[name]
        refs = tmp_path / "refs.yaml"
        refs.write_text("omat_elem_refs: {74: -12.9}\nrefs: {omat: {W: -12.9}}\n")
        fake_hub_cache(tmp_path, entry.repo_id, {
            f"{entry.subfolder}/{entry.filename}": tiny_fairchem_checkpoint(tiny_dir),
            **{f"{r['subfolder']}/{r['filename']}": refs for r in (entry.atom_refs, entry.form_elem_refs)},
        })
    else:
        from matgl.utils import io as matgl_io

        monkeypatch.setattr(matgl_io, "MATGL_CACHE", tmp_path)
        folder = tiny_matgl_model(tiny_dir)
        fake_hub_cache(tmp_path, f"{matgl_io.HF_MATGL_ORG}/{name}", {f: folder / f for f in ("model.pt", "state.pt", "model.json")})

    assert FAMILIES[family].adapter().weights_status(name) == "cached"
    member = hetens.load_member(spec, device="cpu")
    reference = hetens.load_member(member_spec(family, tiny_dir), device="cpu")
    atoms = probe_cell()
    assert energy(member.calculator, atoms) == pytest.approx(energy(reference.calculator, atoms), abs=1e-6)


def test_registry_names_are_the_loaders_own(tiny_dir):
    """Every registry name of a hub family is a name that family's loader knows, and
    ``hetens models`` reports a weights status for every registry model."""
    from hetens.models_table import model_rows
    from hetens.registry import KNOWN_MODELS, models_of_family

    if FAMILIES["mace"].installed:
        from mace.calculators.foundations_models import mace_mp_urls

        assert {m.name for m in models_of_family("mace")} <= set(mace_mp_urls)
    if FAMILIES["fairchem"].installed:
        from fairchem.core.calculate.pretrained_mlip import available_models

        assert {m.name for m in models_of_family("fairchem")} <= set(available_models)

    rows = {row.spec: row for row in model_rows()}
    assert set(rows) == {m.spec for m in KNOWN_MODELS}
    for model in KNOWN_MODELS:
        status = rows[model.spec].weights
        if model.family not in FAMILIES:  # registry rows of a family without an adapter here
            assert status in ("not installable here", "family has no adapter in this hetens"), model.spec
        elif not FAMILIES[model.family].installed:
            assert status.startswith("not installed")
        elif model.source == "wheel":
            assert status == "shipped", model.spec
        else:
            assert status in ("cached", "download"), model.spec
    for family, build in TINY.items():
        if FAMILIES[family].installed:
            assert FAMILIES[family].adapter().weights_status(str(build(tiny_dir))) == "local file"


def test_adapter_options_and_heads(tiny_dir):
    """Heads pick fairchem tasks; bad heads, options and dtypes are refused with the choices."""
    require_family("fairchem")
    require_family("mace")
    require_family("matgl")
    atoms = probe_cell()
    fairchem = tiny_fairchem_checkpoint(tiny_dir)
    omat = hetens.load_member(f"fairchem:{fairchem}@omat", device="cpu").calculator
    omol = hetens.load_member(f"fairchem:{fairchem}@omol", device="cpu").calculator
    assert energy(omat, atoms) != pytest.approx(energy(omol, atoms), abs=1e-3)
    with pytest.raises(UnknownModelError, match="omat"):
        hetens.load_member(f"fairchem:{fairchem}", device="cpu")
    with pytest.raises(UnknownModelError, match="no task 'oc20'"):
        hetens.load_member(f"fairchem:{fairchem}@oc20", device="cpu")

    mace = tiny_mace_model(tiny_dir)
    single = hetens.load_member(f"mace:{mace}@dtype=float32", device="cpu").calculator
    double = hetens.load_member(f"mace:{mace}", device="cpu").calculator
    assert energy(single, atoms) == pytest.approx(energy(double, atoms), abs=1e-4)
    with pytest.raises(ValueError, match="dtype must be one of float32, float64"):
        hetens.load_member(f"mace:{mace}@dtype=float16", device="cpu")
    with pytest.raises(UnknownModelError, match="no head 'omat'"):
        hetens.load_member(f"mace:{mace}@omat", device="cpu")
    with pytest.raises(ValueError, match="unknown option"):
        hetens.load_member(f"mace:{mace}@cutoff=5", device="cpu")
    with pytest.raises(UnknownModelError, match="no heads"):
        hetens.load_member(f"matgl:{tiny_matgl_model(tiny_dir)}@PBE", device="cpu")


# ---------------------------------------------------------------- molecules


def small_molecule():
    """A bent WO2 molecule without a cell (pbc False), elements every test model knows."""
    from ase import Atoms

    return Atoms("WO2", positions=[[0.0, 0.0, 0.0], [1.75, 0.0, 0.1], [-0.6, 1.65, -0.1]], pbc=False)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_molecule_without_a_cell_gives_the_isolated_results(family, members):
    """A structure with pbc=False works for every family and gives the results of the same
    molecule far from its images (a 40 A box); no stress is reported for it."""
    calc = members(family).calculator
    mol = small_molecule()
    before = snapshot(mol)
    e_mol = energy(calc, mol)
    f_mol = np.asarray(calc.get_forces(mol))
    assert "stress" not in calc.results or family != "chgnet"
    assert_unchanged(mol, before, family)

    far = small_molecule()
    far.set_cell([40.0, 41.0, 42.0])
    far.center()
    far.pbc = True
    assert energy(calc, far) == pytest.approx(e_mol, abs=ENERGY_ATOL_PER_ATOM * 3), family
    np.testing.assert_allclose(calc.get_forces(far), f_mol, atol=FORCE_ATOL, err_msg=family)
    moved = small_molecule()
    moved.translate([3.1, -7.2, 0.4])
    assert energy(calc, moved) == pytest.approx(e_mol, abs=ENERGY_ATOL_PER_ATOM * 3), family
    np.testing.assert_allclose(calc.get_forces(moved), f_mol, atol=FORCE_ATOL, err_msg=family)


def test_chgnet_slab_without_enough_vacuum_says_what_cell_to_give(members):
    from hetens.errors import MemberFailedError

    calc = members("chgnet").calculator
    slab = bulk("W", "bcc", a=3.17, cubic=True).repeat((1, 1, 2))
    slab.pbc = [True, True, False]  # images along c at 6.3 A, atoms spread 4.8 A: 1.6 A of vacuum
    with pytest.raises(MemberFailedError, match=r"chgnet:0\.3\.0 .* at least 6 A of vacuum along c"):
        calc.get_potential_energy(slab)
    slab.center(vacuum=4.0, axis=2)  # now 8 A of vacuum along c: taken as it is
    assert np.isfinite(calc.get_potential_energy(slab))


# ---------------------------------------------------------------- upstream noise


def test_chgnet_warning_is_silenced_for_the_call_only(members):
    """CHGNet's per-structure requires_grad UserWarning does not reach a Python session,
    and a warning of the user's own in the same block still does (no process-wide filter)."""
    import warnings

    calc = members("chgnet").calculator
    atoms = probe_cell()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calc.get_potential_energy(atoms)
        warnings.warn("the user's own warning", UserWarning)
    messages = [str(w.message) for w in caught]
    assert not any("requires_grad" in m for m in messages), messages
    assert "the user's own warning" in messages


def test_upstream_noise_is_dropped_and_everything_else_kept(capfd):
    import sys

    from hetens.families._common import without_upstream_noise

    with without_upstream_noise():
        os.write(2, b"Warp CUDA warning: Could not find or load the NVIDIA CUDA driver. GPU execution...\n")
        print("cuequivariance or cuequivariance_torch is not available. Cuequivariance acceleration will be disabled.")
        os.write(1, b"a line from C that matters\n")
        print("a Python line that matters", file=sys.stderr)
    out, err = capfd.readouterr()
    assert out == ""  # stdout stays clean for --json
    assert "Warp" not in err and "cuequivariance" not in err
    assert "a line from C that matters" in err and "a Python line that matters" in err


def test_hetens_models_prints_no_upstream_noise():
    """A fresh process, so every family's package is imported for the first time."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "hetens.cli.main", "models"], capture_output=True, text=True,
                          env=env, cwd=root, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert "sevenn:7net-0" in done.stdout
# ---------------------------------------------------------------- diep


def test_diep_shipped_model_elements_heads_and_molecule():
    """diep:diep_fold1 loads from the wheel, knows Z 1-83 and
    89-94, refuses heads, options and unknown names, and gives conservative forces on an
    isolated molecule (pbc=False, no cell)."""
    require_family("diep")
    from ase.build import molecule

    member = hetens.load_member("diep:diep_fold1", device="cpu")
    assert member.level_of_theory == "r2SCAN"
    assert member.supported_elements() == frozenset(range(1, 84)) | frozenset(range(89, 95))
    with pytest.raises(UnknownModelError, match="no heads"):
        hetens.load_member("diep:diep_fold1@PBE", device="cpu")
    with pytest.raises(ValueError, match="takes no options"):
        hetens.load_member("diep:diep_fold1@cutoff=4", device="cpu")
    with pytest.raises(UnknownModelError, match="diep_fold1"):
        hetens.load_member("diep:diep_fold9", device="cpu")

    water = molecule("H2O")
    assert not water.pbc.any() and not water.cell.array.any()
    calc = member.calculator
    forces = np.asarray(calc.get_forces(water))
    assert forces.shape == (3, 3) and np.isfinite(forces).all()
    assert np.abs(forces).max() > 1e-3  # the bent molecule is not at DIEP's minimum
    check_member(member, water, checks=("force_gradient",))
