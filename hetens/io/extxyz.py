"""Extended XYZ files: the one frame scanner, and one frame as text.

:func:`scan_extxyz` walks a file's frames without parsing atom lines: each
frame's atom-count line, comment line and atom lines are counted, never
split. Every reader of hetens that needs the layout of an extxyz file uses
it: the header check and frame counts of :mod:`hetens.io.reading`, the
fast array reader of :mod:`hetens.io.extxyz_arrays`, and the byte spans the
cluster planner ships to its workers (:mod:`hetens.distributed.plan`).

The layout is ASE's (``ase.io.extxyz.read_xyz``): an atom count, a comment
line, that many atom lines, then up to three ``VEC`` lines of old files;
a blank line (or the end of the file) ends the frames. Unlike ASE, the
scanner is strict: anything but blank lines after that, an unreadable or
negative atom count, or a file ending inside a frame is a
:class:`~hetens.errors.FrameReadError` naming the file and the frame.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hetens.errors import FrameReadError

__all__ = ["ExtxyzFrame", "scan_extxyz", "scan_extxyz_lines", "frame_text", "not_text_error"]


@dataclass(frozen=True)
class ExtxyzFrame:
    """Where one frame of an extxyz file is.

    Attributes:
        index: the frame's 0-based index in the file.
        n_atoms: the atom count its first line announces.
        comment: its comment line, as read (``str``; ``bytes`` in a binary scan).
        line: 0-based line number of its atom-count line.
        offset: where it starts: bytes into the file (binary scan), else
            characters of the lines given.
        length: its size in the same unit, atom lines and ``VEC`` lines included.
        n_vec: ``VEC`` lines after its atom lines (old files give the cell so).
    """

    index: int
    n_atoms: int
    comment: str | bytes
    line: int
    offset: int
    length: int
    n_vec: int = 0


def scan_extxyz(
    path: str | os.PathLike, *, binary: bool = False, label: str | None = None
) -> Iterator[ExtxyzFrame]:
    """Yield an :class:`ExtxyzFrame` for every frame of the extxyz file ``path``, in order.

    Args:
        path: the file.
        binary: read bytes (``offset``/``length`` are byte positions, lines end at
            ``\\n`` only) instead of UTF-8 text with universal newlines, as ASE
            reads it (the default).
        label: how errors name the file (default: ``path``).

    Raises:
        FrameReadError: the file is not UTF-8 text (text scan), a frame's
            atom count is unreadable or negative, the file ends inside a
            frame, or lines follow the blank line that ends the frames.
    """
    label = str(path) if label is None else label
    if binary:
        with open(path, "rb") as handle:
            yield from scan_extxyz_lines(handle, label)
        return
    try:
        with open(path, encoding="utf-8") as handle:
            yield from scan_extxyz_lines(handle, label)
    except UnicodeDecodeError as exc:
        raise not_text_error(path, exc) from None


def scan_extxyz_lines(lines: Iterable[str] | Iterable[bytes], label: str) -> Iterator[ExtxyzFrame]:
    """:func:`scan_extxyz` over lines already open or read (with or without their line ends).

    ``label`` names the file in errors.
    """
    it = iter(lines)
    pending = None  # a line read ahead to look for VEC lines
    offset = line_number = 0
    for frame in itertools.count():
        line = pending if pending is not None else next(it, None)
        pending = None
        if line is None or not line.strip():
            if line is not None and any(rest.strip() for rest in it):
                raise FrameReadError(
                    f"{label} frame {frame}: expected an atom count on the first line, got a blank line"
                )
            return
        try:
            natoms = int(line)
        except ValueError:
            shown = line.decode(errors="replace") if isinstance(line, bytes) else line
            raise FrameReadError(
                f"{label} frame {frame}: expected an atom count on the first line, got {shown.strip()[:60]!r}"
            ) from None
        if natoms < 0:
            raise FrameReadError(f"{label} frame {frame}: negative atom count {natoms}")
        comment = next(it, None)
        atom_lines = list(itertools.islice(it, natoms))
        if comment is None or len(atom_lines) < natoms:
            raise FrameReadError(
                f"{label} frame {frame} is cut short: it announces {natoms} atoms but the file "
                f"ends after {len(atom_lines)} atom lines"
            )
        length = len(line) + len(comment) + sum(map(len, atom_lines))
        vec = b"VEC" if isinstance(line, bytes) else "VEC"
        n_vec = 0
        while n_vec < 3:  # as ASE's reader takes them (a 4th is not an atom count: an error)
            pending = next(it, None)
            if pending is None or not pending.lstrip().startswith(vec):
                break
            n_vec += 1
            length += len(pending)
            pending = None
        yield ExtxyzFrame(frame, natoms, comment, line_number, offset, length, n_vec)
        offset += length
        line_number += 2 + natoms + n_vec


def frame_text(atoms) -> str:
    """One frame as extended XYZ text: what ``write_extxyz`` of that frame alone writes.

    Every scored file is the concatenation of these, locally and on a cluster.
    """
    import io

    from ase.io.extxyz import write_extxyz

    buffer = io.StringIO()
    write_extxyz(buffer, [atoms])
    return buffer.getvalue()


def not_text_error(path: str | os.PathLike, exc: UnicodeDecodeError, data: bytes | None = None) -> FrameReadError:
    """The :class:`FrameReadError` for a file that is not UTF-8 text (names the byte and line)."""
    if data is None:
        with open(Path(path), "rb") as handle:
            data = handle.read(exc.start + 1) if exc.start < 1 << 30 else b""
    line = data[: exc.start].count(b"\n") + 1
    return FrameReadError(
        f"{path}: byte {exc.start} (line {line}) is not UTF-8 text ({exc.reason}); is it an extxyz file?"
    )
