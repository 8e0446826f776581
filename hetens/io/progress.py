"""The progress reporter of long runs: scoring, writing, cluster chunks, MD steps.

One class for all of them: a tqdm bar on a terminal (``bar``), a line on
stderr every ``interval`` seconds otherwise (``log``, what a batch job's log
file wants), or nothing (``off``); ``auto`` picks ``bar`` when stderr is a
terminal. tqdm is imported only for a bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

__all__ = ["Progress", "PROGRESS_MODES"]

#: What ``--progress`` accepts.
PROGRESS_MODES = ("auto", "bar", "log", "off")


class Progress:
    """Count work done and show it.

    Args:
        total: units planned, or ``None`` when unknown.
        mode: ``auto``, ``bar``, ``log`` or ``off``.
        unit: what is counted (``frame``, ``chunk``, ``step``).
        label: the bar's description and the start of each log line.
        initial: units already done before this run (resumed chunks).
        interval: seconds between log lines.
        every: log every ``every`` units (and at the last) instead of by time.
        line: makes a log line from this reporter (default: label, count,
            rate and elapsed time).
        stream: where log lines go (default stderr; a bar is always on stderr).

    Raises:
        ValueError: an unknown ``mode``.
    """

    def __init__(
        self,
        total: int | None,
        mode: str = "auto",
        *,
        unit: str = "frame",
        label: str = "scoring",
        initial: int = 0,
        interval: float = 30.0,
        every: int | None = None,
        line: Callable[[Progress], str] | None = None,
        stream: IO[str] | None = None,
    ):
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress must be auto, bar, log or off; got {mode!r}")
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode, self.total, self.unit, self.label = mode, total, unit, label
        self.interval, self.every, self.line, self.stream = interval, every, line, stream
        self.initial = self.count = int(initial)
        self.logged = False
        self.start = self.last = time.perf_counter()
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=initial, unit=unit, desc=label or None, file=sys.stderr, dynamic_ncols=True
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def elapsed(self) -> float:
        """Seconds since this reporter started."""
        return time.perf_counter() - self.start

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        """``n`` more units done; ``postfix`` (e.g. the current U) is shown after the bar."""
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix is not None:
                self.bar.set_postfix_str(postfix, refresh=False)
        elif self.mode == "log":
            if self.every is not None:
                if self.count % self.every == 0 or self.count == self.total:
                    self._log()
            elif time.perf_counter() - self.last >= self.interval:
                self.last = time.perf_counter()
                self._log()

    def _log(self) -> None:
        self.logged = True
        print(self.line(self) if self.line is not None else self.default_line(), file=self.stream or sys.stderr,
              flush=True)

    def default_line(self) -> str:
        """``hetens: LABEL 120/400 frames, 3.10 frames/s, 39 s``."""
        elapsed = self.elapsed
        of = f"/{self.total}" if self.total else ""
        rate = (self.count - self.initial) / elapsed if elapsed > 0 else 0.0
        return f"hetens: {self.label} {self.count}{of} {self.unit}s, {rate:.2f} {self.unit}s/s, {elapsed:.0f} s"

    def close(self) -> None:
        """Close the bar; in ``log`` mode (by time), a closing line if the run was long enough to log at all."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "log" and self.logged and self.every is None:
            self._log()
            self.logged = False
