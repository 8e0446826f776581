"""Live rescoring with the shipped models: batched evaluation, streaming output, references, failures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import hetens
from hetens.core.calculator import HeterogeneousEnsembleCalculator
from hetens.cli.main import main
from hetens.errors import AlignmentError, MemberFailedError
from hetens.rescore.batched import evaluate_batch, has_batched_path
from hetens.jobs.score_live import score_live
from hetens.rescore.output import unpack_member_forces

# float32 models: a batched call and a single call differ in summation order only.
ENERGY_ATOL = 2e-4  # eV
FORCE_ATOL = 1e-4  # eV/A
STRESS_ATOL = 1e-5  # eV/A^3


def _cells():
    """W cells of 2, 4, 8 and 16 atoms, rattled differently."""
    frames = []
    for k, repeat in enumerate([(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]):
        atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
        atoms.rattle(0.04 + 0.02 * k, seed=k)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def pair(sevenn_member, chgnet_member):
    return HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])


def test_batched_agrees_with_per_frame_for_every_shipped_model(default_calc):
    """Every default member's batch equals its frame-by-frame results (SevenNet and CHGNet
    batch; DIEP has no batched path and is evaluated frame by frame inside evaluate_batch)."""
    frames = _cells()[:3]
    for member in default_calc.members:
        assert has_batched_path(member) == (member.family in ("sevenn", "chgnet")), member.name
        batched = evaluate_batch(member, frames, True)
        single = evaluate_batch(member, frames, True, batched=False)
        for atoms, (e_b, f_b, s_b), (e_s, f_s, s_s) in zip(frames, batched, single):
            assert e_b == pytest.approx(e_s, abs=ENERGY_ATOL), member.name
            np.testing.assert_allclose(f_b, f_s, atol=FORCE_ATOL, err_msg=member.name)
            np.testing.assert_allclose(s_b, s_s, atol=STRESS_ATOL, err_msg=member.name)
            assert f_b.shape == (len(atoms), 3) and f_b.dtype == np.float64


def test_batched_chgnet_takes_a_molecule_with_the_crystals(chgnet_member, monkeypatch):
    """A molecule (pbc=False) in a CHGNet batch is boxed like in the calculator: one batched
    call for all frames (no per-frame fallback), the same results as frame by frame."""
    from ase.build import molecule

    import hetens.rescore.batched as batched_module

    frames = [*_cells()[:2], molecule("H2O")]
    flags = [True, True, False]
    single = evaluate_batch(chgnet_member, frames, flags, batched=False)
    fallbacks = []
    original = batched_module.evaluate_member
    monkeypatch.setattr(batched_module, "evaluate_member",
                        lambda *args, **kwargs: fallbacks.append(1) or original(*args, **kwargs))
    batched = evaluate_batch(chgnet_member, frames, flags)
    assert fallbacks == []
    for (e_b, f_b, s_b), (e_s, f_s, s_s) in zip(batched, single):
        assert e_b == pytest.approx(e_s, abs=ENERGY_ATOL)
        np.testing.assert_allclose(f_b, f_s, atol=FORCE_ATOL)
    assert batched[2][2] is None and single[2][2] is None  # no stress for the molecule


def test_batched_leaves_the_calculator_usable(sevenn_member):
    frames = _cells()[:2]
    evaluate_batch(sevenn_member, frames, False)
    # SevenNet's model is switched to batch mode during the call and back after.
    atoms = frames[1].copy()
    atoms.calc = sevenn_member.calculator
    assert np.isfinite(atoms.get_potential_energy())


def test_score_live_streams_annotated_frames(tmp_path, pair):
    frames = _cells() + _cells()
    for k, atoms in enumerate(frames):
        atoms.info["config_type"] = f"cell{k}"
    path = tmp_path / "traj.extxyz"
    write(path, frames)
    out = tmp_path / "scored.extxyz"
    result = score_live(path, out, pair, index="1:", batch_size=3, keep_member_forces=True, progress="off")
    scored = read(out, ":")
    assert len(scored) == 7 and result.report["n_frames"] == 7
    assert result.report["n_atoms"] == sum(len(a) for a in frames[1:])
    for k, atoms in enumerate(scored, start=1):
        assert atoms.info["config_type"] == f"cell{k}"  # the input's info is kept
        assert atoms.info["hetens_source"] == f"{path}:{k}"
        assert atoms.info["hetens_members"] == "sevenn:7net-0,chgnet:0.3.0"
        assert atoms.arrays["hetens_member_forces"].shape == (len(atoms), 6)
    # The same numbers as the ensemble calculator, frame by frame.
    for k in (1, 4):
        reference = frames[k].copy()
        reference.calc = pair
        got = scored[k - 1]
        assert got.info["hetens_U"] == pytest.approx(pair.get_uncertainty(reference), abs=FORCE_ATOL)
        assert got.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=ENERGY_ATOL)
        np.testing.assert_allclose(got.get_forces(), reference.get_forces(), atol=FORCE_ATOL)
        np.testing.assert_allclose(got.get_stress(), reference.get_stress(), atol=STRESS_ATOL)
        np.testing.assert_allclose(
            got.arrays["hetens_u"], pair.get_atomic_uncertainty(reference), atol=FORCE_ATOL
        )
        members = unpack_member_forces(got.arrays["hetens_member_forces"], 2)
        np.testing.assert_allclose(members, pair.results["member_forces"], atol=FORCE_ATOL)
    assert result.report["U_quantiles"]["max"] == pytest.approx(max(a.info["hetens_U"] for a in scored))


def test_score_live_with_reference(tmp_path, pair, chgnet_member):
    """With one member's own predictions as the reference, eps = U exactly (two members, equal weights)."""
    frames = _cells()
    labelled = []
    for atoms in frames:
        copy = atoms.copy()
        copy.calc = chgnet_member.calculator
        energy, forces = copy.get_potential_energy(), copy.get_forces()
        copy.calc = SinglePointCalculator(copy, energy=energy, forces=forces)
        labelled.append(copy)
    ref = tmp_path / "ref.extxyz"
    write(ref, labelled)
    result = score_live(ref, tmp_path / "s.extxyz", pair, reference=ref, progress="off")
    report = result.report
    assert report["member_force_rmse"]["chgnet:0.3.0"] < FORCE_ATOL
    assert report["member_force_rmse"]["sevenn:7net-0"] > 10 * FORCE_ATOL
    scored = read(tmp_path / "s.extxyz", ":")
    np.testing.assert_allclose([a.info["hetens_eps"] for a in scored], result.uncertainty, atol=FORCE_ATOL)
    assert report["spearman_rho"] == pytest.approx(1.0)
    # A reference with other frames is refused before any model runs.
    write(tmp_path / "short.extxyz", labelled[:3])
    with pytest.raises(AlignmentError, match="short.extxyz holds 3 selected frames but the inputs hold 4"):
        score_live(ref, tmp_path / "t.extxyz", pair, reference=tmp_path / "short.extxyz", progress="off")
    assert not (tmp_path / "t.extxyz").exists()


