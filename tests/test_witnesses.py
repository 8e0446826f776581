"""Witness members (issue 12): forces in U only, never in the returned energy/forces/stress.

Real shipped models: 7net-0 and CHGNet 0.3.0 (PBE+U) as predictors, CHGNet
r2scan (r2SCAN) as the witness of another level of theory. Rescoring and
calibration use small synthetic prediction files (the arithmetic is what
is tested there).
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hetens import HeterogeneousEnsembleCalculator, combine_predictions
from hetens.cli.main import main
from hetens.errors import MemberDroppedWarning, MemberFailedError, MixedReferenceError, TooFewMembersError
from hetens.core.frames import annotate

from conftest import tungsten_cell
from test_member_errors import faulty


@pytest.fixture(scope="module")
def r2scan_member():
    import hetens

    return hetens.load_member("chgnet:r2scan", device="cpu")


@pytest.fixture(scope="module")
def witnessed(sevenn_member, chgnet_member, r2scan_member):
    return HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], witnesses=[r2scan_member])


def _hand_u(forces: np.ndarray, weights: np.ndarray) -> float:
    """The paper's U, written out: plain-mean reference over every member, worst atom, weighted."""
    fbar = forces.mean(axis=0)
    d = np.array([np.max(np.linalg.norm(f - fbar, axis=1)) for f in forces])
    return float(np.sqrt(np.sum(weights / weights.sum() * d**2)))


# ------------------------------------------------------------- the pure function


finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)


@st.composite
def ensembles(draw):
    m = draw(st.integers(2, 5))
    n = draw(st.integers(1, 6))
    energies = draw(arrays(float, (m,), elements=finite))
    forces = draw(arrays(float, (m, n, 3), elements=finite))
    stresses = draw(arrays(float, (m, 6), elements=finite))
    weights = draw(arrays(float, (m,), elements=st.floats(0.01, 10)))
    mask = draw(arrays(bool, (m,)).filter(lambda a: a.any()))
    return energies, forces, stresses, weights, mask


@given(ensembles())
def test_an_all_true_mask_is_exactly_todays_output(case):
    energies, forces, stresses, weights, _ = case
    today = combine_predictions(energies, forces, weights, stresses)
    masked = combine_predictions(energies, forces, weights, stresses, predictors=np.ones(len(energies), bool))
    assert today.keys() == masked.keys()
    for key in today:
        assert np.array_equal(np.asarray(today[key]), np.asarray(masked[key])), key


