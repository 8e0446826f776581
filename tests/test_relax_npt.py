"""``hetens relax`` and NPT ``hetens md`` on the shipped models, against the ensemble's own lattice constant.

The reference is computed here: an E(V) scan of 2-atom bcc W with the same
two-member ensemble, fitted with ASE's equation of state. A strained cell
relaxed with ``--cell`` must land on it; NPT at 0 GPa from a stretched cell
must pull the volume back towards it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from hetens.cli.main import main
from hetens.monitor import read_log
from hetens.monitor.csvlog import CELL_COLUMNS, COLUMNS

PAIR = ["sevenn:7net-0", "chgnet:0.3.0"]
MODELS = ["--models", *PAIR, "--device", "cpu"]


@pytest.fixture(scope="module")
def pair_calc():
    import hetens

    return hetens.HeterogeneousEnsembleCalculator(PAIR, device="cpu")


@pytest.fixture(scope="module")
def lattice_constant(pair_calc):
    """The ensemble's bcc W lattice constant (Å) from an E(V) scan of the 2-atom cubic cell."""
    from ase.eos import EquationOfState

    volumes, energies = [], []
    for a in np.linspace(3.12, 3.26, 5):
        atoms = bulk("W", "bcc", a=a, cubic=True)
        atoms.calc = pair_calc
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    v0, _, _ = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    a0 = float(v0 ** (1 / 3))
    assert 3.12 < a0 < 3.26, f"the E(V) minimum {a0} lies outside the scan"
    return a0


def test_relax_with_cell_reaches_the_ensembles_lattice_constant(lattice_constant, tmp_path, capsys):
    strained = bulk("W", "bcc", a=3.17, cubic=True)
    strained.set_cell(strained.cell * [1.04, 0.98, 1.03], scale_atoms=True)
    strained.rattle(0.02, seed=2)
    src, out, log = tmp_path / "ws.extxyz", tmp_path / "ws.relaxed.extxyz", tmp_path / "ws.csv"
    write(src, strained)
    code = main(["relax", str(src), *MODELS, "--cell", "--fmax", "0.005", "--steps", "60",
                 "-o", str(out), "--log", str(log), "--json"])
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["status"] == "completed" and summary["converged"] is True
    assert summary["members"] == PAIR and summary["output"] == str(out)
    assert summary["fmax"] < 0.005 and abs(summary["pressure_GPa"]) < 0.5
    assert "outcome        completed (converged)" in captured.err

    relaxed = read(out)
    lengths, angles = relaxed.cell.cellpar()[:3], relaxed.cell.cellpar()[3:]
    assert lengths == pytest.approx([lattice_constant] * 3, abs=0.004)  # 0.1 % of 3.19 Å
    assert angles == pytest.approx([90, 90, 90], abs=0.2)
    assert relaxed.info["hetens_U"] == pytest.approx(summary["U"])
    assert relaxed.info["hetens_converged"] is True or relaxed.info["hetens_converged"] == 1
    assert relaxed.arrays["hetens_u"].shape == (2,)
    assert relaxed.get_potential_energy() == pytest.approx(summary["energy"])

    rows = read_log(log)  # one row per optimiser step, with pressure and volume
    with open(log) as handle:
        assert tuple(handle.readline().strip().split(",")) == CELL_COLUMNS
    assert rows["step"].tolist() == list(range(summary["steps_done"] + 1))
    assert rows["V"][-1] == pytest.approx(relaxed.get_volume(), rel=1e-6)
    assert abs(rows["P"][-1]) < 0.5 and abs(rows["P"][0]) > 2  # strained start, relaxed end
    assert np.all(np.isnan(rows["T"])) and np.all(rows["U"] >= 0)
    assert log.with_suffix(".png").exists()


def test_relax_api_without_cell_logs_the_md_columns(pair_calc, tmp_path):
    from hetens.monitor import run_relaxation

    atoms = bulk("W", "bcc", a=3.19, cubic=True)
    atoms.rattle(0.03, seed=3)
    start_cell = atoms.cell.copy()
    atoms.calc = pair_calc
    relaxation = run_relaxation(atoms, fmax=0.01, steps=40, optimizer="FIRE", log=tmp_path / "r.csv")
    assert relaxation.outcome.converged and relaxation.fmax < 0.01
    assert np.allclose(atoms.cell, start_cell)  # the cell is left alone without cell=True
    assert relaxation.volume is None and relaxation.pressure_GPa is not None
    with open(tmp_path / "r.csv") as handle:
        assert tuple(handle.readline().strip().split(",")) == COLUMNS
    assert relaxation.frame.info["hetens_optimizer"] == "FIRE"
    assert relaxation.frame.info["hetens_U"] == pytest.approx(pair_calc.results["uncertainty"])


