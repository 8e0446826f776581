"""The memory guard: a structure estimated over the memory available is refused with one line
before any member runs on it; one under it runs (hetens.core.memory_guard, issue 26)."""

from __future__ import annotations

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

import hetens
from hetens.cli.main import main
from hetens.errors import InsufficientMemoryError
from hetens.core.memory_guard import (
    LIMIT_VARIABLE,
    MemoryGuard,
    effective_atoms,
    parse_bytes,
)

EMT_SPEC = "ase:ase.calculators.emt:EMT@level=EMT"
MB = 1e6


class CountingEMT(EMT):
    """ASE's EMT, counting its calculations."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    def calculate(self, *args, **kwargs) -> None:
        self.calls += 1
        super().calculate(*args, **kwargs)


def copper(repeat: int, seed: int = 0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    atoms.rattle(0.02, seed=seed)
    return atoms


def ensemble(guard):
    members = [hetens.Member.wrap(CountingEMT(), name=f"emt{i}", level_of_theory="EMT") for i in range(2)]
    return hetens.HeterogeneousEnsembleCalculator(members, memory_check=guard)


def test_over_the_limit_is_refused_before_any_member_runs() -> None:
    # 1 MB per atom against a fake 100 MB: 32 Cu atoms (43 effective: fcc Cu is denser than
    # bcc W) fit, 108 atoms (146 effective) do not.
    guard = MemoryGuard(available=lambda: 100 * MB, bytes_per_atom={"ase": 1 * MB})
    calc = ensemble(guard)
    small, large = copper(2), copper(3)
    small.calc = calc
    small.get_forces()
    calls = [m.calculator.calls for m in calc.members]
    assert calls == [1, 1]
    large.calc = calc
    with pytest.raises(InsufficientMemoryError) as refused:
        large.get_forces()
    assert [m.calculator.calls for m in calc.members] == calls  # no member ran on it
    message = str(refused.value)
    assert "\n" not in message
    assert "Cu108 (108 atoms) needs about 0.1 GB more memory for 2 members (1.0 MB per atom" in message
    assert "but 0.1 GB is available on cpu" in message
    for advice in ("GPU", "fewer members", "driver mode", "smaller cell", "--no-memory-check"):
        assert advice in message
    assert isinstance(refused.value, MemoryError)


def test_a_structure_no_larger_than_one_seen_is_not_checked_again() -> None:
    limit = {"bytes": 1e12}
    guard = MemoryGuard(available=lambda: limit["bytes"], bytes_per_atom={"ase": 1 * MB})
    calc = ensemble(guard)
    atoms = copper(3)
    atoms.calc = calc
    atoms.get_forces()
    limit["bytes"] = 1.0  # an MD run of the same cell checks its first step only
    atoms.rattle(0.01, seed=3)
    atoms.get_forces()
    assert [m.calculator.calls for m in calc.members] == [2, 2]


def test_memory_check_off_runs_anything() -> None:
    calc = ensemble(MemoryGuard(enabled=False, available=lambda: 1.0))
    atoms = copper(3)
    atoms.calc = calc
    atoms.get_forces()
    assert [m.calculator.calls for m in calc.members] == [1, 1]
    assert not hetens.HeterogeneousEnsembleCalculator(
        [EMT(), EMT()], memory_check=False).memory_guard.enabled


def test_the_figure_is_measured_on_the_largest_structure() -> None:
    guard = MemoryGuard(bytes_per_atom={"ase": 1 * MB})
    calc = ensemble(guard)
    for repeat in (2, 4):  # 32 atoms: too small to measure; 256 atoms: measured
        atoms = copper(repeat)
        atoms.calc = calc
        atoms.get_forces()
    assert guard.measured is not None and guard.measured[1] == 256
    assert guard.largest_seen == pytest.approx(effective_atoms(copper(4)))
    estimate = guard.estimate(copper(5), calc.members)
    assert estimate.source == "measured in this process on 256 atoms"


def test_sizes_and_density() -> None:
    assert parse_bytes("6G") == 6 * 2**30 and parse_bytes("500M") == 500 * 2**20 and parse_bytes("2e9") == 2e9
    with pytest.raises(ValueError, match=LIMIT_VARIABLE):
        parse_bytes("lots")
    w = bulk("W", "bcc", a=3.17, cubic=True).repeat(3)
    assert effective_atoms(w) == pytest.approx(54)
    assert effective_atoms(copper(2)) == pytest.approx(32 * (4 / 3.6**3) / (2 / 3.17**3))
    with pytest.raises(ValueError, match="memory_check"):
        hetens.HeterogeneousEnsembleCalculator([EMT(), EMT()], memory_check="yes")


def test_score_exits_2_keeping_the_frames_scored(tmp_path, monkeypatch, capsys) -> None:
    # EMT's shipped figure is the default 4.1 MB per atom; a fake 2G limit takes 32 and 108 Cu
    # atoms (0.18 and 0.6 GB) but not 864 (4.8 GB).
    frames = [copper(2, seed=1), copper(3, seed=2), copper(6, seed=3), copper(2, seed=4)]
    write(tmp_path / "in.extxyz", frames)
    out = tmp_path / "out.extxyz"
    monkeypatch.setenv(LIMIT_VARIABLE, "2G")
    code = main(["score", str(tmp_path / "in.extxyz"), "-o", str(out), "--models", EMT_SPEC,
                 "--witnesses", EMT_SPEC + "@name=emt2", "--batch-size", "1", "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Cu864 (864 atoms) needs about" in err and "is available on cpu" in err
    assert "2 frames scored before this were kept in" in err
    kept = tmp_path / "out.partial.extxyz"
    from ase.io import read

    assert [len(a) for a in read(kept, ":")] == [32, 108]
    assert not out.exists()
    # --no-memory-check: the same run completes.
    code = main(["score", str(tmp_path / "in.extxyz"), "-o", str(out), "--models", EMT_SPEC,
                 "--witnesses", EMT_SPEC + "@name=emt2", "--batch-size", "1", "--progress", "off",
                 "--no-memory-check"])
    assert code == 0 and len(read(out, ":")) == 4


def test_md_exits_2_with_one_line(tmp_path, monkeypatch, capsys) -> None:
    write(tmp_path / "big.extxyz", copper(6))
    monkeypatch.setenv(LIMIT_VARIABLE, "1G")
    code = main(["md", str(tmp_path / "big.extxyz"), "--models", EMT_SPEC, "--witnesses", EMT_SPEC + "@name=e2",
                 "--steps", "2", "--log", str(tmp_path / "md.csv"), "--no-plot"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("hetens md: error: Cu864 (864 atoms) needs about")


_MMAP_PROBE = """
import json
from ase.build import bulk
from ase.calculators.emt import EMT
import hetens
from hetens.core import memory_guard

