"""``hetens explore``: campaigns of structures x conditions, resumable, on Dask, with deduplicated candidates.

The members are two EMT variants (the ``ase`` family; one energy reference, a small
but real U): these tests check the campaign machinery, not the physics. The
driver and U tests with real uMLIPs are in test_driver.py.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from hetens.cli.main import main
from hetens.explore import ExploreSettings, condition_grid, run_campaign
from hetens.explore.dedup import fingerprint_distance, rdf_fingerprint, select_distinct

EMT = ["ase:ase.calculators.emt:EMT@level=EMT", "ase:ase.calculators.emt:EMT@asap_cutoff=True@level=EMT"]
SETTINGS = ExploreSettings(flag_above=0.004, flag_below=0.02, flag_spacing=2)
TEMPERATURES = [300, 600, 900, 1200]
STEPS = 8


def cu(a=3.6, seed=1):
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.03, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def structures(tmp_path_factory):
    path = tmp_path_factory.mktemp("explore") / "cu.extxyz"
    write(path, [cu(3.6, 1), cu(3.75, 2)])
    return path


def summary_rows(out):
    with open(out / "summary.csv") as handle:
        return list(csv.DictReader(handle))


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def resumed(structures, tmp_path_factory):
    """A 2 x 4 campaign killed after 3 runs (and mid-way through a 4th), then resumed."""
    out = tmp_path_factory.mktemp("seq")
    seen = []

    def kill_after_three(record):
        seen.append(record["run"])
        if len(seen) == 3:
            raise Stop

    conditions = condition_grid(TEMPERATURES, steps=STEPS)
    with pytest.raises(Stop):
        run_campaign(structures, conditions, out, EMT, settings=SETTINGS, on_run=kill_after_three)
    stamps = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    # the 4th run was killed mid-way: its log exists, its result does not
    fourth = out / "runs" / "s000_T1200K_P-_n8_s0"
    fourth.mkdir()
    (fourth / "md.csv").write_text("step\n0\n")
    result = run_campaign(structures, conditions, out, EMT, settings=SETTINGS)
    return out, seen, stamps, result


def test_a_killed_campaign_resumes_without_redoing_runs(resumed):
    out, seen, stamps, result = resumed
    assert len(stamps) == 3 and sorted(stamps) == sorted(seen)
    assert sorted(result.reused) == sorted(seen) and len(result.computed) == 5
    for run, stamp in stamps.items():
        assert (out / "runs" / run / "result.json").stat().st_mtime_ns == stamp
    rows = summary_rows(out)
    assert [r["status"] for r in rows] == ["completed"] * 8
    assert [r["run"] for r in rows][:4] == [f"s000_T{t}K_P-_n8_s0" for t in TEMPERATURES]
    assert all((out / "runs" / r["run"] / "md.csv").exists() for r in rows)
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    # frames above the window's high level failed: collected apart, never among the candidates
    failed = read(out / "failed.extxyz", ":")
    assert len(failed) == result.failed_frames == sum(int(r["failed"]) for r in rows) > 0
    assert all(f.info["hetens_U"] > SETTINGS.flag_below for f in failed)
    # counts add up: every step observed is accurate, candidate or failed
    for r in rows:
        assert int(r["accurate"]) + int(r["candidate"]) + int(r["failed"]) == STEPS + 1


def test_candidates_carry_provenance_and_go_to_select(resumed, tmp_path, capsys):
    out, _, _, result = resumed
    frames = read(out / "candidates.extxyz", ":")
    assert len(frames) == result.candidates > 0
    u = [f.info["hetens_U"] for f in frames]
    assert u == sorted(u, reverse=True)
    for frame in frames:
        assert SETTINGS.flag_above < frame.info["hetens_U"] <= SETTINGS.flag_below
        assert frame.info["hetens_run"].startswith("s00") and "T=" in frame.info["hetens_condition"]
        assert {"hetens_step", "hetens_temperature_K", "hetens_structure"} <= set(frame.info)
    assert main(["select", str(out / "candidates.extxyz"), "--threshold", "0.01"]) == 0
    assert f"{len(frames)} frames" in capsys.readouterr().out


def test_local_cluster_gives_the_sequential_results(resumed, structures, tmp_path):
    out, _, _, sequential = resumed
    parallel = run_campaign(structures, condition_grid(TEMPERATURES, steps=STEPS), tmp_path / "par", EMT,
                            settings=SETTINGS, cluster="local:2")
    keys = ("run", "status", "steps_done", "u_min", "u_median", "u_max", "accurate", "candidate", "failed")
    assert [{k: r[k] for k in keys} for r in summary_rows(tmp_path / "par")] == \
        [{k: r[k] for k in keys} for r in summary_rows(out)]
    a = read(out / "candidates.extxyz", ":")
    b = read(tmp_path / "par" / "candidates.extxyz", ":")
    assert [f.info["hetens_run"] for f in a] == [f.info["hetens_run"] for f in b]
    np.testing.assert_allclose([f.positions for f in a], [f.positions for f in b], atol=1e-10)
    assert len(parallel.computed) == 8


def test_failing_run_leaves_the_others_and_identical_runs_deduplicate(tmp_path, capsys):
    """Structures: A, A again (identical runs), and a broken one (atoms 0.1 A apart); one temperature."""
    broken = cu(3.75, 2)
    broken.positions[1] = broken.positions[0] + [0.1, 0, 0]
    path = tmp_path / "three.extxyz"
    write(path, [cu(3.75, 2), cu(3.75, 2), broken])
    out = tmp_path / "camp"
    code = main(["explore", str(path), "-o", str(out), "--models", *EMT, "--temperatures", "1200",
                 "--steps", str(STEPS), "--flag-between", "0.004", "0.5", "--dedup-tol", "0", "--json"])
    captured = capsys.readouterr()
    assert code == 4, captured.err
    report = json.loads(captured.out)
    assert report["failed_runs"] == ["s002_T1200K_P-_n8_s0"]
    assert "FAILED: s002_T1200K_P-_n8_s0" in captured.err and "InvalidStructureError" in captured.err
    rows = summary_rows(out)
    assert [r["status"] for r in rows] == ["completed", "completed", "failed"]
    assert "InvalidStructureError" in rows[2]["error"] and "apart" in rows[2]["error"]
    one_run = read(out / "runs" / "s000_T1200K_P-_n8_s0" / "candidates.extxyz", ":")
    assert report["candidates_found"] == 2 * len(one_run) > 0
    kept = read(out / "candidates.extxyz", ":")
    assert len(kept) == report["candidates"] == len(one_run)
    assert sorted(f.info["hetens_step"] for f in kept) == sorted(f.info["hetens_step"] for f in one_run)


def test_dedup_and_cap():
    a, b = cu(seed=1), cu(seed=5)
    assert fingerprint_distance(rdf_fingerprint(a)[1], rdf_fingerprint(a.copy())[1]) == 0.0
    assert fingerprint_distance(rdf_fingerprint(a)[1], rdf_fingerprint(b)[1]) > 0
    assert select_distinct([a, a.copy(), b], [0.1, 0.3, 0.2], tol=0.0) == [1, 2]
    assert select_distinct([a, a.copy(), b], [0.1, 0.3, 0.2], tol=0.0, max_count=1) == [1]
    water = bulk("Cu", "fcc", a=3.6, cubic=True)
    assert select_distinct([a, water], tol=10.0) == [0, 1]  # other composition: never a duplicate


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--driver", "mace:medium"], "unknown driver 'mace:medium'"),
        (["--driver", "ase:ase.calculators.emt:EMT", "--check-every", "0"], "--check-every must be >= 1"),
        (["--flag-between", "0.5", "0.1"], "needs LO < HI"),
        (["--temperatures", "300", "hot"], "invalid float value: 'hot'"),
        (["--conditions", "T=300,P=high"], "'high' is not a number"),
        (["--conditions", "T=300", "--temperatures", "600"], "not both"),
        (["--cluster", "local:zero"], "local:N needs a number"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_loading(argv, message, structures, tmp_path, capsys, monkeypatch):
    import hetens.core.member

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(hetens.core.member, "load_member", no_loading)
    assert main(["explore", str(structures), "-o", str(tmp_path / "o"), "--models", *EMT, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_witness_driver_and_empty_structures_refused(tmp_path, capsys, monkeypatch):
    import hetens.core.member

    monkeypatch.setattr(hetens.core.member, "load_member", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    assert main(["explore", str(empty), "--models", *EMT]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no structure" in err[0]
    good = tmp_path / "one.extxyz"
    write(good, cu())
    assert main(["explore", str(good), "--models", EMT[0], "--witnesses", EMT[1], "--driver", EMT[1]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a witness" in err[0]


def test_a_campaign_folder_with_other_structures_or_settings_is_refused(resumed, structures, tmp_path):
    out, _, _, _ = resumed
    other = tmp_path / "other.extxyz"
    write(other, [cu(3.6, 9), cu(3.75, 2)])
    with pytest.raises(ValueError, match="structure 0 differs"):
        run_campaign(other, condition_grid(TEMPERATURES, steps=STEPS), out, EMT, settings=SETTINGS)
    with pytest.raises(ValueError, match="other settings"):
        run_campaign(structures, condition_grid(TEMPERATURES, steps=STEPS), out, EMT,
                     settings=ExploreSettings(flag_above=0.01))


def large_campaign_records(n: int) -> list[dict]:
    """``n`` run records as run_one writes them: 3 temperatures, U rising with the run, the last one failed."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        temperature = (300, 900, 1500)[i % 3]
        u_max = float(0.1 * (i + 1))
        record = {"run": f"s{i:03d}_T{temperature}K_P-_n10_s0", "structure": i // 3, "formula": "W54",
                  "temperature_K": temperature, "pressure_GPa": None, "steps": 10, "seed": 0,
                  "status": "halted" if u_max > 40 else "completed", "steps_done": 10,
                  "u_min": u_max * 0.5, "u_median": u_max * 0.7, "u_max": u_max,
                  "accurate": int(rng.integers(0, 3)), "candidate": 1, "failed": int(u_max > 30)}
        records.append(record)
    records[-1].update(status="failed", error="InvalidStructureError: atoms 0 and 1 are 0.1 A apart",
                       u_min=None, u_median=None, u_max=None, accurate=None, candidate=None, failed=None)
    return records


