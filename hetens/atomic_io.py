"""Writing files so that nothing half-written is ever left behind.

- :func:`atomic_path`: write to a temporary file beside the target, then
  rename over it (readers see the old file or the complete new one).
- :class:`AppendingWriter`: append frames or lines, flushing each one to
  the OS and fsyncing on close, for logs and flagged frames that must
  survive a killed run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "write_frames_atomic",
    "append_frame",
    "frame_text",
    "ensure_writable",
    "check_output",
    "sync_handle",
]


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
    return path


def check_output(path: str | os.PathLike, inputs=(), option: str = "output") -> Path:
    """:func:`ensure_writable`, and refuse an output that is one of ``inputs``.

    Writing over a file that is still being read would destroy it, so this
    is checked before any work. ``None`` entries in ``inputs`` are ignored.

    Raises:
        ValueError: ``path`` is the same file as an input (names both).
    """
    target = ensure_writable(path)
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


def frame_text(atoms) -> str:
    """One frame as extended XYZ text (what ``write_extxyz`` would append)."""
    import io

    from ase.io.extxyz import write_extxyz

    buffer = io.StringIO()
    write_extxyz(buffer, [atoms])
    return buffer.getvalue()


def append_frame(handle, atoms) -> None:
    """Append one frame to an open extxyz text handle, flush it to the OS and fsync it.

    The frame is formatted first and written in one call, so an interrupt
    (Ctrl-C) never leaves half a frame in the file.
    """
    handle.write(frame_text(atoms))
    sync_handle(handle)
