"""The energy-reference check (issue 22, part 1): physical disagreement is U, not an error.

A member on another energy reference (EMT next to uMLIPs) is refused on any
structure, calm or extreme; members that disagree about a compressed or
broken structure give a result with its U and energy spread. Real shipped
models (7net-0, CHGNet 0.3.0) and ASE's EMT.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write

from hetens import HeterogeneousEnsembleCalculator, Member
from hetens.cli.main import main
from hetens.errors import MixedReferenceError
from hetens.core.reference_check import EnergyReferenceCheck, median_deviation, reference_structure

from conftest import tungsten_cell

W_BCC_16 = Path(__file__).resolve().parents[1] / "examples" / "data" / "W_bcc_16.extxyz"
PAIR = ["--models", "sevenn:7net-0", "chgnet:0.3.0", "--device", "cpu"]


def dimer(symbol: str, d: float) -> Atoms:
    """Two atoms ``d`` Å apart in a 12 Å periodic box (a compressed dimer of the W pool)."""
    return Atoms(f"{symbol}2", positions=[(0, 0, 0), (d, 0, 0)], cell=[12.0] * 3, pbc=True)


def w16_with_close_pair(distance: float = 0.9) -> Atoms:
    """W_bcc_16 with atom 0's nearest neighbour moved to ``distance`` Å of it."""
    atoms = read(W_BCC_16)
    vectors = atoms.get_distances(0, range(1, len(atoms)), mic=True, vector=True)
    j = int(np.argmin(np.linalg.norm(vectors, axis=1)))
    atoms.positions[j + 1] = atoms.positions[0] + distance * vectors[j] / np.linalg.norm(vectors[j])
    return atoms


def copper(rattle_seed: int = 3) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.rattle(0.02, seed=rattle_seed)
    return atoms


def per_atom_spread(calc) -> float:
    energies = calc.results["member_energies"][calc.predictor_mask] / len(calc.atoms)
    return median_deviation(energies)[1]


def test_reference_structures_are_small_calm_periodic_cells():
    cases = {"W": ("bcc", 1), "Cu": ("fcc", 1), "Mg": ("hcp", 2), "Si": ("diamond", 2),
             "H": ("molecule", 2), "O": ("molecule", 2), "B": ("no tabulated", 1), "He": ("no tabulated", 1)}
    for symbol, (words, n_atoms) in cases.items():
        atoms, description = reference_structure(symbol)
        assert words in description, (symbol, description)
        assert len(atoms) == n_atoms and set(atoms.get_chemical_symbols()) == {symbol}
        assert atoms.pbc.all() and atoms.cell.rank == 3
        distances = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)] if n_atoms > 1 else [9.9]
        assert min(distances) > 0.7  # nothing compressed
    w, description = reference_structure("W")
    assert description == "bcc, a=3.16 A" and w.get_volume() == pytest.approx(3.16**3 / 2)
    assert median_deviation([1.0, 2.0, 7.0]) == (2.0, 5.0)


def test_a_calm_structure_costs_no_reference_evaluation(sevenn_member, chgnet_member):
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    calc.get_potential_energy(tungsten_cell(2))
    assert per_atom_spread(calc) < 0.1
    assert calc.reference_check.evaluations == 0 and calc.reference_check.references == {}


def test_two_atoms_0_9_A_apart_give_u_and_a_result(sevenn_member, chgnet_member):
    """The new user's broken W_bcc_16: the models disagree by several eV/atom; that is U."""
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    atoms = w16_with_close_pair(0.9)
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    r = calc.results
    assert np.isfinite(energy) and np.isfinite(atoms.get_forces()).all()
    assert per_atom_spread(calc) > 1.0  # what the old guard refused
    assert r["uncertainty"] > 10.0  # eV/A: the disagreement is reported as U...
    assert r["energy_std"] > 1.0  # ...and as the energy spread, eV/atom
    # Judged on bcc W instead: once per predictor, cached, and within 1 eV/atom.
    check = calc.reference_check
    assert check.evaluations == 2 and set(check.references) == {"W"}
    assert median_deviation(list(check.references["W"].values()))[1] < 0.5
    calc.get_potential_energy(dimer("W", 1.2))  # another extreme W structure: no new evaluation
    assert per_atom_spread(calc) > 1.0 and check.evaluations == 2