def test_a_large_campaign_summary_names_the_highest_u_and_failed_runs_and_counts_the_rest(tmp_path):
    from hetens.cli.explore import RUNS_LISTED, format_summary
    from hetens.explore.campaign import CampaignResult
    from hetens.explore.collect import write_summary

    n = 500
    records = large_campaign_records(n)
    result = CampaignResult(tmp_path, records, computed=[r["run"] for r in records[:400]],
                            reused=[r["run"] for r in records[400:]], candidates=50, candidates_found=499,
                            candidates_distinct=120, failed_frames=201)
    text = format_summary(result)
    lines = text.splitlines()
    assert len(lines) < RUNS_LISTED  # not one line per run
    assert "s498_T300K_P-_n10_s0" in lines[2]  # the highest U first
    assert "s499_T900K_P-_n10_s0" in text and "InvalidStructureError" in text  # the failed run, with its error
    assert "500 (400 run now, 100 finished before): 400 completed, 99 halted, 1 failed" in text
    assert "candidates     50 kept of 499 (379 near-duplicates, 70 more over --max-candidates" in text
    files = write_summary(records, tmp_path, {"flag_above": 0.5, "flag_below": 30.0, "halt_above": 40.0})
    from matplotlib.image import imread

    height, width = imread(files["figure"]).shape[:2]
    assert width <= 14 * 110 and height <= 5 * 110  # readable at any campaign size
    with open(files["summary"]) as handle:
        assert len(list(csv.DictReader(handle))) == n
