"""``hetens md`` end to end with real shipped models (in-process CLI calls)."""

from __future__ import annotations

import json

import pytest
from ase.io import read

from hetens.cli.main import main
from hetens.monitor import read_log

DATA = "examples/data/W_bcc_16.extxyz"
PAIR = ["--models", "sevenn:7net-0", "chgnet:0.3.0", "--device", "cpu"]


def test_md_halted_by_uncertainty_exits_3(tmp_path, capsys):
    log = tmp_path / "run.csv"
    code = main(["md", DATA, *PAIR, "--steps", "20", "--temperature", "1500", "--log", str(log),
                 "--halt-above", "1e-6", "--halt-consecutive", "2", "--flag-above", "1e-6",
                 "--traj", str(tmp_path / "traj.extxyz"), "--traj-interval", "1", "--json"])
    assert code == 3
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["status"] == "halted" and summary["halted_at"] == 1
    assert summary["members"] == ["sevenn:7net-0", "chgnet:0.3.0"]
    assert "HALTED at step 1" in out.err
    rows = read_log(log)
    assert rows["step"].tolist() == [0, 1]
    flagged = read(tmp_path / "run.flagged.extxyz", ":")
    assert [f.info["hetens_step"] for f in flagged] == [0, 1]
    halt = read(tmp_path / "run.halt.extxyz", ":")
    assert [f.info["hetens_role"] for f in halt] == ["offending"]
    assert len(read(tmp_path / "traj.extxyz", ":")) == 2
    png = tmp_path / "run.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_md_completes_exits_0_and_prints_progress(tmp_path, capsys):
    log = tmp_path / "nve.csv"
    code = main(["md", DATA, *PAIR, "--steps", "3", "--ensemble", "nve", "--temperature", "300",
                 "--log", str(log), "--print-every", "1", "--no-plot"])
    assert code == 0
    out = capsys.readouterr().out
    assert "step      3/3" in out and "U " in out
    assert "outcome        completed" in out
    assert read_log(log)["step"].tolist() == [0, 1, 2, 3]
    assert not (tmp_path / "nve.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["md", "no/such/file.extxyz"], "does not exist"),
        (["md", DATA, "--steps", "-1"], "--steps must be >= 0"),
        (["md", DATA, "--models", "sevenn"], "must look like FAMILY:MODEL"),
        (["md", DATA, "--models", "sevenn:7net-0", "chgnet:r2scan"], "different levels of theory"),
        (["md", DATA, "--timestep", "0", "--models", "sevenn:7net-0"], "time step must be > 0 fs"),
    ],
)
def test_md_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--log", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
