"""The program that runs one ensemble member inside the member's own Python environment.

Started by :class:`hetens.workers.client.WorkerProcess` as
``PYTHON -I -u -m hetens.workers.worker_main``; not meant to be run by hand.
The member environment needs numpy, ase, the family's package (sevenn,
chgnet, mace-torch...) and hetens itself, installed without its dependencies
(``pip install --no-deps hetens``): hetens' own code is pure Python and the
worker imports only its spec, registry and adapter modules.

Conversation (see :mod:`hetens.workers.protocol`): the parent sends ``load``
(spec, device, threads); the worker loads the member with
:func:`hetens.load_member` and answers ``ready`` or ``error``; then each
``calculate`` (a structure) gets a ``result`` (energy, forces, stress as
float64 arrays, computed exactly as in-process, by
:func:`hetens.core.group_evaluation.evaluate_alone`) or an ``error``;
``close`` or the end of stdin ends it.

Whatever the model packages print goes to stderr: the protocol owns a
private copy of stdout.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from typing import Any, BinaryIO

#: Test hook: seconds to sleep before every calculation, to exercise timeouts.
#: Read only from this variable, which hetens never sets itself.
TEST_HANG_VARIABLE = "HETENS_WORKER_TEST_HANG"
_PR_SET_PDEATHSIG = 1


def main() -> int:
    _die_with_parent()
    requests, replies = _claim_stdio()
    # Ctrl-C in a terminal reaches the whole process group; the parent decides
    # what happens to its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from hetens.workers.protocol import PROTOCOL_VERSION, read_message, write_message

    load = read_message(requests)
    if load is None:
        return 0
    started = time.perf_counter()
    try:
        member = _load(load.fields)
    except BaseException as exc:  # reported to the parent, which raises it
        _send_error(replies, exc, "while loading")
        return 1
    _log(f"ready in {time.perf_counter() - started:.1f} s")
    write_message(replies, "ready", _ready_fields(member, time.perf_counter() - started, PROTOCOL_VERSION))

    hang = float(os.environ.get(TEST_HANG_VARIABLE) or 0)
    while True:
        request = read_message(requests)
        if request is None or request.kind == "close":
            return 0
        if request.kind != "calculate":
            _send_error(replies, ValueError(f"unknown request {request.kind!r}"), "")
            continue
        if hang:
            _log(f"{TEST_HANG_VARIABLE} is set: sleeping {hang:g} s before calculating")
            time.sleep(hang)
        try:
            fields, arrays = _calculate(member, request)
        except Exception as exc:  # the member failed on this structure; keep serving
            _send_error(replies, exc, "while calculating")
            continue
        write_message(replies, "result", fields, arrays)


def _load(fields: dict[str, Any]):
    from hetens.core.member import load_member

    threads = fields.get("threads")
    _log(f"pid {os.getpid()}, python {sys.executable}: loading {fields['spec']} on "
         f"{fields.get('device', 'auto')}" + (f" with {threads} torch thread(s)" if threads else ""))
    if threads:
        try:
            import torch
        except ImportError:  # a family without torch: OMP_NUM_THREADS is set already
            pass
        else:
            torch.set_num_threads(int(threads))
    return load_member(fields["spec"], device=fields.get("device", "auto"))


def _ready_fields(member, seconds: float, protocol: int) -> dict[str, Any]:
    from hetens._version import __version__
    from hetens.io import keys

    torch = sys.modules.get("torch")
    return {
        "protocol": protocol,
        keys.VERSION_KEY: __version__,
        "pid": os.getpid(),
        "python": sys.executable,
        "python_version": sys.version.split()[0],
        "device": member.device,
        "implemented_properties": list(getattr(member.calculator, "implemented_properties", ())),
        "versions": member.versions,
        "elements": None if member.elements is None else sorted(member.elements),
        "threads": torch.get_num_threads() if torch is not None else None,
        "load_seconds": seconds,
    }


def _calculate(member, request) -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np

    from hetens.core.group_evaluation import evaluate_alone
    from hetens.workers.protocol import atoms_from_payload

    atoms = atoms_from_payload(request.fields, request.arrays)
    with_stress = "stress" in request.fields.get("properties", ())
    started = time.perf_counter()
    energy, forces, stress = evaluate_alone(member, atoms, with_stress)  # as in-process
    seconds = time.perf_counter() - started
    arrays = {"energy": np.asarray(energy, dtype=np.float64), "forces": forces}
    if stress is not None:
        arrays["stress"] = stress
    return {"seconds": seconds}, arrays


def _send_error(replies: BinaryIO, exc: BaseException, during: str) -> None:
    from hetens.workers.protocol import write_message

    text = "".join(traceback.format_exception(exc))
    _log(f"error {during}:\n{text}".rstrip())
    write_message(replies, "error", {"type": type(exc).__name__, "message": str(exc), "traceback": text})


def _claim_stdio() -> tuple[BinaryIO, BinaryIO]:
    """Private handles on the protocol pipes; fd 1 then points at stderr, fd 0 at /dev/null.

    Model packages print to stdout (progress, "CHGNet will run on cpu"); that
    text must not land in the protocol stream.
    """
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return requests, replies


def _die_with_parent() -> None:
    """Get SIGKILLed by Linux when the parent dies; exit if it is already gone."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    parent = int(os.environ.get("HETENS_WORKER_PARENT_PID") or 0)
    if parent:
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def _log(text: str) -> None:
    print(f"hetens worker: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
