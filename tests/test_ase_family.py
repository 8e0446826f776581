"""The ``ase`` family: any ASE calculator by import path, ``ase:MODULE:CLASS@KWARG=VALUE@level=L``.

Real ASE calculators (EMT, LennardJones) through ``load_member``, the
conformance check, ensemble files, worker processes and ``hetens single``;
every error names the module, class or keyword at fault.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.io import write

import hetens
from hetens.cli.main import main
from hetens.errors import MemberSpecError, MissingFamilyError, MixedReferenceError, UnknownModelError
from hetens.families.ase import parse_value
from hetens.testing import CHECKS, check_member

EMT_SPEC = "ase:ase.calculators.emt:EMT@level=EMT"
LJ_SPEC = "ase:ase.calculators.lj:LennardJones@sigma=2.5@epsilon=0.1"


def copper(repeat: int = 1):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=3)
    return atoms


def test_real_ase_calculators_pass_the_conformance_check():
    emt = hetens.load_member(EMT_SPEC, device="cpu")
    assert isinstance(emt.calculator, EMT)
    assert (emt.family, emt.level_of_theory, emt.name) == ("ase", "EMT", "ase:ase.calculators.emt:EMT")
    assert emt.versions["ase"] and emt.elements is None
    report = check_member(emt, copper())
    assert not report.skipped and len(report.passed) == len(CHECKS), report

    lj = hetens.load_member(LJ_SPEC, device="cpu")
    assert isinstance(lj.calculator, LennardJones) and lj.level_of_theory == "unknown"
    assert lj.calculator.parameters["sigma"] == 2.5 and lj.calculator.parameters["epsilon"] == 0.1
    report = check_member(lj, copper())
    assert not report.skipped and len(report.passed) == len(CHECKS), report
    # The same numbers as the calculator built by hand.
    atoms = copper()
    own = LennardJones(sigma=2.5, epsilon=0.1)
    assert lj.calculator.get_potential_energy(atoms) == own.get_potential_energy(atoms.copy())


def test_option_values_are_python_literals_where_they_parse():
    assert parse_value("2.5") == 2.5 and parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("True") is True and parse_value("false") is False
    assert parse_value("None") is None and parse_value("none") is None
    assert parse_value("[1, 2]") == [1, 2] and parse_value("'x'") == "x"
    assert parse_value("cpu") == "cpu" and parse_value("1e-3") == 1e-3 and parse_value("a b") == "a b"
    member = hetens.load_member(
        "ase:ase.calculators.lj:LennardJones@sigma=2.3@epsilon=1e-2@rc=6@smooth=True", device="cpu"
    )
    assert member.calculator.parameters["rc"] == 6 and member.calculator.parameters["smooth"] is True


@pytest.mark.parametrize(
    "spec, error, words",
    [
        ("ase:no_such_pkg_xyz.sub:Calc", MissingFamilyError, ["'no_such_pkg_xyz.sub'", "@python="]),
        ("ase:ase.calculators.emt:EMTX", UnknownModelError, ["no attribute 'EMTX'", "defined there: EMT"]),
        ("ase:ase.atoms:Atoms", MemberSpecError, ["ase.atoms.Atoms is not an ASE calculator"]),
        ("ase:os:sep", MemberSpecError, ["os.sep is a str"]),
        ("ase:ase.calculators.lj:LennardJones@sigmaa=2", MemberSpecError,
         ["sigmaa is not a parameter of LennardJones", "epsilon", "sigma"]),
        ("ase:ase.calculators.emt", MemberSpecError, ["MODULE:CLASS", "ase:ase.calculators.emt:EMT"]),
        ("ase:ase.calculators.emt:EMT@PBE", MemberSpecError, ["no heads", "'@PBE'"]),
    ],
)
def test_errors_name_the_module_class_or_keyword(spec, error, words):
    with pytest.raises(error) as caught:
        hetens.load_member(spec, device="cpu")
    for word in words:
        assert word in str(caught.value)


def test_levels_unknown_and_declared(w16):
    """A declared level is compared like any member's; ``unknown`` is not compared by label,
    but its energy must share the predictors' reference (EMT next to 7net-0 is refused on the
    structure, naming both, unless allow_mixed_reference)."""
    with pytest.raises(MixedReferenceError, match="r2SCAN"):
        hetens.HeterogeneousEnsembleCalculator(
            ["ase:ase.calculators.emt:EMT@level=PBE+U", "chgnet:r2scan"], device="cpu")
    calc = hetens.HeterogeneousEnsembleCalculator(["ase:ase.calculators.emt:EMT", "sevenn:7net-0"],
                                                  device="cpu")
    atoms = copper(2)
    atoms.calc = calc
    with pytest.raises(MixedReferenceError, match="ase:ase.calculators.emt:EMT 0.0"):
        atoms.get_potential_energy()
    calc = hetens.HeterogeneousEnsembleCalculator(["ase:ase.calculators.emt:EMT", "sevenn:7net-0"],
                                                  device="cpu", allow_mixed_reference=True)
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())


def test_ensemble_file_with_ase_members(tmp_path):
    path = tmp_path / "ase.toml"
    path.write_text(
        f'[[member]]\nspec = "{EMT_SPEC}"\nweight = 0.25\n\n'
        '[[member]]\nspec = "ase:ase.calculators.lj:LennardJones@sigma=2.3@epsilon=0.01@level=EMT"\n'
        'name = "lj"\nweight = 0.75\n'
    )
    calc = hetens.load_ensemble_file(path)
    assert calc.member_names == ["ase:ase.calculators.emt:EMT", "lj"]
    atoms = copper()
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    emt = EMT().get_potential_energy(copper())
    lj = LennardJones(sigma=2.3, epsilon=0.01).get_potential_energy(copper())
    assert energy == pytest.approx(0.25 * emt + 0.75 * lj, abs=1e-10)


def _worker_knows_the_ase_family() -> bool:
    """Workers run ``python -I``: the hetens installed in this interpreter, which may predate
    the ``ase`` family (a checkout run through PYTHONPATH)."""
    probe = subprocess.run([sys.executable, "-I", "-c", "import hetens.families.ase"], capture_output=True)
    return probe.returncode == 0


def test_ase_member_in_a_worker_matches_in_process():
    if not _worker_knows_the_ase_family():
        pytest.skip("the hetens a worker imports (python -I) has no ase family yet")
    atoms = copper()
    isolated = hetens.load_member(f"{LJ_SPEC}@python={sys.executable}", device="cpu")
    try:
        assert type(isolated.calculator).__name__ == "IsolatedCalculator"
        report = check_member(isolated, copper())
        assert len(report.passed) == len(CHECKS), report
        in_process = hetens.load_member(LJ_SPEC, device="cpu")
        assert isolated.calculator.get_potential_energy(atoms) == in_process.calculator.get_potential_energy(
            atoms.copy())
        np.testing.assert_array_equal(isolated.calculator.get_forces(atoms),
                                      in_process.calculator.get_forces(atoms.copy()))
    finally:
        isolated.calculator.close()
    # An unimportable module fails in the worker, and the error names it.
    broken = hetens.load_member(f"ase:no_such_pkg_xyz:Calc@python={sys.executable}", device="cpu")
    try:
        with pytest.raises(Exception, match="no_such_pkg_xyz"):
            broken.calculator.get_potential_energy(copper())
    finally:
        broken.calculator.close()


def test_hetens_single_with_two_ase_members(tmp_path, capsys):
    path = tmp_path / "cu.extxyz"
    write(path, copper(2))
    lj = "ase:ase.calculators.lj:LennardJones@sigma=2.3@epsilon=0.01"
    code = main(["single", str(path), "--models", "ase:ase.calculators.emt:EMT", lj, "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["members"] == ["ase:ase.calculators.emt:EMT", "ase:ase.calculators.lj:LennardJones"]
    emt_e = EMT().get_potential_energy(copper(2))
    lj_e = LennardJones(sigma=2.3, epsilon=0.01).get_potential_energy(copper(2))
    assert summary["energy"] == pytest.approx((emt_e + lj_e) / 2, abs=1e-8)
    assert summary["U"] > 0

    # A bad keyword is one line on stderr and exit 2, naming it.
    code = main(["single", str(path), "--models", "ase:ase.calculators.emt:EMT",
                 "ase:ase.calculators.lj:LennardJones@sigmaa=2.3"])
    assert code == 2
    assert "sigmaa is not a parameter of LennardJones" in capsys.readouterr().err
