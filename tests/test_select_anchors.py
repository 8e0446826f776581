"""The anchors of ``hetens select`` (pure functions): the lowest-U frames below each U_c, per
element set, and the split counts they change (hetens.rescore.select)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hetens.rescore.metrics import dft_fractions
from hetens.rescore.select import anchor_mask, split_counts

frames = st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0, 50, allow_nan=False), min_size=n, max_size=n),
    st.lists(st.integers(1, 200), min_size=n, max_size=n),
    st.lists(st.sampled_from(["W", "Mo", "WMo"]), min_size=n, max_size=n),
))
thresholds = st.lists(st.floats(0, 60, allow_nan=False), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(frames, thresholds, st.integers(0, 4))
def test_anchors_are_the_calmest_below_each_threshold_per_element_set(data, uc, n):
    u, n_atoms, elements = (np.array(x) if i < 2 else x for i, x in enumerate(data))
    mask = anchor_mask(u, elements, uc, n)
    for k, threshold in enumerate(uc):
        for group in set(elements):
            members = [f for f in range(u.size) if elements[f] == group]
            below = [f for f in members if u[f] < threshold]
            chosen = [f for f in members if mask[k, f]]
            assert len(chosen) == min(n, len(below))
            assert all(u[f] < threshold for f in chosen)
            if chosen:  # no frame below U_c left out is calmer than a chosen one
                assert max(u[chosen]) <= min([u[f] for f in below if f not in chosen], default=np.inf)
    counts = split_counts(u, n_atoms, uc, mask)
    assert np.array_equal(counts["n_anchors"], mask.sum(axis=1))
    assert np.array_equal(counts["n_frames_umlip"] + counts["n_frames_dft"], np.full(len(uc), u.size))
    plain = dft_fractions(u, n_atoms, uc)
    assert np.array_equal(counts["n_frames_dft"], plain["n_frames_dft"] + counts["n_anchors"])
    assert np.array_equal(counts["n_atoms_dft"], plain["n_atoms_dft"] + (mask * n_atoms).sum(axis=1))


@settings(max_examples=100, deadline=None)
@given(frames, thresholds)
def test_without_anchors_the_counts_are_the_papers(data, uc):
    u, n_atoms = np.array(data[0]), np.array(data[1])
    counts, plain = split_counts(u, n_atoms, uc), dft_fractions(u, n_atoms, uc)
    for key in plain:
        np.testing.assert_allclose(counts[key], plain[key])
    assert not counts["n_anchors"].any()


def test_anchors_by_hand():
    u = np.array([0.3, 0.1, 5.0, 0.2, 0.05, 0.4])
    elements = ["W", "W", "W", "W", "WMo", "WMo"]
    mask = anchor_mask(u, elements, [1.0, 0.15, 0.0], 2)
    assert mask[0].tolist() == [False, True, False, True, True, True]
    assert mask[1].tolist() == [False, True, False, False, True, False]
    assert not mask[2].any()
    with pytest.raises(ValueError, match="anchors must be a whole number"):
        from hetens.rescore.select import select_frames

        select_frames("unused.extxyz", [1.0], anchors=-1)
