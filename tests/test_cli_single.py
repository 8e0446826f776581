"""``hetens single``: one structure's energy, forces, stress, U and member energies, as text and JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from hetens.cli.main import main

PAIR = ["sevenn:7net-0", "chgnet:0.3.0"]


@pytest.fixture(scope="module")
def structure(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    atoms = bulk("W", "bcc", a=3.17, cubic=True)
    atoms.rattle(0.03, seed=1)
    write(folder / "w2.extxyz", [atoms, atoms.copy()])  # two frames: --index picks one
    return folder / "w2.extxyz", atoms


def test_json_matches_the_calculator_and_the_written_frame(structure, tmp_path, capsys):
    import hetens

    path, atoms = structure
    config = tmp_path / "single.yaml"
    config.write_text("models: [sevenn:7net-0]\ndevice: cpu\nindex: 0\n")  # --models below wins
    out = tmp_path / "w2.out.extxyz"
    code = main(["single", str(path), "--config", str(config), "--models", *PAIR, "-o", str(out), "--json"])
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert captured.err == ""
    assert summary["members"] == PAIR and summary["index"] == "0" and summary["natoms"] == 2

    calc = hetens.HeterogeneousEnsembleCalculator(PAIR, device="cpu")
    ref = atoms.copy()
    ref.calc = calc
    energy, forces, stress = ref.get_potential_energy(), ref.get_forces(), ref.get_stress()
    assert summary["energy"] == pytest.approx(energy, abs=1e-5)
    assert summary["energy_per_atom"] == pytest.approx(energy / 2, abs=1e-5)
    assert summary["forces_max"] == pytest.approx(np.linalg.norm(forces, axis=1).max(), abs=1e-5)
    assert summary["forces_rms"] == pytest.approx(np.sqrt(np.mean(forces**2)), abs=1e-5)
    assert summary["stress_GPa"] == pytest.approx(stress * 160.21766208, abs=1e-3)
    assert summary["pressure_GPa"] == pytest.approx(-stress[:3].mean() * 160.21766208, abs=1e-3)
    assert summary["U"] == pytest.approx(calc.results["uncertainty"], abs=1e-6)
    assert summary["max_u"] == pytest.approx(calc.results["atomic_uncertainty"].max(), abs=1e-6)
    assert list(summary["member_energies"]) == PAIR
    assert list(summary["member_energies"].values()) == pytest.approx(calc.results["member_energies"], abs=1e-5)
    assert summary["most_deviating"] in PAIR and summary["output"] == str(out)

    frame = read(out)
    assert frame.info["hetens_U"] == pytest.approx(summary["U"])
    assert frame.arrays["hetens_u"].shape == (2,)
    assert frame.get_potential_energy() == pytest.approx(summary["energy"])


def test_text_output_names_every_quantity_with_units(structure, capsys):
    path, _ = structure
    assert main(["single", str(path), "--models", *PAIR, "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    for needle in ("energy ", " eV  (", "eV/atom)", "max |F|", "RMS", "stress [GPa]", "(pressure ",
                   "U              ", "max per-atom u", "most deviating", "chgnet:0.3.0"):
        assert needle in text, (needle, text)
    assert "sevenn:7net-0  predictor     0.500             0.500" in text, text


def test_witness_is_shown_with_its_role_and_both_weights(structure, capsys):
    """Issue 22 (3): a witness is in U (its U weight) but not in the returned energy (predictor
    weight 0), and the table says so, as 'score' does."""
    path, _ = structure
    members = ["--models", *PAIR, "--witnesses", "sevenn:7net-0@name=w", "--device", "cpu"]
    assert main(["single", str(path), *members, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["roles"] == ["predictor", "predictor", "witness"]
    assert summary["weights"] == pytest.approx([1 / 3] * 3)
    assert summary["predictor_weights"] == pytest.approx([0.5, 0.5, 0.0])
    predicted = [summary["member_energies"][n] for n in PAIR]
    assert summary["energy"] == pytest.approx(np.mean(predicted), abs=1e-5)
    assert main(["single", str(path), *members]) == 0
    text = capsys.readouterr().out
    assert "role       U weight  predictor weight" in text, text
    assert "  w              witness       0.333             0.000" in text, text
    assert "(witness: in U only; its energy may be on another reference)" in text
    assert "energy, forces and stress are the predictors' weighted mean; U uses every member" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--index", ":"], "selects 2 frames; hetens single evaluates one"),
        (["-o", "x.traj"], "use a .extxyz name"),
    ],
)
def test_bad_input_exits_2_with_one_line(structure, extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, _ = structure
    assert main(["single", str(path), "--models", "no:such-model", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_default_ensemble_summary_places_u_on_the_shipped_scale():
    """Issue 22 (4): the shipped calibration of the default ensemble is printed under U, and a
    witness deviating most is named as such (no model runs: the summary is formatted)."""
    import hetens
    from hetens.cli.single import format_summary
    from hetens.catalogue.u_scale import default_u_scale

    names = [*hetens.DEFAULT_MEMBERS, *hetens.DEFAULT_WITNESSES]
    scale = default_u_scale()
    assert scale["members"] == names and 1.0 < scale["k95"] < 10.0
    assert set(scale["by_class"]) >= {"crystal_calm", "crystal_hot", "defect", "liquid"}
    summary = {
        "structure": "w.extxyz", "formula": "W2", "natoms": 2, "energy": -25.0, "energy_per_atom": -12.5,
        "forces_max": 0.0, "forces_rms": 0.0, "stress_GPa": None, "U": 1.5, "max_u": 1.0, "max_u_atom": 0,
        "energy_std": 0.1, "most_deviating": names[2], "members": names, "weights": [1 / 3] * 3,
        "roles": ["predictor", "predictor", "witness"], "predictor_weights": [0.5, 0.5, 0.0],
        "member_energies": dict.fromkeys(names, -25.0), "member_energies_per_atom": dict.fromkeys(names, -12.5),
    }
    text = format_summary(summary)
    assert f"most deviating {names[2]}  (the most deviating member is the witness {names[2]}" in text
    assert f"eps <~ {scale['k95'] * 1.5:.2g} eV/A" in text and f"U scale        on {scale['n_frames']} W DFT frames" in text


def test_score_report_says_who_deviates_most_and_places_the_median_u():
    """Issue 22 (4): the score summary counts the frames on which each member deviated most, says
    when that is a witness, and places the median U on the default ensemble's shipped scale."""
    import hetens
    from hetens.catalogue.u_scale import default_u_scale
    from hetens.rescore.report import build_report, format_report

    names = [*hetens.DEFAULT_MEMBERS, *hetens.DEFAULT_WITNESSES]
    u = np.array([0.5, 1.0, 2.0, 4.0])
    report = build_report(names, [1 / 3] * 3, u, [54] * 4, [0.1] * 4,
                          roles=["predictor", "predictor", "witness"], most_deviating_frames=[1, 0, 3])
    assert report["most_deviating_frames"] == {names[0]: 1, names[1]: 0, names[2]: 3}
    text = format_report(report)
    assert (f"most deviating: {names[2]} on 3 of 4 frames ({names[0]} 1); the most deviating member is "
            f"the witness {names[2]}") in text
    assert f"U scale: median U here 1.5 eV/A; on {default_u_scale()['n_frames']} W DFT frames" in text
    other = format_report(build_report(["a:x", "b:y"], [0.5, 0.5], u, [54] * 4, [0.1] * 4,
                                       most_deviating_frames=[3, 1]))
    assert "most deviating: a:x on 3 of 4 frames (b:y 1)" in other and "U scale" not in other
