"""Streaming structures out of files, one frame at a time, with clear errors.

Everything ASE reads works (extxyz, ASE trajectories and databases, VASP
OUTCAR and vasprun.xml...): frames come from :func:`ase.io.iread`, so memory
holds one frame at a time however large the file. Frames are identified by
:class:`FrameSource` (file and 0-based index in that file), and every error
names both.

Also here: :func:`count_frames` (a cheap count for progress bars) and
:func:`scan_extxyz_info` (the per-frame ``info`` of an extxyz file without
parsing its atom lines, for reading U back from a scored file quickly).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hetens.errors import FrameReadError
from hetens.io.extxyz import ExtxyzFrame, not_text_error, scan_extxyz  # noqa: F401 (not_text_error: kept importable here)

__all__ = [
    "FrameSource",
    "check_readable",
    "parse_index",
    "iter_frames",
    "count_frames",
    "check_selection",
    "no_frame_error",
    "scan_extxyz_info",
    "is_extxyz",
    "info_float",
]

_EXTXYZ_SUFFIXES = (".xyz", ".extxyz")


@dataclass(frozen=True)
class FrameSource:
    """Where a frame came from: ``path`` and its 0-based ``index`` in that file.

    ``index`` is ``None`` when a negative ``--index`` selection makes the
    position in the file unknown without reading it all; ``position`` is
    then the frame's rank within the selection.
    """

    path: str
    index: int | None
    position: int

    def __str__(self) -> str:
        if self.index is not None:
            return f"{self.path} frame {self.index}"
        return f"{self.path} selected frame {self.position}"


def parse_index(index: Any) -> slice | int:
    """An ASE-style frame selection: ``":"``, ``"-1"``, ``"10:100:2"``, an int or a slice."""
    from ase.io.formats import string2index

    if index is None:
        return slice(None)
    if isinstance(index, (int, slice)):
        return index
    try:
        return string2index(str(index))
    except ValueError:
        raise ValueError(
            f"--index {index!r} is not a frame selection; use ASE syntax such as ':' (all), "
            "'-1' (last), '0:100' or '::10'"
        ) from None


def _file_indices(selection: slice | int) -> Iterator[int | None]:
    """The file index of each selected frame, where it is known without reading ahead."""
    if isinstance(selection, int):
        yield selection if selection >= 0 else None
        return
    start, step = selection.start or 0, selection.step or 1
    if start >= 0 and step > 0:
        yield from itertools.count(start, step)
    else:
        yield from itertools.repeat(None)


def check_readable(path: str | os.PathLike, *, scan: bool = False, format: str | None = None) -> Path:
    """Check that ``path`` is a structure file worth opening; return it as a Path.

    With ``scan``, an extxyz file's frame layout is also walked (atom-count
    lines and line counts, no parsing), so a cut-short or garbled file fails
    here, before any model loads.

    Raises:
        FileNotFoundError: it does not exist.
        IsADirectoryError: it is a folder (other than an ASE ``.db``).
        FrameReadError: it is empty (0 bytes), or (``scan``) a frame's
            atom count is unreadable or the file ends inside a frame.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file {path} does not exist")
    if path.is_dir():
        if path.suffix != ".db":
            raise IsADirectoryError(f"input {path} is a folder; give structure files")
        return path
    if path.stat().st_size == 0:
        raise FrameReadError(f"{path}: the file is empty (0 bytes); expected structures")
    if scan and is_extxyz(path, format):
        for _ in scan_extxyz(path):
            pass
    return path



def iter_frames(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    index: Any = ":",
    format: str | None = None,
) -> Iterator[tuple[FrameSource, Any]]:
    """Yield ``(source, atoms)`` for the selected frames of each file, in order.

    Args:
        paths: one or more files ASE can read.
        index: frame selection applied to each file (ASE syntax, see
            :func:`parse_index`).
        format: ASE format name; guessed from each file when ``None``.

    Raises:
        FileNotFoundError: a file does not exist.
        FrameReadError: a file's format is unknown or a frame cannot be
            parsed (names the file and frame).
    """
    from ase.io import iread
    from ase.io.formats import UnknownFileTypeError

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    selection = parse_index(index)
    for raw in paths:
        path = Path(raw)
        check_readable(path)
        numbers = _file_indices(selection)
        frames = iread(str(path), index=selection, format=format)
        # ASE skips a garbled Properties= field and returns fewer atoms than the
        # frame announces; the frame headers, read alongside, catch that.
        headers = iter(_selected_headers(path, selection)) if is_extxyz(path, format) else None
        for position in itertools.count():
            file_index = next(numbers, None)
            source = FrameSource(str(path), file_index, position)
            try:
                atoms = next(frames)
            except StopIteration:
                break
            except UnknownFileTypeError:
                raise FrameReadError(
                    f"cannot tell the format of {path}; name it with --format (an ASE format such "
                    "as extxyz, traj, vasp-out, vasp-xml)"
                ) from None
            except (FrameReadError, FileNotFoundError):
                raise
            except Exception as exc:  # ASE readers raise many types on bad input
                raise FrameReadError(f"cannot read {source}: {type(exc).__name__}: {exc}") from exc
            if headers is not None:
                _check_atom_count(source, atoms, next(headers, None))
            yield source, atoms


def _check_atom_count(source: FrameSource, atoms, header: ExtxyzFrame | None) -> None:
    """Raise unless ASE read as many atoms as the frame's header line announces."""
    if header is None:
        raise FrameReadError(f"cannot read {source}: ASE read a frame that the file's atom-count lines do not show")
    if header.n_atoms != len(atoms):
        raise FrameReadError(
            f"cannot read {source}: it announces {header.n_atoms} atoms but ASE read {len(atoms)}; "
            "is the Properties= field of its comment line intact?"
        )


