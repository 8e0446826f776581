"""Soak: 10,000 monitored MD steps with the default ensemble; memory stays flat, every step logged.

On demand only (``-m slow``): about 15 minutes on 2 quiet cores. Run with
``-s`` to see the figures::

    .venv/bin/python -m pytest tests/test_soak.py -m slow -s
"""

from __future__ import annotations

import os
import resource
import time

import numpy as np
import pytest
from ase.build import bulk

from hetens.monitor import UncertaintyMonitor, run_monitored
from hetens.monitor.csvlog import read_log
from hetens.monitor.dynamics import make_md

STEPS = int(os.environ.get("HETENS_SOAK_STEPS", "10000"))


def rss_mb() -> float:
    """Resident memory of this process now, MB (from /proc: the current, not the peak, value)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
def test_soak_monitored_md_memory_is_flat_and_every_step_is_logged(default_calc, tmp_path):
    atoms = bulk("W", "bcc", a=3.17, cubic=True)  # 2 atoms: the models' fixed costs dominate
    atoms.rattle(0.02, seed=3)
    atoms.calc = default_calc
    dyn = make_md(atoms, timestep_fs=2.0, temperature_K=300.0, dynamics="langevin", seed=1)
    samples: list[tuple[int, float]] = []
    dyn.attach(lambda: samples.append((dyn.nsteps, rss_mb())), interval=max(1, STEPS // 20))
    log = tmp_path / "soak.csv"
    start = time.perf_counter()
    with UncertaintyMonitor(dyn, log=log, trajectory=tmp_path / "soak.extxyz", trajectory_interval=100) as monitor:
        outcome = run_monitored(dyn, STEPS, monitor)
    seconds = time.perf_counter() - start
    rows = read_log(log)
    assert outcome.completed
    assert rows["step"].tolist() == list(range(STEPS + 1))
    assert np.isfinite(rows["U"]).all()
    # Flat: after the first tenth (allocator and caches warming up), RSS grows by under 30 MB.
    warm = [mb for step, mb in samples if step >= STEPS // 10]
    growth = max(warm) - warm[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\nsoak: {STEPS} steps in {seconds:.0f} s ({1000 * seconds / STEPS:.1f} ms/step), "
        f"log rows {len(rows['step'])}, U min/median/max {rows['U'].min():.3f}/"
        f"{np.median(rows['U']):.3f}/{rows['U'].max():.3f} eV/A, RSS at step "
        f"{samples[0][0]}: {samples[0][1]:.0f} MB, after warm-up {warm[0]:.0f} MB, last "
        f"{samples[-1][1]:.0f} MB, growth after warm-up {growth:.1f} MB, peak {peak:.0f} MB"
    )
    assert growth < 30.0, samples
