"""``hetens md`` end to end with real shipped models (in-process CLI calls).

A first run completes; a second, identical run (NVE: no noise, same seed)
gets its halt and flag thresholds chosen between the U values the first run
logged, so the halting step and the flagged frames are known in advance.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from hetens.cli.main import main
from hetens.monitor import read_log

DATA = str(Path(__file__).resolve().parents[1] / "examples" / "data" / "W_bcc_16.extxyz")
PAIR = ["--models", "sevenn:7net-0", "chgnet:0.3.0", "--device", "cpu"]
# Hot NVE start: U rises within a few steps as the lattice distorts.
HOT_NVE = ["--dynamics", "nve", "--temperature", "4000", "--timestep", "4", "--seed", "5", "--steps", "4"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("md")
    log = folder / "nve.csv"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["md", DATA, *PAIR, *HOT_NVE, "--log", str(log), "--print-every", "2"])
    return code, out.getvalue(), log


def test_completed_run_exits_0_with_progress_summary_and_plot(first_run):
    code, out, log = first_run
    assert code == 0
    assert "step      2/4" in out and "step      4/4" in out and " U 0." in out
    assert "outcome        completed" in out and "frames flagged 0" in out
    rows = read_log(log)
    assert rows["step"].tolist() == [0, 1, 2, 3, 4]
    assert rows["time_fs"] == pytest.approx([0, 4, 8, 12, 16])
    assert np.all(rows["U"] > 0) and np.all(rows["T"] > 0)
    assert f"U [eV/A]       min {rows['U'].min():.4f}" in out
    assert log.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    # Issue 22 (4): who deviated most, counted over the logged steps; no calibrated scale for
    # an ensemble that is not the default one.
    top = max(set(rows["most_deviating"]), key=rows["most_deviating"].count)
    assert f"most deviating {top} on {rows['most_deviating'].count(top)} of 5 logged steps" in out
    assert "U scale" not in out


def test_halted_run_exits_3_and_keeps_exactly_what_crossed(first_run, tmp_path, capsys):
    _, _, first_log = first_run
    u = read_log(first_log)["U"]
    # The first step whose U exceeds every U before it: the halt threshold goes in between.
    k = next((i for i in range(1, len(u)) if u[i] > u[:i].max() + 2e-5), None)
    assert k is not None, f"U never rose during the hot NVE run: {u}"
    halt_above = (u[k] + u[:k].max()) / 2
    lowest, second = np.sort(u[: k + 1])[:2]
    assert second - lowest > 2e-5, f"U values too close to place a threshold between: {u}"
    flag_above = (lowest + second) / 2
    expected_flags = [s for s in range(k + 1) if u[s] > flag_above]

    log, traj = tmp_path / "run.csv", tmp_path / "traj.extxyz"
    code = main(["md", DATA, *PAIR, *HOT_NVE, "--log", str(log), "--halt-above", f"{halt_above:.7f}",
                 "--flag-above", f"{flag_above:.7f}", "--traj", str(traj), "--traj-interval", "1", "--json"])
    assert code == 3
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["status"] == "halted" and summary["halted_at"] == k
    assert summary["halt_U"] == pytest.approx(u[k], abs=1e-5)
    assert summary["members"] == ["sevenn:7net-0", "chgnet:0.3.0"]
    assert summary["flagged"] == len(expected_flags)
    assert f"HALTED at step {k}" in out.err

    rows = read_log(log)  # one row for every observed step, up to and including the halting one
    assert rows["step"].tolist() == list(range(k + 1))
    assert rows["U"] == pytest.approx(u[: k + 1], abs=1e-5)

    flagged = read(tmp_path / "run.flagged.extxyz", ":")
    assert [f.info["hetens_step"] for f in flagged] == expected_flags
    for frame in flagged:
        assert frame.info["hetens_U"] == pytest.approx(u[frame.info["hetens_step"]], abs=1e-5)
        assert frame.info["hetens_U"] > flag_above
        assert frame.arrays["hetens_u"].shape == (16,)
        assert frame.get_forces().shape == (16, 3)

    last_safe, offending = read(tmp_path / "run.halt.extxyz", ":")
    assert (last_safe.info["hetens_role"], last_safe.info["hetens_step"]) == ("last_safe", k - 1)
    assert (offending.info["hetens_role"], offending.info["hetens_step"]) == ("offending", k)
    assert offending.info["hetens_U"] > halt_above >= last_safe.info["hetens_U"]
    assert [f.info["hetens_step"] for f in read(traj, ":")] == list(range(k + 1))
    assert (tmp_path / "run.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["md", "no/such/file.extxyz"], "does not exist"),
        (["md", DATA, "--steps", "-1"], "--steps must be >= 0"),
        (["md", DATA, "--timestep", "0"], "time step must be > 0 fs"),
        (["md", DATA, "--halt-above", "0"], "--halt-above must be a positive U"),
        (["md", DATA, "--flag-spacing", "-2", "--flag-above", "0.5"], "--flag-spacing must be >= 0"),
        (["md", DATA, "--traj", DATA], "is also STRUCTURE"),
        (["md", DATA, "--models", "sevenn"], "must look like FAMILY:MODEL"),
        (["md", DATA, "--models", "sevenn:7net-0", "chgnet:r2scan"], "different levels of theory"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--log", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "x.csv").exists()


def test_halt_at_start_with_a_calm_flag_threshold(tmp_path, capsys):
    """Halted on the start structure: the summary says so and describes the halt file truly;
    no frame crossed --flag-above, so there is no flagged file and none is named."""
    log = tmp_path / "w.csv"
    code = main(["md", DATA, *PAIR, "--steps", "3", "--log", str(log), "--flag-above", "50",
                 "--halt-above", "0.000001"])
    assert code == 3
    out = capsys.readouterr().out
    assert "START structure is already above the halt threshold" in out
    assert "offending only" in out and "(last_safe, offending)" not in out
    assert "frames flagged 0" in out and "w.flagged.extxyz" not in out
    assert not (tmp_path / "w.flagged.extxyz").exists()
    assert [f.info["hetens_role"] for f in read(tmp_path / "w.halt.extxyz", ":")] == ["offending"]
    assert (tmp_path / "w.png").read_bytes()[:8] == PNG_MAGIC


def test_md_of_a_molecule_without_a_cell(tmp_path, capsys):
    """H2O with pbc=False runs (CHGNet sees it in a box beyond its cutoff)."""
    from ase.build import molecule
    from ase.io import write

    water = tmp_path / "h2o.xyz"
    write(water, molecule("H2O"))
    log = tmp_path / "h2o.csv"
    code = main(["md", str(water), *PAIR, "--steps", "2", "--temperature", "100", "--log", str(log), "--no-plot"])
    assert code == 0, capsys.readouterr().err
    rows = read_log(log)
    assert rows["step"].tolist() == [0, 1, 2] and np.all(np.isfinite(rows["U"]))
