"""Bad structures are refused with a clear error before any model runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from hetens import HeterogeneousEnsembleCalculator
from hetens.errors import InvalidStructureError
from hetens.core.validation import check_structure, element_symbols, unsupported_elements


def test_good_structures_pass_unchanged():
    good = [
        bulk("W", "bcc", a=3.17),  # one atom, periodic
        Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]),  # molecule, no cell
        Atoms("W2", positions=[[0.1, 0, 0], [2.9, 0, 0]], cell=[3, 3, 3], pbc=True),  # 0.2 A across the boundary
        Atoms("W2", positions=[[0, 0, 0], [0, 0, 1.5]], cell=[3, 3, 0], pbc=[True, True, False]),  # slab
    ]
    for atoms in good:
        before = atoms.copy()
        assert check_structure(atoms) is None
        assert atoms == before  # numbers, positions, cell and pbc untouched
        assert atoms.constraints == [] and atoms.calc is None


def test_min_distance_is_the_boundary():
    pair = Atoms("W2", positions=[[0, 0, 0], [0.6, 0, 0]], cell=[5, 5, 5], pbc=True)
    check_structure(pair, min_distance=0.5)
    with pytest.raises(InvalidStructureError, match=r"0.600 A apart, closer than 0.7 A"):
        check_structure(pair, min_distance=0.7)
    too_close = Atoms("W2", positions=[[0, 0, 0], [0.01, 0, 0]])
    with pytest.raises(InvalidStructureError, match="0.010 A apart"):
        check_structure(too_close)  # the default min_distance
    check_structure(too_close, min_distance=0.0)  # 0 turns the overlap check off
    with pytest.raises(InvalidStructureError, match="0.010 A apart"):
        check_structure(too_close, min_distance=1e-3 + 0.01)


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (Atoms(), "no atoms"),
        (Atoms("W2", positions=[[0, 0, 0], [np.nan, 0, 0]], cell=[3, 3, 3], pbc=True),
         r"atom 1 \(W\) has a non-finite position"),
        (Atoms("W2", positions=[[0, 0, 0], [1.5, 0, 0]], pbc=True),
         "periodic along axis a but that cell vector is zero"),
        (Atoms("WMo", positions=[[0, 0, 0], [0.05, 0, 0]], cell=[3, 3, 3], pbc=True),
         r"atoms 0 \(W\) and 1 \(Mo\) are 0.050 A apart"),
        (Atoms("W2", positions=[[0.0, 0, 0], [2.95, 0, 0]], cell=[3, 3, 3], pbc=True),
         "0.050 A apart"),  # across the periodic boundary
    ],
)
def test_bad_structures(atoms, message):
    with pytest.raises(InvalidStructureError, match=message):
        check_structure(atoms, label="frame 3 of x.extxyz")
    assert issubclass(InvalidStructureError, ValueError)


def test_unsupported_elements():
    atoms = bulk("W", "bcc", a=3.17).repeat(2)
    atoms.numbers[:2] = [92, 8]  # U, O
    missing, nobody = unsupported_elements(atoms, {"m0": None, "m1": range(1, 84), "m2": [8, 74, 92]})
    assert missing == {"m1": [92]} and nobody == []  # m0's set is unknown: it may cover U
    missing, nobody = unsupported_elements(atoms, {"m1": range(1, 84), "m2": [74]})
    assert missing == {"m1": [92], "m2": [8, 92]} and nobody == [92]
    assert element_symbols(nobody) == "U"
    assert unsupported_elements(atoms, {"m": range(1, 95)}) == ({}, [])


def test_calculator_refuses_before_any_member_runs(sevenn_member):
    calls = []
    original = sevenn_member.calculator.calculate
    calc = HeterogeneousEnsembleCalculator([sevenn_member, dataclasses.replace(sevenn_member, name="copy")])
    sevenn_member.calculator.calculate = lambda *a, **k: (calls.append(1), original(*a, **k))
    try:
        atoms = Atoms("W2", positions=[[0, 0, 0], [0.01, 0, 0]], cell=[3, 3, 3], pbc=True)
        atoms.calc = calc
        with pytest.raises(InvalidStructureError, match="0.010 A apart"):
            atoms.get_potential_energy()
        assert calls == []
    finally:
        del sevenn_member.calculator.calculate
