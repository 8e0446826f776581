"""Members in their own processes and Python environments, evaluated concurrently.

The uMLIP packages do not install together (MACE pins e3nn 0.4.4, GRACE
needs TensorFlow...) and they interfere inside one process (MACE changes
torch's default dtype). A member can therefore run in a long-lived worker
process under the interpreter of its own environment::

    member = hetens.load_member("chgnet:0.3.0", python="/envs/chgnet/bin/python")
    # or, in any spec (CLI --models, ensemble files): "chgnet:0.3.0@python=/envs/chgnet/bin/python"

The member environment needs numpy, ase, the family's package and hetens
installed without dependencies (``pip install --no-deps hetens``;
``hetens env create`` builds such an environment). Modules:

- :mod:`~hetens.workers.protocol`: length-prefixed frames, arrays as raw bytes;
- :mod:`~hetens.workers.worker_main`: the program run in the member environment;
- :mod:`~hetens.workers.client`: :class:`WorkerProcess` (start, timeouts, stderr, cleanup);
- :mod:`~hetens.workers.isolated`: :class:`IsolatedCalculator`, the member's ASE calculator;

Running an ensemble's workers together (threads, concurrent start-up and
evaluation) is the core's job: :mod:`hetens.core.pool`. See docs/workers.md. The two names below are imported on first use, so the
worker program (which runs in every member environment) does not load the
parent-side client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hetens._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, __file__)

if TYPE_CHECKING:  # pragma: no cover  (the export table: see hetens._lazy.lazy_exports)
    from hetens.workers.client import WorkerProcess
    from hetens.workers.isolated import IsolatedCalculator