@pytest.mark.parametrize("declared", [False, True], ids=["EMT", "EMT@PBE+U"])
def test_emt_next_to_umlips_is_refused_on_calm_and_on_extreme_structures(sevenn_member, chgnet_member, declared):
    """Plain EMT (no level: judged on the first structure) and EMT declared PBE+U (judged when
    the energies spread) are both refused, on a calm fcc cell and on a Cu dimer 1.2 A long."""
    emt = Member.wrap(EMT(), name="EMT", level_of_theory="PBE+U" if declared else "unknown")
    for atoms in (copper(), dimer("Cu", 1.2)):
        calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member, emt])
        with pytest.raises(MixedReferenceError) as caught:
            calc.get_potential_energy(atoms)
        message = str(caught.value)
        assert "on the reference crystal of Cu (fcc, a=3.61 A)" in message
        assert "more than 1 eV/atom from their median" in message
        values = dict(calc.reference_check.references["Cu"])
        assert values["EMT"] == pytest.approx(0.0, abs=0.05)  # EMT's zero is the fcc crystal
        assert values["sevenn:7net-0"] < -3.5 and values["chgnet:0.3.0"] < -3.5  # uMLIPs: about -4.1
        assert f"EMT {values['EMT']:.3f}" in message and f"sevenn:7net-0 {values['sevenn:7net-0']:.3f}" in message
        assert atoms.get_chemical_formula() in message
        allowed = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member, emt], allow_mixed_reference=True)
        assert np.isfinite(allowed.get_potential_energy(atoms))
        assert allowed.reference_check.evaluations == 0  # the check is off
    # Without EMT the uMLIPs' disagreement on the dimer is physical: a result with its U.
    pair = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    pair.get_potential_energy(dimer("Cu", 1.2))
    assert per_atom_spread(pair) > 1.0 and pair.results["uncertainty"] > 10.0


def test_the_threshold_applies_to_the_reference_crystals(sevenn_member, chgnet_member):
    strict = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], max_energy_deviation=1e-6)
    with pytest.raises(MixedReferenceError, match=r"reference crystal of W \(bcc, a=3.16 A\).* more than 1e-06"):
        strict.get_potential_energy(tungsten_cell(1))
    check = EnergyReferenceCheck(0.5)
    assert check.max_deviation == 0.5 and check.evaluations == 0


def test_scoring_extreme_frames_gives_u_and_emt_is_still_refused(tmp_path, capsys):
    """The scoring path (predict_frames) uses the same check as the calculator."""
    frames = [tungsten_cell(1), dimer("W", 1.2), w16_with_close_pair(0.9)]
    write(tmp_path / "w.extxyz", frames)
    out = tmp_path / "scored.extxyz"
    argv = ["score", str(tmp_path / "w.extxyz"), "-o", str(out), *PAIR, "--progress", "off"]
    assert main(argv) == 0
    scored = read(out, ":")
    assert len(scored) == 3
    assert scored[1].info["hetens_U"] > 10.0 and scored[2].info["hetens_U"] > 10.0
    assert scored[2].info["hetens_energy_std"] > 1.0
    capsys.readouterr()
    write(tmp_path / "cu.extxyz", [copper(), dimer("Cu", 1.2)])
    argv = ["score", str(tmp_path / "cu.extxyz"), "-o", str(tmp_path / "cu_scored.extxyz"), "--models",
            "sevenn:7net-0", "ase:ase.calculators.emt:EMT", "--device", "cpu", "--progress", "off"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different energy references" in err[0] and "reference crystal of Cu" in err[0]


def test_md_started_on_a_compressed_dimer_halts_on_u(tmp_path):
    """``hetens md --halt-above`` on a W dimer 1.2 A long (DFT forces of hundreds of eV/A in the
    W pool): the run halts on U with exit code 3, not on an energy-reference error."""
    start = tmp_path / "w2.extxyz"
    write(start, dimer("W", 1.2))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["md", str(start), *PAIR, "--steps", "3", "--halt-above", "5", "--log",
                     str(tmp_path / "w2.csv"), "--no-plot", "--json"])
    assert code == 3
    summary = json.loads(out.getvalue())
    assert summary["status"] == "halted" and summary["halted_at"] == 0 and summary["halt_U"] > 5
    (offending,) = read(tmp_path / "w2.halt.extxyz", ":")
    assert offending.info["hetens_role"] == "offending" and offending.info["hetens_U"] > 5
