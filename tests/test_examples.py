"""The examples run end to end as a user runs them (a subprocess, the real shipped models).

Example 03 (two members, a few steps) runs by default; 01 and 02 (the default
five-model ensemble, their full default runs) are marked slow: ``pytest -m slow
tests/test_examples.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from hetens.monitor import read_log

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_example_03_own_calculators_log_flag_and_halt(tmp_path):
    # Thresholds below every U: every observation is above them, so the run halts at the
    # 4th observation in a row (step 3) and the flagger (every 2 steps) writes steps 0 and 2.
    proc = run_example("03_observers_with_own_calculators.py", "out", "--steps", "10",
                       "--flag-above", "1e-6", "--halt-above", "1e-6", "--halt-consecutive", "4",
                       cwd=tmp_path)
    out = tmp_path / "out"
    assert "status   halted after 3 steps" in proc.stdout
    rows = read_log(out / "nve.csv")
    assert rows["step"].tolist() == [0, 1, 2, 3]
    assert rows["time_fs"] == pytest.approx([0.0, 2.0, 4.0, 6.0])
    assert np.all(rows["U"] > 0) and np.all(rows["T"] > 0)
    assert set(rows["most_deviating"]) <= {"my-7net-0", "my-chgnet-0.3.0"}

    flagged = read(out / "nve.flagged.extxyz", ":")
    assert [f.info["hetens_step"] for f in flagged] == [0, 2]
    for frame in flagged:
        assert frame.info["hetens_members"] == "my-7net-0,my-chgnet-0.3.0"
        assert frame.info["hetens_U"] == pytest.approx(rows["U"][frame.info["hetens_step"]], abs=1e-5)
        assert frame.arrays["hetens_u"].shape == (16,)
        assert frame.get_forces().shape == (16, 3)

    (offending,) = read(out / "nve.halt.extxyz", ":")  # no step was at or below 1e-6: no last safe frame
    assert offending.info["hetens_role"] == "offending" and offending.info["hetens_step"] == 3
    assert offending.info["hetens_U"] == pytest.approx(rows["U"][3], abs=1e-5)


@pytest.mark.slow
def test_example_01_heating_is_halted_by_uncertainty(tmp_path):
    proc = run_example("01_heat_tungsten_until_halt.py", "out", cwd=tmp_path)
    out = tmp_path / "out"
    outcome = json.loads((out / "outcome.json").read_text())
    assert outcome["status"] == "halted" and outcome["halt_threshold"] == 2.0
    assert "HALTED at step" in proc.stdout
    rows = read_log(out / "heat.csv")
    assert rows["step"][-1] == outcome["halted_at"]
    assert np.all(rows["U"][-2:] > 2.0) and outcome["halt_U"] == pytest.approx(rows["U"][-1], abs=1e-5)
    last_safe, offending = read(out / "heat.halt.extxyz", ":")
    assert last_safe.info["hetens_role"] == "last_safe" and last_safe.info["hetens_U"] <= 2.0
    assert offending.info["hetens_role"] == "offending" and offending.info["hetens_U"] > 2.0
    assert all(f.info["hetens_U"] > 1.0 for f in read(out / "heat.flagged.extxyz", ":"))
    assert (out / "heat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_example_02_relaxation_flags_its_early_steps(tmp_path):
    proc = run_example("02_relax_and_flag.py", "out", cwd=tmp_path)
    out = tmp_path / "out"
    rows = read_log(out / "relax.csv")
    assert np.isnan(rows["time_fs"]).all()  # an optimizer has no time
    frames = read(out / "relax.flagged.extxyz", ":")
    assert frames and f"{len(frames)} of {len(rows['step'])} steps flagged" in proc.stdout
    expected = [int(s) for s, u in zip(rows["step"], rows["U"]) if u > 0.5]
    assert [f.info["hetens_step"] for f in frames] == expected
    relaxed = read(out / "relaxed.extxyz")
    assert relaxed.info["hetens_U"] < 0.5 and len(relaxed) == 15
    assert (out / "relax.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
