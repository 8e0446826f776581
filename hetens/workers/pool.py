"""Running an ensemble's isolated members together: threads, start-up, concurrent calls.

The ensemble calculator uses these; they work on any list of
:class:`hetens.Member`, and treat members whose calculator is an
:class:`~hetens.workers.isolated.IsolatedCalculator` as workers:

- :func:`assign_threads` gives each worker ``cores // concurrent`` torch
  threads, so concurrent workers do not oversubscribe the cores;
- :func:`start_workers` launches every worker first, then waits for all,
  so models load concurrently;
- :func:`evaluate_members` sends the structure to every worker, runs the
  in-process members meanwhile, then collects the workers' results.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from hetens.member import Member
from hetens.spec import MemberSpec, parse_spec
from hetens.workers.isolated import IsolatedCalculator

__all__ = [
    "available_cores",
    "worker_members",
    "as_worker_spec",
    "assign_threads",
    "start_workers",
    "evaluate_members",
    "close_workers",
]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def worker_members(members: Iterable[Member]) -> list[Member]:
    """The members that run in a worker process."""
    return [m for m in members if isinstance(m.calculator, IsolatedCalculator)]


def as_worker_spec(item: Any, python: str | None = None) -> Any:
    """A spec that runs in a worker: ``item`` with ``@python=`` added when it has none.

    Members and calculators (already loaded in this process) are returned
    unchanged: they stay in-process.
    """
    if not isinstance(item, (str, MemberSpec)):
        return item
    parsed = item if isinstance(item, MemberSpec) else parse_spec(item)
    if "python" in parsed.options:
        return parsed
    options = {**parsed.options, "python": python or sys.executable}
    return MemberSpec(parsed.family, parsed.model, parsed.head, options)


def assign_threads(members: Sequence[Member], cores: int | None = None) -> None:
    """Set the torch threads of workers that have none set and have not started yet.

    Each gets ``max(1, cores // concurrent)``, where ``concurrent`` counts the
    workers plus one for this process when it has in-process members (they
    run while the workers compute).
    """
    workers = worker_members(members)
    if not workers:
        return
    concurrent = len(workers) + (1 if len(workers) < len(members) else 0)
    threads = max(1, (cores or available_cores()) // concurrent)
    for member in workers:
        worker = member.calculator.worker
        if worker.threads is None and not worker.started:
            worker.threads = threads


def start_workers(members: Sequence[Member]) -> None:
    """Launch every worker not running yet, then wait until all have loaded their models.

    Raises:
        WorkerError (or the member's loading error): for the first member that
        failed; the others keep running.
    """
    workers = [m.calculator for m in worker_members(members)]
    for calc in workers:
        calc.worker.start()
    errors = []
    for calc in workers:
        try:
            calc.wait_ready()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def evaluate_members(members: Sequence[Member], atoms, with_stress: bool, force: bool = False
                     ) -> list[tuple[float, np.ndarray, np.ndarray | None]]:
    """:func:`hetens.calculator.evaluate_member` for every member, workers concurrently.

    Workers get the structure first; in-process members run meanwhile; then
    the workers' results are collected. ``force`` recomputes even when a
    member's cache looks valid. Results come in member order.
    """
    from hetens.calculator import evaluate_member

    properties = ["energy", "forces"] + (["stress"] if with_stress else [])
    workers = worker_members(members)
    if len(workers) > 1 or (workers and len(workers) < len(members)):
        for member in workers:
            if force or member.calculator.calculation_required(atoms, properties):
                member.calculator.submit(atoms, properties)
    in_worker = {id(m) for m in workers}
    outputs = {}
    try:
        for member in members:
            if id(member) not in in_worker:
                outputs[id(member)] = evaluate_member(member, atoms, with_stress, force)
        for member in workers:
            # calculate() recognises the structure submitted above and collects it.
            outputs[id(member)] = evaluate_member(member, atoms, with_stress, force)
    finally:
        for member in workers:
            member.calculator.cancel()
    return [outputs[id(m)] for m in members]


def close_workers(members: Iterable[Member]) -> None:
    """Stop the worker process of every isolated member; in-process members are left alone."""
    for member in worker_members(members):
        member.calculator.close()