def test_failing_member_names_frame_and_keeps_partial_output(tmp_path):
    """ASE's EMT has no parameters for W: the run stops there, frames done before are kept."""
    frames = []
    for k in range(3):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    frames.append(bulk("W", "bcc", a=3.17, cubic=True))
    path = tmp_path / "mixed.extxyz"
    write(path, frames)
    calc = HeterogeneousEnsembleCalculator(
        [hetens.Member.wrap(EMT(), name="emt-a"), hetens.Member.wrap(EMT(), name="emt-b")]
    )
    out = tmp_path / "scored.extxyz"
    with pytest.raises(MemberFailedError, match=r"member emt-a failed on .*mixed.extxyz frame 3 \(W2\)"):
        score_live(path, out, calc, batch_size=2, progress="off")
    assert not out.exists()
    partial = read(tmp_path / "scored.partial.extxyz", ":")
    assert len(partial) == 2 and all("hetens_U" in a.info for a in partial)


def test_score_cli_live_json(tmp_path, capsys):
    path = tmp_path / "cells.extxyz"
    write(path, _cells()[:2])
    out = tmp_path / "scored.extxyz"
    code = main(
        [
            "score",
            str(path),
            "-o",
            str(out),
            "--models",
            "sevenn:7net-0",
            "chgnet:0.3.0",
            "--weights",
            "3",
            "1",
            "--device",
            "cpu",
            "--json",
            "--progress",
            "off",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["members"] == ["sevenn:7net-0", "chgnet:0.3.0"]
    assert report["weights"] == pytest.approx({"sevenn:7net-0": 0.75, "chgnet:0.3.0": 0.25})
    assert report["n_frames"] == 2 and report["n_atoms"] == 6
    assert len(read(out, ":")) == 2
    assert "wrote 2 frames" in captured.err


def test_batches_are_split_by_atom_count():
    from hetens.rescore.batched import _groups

    # Consecutive frames share a call while their atoms fit; a bigger frame runs alone.
    assert _groups([2, 4, 8, 16, 100, 2, 2, 200, 2], 128) == [[0, 1, 2, 3], [4, 5, 6], [7], [8]]
    assert _groups([2, 4, 8], None) == [[0, 1, 2]]
