"""Live monitoring on real MD with the real shipped models (16-atom W, a few steps)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.io import read
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from ase.units import fs

from hetens import HeterogeneousEnsembleCalculator
from hetens.errors import UncertaintyHalt
from hetens.core.frames import annotate
from hetens.monitor import (
    FlagWriter,
    HaltOnUncertainty,
    UncertaintyLogger,
    UncertaintyMonitor,
    read_log,
    run_monitored,
)
from hetens.monitor.dynamics import make_md

from conftest import tungsten_cell


@pytest.fixture(scope="module")
def pair(sevenn_member, chgnet_member):
    return HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])


def hot_md(calc, temperature=1500.0, seed=1):
    atoms = tungsten_cell(2)
    atoms.calc = calc
    return atoms, make_md(atoms, timestep_fs=2.0, temperature_K=temperature, seed=seed)


def count_calls(calc, monkeypatch):
    """Count every member evaluation (the real models still run): calls of each member's
    ``calculate`` and, for families with a group path, one per member the adapter's
    ``evaluate_group`` computes (the ensemble evaluates in-process members of such a family
    through it)."""
    from hetens.families import FAMILIES
    from hetens.families.contract import GroupEvaluation

    counts = []
    for member in calc.members:
        member.calculator.reset()  # session-wide members may hold results for this very structure
        original = member.calculator.calculate

        def counted(*args, _original=original, **kwargs):
            counts.append(1)
            return _original(*args, **kwargs)

        member.calculator.calculate = counted
    for family in {m.family for m in calc.members}:
        adapter = FAMILIES[family].adapter()
        if isinstance(adapter, GroupEvaluation):
            def grouped(calculators, *args, _original=adapter.evaluate_group, **kwargs):
                outputs = _original(calculators, *args, **kwargs)
                if outputs is not None:
                    counts.extend(1 for _ in calculators)
                return outputs

            monkeypatch.setattr(adapter, "evaluate_group", grouped)
    return counts


def test_observers_add_no_model_evaluations(sevenn_member, chgnet_member, tmp_path, monkeypatch):
    """MD takes one evaluation for the start and one per step; the observers add none."""
    steps = 3
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    _, dyn = hot_md(calc)
    counts = count_calls(calc, monkeypatch)
    try:
        with UncertaintyMonitor(dyn, log=tmp_path / "u.csv", flag_above=1e-6, flagged=tmp_path / "f.extxyz",
                                halt_above=1e3, trajectory=tmp_path / "t.extxyz") as monitor:
            outcome = run_monitored(dyn, steps, monitor)
    finally:
        for member in calc.members:
            del member.calculator.calculate  # drop the instance attribute: back to the class method
    assert outcome.completed and outcome.observed == steps + 1
    assert monitor.flagged == monitor.trajectory.frames == steps + 1  # every observer did its work
    assert len(counts) == len(calc.members) * (steps + 1)


def test_halt_logs_every_step_up_to_the_halting_one(pair, tmp_path):
    atoms, dyn = hot_md(pair)
    log, halt_file = tmp_path / "u.csv", tmp_path / "halt.extxyz"
    # Every U is above 1e-6 eV/A: the third observation in a row halts, at step 2.
    with UncertaintyMonitor(dyn, log=log, halt_above=1e-6, halt_consecutive=3, halt_file=halt_file) as monitor:
        outcome = run_monitored(dyn, 10, monitor)
    assert outcome.halted and outcome.halted_at == 2
    assert outcome.steps_done == 2
    assert outcome.halt.consecutive == 3
    rows = read_log(log)
    assert rows["step"].tolist() == [0, 1, 2]
    assert rows["time_fs"] == pytest.approx([0.0, 2.0, 4.0])
    assert np.all(rows["U"] > 0) and np.all(rows["T"] > 0)
    assert set(rows["most_deviating"]) <= {"sevenn:7net-0", "chgnet:0.3.0"}
    assert rows["U"][-1] == pytest.approx(outcome.halt.uncertainty, rel=1e-5)
    # The offending frame is saved; there was no observation below the threshold.
    (offending,) = read(halt_file, ":")
    assert offending.info["hetens_role"] == "offending"
    assert offending.info["hetens_step"] == 2
    assert offending.info["hetens_U"] == pytest.approx(outcome.halt.uncertainty)
    assert offending.positions == pytest.approx(outcome.halt.atoms.positions, abs=1e-6)


def test_halt_keeps_the_last_safe_frame(pair, tmp_path):
    atoms, dyn = hot_md(pair)
    halt_file = tmp_path / "halt.extxyz"
    halter = HaltOnUncertainty(dyn, 1e3, save_to=halt_file)

    def tighten():  # attached first: from step 1 on, every U is above the threshold
        if dyn.nsteps >= 1:
            halter.threshold = 1e-6

    dyn.attach(tighten)
    dyn.attach(halter)
    with pytest.raises(UncertaintyHalt, match=r"halted at step 1 \(t = 2.0 fs\)") as info:
        dyn.run(3)
    last_safe, offending = read(halt_file, ":")
    assert last_safe.info["hetens_role"] == "last_safe" and last_safe.info["hetens_step"] == 0
    assert offending.info["hetens_role"] == "offending" and offending.info["hetens_step"] == 1
    assert info.value.last_safe.info["hetens_U"] == pytest.approx(last_safe.info["hetens_U"])
    assert info.value.uncertainty == pytest.approx(offending.info["hetens_U"])


def test_flagged_file_holds_exactly_the_frames_above_the_threshold(pair, tmp_path):
    atoms, dyn = hot_md(pair, temperature=2500.0, seed=7)
    atoms.get_forces()
    # Just above the U of the start (later frames fall either side), and off the start's
    # value by more than the log's rounding (1e-6), so no logged U ties with it.
    threshold = pair.results["uncertainty"] + 1e-4
    log, flagged = tmp_path / "u.csv", tmp_path / "flagged.extxyz"
    with UncertaintyMonitor(dyn, log=log, flag_above=threshold, flagged=flagged) as monitor:
        outcome = run_monitored(dyn, 6, monitor)
    rows = read_log(log)
    expected = [int(s) for s, u in zip(rows["step"], rows["U"]) if u > threshold]
    frames = read(flagged, ":") if flagged.exists() else []
    assert [f.info["hetens_step"] for f in frames] == expected
    assert outcome.flagged == len(expected)
    for frame in frames:
        row = int(np.flatnonzero(rows["step"] == frame.info["hetens_step"])[0])
        assert frame.info["hetens_U"] == pytest.approx(rows["U"][row], abs=1e-6)
        assert frame.info["hetens_U"] > threshold
        assert frame.arrays["hetens_u"].shape == (16,)
        assert frame.get_forces().shape == (16, 3)
        assert frame.get_potential_energy() == pytest.approx(rows["energy"][row], abs=1e-5)
        assert frame.info["hetens_member_energies"].shape == (2,)


def test_flag_spacing(pair, tmp_path):
    _, dyn = hot_md(pair)
    with FlagWriter(dyn, tmp_path / "f.extxyz", 1e-6, min_spacing=2) as flagger:
        dyn.attach(flagger)
        dyn.run(4)
    assert [f.info["hetens_step"] for f in read(tmp_path / "f.extxyz", ":")] == [0, 2, 4]


def test_relaxation_is_monitored_without_time(pair, tmp_path):
    atoms = tungsten_cell(2, rattle=0.1)
    atoms.calc = pair
    opt = BFGS(atoms, logfile=None)
    with UncertaintyMonitor(opt, log=tmp_path / "relax.csv") as monitor:
        outcome = run_monitored(opt, 3, monitor)
    rows = read_log(tmp_path / "relax.csv")
    assert rows["step"].tolist() == list(range(outcome.observed))
    assert np.isnan(rows["time_fs"]).all() and np.isnan(rows["T"]).all()
    assert outcome.converged in (True, False)


def test_observer_refuses_a_plain_calculator(tmp_path):
    from ase.build import bulk

    atoms = bulk("Cu", cubic=True)
    atoms.calc = EMT()
    dyn = VelocityVerlet(atoms, 1 * fs)
    logger = UncertaintyLogger(dyn, tmp_path / "u.csv")
    dyn.attach(logger)
    with pytest.raises(TypeError, match="need a HeterogeneousEnsembleCalculator"):
        dyn.run(1)
    logger.close()


def test_bad_thresholds(pair, tmp_path):
    _, dyn = hot_md(pair)
    with pytest.raises(ValueError, match="positive U"):
        HaltOnUncertainty(dyn, -1.0)
    with pytest.raises(ValueError, match="give both flag_above"):
        UncertaintyMonitor(dyn, flag_above=0.1)
    with pytest.raises(ValueError, match=r"\.extxyz"):
        FlagWriter(dyn, tmp_path / "f.traj", 0.1)


def test_writing_an_annotated_frame_again_does_not_raise(pair, tmp_path):
    from ase.io import write

    atoms = tungsten_cell(1)
    atoms.calc = pair
    atoms.get_forces()
    once = annotate(atoms, pair.results, pair.member_names, pair.weights)
    twice = annotate(once, pair.results, pair.member_names, pair.weights)
    write(tmp_path / "a.extxyz", [once, twice])
    back = read(tmp_path / "a.extxyz", ":")
    assert back[1].info["hetens_U"] == pytest.approx(pair.results["uncertainty"])


def test_halt_streak_and_flag_spacing_rules(tmp_path):
    """The decision rules alone, on a U sequence (a real dynamics object, no model needed)."""
    from ase.build import bulk

    dyn = VelocityVerlet(bulk("Cu", cubic=True), 1 * fs)
    halter = HaltOnUncertainty(dyn, 1.0, consecutive=2)
    # A dip below the threshold resets the streak; equal to the threshold is not above it.
    assert [halter.update(u) for u in (0.5, 1.2, 0.9, 1.0, 1.3, 1.4)] == [False] * 5 + [True]
    with FlagWriter(dyn, tmp_path / "f.extxyz", 1.0, min_spacing=3) as flagger:
        decisions = []
        for step, u in enumerate((1.5, 1.5, 0.2, 1.5, 1.5, 1.5, 1.5, 1.0)):
            decisions.append(flagger.should_flag(step, u))
            if decisions[-1]:
                flagger.last_flagged_step = step
    assert decisions == [True, False, False, True, False, False, True, False]


def test_calm_run_leaves_no_flagged_file(pair, tmp_path):
    """The flagged file is created with the first flagged frame: none for a calm run (and a
    file of that name from an earlier run is gone, so it cannot pass for this run's)."""
    atoms, dyn = hot_md(pair, temperature=300.0)
    flagged = tmp_path / "flagged.extxyz"
    flagged.write_text("stale frames of an earlier run\n")
    with UncertaintyMonitor(dyn, log=tmp_path / "u.csv", flag_above=50.0, flagged=flagged) as monitor:
        assert not flagged.exists()
        outcome = run_monitored(dyn, 2, monitor)
    assert outcome.flagged == 0 and not monitor.flagger.written
    assert not flagged.exists()
    assert "frames flagged 0" in outcome.summary()


def test_halt_at_the_start_structure_says_so_and_plots_one_point(pair, tmp_path):
    from hetens.monitor.plot import log_figure

    atoms, dyn = hot_md(pair, temperature=300.0)
    log, halt_file = tmp_path / "u.csv", tmp_path / "halt.extxyz"
    with UncertaintyMonitor(dyn, log=log, halt_above=1e-6, halt_file=halt_file) as monitor:
        outcome = run_monitored(dyn, 3, monitor)
    assert outcome.halted and outcome.halted_at == 0 and outcome.halt.at_start
    assert "START structure is already above the halt threshold" in str(outcome.halt)
    assert "no safe frame" in str(outcome.halt) and "last safe and offending" not in str(outcome.halt)
    summary = outcome.summary()
    assert "START structure" in summary and "offending only" in summary and "(last_safe, offending)" not in summary
    frames = read(halt_file, ":")
    assert [f.info["hetens_role"] for f in frames] == ["offending"]
    assert outcome.as_dict()["halt_at_start"] is True

    fig = log_figure(log, halt_above=1e-6, halted_at=0, target_temperature=300.0)
    u_axis, t_axis = fig.axes[:2]
    assert t_axis.get_xlim() == pytest.approx((-1.0, 1.0))  # not matplotlib's +-0.04 around one point
    t_line = t_axis.get_lines()[0]
    assert len(t_line.get_xdata()) == 1 and t_line.get_marker() == "o"  # the one T is visible
    assert any(list(line.get_ydata()) == [300.0, 300.0] for line in t_axis.get_lines()[1:])
    assert "target 300 K" in [t.get_text() for t in t_axis.get_legend().get_texts()]
    assert "half the start temperature" in t_axis.get_title(loc="left")

