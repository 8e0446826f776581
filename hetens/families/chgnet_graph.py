"""CHGNet's crystal graph, built with numpy: the same tensors as ``CrystalGraphConverter``.

CHGNet's converter finds the neighbour list in C (pymatgen) and pairs the
directed edges in C (``chgnet.graph.cygraph``), but then builds its atom and
bond (line) graphs in pure Python: one Python iteration for every pair of
edges that meet at an atom, whatever their length (a 54-atom bcc W cell: 25,000
iterations, 11 ms of the converter's 30 ms). :func:`crystal_graph` runs
the converter's own ``forward`` (the same neighbour list, checks, warnings
and ``CrystalGraph``) with a graph object whose two adjacency lists are
computed with numpy from the same edge arrays, following the C pairing rule
and CHGNet's iteration order exactly; the tensors are equal element for
element, so the model's results are bit-identical (tests compare every
tensor with the converter's on random crystals, small cells whose atoms
neighbour their own images, and cells where edges are exactly at the cutoff).

Only the ``"fast"`` algorithm is rebuilt (the one CHGNet uses whenever its C
extension is there). For the ``"legacy"`` algorithm, whose pairing also
compares distances, and for any structure whose edges do not pair up (where
CHGNet raises and writes ``bond_graph_error.cif``), the converter itself
runs, unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["crystal_graph", "EdgeGraph"]


class EdgeGraph:
    """The directed edges of one neighbour list, paired as ``chgnet.graph.cygraph.make_graph``
    pairs them, with ``chgnet.graph.graph.Graph``'s two adjacency-list methods.

    An edge ``e`` (``center[e] -> neighbor[e]`` through ``image[e]``) belongs
    to the undirected edge of the earlier edge that is its reverse (nodes
    swapped, image negated); without an earlier reverse it opens a new
    undirected edge. Undirected edges are numbered in the order they open;
    each takes its nodes and distance from the edge that opened it.

    Args:
        n_atoms: atoms in the structure.
        center, neighbor: (E,) int, each directed edge's atoms, in neighbour-list order.
        image: (E, 3) int, the periodic image of the neighbour.
        distance: (E,) float, Å.
    """

    def __init__(self, n_atoms: int, center, neighbor, image, distance) -> None:
        self.n_atoms = int(n_atoms)
        self.center = np.asarray(center, dtype=np.int64)
        self.neighbor = np.asarray(neighbor, dtype=np.int64)
        self.image = np.asarray(image, dtype=np.int64).reshape(-1, 3)
        self.distance = np.asarray(distance, dtype=np.float64)
        n_edges = len(self.center)
        index = np.arange(n_edges)
        reverse = _reverse_edges(self.n_atoms, self.center, self.neighbor, self.image)
        opens = (reverse < 0) | (reverse > index)  # no earlier reverse: a new undirected edge
        opener = np.where(opens, index, reverse)  # the edge that opened each edge's undirected edge
        number = np.cumsum(opens) - 1  # undirected index, numbered as they open
        self.directed2undirected = number[opener]
        self.opening_edge = index[opens]  # (U,) per undirected edge: the edge that opened it
        closes = ~opens
        self.closing_edge = np.full(len(self.opening_edge), -1, dtype=np.int64)
        self.closing_edge[number[reverse[closes]]] = index[closes]

    @property
    def complete(self) -> bool:
        """Whether every undirected edge has both of its directed edges (CHGNet raises otherwise)."""
        return len(self.center) == 2 * len(self.opening_edge)

    def adjacency_list(self) -> tuple[list | np.ndarray, list | np.ndarray]:
        """``Graph.adjacency_list``: (E, 2) ``[center, neighbor]`` rows and (E,) undirected indices."""
        if len(self.center) == 0:
            return [], []
        return np.stack([self.center, self.neighbor], axis=1), self.directed2undirected

    def line_graph_adjacency_list(self, cutoff: float) -> tuple[list | np.ndarray, np.ndarray]:
        """``Graph.line_graph_adjacency_list(cutoff)``: the angle rows, in CHGNet's order.

        For each undirected edge no longer than ``cutoff`` (in index order),
        for each of its two ends in turn (the opening edge's centre with the
        opening edge, then its neighbour with the closing edge), one row
        ``[atom, undirected, directed, other undirected, other directed]`` per
        other edge at that atom shorter than ``cutoff``, in the order CHGNet's
        nodes hold their edges: grouped by neighbour atom in order of first
        appearance, each group in edge order.

        Returns:
            (A, 5) int rows (``[]`` when there are none) and (U,) the opening
            edge of each undirected edge.

        Raises:
            ValueError: an undirected edge lacks one of its directed edges (CHGNet's message).
        """
        if not self.complete:
            raise ValueError(
                f"Error: number of directed edges={len(self.center)} != 2 * number of "
                f"undirected edges={len(self.opening_edge)}! This indicates directed edges are not complete"
            )
        by_atom = self._edges_by_atom()
        short = by_atom[self.distance[by_atom] < cutoff]  # strict, as CHGNet
        counts = np.bincount(self.center[short], minlength=self.n_atoms)
        starts = np.cumsum(counts) - counts
        bonds = np.flatnonzero(~(self.distance[self.opening_edge] > cutoff))
        # Two queries per bond, in CHGNet's order: (atom, bond, directed edge at that atom).
        query_edge = np.stack([self.opening_edge[bonds], self.closing_edge[bonds]], axis=1).reshape(-1)
        query_bond = np.repeat(bonds, 2)
        query_atom = self.center[query_edge]
        lengths = counts[query_atom]
        which = np.repeat(np.arange(len(query_edge)), lengths)
        offset = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        other = short[np.repeat(starts[query_atom], lengths) + offset]
        keep = other != query_edge[which]
        which, other = which[keep], other[keep]
        if len(other) == 0:
            return [], self.opening_edge
        rows = np.stack(
            [query_atom[which], query_bond[which], query_edge[which], self.directed2undirected[other], other],
            axis=1,
        )
        return rows, self.opening_edge

    def _edges_by_atom(self) -> np.ndarray:
        """Edge indices sorted as CHGNet's nodes iterate them: by centre atom, then by the
        first appearance of the neighbour atom at that centre, then by edge index (the
        sort is stable)."""
        pair = self.center * max(self.n_atoms, 1) + self.neighbor
        _, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
        return np.lexsort((first[inverse.reshape(-1)], self.center))


def _reverse_edges(n_atoms: int, center, neighbor, image) -> np.ndarray:
    """(E,) for each directed edge the index of its reverse (``neighbor -> center`` through
    ``-image``), or -1 when the list has none. A neighbour list lists each edge once,
    so a reverse, when present, is unique."""
    n_edges = len(center)
    if n_edges == 0:
        return np.empty(0, dtype=np.int64)
    own, wanted = _edge_keys(n_atoms, center, neighbor, image)
    order = np.argsort(own, kind="stable")
    position = np.minimum(np.searchsorted(own[order], wanted), n_edges - 1)
    found = own[order][position] == wanted
    return np.where(found, order[position], -1)


def _edge_keys(n_atoms: int, center, neighbor, image) -> tuple[np.ndarray, np.ndarray]:
    """One int64 per directed edge (equal exactly when centre, neighbour and image are) and
    the same key of each edge's reverse."""
    span = 2 * int(np.abs(image).max(initial=0)) + 1
    atoms = max(n_atoms, 1)
    if atoms**2 * span**3 < 2**62:
        def key(c, n, img):
            img = img + span // 2
            return ((c * atoms + n) * span + img[:, 0]) * span**2 + img[:, 1] * span + img[:, 2]

        return key(center, neighbor, image), key(neighbor, center, -image)
    rows = np.concatenate([np.column_stack([center, neighbor, image]), np.column_stack([neighbor, center, -image])])
    _, keys = np.unique(rows, axis=0, return_inverse=True)
    keys = keys.reshape(-1)
    return keys[: len(center)], keys[len(center) :]


class _NumpyGraphConverter:
    """What ``CrystalGraphConverter.forward`` reads from its converter, with an
    :class:`EdgeGraph` in place of the Python/C ``Graph``."""

    def __init__(self, converter) -> None:
        self.atom_graph_cutoff = converter.atom_graph_cutoff
        self.bond_graph_cutoff = converter.bond_graph_cutoff
        self.on_isolated_atoms = converter.on_isolated_atoms

    @staticmethod
    def create_graph(n_atoms, center_index, neighbor_index, image, distance) -> EdgeGraph:
        return EdgeGraph(n_atoms, center_index, neighbor_index, image, distance)


def crystal_graph(converter, structure):
    """``converter(structure)`` (a ``CrystalGraph``), with the adjacency lists built by
    :class:`EdgeGraph`: equal tensors, a fraction of the time (module docstring).

    Args:
        converter: a ``chgnet.graph.CrystalGraphConverter`` (a model's ``graph_converter``).
        structure: a pymatgen ``Structure``.
    """
    from chgnet.graph.converter import CrystalGraphConverter

    if type(converter) is not CrystalGraphConverter or converter.algorithm != "fast":
        return converter(structure)
    return CrystalGraphConverter.forward(_NumpyGraphConverter(converter), structure)
