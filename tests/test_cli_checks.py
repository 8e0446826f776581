"""What a new user hits (issue 13): checks that fail before any model loads, messages that say
what is wrong, default names, and ``hetens.annotate(atoms)``.

The CLI cases load no model: the family adapters are made to fail the test if anything
tries, so each case proves its check runs first (no timing involved).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write

import hetens
from hetens.cli.main import main

DATA = str(Path(__file__).resolve().parents[1] / "examples" / "data" / "W_bcc_16.extxyz")
PAIR = ["sevenn:7net-0", "chgnet:0.3.0"]


@pytest.fixture
def no_model_loads(monkeypatch, tmp_path):
    """Any model load fails the test; the commands run in an empty folder."""
    import hetens.families
    import hetens.core.member

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input check")

    monkeypatch.setattr(hetens.core.member, "load_member", refuse)
    monkeypatch.setattr(hetens.families.Family, "adapter", refuse)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def broken_cif(tmp_path):
    path = tmp_path / "broken.cif"
    path.write_text("data_broken\n_cell_length_a 3.1\nloop_\n_atom_site_label\n")
    return str(path)


CASES = {
    # item 5: checks that used to wait for the model load
    "md --traj with a format that drops U": (
        ["md", DATA, "--models", *PAIR, "--traj", "run.traj"], "use a .extxyz (or .xyz) name"),
    "score --index past the end": (
        ["score", DATA, "--index", "100", "--models", *PAIR, "-o", "x.extxyz"],
        "--index 100 selects no frame; the file has 1 frame"),
    "md --weights, one for two members": (
        ["md", DATA, "--models", *PAIR, "--weights", "1"],
        "--weights has 1 value but --models names 2 members (sevenn:7net-0 chgnet:0.3.0)"),
    "score --force-rmse, three for two members": (
        ["score", DATA, "--models", *PAIR, "--force-rmse", "0.1", "0.2", "0.3", "-o", "x.extxyz"],
        "--force-rmse has 3 values but --models names 2 members"),
    "md negative weight": (["md", DATA, "--models", *PAIR, "--weights", "1", "-1"], "weights must be >= 0"),
    # item 6: a structure file after --models
    "score FILE after --models": (
        ["score", "--models", *PAIR, DATA, "-o", "x.extxyz"],
        f"which is a file, not a member spec (FAMILY:MODEL): --models takes every word after it, so give "
        f"the structure files first: hetens score {DATA} --models sevenn:7net-0 chgnet:0.3.0"),
    "md FILE after --models": (
        ["md", "--models", *PAIR, DATA],
        f"give the structure files first: hetens md {DATA} --models sevenn:7net-0 chgnet:0.3.0"),
    # item 9: messages
    "md --index past the end of a one-frame file": (
        ["md", DATA, "--models", *PAIR, "--index", "5"],
        "--index 5 selects no frame; the file has 1 frame (--index 0 or -1)"),
    "mistyped md option": (["md", DATA, "--temprature", "30"], "unrecognized option --temprature; did you "
                           "mean --temperature?"),
    "mistyped score option": (["score", DATA, "--idnex", "2", "-o", "x.extxyz"], "did you mean --index?"),
    "mistyped plot option": (["plot", DATA, "--prefx", "a"], "did you mean --prefix?"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_before_any_model_loads(case, no_model_loads, capsys):
    argv, message = CASES[case]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert list(no_model_loads.iterdir()) == []  # no log, plot or output file


def test_unreadable_structure_does_not_blame_an_index_not_given(no_model_loads, broken_cif, capsys):
    assert main(["md", broken_cif]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.cif: ASE read no structure from it; is it a valid cif file?" in err[0]
    assert "--index" not in err[0]


def test_unknown_argument_without_a_close_option_is_listed(no_model_loads, capsys):
    assert main(["md", DATA, "--zzz"]) == 2
    assert "unrecognized arguments: --zzz" in capsys.readouterr().err


# ---------------------------------------------------------------- item 10


def test_precomputed_default_names_keep_the_dots_of_model_versions(tmp_path, capsys):
    from hetens.rescore.precomputed import member_name_from_path, member_names_from_paths

    assert member_name_from_path("runs/pred_chgnet_0.3.0.extxyz") == "pred_chgnet_0.3.0"
    assert member_name_from_path("mace.xyz.gz") == "mace"
    assert member_name_from_path("7net-0.traj") == "7net-0"
    assert member_name_from_path("model.v2") == "model.v2"
    assert member_names_from_paths(["a/m.extxyz", "b/m.extxyz"]) == ["m", "m#2"]

    frames = read(DATA, ":")
    paths = []
    for name, shift in (("pred_chgnet_0.3.0", 0.0), ("pred_7net-0_v1.2", 0.02)):
        from ase.calculators.singlepoint import SinglePointCalculator

        out = []
        for atoms in frames:
            frame = atoms.copy()
            forces = np.zeros((len(frame), 3))
            forces[0, 0] = shift
            frame.calc = SinglePointCalculator(frame, energy=-100.0, forces=forces)
            out.append(frame)
        paths.append(str(tmp_path / f"{name}.extxyz"))
        write(paths[-1], out)
    assert main(["score", "--precomputed", *paths, "--json", "--progress", "off"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["members"] == ["pred_chgnet_0.3.0", "pred_7net-0_v1.2"]


# ---------------------------------------------------------------- item 8


def test_annotate_reads_the_attached_ensemble(sevenn_member, chgnet_member, tmp_path):
    from conftest import tungsten_cell

    atoms = tungsten_cell(1)
    calc = hetens.HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    atoms.calc = calc
    energy = atoms.get_potential_energy()

    frame = hetens.annotate(atoms)  # one argument: the attached ensemble is read
    explicit = hetens.annotate(atoms, calc.results, calc.member_names, calc.weights)
    assert frame.info["hetens_U"] == explicit.info["hetens_U"] == calc.results["uncertainty"]
    np.testing.assert_array_equal(frame.arrays["hetens_u"], explicit.arrays["hetens_u"])
    assert frame.info["hetens_members"] == "sevenn:7net-0,chgnet:0.3.0"

    write(tmp_path / "plain.extxyz", atoms)  # ASE's writer drops U ...
    assert "hetens_U" not in read(tmp_path / "plain.extxyz").info
    write(tmp_path / "kept.extxyz", frame)  # ... the annotated copy keeps it
    back = read(tmp_path / "kept.extxyz")
    assert back.info["hetens_U"] == pytest.approx(calc.results["uncertainty"])
    assert back.get_potential_energy() == pytest.approx(energy)

    moved = atoms.copy()
    moved.calc = calc
    moved.positions[0] += 0.05
    assert hetens.annotate(moved).info["hetens_U"] != frame.info["hetens_U"]  # computed for these atoms


def test_annotate_without_an_ensemble_says_what_to_do(tmp_path):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    atoms = bulk("Cu")
    with pytest.raises(ValueError, match="atoms has no calculator; attach a HeterogeneousEnsembleCalculator"):
        hetens.annotate(atoms)
    atoms.calc = EMT()
    with pytest.raises(ValueError, match="atoms has a EMT"):
        hetens.annotate(atoms)
    with pytest.raises(TypeError, match="give member_names and weights too"):
        hetens.annotate(atoms, {"uncertainty": 0.1})


def test_scored_file_copy_is_not_taken_for_a_spec(no_model_loads, capsys):
    """One spec then a structure file: the file is named and the right order shown."""
    shutil.copy(DATA, "pool.extxyz")
    assert main(["score", "--models", "sevenn:7net-0", "pool.extxyz", "-o", "x.extxyz"]) == 2
    err = capsys.readouterr().err
    assert "hetens score pool.extxyz --models sevenn:7net-0" in err
    assert sorted(p.name for p in no_model_loads.iterdir()) == ["pool.extxyz"]
