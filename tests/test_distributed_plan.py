"""hetens.distributed.plan: frame tables, the chunk plan and reading a chunk's frames (no cluster, no model).

Only the module's public functions are used (``frame_table``, ``FrameTable``,
``plan_chunks``, ``chunk_segments``, ``read_frames``), so the extxyz scanner
behind them may move.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from hypothesis import given, settings
from hypothesis import strategies as st

from hetens.distributed.plan import FrameTable, chunk_segments, frame_table, plan_chunks, read_frames
from hetens.errors import FrameReadError

SIZES = [1, 2, 4, 8, 3, 16, 2]


def _frames(sizes=SIZES):
    rng = np.random.default_rng(0)
    frames = []
    for k, n in enumerate(sizes):
        atoms = bulk("Cu", "fcc", a=3.6).repeat((n, 1, 1))
        atoms.rattle(0.02, seed=k)
        atoms.info["tag"] = k
        atoms.calc = SinglePointCalculator(atoms, energy=-float(k), forces=rng.normal(size=(n, 3)))
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    frames = _frames()
    write(folder / "in.extxyz", frames)
    write(folder / "in.traj", frames)
    return folder / "in.extxyz", folder / "in.traj", frames


def _same(got, expected):
    assert got.get_chemical_formula() == expected.get_chemical_formula()
    np.testing.assert_allclose(got.positions, expected.positions, atol=1e-8)
    np.testing.assert_allclose(got.cell.array, expected.cell.array, atol=1e-8)
    np.testing.assert_allclose(got.get_forces(), expected.get_forces(), atol=1e-8)
    assert got.get_potential_energy() == pytest.approx(expected.get_potential_energy())


# -------------------------------------------------------------- frame tables


@pytest.mark.parametrize(
    ("index", "rows", "known"),
    [
        (":", [0, 1, 2, 3, 4, 5, 6], True),
        ("1:5", [1, 2, 3, 4], True),
        ("::3", [0, 3, 6], True),
        ("3", [3], True),
        ("-2:", [5, 6], False),  # a local run does not know file indices of negative selections
        ("-1", [6], False),
    ],
)
def test_extxyz_table_holds_counts_and_byte_spans(files, index, rows, known):
    extxyz, _, frames = files
    table = frame_table(extxyz, index)
    assert table.n_frames == len(rows) and table.label == str(extxyz) and table.path == str(extxyz.resolve())
    np.testing.assert_array_equal(table.n_atoms, [SIZES[r] for r in rows])
    np.testing.assert_array_equal(table.file_index, rows if known else [-1] * len(rows))
    data = extxyz.read_bytes()
    for k, row in enumerate(rows):
        span = data[table.offset[k] : table.offset[k] + table.length[k]]
        assert span.split(b"\n", 1)[0].strip() == str(SIZES[row]).encode()
        assert span.count(b"\n") == SIZES[row] + 2  # count line, comment line, one line per atom
    if index == ":":
        assert int(table.length.sum()) == len(data)
    # The sources are named as a local run names them.
    first = table.source(0)
    assert (first.path, first.index, first.position) == (str(extxyz), rows[0] if known else None, 0)
    assert str(first) == (f"{extxyz} frame {rows[0]}" if known else f"{extxyz} selected frame 0")


def test_other_formats_are_read_for_their_table(files):
    _, traj, _ = files
    table = frame_table(traj, "2:6")
    assert table.offset is None and table.length is None
    np.testing.assert_array_equal(table.file_index, [2, 3, 4, 5])
    np.testing.assert_array_equal(table.n_atoms, SIZES[2:6])


def test_read_frames_gives_the_frames_of_the_rows(files):
    extxyz, traj, frames = files
    for path in (extxyz, traj):
        table = frame_table(path, ":")
        got = read_frames(table)
        assert [str(source) for source, _ in got] == [f"{path} frame {k}" for k in range(len(frames))]
        for (_, atoms), expected in zip(got, frames):
            _same(atoms, expected)
        chunk = table.rows(2, 5)  # what a chunk ships to its worker
        assert isinstance(chunk, FrameTable) and chunk.n_frames == 3 and chunk.first_row == 2
        got = read_frames(chunk)
        assert [source.position for source, _ in got] == [2, 3, 4]
        for (_, atoms), expected in zip(got, frames[2:5]):
            _same(atoms, expected)
        assert read_frames(table.rows(3, 3)) == []
    # Negative selection, other formats: the rows of the file's selection, positions within it.
    table = frame_table(traj, "-3:")
    got = read_frames(table.rows(1, 3))
    assert [(source.index, source.position) for source, _ in got] == [(None, 1), (None, 2)]
    for (_, atoms), expected in zip(got, frames[-2:]):
        _same(atoms, expected)


def test_a_changed_file_is_noticed(tmp_path):
    path = tmp_path / "short.traj"
    write(path, _frames())
    table = frame_table(path, ":")
    write(path, _frames()[:3])
    with pytest.raises(FrameReadError, match="holds fewer frames than when the run was planned"):
        read_frames(table)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.extxyz does not exist"):
        frame_table(tmp_path / "missing.extxyz")
    path = tmp_path / "bad.extxyz"
    write(path, _frames([2, 2]))
    path.write_text(path.read_text() + "not a count\n")
    with pytest.raises(FrameReadError, match=r"bad.extxyz frame 2: expected an atom count"):
        frame_table(path)


# --------------------------------------------------------------- the plan


def _table(label: str, sizes) -> FrameTable:
    sizes = np.asarray(sizes, dtype=np.int64)
    return FrameTable(label, label, ":", None, np.arange(sizes.size), sizes)


def test_plan_by_hand():
    tables = [_table("a.extxyz", [1] * 5), _table("b.extxyz", [1] * 3)]
    # Batches of 2 that never cross a file: [0 1] [2 3] [4] | [5 6] [7]; chunks of up to 4 frames.
    assert plan_chunks(tables, 2, None, 4) == [(0, 4), (4, 8)]
    assert plan_chunks(tables, 2, None, 1) == [(0, 2), (2, 4), (4, 5), (5, 7), (7, 8)]  # a batch is never cut
    assert plan_chunks(tables, 2, None, 100) == [(0, 8)]
    # At most 5 atoms per batch beyond its first frame: [4] [4 1] [1 1] [9] [1].
    sized = [_table("c.extxyz", [4, 4, 1, 1, 1, 9, 1])]
    assert plan_chunks(sized, 16, 5, 1) == [(0, 1), (1, 3), (3, 5), (5, 6), (6, 7)]
    assert plan_chunks([], 2, None, 4) == []
    with pytest.raises(ValueError, match="chunk size must be at least 1 frame; got 0"):
        plan_chunks(tables, 2, None, 0)


tables_strategy = st.lists(st.lists(st.integers(1, 40), min_size=0, max_size=12), min_size=1, max_size=4)


@settings(max_examples=80, deadline=None)
@given(
    tables_strategy,
    st.integers(1, 6),
    st.one_of(st.none(), st.integers(1, 80)),
    st.integers(1, 20),
)
def test_chunks_are_whole_batches(sizes, batch_size, max_atoms, chunk_size):
    tables = [_table(f"f{k}.extxyz", s) for k, s in enumerate(sizes)]
    counts = np.concatenate([np.asarray(s, dtype=np.int64) for s in sizes])
    files = np.concatenate([np.full(len(s), k) for k, s in enumerate(sizes)])
    total = counts.size
    batches = plan_chunks(tables, batch_size, max_atoms, 1)
    chunks = plan_chunks(tables, batch_size, max_atoms, chunk_size)
    for plan in (batches, chunks):  # consecutive, in order, every frame once
        assert [a for a, _ in plan] == [0, *[b for _, b in plan[:-1]]][: len(plan)]
        assert (plan[-1][1] if plan else 0) == total
        assert all(b > a for a, b in plan)
    for a, b in batches:  # the local run's batches
        assert b - a <= batch_size
        assert len(set(files[a:b])) == 1  # never across files
        if max_atoms is not None and b - a > 1:
            assert counts[a:b].sum() <= max_atoms
        if b < total and files[b] == files[a] and b - a < batch_size:  # a batch ends only when it must
            assert max_atoms is not None and counts[a : b + 1].sum() > max_atoms
    cuts = {b for _, b in batches}
    for k, (a, b) in enumerate(chunks):
        assert b in cuts  # chunks are made of whole batches
        inner = [c for c in cuts if a < c < b]
        assert b - a <= chunk_size or not inner  # larger than chunk_size only as one batch
        if k + 1 < len(chunks):  # greedy: the next batch would not have fitted
            following = min(c for c in cuts if c > b)
            assert following - a > chunk_size


def test_segments_by_hand():
    tables = [_table("a", [1] * 5), _table("b", [1] * 3), _table("c", [1] * 4)]
    segments = chunk_segments(tables, 3, 10)
    assert [(s.table, s.start, s.stop) for s in segments] == [(0, 3, 5), (1, 0, 3), (2, 0, 2)]
    assert [(s.table, s.start, s.stop) for s in chunk_segments(tables, 5, 8)] == [(1, 0, 3)]
    assert chunk_segments(tables, 4, 4) == []


@settings(max_examples=80, deadline=None)
@given(tables_strategy, st.data())
def test_segments_cover_the_chunk(sizes, data):
    tables = [_table(f"f{k}", s) for k, s in enumerate(sizes)]
    total = sum(len(s) for s in sizes)
    first = data.draw(st.integers(0, total))
    stop = data.draw(st.integers(first, total))
    segments = chunk_segments(tables, first, stop)
    starts = np.cumsum([0] + [len(s) for s in sizes])
    covered = [starts[s.table] + row for s in segments for row in range(s.start, s.stop)]
    assert covered == list(range(first, stop))
    assert all(0 <= s.start < s.stop <= tables[s.table].n_frames for s in segments)
