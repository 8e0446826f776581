"""The U math: hand computations and properties (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import hetens
from hetens.core.uncertainty import (
    atomic_uncertainty,
    compute_uncertainty,
    energy_spread,
    max_force_error,
    member_max_deviation,
    most_deviating_member,
    reference_forces,
    uncertainty_from_deviations,
    weighted_mean,
)


def test_u_matches_hand_computation():
    # Two members, two atoms. Member 0 pushes atom 1 by +3 along x, member 1 by -3:
    # Fbar = 0 everywhere, d = [3, 3] (atom 1), atom 0 agrees exactly.
    forces = np.zeros((2, 2, 3))
    forces[0, 1, 0] = 3.0
    forces[1, 1, 0] = -3.0
    assert member_max_deviation(forces) == pytest.approx([3.0, 3.0])
    assert compute_uncertainty(forces) == pytest.approx(3.0)
    assert atomic_uncertainty(forces) == pytest.approx([0.0, 3.0])


def test_u_weighted_hand_computation():
    # Three members, one atom: forces 0, 0, 3 (x). Fbar = 1 (plain mean, not weighted).
    # d = [1, 1, 2]; with w = [0.5, 0.25, 0.25]: U^2 = 0.5 + 0.25 + 0.25*4 = 1.75.
    forces = np.zeros((3, 1, 3))
    forces[2, 0, 0] = 3.0
    w = [2.0, 1.0, 1.0]
    assert reference_forces(forces)[0] == pytest.approx([1.0, 0.0, 0.0])
    assert member_max_deviation(forces) == pytest.approx([1.0, 1.0, 2.0])
    assert compute_uncertainty(forces, w) == pytest.approx(np.sqrt(1.75))
    assert most_deviating_member(forces, w) == 2
    # Per-atom u uses the same plain-mean reference and the same weights.
    assert atomic_uncertainty(forces, w) == pytest.approx([np.sqrt(1.75)])


def test_u_takes_the_worst_atom_per_member():
    # Member 0 deviates by 1 on atom 0 and 2 on atom 1: its d is 2, not an average.
    forces = np.zeros((2, 2, 3))
    forces[0, 0, 1] = 2.0  # deviation 1 from mean 1
    forces[0, 1, 2] = 4.0  # deviation 2 from mean 2
    d = member_max_deviation(forces)
    assert d == pytest.approx([2.0, 2.0])
    # The per-atom u never exceeds U.
    assert atomic_uncertainty(forces).max() <= compute_uncertainty(forces) + 1e-12


def test_energy_spread_per_atom():
    # Energies 0 and 2 eV over 4 atoms, uniform weights: std 1 eV -> 0.25 eV/atom.
    assert energy_spread([0.0, 2.0], 4) == pytest.approx(0.25)
    # Weighted: w = [3, 1] -> mean 0.5, var = 0.75*0.25 + 0.25*2.25 = 0.75.
    assert energy_spread([0.0, 2.0], 1, [3.0, 1.0]) == pytest.approx(np.sqrt(0.75))


def test_max_force_error_and_weighted_mean():
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    b[2] = [3.0, 4.0, 0.0]
    assert max_force_error(a, b) == pytest.approx(5.0)
    assert weighted_mean(np.array([1.0, 3.0]), [1.0, 3.0]) == pytest.approx(2.5)


def test_batch_axis_matches_loop(rng):
    forces = rng.normal(size=(7, 4, 5, 3))
    w = rng.uniform(0.1, 1.0, size=4)
    batched = compute_uncertainty(forces, w)
    assert batched.shape == (7,)
    assert batched == pytest.approx([compute_uncertainty(f, w) for f in forces])
    assert atomic_uncertainty(forces, w).shape == (7, 5)
    assert most_deviating_member(forces, w).shape == (7,)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(M, N, 3\)"):
        compute_uncertainty(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no members"):
        compute_uncertainty(np.zeros((0, 3, 3)))
    with pytest.raises(ValueError, match="2 values but the ensemble has 3"):
        compute_uncertainty(np.zeros((3, 2, 3)), [1.0, 1.0])
    with pytest.raises(ValueError, match="n_atoms"):
        energy_spread([1.0, 2.0], 0)


def test_empty_structure_gives_zero():
    assert compute_uncertainty(np.zeros((3, 0, 3))) == 0.0


def test_top_level_u_is_the_papers_formula():
    # Three members, two atoms; only atom 0 disagrees: F = 3, 0, 0 along x, so Fbar = 1
    # and d = (2, 1, 1). U = sqrt(sum_m w_m d_m^2).
    forces = np.zeros((3, 2, 3))
    forces[0, 0, 0] = 3.0
    weights = [2.0, 1.0, 1.0]
    expected = np.sqrt(0.5 * 4 + 0.25 * 1 + 0.25 * 1)
    assert hetens.compute_uncertainty is compute_uncertainty
    assert hetens.compute_uncertainty(forces, weights) == pytest.approx(expected, rel=1e-15)
    assert hetens.compute_uncertainty(forces) == pytest.approx(np.sqrt(2.0), rel=1e-15)
    assert hetens.combine_predictions(np.zeros(3), forces, weights)["uncertainty"] == pytest.approx(
        expected, rel=1e-15
    )
    assert uncertainty_from_deviations([2.0, 1.0, 1.0], weights) == pytest.approx(expected, rel=1e-15)
    batch = uncertainty_from_deviations([[2.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert batch.shape == (2,)
    np.testing.assert_allclose(batch, [np.sqrt(2.0), 0.0], rtol=1e-15)
    with pytest.raises(ValueError, match="member axis"):
        uncertainty_from_deviations(2.0)
    with pytest.raises(ValueError, match="2 values but the ensemble has 3"):
        uncertainty_from_deviations([2.0, 1.0, 1.0], [1.0, 1.0])


# --- properties -------------------------------------------------------------

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=64)
member_forces = st.tuples(st.integers(1, 6), st.integers(1, 8)).flatmap(
    lambda mn: arrays(np.float64, (mn[0], mn[1], 3), elements=finite)
)


def weights_for(forces):
    return arrays(np.float64, (forces.shape[0],), elements=st.floats(0.01, 10.0))


@settings(max_examples=200, deadline=None)
@given(member_forces, st.data())
def test_u_is_non_negative_and_bounds_atomic_u(forces, data):
    w = data.draw(weights_for(forces))
    u = compute_uncertainty(forces, w)
    assert u >= 0.0
    assert atomic_uncertainty(forces, w).max() <= u * (1 + 1e-9) + 1e-12


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 8), st.just(3)), elements=finite), st.integers(1, 6))
def test_u_zero_iff_members_agree(one, n_members):
    forces = np.repeat(one[None], n_members, axis=0)
    assert compute_uncertainty(forces) == 0.0
    if n_members > 1:
        forces = forces.copy()
        forces[0, 0, 0] += 1.0
        assert compute_uncertainty(forces) > 0.0


@settings(max_examples=150, deadline=None)
@given(member_forces, st.floats(-20, 20, allow_nan=False), st.data())
def test_u_scales_with_abs_c(forces, c, data):
    w = data.draw(weights_for(forces))
    assert compute_uncertainty(c * forces, w) == pytest.approx(
        abs(c) * compute_uncertainty(forces, w), rel=1e-9, abs=1e-9
    )


@settings(max_examples=150, deadline=None)
@given(member_forces, st.data())
def test_u_invariant_under_member_and_atom_permutation(forces, data):
    w = data.draw(weights_for(forces))
    members = data.draw(st.permutations(range(forces.shape[0])))
    atoms = data.draw(st.permutations(range(forces.shape[1])))
    permuted = forces[list(members)][:, list(atoms)]
    assert compute_uncertainty(permuted, w[list(members)]) == pytest.approx(
        compute_uncertainty(forces, w), rel=1e-12, abs=1e-12
    )


@settings(max_examples=100, deadline=None)
@given(member_forces, st.data())
def test_u_invariant_under_rotation_and_common_offset(forces, data):
    from scipy.spatial.transform import Rotation

    seed = data.draw(st.integers(0, 2**31 - 1))
    rotation = Rotation.random(random_state=seed).as_matrix()
    offset = data.draw(arrays(np.float64, (forces.shape[1], 3), elements=finite))
    u = compute_uncertainty(forces)
    assert compute_uncertainty(forces @ rotation.T) == pytest.approx(u, rel=1e-9, abs=1e-9)
    # Adding the same force field to every member changes nothing.
    assert compute_uncertainty(forces + offset) == pytest.approx(u, rel=1e-9, abs=1e-7)


@settings(max_examples=100, deadline=None)
@given(member_forces, st.data())
def test_u_from_deviations_is_compute_uncertainty(forces, data):
    w = data.draw(weights_for(forces))
    d = member_max_deviation(forces)
    # The one formula: bit for bit the same number.
    assert uncertainty_from_deviations(d, w) == compute_uncertainty(forces, w)
    # Per-atom deviations give the per-atom u.
    norms = np.linalg.norm(forces - forces.mean(axis=0), axis=-1)  # (M, N)
    np.testing.assert_allclose(
        uncertainty_from_deviations(norms.T, w), atomic_uncertainty(forces, w), rtol=1e-9, atol=1e-9
    )
