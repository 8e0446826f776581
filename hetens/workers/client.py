"""The parent side of a member's worker process: start, call with a timeout, stop.

:class:`WorkerProcess` runs ``python -I -u -m hetens.workers.worker_main``
under the member's interpreter and talks to it over the child's stdin/stdout
pipes (:mod:`hetens.workers.protocol`). Its stderr is read continuously by a
thread into a ring buffer, so an error can quote the last lines.

No worker outlives its owner:

- :meth:`WorkerProcess.close` (also on ``with`` exit) asks it to exit, then kills it;
- a :func:`weakref.finalize` kills it when the object is garbage-collected
  and at interpreter exit;
- the worker asks Linux to SIGKILL it when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), and exits when its stdin closes, which
  covers a parent killed with SIGKILL;
- a call that is interrupted (Ctrl-C) or times out kills the worker, since
  its reply can no longer be matched to a request.

A worker that died or was stopped is started again on next use.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import selectors
import shutil
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np

from hetens.errors import WorkerError, WorkerTimeoutError
from hetens.io import keys
from hetens.workers.protocol import (
    PREFIX_SIZE,
    PROTOCOL_VERSION,
    Message,
    ProtocolError,
    decode_body,
    decode_prefix,
    encode,
)

__all__ = ["WorkerProcess", "DEFAULT_TIMEOUT", "DEFAULT_START_TIMEOUT", "remote_error"]

log = logging.getLogger("hetens.workers")

#: Seconds a calculation may take before its worker is declared hung.
DEFAULT_TIMEOUT = 600.0
#: Seconds a worker may take to import its package and load the model.
DEFAULT_START_TIMEOUT = 600.0
#: Seconds :meth:`WorkerProcess.close` waits for a clean exit before killing.
CLOSE_GRACE = 5.0
#: Environment variables that would make the worker's interpreter import this
#: environment's packages instead of its own.
_DROPPED_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")


class _Stopped(Exception):
    """The worker's pipe closed (it exited or was killed)."""


class _TimedOut(Exception):
    """No reply before the deadline."""


