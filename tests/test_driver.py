"""A driver with periodic checks (``--driver``, ``--check-every``) and the trust window (``--flag-between``).

Real shipped models (SevenNet + CHGNet, one PBE reference) on the 16-atom W cell, a few steps.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.io import read

from hetens import HeterogeneousEnsembleCalculator
from hetens.cli.main import main
from hetens.monitor import UncertaintyMonitor, read_log, run_monitored
from hetens.monitor.driver import CheckedDriverCalculator
from hetens.monitor.dynamics import make_md

from conftest import tungsten_cell
from test_cli_md import DATA

DRIVER = "chgnet:0.3.0"


@pytest.fixture(scope="module")
def pair(sevenn_member, chgnet_member):
    return HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])


def nve(calc, temperature=1500.0, seed=1, timestep=2.0):
    atoms = tungsten_cell(2)
    atoms.calc = calc
    return atoms, make_md(atoms, timestep_fs=timestep, temperature_K=temperature, dynamics="nve", seed=seed)


@pytest.fixture(scope="module")
def driven_run(pair, tmp_path_factory):
    """8 NVE steps driven by CHGNet, checked every 3: U and a copy of the structure at each check."""
    folder = tmp_path_factory.mktemp("driver")
    calc = CheckedDriverCalculator(pair, DRIVER, 3)
    atoms, dyn = nve(calc)
    checks = []

    def keep():
        if calc.results["uncertainty_fresh"]:
            checks.append((dyn.nsteps, atoms.copy(), float(calc.results["uncertainty"]),
                           np.array(calc.results["forces"])))

    dyn.attach(keep)
    with UncertaintyMonitor(dyn, log=folder / "run.csv") as monitor:
        outcome = run_monitored(dyn, 8, monitor)
    return calc, checks, outcome, folder / "run.csv", monitor


def test_u_at_a_check_equals_the_full_ensemble_u(driven_run, pair):
    calc, checks, outcome, _, _ = driven_run
    assert [step for step, *_ in checks] == [0, 3, 6]
    assert calc.calls == 9 and calc.checks == 3
    for step, atoms, u, forces in checks:
        pair.reset()
        atoms.calc = pair
        assert abs(pair.get_uncertainty(atoms) - u) <= 1e-9, step
        i = pair.member_names.index(DRIVER)
        # The driver's forces propagate, also on a check step.
        np.testing.assert_allclose(forces, pair.results["member_forces"][i], atol=1e-6)


def test_the_log_leaves_u_empty_between_checks(driven_run):
    _, checks, outcome, log, monitor = driven_run
    rows = read_log(log)
    assert rows["step"].tolist() == list(range(9))
    fresh = np.isfinite(rows["U"])
    assert fresh.tolist() == [s % 3 == 0 for s in range(9)]
    assert np.all(np.isnan(rows["max_u"][~fresh])) and np.all(np.isfinite(rows["energy"]))
    assert [m for m, f in zip(rows["most_deviating"], fresh) if not f] == [""] * 6
    assert rows["trust"] == [""] * 9  # a driver run has the column; without a window it stays empty
    np.testing.assert_allclose(rows["U"][fresh], [u for _, _, u, _ in checks], atol=1e-6)
    assert outcome.observed == 3 and len(monitor.history) == 3


def test_between_checks_only_the_driver_runs(pair, monkeypatch):
    from test_monitor import count_calls

    calc = CheckedDriverCalculator(pair, DRIVER, 4)
    counts = count_calls(pair, monkeypatch)
    atoms, dyn = nve(calc)
    run_monitored(dyn, 4, UncertaintyMonitor(dyn))  # steps 0..4: checks at 0 and 4
    # two members at each of the 2 checks, the driver alone at the 3 other steps
    assert len(counts) == 2 * 2 + 3


def test_nve_drift_is_no_more_than_the_driver_alone(pair, chgnet_member):
    """Total energy over 30 NVE steps: driven by CHGNet with checks every 5, and CHGNet alone."""

    def drift(calc):
        atoms, dyn = nve(calc, temperature=600.0, seed=3)
        totals = []
        dyn.attach(lambda: totals.append(atoms.get_potential_energy() + atoms.get_kinetic_energy()))
        dyn.run(30)
        return float(np.max(np.abs(np.array(totals) - totals[0])))

    chgnet_member.calculator.reset()
    alone = drift(chgnet_member.calculator)
    driven = drift(CheckedDriverCalculator(pair, DRIVER, 5))
    # The same trajectory up to float32 rounding in the check steps' grouped evaluation.
    assert driven <= alone * 1.05 + 1e-4, (driven, alone)


def test_halt_acts_at_checks_and_keeps_the_last_checked_safe_frame(driven_run, pair, tmp_path):
    _, checks, _, _, _ = driven_run
    us = [u for _, _, u, _ in checks]
    if not us[2] > us[0]:
        pytest.skip(f"U did not rise over the first checks: {us}")
    threshold = 0.5 * (us[0] + us[2]) if us[1] >= us[2] else 0.5 * (max(us[0], us[1]) + us[2])
    calc = CheckedDriverCalculator(pair, DRIVER, 3)
    atoms, dyn = nve(calc)
    with UncertaintyMonitor(dyn, log=tmp_path / "h.csv", halt_above=threshold,
                            halt_file=tmp_path / "h.extxyz") as monitor:
        outcome = run_monitored(dyn, 8, monitor)
    assert outcome.halted and outcome.halted_at % 3 == 0
    safe, offending = read(tmp_path / "h.extxyz", ":")
    assert safe.info["hetens_step"] % 3 == 0 and safe.info["hetens_U"] <= threshold
    assert offending.info["hetens_U"] > threshold and safe.info["hetens_driver"] == DRIVER


@pytest.mark.parametrize("consecutive", [2, 3])
def test_a_check_above_the_halt_level_is_confirmed_on_the_next_steps(pair, tmp_path, consecutive):
    """Checks every 50 steps, U above the level from step 0: the halt comes at step consecutive - 1."""
    calc = CheckedDriverCalculator(pair, DRIVER, 50)
    atoms, dyn = nve(calc)
    with UncertaintyMonitor(dyn, log=tmp_path / "c.csv", halt_above=1e-4, halt_consecutive=consecutive,
                            halt_file=tmp_path / "c.extxyz") as monitor:
        outcome = run_monitored(dyn, 8, monitor)
    assert outcome.halted and outcome.halted_at == consecutive - 1
    rows = read_log(tmp_path / "c.csv")
    assert np.isfinite(rows["U"]).tolist() == [True] * consecutive  # every step a check, the halt's too
    assert calc.checks == consecutive
    (offending,) = read(tmp_path / "c.extxyz", ":")  # no checked frame was ever below the level
    assert offending.info["hetens_step"] == consecutive - 1


def test_a_check_below_the_halt_level_keeps_the_schedule(pair):
    calc = CheckedDriverCalculator(pair, DRIVER, 4)
    atoms, dyn = nve(calc)
    outcome = run_monitored(dyn, 8, UncertaintyMonitor(dyn, halt_above=1e3, halt_consecutive=2))
    assert not outcome.halted and calc.checks == 3  # steps 0, 4, 8


def test_trust_window_sorts_checks_into_accurate_candidate_failed(driven_run, pair, tmp_path):
    _, checks, _, _, _ = driven_run
    us = sorted(u for _, _, u, _ in checks)
    lo, hi = 0.5 * (us[0] + us[1]), 0.5 * (us[1] + us[2])
    calc = CheckedDriverCalculator(pair, DRIVER, 3)
    atoms, dyn = nve(calc)
    with UncertaintyMonitor(dyn, log=tmp_path / "t.csv", flag_above=lo, flag_below=hi,
                            flagged=tmp_path / "cand.extxyz", failed=tmp_path / "failed.extxyz") as monitor:
        outcome = run_monitored(dyn, 8, monitor)
    assert outcome.trust == {"accurate": 1, "candidate": 1, "failed": 1}
    rows = read_log(tmp_path / "t.csv")
    assert sorted(t for t in rows["trust"] if t) == ["accurate", "candidate", "failed"]
    (candidate,) = read(tmp_path / "cand.extxyz", ":")
    (failed,) = read(tmp_path / "failed.extxyz", ":")
    assert lo < candidate.info["hetens_U"] <= hi < failed.info["hetens_U"]
    # Candidate frames carry the ensemble's mean forces (for labels), not the driver's.
    assert candidate.get_forces().shape == (16, 3)
    assert "trust window   accurate 1, candidate 1, failed 1" in outcome.summary()


def test_witness_cannot_drive_and_unknown_driver_is_named(pair, sevenn_member, chgnet_member):
    with pytest.raises(ValueError, match="unknown driver 'mace:x'"):
        CheckedDriverCalculator(pair, "mace:x", 5)
    with pytest.raises(ValueError, match="check_every must be"):
        CheckedDriverCalculator(pair, DRIVER, 0)
    witnessed = HeterogeneousEnsembleCalculator([sevenn_member], witnesses=[chgnet_member])
    with pytest.raises(ValueError, match="is a witness"):
        CheckedDriverCalculator(witnessed, DRIVER, 5)
    with pytest.raises(ValueError, match="has none"):
        CheckedDriverCalculator(pair, "predictors", 5)


PAIR = ["--models", "sevenn:7net-0", "chgnet:0.3.0", "--device", "cpu"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*PAIR, "--driver", "mace:medium"], "unknown driver 'mace:medium'"),
        (["--models", "sevenn:7net-0", "--witnesses", "chgnet:0.3.0", "--driver", "chgnet:0.3.0"], "is a witness"),
        ([*PAIR, "--driver", DRIVER, "--check-every", "0"], "--check-every must be >= 1"),
        ([*PAIR, "--check-every", "5"], "--check-every needs --driver"),
        ([*PAIR, "--flag-between", "0.3", "0.2"], "needs LO < HI"),
        ([*PAIR, "--flag-between", "0.3", "0.3"], "needs LO < HI"),
        ([*PAIR, "--flag-between", "0.1", "0.3", "--flag-above", "0.2"], "not both"),
    ],
)
@pytest.mark.parametrize("command", ["md", "relax"])
def test_bad_driver_and_window_input_exits_2_before_loading(command, argv, message, capsys, tmp_path, monkeypatch):
    import hetens.core.member

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(hetens.core.member, "load_member", no_loading)
    assert main([command, DATA, *argv, "--log", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x.csv").exists()


def test_md_cli_with_a_driver_and_window(tmp_path, capsys):
    log = tmp_path / "d.csv"
    code = main(["md", DATA, *PAIR, "--driver", DRIVER, "--check-every", "2", "--steps", "4", "--dynamics", "nve",
                 "--temperature", "1500", "--log", str(log), "--flag-between", "0.001", "50"])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"driver {DRIVER}, U checked every 2 steps" in out
    assert "trust window   accurate 0, candidate 3, failed 0" in out
    rows = read_log(log)
    assert np.isfinite(rows["U"]).tolist() == [True, False, True, False, True]
    assert rows["trust"] == ["candidate", "", "candidate", "", "candidate"]
    assert [f.info["hetens_step"] for f in read(tmp_path / "d.flagged.extxyz", ":")] == [0, 2, 4]
    assert (tmp_path / "d.png").exists()


def test_relaxation_with_a_driver_checks_the_final_structure(pair, tmp_path):
    from ase.build import bulk

    from hetens.monitor import run_relaxation

    atoms = bulk("W", "bcc", a=3.19, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=3)
    atoms.calc = CheckedDriverCalculator(pair, DRIVER, 4)
    relaxation = run_relaxation(atoms, fmax=0.02, steps=30, optimizer="FIRE", log=tmp_path / "r.csv")
    rows = read_log(tmp_path / "r.csv")
    assert np.isfinite(rows["U"]).tolist() == [s % 4 == 0 for s in rows["step"]]
    final = atoms.copy()
    pair.reset()
    final.calc = pair
    assert relaxation.frame.info["hetens_U"] == pytest.approx(pair.get_uncertainty(final), abs=1e-9)
    assert relaxation.fmax == pytest.approx(float(np.linalg.norm(atoms.calc.results["forces"], axis=1).max()))
