"""``--cluster SPEC``: which Dask cluster to use, and connecting to it.

SPEC is one of

- ``local:N``: a ``LocalCluster`` of N worker processes, one thread each;
- a scheduler address, ``tcp://host:8786`` (any ``SCHEME://`` Dask accepts):
  an existing cluster, left running afterwards;
- a YAML cluster file for dask-jobqueue (SLURM or PBS), e.g.::

      scheduler: slurm        # or pbs
      jobs: 4                 # batch jobs to submit
      queue: gpu
      account: myproject
      walltime: "04:00:00"
      cores: 8                # CPUs per job
      memory: 32GB            # per job
      gpus-per-job: 1         # one Dask worker per GPU
      setup:                  # shell lines run before the worker starts
        - source /shared/hetens/.venv/bin/activate
      extra: {}               # passed as is to SLURMCluster / PBSCluster

Each Dask worker runs one chunk at a time (one Dask thread); its torch uses
``cores / workers-per-job`` threads (``worker-threads`` overrides). Dask is
imported only here, lazily.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hetens.errors import MissingExtraError

__all__ = ["ClusterSpec", "parse_cluster_spec", "connect", "import_distributed", "model_friendly_workers"]

_SCHEDULERS = ("slurm", "pbs")
_FILE_KEYS = {
    "scheduler", "jobs", "queue", "account", "walltime", "cores", "memory", "gpus-per-job",
    "workers-per-job", "worker-threads", "setup", "python", "log-directory", "local-directory",
    "interface", "extra",
}


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``--cluster`` value.

    Attributes:
        kind: ``"local"``, ``"address"`` or ``"jobqueue"``.
        text: the value as given.
        n_workers: worker processes (``local``), or jobs x workers per job.
        address: the scheduler address (``address``).
        settings: the cluster file's keys (``jobqueue``).
        worker_threads: torch threads per worker, when the spec says (a cluster file).
    """

    kind: str
    text: str
    n_workers: int | None = None
    address: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    worker_threads: int | None = None


def import_distributed():
    """``distributed``, or :class:`~hetens.errors.MissingExtraError` naming the extra to install."""
    try:
        import distributed
    except ImportError as exc:
        raise MissingExtraError(
            f"running on a cluster needs Dask ({exc}); install it with: pip install 'hetens[dask]'"
        ) from exc
    return distributed


def parse_cluster_spec(text: str) -> ClusterSpec:
    """Parse ``local:N``, ``SCHEME://host:port`` or a YAML cluster file (see the module doc).

    Raises:
        ValueError: not one of these forms, or a bad cluster file (names the key).
        FileNotFoundError: a ``.yaml``/``.yml`` file that does not exist.
    """
    text = str(text).strip()
    if text.startswith("local:"):
        count = text.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--cluster {text}: local:N needs a number of workers N >= 1, e.g. local:4")
        return ClusterSpec("local", text, n_workers=int(count))
    if "://" in text:
        return ClusterSpec("address", text, address=text)
    path = Path(text).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"--cluster: cluster file {path} does not exist")
        return _cluster_file(path)
    raise ValueError(
        f"--cluster {text!r} is not a cluster: give local:N (N worker processes here), "
        "a scheduler address such as tcp://host:8786, or a YAML cluster file (docs/distributed.md)"
    )


