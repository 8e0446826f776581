"""An ASE calculator whose model runs in a worker process, possibly in another environment.

``hetens.load_member("chgnet:0.3.0", python="/envs/chgnet/bin/python")``
returns a :class:`hetens.Member` whose calculator is an
:class:`IsolatedCalculator`; the spec option ``@python=PATH`` does the same.
Each calculation sends the structure (numbers, positions, cell, pbc, numeric
per-atom arrays, JSON-able ``info``) and receives energy, forces and stress
exactly as the member computes them in-process in that environment.

Besides ASE's ``calculate``, the calculator can :meth:`~IsolatedCalculator.submit`
a structure and :meth:`~IsolatedCalculator.collect` the result later, which
is how an ensemble runs its isolated members concurrently; a few more
members (``start``, ``suggest_threads``, ``cpu_threads``,
``last_compute_seconds``, ``reply_fileno``, ``deadline``) are what
:mod:`hetens.core.pool` schedules with. The :class:`WorkerProcess` itself
(``.worker``) is the calculator's own business.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ase.calculators.calculator import Calculator, all_changes

from hetens.errors import MemberFailedError, WorkerError
from hetens.workers.client import DEFAULT_START_TIMEOUT, DEFAULT_TIMEOUT, WorkerProcess, remote_error
from hetens.workers.protocol import Message, atoms_payload, encode, jsonable, payload_info

__all__ = ["IsolatedCalculator"]

_PROPERTIES = ("energy", "free_energy", "forces", "stress")


class IsolatedCalculator(Calculator):
    """A member's calculator running in its own worker process.

    Args:
        spec: the member spec the worker loads (``"chgnet:0.3.0"``), without
            worker options.
        python: interpreter of the member's environment; default: this one
            (``sys.executable``), which still isolates the member in its own process.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; resolved by the worker.
        member_name: name used in error messages (default: the spec).
        threads: torch threads of the worker; ``None`` keeps the default
            (an ensemble sets it so concurrent workers share the cores).
        timeout: seconds per calculation before the worker counts as hung.
        start_timeout: seconds allowed for loading the model.
        env: extra environment variables for the worker.
        lazy: start the worker at the first calculation (default) instead of now.

    ``results`` holds ``energy``/``free_energy`` (eV), ``forces`` (N, 3) eV/Å
    and, when asked, ``stress`` (6,) Voigt eV/Å³, all float64.
    """

    def __init__(
        self,
        spec: str,
        *,
        python: str | None = None,
        device: str = "auto",
        member_name: str | None = None,
        threads: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        start_timeout: float | None = DEFAULT_START_TIMEOUT,
        env: Mapping[str, str] | None = None,
        lazy: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.worker = WorkerProcess(
            spec, python=python or sys.executable, device=device, name=member_name or spec,
            threads=threads, timeout=timeout, start_timeout=start_timeout, env=env,
        )
        #: Package versions in the worker's environment, filled when it is ready.
        self.versions: dict[str, str] = {}
        self._pending: bytes | None = None
        self._info_key: str | None = None
        if not lazy:
            self.worker.start()

    # -- what the worker reported --------------------------------------------------------

    @property
    def implemented_properties(self) -> list[str]:  # type: ignore[override]
        """energy, free_energy, forces and stress; once the worker runs, what its model provides."""
        if not self.worker.started:
            return list(_PROPERTIES)
        provided = set(self.wait_ready()["implemented_properties"]) | {"free_energy"}
        return [p for p in _PROPERTIES if p in provided]

    def wait_ready(self) -> dict[str, Any]:
        """Start the worker if needed and wait until its model is loaded; what it reported."""
        info = self.worker.wait_ready()
        self.versions.update(info.get("versions", {}))
        return info

    @property
    def supported_elements(self) -> list[int] | None:
        """Atomic numbers the worker's model was trained on; ``None`` until it is ready or when unknown."""
        return self.worker.info.get("elements")

    @property
    def device(self) -> str:
        """The device the worker resolved (``"cpu"``, ``"cuda"``...), or the one asked for before it ran."""
        return self.worker.info.get("device", self.worker.device)

    # -- ASE -----------------------------------------------------------------------------

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """ASE's checks plus ``atoms.info``, which travels to the worker."""
        changes = super().check_state(atoms, tol=tol)
        if not changes and self._info_key is not None and self._info_key != _info_key(atoms):
            changes = [*changes, "info"]
        return changes

    def calculate(self, atoms=None, properties: Sequence[str] = ("energy",),
                  system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        frame = self._frame(self.atoms, properties)
        if self._pending != frame:
            self._send(frame)
        self.results = self.collect()
        self._info_key = _info_key(self.atoms)

    # -- asynchronous use ----------------------------------------------------------------

    def submit(self, atoms, properties: Sequence[str] = ("energy", "forces")) -> None:
        """Send ``atoms`` to the worker and return at once; :meth:`collect` gets the result.

        A structure submitted earlier and not collected is collected and dropped first.
        """
        self._send(self._frame(atoms, properties))

    def _send(self, frame: bytes) -> None:
        self.cancel()
        self.wait_ready()
        self.worker.send_frame(frame)
        self._pending = frame

    def collect(self) -> dict[str, Any]:
        """The result of the structure last submitted (waits up to ``timeout`` seconds).

        Returns:
            ``energy``, ``free_energy`` (eV), ``forces`` (N, 3) eV/Å and, when
            asked for, ``stress`` (6,) eV/Å³, float64 as computed in the worker.

        Raises:
            MemberFailedError: the model raised on this structure (the worker stays up).
            WorkerError: the worker died; WorkerTimeoutError: it did not answer in time.
        """
        if self._pending is None:
            raise WorkerError(f"member {self.worker.name}: collect() called with nothing submitted")
        self._pending = None
        return self._results(self.worker.receive())

    def cancel(self) -> None:
        """Drop the structure in flight, if any, waiting for (and discarding) its reply."""
        if self._pending is None:
            return
        self._pending = None
        try:
            self.worker.receive()
        except WorkerError:
            pass

    # -- scheduling: what an ensemble needs to run its workers together ------------------

    @property
    def python(self) -> str:
        """The worker's interpreter (absolute path once resolved)."""
        return self.worker.python

    @property
    def started(self) -> bool:
        """Whether the worker process has been launched (it may still be loading its model)."""
        return self.worker.started

    def start(self) -> None:
        """Launch the worker and return at once; :meth:`wait_ready` waits for its model."""
        self.worker.start()

    def suggest_threads(self, threads: int) -> None:
        """Use ``threads`` torch threads, unless threads were given or the worker has started."""
        if self.worker.threads is None and not self.worker.started:
            self.worker.threads = int(threads)

    @property
    def cpu_threads(self) -> int | None:
        """Cores one calculation occupies: 0 on a GPU, the worker's torch threads on a CPU,
        ``None`` when not known (a CPU worker left at torch's default)."""
        device = str(self.worker.info.get("device") or self.worker.device)
        if not device.startswith("cpu"):
            return 0
        threads = self.worker.info.get("threads") or self.worker.threads
        return int(threads) if threads else None

    @property
    def last_compute_seconds(self) -> float:
        """Seconds the worker computed on its last structure (0 before the first)."""
        timing = self.worker.last_timing
        return float(timing[1]) if timing else 0.0

    def reply_fileno(self) -> int:
        """File descriptor that becomes readable when the worker's reply arrives (for ``select``)."""
        return self.worker.reply_fileno()

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` by which the structure in flight must be answered (``inf``: none)."""
        return self.worker.deadline

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker (it starts again if the calculator is used afterwards)."""
        self._pending = None
        self.worker.close()

    def __enter__(self) -> IsolatedCalculator:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def todict(self) -> dict[str, Any]:
        return {"spec": self.worker.spec, "python": self.worker.python, "device": self.worker.device}

    def __repr__(self) -> str:
        return f"IsolatedCalculator({self.worker.spec!r}, python={self.worker.python!r})"

    # -- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _frame(atoms, properties: Sequence[str]) -> bytes:
        fields, arrays = atoms_payload(atoms)
        wanted = ["energy", "forces"] + (["stress"] if "stress" in properties else [])
        return encode("calculate", {**fields, "properties": wanted}, arrays)

    def _results(self, reply: Message) -> dict[str, Any]:
        name = self.worker.name
        if reply.kind == "error":
            error = remote_error(name, reply, "while calculating", [])
            if isinstance(error, WorkerError):  # not a hetens error: the model's own exception
                error = MemberFailedError(
                    f"member {name} raised {reply.fields.get('type')} in its worker: "
                    f"{reply.fields.get('message')}\nWorker traceback:\n{reply.fields.get('traceback', '')}"
                )
            raise error
        if reply.kind != "result":
            raise WorkerError(f"member {name}: its worker answered {reply.kind!r} to a calculation")
        energy = float(reply.arrays["energy"])
        results = {"energy": energy, "free_energy": energy, "forces": reply.arrays["forces"]}
        if "stress" in reply.arrays:
            results["stress"] = reply.arrays["stress"]
        return results


def _info_key(atoms) -> str:
    return json.dumps(payload_info(atoms.info), default=jsonable, sort_keys=True)
