"""Fuzzed extended XYZ into the readers that ``score``, ``select`` and ``calibrate`` use.

Valid files are generated (random frames, atom counts, species, cells,
info and per-atom keys, with or without energy and forces), then mutated:
cut at a random byte, random bytes flipped, inserted or deleted (invalid
UTF-8 included), a line duplicated or dropped, a number replaced by
``nan``/``inf``/a word. Every reader must then either return frames
consistent with the others, or raise :class:`~hetens.errors.FrameReadError`
naming the file; never an IndexError, UnicodeDecodeError, struct error or
anything else from deep inside, and never hang.

The suite runs these derandomized (see ``conftest.py``), so CI sees the
same 150 files every time. To hunt for new failures, explore at random
with more examples::

    HYPOTHESIS_PROFILE=explore HETENS_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz_readers.py
"""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hetens.errors import FrameReadError, HetensError
from hetens.rescore.plots import load_plot_data
from hetens.rescore.precomputed import read_frame_arrays
from hetens.io.reading import count_frames, iter_frames, scan_extxyz_info
from hetens.rescore.select import read_scored_u

SETTINGS = settings(
    max_examples=int(os.environ.get("HETENS_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
SPECIES = ("H", "O", "W", "Mo")
finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def frame(draw) -> Atoms:
    n = draw(st.integers(1, 4))
    symbols = draw(st.lists(st.sampled_from(SPECIES), min_size=n, max_size=n))
    positions = draw(st.lists(st.tuples(finite, finite, finite), min_size=n, max_size=n))
    atoms = Atoms(symbols, positions=positions)
    if draw(st.booleans()):
        atoms.cell = np.diag(draw(st.tuples(*(st.floats(2, 20) for _ in range(3)))))
        atoms.pbc = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    if draw(st.booleans()):
        atoms.info["config"] = draw(st.sampled_from(["bulk", "surface slab", "md"]))
    if draw(st.booleans()):
        atoms.info["hetens_U"] = draw(st.floats(0, 5))
    if draw(st.booleans()):
        atoms.arrays["REF_charge"] = np.array(draw(st.lists(finite, min_size=n, max_size=n)))
    labels = {}
    if draw(st.booleans()):
        labels["energy"] = draw(finite)
    if draw(st.booleans()):
        labels["forces"] = np.array(draw(st.lists(st.tuples(finite, finite, finite), min_size=n, max_size=n)))
    if labels:
        atoms.calc = SinglePointCalculator(atoms, **labels)
    return atoms


def extxyz_bytes(frames) -> bytes:
    buffer = io.StringIO()
    write(buffer, frames, format="extxyz")
    return buffer.getvalue().encode()


_NUMBER = re.compile(rb"-?\d+\.\d+(?:[eE][-+]?\d+)?|\b\d+\b")


@st.composite
def mutated(draw) -> bytes:
    data = extxyz_bytes(draw(st.lists(frame(), min_size=1, max_size=3)))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["cut", "flip", "insert", "delete", "dup-line", "drop-line", "number"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "cut":
            data = data[:at]
        elif kind == "flip":
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 8)) :]
        elif kind in ("dup-line", "drop-line"):
            lines = data.splitlines(keepends=True)
            k = draw(st.integers(0, len(lines) - 1))
            lines[k:k + 1] = [lines[k], lines[k]] if kind == "dup-line" else []
            data = b"".join(lines)
        else:
            numbers = list(_NUMBER.finditer(data))
            if numbers:
                m = numbers[draw(st.integers(0, len(numbers) - 1))]
                word = draw(st.sampled_from([b"nan", b"inf", b"-inf", b"NaN", b"word", b"1e999", b"", b"3.0.1"]))
                data = data[: m.start()] + word + data[m.end() :]
    return data


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _call(reader, path):
    """The reader's result, or the FrameReadError it raised (anything else fails the test)."""
    try:
        return reader(path)
    except FrameReadError as exc:
        assert path.name in str(exc), f"{type(exc).__name__} does not name the file: {exc}"
        assert "\n" not in str(exc)
        return exc
    except HetensError as exc:  # pragma: no cover - a documented error, but the wrong one
        pytest.fail(f"{type(exc).__name__} instead of FrameReadError: {exc}")


def _readers(path):
    return {
        "iter_frames": _call(lambda p: [a for _, a in iter_frames(p)], path),
        "scan_extxyz_info": _call(lambda p: list(scan_extxyz_info(p)), path),
        "read_frame_arrays": _call(lambda p: read_frame_arrays(p, require_energy=False), path),
        "read_scored_u": _call(lambda p: read_scored_u([p]), path),
        "load_plot_data": _call(lambda p: load_plot_data([p]), path),
    }


def _check_consistent(path, results) -> None:
    frames = results["iter_frames"]
    counted = count_frames(path)  # never raises: an int or None
    assert counted is None or isinstance(counted, int)
    if isinstance(frames, list):
        if counted is not None:
            assert counted == len(frames)
        scanned = results["scan_extxyz_info"]
        if isinstance(scanned, list):
            assert [n for _, n, _ in scanned] == [len(a) for a in frames]
        arrays = results["read_frame_arrays"]
        if not isinstance(arrays, Exception):  # the fast reader agrees with ASE where both read
            assert arrays.n_atoms.tolist() == [len(a) for a in frames]
            assert arrays.numbers.tolist() == [z for a in frames for z in a.numbers]
            np.testing.assert_array_equal(arrays.positions, np.concatenate([a.positions for a in frames]))
            forces = np.concatenate([a.calc.results["forces"] if a.calc else a.arrays["forces"] for a in frames])
            np.testing.assert_array_equal(arrays.forces, forces)
    scored = results["read_scored_u"]
    if isinstance(scored, tuple) and isinstance(results["scan_extxyz_info"], list):
        assert scored[1].tolist() == [n for _, n, _ in results["scan_extxyz_info"]]
        plotted = results["load_plot_data"]
        if not isinstance(plotted, Exception):  # plot also reads hetens_max_u and hetens_eps
            np.testing.assert_array_equal(plotted.uncertainty, scored[0])


_HEADER = b'Properties=species:S:1:pos:R:3 pbc="F F F"\nH 0.0 0.0 0.0\n'


@SETTINGS
@given(data=mutated())
@example(data=b"1\nhetens_U=\x00.0 " + _HEADER)  # a U that is not a number (found by CI)
@example(data=b"2\nProperties=s\tecies:S:1:pos:R:3 pbc=\"F F F\"\nH 0 0 0\nH 0 0 0\n")  # ASE reads 0 atoms
@example(  # a comment line starting with "=": ASE's parser raised IndexError in the fast reader (found by CI)
    data=b'3\n="2.0 0.0 0.0 0.0 2.0 0.0 0.0 0.0 2.0" Properties=species:S:1:pos:R:3 pbc="F F F"\n'
    b'="2.0 0.0 0.0 0.0 2.0 0.0 0.0 0.0 2.0" Properties=species:S:1:pos:R:3 pbc="F F F"\n'
    b"H        0.00000000       0.00000000       0.00000000\n"
    b"H        0.00000000       0.00000000       0.00000000\n"
    b'1\nProperties=species:S:1:pos:R:3 pbc="F F F"\n'
    b"H        0.00000000       0.00000000       0.00000000\n"
)
def test_mutated_extxyz_reads_or_raises_frame_read_error(folder, data):
    path = folder / "fuzzed.extxyz"
    path.write_bytes(data)
    _check_consistent(path, _readers(path))


@SETTINGS
@given(frames=st.lists(frame(), min_size=1, max_size=3))
def test_valid_extxyz_reads_the_same_everywhere(folder, frames):
    path = folder / "valid.extxyz"
    path.write_bytes(extxyz_bytes(frames))
    results = _readers(path)
    read = results["iter_frames"]
    assert isinstance(read, list) and len(read) == len(frames)
    assert count_frames(path) == len(frames)
    arrays = results["read_frame_arrays"]
    if all(a.calc is not None and "forces" in a.calc.results for a in frames):
        assert not isinstance(arrays, Exception), arrays
    _check_consistent(path, results)