def test_relax_halt_exits_3_and_writes_no_relaxed_structure(tmp_path, capsys):
    atoms = bulk("W", "bcc", a=3.17, cubic=True)
    atoms.rattle(0.05, seed=4)
    src = tmp_path / "w.extxyz"
    write(src, atoms)
    out = tmp_path / "w.relaxed.extxyz"
    code = main(["relax", str(src), *MODELS, "--halt-above", "1e-6", "-o", str(out),
                 "--log", str(tmp_path / "w.csv"), "--no-plot", "--json"])
    assert code == 3
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "halted" and summary["halted_at"] == 0 and summary["output"] is None
    assert not out.exists()
    offending = read(tmp_path / "w.halt.extxyz", ":")[-1]
    assert offending.info["hetens_U"] > 1e-6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fmax", "0"], "fmax must be > 0"),
        (["--steps", "-1"], "steps must be >= 0"),
        (["--scalar-pressure", "1"], "--scalar-pressure applies to a cell relaxation"),
        (["-o", "x.traj"], "use a .extxyz"),
        (["--halt-above", "-1"], "--halt-above must be a positive U"),
        (["--index", ":"], "hetens relax relaxes one"),
    ],
)
def test_relax_bad_input_exits_2_with_one_line_before_loading(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atoms = bulk("W", "bcc", a=3.17, cubic=True)
    write(tmp_path / "w.extxyz", [atoms, atoms])
    assert main(["relax", "w.extxyz", "--models", "no:such-model", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.extxyz"]


def test_relax_cell_refuses_a_molecule(tmp_path, capsys):
    from ase.build import molecule

    write(tmp_path / "h2o.xyz", molecule("H2O"))
    assert main(["relax", str(tmp_path / "h2o.xyz"), "--cell", "--models", "no:such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cell needs a structure periodic in all three directions" in err[0]


def test_npt_at_zero_pressure_pulls_the_volume_back_to_the_relaxed_one(lattice_constant, tmp_path, capsys):
    stretched = bulk("W", "bcc", a=lattice_constant * 1.01, cubic=True).repeat(2)  # 3 % too large, P < 0
    v_relaxed = 16 / 2 * lattice_constant**3
    write(tmp_path / "w16.extxyz", stretched)
    log = tmp_path / "npt.csv"
    code = main(["md", str(tmp_path / "w16.extxyz"), *MODELS, "--dynamics", "npt-berendsen", "--pressure", "0",
                 "--temperature", "300", "--barostat-time", "20", "--bulk-modulus", "300", "--steps", "10",
                 "--log", str(log), "--no-plot", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dynamics"] == "npt-berendsen" and summary["status"] == "completed"
    with open(log) as handle:
        assert tuple(handle.readline().strip().split(",")) == CELL_COLUMNS
    rows = read_log(log)
    assert rows["step"].tolist() == list(range(11))
    assert rows["P"][0] < -3  # the stretched cell is under tension
    assert np.all(np.abs(rows["V"] / v_relaxed - 1) < 0.04)  # within a few percent throughout
    assert abs(rows["V"][-1] - v_relaxed) < abs(rows["V"][0] - v_relaxed)  # and moving towards it
    assert np.all(np.isfinite(rows["T"]))


def test_deprecated_ensemble_option_still_runs_with_one_notice(tmp_path, capsys):
    atoms = bulk("W", "bcc", a=3.19, cubic=True)
    write(tmp_path / "w2.extxyz", atoms)
    log = tmp_path / "mtk.csv"
    code = main(["md", str(tmp_path / "w2.extxyz"), *MODELS, "--ensemble", "npt-mtk", "--steps", "2",
                 "--log", str(log), "--no-plot"])
    assert code == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hetens md: --ensemble is deprecated (it reads as the ensemble of models); use --dynamics npt-mtk"]
    rows = read_log(log)
    assert rows["step"].tolist() == [0, 1, 2] and np.all(rows["V"] > 0) and np.all(np.isfinite(rows["P"]))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ensemble", "nve", "--dynamics", "langevin"], "disagree; give only --dynamics"),
        (["--dynamics", "npt-berendsen", "--barostat-time", "0"], "barostat time constant must be > 0 fs"),
        (["--dynamics", "npt-berendsen", "--bulk-modulus", "-5"], "bulk modulus must be > 0 GPa"),
        (["--dynamics", "npt-mtk", "--temperature", "0"], "npt-mtk needs a temperature > 0 K"),
        (["--pressure", "1"], "--pressure applies to --dynamics npt-berendsen or npt-mtk; this run is langevin"),
        (["--dynamics", "nve", "--bulk-modulus", "300"], "--bulk-modulus applies to --dynamics npt-berendsen"),
    ],
)
def test_md_dynamics_bad_input_exits_2(extra, message, tmp_path, capsys):
    write(tmp_path / "w.extxyz", bulk("W", "bcc", a=3.19, cubic=True))
    code = main(["md", str(tmp_path / "w.extxyz"), "--models", "no:such-model", "--log", str(tmp_path / "x.csv"),
                 *extra])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "x.csv").exists()


def test_make_md_builds_the_npt_classes_and_refuses_a_molecule():
    from ase.build import molecule
    from ase.md.nose_hoover_chain import IsotropicMTKNPT
    from ase.md.nptberendsen import NPTBerendsen

    from hetens.cli.md import DYNAMICS as CLI_DYNAMICS
    from hetens.monitor.dynamics import DYNAMICS, is_variable_cell, make_md

    assert CLI_DYNAMICS == DYNAMICS
    atoms = bulk("W", "bcc", a=3.19, cubic=True)
    assert isinstance(make_md(atoms.copy(), dynamics="npt-berendsen"), NPTBerendsen)
    mtk = make_md(atoms.copy(), dynamics="npt-mtk", pressure_GPa=1.0)
    assert isinstance(mtk, IsotropicMTKNPT) and is_variable_cell(mtk)
    assert not is_variable_cell(make_md(atoms.copy(), ensemble="nve"))
    with pytest.raises(ValueError, match="must be periodic in all three directions"):
        make_md(molecule("H2O"), dynamics="npt-berendsen")


def test_logged_pressure_is_ases_pressure_with_the_ideal_gas_term(pair_calc):
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta

    from hetens.monitor.observation import ensemble_pressure_GPa

    atoms = bulk("W", "bcc", a=3.15, cubic=True)
    thermalize_momenta(atoms, temperature_K=2000, rng=np.random.default_rng(0))
    atoms.calc = pair_calc
    ase_pressure = -np.trace(atoms.get_stress(voigt=False, include_ideal_gas=True)) / 3 / units.GPa
    assert atoms.get_kinetic_energy() > 0.01  # the ideal-gas term is not zero here
    assert ensemble_pressure_GPa(atoms, pair_calc.results) == pytest.approx(ase_pressure, rel=1e-9)
    assert ensemble_pressure_GPa(atoms, {"energy": 0.0}) is None


def test_relax_ctrl_c_exits_130_keeping_the_log_and_writing_no_relaxed_structure(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from conftest import tungsten_cell

    write(tmp_path / "w16.extxyz", tungsten_cell(2, rattle=0.1, seed=7))
    log, out = tmp_path / "r.csv", tmp_path / "r.extxyz"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hetens.cli.main", "relax", str(tmp_path / "w16.extxyz"), "--models", "sevenn:7net-0", "chgnet:0.3.0",
         "--device", "cpu", "--fmax", "1e-9", "--steps", "100000", "--log", str(log), "-o", str(out),
         "--print-every", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    end = time.monotonic() + 600
    while time.monotonic() < end and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 4:  # header + 3 steps
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "Traceback" not in err, err
    rows = read_log(log)
    n = len(rows["step"])
    assert n >= 3 and rows["step"].tolist() == list(range(n))
    assert f"hetens relax: interrupted at step {n - 1} of 100000; log {log} has {n} rows; no relaxed structure " \
        "written" in err.splitlines()
    assert not out.exists()