def info_float(info: dict, key: str, source: Any, *, default: float | None = None) -> float:
    """``info[key]`` as a float, or a :class:`FrameReadError` naming ``source`` and the key.

    A missing key gives ``default`` when one is given. Values that are not
    numbers (a word, a corrupted byte, an array) are errors; ``nan`` and
    ``inf`` are returned as they are, for the caller to judge.
    """
    if key not in info:
        if default is not None:
            return default
        raise FrameReadError(f"{source} has no {key}")
    value = info[key]
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise FrameReadError(f"{source}: {key}={str(value)!r} is not a number") from exc


def is_extxyz(path: str | os.PathLike, format: str | None = None) -> bool:
    """Whether ``path`` is read as extended XYZ (by ``format`` or its suffix)."""
    if format is not None:
        return format in ("extxyz", "xyz")
    return Path(path).suffix.lower() in _EXTXYZ_SUFFIXES


def _selected_count(total: int, selection: slice | int) -> int:
    if isinstance(selection, int):
        return 1 if -total <= selection < total else 0
    return len(range(*selection.indices(total)))


def count_frames(path: str | os.PathLike, index: Any = ":", format: str | None = None) -> int | None:
    """How many frames ``iter_frames(path, index)`` will yield, when cheap to know.

    Counts extxyz frames by skipping atom lines (no parsing) and ASE
    trajectories from their index; returns ``None`` for other formats.
    """
    path = Path(path)
    selection = parse_index(index)
    try:
        if is_extxyz(path, format):
            total = sum(1 for _ in scan_extxyz(path))
        elif (format or path.suffix.lstrip(".")) == "traj":
            from ase.io.trajectory import Trajectory

            with Trajectory(str(path)) as traj:
                total = len(traj)
        else:
            return None
    except (OSError, ValueError, FrameReadError):
        return None
    return _selected_count(total, selection)


def no_frame_error(
    path: str | os.PathLike,
    index: Any,
    format: str | None = None,
    *,
    total: int | None = None,
    index_given: bool = True,
) -> FrameReadError:
    """The error for a selection that yields no frame: an unreadable file, or an index past its end.

    Args:
        path: the structure file.
        index: the ``--index`` selection that yielded nothing.
        format: ASE format, when given.
        total: frames in the file, when known (counted here for extxyz and
            ASE trajectories otherwise).
        index_given: whether the user gave ``--index`` (a default that selects
            nothing means the file holds no structure ASE can read).
    """
    if total is None:
        total = count_frames(path, ":", format)
    if total == 0 or (not index_given and total is None):
        kind = format or (Path(path).suffix.lstrip(".") or "structure")
        return FrameReadError(f"{path}: ASE read no structure from it; is it a valid {kind} file?")
    if total is None:
        return FrameReadError(f"{path}: --index {index} selects no frame")
    frames = "1 frame (--index 0 or -1)" if total == 1 else f"{total} frames (--index 0 to {total - 1}, or -1 for the last)"
    return FrameReadError(f"{path}: --index {index} selects no frame; the file has {frames}")


def check_selection(path: str | os.PathLike, index: Any = ":", format: str | None = None) -> None:
    """Raise :func:`no_frame_error` when ``index`` selects no frame of ``path``, where that is
    cheap to know (extxyz, ASE trajectory: see :func:`count_frames`); before any model loads."""
    selection = parse_index(index)
    total = count_frames(path, ":", format)
    if total is not None and _selected_count(total, selection) == 0:
        raise no_frame_error(path, index, format, total=total)


def _forward_range(selection: slice | int) -> tuple[int, int | None, int] | None:
    """``(start, stop, step)`` when the selection can be decided frame by frame, else ``None``."""
    if isinstance(selection, int):
        return (selection, selection + 1, 1) if selection >= 0 else None
    start, stop, step = selection.start or 0, selection.stop, selection.step or 1
    if start >= 0 and step > 0 and (stop is None or stop >= 0):
        return start, stop, step
    return None


def _selected_headers(path: Path, selection: slice | int) -> Iterable[ExtxyzFrame]:
    """The :func:`~hetens.io.extxyz.scan_extxyz` frames of the selection, in the order ASE reads them."""
    forward = _forward_range(selection)
    if forward is not None:
        start, stop, step = forward
        within = itertools.takewhile(lambda h: stop is None or h.index < stop, scan_extxyz(path))
        return (h for h in within if h.index >= start and (h.index - start) % step == 0)
    # negative indices or steps: ASE's slicing semantics on the list of headers
    every = list(scan_extxyz(path))
    return [every[selection]] if isinstance(selection, int) else every[selection]


def scan_extxyz_info(
    path: str | os.PathLike, index: Any = ":"
) -> Iterator[tuple[FrameSource, int, dict[str, Any]]]:
    """Yield ``(source, n_atoms, info)`` for each selected frame of an extxyz file.

    Reads only each frame's comment line (parsed as ASE does), so it is many
    times faster than building ``Atoms``; use it to read ``hetens_U`` and
    friends back from a large scored file. Frames come in the order
    :func:`iter_frames` gives them.
    """
    from ase.io.extxyz import key_val_str_to_dict

    path = Path(path)
    check_readable(path)
    for position, header in enumerate(_selected_headers(path, parse_index(index))):
        frame, natoms, comment = header.index, header.n_atoms, header.comment
        try:
            info = key_val_str_to_dict(comment.strip()) if comment.strip() else {}
        except Exception as exc:
            raise FrameReadError(f"cannot read {path} frame {frame}: bad comment line: {exc}") from exc
        yield FrameSource(str(path), frame, position), natoms, info
