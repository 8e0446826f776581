"""Finished chunks on disk, so that a run can resume: ``OUT.hetens-chunks/``.

Layout::

    OUT.hetens-chunks/
        manifest.json            what the run is (inputs with size and mtime,
                                 ensemble, options) and its run id
        chunk-000007.extxyz      the chunk's scored frames, exactly as the output holds them
        chunk-000007.npz         per-frame numbers for the summary (U, atoms, spread, errors)
        chunk-000007.json        the record: written last, so its presence means "done"
        attempts/chunk-000007.HOST.PID.NS   one empty file per attempt started

Every file is written atomically (:func:`hetens.io.files.atomic_path`), so a
killed worker leaves a chunk either complete or absent. The final output is
the chunks' extxyz files concatenated in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hetens.io.files import atomic_path, ensure_writable

__all__ = ["ChunkStore", "run_id_of", "store_folder"]

_MANIFEST = "manifest.json"


def run_id_of(identity: dict[str, Any]) -> str:
    """A short hash of everything that decides a run's output."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def store_folder(output: str | os.PathLike) -> Path:
    """``OUT.hetens-chunks`` beside the output ``OUT``."""
    output = Path(output)
    return output.with_name(f"{output.name}.hetens-chunks")


class ChunkStore:
    """The chunk folder of one run (see the module doc).

    Args:
        folder: the folder (``OUT.hetens-chunks``); absolute, as workers open it.
        run_id: the run it belongs to; records of another run are not "done".
    """

    def __init__(self, folder: str | os.PathLike, run_id: str):
        self.folder = Path(folder)
        self.run_id = run_id

    @classmethod
    def open(cls, output: str | os.PathLike, identity: dict[str, Any], *, restart: bool = False) -> ChunkStore:
        """The store for this run: reused when its manifest matches, else created.

        Raises:
            FileExistsError: a store from another run (other inputs or options)
                is there and ``restart`` is false; the message says what to do.
        """
        folder = store_folder(ensure_writable(output)).resolve()
        run_id = run_id_of(identity)
        manifest = folder / _MANIFEST
        if folder.exists():
            previous = _read_json(manifest)
            if restart or previous is None:
                shutil.rmtree(folder)
            elif previous.get("run_id") != run_id:
                raise FileExistsError(
                    f"{folder} holds chunks of another run (run id {previous.get('run_id')}, this one is "
                    f"{run_id}: inputs, ensemble or options differ); re-run with --restart to discard them"
                )
        (folder / "attempts").mkdir(parents=True, exist_ok=True)
        if not manifest.exists():
            with atomic_path(manifest) as tmp:
                tmp.write_text(json.dumps({"run_id": run_id, **identity}, indent=1, default=str))
        return cls(folder, run_id)

    # ------------------------------------------------------------- paths

    def path(self, chunk: int, suffix: str) -> Path:
        return self.folder / f"chunk-{chunk:06d}{suffix}"

    def record(self, chunk: int) -> dict[str, Any] | None:
        """The chunk's record when it is finished (by this run), else ``None``."""
        record = _read_json(self.path(chunk, ".json"))
        if record is None or record.get("run_id") != self.run_id:
            return None
        if not (self.path(chunk, ".extxyz").exists() and self.path(chunk, ".npz").exists()):
            return None
        return record

    # ------------------------------------------------------ worker side

    def mark_attempt(self, chunk: int) -> None:
        """Note that an attempt at ``chunk`` starts (counted in its record as ``attempts``)."""
        name = f"chunk-{chunk:06d}.{socket.gethostname()}.{os.getpid()}.{time.time_ns()}"
        (self.folder / "attempts" / name).touch()

    def attempts(self, chunk: int) -> list[str]:
        """Names of the attempt files of ``chunk`` (``chunk-N.HOST.PID.NS``)."""
        return sorted(p.name for p in (self.folder / "attempts").glob(f"chunk-{chunk:06d}.*"))

    def save(self, chunk: int, text: str, arrays: dict[str, np.ndarray], record: dict[str, Any]) -> dict:
        """Write the chunk's frames, arrays and (last) its record, each atomically."""
        with atomic_path(self.path(chunk, ".extxyz")) as tmp:
            tmp.write_text(text)
        with atomic_path(self.path(chunk, ".npz")) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
        record = {"chunk": chunk, "run_id": self.run_id, "attempts": len(self.attempts(chunk)), **record}
        with atomic_path(self.path(chunk, ".json")) as tmp:
            tmp.write_text(json.dumps(record, default=str))
        return record

    # ------------------------------------------------------ driver side

    def arrays(self, chunk: int) -> dict[str, np.ndarray]:
        with np.load(self.path(chunk, ".npz")) as data:
            return {key: data[key] for key in data.files}

    def assemble(self, output: str | os.PathLike, chunks: Sequence[int]) -> None:
        """Concatenate the chunks' frames, in order, into ``output`` (atomically)."""
        with atomic_path(output) as tmp:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    with open(self.path(chunk, ".extxyz"), "rb") as part:
                        shutil.copyfileobj(part, out, 1 << 20)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
