"""Large systems (issue 26): SevenNet's, DIEP's and CHGNet's activation checkpointing computes
what the whole structure's plain evaluation computes; freed memory goes back to the OS between
members."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

import hetens
from hetens.core.group_evaluation import evaluate_alone
from hetens.core.memory_guard import RELEASE_MIN_ATOMS, _glibc, release_freed_memory

pytest.importorskip("sevenn")


def tungsten(repeat: int = 2, seed: int = 0):
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def sevenn_pair():
    plain = hetens.load_member("sevenn:7net-mf-0@PBE", device="cpu")
    checkpointed = hetens.load_member("sevenn:7net-mf-0@PBE@checkpoint=on", device="cpu")
    return plain, checkpointed


def test_checkpointing_is_bit_identical_to_the_whole_evaluation(sevenn_pair) -> None:
    from hetens.families import sevenn
    from hetens.families.checkpointing import uses_checkpoint

    plain, checkpointed = sevenn_pair
    assert not uses_checkpoint(plain.calculator, 16)
    assert uses_checkpoint(checkpointed.calculator, 16)
    atoms = tungsten()
    energy, forces, stress = evaluate_alone(plain, atoms, with_stress=True, force=True)
    energy_c, forces_c, stress_c = evaluate_alone(checkpointed, atoms, with_stress=True, force=True)
    assert energy_c == energy
    np.testing.assert_array_equal(forces_c, forces)
    np.testing.assert_array_equal(stress_c, stress)
    # The group path's single pass (a shared neighbour list) checkpoints too.
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    graph = unlabeled_atoms_to_graph(atoms, checkpointed.calculator.cutoff, with_shift=False)
    energy_g, forces_g, _ = sevenn._single_pass(checkpointed.calculator, graph)
    assert energy_g == pytest.approx(energy, abs=1e-5)
    np.testing.assert_allclose(forces_g, forces, atol=1e-5)


@pytest.mark.parametrize("spec", ["diep:diep_fold1", "chgnet:0.3.0"])
def test_diep_and_chgnet_checkpointing_is_bit_identical(spec, monkeypatch) -> None:
    """Through hetens' own path (evaluate_alone: CHGNet's group core) and through the member's
    calculator (CHGNet's own predict path, create_graph=True), with deterministic kernels
    (DIEP's scatter sums otherwise vary in the 7th digit from call to call, checkpointed or not)."""
    from hetens.families import diep
    from hetens.families._common import deterministic_torch

    pytest.importorskip(spec.split(":")[0])
    # DIEP's triplet features in pieces of 100 triplets (16 atoms have ~2900): several pieces.
    monkeypatch.setattr(diep, "TRIPLETS_PER_PIECE", 100)
    plain = hetens.load_member(spec, device="cpu")
    checkpointed = hetens.load_member(f"{spec}@checkpoint=on", device="cpu")
    assert not checkpoint_on(plain, 16) and checkpoint_on(checkpointed, 16)
    atoms = tungsten()
    with deterministic_torch("cpu"):
        for evaluate in (evaluate_alone, by_calculator):
            energy, forces, stress = evaluate(plain, atoms, with_stress=True, force=True)
            energy_c, forces_c, stress_c = evaluate(checkpointed, atoms, with_stress=True, force=True)
            assert energy_c == energy
            np.testing.assert_array_equal(forces_c, forces)
            np.testing.assert_array_equal(stress_c, stress)


def checkpoint_on(member, n_atoms: int) -> bool:
    from hetens.families.checkpointing import uses_checkpoint

    return uses_checkpoint(member.calculator, n_atoms)


def by_calculator(member, atoms, with_stress: bool, force: bool):
    atoms = atoms.copy()
    atoms.calc = member.calculator
    member.calculator.reset()
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


def test_checkpoint_option() -> None:
    from hetens.families.checkpointing import checkpoint_setting

    assert checkpoint_setting({"checkpoint": "on"}, "sevenn") == 0
    assert checkpoint_setting({"checkpoint": "5000"}, "sevenn") == 5000
    assert checkpoint_setting({}, "sevenn") is None
    with pytest.raises(ValueError, match="checkpoint must be on, off or a number of atoms"):
        checkpoint_setting({"checkpoint": "sometimes"}, "sevenn")
    with pytest.raises(ValueError, match="diep member diep_fold1: unknown option"):
        hetens.load_member("diep:diep_fold1@stride=2", device="cpu")


def test_freed_memory_is_released() -> None:
    assert _glibc("malloc_trim", "c_size_t") is not None  # glibc, as on every Linux this runs on
    release_freed_memory(RELEASE_MIN_ATOMS)
    release_freed_memory(1)