@given(ensembles())
def test_predictions_are_the_predictors_alone_and_u_is_over_everyone(case):
    energies, forces, stresses, weights, mask = case
    got = combine_predictions(energies, forces, weights, stresses, predictors=mask)
    alone = combine_predictions(energies[mask], forces[mask], weights[mask], stresses[mask])
    for key in ("energy", "free_energy", "forces", "stress", "energy_std"):
        assert np.array_equal(np.asarray(got[key]), np.asarray(alone[key])), key
    everyone = combine_predictions(energies, forces, weights, stresses)
    for key in ("uncertainty", "atomic_uncertainty", "member_max_deviation", "most_deviating_member"):
        assert np.array_equal(np.asarray(got[key]), np.asarray(everyone[key])), key
    assert got["uncertainty"] == pytest.approx(_hand_u(forces, weights), rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(got["predictor_weights"], np.where(mask, weights, 0) / weights[mask].sum())
    np.testing.assert_allclose(got["member_weights"], weights / weights.sum())


def test_a_mask_without_predictors_is_refused():
    with pytest.raises(ValueError, match="at least one member must be a predictor"):
        combine_predictions([0.0, 0.0], np.zeros((2, 1, 3)), predictors=np.zeros(2, bool))
    with pytest.raises(ValueError, match="boolean mask with one entry per member"):
        combine_predictions([0.0, 0.0], np.zeros((2, 1, 3)), predictors=[1, 0])


# ------------------------------------------------------------- the calculator


def test_witness_leaves_predictions_bit_for_bit_and_enters_u(witnessed, sevenn_member, chgnet_member, w16):
    alone = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    atoms = w16.copy()
    atoms.calc = alone
    expected = {k: atoms.calc.get_property(k, atoms) for k in ("energy", "forces", "stress", "energy_std")}
    atoms = w16.copy()
    atoms.calc = witnessed
    for key, value in expected.items():
        assert np.array_equal(np.asarray(witnessed.get_property(key, atoms)), np.asarray(value)), key
    r = witnessed.results
    assert witnessed.member_names == ["sevenn:7net-0", "chgnet:0.3.0", "chgnet:r2scan"]
    assert witnessed.roles == r["member_roles"] == ["predictor", "predictor", "witness"]
    np.testing.assert_allclose(r["predictor_weights"], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(r["member_weights"], [1 / 3] * 3)
    assert r["uncertainty"] == pytest.approx(_hand_u(r["member_forces"], np.ones(3)), rel=1e-12)
    assert r["uncertainty"] != pytest.approx(alone.results["uncertainty"], rel=1e-3)  # the witness counts
    provenance = witnessed.provenance()
    assert provenance["roles"] == ["predictor", "predictor", "witness"]
    assert provenance["predictor_weights"] == pytest.approx([0.5, 0.5, 0.0])
    assert [m["role"] for m in provenance["members"]] == ["predictor", "predictor", "witness"]


def test_weights_are_normalised_per_role(sevenn_member, chgnet_member, r2scan_member, w16):
    calc = HeterogeneousEnsembleCalculator(
        [sevenn_member, chgnet_member], weights=[2.0, 1.0, 1.0], witnesses=[r2scan_member]
    )
    alone = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], weights=[2.0, 1.0])
    assert calc.get_potential_energy(w16.copy()) == alone.get_potential_energy(w16.copy())
    np.testing.assert_allclose(calc.predictor_weights, [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(calc.weights, [0.5, 0.25, 0.25])
    r = calc.results
    assert r["uncertainty"] == pytest.approx(_hand_u(r["member_forces"], np.array([2.0, 1.0, 1.0])), rel=1e-12)


def test_witness_of_another_level_is_accepted_a_predictor_is_refused(chgnet_member, r2scan_member):
    HeterogeneousEnsembleCalculator([chgnet_member], witnesses=[r2scan_member])
    HeterogeneousEnsembleCalculator([chgnet_member, dataclasses.replace(r2scan_member, role="witness")])
    with pytest.raises(MixedReferenceError, match=r"chgnet:0\.3\.0 \(PBE\+U\), chgnet:r2scan \(r2SCAN\)"):
        HeterogeneousEnsembleCalculator([chgnet_member, r2scan_member])


def test_one_member_of_u_is_refused_before_any_model_loads():
    # An unknown model would raise UnknownModelError if it were loaded.
    with pytest.raises(TooFewMembersError, match=r"at least two members for U .* got 1 predictor\(s\) and 0"):
        HeterogeneousEnsembleCalculator(["sevenn:no-such-model"])
    with pytest.raises(TooFewMembersError, match="at least one predictor; all 2 members are witnesses"):
        HeterogeneousEnsembleCalculator(["sevenn:no-such-model@role=witness"], witnesses=["chgnet:nothing"])
    assert issubclass(TooFewMembersError, ValueError)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "chgnet:0.3.0"], "at least two members for U"),
        (["--models", "chgnet:0.3.0@role=witness", "--witnesses", "sevenn:7net-0"], "at least one predictor"),
    ],
)
def test_cli_refuses_one_member_of_u(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "W.extxyz", tungsten_cell(1))
    code = main(["md", "W.extxyz", "--steps", "2", *argv])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["W.extxyz"]  # no stray output


