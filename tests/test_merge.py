"""``hetens merge``: DFT results back into a selection, one energy reference, training sets.

The round trip runs the real commands on a Cu-Au set of rattled cells of
varying composition: ``hetens score`` with two EMT members (EMT and EMT with
ASAP's cutoff, one reference), ``hetens select``, then a "DFT" that is an
ASE calculator, the ensemble's weighted mean of the same two EMTs plus known
per-element offsets. The fit must recover the offsets, and every merged
frame must then carry exactly the "DFT" labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.mixing import LinearCombinationCalculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from hypothesis import given, settings
from hypothesis import strategies as st

from hetens.cli.main import main
from hetens.distill.reference import UndeterminedShiftsError, composition_matrix, fit_shifts
from hetens.io.keys import SOURCE_KEY, WEIGHTS_KEY

MEMBERS = ["ase:ase.calculators.emt:EMT@level=EMT@name=emt", "ase:ase.calculators.emt:EMT@asap_cutoff=True@level=EMT@name=emt_asap"]
OFFSETS = {"Cu": 0.37, "Au": -1.23}  # eV/atom: "DFT" = ensemble energy + these
N_AU = (0, 1, 2, 4, 6, 8)  # Au atoms in a 8-atom cell: six compositions
RATTLE = (0.03, 0.08, 0.15)


class OffsetDFT(LinearCombinationCalculator):
    """The "DFT": a weighted mean of the two EMTs plus a constant per element (forces unchanged)."""

    def __init__(self, weights):
        super().__init__([EMT(), EMT(asap_cutoff=True)], list(weights))

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        super().calculate(atoms, properties, system_changes)
        shift = sum(OFFSETS[s] for s in self.atoms.get_chemical_symbols())
        self.results["energy"] += shift
        self.results["free_energy"] = self.results["energy"]


def _frames():
    frames = []
    rng = np.random.default_rng(7)
    for n_au in N_AU:
        for amplitude in RATTLE:
            atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 1, 1)
            atoms.symbols[rng.permutation(8)[:n_au]] = "Au"
            atoms.rattle(amplitude, seed=int(rng.integers(1 << 30)))
            frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def selection(tmp_path_factory):
    """A scored Cu-Au set split at its median U: (work folder, Uc folder, threshold)."""
    work = tmp_path_factory.mktemp("merge")
    write(work / "pool.extxyz", _frames())
    assert main(["score", str(work / "pool.extxyz"), "-o", str(work / "scored.extxyz"), "--models", *MEMBERS,
                 "--progress", "off"]) == 0
    u = np.array([a.info["hetens_U"] for a in read(work / "scored.extxyz", ":")])
    threshold = float(np.median(u))
    assert main(["select", str(work / "scored.extxyz"), "--threshold", f"{threshold:.17g}", "--out-dir",
                 str(work / "sel"), "--anchors", "0"]) == 0
    folder = next((work / "sel").glob("Uc_*"))
    return work, folder, threshold


def _dft(frames):
    """The queued frames with "DFT" labels (ids kept, as an extxyz written from needs_dft would)."""
    out = []
    for atoms in frames:
        weights = np.asarray(atoms.info[WEIGHTS_KEY], dtype=float)
        calc = OffsetDFT(weights)
        copy = atoms.copy()
        copy.calc = calc
        results = {"energy": copy.get_potential_energy(), "forces": copy.get_forces()}
        copy.calc = SinglePointCalculator(copy, **results)
        out.append(copy)
    return out


def _queued(folder):
    return read(folder / "needs_dft.extxyz", ":")


def _merge(*args):
    return main(["merge", *map(str, args)])


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")} if path.exists() else set()


def test_round_trip_recovers_offsets_and_labels(selection, tmp_path, capsys):
    work, folder, _ = selection
    queued = _queued(folder)
    umlip = read(folder / "umlip_labelled.extxyz", ":")
    assert len(queued) >= 6 and len(umlip) >= 6
    dft = _dft(queued)
    # results come back in two files, in another order
    write(tmp_path / "dft_a.extxyz", dft[::2][::-1])
    write(tmp_path / "dft_b.extxyz", dft[1::2])
    out = tmp_path / "train"
    capsys.readouterr()
    assert _merge(folder, tmp_path / "dft_a.extxyz", tmp_path / "dft_b.extxyz", "-o", out, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    for element, offset in OFFSETS.items():
        assert report["shifts_eV_per_atom"][element] == pytest.approx(offset, abs=1e-6)
    assert report["fit_residual_max_eV_per_atom"] < 1e-6
    assert report["n_frames"] == {"umlip": len(umlip), "dft": len(queued), "missing": 0, "total": len(umlip) + len(queued)}
    assert report["ensemble"]["members"] == ["emt", "emt_asap"]
    assert report["hetens_version"] and report["label_source"] == "ensemble"
    assert sorted(p.name for p in out.iterdir()) == ["provenance.json", "train.extxyz", "train.pckl.gzip"]
    assert json.loads((out / "provenance.json").read_text())["shifts_eV_per_atom"] == report["shifts_eV_per_atom"]

    merged = read(out / "train.extxyz", ":")
    ids = [a.info[SOURCE_KEY] for a in merged]
    scored_ids = [a.info[SOURCE_KEY] for a in read(work / "scored.extxyz", ":")]
    assert sorted(ids) == sorted(scored_ids)  # every frame exactly once
    by_id = {a.info[SOURCE_KEY]: a for a in [*queued, *umlip]}
    queued_ids = {a.info[SOURCE_KEY] for a in queued}
    for atoms in merged:
        frame_id = atoms.info[SOURCE_KEY]
        kind = "dft" if frame_id in queued_ids else "umlip"
        assert atoms.info["config_type"] == kind
        assert atoms.info["hetens_label_source"] == ("dft" if kind == "dft" else "ensemble")
        # the shifted uMLIP labels and the DFT labels are now the same "DFT"
        truth = atoms.copy()
        truth.calc = OffsetDFT(np.asarray(by_id[frame_id].info[WEIGHTS_KEY], dtype=float))
        assert atoms.info["REF_energy"] == pytest.approx(truth.get_potential_energy(), abs=1e-5)
        np.testing.assert_allclose(atoms.arrays["REF_forces"], truth.get_forces(), atol=1e-5)
        if kind == "umlip":  # forces and stress unchanged by the shift
            source = by_id[frame_id]
            np.testing.assert_array_equal(atoms.arrays["REF_forces"], source.get_forces())
            np.testing.assert_allclose(atoms.info["REF_stress"], source.get_stress(), atol=1e-12)


def test_dft_without_ids_matched_by_positions(selection, tmp_path, capsys):
    _, folder, _ = selection
    dft = _dft(_queued(folder))
    for atoms in dft:  # an OUTCAR knows nothing of hetens' ids
        atoms.info.clear()
    write(tmp_path / "dft.traj", dft[::-1])
    assert _merge(folder, tmp_path / "dft.traj", "-o", tmp_path / "train", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_frames"]["dft"] == len(dft)
    assert report["shifts_eV_per_atom"]["Au"] == pytest.approx(OFFSETS["Au"], abs=1e-6)


def _bad_dft(kind, dft, folder):
    if kind == "unmatched":
        stray = dft[0].copy()
        stray.positions += 0.3
        stray.info.pop(SOURCE_KEY)
        stray.calc = SinglePointCalculator(stray, energy=1.0, forces=np.zeros((8, 3)))
        return [*dft, stray], "matches no frame queued for DFT"
    if kind == "missing_result":
        return dft[1:], "has no DFT result"
    if kind == "different_atoms":
        changed = dft[0].copy()
        changed.symbols[0] = "Ag"
        changed.calc = SinglePointCalculator(changed, **dft[0].calc.results)
        return [changed, *dft[1:]], "different atoms than queued frame"
    if kind == "moved":
        moved = dft[0].copy()
        moved.positions[3, 0] += 0.05
        moved.calc = SinglePointCalculator(moved, **dft[0].calc.results)
        return [moved, *dft[1:]], "atom 3 is 0.05 A from its queued position"
    if kind == "no_energy":
        results = dict(dft[0].calc.results)
        del results["energy"]
        dft[0].calc = SinglePointCalculator(dft[0], **results)
        return dft, "has no energy"
    if kind == "no_forces":
        dft[0].calc = SinglePointCalculator(dft[0], energy=dft[0].get_potential_energy())
        return dft, "has no forces"
    if kind == "duplicate":
        return [*dft, dft[0]], "are both results for queued frame"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["unmatched", "missing_result", "different_atoms", "moved", "no_energy", "no_forces", "duplicate"]
)
def test_bad_dft_inputs_one_line_exit_2_nothing_written(selection, tmp_path, capsys, kind):
    _, folder, _ = selection
    frames, expected = _bad_dft(kind, _dft(_queued(folder)), folder)
    write(tmp_path / "dft.extxyz", frames)
    out = tmp_path / "out" / "train"
    capsys.readouterr()
    assert _merge(folder, tmp_path / "dft.extxyz", "-o", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert expected in err, err
    assert "dft.extxyz frame" in err, err  # names file and frame (the DFT file's, or needs_dft's)
    assert not (tmp_path / "out").exists()


def test_missing_results_allowed_and_reported(selection, tmp_path, capsys):
    _, folder, _ = selection
    dft = _dft(_queued(folder))
    write(tmp_path / "dft.extxyz", dft[2:])
    assert _merge(folder, tmp_path / "dft.extxyz", "-o", tmp_path / "train", "--allow-missing", "--json") == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["n_frames"]["missing"] == 2 and len(report["missing"]) == 2
    assert "needs_dft.extxyz frame 0" in report["missing"][0]
    assert "2 queued frame(s) have no DFT result" in captured.err
    assert len(read(tmp_path / "train" / "train.extxyz", ":")) == report["n_frames"]["total"]


def _compositions(frames):
    return [tuple(sorted(a.get_chemical_symbols().count(e) for e in ("Au", "Cu"))) for a in frames]


@pytest.mark.parametrize("case", ["one_frame", "same_ratio"])
def test_undetermined_fit_refused(selection, tmp_path, capsys, case):
    _, folder, _ = selection
    dft = _dft(_queued(folder))
    if case == "one_frame":
        chosen, expected = [d for d in dft if len(set(d.get_chemical_symbols())) == 2][:1], "1 DFT frame(s) for 2 elements"
    else:
        counts = {}
        for d in dft:
            if len(set(d.get_chemical_symbols())) == 2:
                counts.setdefault(d.get_chemical_formula(), []).append(d)
        chosen = max(counts.values(), key=len)
        if len(chosen) < 2:
            pytest.skip("no composition queued twice")  # the data make this unlikely: 18 frames, 6 compositions
        expected = "appear in the same ratio"
    write(tmp_path / "dft.extxyz", chosen)
    assert _merge(folder, tmp_path / "dft.extxyz", "-o", tmp_path / "train", "--allow-missing") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "--no-align" in err, err
    assert not (tmp_path / "train").exists()


def test_no_align_keeps_umlip_energies_and_warns(selection, tmp_path, capsys):
    _, folder, _ = selection
    dft = _dft(_queued(folder))
    write(tmp_path / "dft.extxyz", dft[:1])
    out = tmp_path / "train"
    assert _merge(folder, tmp_path / "dft.extxyz", "-o", out, "--no-align", "--allow-missing", "--json") == 0
    captured = capsys.readouterr()
    assert "--no-align" in captured.err and json.loads(captured.out)["shifts_eV_per_atom"] is None
    umlip = {a.info[SOURCE_KEY]: a.get_potential_energy() for a in read(folder / "umlip_labelled.extxyz", ":")}
    for atoms in read(out / "train.extxyz", ":"):
        if atoms.info["config_type"] == "umlip":
            assert atoms.info["REF_energy"] == umlip[atoms.info[SOURCE_KEY]]


def test_all_dft_and_no_dft(selection, tmp_path, capsys):
    """U_c = 0 queues every frame (nothing to align); a threshold above every U queues none."""
    work, _, _ = selection
    assert main(["select", str(work / "scored.extxyz"), "--threshold", "0", "1e9", "--out-dir",
                 str(tmp_path / "sel"), "--anchors", "0"]) == 0
    everything = read(tmp_path / "sel" / "Uc_0" / "needs_dft.extxyz", ":")
    write(tmp_path / "dft.extxyz", _dft(everything))
    capsys.readouterr()
    assert _merge(tmp_path / "sel" / "Uc_0", tmp_path / "dft.extxyz", "-o", tmp_path / "all_dft", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_frames"]["dft"] == len(everything) and report["dft_fraction_atoms"] == 1.0
    assert report["shifts_eV_per_atom"] is None
    none = tmp_path / "sel" / "Uc_1e+09"
    assert _merge(none, "-o", tmp_path / "no_dft") == 2  # uMLIP only: no frame to fit the shifts on
    assert "0 DFT frame(s) for 2 elements" in capsys.readouterr().err
    assert not (tmp_path / "no_dft").exists()
    assert _merge(none, "-o", tmp_path / "no_dft", "--no-align", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_frames"]["umlip"] == len(everything) and report["dft_fraction_atoms"] == 0.0


def test_anchors_fix_the_reference_where_high_u_frames_would_bias_it(selection, tmp_path, capsys):
    """The shifts come from the calm anchor frames (``select --anchors``): a "DFT" that agrees with the
    uMLIPs up to the offsets on calm frames but disagrees by a further 0.5-1.5 eV/atom on the frames
    queued for high U (the models' own error there) still gives the offsets to 1e-6 eV; fitted on the
    high-U frames alone the shifts are off and merge warns, naming the remedy."""
    work, _, threshold = selection
    sel = tmp_path / "sel"
    assert main(["select", str(work / "scored.extxyz"), "--threshold", f"{threshold:.17g}", "--out-dir", str(sel),
                 "--anchors", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    folder = next(sel.glob("Uc_*"))
    queued = _queued(folder)
    anchors = [a for a in queued if a.info.get("hetens_anchor")]
    scored = read(work / "scored.extxyz", ":")
    below: dict[tuple, int] = {}
    for a in scored:
        if a.info["hetens_U"] < threshold:
            key = tuple(sorted(set(a.get_chemical_symbols())))
            below[key] = below.get(key, 0) + 1
    assert report["thresholds"][0]["n_anchors"] == len(anchors) == sum(min(2, k) for k in below.values())
    assert all(a.info["hetens_U"] < threshold for a in anchors)
    labelled = {a.info[SOURCE_KEY] for a in read(folder / "umlip_labelled.extxyz", ":")}
    assert not labelled & {a.info[SOURCE_KEY] for a in anchors}  # an anchor is a DFT frame, once
    assert len(labelled) + len(queued) == len(scored)

    dft = _dft(queued)
    rng = np.random.default_rng(3)
    for atoms, done in zip(queued, dft):  # the models' error on the high-U frames, not a reference
        if not atoms.info.get("hetens_anchor"):
            done.calc.results["energy"] += len(done) * rng.uniform(0.5, 1.5)
    write(tmp_path / "dft.extxyz", dft)
    assert _merge(folder, tmp_path / "dft.extxyz", "-o", tmp_path / "train", "--json") == 0
    captured = capsys.readouterr()
    merged = json.loads(captured.out)
    assert merged["fit_on"] == "anchors" and merged["fit_frames"] == len(anchors)
    assert merged["shifts_eV_per_atom"] == pytest.approx(OFFSETS, abs=1e-6)
    assert "over %d anchors" % len(anchors) in captured.err

    plain = [d for a, d in zip(queued, dft) if not a.info.get("hetens_anchor")]
    write(tmp_path / "dft_plain.extxyz", plain)
    assert _merge(folder, tmp_path / "dft_plain.extxyz", "-o", tmp_path / "biased", "--allow-missing", "--json") == 0
    captured = capsys.readouterr()
    biased = json.loads(captured.out)
    assert biased["fit_on"] == "DFT frames"
    assert max(abs(biased["shifts_eV_per_atom"][e] - OFFSETS[e]) for e in OFFSETS) > 0.3
    assert "select --anchors N" in captured.err


def test_mace_reads_the_extxyz(selection, tmp_path):
    pytest.importorskip("mace")
    _, folder, _ = selection
    write(tmp_path / "dft.extxyz", _dft(_queued(folder)))
    out = tmp_path / "train"
    assert _merge(folder, tmp_path / "dft.extxyz", "-o", out, "--umlip-weight", "0.5") == 0
    from hetens.families.mace import _mace_loading

    with _mace_loading():
        from mace.data.utils import KeySpecification, load_from_xyz

    keys = KeySpecification.from_defaults().update(
        info_keys={"energy": "REF_energy", "stress": "REF_stress"}, arrays_keys={"forces": "REF_forces"}
    )
    _, configs = load_from_xyz(str(out / "train.extxyz"), keys)
    frames = read(out / "train.extxyz", ":")
    assert len(configs) == len(frames)
    for config, atoms in zip(configs, frames):
        assert config.properties["energy"] == pytest.approx(atoms.info["REF_energy"])
        np.testing.assert_allclose(config.properties["forces"], atoms.arrays["REF_forces"])
        assert config.config_type == atoms.info["config_type"]
        assert config.weight == (0.5 if atoms.info["config_type"] == "umlip" else 1.0)


def test_pacemaker_pickle_columns_and_units(selection, tmp_path):
    pd = pytest.importorskip("pandas")
    _, folder, _ = selection
    write(tmp_path / "dft.extxyz", _dft(_queued(folder)))
    out = tmp_path / "train"
    assert _merge(folder, tmp_path / "dft.extxyz", "-o", out) == 0
    df = pd.read_pickle(out / "train.pckl.gzip", compression="gzip")
    assert {"energy", "forces", "ase_atoms", "energy_corrected"} <= set(df.columns)
    frames = read(out / "train.extxyz", ":")
    assert len(df) == len(frames)
    for (_, row), atoms in zip(df.iterrows(), frames):
        assert row["energy"] == pytest.approx(atoms.info["REF_energy"])  # eV, total
        assert row["energy_corrected"] == row["energy"]  # no free-atom energies given
        assert row["forces"].shape == (len(atoms), 3)  # eV/A
        np.testing.assert_allclose(row["forces"], atoms.arrays["REF_forces"])
        np.testing.assert_allclose(row["ase_atoms"].positions, atoms.positions)
        assert row["ase_atoms"].calc is None


def test_deepmd_through_dpdata(selection, tmp_path):
    dpdata = pytest.importorskip("dpdata")
    _, folder, _ = selection
    write(tmp_path / "dft.extxyz", _dft(_queued(folder)))
    out = tmp_path / "train"
    assert _merge(folder, tmp_path / "dft.extxyz", "-o", out, "--format", "extxyz", "deepmd") == 0
    frames = read(out / "train.extxyz", ":")
    systems = [dpdata.LabeledSystem(str(p), fmt="deepmd/npy") for p in sorted((out / "deepmd").iterdir())]
    assert sum(len(s) for s in systems) == len(frames)
    energies = np.sort(np.concatenate([s["energies"] for s in systems]))
    np.testing.assert_allclose(energies, np.sort([a.info["REF_energy"] for a in frames]), atol=1e-8)


def test_deepmd_without_dpdata_is_one_line(selection, tmp_path, capsys, monkeypatch):
    import hetens.distill.merge as merge_module

    monkeypatch.setattr(merge_module, "deepmd_available", lambda: False)
    _, folder, _ = selection
    write(tmp_path / "dft.extxyz", _dft(_queued(folder)))
    assert _merge(folder, tmp_path / "dft.extxyz", "-o", tmp_path / "train", "--format", "deepmd") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "hetens[deepmd-data]" in err
    assert not (tmp_path / "train").exists()


# ------------------------------------------------------------------ the shift fit alone


def test_fit_refuses_fewer_frames_and_fixed_ratios():
    with pytest.raises(UndeterminedShiftsError, match="1 DFT frame"):
        fit_shifts(np.array([[2.0, 2.0]]), [1.0], [0.0], ["Ni", "Al"])
    with pytest.raises(UndeterminedShiftsError, match=r"Ni, Al appear in the same ratio \(1:1\)"):
        fit_shifts(np.array([[2.0, 2.0], [4.0, 4.0], [1.0, 1.0]]), [1.0, 2.0, 0.5], [0.0] * 3, ["Ni", "Al"])
    with pytest.raises(UndeterminedShiftsError, match="no DFT frame contains it"):
        fit_shifts(np.array([[2.0, 0.0], [4.0, 0.0]]), [1.0, 2.0], [0.0, 0.0], ["Ni", "Al"])
    fit = fit_shifts(np.array([[54.0], [128.0]]), [54 * 0.2, 128 * 0.2], [0.0, 0.0], ["W"])
    assert fit.shifts[0] == pytest.approx(0.2, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    n_elements=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.01, 50.0),
)
def test_fit_recovers_random_shifts(n_elements, seed, scale):
    rng = np.random.default_rng(seed)
    n_frames = n_elements + int(rng.integers(0, 6))
    counts = rng.integers(0, 60, size=(n_frames, n_elements)).astype(float)
    counts[np.arange(n_elements), np.arange(n_elements)] += 1  # every element somewhere
    counts[np.arange(n_frames), rng.integers(0, n_elements, n_frames)] += 1  # no empty frame
    if np.linalg.matrix_rank(counts) < n_elements:
        with pytest.raises(UndeterminedShiftsError):
            fit_shifts(counts, np.zeros(n_frames), np.zeros(n_frames), [f"E{k}" for k in range(n_elements)])
        return
    shifts = rng.normal(0, scale, n_elements)
    e_umlip = rng.normal(-5, 3, n_frames) * counts.sum(axis=1)
    fit = fit_shifts(counts, e_umlip + counts @ shifts, e_umlip, [f"E{k}" for k in range(n_elements)])
    np.testing.assert_allclose(fit.shifts, shifts, atol=1e-6 * max(1.0, scale))
    assert fit.residual_max_per_atom < 1e-8 * max(1.0, scale) * 100


def test_composition_matrix():
    counts = composition_matrix([["Ni", "Al", "Ni"], ["Al"]], ["Al", "Ni"])
    np.testing.assert_array_equal(counts, [[1, 2], [1, 0]])
