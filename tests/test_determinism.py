"""Same inputs, seed and device: bit-identical results and files, run to run."""

from __future__ import annotations

import hashlib

import numpy as np
from ase.io import write

from hetens import HeterogeneousEnsembleCalculator
from hetens.cli.main import main
from hetens.jobs.score_live import score_live

from conftest import tungsten_cell

MODELS = ["sevenn:7net-0", "chgnet:0.3.0"]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_monitored_md_files_are_identical_run_to_run(tmp_path, capsys):
    structure = tmp_path / "w16.extxyz"
    write(structure, tungsten_cell(2))
    runs = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        code = main([
            "md", str(structure), "--models", *MODELS, "--device", "cpu", "--steps", "6",
            "--temperature", "800", "--seed", "7", "--log", str(folder / "md.csv"),
            "--traj", str(folder / "md.extxyz"), "--traj-interval", "2", "--flag-above", "0.01",
            "--no-plot", "--print-every", "100",
        ])
        assert code == 0
        runs.append({name: digest(folder / name) for name in ("md.csv", "md.extxyz", "md.flagged.extxyz")})
    capsys.readouterr()
    assert runs[0] == runs[1]


def test_rescoring_output_is_identical_run_to_run(sevenn_member, chgnet_member, tmp_path):
    frames = [tungsten_cell(2, rattle=0.05 + 0.02 * i, seed=i) for i in range(6)]
    write(tmp_path / "in.extxyz", frames)
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    for name in ("a.extxyz", "b.extxyz"):
        score_live(tmp_path / "in.extxyz", tmp_path / name, calc, batch_size=4, progress="off")
    assert digest(tmp_path / "a.extxyz") == digest(tmp_path / "b.extxyz")


def test_calculator_results_are_bit_identical_on_fresh_ensembles(w16):
    results = []
    for _ in range(2):
        calc = HeterogeneousEnsembleCalculator(MODELS, device="cpu")
        calc.get_forces(w16.copy())
        results.append(calc.results)
    for key in ("energy", "forces", "stress", "uncertainty", "atomic_uncertainty", "member_forces"):
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)
