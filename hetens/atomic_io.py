"""Kept importable: output checks and atomic writes live in :mod:`hetens.io.files`."""

from hetens.io.extxyz import frame_text
from hetens.io.files import (
    StagedOutput,
    append_frame,
    atomic_path,
    check_output,
    ensure_writable,
    sync_handle,
    write_frames_atomic,
)

__all__ = [
    "atomic_path",
    "write_frames_atomic",
    "append_frame",
    "frame_text",
    "ensure_writable",
    "check_output",
    "sync_handle",
    "StagedOutput",
]
