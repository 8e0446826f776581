"""Activation checkpointing, as the adapters that have it use it (SevenNet, DIEP, CHGNet).

Forces are the gradient of the energy, so a model keeps every interaction
block's intermediate tensors (per-edge and per-triplet messages) for the
backward pass: most of a member's memory on a large structure. Run under
:func:`checkpointed`, a block keeps only its inputs; its intermediates are
recomputed, one block at a time, when the backward pass reaches it. The same
operations run on the same inputs, so the results are bit-identical (the
tests compare them), for one more forward pass of the blocks.

A member opts in with ``@checkpoint=on|off|N`` (N: from N atoms on); its
calculator then has ``checkpoint_min_atoms``, which the memory guard
(:mod:`hetens.core.memory_guard`) also sets when a structure fits only with
checkpointing. Off by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["CHECKPOINT_MIN_ATOMS", "NEVER", "checkpoint_setting", "uses_checkpoint", "checkpointed",
           "forward_replaced"]

#: Structures of at least this many atoms are checkpointed unless the member says otherwise:
#: none (off by default; the memory guard turns it on for a structure that needs it).
CHECKPOINT_MIN_ATOMS = 10**9
#: The setting of ``@checkpoint=off``: never, not even when the memory guard would turn it on.
NEVER = 10**12


def checkpoint_setting(options: dict[str, str], family: str) -> int | None:
    """The atoms from which a member checkpoints, from its ``checkpoint`` option (removed from
    ``options``): ``on`` 0, ``off`` :data:`NEVER`, ``N`` N; ``None`` when not given."""
    value = options.pop("checkpoint", None)
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return 0
    if text in ("off", "false", "0", "no"):
        return NEVER
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{family} option checkpoint must be on, off or a number of atoms; got {value!r}") from None


def uses_checkpoint(holder, n_atoms: int) -> bool:
    """Whether ``holder`` (a calculator or model with ``checkpoint_min_atoms``) checkpoints ``n_atoms``."""
    return n_atoms >= getattr(holder, "checkpoint_min_atoms", CHECKPOINT_MIN_ATOMS)


def checkpointed(function, *args, **kwargs):
    """``function(*args, **kwargs)``, its intermediate tensors recomputed in the backward pass instead of kept.

    torch's non-reentrant checkpoint (tensors the function reads from elsewhere, a
    graph's positions for instance, get their gradients too), without early stop:
    early stop ends a recomputation by raising an exception, which e3nn's and
    torch_geometric's TorchScript code turns into an empty RuntimeError.
    """
    from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

    with set_checkpoint_early_stop(False):
        return checkpoint(function, *args, use_reentrant=False, **kwargs)


@contextlib.contextmanager
def forward_replaced(module, forward) -> Iterator[None]:
    """``module(...)`` calls ``forward(...)`` for the block's duration (an instance attribute
    over the class's method, removed afterwards)."""
    module.forward = forward
    try:
        yield
    finally:
        del module.forward
