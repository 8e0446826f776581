"""Output files: checked before any work, and never left half-written.

- :func:`check_output` (:func:`ensure_writable`): the one output-path check,
  before any model loads: the folder exists and is writable, the output is
  no input, and (``suffixes``) the kind of file is right.
- :func:`atomic_path`: write to a temporary file beside the target, then
  rename over it (readers see the old file or the complete new one).
- :class:`StagedOutput`: append frames to a hidden file, renamed over the
  target when complete; on failure the frames written are kept as
  ``OUT.partial.extxyz``.
- :func:`append_frame`: append one frame to an open file, flushed and fsynced,
  for logs and flagged frames that must survive a killed run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from hetens.io.extxyz import frame_text

__all__ = [
    "atomic_path",
    "write_frames_atomic",
    "append_frame",
    "ensure_writable",
    "check_output",
    "sync_handle",
    "StagedOutput",
    "EXTXYZ_SUFFIXES",
]

#: File endings of the extxyz outputs ``score`` writes.
EXTXYZ_SUFFIXES = (".extxyz", ".xyz")


def ensure_writable(path: str | os.PathLike) -> Path:
    """Check before any work that ``path`` can be created; return it as a Path.

    Raises:
        PermissionError / FileNotFoundError / IsADirectoryError /
        NotADirectoryError naming the path.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a directory, not a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise FileNotFoundError(f"cannot write {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write {path}: folder {parent} is not writable")
    _probe_create(path)
    return path


def _probe_create(path: Path) -> None:
    """Open ``path`` for writing the way the run will (append to an existing file, create a new
    one and remove it again), so that a folder that refuses files (``/proc``, a read-only mount;
    ``os.access`` says yes to root there) fails now, naming the file, not after the models load."""
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise type(exc)(f"cannot write {path}: opening it for writing fails ({reason}); "
                        "give a file in a writable folder") from None
    if not existed:
        path.unlink(missing_ok=True)


def check_output(
    path: str | os.PathLike, inputs=(), option: str = "output", *, suffixes: Sequence[str] | None = None
) -> Path:
    """:func:`ensure_writable`, and refuse an output that is one of ``inputs``.

    Writing over a file that is still being read would destroy it, so this
    is checked before any work. ``None`` entries in ``inputs`` are ignored.
    With ``suffixes`` (e.g. :data:`EXTXYZ_SUFFIXES`), the output's file
    ending must be one of them.

    Raises:
        ValueError: ``path`` is the same file as an input (names both), or
            has another ending than ``suffixes``.
    """
    target = ensure_writable(path)
    if suffixes is not None:
        _check_suffix(target, suffixes)
    resolved = target.resolve()
    for item in inputs:
        if item is None:
            continue
        source = Path(item)
        same = source.resolve() == resolved
        if not same and target.exists() and source.exists():
            same = os.path.samefile(source, target)
        if same:
            raise ValueError(
                f"{option} {target} is also the input {source}; writing it would destroy the input: "
                "give the output another name"
            )
    return target


def _check_suffix(target: Path, suffixes: Sequence[str]) -> None:
    if target.suffix.lower() not in suffixes:
        if tuple(suffixes) == EXTXYZ_SUFFIXES:
            raise ValueError(f"output {target} must be an extxyz file (.extxyz or .xyz)")
        raise ValueError(f"output {target} must end in {' or '.join(suffixes)}")


def sync_handle(handle) -> None:
    """Flush an open file to the OS and fsync it (a no-op fsync for pipes and terminals)."""
    handle.flush()
    try:
        os.fsync(handle.fileno())
    except (OSError, ValueError, AttributeError):  # stdout, a pipe, StringIO: nothing to sync
        pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = ensure_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the final file the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_frames_atomic(path: str | os.PathLike, frames, format: str | None = None) -> int:
    """Write frames with ``ase.io.write`` atomically; return how many were written.

    ``format`` defaults to what ASE guesses from ``path``'s suffix.
    """
    from ase.io import write

    frames = list(frames)
    target = Path(path)
    fmt = format or _format_for(target)
    with atomic_path(target) as tmp:
        write(tmp, frames, format=fmt)
    return len(frames)


def _format_for(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".xyz": "extxyz", ".extxyz": "extxyz", ".traj": "traj"}.get(suffix) or _guess(path)


def _guess(path: Path) -> str:
    from ase.io.formats import ioformats

    for name, fmt in ioformats.items():
        if path.suffix.lstrip(".") in getattr(fmt, "extensions", ()):
            return name
    return "extxyz"


def append_frame(handle, atoms) -> None:
    """Append one frame to an open extxyz text handle, flush it to the OS and fsync it.

    The frame is formatted first and written in one call, so an interrupt
    (Ctrl-C) never leaves half a frame in the file.
    """
    handle.write(frame_text(atoms))
    sync_handle(handle)


class StagedOutput:
    """Append extxyz frames to a hidden file beside ``path``; rename it over ``path`` on success.

    On failure the frames written so far are kept in ``<stem>.partial<suffix>``
    (a note on the exception says so).

    Raises:
        ValueError: ``path`` is not an extxyz file name.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = ensure_writable(path)
        _check_suffix(self.path, EXTXYZ_SUFFIXES)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.partial = self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}")
        self.count = 0
        self.handle = None

    def __enter__(self) -> StagedOutput:
        self.handle = open(self.tmp, "w")
        return self

    def write(self, atoms) -> None:
        """Append one frame (formatted first, written in one call, so Ctrl-C never
        leaves half a frame) and flush it to the OS (fsync once, at the end)."""
        self.handle.write(frame_text(atoms))
        self.handle.flush()
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
            return
        if self.count:
            os.replace(self.tmp, self.partial)
            note = f"{self.count} frames scored before this were kept in {self.partial}"
            if hasattr(exc, "add_note"):
                exc.add_note(note)  # Python >= 3.11; the CLI prints notes
            else:
                print(f"hetens: {note}", file=sys.stderr)
        else:
            self.tmp.unlink(missing_ok=True)
