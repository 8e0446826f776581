"""How to read, score and write frames: the options of every scoring entry point, in one object.

:func:`~hetens.rescore.score.score_live`, :func:`~hetens.rescore.score.score_precomputed`,
:func:`hetens.distributed.score_on_cluster` and
:func:`~hetens.distributed.score_precomputed_on_cluster` take many of the
same keyword arguments. :class:`ScoreOptions` holds them all once, with
their units, and hands each function the ones it takes::

    options = ScoreOptions(reference="dft.extxyz", batch_size=32, progress="off")
    score_live("md.extxyz", "scored.extxyz", calc, **options.arguments_for(score_live))

``hetens score`` fills one from its command line.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ScoreOptions"]


@dataclass(frozen=True)
class ScoreOptions:
    """The options of the scoring entry points; each field defaults to the functions' default.

    Reading:
        index: frames of each file, ASE syntax (``":"``, ``"-1"``, ``"::10"``).
        format: ASE format of the structure files (guessed when ``None``); live only.
        reference: reference (DFT) labels for the same frames: member errors,
            eps per frame and Spearman rho(U, eps) in the report.
        reference_energy_key, reference_forces_key: where the reference
            labels are (``"energy"``/``"forces"``: the calculator results; or
            info/arrays keys such as ``REF_energy``).
        position_tol: Å; the largest atom displacement still taken as the same frame.

    Live members:
        batch_size: frames per model call, where a family evaluates batches.
        max_batch_atoms: atoms per model call at most (bounds GPU memory).
        batched: use the families' batched paths (``False``: frame by frame through ASE).

    Predictions made elsewhere (``--precomputed``):
        names: (M,) member names (default: the file names).
        weights: (M,) weights or name -> weight (a weights file's); uniform when ``None``.
        force_rmse: (M,) member force RMSEs in eV/Å (inverse-RMSE weights).
        energy_key, forces_key: where prediction files keep energy and forces.
        jobs: processes reading the prediction files.
        witnesses: names of the members that are witnesses (forces in U only).

    Output:
        keep_member_forces: also write each member's forces and stress.
        progress: ``"auto"``, ``"bar"``, ``"log"`` or ``"off"``.

    Cluster (``score_on_cluster``, ``score_precomputed_on_cluster``):
        cluster: ``"local:N"``, a scheduler address or a cluster YAML file.
        chunk_size: frames per chunk.
        worker_threads: torch threads per Dask worker (live only; ``None``: the cluster's).
        restart: discard chunks of another run left in the chunk folder.
        keep_chunks: keep the chunk folder after assembling the output.
    """

    index: Any = ":"
    format: str | None = None
    reference: str | os.PathLike | None = None
    reference_energy_key: str = "energy"
    reference_forces_key: str = "forces"
    position_tol: float = 1e-3
    batch_size: int = 16
    max_batch_atoms: int = 4096
    batched: bool = True
    names: Sequence[str] | None = None
    weights: Sequence[float] | Mapping[str, float] | None = None
    force_rmse: Sequence[float] | None = None
    energy_key: str = "energy"
    forces_key: str = "forces"
    jobs: int = 1
    witnesses: Sequence[str] = ()
    keep_member_forces: bool = False
    progress: str = "auto"
    cluster: Any = "local:2"
    chunk_size: int = 256
    worker_threads: int | None = None
    restart: bool = False
    keep_chunks: bool = False

    def arguments_for(self, function: Callable[..., Any]) -> dict[str, Any]:
        """The fields that are keyword parameters of ``function``, as ``{name: value}``."""
        parameters = inspect.signature(function).parameters
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in parameters}

    def replace(self, **changes: Any) -> ScoreOptions:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)
