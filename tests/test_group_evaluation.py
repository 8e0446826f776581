"""Group paths: several members of one family on one structure from one prepared input.

Every group path must give what each member gives alone: bit for bit where
only the preparation is shared (SevenNet's neighbour list; CHGNet's crystal
graph with CHGNet's own backward setting), to float32 rounding where the
member's operations change (several heads of one network as one batch;
CHGNet's plain backward pass).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule

import hetens
from hetens.core.calculator import HeterogeneousEnsembleCalculator
from hetens.core.evaluation import evaluate_member
from hetens.families import chgnet as chgnet_adapter
from hetens.families import sevenn as sevenn_adapter
from hetens.families.contract import GroupEvaluation
from hetens.core.group_evaluation import evaluate_groups

# float32 models: a batch of heads and one head alone differ in summation order only, and so
# do CHGNet's plain backward pass and CHGNet's own.
ENERGY_ATOL = 2e-4  # eV
FORCE_ATOL = 1e-4  # eV/A
STRESS_ATOL = 1e-5  # eV/A^3


def _w(repeat, seed=3):
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    return atoms


def _alone(members, atoms, with_stress):
    return [evaluate_member(m, atoms, with_stress, force=True) for m in members]


def _assert_identical(group, alone, names):
    for (e, f, s), (e1, f1, s1), name in zip(group, alone, names):
        assert float(e) == e1, name
        assert np.array_equal(np.asarray(f, dtype=float), f1), name
        assert (s is None and s1 is None) or np.array_equal(np.asarray(s, dtype=float), s1), name


def _assert_float32_close(group, alone, names):
    for (e, f, s), (e1, f1, s1), name in zip(group, alone, names):
        assert float(e) == pytest.approx(e1, abs=ENERGY_ATOL), name
        np.testing.assert_allclose(f, f1, atol=FORCE_ATOL, err_msg=name)
        assert (s is None) == (s1 is None), name
        if s is not None:
            np.testing.assert_allclose(s, s1, atol=STRESS_ATOL, err_msg=name)


@pytest.fixture(scope="module")
def chgnets(chgnet_member):
    # 0.3.0 and r2scan share a 6 A / 3 A graph; 0.2.0 (5 A / 3 A) gets its own.
    return [chgnet_member, hetens.load_member("chgnet:r2scan", device="cpu"),
            hetens.load_member("chgnet:0.2.0", device="cpu")]


@pytest.fixture(scope="module")
def sevenns(default_calc, sevenn_member):
    pbe = next(m for m in default_calc.members if m.name == "sevenn:7net-mf-0@PBE")
    return [pbe, hetens.load_member("sevenn:7net-mf-0@R2SCAN", device="cpu"), sevenn_member]


def test_the_group_adapters_declare_the_capability():
    assert isinstance(chgnet_adapter, GroupEvaluation)
    assert isinstance(sevenn_adapter, GroupEvaluation)


@pytest.mark.parametrize("structure", ["crystal", "molecule"])
def test_chgnet_group_equals_each_member_alone(chgnets, structure, monkeypatch):
    """Energies bit for bit, forces and stress to float32 rounding (the plain backward
    pass); with CHGNet's own backward setting, everything bit for bit."""
    atoms = _w(2) if structure == "crystal" else molecule("H2O")
    with_stress = structure == "crystal"
    calculators = [m.calculator for m in chgnets]
    names = [m.name for m in chgnets]
    alone = _alone(chgnets, atoms, with_stress)
    group = chgnet_adapter.evaluate_group(calculators, atoms, with_stress)
    _assert_float32_close(group, alone, names)
    assert [float(e) for e, _, _ in group] == [e1 for e1, _, _ in alone]
    if not with_stress:
        assert all(s is None for _, _, s in group)
    core = chgnet_adapter.energy_forces_stress
    monkeypatch.setattr(chgnet_adapter, "energy_forces_stress",
                        lambda model, graphs: core(model, graphs, exact=True))
    _assert_identical(chgnet_adapter.evaluate_group(calculators, atoms, with_stress), alone, names)


