"""hetens.core.frames.annotate: the ensemble's results on a copy of the frame, and through an extxyz file.

The results are those of :func:`hetens.core.combine.combine_predictions` on
arrays, or of an ensemble of ASE's own EMT calculators wrapped as members
(``Member.wrap``, the public way to adopt any ASE calculator); no model
package is loaded.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write

import hetens
from hetens import HeterogeneousEnsembleCalculator
from hetens.core.combine import combine_predictions
from hetens.core.frames import annotate
from hetens.core.member import Member

NAMES = ["m0", "m1", "m2"]


def _structure():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    return atoms


def _results(atoms, **kwargs):
    rng = np.random.default_rng(0)
    forces = rng.normal(size=(3, len(atoms), 3))
    return combine_predictions([-1.0, -1.1, -1.2], forces, [0.5, 0.3, 0.2], rng.normal(size=(3, 6)), **kwargs)


def test_annotate_copies_the_results_and_leaves_the_frame_alone(tmp_path):
    atoms = _structure()
    atoms.info["hetens_U"] = 99.0  # a stale key from an earlier annotation
    atoms.info["keep"] = "me"
    before = atoms.copy()
    results = _results(atoms)
    frame = annotate(atoms, results, NAMES, results["member_weights"], hetens_step=12)
    assert frame is not atoms and atoms == before and atoms.info["hetens_U"] == 99.0 and atoms.calc is None
    info = frame.info
    assert info["hetens_U"] == results["uncertainty"]
    assert info["hetens_max_u"] == results["atomic_uncertainty"].max()
    assert info["hetens_energy_std"] == results["energy_std"]
    assert info["hetens_most_deviating"] == NAMES[results["most_deviating_member"]]
    assert info["hetens_members"] == "m0,m1,m2"
    assert info["hetens_version"] == hetens.__version__
    assert info["hetens_step"] == 12 and info["keep"] == "me"
    assert "hetens_dropped" not in info and "hetens_roles" not in info
    np.testing.assert_array_equal(info["hetens_weights"], [0.5, 0.3, 0.2])
    np.testing.assert_array_equal(frame.arrays["hetens_u"], results["atomic_uncertainty"])
    assert frame.get_potential_energy() == results["energy"]
    np.testing.assert_array_equal(frame.get_forces(), results["forces"])
    np.testing.assert_array_equal(frame.get_stress(), results["stress"])

    # Through a file: ASE keeps energy/forces/stress, the hetens_ keys survive in info/arrays.
    path = tmp_path / "annotated.extxyz"
    write(path, frame)
    back = read(path)
    assert back.info["hetens_U"] == pytest.approx(results["uncertainty"], rel=1e-12)
    assert back.info["hetens_members"] == "m0,m1,m2"
    np.testing.assert_allclose(back.info["hetens_member_energies"], [-1.0, -1.1, -1.2])
    np.testing.assert_allclose(back.arrays["hetens_u"], results["atomic_uncertainty"], atol=1e-8)
    np.testing.assert_allclose(back.get_forces(), results["forces"], atol=1e-8)
    assert back.get_potential_energy() == pytest.approx(results["energy"], rel=1e-12)

    # Re-annotating an annotated frame replaces the keys (and never raises).
    again = annotate(frame, _results(atoms), NAMES, [1 / 3] * 3)
    assert again.info["hetens_U"] == results["uncertainty"] and "hetens_step" not in again.info


def test_drops_and_witnesses_are_written():
    atoms = _structure()
    present = np.array([True, False, True])
    results = _results(atoms, predictors=np.array([True, True, False]), present=present)
    results["dropped_members"] = {"m1": "failed"}
    results["member_roles"] = ["predictor", "predictor", "witness"]
    frame = annotate(atoms, results, NAMES, results["member_weights"])
    assert frame.info["hetens_dropped"] == "m1"
    assert frame.info["hetens_roles"] == "predictor,predictor,witness"
    np.testing.assert_array_equal(frame.info["hetens_predictor_weights"], [1.0, 0.0, 0.0])
    assert frame.info["hetens_weights"][1] == 0.0
    assert np.isnan(frame.info["hetens_member_energies"][1])
    assert frame.info["hetens_most_deviating"] in ("m0", "m2")


def test_annotate_reads_the_attached_ensemble():
    members = [Member.wrap(EMT(), name=f"emt{k}") for k in range(2)]
    calc = HeterogeneousEnsembleCalculator(members, [0.25, 0.75])
    atoms = _structure()
    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # levels of theory are "unknown" for wrapped calculators
        frame = annotate(atoms)  # computes the results first
    assert frame.info["hetens_members"] == "emt0,emt1"
    assert frame.info["hetens_U"] == calc.results["uncertainty"] == 0.0  # two identical members
    np.testing.assert_array_equal(frame.info["hetens_weights"], [0.25, 0.75])
    alone = atoms.copy()
    alone.calc = EMT()
    np.testing.assert_allclose(frame.get_forces(), alone.get_forces(), rtol=1e-12, atol=1e-12)
    assert frame.get_potential_energy() == pytest.approx(alone.get_potential_energy(), rel=1e-12)


def test_wrong_arguments_are_named():
    atoms = _structure()
    results = _results(atoms)
    with pytest.raises(TypeError, match="give member_names and weights too"):
        annotate(atoms, results)
    with pytest.raises(TypeError, match="give results with member_names and weights, or none of them"):
        annotate(atoms, None, NAMES, [1, 1, 1])
    with pytest.raises(ValueError, match="atoms has no calculator"):
        annotate(atoms)
    atoms.calc = EMT()
    with pytest.raises(ValueError, match="atoms has a EMT"):
        annotate(atoms)