class WorkerProcess:
    """One member running in a long-lived process under another Python interpreter.

    Requests are answered in order, one at a time; use a worker from one
    thread at a time.

    Args:
        spec: member spec the worker loads with :func:`hetens.load_member`
            (without worker options), e.g. ``"chgnet:0.3.0"``.
        python: path of the interpreter (``/envs/chgnet/bin/python``); that
            environment needs numpy, ase, the family's package and hetens
            (``pip install --no-deps hetens``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; resolved in the worker.
        name: member name used in messages.
        threads: torch intra-op threads in the worker (also ``OMP_NUM_THREADS``);
            ``None`` keeps the interpreter's default, as in-process.
        timeout: seconds a calculation may take before the worker is stopped
            and :class:`~hetens.errors.WorkerTimeoutError` raised.
        start_timeout: seconds allowed for importing and loading the model.
        env: extra environment variables for the worker (``CUDA_VISIBLE_DEVICES``...).
        stderr_lines: how many of the worker's last stderr lines are kept.
    """

    def __init__(
        self,
        spec: str,
        *,
        python: str,
        device: str = "auto",
        name: str | None = None,
        threads: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        start_timeout: float | None = DEFAULT_START_TIMEOUT,
        env: Mapping[str, str] | None = None,
        stderr_lines: int = 50,
    ) -> None:
        self.spec = spec
        self.name = name or spec
        self.python = _interpreter(python, self.name)
        self.device = device
        self.threads = threads
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.env = dict(env or {})
        self.info: dict[str, Any] = {}
        #: ``(round trip, worker compute)`` seconds of the last calculation; the
        #: round trip runs from the start of sending to the end of decoding the reply.
        self.last_timing: tuple[float, float] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._proc: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._stderr_thread: threading.Thread | None = None
        self._readable: selectors.BaseSelector | None = None
        self._writable: selectors.BaseSelector | None = None
        self._state = "stopped"  # stopped -> starting -> ready <-> busy
        self._busy_since = 0.0

    # -- state ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id of the running worker, ``None`` when none runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def started(self) -> bool:
        """Whether a worker process has been launched and not stopped since."""
        return self._proc is not None

    @property
    def busy(self) -> bool:
        """Whether a request was sent and its reply not read yet."""
        return self._state == "busy"

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` by which the request in flight must be answered (inf: none)."""
        if self._state != "busy" or self.timeout is None:
            return float("inf")
        return self._busy_since + self.timeout

    def reply_fileno(self) -> int:
        """File descriptor the replies arrive on (readable when one is there, or at exit)."""
        if self._proc is None:
            raise WorkerError(f"member {self.name}: its worker is not running")
        return self._proc.stdout.fileno()

    def stderr_tail(self, lines: int = 20) -> list[str]:
        """The worker's last ``lines`` lines of stderr (also after it stopped)."""
        return list(self._stderr)[-lines:]

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Launch the worker and send it the model to load; returns at once.

        Loading goes on in the background; :meth:`wait_ready` (or the first
        call) waits for it. Does nothing if the worker runs already.
        """
        if self._proc is not None:
            return
        self._stderr.clear()
        self.info = {}
        try:
            proc = _popen(
                [self.python, "-I", "-u", "-m", "hetens.workers.worker_main"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self._child_environment(),
            )
        except OSError as exc:
            raise WorkerError(f"member {self.name}: cannot run the interpreter {self.python}: {exc}") from exc
        self._proc = proc
        self._finalizer = weakref.finalize(self, _reap, proc, os.getpid())
        self._stderr_thread = threading.Thread(
            target=_pump_stderr, args=(proc.stderr, self._stderr, self.name),
            name=f"hetens-worker-stderr-{proc.pid}", daemon=True,
        )
        self._stderr_thread.start()
        for stream in (proc.stdin, proc.stdout):
            os.set_blocking(stream.fileno(), False)
        self._readable = selectors.DefaultSelector()
        self._readable.register(proc.stdout.fileno(), selectors.EVENT_READ)
        self._writable = selectors.DefaultSelector()
        self._writable.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
        self._state = "starting"
        log.debug("member %s: worker pid %d started (%s)", self.name, proc.pid, self.python)
        self._exchange_send(encode("load", {
            "protocol": PROTOCOL_VERSION, "spec": self.spec, "device": self.device,
            "threads": self.threads,
        }), self.start_timeout, "while receiving its model spec")

    def wait_ready(self) -> dict[str, Any]:
        """Start if needed, then wait until the model is loaded.

        Returns:
            What the worker reported: ``device``, ``implemented_properties``,
            ``versions``, ``threads``, ``python``, ``hetens_version``, ``load_seconds``.

        Raises:
            WorkerError: the worker exited, or failed to load the model (the
                model's own error type is kept when it is a hetens error, e.g.
                :class:`~hetens.errors.MissingFamilyError`).
            WorkerTimeoutError: loading took longer than ``start_timeout``.
        """
        if self._proc is None:
            self.start()
        if self._state == "starting":
            reply = self._exchange_receive(self.start_timeout, "while loading the model")
            if reply.kind == "error":
                self.stop()
                raise remote_error(self.name, reply, "while loading the model", self.stderr_tail())
            if reply.kind != "ready" or reply.fields.get("protocol") != PROTOCOL_VERSION:
                self.stop()
                raise WorkerError(self._mismatch(reply))
            self.info = reply.fields
            self._state = "ready"
            log.debug("member %s: worker ready in %.1f s", self.name, self.info.get("load_seconds", 0))
        return self.info

    def close(self) -> None:
        """Ask the worker to exit, kill it if it does not within a few seconds, and reap it."""
        proc = self._proc
        if proc is None:
            return
        if self._state == "ready" and proc.poll() is None:
            try:
                self._write_all(encode("close"), time.monotonic() + CLOSE_GRACE)
                proc.wait(CLOSE_GRACE)
            except (_Stopped, _TimedOut, subprocess.TimeoutExpired, OSError):
                pass
        self.stop()

    def stop(self) -> None:
        """Kill the worker at once (no goodbye) and reap it; safe to call twice."""
        proc, self._proc = self._proc, None
        self._state = "stopped"
        if proc is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        _reap(proc, os.getpid())
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2.0)
        for selector in (self._readable, self._writable):
            if selector is not None:
                selector.close()
        self._readable = self._writable = None

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------

    def send(self, kind: str, fields: Mapping[str, Any] | None = None,
             arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Send one request without waiting for the reply (waits for readiness first).

        Raises:
            WorkerError: the worker is busy with an unanswered request, or died.
        """
        self.send_frame(encode(kind, fields, arrays))

    def send_frame(self, frame: bytes) -> None:
        """Send one request already encoded with :func:`hetens.workers.protocol.encode`."""
        self.wait_ready()
        if self._state != "ready":
            raise WorkerError(f"member {self.name}: its worker still has a request in flight; "
                              "read its reply with receive() before sending another")
        self._busy_since = time.monotonic()
        self._exchange_send(frame, self.timeout, "while receiving a request")
        self._state = "busy"

    def receive(self) -> Message:
        """The reply to the request in flight (waits up to ``timeout`` seconds from sending).

        A reply of kind ``error`` (the model raised) is returned as is; the
        worker stays usable.

        Raises:
            WorkerError: no request in flight, or the worker died meanwhile.
            WorkerTimeoutError: no reply within ``timeout``; the worker is stopped.
        """
        if self._state != "busy":
            raise WorkerError(f"member {self.name}: receive() called with no request in flight")
        reply = self._exchange_receive(self.timeout, "during a calculation", since=self._busy_since)
        self._state = "ready"
        self.last_timing = (time.monotonic() - self._busy_since, float(reply.fields.get("seconds", 0.0)))
        return reply

    def request(self, kind: str, fields: Mapping[str, Any] | None = None,
                arrays: Mapping[str, np.ndarray] | None = None) -> Message:
        """:meth:`send` then :meth:`receive`."""
        self.send(kind, fields, arrays)
        return self.receive()

    # -- plumbing ------------------------------------------------------------------------

    def _child_environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_VARIABLES}
        env["HETENS_WORKER_PARENT_PID"] = str(os.getpid())
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        env.update(self.env)
        return env

    def _exchange_send(self, frame: bytes, timeout: float | None, during: str) -> None:
        deadline = _deadline(timeout, time.monotonic())
        try:
            self._write_all(frame, deadline)
        except BaseException as exc:
            raise self._failure(exc, timeout, during) from None

    def _exchange_receive(self, timeout: float | None, during: str, since: float | None = None) -> Message:
        deadline = _deadline(timeout, since if since is not None else time.monotonic())
        try:
            prefix = self._read_exact(PREFIX_SIZE, deadline)
            header_length, body_length = decode_prefix(bytes(prefix))
            header = self._read_exact(header_length, deadline)
            body = self._read_exact(body_length, deadline)
            return decode_body(header, body)
        except BaseException as exc:
            raise self._failure(exc, timeout, during) from None

    def _failure(self, exc: BaseException, timeout: float | None, during: str) -> BaseException:
        """Stop the worker and turn what went wrong into the exception to raise."""
        if not isinstance(exc, (_Stopped, _TimedOut, ProtocolError, OSError, ValueError)):
            # Ctrl-C or another interruption: the reply can no longer be matched.
            self.stop()
            return exc
        proc = self._proc
        pid = proc.pid if proc is not None else None
        status = None
        if isinstance(exc, _Stopped) and proc is not None:
            try:
                status = proc.wait(2.0)
            except subprocess.TimeoutExpired:
                status = None
        self.stop()
        tail = self.stderr_tail()
        where = f"member {self.name}: its worker (pid {pid}, {self.python})"
        if isinstance(exc, _TimedOut):
            text = (f"{where} did not answer within {timeout:g} s {during} and was stopped. "
                    "Raise the member's timeout if the model is just slow.")
            return WorkerTimeoutError(_with_tail(text, tail))
        if isinstance(exc, _Stopped):
            text = f"{where} {_describe_exit(status)} {during}."
        else:
            text = f"{where} broke the protocol {during} ({exc})."
        return WorkerError(_with_tail(text + _hint(tail, self.python), tail))

    def _mismatch(self, reply: Message) -> str:
        from hetens._version import __version__

        theirs = reply.fields.get(keys.VERSION_KEY, "unknown")
        return (f"member {self.name}: the worker under {self.python} speaks worker protocol "
                f"{reply.fields.get('protocol')} (hetens {theirs}), this process protocol "
                f"{PROTOCOL_VERSION} (hetens {__version__}). Install the same hetens there: "
                f"{self.python} -m pip install --no-deps hetens=={__version__}")

    def _write_all(self, data: bytes, deadline: float) -> None:
        if self._proc is None:
            raise _Stopped()
        fd = self._proc.stdin.fileno()
        view, sent = memoryview(data), 0
        while sent < len(view):
            try:
                sent += os.write(fd, view[sent:])
            except BlockingIOError:
                self._wait(self._writable, deadline)
            except (BrokenPipeError, ConnectionResetError):
                raise _Stopped() from None

    def _read_exact(self, n: int, deadline: float) -> bytearray:
        if self._proc is None:
            raise _Stopped()
        fd = self._proc.stdout.fileno()
        buffer = bytearray(n)
        view, got = memoryview(buffer), 0
        while got < n:
            try:
                count = os.readv(fd, [view[got:]])
            except BlockingIOError:
                self._wait(self._readable, deadline)
                continue
            if count == 0:
                raise _Stopped()
            got += count
        return buffer

    @staticmethod
    def _wait(selector: selectors.BaseSelector | None, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _TimedOut()
        selector.select(None if remaining == float("inf") else remaining)

    def __repr__(self) -> str:
        return f"WorkerProcess({self.name!r}, python={self.python!r}, pid={self.pid}, state={self._state})"


# -- module helpers ----------------------------------------------------------------------


def _interpreter(python: str, name: str) -> str:
    """``python`` as an absolute path (symlinks kept: a venv is found through its link)."""
    path = python if os.sep in python else shutil.which(python)
    if path is None or not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise WorkerError(
            f"member {name}: the Python interpreter {python!r} does not exist or is not executable; "
            "give the full path of the environment's interpreter, e.g. /path/to/env/bin/python "
            "(`hetens env create` prints it)"
        )
    return os.path.abspath(path)


def _deadline(timeout: float | None, start: float) -> float:
    return float("inf") if timeout is None else start + timeout


def _describe_exit(status: int | None) -> str:
    if status is None:
        return "stopped answering"
    if status < 0:
        try:
            signame = signal.Signals(-status).name
        except ValueError:
            signame = f"signal {-status}"
        text = f"was killed by {signame}"
        if -status == signal.SIGKILL:
            text += " (outside hetens: out of memory, or a kill)"
        return text
    return f"exited with status {status}"


def _hint(tail: list[str], python: str) -> str:
    text = "\n".join(tail)
    if "No module named 'hetens'" in text or "No module named hetens" in text:
        from hetens._version import __version__

        return (f" hetens is not installed in that environment; install it without its "
                f"dependencies: {python} -m pip install --no-deps hetens=={__version__} "
                "(or build the environment with `hetens env create`).")
    return ""


def _with_tail(text: str, tail: list[str]) -> str:
    if not tail:
        return text + " It wrote nothing on stderr."
    return text + " Its last stderr lines:\n" + "\n".join(f"    {line}" for line in tail)


def remote_error(name: str, reply: Message, during: str, tail: list[str]) -> BaseException:
    """The exception a worker reported, as the same hetens error class when it is one."""
    import hetens.errors

    kind = reply.fields.get("type", "Exception")
    message = reply.fields.get("message", "")
    cls = getattr(hetens.errors, kind, None)
    if kind in ("MemberFailedError", "UnsupportedElementError") and message.startswith(f"member {name} "):
        text = f"{message} (in its worker)"  # already names the member, the property and the structure
    else:
        text = f"member {name} (in its worker) failed {during}: {kind}: {message}"
    if isinstance(cls, type) and issubclass(cls, hetens.errors.HetensError):
        return cls(text)
    return WorkerError(_with_tail(text, tail))


def _pump_stderr(stream: Any, lines: collections.deque, name: str) -> None:
    """Read the worker's stderr line by line into ``lines`` until it closes, then close it."""
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            log.debug("[%s] %s", name, line)
    except (OSError, ValueError):
        pass
    finally:
        stream.close()


def _reap(proc: subprocess.Popen, owner_pid: int) -> None:
    """Kill ``proc`` if it still runs, wait for it and close its pipes.

    Does nothing in a forked child of the owner (``owner_pid``): the worker
    belongs to the process that started it.
    """
    if os.getpid() != owner_pid:
        return
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(10.0)
    except subprocess.TimeoutExpired:
        log.warning("hetens worker pid %d did not exit after SIGKILL", proc.pid)
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not
# the process. Workers are therefore forked from the main thread or from one
# long-lived daemon thread, never from a short-lived worker thread.
_spawn_requests: queue.SimpleQueue | None = None
_spawn_lock = threading.Lock()


def _popen(args: list[str], **kwargs: Any) -> subprocess.Popen:
    global _spawn_requests
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(args, **kwargs)
    with _spawn_lock:
        if _spawn_requests is None:
            _spawn_requests = queue.SimpleQueue()
            threading.Thread(target=_spawner, args=(_spawn_requests,), name="hetens-worker-spawner",
                             daemon=True).start()
    future: Future = Future()
    _spawn_requests.put((args, kwargs, future))
    return future.result()


def _spawner(requests: queue.SimpleQueue) -> None:
    while True:
        args, kwargs, future = requests.get()
        try:
            future.set_result(subprocess.Popen(args, **kwargs))
        except BaseException as exc:  # handed to the caller
            future.set_exception(exc)
