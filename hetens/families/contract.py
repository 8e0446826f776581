"""What a family adapter module provides: the contract, as :class:`typing.Protocol` classes.

An adapter is a module (``hetens/families/<family>.py``) whose module-level
functions implement :class:`FamilyAdapter`; a module matches a protocol by
its functions (PEP 544), and :func:`check_adapter` checks it at run time.
Two optional capabilities are protocols of their own, found with
``isinstance``:

- :class:`BatchedEvaluation`: one member on many structures in one model
  call (SevenNet, CHGNet); :mod:`hetens.rescore.batched` drives it.
- :class:`GroupEvaluation`: several members of one family on one structure
  from one prepared input (CHGNet models sharing a crystal graph, the heads
  of one SevenNet model in one pass). Reserved: declared here, not
  implemented by any adapter yet; :func:`hetens.core.pool.evaluate_members`
  marks where the calculator will call it.

Every function gets and returns plain values (model names, ASE calculators,
``Atoms``, numpy arrays); none decides policy (weights, level-of-theory
checks and the error policy live in :mod:`hetens.core.member` and
:mod:`hetens.core.calculator`). Raw outputs are checked by the caller with
:func:`hetens.core.evaluation.checked_outputs`, exactly like a single evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

__all__ = ["FamilyAdapter", "BatchedEvaluation", "GroupEvaluation", "RawOutput", "check_adapter"]

#: One structure's raw model output, before checking: energy (eV, scalar),
#: forces (N, 3) eV/Å, stress (6,) Voigt or (3, 3) eV/Å³ (or ``None``);
#: any float dtype, any array type numpy can read.
RawOutput = tuple[Any, Any, Any]


@runtime_checkable
class FamilyAdapter(Protocol):
    """The functions every adapter module defines."""

    def load(self, model: str, *, head: str | None, device: str, options: dict[str, str]) -> Any:
        """The family's ASE calculator for ``model`` (registry name or local path), through the
        family's official loader, on ``device`` (``"cpu"``, ``"cuda"``...).

        ``head`` selects a head, modal or task (``None``: the model's default);
        ``options`` are the spec's remaining ``KEY=VALUE`` options (unknown ones
        are an error naming the accepted ones). Process-wide side effects of the
        upstream package (default dtype, RNG state, environment variables, class
        attributes, output on stdout) are contained here and undone.

        Raises:
            UnknownModelError: an unknown head or name. WeightsUnavailableError:
            weights neither here nor downloadable now. ValueError: bad options.
        """

    def weights_status(self, model: str) -> str:
        """Where the weights of ``model`` are: ``"shipped"`` (in the wheel), ``"cached"``,
        ``"local file"``, ``"download"`` or ``"missing"``; loads no weights."""

    def versions(self) -> dict[str, str]:
        """Package name -> installed version, for provenance (``{"sevenn": "0.13.0", "torch": ...}``)."""

    def elements(self, calculator: Any) -> frozenset[int] | None:
        """Atomic numbers the loaded model was trained on; ``None`` when the model does not say
        (then no element is refused before a calculation)."""


@runtime_checkable
class BatchedEvaluation(Protocol):
    """Optional: evaluate one member on many structures in one model call."""

    def batchable(self, calculator: Any) -> bool:
        """Whether :meth:`evaluate_batch` computes what ``calculator`` computes, to the
        model's float rounding (the package's own calculator or the one
        :meth:`~FamilyAdapter.load` makes; not a user's subclass, not a worker).
        Must not import the model package."""

    def evaluate_batch(self, calculator: Any, frames: Sequence[Any]) -> list[RawOutput]:
        """``calculator``'s model on every ``Atoms`` of ``frames`` (not modified) in one call.

        Mirrors what the package's ASE calculator does for one structure
        (units, signs, Voigt order); returns one :data:`RawOutput` per frame, in
        order, stress always computed. Any exception makes the caller re-run the
        frames one by one, so the error names the structure that caused it.
        """


@runtime_checkable
class GroupEvaluation(Protocol):
    """Optional: several members of one family (or one member) on one structure, one prepared input."""

    def evaluate_group(
        self, calculators: Sequence[Any], atoms: Any, with_stress: bool
    ) -> list[RawOutput] | None:
        """Every calculator of ``calculators`` (members of this family, all in this process)
        on ``atoms`` (not modified), preparing the input once (a crystal graph, a
        neighbour list) or running several heads in one pass.

        Returns one :data:`RawOutput` per calculator, in order (stress ``None``
        unless ``with_stress``), or ``None`` when these calculators cannot share
        an input (different cutoffs, say): the caller then evaluates them one
        by one. Results must equal the one-by-one results: bit for bit where only
        the preparation is shared and each model's own operations run
        unchanged, otherwise to the model's float rounding; the adapter's
        docstring says which.
        """


def check_adapter(module: ModuleType) -> ModuleType:
    """``module`` itself when it defines every :class:`FamilyAdapter` function; else a TypeError
    naming the missing ones."""
    required = ("load", "weights_status", "versions", "elements")
    missing = [name for name in required if not callable(getattr(module, name, None))]
    if missing:
        raise TypeError(
            f"family adapter {module.__name__} lacks {', '.join(missing)} (see hetens.families.contract)"
        )
    return module