def test_drop_covers_witnesses(sevenn_member, chgnet_member, w16):
    alone = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    expected_forces = alone.get_forces(w16.copy())
    calc = HeterogeneousEnsembleCalculator(
        [sevenn_member, chgnet_member],
        witnesses=[faulty(chgnet_member, "raise", name="bad-witness"), dataclasses.replace(sevenn_member, name="w")],
        on_member_error="drop",
    )
    with pytest.warns(MemberDroppedWarning, match="bad-witness"):
        forces = calc.get_forces(w16.copy())
    assert np.array_equal(forces, expected_forces)  # the predictors' results are unchanged
    r = calc.results
    assert list(r["dropped_members"]) == ["bad-witness"]
    np.testing.assert_allclose(r["member_weights"], [1 / 3, 1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(r["predictor_weights"], [0.5, 0.5, 0, 0])
    kept = r["member_forces"][[0, 1, 3]]
    assert r["uncertainty"] == pytest.approx(_hand_u(kept, np.ones(3)), rel=1e-12)
    # Every predictor lost: witnesses alone make no prediction.
    lost = HeterogeneousEnsembleCalculator(
        [faulty(chgnet_member, "raise", name="p")],
        witnesses=[sevenn_member, dataclasses.replace(sevenn_member, name="w")],
        on_member_error="drop",
    )
    with pytest.raises(MemberFailedError, match="no predictor gave results for W16"):
        lost.get_forces(w16.copy())
    with pytest.raises(ValueError, match="min_members must be between 2 and the"):
        HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], on_member_error="drop", min_members=1)


# ------------------------------------------------------------- files


def test_roles_survive_a_written_frame(witnessed, sevenn_member, chgnet_member, w16, tmp_path):
    atoms = w16.copy()
    atoms.calc = witnessed
    atoms.get_potential_energy()
    write(tmp_path / "f.extxyz", annotate(atoms, witnessed.results, witnessed.member_names, witnessed.weights))
    back = read(tmp_path / "f.extxyz")
    assert back.info["hetens_roles"] == "predictor,predictor,witness"
    np.testing.assert_allclose(back.info["hetens_predictor_weights"], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(back.info["hetens_weights"], [1 / 3] * 3)
    # Without witnesses, nothing new is written.
    plain = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    atoms.calc = plain
    atoms.get_potential_energy()
    frame = annotate(atoms, plain.results, plain.member_names, plain.weights)
    assert not {"hetens_roles", "hetens_predictor_weights"} & set(frame.info)


def test_roles_survive_an_ensemble_file_round_trip(sevenn_member, chgnet_member, tmp_path):
    from hetens.core.ensemble_file import load_ensemble_file, read_ensemble_file, write_ensemble_file

    calc = HeterogeneousEnsembleCalculator([sevenn_member], weights=[3.0, 1.0], witnesses=[chgnet_member])
    path = write_ensemble_file(calc, tmp_path / "ensemble.toml")
    assert [m.get("role") for m in read_ensemble_file(path)["members"]] == ["predictor", "witness"]
    back = load_ensemble_file(path, device="cpu")
    assert back.member_names == calc.member_names
    assert back.roles == ["predictor", "witness"]
    np.testing.assert_array_equal(back.weights, calc.weights)
    (tmp_path / "bad.toml").write_text('[[member]]\nspec = "chgnet:0.3.0"\nrole = "judge"\n')
    with pytest.raises(ValueError, match=r"bad\.toml, member 1: role must be \"predictor\" or \"witness\""):
        read_ensemble_file(tmp_path / "bad.toml")


def test_spec_role_option():
    from hetens.errors import MemberSpecError
    from hetens.catalogue.spec import parse_spec

    assert parse_spec("chgnet:r2scan@role=witness").options == {"role": "witness"}
    with pytest.raises(MemberSpecError, match="role must be 'predictor' or 'witness'; got 'judge'"):
        parse_spec("chgnet:r2scan@role=judge")


# ------------------------------------------------------------- energy references (issue 13 item 1)


def _copper():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1))
    atoms.rattle(0.02, seed=3)
    return atoms


