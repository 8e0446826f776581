"""Running an ensemble's isolated members together: threads, start-up, concurrent calls.

The ensemble calculator uses these; they work on any list of
:class:`hetens.Member`, and treat members whose calculator is an
:class:`~hetens.workers.isolated.IsolatedCalculator` as workers:

- :func:`assign_threads` gives each worker ``cores // concurrent`` torch
  threads, so concurrent workers do not oversubscribe the cores;
- :func:`start_workers` launches every worker first, then waits for all,
  so models load concurrently;
- :func:`evaluate_members` hands the structure to the workers, longest
  first and no more CPU threads at once than there are cores, runs the
  in-process members meanwhile, and collects each reply as it arrives;
- :func:`evaluate_groups` (from :mod:`hetens.core.group_evaluation`) runs the
  in-process members of one family through the family adapter's
  ``evaluate_group`` (one prepared input for all).
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hetens.core.evaluation import MemberOutput, evaluate_member
from hetens.core.group_evaluation import evaluate_groups
from hetens.workers.isolated import IsolatedCalculator

if TYPE_CHECKING:
    from hetens.core.member import Member

__all__ = [
    "available_cores",
    "worker_members",
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
        member.calculator.suggest_threads(threads)


def start_workers(members: Sequence[Member]) -> None:
    """Launch every worker not running yet, then wait until all have loaded their models.

    Raises:
        WorkerError (or the member's loading error): for the first member that
        failed; the others keep running.
    """
    workers = [m.calculator for m in worker_members(members)]
    for calc in workers:
        calc.start()
    errors = []
    for calc in workers:
        try:
            calc.wait_ready()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def evaluate_members(members: Sequence[Member], atoms, with_stress: bool, force: bool = False,
                     cores: int | None = None, failures: dict[str, Exception] | None = None
                     ) -> list[MemberOutput | None]:
    """:func:`hetens.core.evaluation.evaluate_member` for every member, workers concurrently.

    CPU workers are dispatched so that the torch threads computing at once
    do not exceed ``cores`` (default: :func:`available_cores`; one core is
    left to this process while it evaluates in-process members), longest
    first by each worker's last compute time; a worker that finishes frees
    its threads for the next. Workers on a GPU are dispatched at once. The
    in-process members run while the workers compute. ``force`` recomputes
    even when a member's cache looks valid. Results come in member order.

    A failing member raises its :class:`~hetens.errors.MemberFailedError`
    at once, unless ``failures`` is given: then the error is stored there
    under the member's name, its result is ``None``, and the others go on.
    """
    properties = ["energy", "forces"] + (["stress"] if with_stress else [])
    workers = worker_members(members)
    in_worker = {id(m) for m in workers}
    local = [m for m in members if id(m) not in in_worker]
    todo = [m for m in workers if force or m.calculator.calculation_required(atoms, properties)]
    todo.sort(key=_last_compute, reverse=True)  # longest first (LPT), from the last call
    cores = cores or available_cores()
    running: list[Member] = []
    outputs: dict[int, Any] = {}

    def evaluate(member: Member) -> None:
        try:
            outputs[id(member)] = evaluate_member(member, atoms, with_stress, force)
        except Exception as error:
            if failures is None:
                raise
            failures[member.name] = error
            outputs[id(member)] = None

    def dispatch(slots: int) -> None:
        busy = sum(_cpu_threads(m) for m in running)
        while todo and (not running or busy + _cpu_threads(todo[0]) <= slots):
            member = todo.pop(0)
            try:
                member.calculator.submit(atoms, properties)
            except Exception:
                evaluate(member)  # reports the dead worker as this member's failure
                continue
            running.append(member)
            busy += _cpu_threads(member)

    try:
        if len(workers) > 1 or local:
            dispatch(max(1, cores - (1 if local else 0)))
        # In-process members: each family's group path first (members of one
        # family sharing one prepared input), the rest one by one.
        grouped = evaluate_groups(local, atoms, with_stress, force)
        outputs.update(grouped)
        for member in local:
            if id(member) not in grouped:
                evaluate(member)
        while running or todo:
            dispatch(cores)
            if not running:
                continue
            member = _first_answer(running)
            running.remove(member)
            # calculate() recognises the structure submitted above and collects it.
            evaluate(member)
        for member in workers:
            if id(member) not in outputs:  # results cached from an earlier call
                evaluate(member)
    finally:
        for member in workers:
            member.calculator.cancel()
    return [outputs[id(m)] for m in members]


def _last_compute(member: Member) -> float:
    return member.calculator.last_compute_seconds


def _cpu_threads(member: Member) -> int:
    """Cores a worker's calculation occupies: its torch threads on a CPU, none on a GPU."""
    threads = member.calculator.cpu_threads
    return available_cores() if threads is None else threads


def _first_answer(running: list[Member]) -> Member:
    """The running worker whose reply arrived first (or whose deadline passed first)."""
    if len(running) == 1:
        return running[0]
    by_fd = {m.calculator.reply_fileno(): m for m in running}
    earliest = min(running, key=lambda m: m.calculator.deadline)
    wait = earliest.calculator.deadline - time.monotonic()
    ready, _, _ = select.select(list(by_fd), [], [], None if wait == float("inf") else max(0.0, wait))
    return by_fd[ready[0]] if ready else earliest


def close_workers(members: Iterable[Member]) -> None:
    """Stop the worker process of every isolated member; in-process members are left alone."""
    for member in worker_members(members):
        member.calculator.close()
