"""The ensemble calculator on the real shipped SevenNet and CHGNet models."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT

import hetens
from hetens import HeterogeneousEnsembleCalculator, Member
from hetens.errors import MixedReferenceError

from conftest import tungsten_cell


@pytest.fixture(scope="module")
def pair(sevenn_member, chgnet_member):
    return HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], weights=[0.7, 0.3])


def member_outputs(member, atoms):
    atoms = atoms.copy()
    atoms.calc = member.calculator
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


def test_results_are_weighted_means_of_the_members(pair, sevenn_member, chgnet_member, w16):
    w16.calc = pair
    energy = w16.get_potential_energy()
    r = pair.results
    # The ensemble's own arithmetic, exactly.
    e, f, s = r["member_energies"], r["member_forces"], r["member_stresses"]
    assert energy == pytest.approx(0.7 * e[0] + 0.3 * e[1], rel=1e-14)
    assert w16.get_forces() == pytest.approx(0.7 * f[0] + 0.3 * f[1], rel=1e-14, abs=1e-14)
    assert w16.get_stress() == pytest.approx(0.7 * s[0] + 0.3 * s[1], rel=1e-14, abs=1e-14)
    assert r["free_energy"] == r["energy"]
    # Member outputs are what each model gives on its own (float32 models: 1e-6 relative).
    e1, f1, s1 = member_outputs(sevenn_member, w16)
    e2, f2, s2 = member_outputs(chgnet_member, w16)
    assert e == pytest.approx([e1, e2], rel=1e-6)
    assert f == pytest.approx(np.stack([f1, f2]), abs=1e-4)
    assert s == pytest.approx(np.stack([s1, s2]), abs=1e-6)
    assert f.shape == (2, 16, 3)
    assert r["atomic_uncertainty"].shape == (16,)
    assert r["member_max_deviation"].shape == (2,)
    assert s.shape == (2, 6)
    # U follows the paper: plain mean reference, weighted sum of squared worst deviations.
    assert r["uncertainty"] == pytest.approx(hetens.compute_uncertainty(f, [0.7, 0.3]), rel=1e-12)
    assert pair.get_uncertainty() == r["uncertainty"]
    spread = np.sqrt(0.7 * 0.3) * abs(e[0] - e[1]) / 16
    assert r["energy_std"] == pytest.approx(spread, rel=1e-9)
    assert pair.member_names == ["sevenn:7net-0", "chgnet:0.3.0"]
    assert pair.weights == pytest.approx([0.7, 0.3])


def test_identical_members_give_zero_u(sevenn_member, w16):
    calc = HeterogeneousEnsembleCalculator([sevenn_member, sevenn_member, sevenn_member])
    w16.calc = calc
    assert calc.get_uncertainty(w16) == 0.0
    assert np.all(calc.results["atomic_uncertainty"] == 0.0)
    assert calc.results["energy_std"] == 0.0
    assert calc.member_names == ["sevenn:7net-0", "sevenn:7net-0#2", "sevenn:7net-0#3"]
    assert sevenn_member.name == "sevenn:7net-0"  # the caller's member is not renamed


def test_u_invariant_under_member_permutation(sevenn_member, chgnet_member, w16):
    a = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], weights=[1, 2])
    b = HeterogeneousEnsembleCalculator([chgnet_member, sevenn_member], weights=[2, 1])
    ua = a.get_uncertainty(w16)
    ea = a.results["energy"]
    ub = b.get_uncertainty(w16)
    assert ub == pytest.approx(ua, rel=1e-12)
    assert b.results["energy"] == pytest.approx(ea, rel=1e-12)


def test_u_invariant_under_rigid_rotation_and_forces_rotate(pair, w16):
    w16.calc = pair
    u = pair.get_uncertainty(w16)
    forces = w16.get_forces()
    rotated = w16.copy()
    rotated.rotate(37.0, (1.0, 2.0, 0.5), rotate_cell=True)
    matrix = np.linalg.solve(w16.cell.array, rotated.cell.array)  # rows: r' = r @ matrix
    rotated.calc = pair
    assert pair.get_uncertainty(rotated) == pytest.approx(u, rel=2e-3, abs=1e-4)
    assert rotated.get_forces() == pytest.approx(forces @ matrix, abs=2e-4)
    assert rotated.get_potential_energy() == pytest.approx(
        w16.get_potential_energy(), abs=1e-3
    )


def test_forces_are_the_gradient_of_the_energy(pair):
    atoms = tungsten_cell(1, rattle=0.1, seed=3)  # 2 atoms: float32 energies are precise enough
    atoms.calc = pair
    forces = atoms.get_forces()
    h = 5e-3
    numeric = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            for sign in (1, -1):
                displaced = atoms.copy()
                displaced.positions[i, k] += sign * h
                displaced.calc = pair
                numeric[i, k] -= sign * displaced.get_potential_energy() / (2 * h)
    assert forces == pytest.approx(numeric, abs=2e-2)


def test_results_recompute_after_any_change(pair, w16):
    w16.calc = pair
    u0, e0 = pair.get_uncertainty(w16), w16.get_potential_energy()
    w16.positions[0] += [0.05, 0.0, 0.0]
    assert w16.get_potential_energy() != e0
    e1 = w16.get_potential_energy()
    w16.set_cell(w16.cell * 1.01, scale_atoms=True)
    assert w16.get_potential_energy() != e1
    e2 = w16.get_potential_energy()
    w16.numbers[3] = 42  # one Mo
    assert w16.get_potential_energy() != e2
    assert pair.get_uncertainty(w16) != u0


def test_results_recompute_when_info_changes_but_not_for_hetens_keys():
    atoms = bulk("Cu", cubic=True)
    calls = []

    class CountingEMT(EMT):
        def calculate(self, *args, **kwargs):
            calls.append(1)
            super().calculate(*args, **kwargs)

    calc = HeterogeneousEnsembleCalculator([CountingEMT(), EMT()])
    atoms.calc = calc
    atoms.get_potential_energy()
    atoms.get_forces()
    # The structure, and once the reference crystal of Cu: EMT declares no level of theory,
    # so its energy reference is judged on the first structure holding each element.
    assert len(calls) == 2 and calc.reference_check.evaluations == 2
    atoms.info["hetens_U"] = 1.0  # our own annotation: no recomputation
    atoms.get_potential_energy()
    assert len(calls) == 2
    atoms.info["charge"] = 1  # a member could read this
    atoms.get_potential_energy()
    assert len(calls) == 3 and calc.reference_check.evaluations == 2  # the reference is cached


def test_stress_absent_without_a_periodic_cell_and_other_properties_still_work():
    atoms = molecule("H2O")
    calc = HeterogeneousEnsembleCalculator([EMT(), EMT()])
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    assert "stress" not in calc.results
    with pytest.raises(PropertyNotImplementedError, match="3D periodic"):
        atoms.get_stress()


def test_bad_weights_through_the_calculator(sevenn_member, chgnet_member):
    members = [sevenn_member, chgnet_member]
    with pytest.raises(ValueError, match="3 values but the ensemble has 2"):
        HeterogeneousEnsembleCalculator(members, weights=[1, 1, 1])
    with pytest.raises(ValueError, match="member 1 has -1"):
        HeterogeneousEnsembleCalculator(members, weights=[1, -1])
    with pytest.raises(ValueError, match="all zero"):
        HeterogeneousEnsembleCalculator(members, weights=[0, 0])
    with pytest.raises(ValueError, match="member 0 has nan"):
        HeterogeneousEnsembleCalculator(members, weights=[float("nan"), 1])
    with pytest.raises(ValueError, match=r"missing \['chgnet:0.3.0'\]"):
        HeterogeneousEnsembleCalculator(members, weights={"sevenn:7net-0": 1.0})
    calc = HeterogeneousEnsembleCalculator(members, force_rmse=[0.2, 0.6])
    assert calc.weights == pytest.approx([0.75, 0.25])
    calc = HeterogeneousEnsembleCalculator(members, weights={"chgnet:0.3.0": 1, "sevenn:7net-0": 3})
    assert calc.weights == pytest.approx([0.75, 0.25])
    with pytest.raises(ValueError, match="empty"):
        HeterogeneousEnsembleCalculator([])


def test_mixed_levels_of_theory_are_refused_unless_allowed(chgnet_member, w16):
    r2scan = hetens.load_member("chgnet:r2scan", device="cpu")
    assert r2scan.level_of_theory == "r2SCAN"
    with pytest.raises(MixedReferenceError, match=r"chgnet:0.3.0 \(PBE\+U\), chgnet:r2scan \(r2SCAN\)"):
        HeterogeneousEnsembleCalculator([chgnet_member, r2scan])
    calc = HeterogeneousEnsembleCalculator([chgnet_member, r2scan], allow_mixed_reference=True)
    w16.calc = calc
    assert np.isfinite(w16.get_potential_energy())
    # Members without a declared level are not compared.
    HeterogeneousEnsembleCalculator([chgnet_member, Member.wrap(EMT())])


def test_members_can_be_specs_calculators_and_members(chgnet_member):
    calc = HeterogeneousEnsembleCalculator(["sevenn:7net-0", EMT(), chgnet_member], device="cpu")
    assert calc.member_names == ["sevenn:7net-0", "EMT", "chgnet:0.3.0"]
    assert calc.members[0].family == "sevenn"
    assert calc.members[0].level_of_theory == "PBE+U"
    assert calc.members[0].device == "cpu"
    assert calc.members[1].level_of_theory == "unknown"
    prov = calc.provenance()
    assert prov["members"][0]["versions"]["sevenn"] == "0.13.0"
    assert prov["weights"] == pytest.approx([1 / 3] * 3)


def test_default_ensemble_runs_offline(default_calc):
    """Two PBE+U predictors and the DIEP witness (docs/default-ensemble.md), all shipped in wheels."""
    assert default_calc.member_names == ["sevenn:7net-mf-0@PBE", "chgnet:0.3.0", "diep:diep_fold1"]
    assert default_calc.roles == ["predictor", "predictor", "witness"]
    atoms = tungsten_cell(3)  # the FIELD_NOTES reference cell: 54 atoms, rattle 0.05, seed 42
    atoms.calc = default_calc
    atoms.get_forces()
    # FIELD_NOTES reference energies, eV (DIEP is r2SCAN: about 39 eV/atom lower, never averaged).
    expected = [-689.97, -687.76, -2769.37]
    assert default_calc.results["member_energies"] == pytest.approx(expected, abs=0.05)
    assert atoms.get_potential_energy() == pytest.approx(np.mean(expected[:2]), abs=0.05)
    assert list(default_calc.results["predictor_weights"]) == [0.5, 0.5, 0.0]
    assert 0.0 < default_calc.results["uncertainty"] < 3.0
    assert default_calc.results["stress"].shape == (6,)
