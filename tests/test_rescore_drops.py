"""``on_member_error="drop"`` in rescoring: a frame a member fails on is scored by the others.

The failures are real where they can be: CHGNet cannot take a slab whose
periodic images along its open direction are within its cutoff, and 7net-0 was not
trained on Po. One more member (:func:`test_member_errors.faulty`, a real
SevenNet model) raises as a GPU out of memory would, on one chosen frame;
a witness (a renamed CHGNet) is dropped with CHGNet, so two members of U
always survive (fewer is an error whatever min_members says).
Every scored frame must equal what the calculator gives for it under the
same policy.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.io import read, write

from hetens import HeterogeneousEnsembleCalculator
from hetens.cli.main import main
from hetens.distributed import EnsembleSpec
from hetens.errors import MemberDroppedWarning, MemberFailedError
from hetens.jobs.score_live import score_live

from conftest import tungsten_cell
from test_member_errors import faulty

FAULTY_CALL = 4  # the faulty member is called once per frame: it fails on frame 3


def _frames() -> list[Atoms]:
    frames = [tungsten_cell(1, seed=seed) for seed in range(5)]
    # A slab with 1.7 A of vacuum along c: CHGNet would see the periodic images, so it fails
    # (hetens.families._common.isolated_periodic_copy); SevenNet takes it.
    frames[1] = Atoms("W2", positions=[[0, 0, 0], [0, 0, 2.3]], cell=[3.2, 3.2, 4.0], pbc=[True, True, False])
    frames[2].numbers[1] = 84  # Po: 7net-0 was not trained on it
    return frames


@pytest.fixture
def structures(tmp_path):
    path = tmp_path / "in.extxyz"
    write(path, _frames())
    return path


def _ensemble(sevenn_member, chgnet_member, **policy) -> HeterogeneousEnsembleCalculator:
    members = [sevenn_member, chgnet_member, faulty(sevenn_member, "raise", fail_on={FAULTY_CALL})]
    witness = dataclasses.replace(chgnet_member, name="chgnet-witness")
    return HeterogeneousEnsembleCalculator(members, witnesses=[witness], **policy)


def _score(structures, out, calc, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MemberDroppedWarning)
        result = score_live(structures, out, calc, progress="off", **kwargs)
    return result, [w for w in caught if issubclass(w.category, MemberDroppedWarning)]


def test_each_frame_is_the_calculators_result_with_the_same_policy(sevenn_member, chgnet_member, structures):
    out = structures.with_name("out.extxyz")
    calc = _ensemble(sevenn_member, chgnet_member, on_member_error="drop")
    result, warned = _score(structures, out, calc, batched=False)
    assert sorted(str(w.message).split()[2] for w in warned) == [
        "chgnet-witness", "chgnet:0.3.0", "faulty", "sevenn:7net-0"
    ]
    assert result.report["dropped_frames"] == {
        "sevenn:7net-0": 1, "chgnet:0.3.0": 1, "faulty": 2, "chgnet-witness": 1
    }
    assert "dropped (frames): sevenn:7net-0 1, chgnet:0.3.0 1, faulty 2, chgnet-witness 1" in _formatted(
        result.report
    )

    reference = _ensemble(sevenn_member, chgnet_member, on_member_error="drop")
    scored = read(out, ":")
    expected_drops = [
        set(), {"chgnet:0.3.0", "chgnet-witness"}, {"sevenn:7net-0", "faulty"}, {"faulty"}, set()
    ]
    for frame, (atoms, got) in enumerate(zip(read(structures, ":"), scored)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MemberDroppedWarning)
            reference.calculate(atoms, ["energy", "forces"])
        expected = reference.results
        assert set(expected["dropped_members"]) == expected_drops[frame]
        dropped = got.info.get("hetens_dropped", "")
        assert set(filter(None, dropped.split(","))) == expected_drops[frame], frame
        assert got.info["hetens_U"] == pytest.approx(expected["uncertainty"], rel=1e-12, abs=1e-12), frame
        assert got.get_potential_energy() == pytest.approx(expected["energy"], rel=1e-12), frame
        # per-atom columns are written with 8 decimals
        np.testing.assert_allclose(got.get_forces(), expected["forces"], atol=1e-8)
        np.testing.assert_allclose(got.arrays["hetens_u"], expected["atomic_uncertainty"], atol=1e-8)
        np.testing.assert_allclose(got.info["hetens_weights"], expected["member_weights"], rtol=1e-12)
        np.testing.assert_allclose(
            got.info["hetens_predictor_weights"], expected["predictor_weights"], rtol=1e-12
        )
        assert got.info["hetens_roles"] == "predictor,predictor,predictor,witness"
        member_energies = got.info["hetens_member_energies"]
        assert np.isnan(member_energies).tolist() == [m in expected_drops[frame] for m in calc.member_names]
    assert result.uncertainty[0] > 0 and np.all(np.isfinite(result.uncertainty))


def test_a_batch_that_fails_is_rerun_frame_by_frame(sevenn_member, chgnet_member, structures):
    """CHGNet's batched call fails on the whole batch; only the frame without a cell is dropped."""
    by_frame, _ = _score(
        structures, structures.with_name("a.extxyz"),
        _ensemble(sevenn_member, chgnet_member, on_member_error="drop"), batched=False,
    )
    batched, _ = _score(
        structures, structures.with_name("b.extxyz"),
        _ensemble(sevenn_member, chgnet_member, on_member_error="drop"), batched=True,
    )
    assert batched.report["dropped_frames"] == by_frame.report["dropped_frames"]
    for a, b in zip(read(structures.with_name("a.extxyz"), ":"), read(structures.with_name("b.extxyz"), ":")):
        assert a.info.get("hetens_dropped") == b.info.get("hetens_dropped")
        assert b.info["hetens_U"] == pytest.approx(a.info["hetens_U"], abs=1e-4)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-4)


