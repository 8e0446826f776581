"""hetens.families.chgnet_graph: the numpy crystal graph equals CHGNet's converter, tensor for tensor.

The model's results on it are then CHGNet's bit for bit (with CHGNet's own
backward setting); tests/test_group_evaluation.py checks that, and the
float32 rounding of the plain backward pass, on the real models.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hetens.families.chgnet_graph import EdgeGraph, crystal_graph

pytest.importorskip("chgnet")
from chgnet.graph import CrystalGraphConverter  # noqa: E402
from pymatgen.io.ase import AseAtomsAdaptor  # noqa: E402

FIELDS = ("atomic_number", "atom_frac_coord", "atom_graph", "neighbor_image", "directed2undirected",
          "undirected2directed", "bond_graph", "lattice")


@pytest.fixture(scope="module")
def converters(chgnet_member):
    """CHGNet 0.3.0's own converter (6 A / 3 A) and two other settings, all "fast"."""
    own = chgnet_member.calculator.model.graph_converter
    assert own.algorithm == "fast"
    return [own,
            CrystalGraphConverter(atom_graph_cutoff=5, bond_graph_cutoff=3),
            CrystalGraphConverter(atom_graph_cutoff=4, bond_graph_cutoff=4, on_isolated_atoms="warn")]


def assert_same_graph(converter, atoms) -> None:
    structure = AseAtomsAdaptor.get_structure(atoms)
    expected = converter(structure)
    got = crystal_graph(converter, structure)
    for field in FIELDS:
        a, b = getattr(expected, field), getattr(got, field)
        assert a.dtype == b.dtype and a.shape == b.shape, (field, a.shape, b.shape)
        assert torch.equal(a, b), field
    assert (got.atom_graph_cutoff, got.bond_graph_cutoff) == (expected.atom_graph_cutoff, expected.bond_graph_cutoff)
    assert got.composition == expected.composition


def _w(shape, rattle=0.0, seed=0, cubic=True):
    atoms = bulk("W", "bcc", a=3.17, cubic=cubic).repeat(shape)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


CASES = {
    "bcc W primitive, 1 atom (every edge to its own image)": lambda: _w(1, cubic=False),
    "bcc W cubic, 2 atoms, symmetric (ties in distance)": lambda: _w(1),
    "bcc W 54 atoms rattled": lambda: _w(3, 0.05, 1),
    "fcc Cu": lambda: bulk("Cu", "fcc", a=3.6),
    "NaCl 64 atoms rattled": lambda: _rattled(bulk("NaCl", "rocksalt", a=5.6).repeat(2), 0.1),
    "simple cubic, edges at the bond cutoff": lambda: Atoms("Po", cell=np.eye(3) * 3.0, pbc=True),
    "triclinic two elements": lambda: Atoms("FeO", scaled_positions=[[0, 0, 0], [0.4, 0.55, 0.5]],
                                            cell=[[3.1, 0, 0], [0.7, 2.9, 0], [0.4, 0.8, 3.3]], pbc=True),
    "long thin cell": lambda: Atoms("Si2", positions=[[0, 0, 0], [1.2, 1.1, 6.0]], cell=[2.4, 2.5, 12.0], pbc=True),
}


def _rattled(atoms, amount):
    atoms.rattle(amount, seed=2)
    return atoms


@pytest.mark.parametrize("case", list(CASES))
def test_crystal_graph_equals_the_converter(converters, case):
    for converter in converters:
        assert_same_graph(converter, CASES[case]())


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_atoms=st.integers(1, 6),
    lengths=st.tuples(*[st.floats(2.2, 6.5)] * 3),
    tilt=st.tuples(*[st.floats(-0.3, 0.3)] * 3),
    seed=st.integers(0, 2**16),
)
def test_crystal_graph_equals_the_converter_on_random_cells(converters, n_atoms, lengths, tilt, seed):
    cell = np.diag(lengths)
    cell[1, 0], cell[2, 0], cell[2, 1] = (t * lengths[0] for t in tilt)
    rng = np.random.default_rng(seed)
    atoms = Atoms(rng.choice(["W", "Mo", "O", "H"], n_atoms), scaled_positions=rng.random((n_atoms, 3)),
                  cell=cell, pbc=True)
    assume(min(atoms.get_all_distances(mic=True)[np.triu_indices(n_atoms, 1)], default=1.0) > 0.5)
    for converter in converters:
        try:
            expected = converter(AseAtomsAdaptor.get_structure(atoms))
        except ValueError as error:  # an isolated atom, with on_isolated_atoms="error"
            with pytest.raises(ValueError, match="isolated atom"):
                crystal_graph(converter, AseAtomsAdaptor.get_structure(atoms))
            assert "isolated atom" in str(error)
            continue
        got = crystal_graph(converter, AseAtomsAdaptor.get_structure(atoms))
        for field in FIELDS:
            assert torch.equal(getattr(expected, field), getattr(got, field)), field


def test_the_legacy_algorithm_and_other_converters_run_unchanged(chgnet_member):
    legacy = CrystalGraphConverter(atom_graph_cutoff=6, bond_graph_cutoff=3, algorithm="legacy")
    structure = AseAtomsAdaptor.get_structure(_w(2, 0.05, 4))
    calls = []
    original = legacy.forward
    legacy.forward = lambda s: calls.append(s) or original(s)
    graph = crystal_graph(legacy, structure)
    assert calls == [structure]  # the converter itself ran
    assert torch.equal(graph.bond_graph, chgnet_member.calculator.model.graph_converter(structure).bond_graph)


def test_edge_graph_pairs_reverse_edges_and_refuses_an_incomplete_list():
    # Two atoms, 0 -> 1 through image (1, 0, 0) and its reverse 1 -> 0 through (-1, 0, 0), plus
    # a self-edge pair 0 -> 0 through (0, 1, 0) and (0, -1, 0).
    center = [0, 1, 0, 0]
    neighbor = [1, 0, 0, 0]
    image = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]]
    graph = EdgeGraph(2, center, neighbor, image, [2.5, 2.5, 3.0, 3.0])
    assert graph.complete
    assert graph.directed2undirected.tolist() == [0, 0, 1, 1]
    assert graph.opening_edge.tolist() == [0, 2]
    assert graph.closing_edge.tolist() == [1, 3]
    incomplete = EdgeGraph(2, center[:3], neighbor[:3], image[:3], [2.5, 2.5, 3.0])
    assert not incomplete.complete
    with pytest.raises(ValueError, match="directed edges are not complete"):
        incomplete.line_graph_adjacency_list(3.0)
