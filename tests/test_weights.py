"""Weights: normalisation, the paper's inverse-RMSE weights, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hetens.core.weights import inverse_rmse_weights, normalise_weights, read_weights_file, resolve_weights

# The paper's 11 members (Liu et al. 2026; docs/method.md): force RMSE -> published normalised weight.
PAPER = {
    "esen-omat": (0.23719, 0.1218),
    "eqV2-31M-omat": (0.243286, 0.1188),
    "eqV2-86M-omat": (0.24351, 0.1187),
    "7net-omat-2": (0.253712, 0.1139),
    "7net-omat": (0.2643, 0.1093),
    "7net": (0.27751, 0.1041),
    "MACE-omat": (0.350226, 0.0825),
    "orb-omat-20": (0.48766, 0.0593),
    "orb-omat-c-inf-conf": (0.49757, 0.0581),
    "orb-omat-d-20": (0.50635, 0.0571),
    "orb-omat-d-inf": (0.5111, 0.0565),
}


def test_inverse_rmse_reproduces_the_papers_weights():
    rmse = [r for r, _ in PAPER.values()]
    published = [w for _, w in PAPER.values()]
    assert inverse_rmse_weights(rmse) == pytest.approx(published, abs=6e-5)


def test_uniform_and_explicit():
    assert normalise_weights(None, 4) == pytest.approx([0.25] * 4)
    assert normalise_weights([1, 3], 2) == pytest.approx([0.25, 0.75])
    assert resolve_weights(2, force_rmse=[0.1, 0.3]) == pytest.approx([0.75, 0.25])


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0], "1 values but the ensemble has 2"),
        ([1.0, -0.5], "member 1 has -0.5"),
        ([0.0, 0.0], "all zero"),
        ([1.0, float("nan")], "finite; member 1"),
        ([1.0, float("inf")], "finite; member 1"),
        (["a", 1.0], "must be numbers"),
    ],
)
def test_bad_weights_raise_value_error_naming_the_problem(weights, message):
    with pytest.raises(ValueError, match=message):
        normalise_weights(weights, 2)


def test_bad_force_rmse():
    with pytest.raises(ValueError, match=r"> 0 eV/A; member 0 has 0.0"):
        inverse_rmse_weights([0.0, 1.0])
    with pytest.raises(ValueError, match="3 values but the ensemble has 2"):
        resolve_weights(2, force_rmse=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="not both"):
        resolve_weights(2, weights=[1, 1], force_rmse=[1, 1])


@given(st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=20))
def test_normalised_weights_sum_to_one(values):
    w = normalise_weights(values, len(values))
    assert np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0)


def test_weights_file(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"weights": {"a": 1, "b": 3}}))
    assert read_weights_file(path) == {"a": 1.0, "b": 3.0}
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_weights_file(path)
    path.write_text(json.dumps({"weights": {"a": "x"}}))
    with pytest.raises(ValueError, match="weight of 'a'"):
        read_weights_file(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_weights_file(tmp_path / "missing.json")