calc = hetens.HeterogeneousEnsembleCalculator([EMT(), EMT()], memory_check=False)
small = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
small.calc = calc
small.get_forces()
before = memory_guard._serve_large_blocks_by_mmap.cache_info().currsize
large = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(4)  # 256 atoms
large.calc = calc
large.get_forces()
print(json.dumps([before, memory_guard._serve_large_blocks_by_mmap()]))
"""


@pytest.mark.parametrize("env, set_it", [({}, True), ({"HETENS_MMAP_THRESHOLD": "0"}, False),
                                         ({"HETENS_MMAP_THRESHOLD": "4M"}, True),
                                         ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, False)])
def test_large_blocks_come_from_mmap_from_200_atoms_unless_told_otherwise(env, set_it) -> None:
    """Issue 26: the process's mmap threshold is fixed once a CPU member evaluates 200 atoms or
    more (not before), left alone when glibc's own variable sets it or HETENS_MMAP_THRESHOLD=0.
    A fresh process each: the setting is made once per process."""
    import json
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k not in ("HETENS_MMAP_THRESHOLD", "MALLOC_MMAP_THRESHOLD_")}
    done = subprocess.run([sys.executable, "-c", _MMAP_PROBE], env=clean | env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [0, set_it]


def test_a_bad_mmap_threshold_names_the_variable(monkeypatch) -> None:
    from hetens.core import memory_guard

    monkeypatch.setenv("HETENS_MMAP_THRESHOLD", "lots")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    memory_guard._serve_large_blocks_by_mmap.cache_clear()
    try:
        with pytest.raises(ValueError, match="HETENS_MMAP_THRESHOLD='lots' is not a size"):
            memory_guard.prepare_for_large_evaluation(500)
    finally:
        memory_guard._serve_large_blocks_by_mmap.cache_clear()
