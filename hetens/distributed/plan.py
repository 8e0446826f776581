"""Which frames each chunk holds: per-file frame tables and a deterministic chunk plan.

A :class:`FrameTable` lists the selected frames of one file (index in the
file, atom count and, for extxyz, the byte span of each frame, so a worker
reads its frames without scanning the file; the spans come from the one
extxyz scanner, :func:`hetens.io.extxyz.scan_extxyz`). :func:`plan_chunks`
cuts the frames into chunks made of whole model batches: the batches
:func:`hetens.rescore.batches.batches` forms in a local run (same size, same
atom limit, same file boundaries), so every frame is evaluated in the same
model call as locally and the output is the same bit for bit.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hetens.errors import FrameReadError
from hetens.io.extxyz import scan_extxyz
from hetens.rescore.batches import batches
from hetens.io.reading import FrameSource, is_extxyz, iter_frames, parse_index

__all__ = ["FrameTable", "frame_table", "plan_chunks", "Segment", "chunk_segments", "read_frames", "file_stat"]


@dataclass
class FrameTable:
    """The selected frames of one file, in order (F frames).

    Attributes:
        label: the path as a local run names it in ``hetens_source`` (``str(Path(given))``).
        path: the absolute path workers open.
        index: the frame selection as given (ASE syntax).
        format: ASE format, or ``None`` (guessed from the name).
        file_index: (F,) each frame's 0-based index in the file, -1 where a
            local run does not know it (negative selections).
        n_atoms: (F,) atom counts.
        offset, length: (F,) byte span of each frame (extxyz), or ``None``.
        first_row: rank of the first frame within the file's selection (for
            the rows of a chunk, :meth:`rows`).
    """

    label: str
    path: str
    index: Any
    format: str | None
    file_index: np.ndarray
    n_atoms: np.ndarray
    offset: np.ndarray | None = None
    length: np.ndarray | None = None
    first_row: int = 0

    @property
    def n_frames(self) -> int:
        return int(self.n_atoms.shape[0])

    def source(self, row: int) -> FrameSource:
        """The :class:`FrameSource` :func:`~hetens.io.reading.iter_frames` gives this frame."""
        index = int(self.file_index[row])
        return FrameSource(self.label, index if index >= 0 else None, self.first_row + row)

    def rows(self, start: int, stop: int) -> FrameTable:
        """Frames ``start:stop`` of the table (what a chunk ships to its worker)."""
        return FrameTable(
            self.label,
            self.path,
            self.index,
            self.format,
            self.file_index[start:stop],
            self.n_atoms[start:stop],
            None if self.offset is None else self.offset[start:stop],
            None if self.length is None else self.length[start:stop],
            self.first_row + start,
        )


def file_stat(path: str | os.PathLike) -> list[int]:
    """``[size, mtime_ns]`` of a file, for the run id."""
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def frame_table(path: str | os.PathLike, index: Any = ":", format: str | None = None) -> FrameTable:
    """The selected frames of ``path``: extxyz by scanning its headers, other formats by reading them.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FrameReadError: a frame cannot be read (names file and frame).
    """
    label = str(Path(path))
    absolute = str(Path(path).expanduser().resolve())
    if not Path(absolute).exists():
        raise FileNotFoundError(f"input file {label} does not exist")
    selection = parse_index(index)
    if is_extxyz(label, format):
        frames = list(scan_extxyz(absolute, binary=True, label=label))
        offsets, lengths, n_atoms = (
            np.array([getattr(f, name) for f in frames], dtype=np.int64) for name in ("offset", "length", "n_atoms")
        )
        total = n_atoms.size
        if isinstance(selection, int):
            rows = np.array([selection % total] if -total <= selection < total else [], dtype=np.int64)
        else:
            rows = np.arange(total, dtype=np.int64)[selection]
        known = _indices_known(selection)
        return FrameTable(
            label, absolute, index, format,
            file_index=rows if known else np.full(rows.size, -1, dtype=np.int64),
            n_atoms=n_atoms[rows],
            offset=offsets[rows],
            length=lengths[rows],
        )
    indices, counts = [], []
    for source, atoms in iter_frames(path, index, format):
        indices.append(-1 if source.index is None else source.index)
        counts.append(len(atoms))
    return FrameTable(label, absolute, index, format, np.array(indices, dtype=np.int64),
                      np.array(counts, dtype=np.int64))


def _indices_known(selection) -> bool:
    """Whether :func:`~hetens.io.reading.iter_frames` knows file indices for ``selection``."""
    if isinstance(selection, int):
        return selection >= 0
    return (selection.start or 0) >= 0 and (selection.step or 1) > 0


@dataclass(frozen=True)
class Segment:
    """Consecutive frames ``start:stop`` of table ``table`` within a chunk."""

    table: int
    start: int
    stop: int


def plan_chunks(
    tables: Sequence[FrameTable], batch_size: int, max_batch_atoms: int | None, chunk_size: int
) -> list[tuple[int, int]]:
    """Chunks as ``(first, stop)`` global frame positions, each made of whole local-run batches.

    Batches are those of :func:`hetens.rescore.batches.batches` over all frames
    of ``tables`` in order; consecutive batches are grouped while a chunk
    holds at most ``chunk_size`` frames (a batch larger than that is a chunk).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1 frame; got {chunk_size}")

    def items() -> Iterator[tuple[FrameSource, range]]:
        # batches() needs each item's path and length only: a range stands in for the atoms.
        for table in tables:
            for row in range(table.n_frames):
                yield FrameSource(table.label, None, row), range(int(table.n_atoms[row]))

    chunks: list[tuple[int, int]] = []
    first = position = 0
    for batch in batches(items(), batch_size, max_batch_atoms):
        if position > first and position + len(batch) - first > chunk_size:
            chunks.append((first, position))
            first = position
        position += len(batch)
    if position > first:
        chunks.append((first, position))
    return chunks


