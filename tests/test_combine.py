"""hetens.core.combine: the ensemble's arithmetic as pure functions (hand cases and hypothesis properties).

No model runs here: member predictions are arrays. The calculator and the
rescorer call these functions; their own tests check that they do.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hetens.core.combine import ENSEMBLE_RESULT_KEYS, combine_predictions, predictor_mask, stack_member_outputs
from hetens.core.uncertainty import atomic_uncertainty, compute_uncertainty, energy_spread, member_max_deviation

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=64)
MEMBER_ARRAYS = ("member_energies", "member_forces", "member_stresses", "member_max_deviation")


@st.composite
def ensembles(draw, min_members: int = 1):
    """(energies (M,), forces (M, N, 3), stresses (M, 6), raw weights (M,))."""
    m = draw(st.integers(min_members, 6))
    n = draw(st.integers(1, 6))
    return (
        draw(arrays(np.float64, (m,), elements=finite)),
        draw(arrays(np.float64, (m, n, 3), elements=finite)),
        draw(arrays(np.float64, (m, 6), elements=st.floats(-1, 1, width=64))),
        draw(arrays(np.float64, (m,), elements=st.floats(0.01, 10.0, width=64))),
    )


def _mask(draw, m: int, at_least_one: bool = True) -> np.ndarray:
    mask = np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m)), dtype=bool)
    if at_least_one and not mask.any():
        mask[draw(st.integers(0, m - 1))] = True
    return mask


# ----------------------------------------------------------------- by hand


def test_hand_computed_ensemble():
    # Three members, two atoms; only atom 0 disagrees (F_x = 3, 0, 0: Fbar = 1, d = 2, 1, 1).
    forces = np.zeros((3, 2, 3))
    forces[0, 0, 0] = 3.0
    energies = np.array([-10.0, -11.0, -12.0])
    stresses = np.arange(18.0).reshape(3, 6)
    results = combine_predictions(energies, forces, [2.0, 1.0, 1.0], stresses)
    w = np.array([0.5, 0.25, 0.25])
    assert results["energy"] == results["free_energy"] == pytest.approx(-10.75, rel=1e-15)
    np.testing.assert_allclose(results["forces"], [[1.5, 0, 0], [0, 0, 0]], rtol=1e-15)
    np.testing.assert_allclose(results["stress"], w @ stresses, rtol=1e-15)
    assert results["uncertainty"] == pytest.approx(np.sqrt(0.5 * 4 + 0.25 + 0.25), rel=1e-15)
    np.testing.assert_allclose(results["atomic_uncertainty"], [np.sqrt(2.5), 0.0], rtol=1e-15)
    np.testing.assert_allclose(results["member_max_deviation"], [2.0, 1.0, 1.0], rtol=1e-15)
    assert results["most_deviating_member"] == 0
    np.testing.assert_array_equal(results["member_weights"], w)
    np.testing.assert_array_equal(results["predictor_weights"], w)
    # Spread of (-10, -11, -12) about -10.75 with w, per atom (2 atoms).
    spread = np.sqrt(w @ (energies + 10.75) ** 2) / 2
    assert results["energy_std"] == pytest.approx(spread, rel=1e-12)
    assert set(results) <= set(ENSEMBLE_RESULT_KEYS) | {"energy", "free_energy", "forces", "stress"}


def test_a_dropped_member_by_hand():
    forces = np.zeros((3, 1, 3))
    forces[:, 0, 0] = [1.0, np.nan, -1.0]  # member 1 failed: its row is not read
    results = combine_predictions(
        [1.0, np.nan, 3.0], forces, [1.0, 5.0, 3.0], present=np.array([True, False, True])
    )
    assert results["energy"] == pytest.approx(0.25 * 1 + 0.75 * 3)
    np.testing.assert_array_equal(results["member_weights"], [0.25, 0.0, 0.75])
    np.testing.assert_array_equal(results["predictor_weights"], [0.25, 0.0, 0.75])
    assert results["uncertainty"] == pytest.approx(1.0)  # Fbar = 0, d = 1 for both survivors
    assert np.isnan(results["member_energies"][1]) and np.isnan(results["member_max_deviation"][1])
    assert np.isnan(results["member_forces"][1]).all()
    assert results["most_deviating_member"] == 2  # 0.75 * 1 > 0.25 * 1, an index into all three


def test_bad_masks_are_named():
    forces = np.zeros((2, 1, 3))
    with pytest.raises(ValueError, match=r"present must be a boolean mask with one entry per member \(M=2\)"):
        combine_predictions([0.0, 0.0], forces, present=[1, 1])
    with pytest.raises(ValueError, match=r"\(M=2\)"):
        combine_predictions([0.0, 0.0], forces, present=np.ones(3, bool))
    with pytest.raises(ValueError, match="present selects no member"):
        combine_predictions([0.0, 0.0], forces, present=np.zeros(2, bool))
    with pytest.raises(ValueError, match="no present member is a predictor"):
        combine_predictions(
            [0.0, 0.0], forces, predictors=np.array([True, False]), present=np.array([False, True])
        )
    with pytest.raises(ValueError, match=r"member_forces must have shape \(M=2, N, 3\)"):
        combine_predictions([0.0, 0.0], np.zeros((3, 1, 3)))
    with pytest.raises(ValueError, match=r"member_stresses must have shape \(M=2, 6\)"):
        combine_predictions([0.0, 0.0], forces, member_stresses=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="at least one member must be a predictor"):
        predictor_mask(np.zeros(2, bool), 2)


def test_stack_member_outputs_fills_nan_rows():
    forces = np.arange(6.0).reshape(2, 3)
    outputs = [(-1.0, forces, np.ones(6)), None, (-3.0, 2 * forces, None)]
    energies, stacked, stresses, present = stack_member_outputs(outputs, 2)
    np.testing.assert_array_equal(present, [True, False, True])
    np.testing.assert_array_equal(energies[[0, 2]], [-1.0, -3.0])
    np.testing.assert_array_equal(stacked[0], forces)
    np.testing.assert_array_equal(stacked[2], 2 * forces)
    assert stacked.shape == (3, 2, 3) and np.isnan(stacked[1]).all() and np.isnan(energies[1])
    np.testing.assert_array_equal(stresses[0], np.ones(6))
    assert np.isnan(stresses[1]).all() and np.isnan(stresses[2]).all()  # dropped; no stress given
    assert stack_member_outputs(outputs, 2, with_stress=False)[2] is None


# -------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(ensembles())
def test_weighted_means_and_u(ensemble):
    energies, forces, stresses, raw = ensemble
    results = combine_predictions(energies, forces, raw, stresses)
    w = raw / raw.sum()
    np.testing.assert_array_equal(results["member_weights"], w)
    assert results["energy"] == pytest.approx(float(np.sum(w * energies)), rel=1e-12, abs=1e-9)
    np.testing.assert_allclose(results["forces"], np.einsum("m,mnk->nk", w, forces), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(results["stress"], w @ stresses, rtol=1e-12, atol=1e-12)
    # U and its companions are the functions of hetens.core.uncertainty, bit for bit.
    assert results["uncertainty"] == compute_uncertainty(forces, raw)
    np.testing.assert_array_equal(results["atomic_uncertainty"], atomic_uncertainty(forces, w))
    np.testing.assert_array_equal(results["member_max_deviation"], member_max_deviation(forces))
    assert results["energy_std"] == energy_spread(energies, forces.shape[1], w)
    contribution = w * member_max_deviation(forces) ** 2
    assert contribution[results["most_deviating_member"]] == contribution.max()
    assert results["uncertainty"] >= results["atomic_uncertainty"].max() * (1 - 1e-12) - 1e-12
    np.testing.assert_array_equal(results["member_forces"], forces)
    np.testing.assert_array_equal(results["member_energies"], energies)


@settings(max_examples=60, deadline=None)
@given(ensembles(), st.data())
def test_absent_members_enter_nothing(ensemble, data):
    energies, forces, stresses, raw = ensemble
    m = energies.size
    present = _mask(data.draw, m)
    kept = np.flatnonzero(present)
    # Whatever the absent rows hold (NaN after a failure), they are not read.
    poisoned = [a.copy() for a in (energies, forces, stresses, raw)]
    for a in poisoned[:3]:
        a[~present] = np.nan
    poisoned[3][~present] = -1.0  # not even a valid weight
    got = combine_predictions(*poisoned[:2], poisoned[3], poisoned[2], present=present)
    alone = combine_predictions(energies[kept], forces[kept], raw[kept], stresses[kept])
    for key in ("energy", "free_energy", "forces", "stress", "uncertainty", "atomic_uncertainty", "energy_std"):
        np.testing.assert_array_equal(got[key], alone[key], err_msg=key)
    for key in MEMBER_ARRAYS:
        assert got[key].shape[0] == m
        assert np.isnan(got[key][~present]).all(), key
        np.testing.assert_array_equal(got[key][kept], alone[key], err_msg=key)
    for key in ("member_weights", "predictor_weights"):
        assert (got[key][~present] == 0).all()
        np.testing.assert_array_equal(got[key][kept], alone[key], err_msg=key)
    assert got["member_weights"].sum() == pytest.approx(1.0)
    assert got["most_deviating_member"] == kept[alone["most_deviating_member"]]
    # An all-True mask is no mask.
    everyone = combine_predictions(energies, forces, raw, stresses, present=np.ones(m, bool))
    plain = combine_predictions(energies, forces, raw, stresses)
    for key, value in plain.items():
        np.testing.assert_array_equal(everyone[key], value, err_msg=key)


@settings(max_examples=60, deadline=None)
@given(ensembles(), st.data())
def test_permuting_members_permutes_the_outputs(ensemble, data):
    energies, forces, stresses, raw = ensemble
    order = np.array(data.draw(st.permutations(range(energies.size))))
    base = combine_predictions(energies, forces, raw, stresses)
    permuted = combine_predictions(energies[order], forces[order], raw[order], stresses[order])
    for key in ("energy", "forces", "stress", "uncertainty", "atomic_uncertainty", "energy_std"):
        np.testing.assert_allclose(permuted[key], base[key], rtol=1e-9, atol=1e-9, err_msg=key)
    for key in ("member_energies", "member_forces", "member_stresses"):
        np.testing.assert_array_equal(permuted[key], base[key][order], err_msg=key)
    for key in ("member_weights", "member_max_deviation"):  # sums in another order: within rounding
        np.testing.assert_allclose(permuted[key], base[key][order], rtol=1e-12, atol=1e-12, err_msg=key)
    # The most deviating member is the same one (or one tied with it).
    w = raw / raw.sum()
    contribution = w * base["member_max_deviation"] ** 2
    assert contribution[order[permuted["most_deviating_member"]]] == pytest.approx(
        contribution.max(), rel=1e-9, abs=1e-12
    )


@settings(max_examples=60, deadline=None)
@given(ensembles(min_members=2), st.data())
def test_witnesses_enter_u_only(ensemble, data):
    energies, forces, stresses, raw = ensemble
    m = energies.size
    predictors = _mask(data.draw, m)
    p = np.flatnonzero(predictors)
    results = combine_predictions(energies, forces, raw, stresses, predictors=predictors)
    pw = raw[p] / raw[p].sum()
    expected_pw = np.zeros(m)
    expected_pw[p] = pw
    np.testing.assert_array_equal(results["predictor_weights"], expected_pw)
    np.testing.assert_array_equal(results["member_weights"], raw / raw.sum())
    # Predictions: the predictors alone, with their own normalised weights.
    alone = combine_predictions(energies[p], forces[p], raw[p], stresses[p])
    for key in ("energy", "forces", "stress", "energy_std"):
        np.testing.assert_array_equal(results[key], alone[key], err_msg=key)
    # U: every member, with the U weights.
    assert results["uncertainty"] == compute_uncertainty(forces, raw)
    np.testing.assert_array_equal(results["member_max_deviation"], member_max_deviation(forces))


@settings(max_examples=60, deadline=None)
@given(ensembles(min_members=2), st.data())
def test_dropping_with_witnesses(ensemble, data):
    energies, forces, stresses, raw = ensemble
    m = energies.size
    predictors = _mask(data.draw, m)
    present = _mask(data.draw, m)
    present[data.draw(st.sampled_from(np.flatnonzero(predictors).tolist()))] = True  # a predictor survives
    kept = np.flatnonzero(present)
    got = combine_predictions(energies, forces, raw, stresses, predictors=predictors, present=present)
    alone = combine_predictions(
        energies[kept], forces[kept], raw[kept], stresses[kept], predictors=predictors[kept]
    )
    for key in ("energy", "forces", "stress", "uncertainty", "atomic_uncertainty", "energy_std"):
        np.testing.assert_array_equal(got[key], alone[key], err_msg=key)
    for key in ("member_weights", "predictor_weights"):
        np.testing.assert_array_equal(got[key][kept], alone[key], err_msg=key)
        assert (got[key][~present] == 0).all()
    assert (got["predictor_weights"][~predictors] == 0).all()
    assert got["predictor_weights"].sum() == pytest.approx(1.0)
    assert got["most_deviating_member"] == kept[alone["most_deviating_member"]]