def test_chgnet_group_shares_one_graph_per_converter_setting(chgnets, monkeypatch):
    calls = []
    build = chgnet_adapter.crystal_graph
    monkeypatch.setattr(chgnet_adapter, "crystal_graph",
                        lambda converter, structure: calls.append(converter) or build(converter, structure))
    chgnet_adapter.evaluate_group([m.calculator for m in chgnets], _w(1), True)
    assert len(calls) == 2  # 6 A / 3 A once (0.3.0, r2scan), 5 A / 3 A once (0.2.0)


def test_chgnet_batch_core_equals_the_calculator_frame_by_frame(chgnet_member):
    """One structure through the batch path is CHGNet's calculator to float32 rounding."""
    from ase.stress import full_3x3_to_voigt_6_stress

    atoms = _w(2, seed=5)
    ((e, f, s),) = chgnet_adapter.evaluate_batch(chgnet_member.calculator, [atoms])
    alone = evaluate_member(chgnet_member, atoms, True, force=True)
    _assert_float32_close([(e, f, full_3x3_to_voigt_6_stress(s))], [alone], [chgnet_member.name])
    assert float(e) == alone[0]


def test_sevenn_heads_of_one_network_run_as_one_batch(sevenns):
    """7net-mf-0@PBE and @R2SCAN (one network) in one pass on a small cell, 7net-0 alone on the
    shared neighbour list: heads to float32 rounding, 7net-0 bit for bit."""
    atoms = _w(1)
    assert sevenn_adapter.heads_in_one_pass("cpu", len(atoms), 2)
    group = sevenn_adapter.evaluate_group([m.calculator for m in sevenns], atoms, True)
    alone = _alone(sevenns, atoms, True)
    _assert_float32_close(group, alone, [m.name for m in sevenns])
    _assert_identical(group[2:], alone[2:], [sevenns[2].name])
    assert abs(group[0][0] - group[1][0]) > 10 * len(atoms)  # the heads really differ (PBE vs r2SCAN)


def test_sevenn_shared_neighbour_list_is_bit_identical(sevenns, monkeypatch):
    monkeypatch.setattr(sevenn_adapter, "CPU_HEADS_BATCH_ATOMS", 0)  # one pass per head
    atoms = _w(2)
    group = sevenn_adapter.evaluate_group([m.calculator for m in sevenns], atoms, False)
    _assert_identical(group, _alone(sevenns, atoms, False), [m.name for m in sevenns])


def test_sevenn_single_member_has_nothing_to_share(sevenn_member):
    assert sevenn_adapter.evaluate_group([sevenn_member.calculator], _w(1), True) is None


@pytest.fixture(scope="module")
def mixed(chgnets, sevenns):
    """Predictors of one level, the other heads and CHGNet models as witnesses."""
    return HeterogeneousEnsembleCalculator(
        [sevenns[0], chgnets[0]], witnesses=[sevenns[1], chgnets[1], chgnets[2]]
    )


def test_ensemble_with_group_paths_equals_members_alone(mixed):
    atoms = _w(2, seed=11)
    atoms.calc = mixed
    forces = atoms.get_forces()
    member_forces = mixed.results["member_forces"]
    in_ensemble = list(zip(mixed.results["member_energies"], member_forces, mixed.results["member_stresses"]))
    _assert_float32_close(in_ensemble, _alone(mixed.members, atoms, True), [m.name for m in mixed.members])
    assert np.isfinite(forces).all()


def test_group_results_fill_the_member_caches(mixed):
    atoms = _w(1, seed=12)
    done = evaluate_groups(mixed.members, atoms, True)
    assert len(done) == 5
    for member in mixed.members:
        assert not member.calculator.calculation_required(atoms, ["energy", "forces", "stress"])
        assert member.calculator.results["energy"] == done[id(member)][0]
    # Valid caches are not recomputed.
    assert evaluate_groups(mixed.members, atoms, True) == {}


def test_a_failing_group_path_falls_back_to_one_by_one(mixed, monkeypatch):
    def broken(calculators, atoms, with_stress):
        raise RuntimeError("group path broke")

    monkeypatch.setattr(chgnet_adapter, "evaluate_group", broken)
    atoms = _w(1, seed=13)
    done = evaluate_groups(mixed.members, atoms, True, force=True)
    assert {m.family for m in mixed.members if id(m) in done} == {"sevenn"}
    atoms.calc = mixed
    assert np.isfinite(atoms.get_forces()).all()