def chunk_segments(tables: Sequence[FrameTable], first: int, stop: int) -> list[Segment]:
    """The table rows holding global frames ``first:stop``."""
    segments = []
    base = 0
    for t, table in enumerate(tables):
        lo, hi = max(first, base), min(stop, base + table.n_frames)
        if lo < hi:
            segments.append(Segment(t, lo - base, hi - base))
        base += table.n_frames
    return segments


def read_frames(table: FrameTable) -> list[tuple[FrameSource, Any]]:
    """``(source, atoms)`` of every frame of ``table`` (a chunk's rows), as a local run reads them.

    extxyz frames are parsed from their byte spans with ASE's extxyz reader;
    other formats through :func:`~hetens.io.reading.iter_frames` (a
    slice of file indices where they are known, e.g. random access in ASE
    trajectories; otherwise the file's selection, up to the chunk's rows).
    """
    if table.n_frames == 0:
        return []
    if table.offset is not None:
        from ase.io.extxyz import read_xyz

        frames = []
        with open(table.path, "rb") as handle:
            for row in range(table.n_frames):
                handle.seek(int(table.offset[row]))
                text = handle.read(int(table.length[row])).decode()
                try:
                    frames.append(next(read_xyz(io.StringIO(text), slice(None))))
                except Exception as exc:  # ASE's reader raises many types on bad input
                    raise FrameReadError(
                        f"cannot read {table.source(0)} and on: {type(exc).__name__}: {exc}"
                    ) from exc
    else:
        indices = table.file_index
        if indices[0] >= 0 and (table.n_frames == 1 or np.all(np.diff(indices) == indices[1] - indices[0])):
            step = int(indices[1] - indices[0]) if table.n_frames > 1 else 1
            selection: Any = slice(int(indices[0]), int(indices[-1]) + 1, step)
            frames = [atoms for _, atoms in iter_frames(table.path, selection, table.format)]
        else:
            selected = iter_frames(table.path, table.index, table.format)
            frames = [a for _, a in itertools.islice(selected, table.first_row, table.first_row + table.n_frames)]
    if len(frames) != table.n_frames:
        raise FrameReadError(
            f"{table.label} holds fewer frames than when the run was planned; was the file changed?"
        )
    return [(table.source(row), atoms) for row, atoms in enumerate(frames)]
