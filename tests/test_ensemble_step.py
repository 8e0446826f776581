"""MD and rescoring evaluate an ensemble through one step (hetens.core.ensemble_step).

The same structures through the calculator (``atoms.calc = calc``, what MD
runs) and through ``hetens score``'s scoring step (:func:`score_batch`, frame
by frame) give the same member outputs bit for bit, the same drops and the
same errors. Two separately loaded ensembles are used, so that no member's
cache can hand one path the other's results. Real members: SevenNet 7net-0
and CHGNet 0.3.0 from their wheels; 7net-0 was not trained on Po.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import hetens
from conftest import tungsten_cell
from hetens import HeterogeneousEnsembleCalculator
from hetens.errors import InvalidStructureError, MemberDroppedWarning, UnsupportedElementError
from hetens.io.reading import FrameSource
from hetens.jobs.score_live import score_batch


def _frames():
    frames = [tungsten_cell(1, seed=seed) for seed in range(3)]
    frames[1].numbers[1] = 84  # Po: 7net-0 sits this frame out under "drop"
    return frames


def _ensemble(**policy) -> HeterogeneousEnsembleCalculator:
    sevenn = hetens.load_member("sevenn:7net-0", device="cpu")
    chgnet = hetens.load_member("chgnet:0.3.0", device="cpu")
    witness = dataclasses.replace(chgnet, name="chgnet-witness")  # CHGNet again, as a witness
    return HeterogeneousEnsembleCalculator([sevenn, chgnet], witnesses=[witness], **policy)


def _batch(frames):
    return [(FrameSource("in.extxyz", i, i), atoms.copy()) for i, atoms in enumerate(frames)]


@pytest.fixture(scope="module")
def two_ensembles():
    return _ensemble(on_member_error="drop"), _ensemble(on_member_error="drop")


def test_score_and_calculator_give_the_same_bits_and_drops(two_ensembles):
    for_md, for_score = two_ensembles
    frames = _frames()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemberDroppedWarning)
        scored = score_batch(for_score, _batch(frames), batched=False)
        by_calculator = []
        for atoms in frames:
            atoms = atoms.copy()
            atoms.calc = for_md
            atoms.get_forces()
            by_calculator.append(dict(for_md.results))
    predictions = scored.predictions
    offsets = predictions.frames.offsets
    for f, results in enumerate(by_calculator):
        forces = predictions.member_forces[offsets[f] : offsets[f + 1]].transpose(1, 0, 2)
        assert np.array_equal(predictions.member_energies[f], results["member_energies"], equal_nan=True)
        assert np.array_equal(forces, results["member_forces"], equal_nan=True)
        assert np.array_equal(predictions.member_stresses[f], results["member_stresses"], equal_nan=True)
        dropped = predictions.dropped.get(f, {})
        assert set(dropped) == set(results["dropped_members"])
        for name, why in dropped.items():  # the score path names file and frame in front
            assert why == f"in.extxyz frame {f}: {results['dropped_members'][name]}"
    assert set(predictions.dropped) == {1} and set(predictions.dropped[1]) == {"sevenn:7net-0"}
    assert np.isnan(predictions.member_energies[1, 0]) and np.isfinite(predictions.member_energies[[0, 2]]).all()
    # Combined on the batch axis (scoring) and per structure (calculator): the same U.
    np.testing.assert_allclose(scored.scores.uncertainty, [r["uncertainty"] for r in by_calculator], rtol=1e-12)


def _errors(calc, atoms):
    """The exception the calculator raises on ``atoms``, and the one the scoring step raises."""
    with pytest.raises(Exception) as in_md:
        probe = atoms.copy()
        probe.calc = calc
        probe.get_forces()
    with pytest.raises(Exception) as in_score:
        score_batch(calc, _batch([atoms]), batched=False)
    return in_md.value, in_score.value


def test_score_and_calculator_raise_the_same_errors(two_ensembles):
    for_md, _ = two_ensembles
    squeezed = tungsten_cell(1)
    squeezed.positions[1] = squeezed.positions[0] + [0.1, 0, 0]
    md_error, score_error = _errors(for_md, squeezed)
    assert type(md_error) is type(score_error) is InvalidStructureError
    assert str(score_error) == f"in.extxyz frame 0: {md_error}"

    strict = HeterogeneousEnsembleCalculator(for_md.members)  # on_member_error="raise"
    md_error, score_error = _errors(strict, _frames()[1])
    assert type(md_error) is type(score_error) is UnsupportedElementError
    assert str(md_error).startswith("member sevenn:7net-0 was not trained on element(s) Po")
    assert str(score_error) == f"in.extxyz frame 0: {md_error}"