def test_a_member_on_another_energy_reference_is_refused(sevenn_member, chgnet_member):
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member, EMT()])
    with pytest.raises(MixedReferenceError) as caught:
        calc.get_potential_energy(_copper())
    message = str(caught.value)
    assert re.search(r"sevenn:7net-0 -\d\.\d{3}, chgnet:0\.3\.0 -\d\.\d{3}, EMT -?0\.\d{3} \(eV/atom\)", message)
    assert "more than 1 eV/atom from their median" in message
    allowed = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member, EMT()], allow_mixed_reference=True)
    assert np.isfinite(allowed.get_potential_energy(_copper()))
    witness = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], witnesses=[EMT()])
    assert np.isfinite(witness.get_potential_energy(_copper()))  # witnesses are exempt
    strict = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], max_energy_deviation=1e-6)
    with pytest.raises(MixedReferenceError, match="more than 1e-06 eV/atom"):
        strict.get_potential_energy(_copper())


def test_cli_energy_reference_check(tmp_path, capsys):
    write(tmp_path / "W.extxyz", tungsten_cell(1))
    out = tmp_path / "out.extxyz"
    argv = ["score", str(tmp_path / "W.extxyz"), "-o", str(out), "--models", "sevenn:7net-0", "chgnet:0.3.0",
            "--device", "cpu", "--progress", "off"]
    assert main([*argv, "--max-energy-deviation", "0.000001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MixedReferenceError" not in err[0] and "sevenn:7net-0 -" in err[0]
    assert "more than 1e-06 eV/atom" in err[0] and not out.exists()
    assert main([*argv, "--max-energy-deviation", "-1"]) == 2
    assert "--max-energy-deviation must be a positive number" in capsys.readouterr().err


# ------------------------------------------------------------- rescoring and calibration


def _synthetic(tmp_path, n_frames: int = 24, n_members: int = 4):
    """``n_members`` prediction files (members m0..) and a reference, on 2-atom W cells."""
    rng = np.random.default_rng(11)
    frames = [bulk("W", "bcc", a=3.17) * (2, 1, 1) for _ in range(n_frames)]
    for f, atoms in enumerate(frames):
        atoms.rattle(0.05, seed=f)
    scale = np.exp(rng.normal(size=n_frames))
    truth = [rng.normal(size=(len(a), 3)) for a in frames]
    paths = []
    for m in range(n_members):
        out = []
        for f, atoms in enumerate(frames):
            frame = atoms.copy()
            forces = truth[f] + scale[f] * rng.normal(scale=0.1 * (m + 1), size=truth[f].shape)
            frame.calc = SinglePointCalculator(frame, energy=-13.0 + 0.01 * m, forces=forces)
            out.append(frame)
        path = tmp_path / f"m{m}.extxyz"
        write(path, out)
        paths.append(str(path))
    ref = []
    for f, atoms in enumerate(frames):
        frame = atoms.copy()
        frame.calc = SinglePointCalculator(frame, energy=-13.0, forces=truth[f])
        ref.append(frame)
    write(tmp_path / "ref.extxyz", ref)
    return paths, str(tmp_path / "ref.extxyz")


def test_precomputed_witnesses(tmp_path):
    from hetens.rescore.precomputed_scoring import score_precomputed

    paths, ref = _synthetic(tmp_path)
    alone = score_precomputed(paths[:3], tmp_path / "a.extxyz", reference=ref, progress="off")
    with_w = score_precomputed(paths, tmp_path / "b.extxyz", reference=ref, witnesses=["m3"], progress="off")
    a, b = read(tmp_path / "a.extxyz", ":"), read(tmp_path / "b.extxyz", ":")
    for x, y in zip(a, b):
        assert y.get_potential_energy() == pytest.approx(x.get_potential_energy(), rel=1e-12)
        np.testing.assert_allclose(y.get_forces(), x.get_forces(), rtol=1e-12, atol=1e-12)
        assert y.info["hetens_roles"] == "predictor,predictor,predictor,witness"
    assert with_w.report["roles"]["m3"] == "witness"
    assert with_w.report["spearman_rho"] != alone.report["spearman_rho"]
    with pytest.raises(ValueError, match="witness name\\(s\\) nobody match no prediction file"):
        score_precomputed(paths, None, witnesses=["nobody"])


def test_calibrate_and_score_know_roles(tmp_path, capsys):
    paths, ref = _synthetic(tmp_path)
    weights = tmp_path / "weights.json"
    code = main(["calibrate", "--reference", ref, "--precomputed", *paths, "--witness-names", "m3",
                 "-o", str(weights), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert [e["n"] for e in result["top_n_scan"]] == [1, 2, 3]  # over the predictors, m3 always in U
    assert all("m3" in e["members"] for e in result["top_n_scan"])
    assert result["top_n_scan"][0]["rho_without_witnesses"] is None
    assert {"rho_with_witnesses", "rho_without_witnesses"} <= set(result)
    written = json.loads(weights.read_text())
    assert written["roles"]["m3"] == "witness"
    assert set(written["roles"]) == set(written["weights"])
    from hetens.core.weights import read_weights_roles

    assert read_weights_roles(weights)["m3"] == "witness"
    # score --reference with the weights file: the ensemble as used, witnesses included.
    code = main(["score", "--precomputed", *paths, "--weights-file", str(weights), "--reference", ref,
                 "-o", str(tmp_path / "s.extxyz"), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["roles"]["m3"] == "witness"
    assert report["spearman_rho"] == pytest.approx(result["rho_with_witnesses"], abs=1e-12)


def test_score_and_plot_report_the_same_rho(tmp_path, capsys):
    """One definition of eps (issue 13 item 7): the error of the forces hetens returns."""
    paths, ref = _synthetic(tmp_path)
    scored = tmp_path / "s.extxyz"
    assert main(["score", "--precomputed", *paths, "--reference", ref, "-o", str(scored),
                 "--keep-member-forces", "--json"]) == 0
    rho = json.loads(capsys.readouterr().out)["spearman_rho"]
    for extra in ([], ["--reference", ref]):
        assert main(["plot", str(scored), "-o", str(tmp_path / "figs"), "--kinds", "error", *extra]) == 0
        printed = capsys.readouterr().out
        assert f"Spearman rho(U, eps) = {rho:.3f} (eps: max force error of the forces hetens returns)" in printed
    from hetens.rescore.plots import load_plot_data

    stored = load_plot_data([scored])
    recomputed = load_plot_data([scored], reference=ref)
    np.testing.assert_allclose(recomputed.eps, stored.eps, atol=1e-7)
    frames, labels = read(scored, ":"), read(ref, ":")
    eps = [np.max(np.linalg.norm(f.get_forces() - r.get_forces(), axis=1)) for f, r in zip(frames, labels)]
    np.testing.assert_allclose(stored.eps, eps, atol=1e-7)


def test_weights_file_roles_build_the_ensemble_and_a_cluster_spec_keeps_them(tmp_path, w16):
    """A weights file with roles is the ensemble (CLI path); a Dask worker rebuilds it, roles and weights exact."""
    import argparse

    from hetens.cli.options import add_ensemble_options, ensemble_from_args
    from hetens.distributed import EnsembleSpec

    path = tmp_path / "w.json"
    path.write_text(json.dumps({"weights": {"sevenn:7net-0": 0.5, "chgnet:0.3.0": 0.3},
                                "roles": {"sevenn:7net-0": "predictor", "chgnet:0.3.0": "witness"}}))
    parser = argparse.ArgumentParser()
    add_ensemble_options(parser)
    calc = ensemble_from_args(parser.parse_args(["--weights-file", str(path), "--device", "cpu"]))
    assert calc.roles == ["predictor", "witness"]
    np.testing.assert_allclose(calc.weights, [0.625, 0.375])
    np.testing.assert_allclose(calc.predictor_weights, [1.0, 0.0])
    spec = EnsembleSpec.from_calculator(calc)
    assert spec.models == ("sevenn:7net-0", "chgnet:0.3.0@role=witness")
    built = spec.build(device="cpu")
    assert built.member_names == calc.member_names and built.roles == calc.roles
    np.testing.assert_array_equal(built.weights, calc.weights)
    np.testing.assert_array_equal(built.combine_weights, calc.combine_weights)
    atoms = w16.copy()
    assert built.get_potential_energy(atoms) == calc.get_potential_energy(w16.copy())
    assert built.results["uncertainty"] == calc.results["uncertainty"]