def test_too_few_members_left_names_the_frame(sevenn_member, chgnet_member, structures):
    out = structures.with_name("out.extxyz")
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], on_member_error="drop")
    with pytest.raises(
        MemberFailedError,
        match=r"only 1 of 2 members gave results for \S*in\.extxyz frame 1 \(W2\) \(min_members=2\): "
        r"chgnet:0\.3\.0: \S*in\.extxyz frame 1: member chgnet:0\.3\.0 failed on W2: it treats every "
        r"structure as 3D periodic.*along c it has 1\.70 A$",
    ):
        _score(structures, out, calc)
    assert not out.exists()


def test_raise_stays_the_default(sevenn_member, chgnet_member, tmp_path):
    write(tmp_path / "in.extxyz", _frames()[:2])
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    with pytest.raises(MemberFailedError, match=r"member chgnet:0\.3\.0 failed on \S*in\.extxyz frame 1 \(W2\)"):
        score_live(tmp_path / "in.extxyz", tmp_path / "out.extxyz", calc, progress="off")


def test_cli_drop(structures, capsys):
    out = structures.with_name("out.extxyz")
    argv = ["score", str(structures), "-o", str(out), "--models", "sevenn:7net-0", "chgnet:0.3.0",
            "--witnesses", "sevenn:7net-0@name=w1", "chgnet:0.3.0@name=w2",
            "--device", "cpu", "--progress", "off", "--json"]
    assert main([*argv, "--on-member-error", "drop", "--min-members", "1"]) == 2
    assert "min_members must be between 2 and the" in capsys.readouterr().err
    with pytest.warns(MemberDroppedWarning):
        assert main([*argv, "--on-member-error", "drop", "--min-members", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dropped_frames"] == {"sevenn:7net-0": 1, "chgnet:0.3.0": 1, "w1": 1, "w2": 1}
    assert report["roles"] == {"sevenn:7net-0": "predictor", "chgnet:0.3.0": "predictor",
                               "w1": "witness", "w2": "witness"}
    dropped = [set(filter(None, a.info.get("hetens_dropped", "").split(","))) for a in read(out, ":")]
    assert dropped == [set(), {"chgnet:0.3.0", "w2"}, {"sevenn:7net-0", "w1"}, set(), set()]


def test_cli_refuses_drop_for_precomputed_predictions(structures, capsys):
    argv = ["score", "--precomputed", str(structures), "-o", str(structures.with_name("o.extxyz")),
            "--on-member-error", "drop"]
    assert main(argv) == 2
    assert "--on-member-error applies to live members" in capsys.readouterr().err


def test_cluster_workers_get_the_policy(sevenn_member, chgnet_member):
    members = [sevenn_member, dataclasses.replace(sevenn_member, name="copy", spec="sevenn:7net-0@name=copy")]
    calc = HeterogeneousEnsembleCalculator(members, on_member_error="drop", min_members=2)
    spec = EnsembleSpec.from_calculator(calc)
    assert (spec.on_member_error, spec.min_members) == ("drop", 2)
    assert EnsembleSpec.from_calculator(HeterogeneousEnsembleCalculator(members)).on_member_error == "raise"
    built = spec.build(device="cpu")
    assert (built.on_member_error, built.min_members) == ("drop", 2)


def _formatted(report) -> str:
    from hetens.rescore.report import format_report

    return format_report(report)
