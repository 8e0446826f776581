"""How to read, score and write frames: the options of every scoring entry point, in one object.

:func:`~hetens.jobs.score_live.score_live`, :func:`~hetens.rescore.precomputed_scoring.score_precomputed`,
:func:`hetens.distributed.score_on_cluster` and
:func:`~hetens.distributed.score_precomputed_on_cluster` take many of the
same options. :class:`ScoreOptions` holds them all once, with their units
and defaults (the modules' constants), and each of them takes it as its
``options`` parameter; single options may also be given as keywords, which
:meth:`ScoreOptions.resolve` checks against the fields::

    options = ScoreOptions(reference="dft.extxyz", batch_size=32, progress="off")
    score_live("md.extxyz", "scored.extxyz", calc, options)
    score_live("md.extxyz", "scored.extxyz", calc, batch_size=32)  # the same as ScoreOptions(batch_size=32)

A field an entry point has no use for is ignored by it (``jobs`` by
:func:`score_live`, say). ``hetens score`` fills one from its command line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hetens.rescore.batches import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_MAX_BATCH_ATOMS
from hetens.rescore.precomputed import DEFAULT_POSITION_TOL
from hetens.rescore.scoring import check_error_reference

__all__ = ["ScoreOptions", "DEFAULT_CLUSTER"]

#: Where a cluster run runs unless told: two local Dask worker processes.
DEFAULT_CLUSTER = "local:2"


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
        error_reference: what eps (the true error U is compared with) is the
            error of: ``"returned"``, the forces hetens returns (weighted
            predictor mean), or ``"member_mean"``, the plain mean of the
            predictors' forces, as the paper's notebook (docs/method.md).

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
    position_tol: float = DEFAULT_POSITION_TOL
    error_reference: str = "returned"
    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_atoms: int = DEFAULT_MAX_BATCH_ATOMS
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
    cluster: Any = DEFAULT_CLUSTER
    chunk_size: int = DEFAULT_CHUNK_SIZE
    worker_threads: int | None = None
    restart: bool = False
    keep_chunks: bool = False

    def __post_init__(self) -> None:
        check_error_reference(self.error_reference)
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1; got {self.batch_size}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk size must be at least 1; got {self.chunk_size}")

    @classmethod
    def resolve(cls, options: ScoreOptions | None = None, overrides: Mapping[str, Any] | None = None) -> ScoreOptions:
        """``options`` (default: all defaults) with ``overrides`` (field name -> value) applied.

        Raises:
            TypeError: an override names no field (the message lists them).
        """
        base = cls() if options is None else options
        if not isinstance(base, ScoreOptions):
            raise TypeError(f"options must be a ScoreOptions; got {type(base).__name__}")
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            fields = ", ".join(f.name for f in dataclasses.fields(cls))
            raise TypeError(f"unknown scoring option(s) {', '.join(unknown)}; the options are: {fields}")
        return dataclasses.replace(base, **overrides) if overrides else base

    def replace(self, **changes: Any) -> ScoreOptions:
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)