def _cluster_file(path: Path) -> ClusterSpec:
    try:
        import yaml
    except ImportError as exc:
        raise MissingExtraError(
            f"reading cluster file {path} needs PyYAML; install it with: pip install 'hetens[dask]'"
        ) from exc
    settings = yaml.safe_load(path.read_text()) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"cluster file {path} must hold a mapping of settings (scheduler: slurm, jobs: 4...)")
    unknown = sorted(set(settings) - _FILE_KEYS)
    if unknown:
        raise ValueError(
            f"cluster file {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_FILE_KEYS))} "
            "(pass other dask-jobqueue arguments under 'extra')"
        )
    scheduler = str(settings.get("scheduler", "")).lower()
    if scheduler not in _SCHEDULERS:
        raise ValueError(f"cluster file {path}: 'scheduler' must be slurm or pbs; got {scheduler or 'nothing'!r}")
    numbers = {}
    for key, default in (("jobs", 1), ("cores", 1), ("gpus-per-job", 0), ("workers-per-job", None)):
        value = settings.get(key, default)
        if value is not None and (not isinstance(value, int) or value < 0 or (value == 0 and key != "gpus-per-job")):
            raise ValueError(f"cluster file {path}: {key} must be a positive whole number; got {value!r}")
        numbers[key] = value
    if "memory" not in settings:
        raise ValueError(f"cluster file {path}: give the memory per job (memory: 32GB)")
    per_job = numbers["workers-per-job"] or max(1, numbers["gpus-per-job"])
    threads = settings.get("worker-threads") or max(1, numbers["cores"] // per_job)
    return ClusterSpec(
        "jobqueue",
        str(path),
        n_workers=numbers["jobs"] * per_job,
        settings={**settings, "workers-per-job": per_job},
        worker_threads=int(threads),
    )


def jobqueue_arguments(settings: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The dask-jobqueue class name and its keyword arguments for a cluster file's settings.

    Every worker gets one Dask thread (one chunk at a time); the job books
    ``cores`` CPUs and ``gpus-per-job`` GPUs.
    """
    scheduler = settings["scheduler"].lower()
    per_job = int(settings["workers-per-job"])
    cores = int(settings.get("cores", 1))
    gpus = int(settings.get("gpus-per-job", 0))
    kwargs: dict[str, Any] = {
        "cores": per_job,  # Dask threads per job: one per worker process
        "processes": per_job,
        "memory": str(settings["memory"]),
        "job_extra_directives": [],
        "job_script_prologue": list(settings.get("setup") or []),
    }
    for key, name in (("queue", "queue"), ("account", "account"), ("walltime", "walltime"),
                      ("python", "python"), ("log-directory", "log_directory"),
                      ("local-directory", "local_directory"), ("interface", "interface")):
        if settings.get(key) is not None:
            kwargs[name] = str(settings[key])
    if scheduler == "slurm":
        kwargs["job_cpu"] = cores
        if gpus:
            kwargs["job_extra_directives"].append(f"--gres=gpu:{gpus}")
        name = "SLURMCluster"
    else:
        kwargs["resource_spec"] = f"select=1:ncpus={cores}" + (f":ngpus={gpus}" if gpus else "") + (
            f":mem={str(settings['memory']).lower().replace('gib', 'gb')}"
        )
        name = "PBSCluster"
    for key, value in (settings.get("extra") or {}).items():
        if key in ("job_extra_directives", "job_script_prologue"):
            kwargs[key] = [*kwargs[key], *value]  # added to hetens' own lines
        else:
            kwargs[key] = value
    return name, kwargs


@contextlib.contextmanager
def connect(cluster) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for ``cluster`` (a spec string, :class:`ClusterSpec` or Client).

    Clusters started here (``local:N``, a cluster file) are closed on exit; a
    Client given by the caller, or a scheduler at an address, is left running.
    """
    distributed = import_distributed()
    if isinstance(cluster, distributed.Client):
        yield cluster
        return
    spec = cluster if isinstance(cluster, ClusterSpec) else parse_cluster_spec(cluster)
    if spec.kind == "address":
        client = distributed.Client(spec.address, timeout="60s")
        try:
            yield client
        finally:
            client.close()
        return
    if spec.kind == "local":
        with model_friendly_workers():
            made = distributed.LocalCluster(
                n_workers=spec.n_workers,
                threads_per_worker=1,
                processes=True,
                silence_logs=logging.ERROR,  # not the nanny's notes on stopping workers
                dashboard_address=":8787" if _port_free(8787) else ":0",
            )
    else:
        import dask_jobqueue

        name, kwargs = jobqueue_arguments(spec.settings)
        made = getattr(dask_jobqueue, name)(**kwargs)
        made.scale(jobs=int(spec.settings.get("jobs", 1)))
    try:
        client = distributed.Client(made)
        try:
            yield client
        finally:
            client.close()
    finally:
        made.close()


@contextlib.contextmanager
def model_friendly_workers() -> Iterator[None]:
    """Within: worker processes that nannies start (e.g. a ``LocalCluster``) keep glibc's malloc defaults.

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` to hand memory
    back to the OS sooner; torch models allocate and free many buffers per
    call, and scoring ran 2.4x slower with it (9.8 against 4.0 frames/s,
    SevenNet + CHGNet on 2-16-atom cells, one thread). Dask's other worker
    settings (one OpenMP/MKL/BLAS thread) are kept.
    """
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    environ = {k: v for k, v in (dask.config.get(key, {}) or {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({key: environ}):
        yield


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True
