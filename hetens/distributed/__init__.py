"""Rescoring on a Dask cluster, resumable: ``hetens score ... --cluster SPEC``.

- :func:`score_on_cluster` (live members) and :func:`score_precomputed_on_cluster`
  (predictions made elsewhere) split the selected frames into chunks, score
  them on Dask workers and assemble the chunks, in the original frame order,
  into one extxyz file identical to what :func:`hetens.jobs.score_live.score_live`
  and :func:`~hetens.rescore.precomputed_scoring.score_precomputed` write.
- Workers receive an :class:`EnsembleSpec` (how to build the ensemble, never a
  model) and keep the ensemble they build for every chunk they run
  (:mod:`hetens.distributed.tasks`).
- Finished chunks are kept in ``OUT.hetens-chunks/`` (:mod:`hetens.distributed.store`);
  running the same command again computes only the missing ones.
- ``SPEC`` (:func:`parse_cluster_spec`): ``local:N``, a scheduler address
  (``tcp://host:8786``) or a YAML cluster file for dask-jobqueue (SLURM, PBS).

Dask is imported only when a cluster is used (``pip install 'hetens[dask]'``);
``import hetens`` never imports it. See docs/distributed.md.
"""

from __future__ import annotations

from hetens.distributed.cluster import ClusterSpec, parse_cluster_spec
from hetens.distributed.ensemble_spec import EnsembleSpec
from hetens.distributed.run import score_on_cluster, score_precomputed_on_cluster

__all__ = [
    "ClusterSpec",
    "EnsembleSpec",
    "parse_cluster_spec",
    "score_on_cluster",
    "score_precomputed_on_cluster",
]
