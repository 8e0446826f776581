"""Precomputed predictions: reading, alignment, closed-form U, reports, calibration, selection.

The datasets are synthetic and built here: member m's forces are base forces
plus ``c[f, m]`` along x on atom 0 of frame f, with ``sum_m c[f, m] = 0``. So
the plain mean is the base force, ``d[m] = |c[f, m]|`` and
``U = sqrt(sum_m w[m] c[f, m]**2)`` in closed form.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from hetens.cli.main import main
from hetens.core.combine import combine_predictions
from hetens.errors import AlignmentError, FrameReadError
from hetens.rescore.calibrate import calibrate
from hetens.rescore.metrics import conformal_factor, coverage, dft_fractions, spearman
from hetens.rescore.precomputed import _read_with_ase, load_predictions, read_frame_arrays
from hetens.rescore.output import unpack_member_forces
from hetens.rescore.precomputed_scoring import score_precomputed
from hetens.rescore.scoring import frame_results, score_predictions
from hetens.rescore.select import select_frames
from hetens.core.weights import read_weights_file

OFFSETS = np.array([2.0, -1.0, -1.0])  # per-member pattern, sums to 0


def _structures(n_frames: int):
    """Periodic W cells of 2, 4, 16 atoms and a non-periodic H2O, rattled."""
    frames = []
    for i in range(n_frames):
        kind = i % 4
        if kind == 3:
            atoms = molecule("H2O")
        else:
            atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat([(1, 1, 1), (2, 1, 1), (2, 2, 2)][kind])
        atoms.rattle(0.03, seed=i)
        frames.append(atoms)
    return frames


def _scales(n_frames: int) -> np.ndarray:
    return 0.05 * (1 + np.arange(n_frames))


def write_synthetic(tmp_path, n_frames: int = 12, energy_spread: float = 0.01, ref_noise: float = 0.0):
    """Three member files, a reference file; returns (paths, reference path, base frames, base forces)."""
    rng = np.random.default_rng(7)
    frames = _structures(n_frames)
    base_forces = [rng.normal(size=(len(a), 3)) for a in frames]
    base_energy = rng.normal(size=n_frames) * 10
    scales = _scales(n_frames)
    paths = []
    for m in range(3):
        out = []
        for f, atoms in enumerate(frames):
            frame = atoms.copy()
            forces = base_forces[f].copy()
            forces[0, 0] += OFFSETS[m] * scales[f]
            stress = np.full(6, 0.01 * m) if frame.pbc.all() else None
            frame.calc = SinglePointCalculator(
                frame,
                energy=base_energy[f] + energy_spread * m,
                forces=forces,
                **({"stress": stress} if stress is not None else {}),
            )
            out.append(frame)
        path = tmp_path / f"model{m}.extxyz"
        write(path, out)
        paths.append(str(path))
    reference = []
    for f, atoms in enumerate(frames):
        frame = atoms.copy()
        forces = base_forces[f] + ref_noise * rng.normal(size=base_forces[f].shape)
        frame.calc = SinglePointCalculator(frame, energy=base_energy[f], forces=forces)
        reference.append(frame)
    ref_path = tmp_path / "ref.extxyz"
    write(ref_path, reference)
    return paths, str(ref_path), frames, base_forces


def expected_u(n_frames: int, weights=None) -> np.ndarray:
    w = np.full(3, 1 / 3) if weights is None else np.asarray(weights) / np.sum(weights)
    return np.sqrt((w * OFFSETS**2).sum()) * _scales(n_frames)


# ----------------------------------------------------------------- reading


def test_fast_extxyz_reader_matches_ase(tmp_path):
    paths, _, frames, _ = write_synthetic(tmp_path, 8)
    fast = read_frame_arrays(paths[1])
    slow = _read_with_ase(tmp_path / "model1.extxyz", ":", "energy", "forces", None)
    for key in ("n_atoms", "numbers", "positions", "cells", "pbc", "energy", "forces", "indices"):
        np.testing.assert_array_equal(getattr(fast, key), slow[key], err_msg=key)
    # Stress is absent on the molecule frames only.
    assert np.isnan(fast.stress[3]).all() and np.isfinite(fast.stress[:3]).all()
    np.testing.assert_array_equal(fast.stress, slow["stress"])
    assert fast.n_frames == 8 and list(fast.n_atoms[:4]) == [2, 4, 16, 3]


def test_reader_index_and_custom_keys(tmp_path):
    frames = _structures(6)
    for f, atoms in enumerate(frames):
        atoms.info["REF_energy"] = -1.5 * f
        atoms.arrays["REF_forces"] = np.full((len(atoms), 3), f, dtype=float)
    path = tmp_path / "dft.extxyz"
    write(path, frames)
    arrays = read_frame_arrays(path, "1::2", energy_key="REF_energy", forces_key="REF_forces")
    assert arrays.indices.tolist() == [1, 3, 5]
    np.testing.assert_allclose(arrays.energy, [-1.5, -4.5, -7.5])
    np.testing.assert_allclose(arrays.forces[: arrays.n_atoms[0]], 1.0)
    with pytest.raises(
        FrameReadError, match=r"dft.extxyz frame 0 has no energy under 'energy'.*--energy-key"
    ):
        read_frame_arrays(path)


def test_reader_reads_ase_trajectories(tmp_path):
    paths, _, _, _ = write_synthetic(tmp_path, 5)
    traj = tmp_path / "model0.traj"
    write(traj, read(paths[0], ":"))
    a, b = read_frame_arrays(traj), read_frame_arrays(paths[0])
    np.testing.assert_allclose(a.forces, b.forces)
    np.testing.assert_allclose(a.energy, b.energy)


def test_truncated_file_names_frame(tmp_path):
    paths, _, _, _ = write_synthetic(tmp_path, 4)
    with open(paths[0]) as handle:
        lines = handle.read().splitlines()
    (tmp_path / "cut.extxyz").write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(FrameReadError, match=r"cut.extxyz frame 3 is cut short"):
        read_frame_arrays(tmp_path / "cut.extxyz")


# --------------------------------------------------------------- alignment


def _rewrite(path, out, change):
    frames = read(path, ":")
    change(frames)
    write(out, frames)
    return str(out)


def test_alignment_errors_name_file_and_frame(tmp_path):
    paths, _, _, _ = write_synthetic(tmp_path, 6)

    def drop_last(frames):
        frames.pop()

    def swap_species(frames):
        frames[4].numbers[1] = 42

    def move_atom(frames):
        frames[2].positions[5] += [0.0, 0.05, 0.0]

    def swap_frames(frames):
        frames[1], frames[2] = frames[2], frames[1]

    short = _rewrite(paths[1], tmp_path / "short.extxyz", drop_last)
    with pytest.raises(AlignmentError, match=r"short.extxyz holds 5 frames but .*model0.extxyz holds 6"):
        load_predictions([paths[0], short])
    species = _rewrite(paths[1], tmp_path / "species.extxyz", swap_species)
    with pytest.raises(
        AlignmentError, match=r"species.extxyz frame 4: atom 1 is Mo but W in .*model0.extxyz frame 4"
    ):
        load_predictions([paths[0], species, paths[2]])
    moved = _rewrite(paths[2], tmp_path / "moved.extxyz", move_atom)
    with pytest.raises(AlignmentError, match=r"moved.extxyz frame 2: atom 5 \(W\) is 0.05 A from"):
        load_predictions([paths[0], paths[1], moved])
    swapped = _rewrite(paths[1], tmp_path / "swapped.extxyz", swap_frames)
    with pytest.raises(AlignmentError, match=r"swapped.extxyz frame 1 has 16 atoms but .*frame 1 has 4"):
        load_predictions([paths[0], swapped])
    # A small move passes with a looser tolerance; the first file's positions are kept.
    loose = load_predictions([paths[0], moved], position_tol=0.1)
    unmoved = load_predictions([paths[0], paths[2]])
    np.testing.assert_array_equal(loose.frames.positions, unmoved.frames.positions)
    np.testing.assert_array_equal(loose.member_forces, unmoved.member_forces)


def test_alignment_accepts_wrapped_positions(tmp_path):
    paths, _, _, _ = write_synthetic(tmp_path, 4)

    def shift_by_lattice_vector(frames):
        frames[1].positions[0] += frames[1].cell[0]

    shifted = _rewrite(paths[1], tmp_path / "wrapped.extxyz", shift_by_lattice_vector)
    wrapped = load_predictions([paths[0], shifted])
    plain = load_predictions([paths[0], paths[1]])
    # The wrapped file is read as the same frames with the same predictions.
    assert wrapped.names == ["model0", "wrapped"] and wrapped.n_frames == plain.n_frames == 4
    np.testing.assert_array_equal(wrapped.frames.positions, plain.frames.positions)
    np.testing.assert_array_equal(wrapped.member_energies, plain.member_energies)
    np.testing.assert_array_equal(wrapped.member_forces, plain.member_forces)
    np.testing.assert_allclose(
        score_predictions(wrapped).uncertainty, score_predictions(plain).uncertainty, rtol=0, atol=0
    )


def test_names_must_match_files(tmp_path):
    paths, _, _, _ = write_synthetic(tmp_path, 3)
    with pytest.raises(ValueError, match="2 names for 3 prediction files"):
        load_predictions(paths, ["a", "b"])
    with pytest.raises(ValueError, match="repeated: a"):
        load_predictions(paths, ["a", "a", "b"])


# ------------------------------------------------------------------- U math


def test_closed_form_u(tmp_path):
    paths, _, _, _ = write_synthetic(tmp_path, 12)
    predictions = load_predictions(paths)
    scores = score_predictions(predictions)
    np.testing.assert_allclose(scores.uncertainty, expected_u(12), rtol=1e-12)
    weights = [0.5, 0.3, 0.2]
    scores = score_predictions(predictions, weights)
    np.testing.assert_allclose(scores.uncertainty, expected_u(12, weights), rtol=1e-12)
    # Member 0 carries offset 2c: it deviates most.
    assert set(scores.most_deviating.tolist()) == {0}


def test_vectorised_scores_equal_combine_predictions(tmp_path, rng):
    paths, _, _, _ = write_synthetic(tmp_path, 8)
    predictions = load_predictions(paths)
    predictions.member_forces[:] += rng.normal(size=predictions.member_forces.shape)
    weights = np.array([0.2, 0.5, 0.3])
    scores = score_predictions(predictions, weights)
    for f in range(predictions.n_frames):
        rows = slice(predictions.frames.offsets[f], predictions.frames.offsets[f + 1])
        stresses = predictions.member_stresses[f]
        expected = combine_predictions(
            predictions.member_energies[f],
            predictions.member_forces[rows].transpose(1, 0, 2),
            weights,
            stresses if np.isfinite(stresses).all() else None,
        )
        got = frame_results(predictions, scores, f)
        assert set(got) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=1e-14, err_msg=key)


# ------------------------------------------------------------ score output


def test_score_writes_annotated_frames_and_report(tmp_path):
    paths, ref, frames, base_forces = write_synthetic(tmp_path, 12)
    out = tmp_path / "scored.extxyz"
    result = score_precomputed(paths, out, reference=ref, keep_member_forces=True, progress="off")
    scored = read(out, ":")
    assert len(scored) == 12
    np.testing.assert_allclose([a.info["hetens_U"] for a in scored], expected_u(12), rtol=1e-10)
    for f, atoms in enumerate(scored):
        # Ensemble forces are the base forces (offsets cancel with uniform weights).
        np.testing.assert_allclose(atoms.get_forces(), base_forces[f], atol=1e-7)
        assert atoms.info["hetens_members"] == "model0,model1,model2"
        assert atoms.info["hetens_source"] == f"{ref}:{f}"
        assert atoms.info["hetens_eps"] == pytest.approx(0.0, abs=1e-7)
        member_forces = unpack_member_forces(atoms.arrays["hetens_member_forces"], 3)
        assert member_forces[0, 0, 0] - member_forces[1, 0, 0] == pytest.approx(3 * _scales(12)[f], rel=1e-6)
        assert ("stress" in atoms.calc.results) == bool(atoms.pbc.all())
    report = result.report
    assert report["n_frames"] == 12 and report["n_atoms"] == sum(len(a) for a in frames)
    # Member RMSE in closed form: only atom 0's x component is off, by |c_m|.
    n_components = 3 * report["n_atoms"]
    for m, name in enumerate(report["members"]):
        expected = np.sqrt(np.sum((OFFSETS[m] * _scales(12)) ** 2) / n_components)
        assert report["member_force_rmse"][name] == pytest.approx(expected, rel=1e-6)
        expected_e = 0.01 * m * np.sqrt(np.mean(1.0 / np.array([len(a) for a in frames]) ** 2))
        assert report["member_energy_rmse"][name] == pytest.approx(expected_e, rel=1e-6, abs=1e-12)


def test_score_cli_json(tmp_path, capsys):
    paths, ref, _, _ = write_synthetic(tmp_path, 12, ref_noise=0.0)
    # A reference whose force error grows with the frame index, like U: rho = 1.
    frames = read(ref, ":")
    for f, atoms in enumerate(frames):
        forces = atoms.get_forces().copy()
        forces[-1, 2] += 0.1 * (f + 1)
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=forces)
    write(ref, frames)
    code = main(
        [
            "score",
            "--precomputed",
            *paths,
            "--names",
            "a",
            "b",
            "c",
            "--weights",
            "1",
            "1",
            "2",
            "--reference",
            ref,
            "-o",
            str(tmp_path / "s.extxyz"),
            "--json",
            "--progress",
            "off",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # exactly one JSON object on stdout
    assert "Spearman" in captured.err
    for key in (
        "n_frames",
        "n_atoms",
        "members",
        "weights",
        "U_quantiles",
        "spearman_rho",
        "member_force_rmse",
        "member_energy_rmse",
        "spearman_rho_energy",
    ):
        assert key in report
    assert report["members"] == ["a", "b", "c"]
    assert report["weights"] == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.5})
    u = expected_u(12, [1, 1, 2])
    assert report["U_quantiles"]["max"] == pytest.approx(u.max())
    assert report["U_quantiles"]["p50"] == pytest.approx(np.median(u))
    assert report["spearman_rho"] == pytest.approx(1.0)
    assert set(report["member_force_rmse"]) == {"a", "b", "c"}


def test_score_cli_errors_are_one_line(tmp_path, capsys):
    paths, _, _, _ = write_synthetic(tmp_path, 4)
    short = _rewrite(paths[1], tmp_path / "short.extxyz", lambda frames: frames.pop())
    code = main(["score", "--precomputed", paths[0], short, "--json"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "short.extxyz holds 3 frames" in captured.err and len(captured.err.strip().splitlines()) == 1


def test_weights_file_selects_members(tmp_path):
    paths, _, _, _ = write_synthetic(tmp_path, 6)
    weights_file = tmp_path / "w.json"
    weights_file.write_text(json.dumps({"weights": {"model0": 1.0, "model1": 1.0}}))
    result = score_precomputed(paths, weights=read_weights_file(weights_file), progress="off")
    assert result.report["members"] == ["model0", "model1"]
    assert result.report["dropped_members"] == ["model2"]
    # Two members with offsets 2c and -c about their own mean 0.5c: d = 1.5c each.
    np.testing.assert_allclose(result.uncertainty, 1.5 * _scales(6), rtol=1e-10)
    weights_file.write_text(json.dumps({"weights": {"model0": 1.0, "mace": 1.0}}))
    with pytest.raises(ValueError, match="name member.*mace"):
        score_precomputed(paths, weights=read_weights_file(weights_file), progress="off")


# -------------------------------------------------------------- calibrate


def _calibration_set(tmp_path, n_frames=60):
    """Four members with force noise 0.05, 0.1, 0.2, 0.4 eV/A around the reference."""
    rng = np.random.default_rng(3)
    frames = [bulk("W", "bcc", a=3.17, cubic=True).repeat((2, 1, 1)) for _ in range(n_frames)]
    for f, atoms in enumerate(frames):
        atoms.rattle(0.05, seed=f)
    ref_forces = [rng.normal(size=(len(a), 3)) for a in frames]
    difficulty = rng.uniform(0.2, 3.0, size=n_frames)  # frames differ in how hard they are
    paths = []
    for m, sigma in enumerate((0.4, 0.05, 0.2, 0.1)):
        out = []
        for f, atoms in enumerate(frames):
            frame = atoms.copy()
            forces = ref_forces[f] + sigma * difficulty[f] * rng.normal(size=ref_forces[f].shape)
            frame.calc = SinglePointCalculator(frame, energy=-40.0 + sigma * rng.normal(), forces=forces)
            out.append(frame)
        paths.append(tmp_path / f"m{m}.extxyz")
        write(paths[-1], out)
    ref = []
    for f, atoms in enumerate(frames):
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, energy=-40.0, forces=ref_forces[f])
        ref.append(frame)
    write(tmp_path / "ref.extxyz", ref)
    return [str(p) for p in paths], str(tmp_path / "ref.extxyz")


def test_calibrate_ranks_members_and_scans_top_n(tmp_path):
    paths, ref = _calibration_set(tmp_path)
    predictions = load_predictions(paths, ["worst", "best", "third", "second"])
    result = calibrate(predictions, read_frame_arrays(ref), coverage_target=0.8)
    assert result.members == ["best", "second", "third", "worst"]
    rmse = [result.force_rmse[n] for n in result.members]
    assert rmse == sorted(rmse)
    assert [e["n"] for e in result.top_n_scan] == [2, 3, 4]
    assert [e["members"] for e in result.top_n_scan] == [result.members[:n] for n in (2, 3, 4)]
    assert all(isinstance(e["rho"], float) and -1 <= e["rho"] <= 1 for e in result.top_n_scan)
    best = max(result.top_n_scan, key=lambda e: e["rho"])
    assert result.chosen_n == best["n"]
    assert list(result.weights) == result.members[: result.chosen_n]
    inverse = np.array([1 / result.force_rmse[n] for n in result.weights])
    np.testing.assert_allclose(list(result.weights.values()), inverse / inverse.sum())
    cal = result.calibration
    assert cal["n_calibration"] + cal["n_held_out"] == 60 and cal["factor"] > 0
    assert 0 <= cal["held_out_coverage"] <= 1


def test_calibrate_cli_writes_weights_file_for_score(tmp_path, capsys):
    paths, ref = _calibration_set(tmp_path)
    out = tmp_path / "weights.json"
    code = main(
        [
            "calibrate",
            "--reference",
            ref,
            "--precomputed",
            *paths,
            "-o",
            str(out),
            "--json",
            "--coverage",
            "0.8",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    for key in ("weights", "members", "force_rmse", "energy_rmse", "top_n_scan", "chosen_n", "calibration"):
        assert saved[key] == report[key]
    assert len(read_weights_file(out)) == saved["chosen_n"]
    assert saved["calibration"]["coverage"] == 0.8
    code = main(["score", "--precomputed", *paths, "--weights-file", str(out), "--json", "--progress", "off"])
    assert code == 0
    scored = json.loads(capsys.readouterr().out)
    assert sorted(scored["members"]) == sorted(saved["weights"])


def test_conformal_factor_and_coverage():
    rng = np.random.default_rng(0)
    u = rng.uniform(0.1, 1.0, 2000)
    eps = u * rng.uniform(0, 2, 2000)  # eps / U uniform on [0, 2]
    factor = conformal_factor(eps[:1000], u[:1000], 0.9)
    assert factor == pytest.approx(1.8, abs=0.1)
    assert coverage(eps[1000:], u[1000:], factor) == pytest.approx(0.9, abs=0.03)
    with pytest.raises(ValueError, match="at least 19"):
        conformal_factor(eps[:10], u[:10], 0.95)


def test_spearman_undefined_is_none():
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert spearman([1.0, 2.0], [1.0, 2.0]) is None
    assert spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)


# ---------------------------------------------------------------- select


def test_dft_fractions_by_hand():
    u = np.array([0.05, 0.3, 0.7, 2.0, 0.5])
    n_atoms = np.array([10, 20, 30, 40, 50])
    counts = dft_fractions(u, n_atoms, [0.1, 0.5, 1.0, 10.0])
    # U_c = 0.5: frames 0 and 1 (U < 0.5) -> uMLIP (30 atoms); 0.5 itself goes to DFT.
    assert counts["n_frames_umlip"].tolist() == [1, 2, 4, 5]
    assert counts["n_atoms_umlip"].tolist() == [10, 30, 110, 150]
    np.testing.assert_allclose(counts["dft_fraction_atoms"], [140 / 150, 120 / 150, 40 / 150, 0.0])
    np.testing.assert_allclose(counts["dft_fraction_frames"], [0.8, 0.6, 0.2, 0.0])


def test_select_reports_and_writes_label_sources(tmp_path, capsys):
    paths, _, frames, _ = write_synthetic(tmp_path, 12)
    scored = tmp_path / "scored.extxyz"
    score_precomputed(paths, scored, keep_member_forces=True, progress="off")
    u = expected_u(12)
    thresholds = [0.2, 0.5]
    code = main(
        [
            "select",
            str(scored),
            "--threshold",
            *map(str, thresholds),
            "--json",
            "--out-dir",
            str(tmp_path / "sel"),
            "--label-source",
            "model1",
            "--anchors",
            "0",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    n_atoms = np.array([len(a) for a in frames])
    assert report["n_frames"] == 12 and report["n_atoms"] == int(n_atoms.sum())
    for entry, threshold in zip(report["thresholds"], thresholds):
        low = u < threshold
        assert entry["threshold"] == threshold
        assert entry["n_frames_umlip"] == int(low.sum())
        assert entry["n_frames_dft"] == int((~low).sum())
        assert entry["dft_fraction_atoms"] == pytest.approx(n_atoms[~low].sum() / n_atoms.sum())
        assert entry["dft_fraction_frames"] == pytest.approx((~low).mean())
        labelled = read(entry["files"]["umlip_labelled"], ":")
        queued = read(entry["files"]["needs_dft"], ":")
        assert len(labelled) == low.sum() and len(queued) == (~low).sum()
        for atoms, f in zip(labelled, np.flatnonzero(low)):
            assert atoms.info["hetens_label_source"] == "model1"
            # model1's own prediction: base energy + 0.01, offset -c on atom 0.
            expected = read(paths[1], int(f))
            assert atoms.get_potential_energy() == pytest.approx(expected.get_potential_energy())
            np.testing.assert_allclose(atoms.get_forces(), expected.get_forces(), atol=1e-7)
        for atoms in queued:
            assert atoms.info["hetens_label_source"] == "dft"
            assert atoms.calc is None
    assert (tmp_path / "sel" / "Uc_0.2" / "needs_dft.extxyz").exists()
    assert json.loads((tmp_path / "sel" / "selection.json").read_text()) == report


def test_select_ensemble_labels_and_missing_member_forces(tmp_path):
    paths, _, _, base_forces = write_synthetic(tmp_path, 6)
    scored = tmp_path / "scored.extxyz"
    score_precomputed(paths, scored, progress="off")
    result = select_frames(scored, [10.0], out_dir=tmp_path / "sel", anchors=0)
    labelled = read(result.report["thresholds"][0]["files"]["umlip_labelled"], ":")
    assert [a.info["hetens_label_source"] for a in labelled] == ["ensemble"] * 6
    np.testing.assert_allclose(labelled[2].get_forces(), base_forces[2], atol=1e-7)
    with pytest.raises(
        FrameReadError, match=r"scored.extxyz frame 0 has no per-member forces.*--keep-member-forces"
    ):
        select_frames(scored, [10.0], out_dir=tmp_path / "sel2", label_source="model0", anchors=0)
    assert not (tmp_path / "sel2" / "Uc_10" / "umlip_labelled.extxyz").exists()
    with pytest.raises(ValueError, match="'mace' is not a member.*model0, model1, model2"):
        select_frames(scored, [10.0], out_dir=tmp_path / "sel3", label_source="mace")


def test_select_needs_scored_frames(tmp_path):
    paths, _, _, _ = write_synthetic(tmp_path, 3)
    with pytest.raises(FrameReadError, match=r"model0.extxyz frame 0 has no hetens_U.*hetens score"):
        select_frames(paths[0], [0.5])
