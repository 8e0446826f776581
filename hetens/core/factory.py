"""The ensemble factory: one function from members, weights and options to an ensemble.

:func:`build_ensemble` is what every command that takes members (``hetens
md``, ``relax``, ``single``, ``score``, ``calibrate``) and every Dask worker
(:meth:`hetens.distributed.EnsembleSpec.build`) calls, so an ensemble
described the same way is built the same way everywhere. The members come
from, in this order of precedence:

1. ``ensemble_file``: a TOML ensemble file (members, environments, devices,
   weights; docs/workers.md). Weight, device and parallel arguments given
   here replace the file's.
2. ``models`` (and ``witnesses``): member specs (``"sevenn:7net-0"``),
   :class:`~hetens.Member` objects or ASE calculators.
3. ``weights_file`` (from ``hetens calibrate``): the members it names, with
   their roles.
4. Otherwise the default offline ensemble,
   :data:`hetens.core.ensemble.DEFAULT_MEMBERS` as predictors and
   :data:`~hetens.core.ensemble.DEFAULT_WITNESSES` as witnesses.

:func:`plan_ensemble` does every check that needs no model (specs parse,
weight counts, the member-error policy, the weights file), so a caller can
refuse bad options before anything loads; :func:`build_ensemble` is
``plan_ensemble(...).build()``.

:data:`QUIET_WARNINGS` are the upstream warnings that say nothing actionable
to a user; the CLI and the cluster workers ignore them
(:func:`quiet_upstream_warnings`).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "QUIET_WARNINGS",
    "EnsemblePlan",
    "build_ensemble",
    "ignore_upstream_warnings",
    "plan_ensemble",
    "quiet_upstream_warnings",
]

#: Upstream warnings that say nothing actionable to a user (message prefixes, as for
#: ``warnings.filterwarnings(message=...)``); the adapters silence them too, around their own calls.
QUIET_WARNINGS: tuple[str, ...] = (
    "Converting a tensor with requires_grad=True to a scalar",  # chgnet, every structure
    "The TorchScript type system",  # e3nn via sevenn, at load
    "No tensor product accelerator",  # sevenn on CPU
)

#: How :func:`plan_ensemble` names its arguments in error messages, unless told otherwise.
_ARGUMENT_NAMES = {
    "models": "models",
    "witnesses": "witnesses",
    "weights": "weights",
    "force_rmse": "force_rmse",
    "weights_file": "weights_file",
    "ensemble_file": "ensemble_file",
    "on_member_error": "on_member_error",
    "min_members": "min_members",
    "max_energy_deviation": "max_energy_deviation",
}


@contextlib.contextmanager
def quiet_upstream_warnings() -> Iterator[None]:
    """Ignore :data:`QUIET_WARNINGS` inside the block; the caller's filters are restored after."""
    with warnings.catch_warnings():
        ignore_upstream_warnings()
        yield


def ignore_upstream_warnings() -> None:
    """Ignore :data:`QUIET_WARNINGS` from now on in this process (a worker process's setting)."""
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


@dataclass(frozen=True)
class EnsemblePlan:
    """An ensemble checked but not loaded: what :meth:`build` will build.

    Attributes:
        predictors: member specs (or objects) whose mean is returned;
            empty with an ensemble file.
        witnesses: members whose forces enter U only (docs/witnesses.md).
        weights: (M,) raw weights, name -> weight (a weights file), or ``None``.
        force_rmse: (M,) force RMSEs in eV/Å (inverse-RMSE weights), or ``None``.
        ensemble_file: the TOML ensemble file, or ``None``.
        device, parallel, allow_mixed_reference: as for the calculator; with an
            ensemble file, a device other than ``"auto"`` and ``True`` replace the file's.
        options: further calculator arguments (``on_member_error``,
            ``min_members``, ``max_energy_deviation``, ``lazy``...).
    """

    predictors: tuple[Any, ...]
    witnesses: tuple[Any, ...]
    weights: Sequence[float] | Mapping[str, float] | None = None
    force_rmse: Sequence[float] | None = None
    ensemble_file: str | None = None
    device: str = "auto"
    parallel: bool = False
    allow_mixed_reference: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def members(self) -> list[Any]:
        """Predictors then witnesses, in the order the calculator lists them."""
        return [*self.predictors, *self.witnesses]

    def build(self):
        """Load the members: a :class:`~hetens.HeterogeneousEnsembleCalculator` (close it, or use
        it in a ``with`` block, to stop worker processes)."""
        if self.ensemble_file is not None:
            from hetens.core.ensemble_file import load_ensemble_file

            overrides: dict[str, Any] = dict(self.options)
            if self.weights is not None or self.force_rmse is not None:
                overrides["weights"], overrides["force_rmse"] = self.weights, self.force_rmse
            if self.device != "auto":
                overrides["device"] = self.device
            if self.parallel:
                overrides["parallel"] = True
            if self.allow_mixed_reference:
                overrides["allow_mixed_reference"] = True
            return load_ensemble_file(self.ensemble_file, **overrides)
        from hetens.core.calculator import HeterogeneousEnsembleCalculator

        return HeterogeneousEnsembleCalculator(
            list(self.predictors),
            weights=self.weights,
            witnesses=list(self.witnesses),
            force_rmse=self.force_rmse,
            allow_mixed_reference=self.allow_mixed_reference,
            device=self.device,
            parallel=self.parallel,
            **self.options,
        )


def plan_ensemble(
    models: Sequence[Any] | None = None,
    *,
    argument_names: Mapping[str, str] | None = None,
    **options: Any,
) -> EnsemblePlan:
    """Check the arguments of :func:`build_ensemble` and resolve its members, loading nothing.

    Args:
        models, **options: the arguments of :func:`build_ensemble` (its one
            signature: defaults and unknown names are its).
        argument_names: how error messages name the arguments (the CLI passes
            its option names: ``{"weights": "--weights", ...}``).

    Raises:
        ValueError: a spec that does not parse, weights that do not fit the
            members (count, sign, finiteness), two sources of weights or of
            members, ``min_members`` without ``on_member_error="drop"``, a
            non-positive ``max_energy_deviation``, a bad weights file.
        TooFewMembersError: fewer than two members in U, or no predictor.
    """
    from hetens.catalogue.spec import MemberSpec, as_spec
    from hetens.core.calculator import declared_role
    from hetens.core.policy import check_member_counts, check_policy
    from hetens.core.weights import read_weights_file, read_weights_roles, resolve_weights

    bound = inspect.signature(build_ensemble).bind(models, **options)
    bound.apply_defaults()
    given = bound.arguments
    models, witnesses, ensemble_file = given["models"], given["witnesses"], given["ensemble_file"]
    weights, force_rmse, weights_file = given["weights"], given["force_rmse"], given["weights_file"]
    on_member_error, min_members = given["on_member_error"], given["min_members"]
    max_energy_deviation = given["max_energy_deviation"]
    options = dict(given["calculator_options"])  # passed on to the calculator
    name = {**_ARGUMENT_NAMES, **(argument_names or {})}
    check_policy(on_member_error, min_members, max_energy_deviation, argument_names=name)
    if min_members is not None:
        if on_member_error != "drop":
            raise ValueError(f"{name['min_members']} applies with {name['on_member_error']} drop")
        options["min_members"] = min_members
    if on_member_error != "raise":
        options["on_member_error"] = on_member_error
    if max_energy_deviation is not None:
        options["max_energy_deviation"] = max_energy_deviation
    sources = [name[k] for k, v in (("weights", weights), ("force_rmse", force_rmse),
                                    ("weights_file", weights_file)) if v is not None]
    if len(sources) > 1:
        raise ValueError(f"give the weights one way: {' or '.join(sources)}, not {len(sources)} of them")
    # Each spec is parsed once, here; the plan carries the parsed MemberSpec to the calculator.
    models = [as_spec(m) for m in models] if models else []
    witnesses = None if witnesses is None else [as_spec(m) for m in witnesses]
    table = read_weights_file(weights_file) if weights_file is not None else None
    shared = dict(device=given["device"], parallel=bool(given["parallel"]),
                  allow_mixed_reference=bool(given["allow_mixed_reference"]), options=options)

    if ensemble_file is not None:
        if models or witnesses:
            raise ValueError(
                f"give the members either with {name['models']} or with {name['ensemble_file']}, not both "
                f"(nor {name['witnesses']}: mark witnesses in the file with role = \"witness\")"
            )
        return EnsemblePlan((), (), weights=table if table is not None else weights, force_rmse=force_rmse,
                            ensemble_file=str(ensemble_file), **shared)

    if models:
        predictors, witnessing = models, list(witnesses or ())
    elif table is not None:
        # A weights file names its members (and their roles): they are the ensemble.
        if witnesses:
            raise ValueError(
                f"{name['weights_file']} {weights_file} names the members (and marks its witnesses); "
                f"to choose them, give {name['models']} (and {name['witnesses']}) too"
            )
        roles = read_weights_roles(weights_file)
        predictors = [as_spec(n) for n in table if roles.get(n, "predictor") == "predictor"]
        witnessing = [as_spec(n) for n in table if roles.get(n) == "witness"]
    else:
        from hetens.core.ensemble import DEFAULT_MEMBERS, DEFAULT_WITNESSES

        predictors = [as_spec(m) for m in DEFAULT_MEMBERS]
        witnessing = [as_spec(m) for m in DEFAULT_WITNESSES] if witnesses is None else witnesses
    check_member_counts([declared_role(m) for m in predictors] + ["witness"] * len(witnessing))

    everyone = [*predictors, *witnessing]
    for key, values in (("weights", weights), ("force_rmse", force_rmse)):
        if values is None or isinstance(values, Mapping):
            continue
        values = list(values)
        if len(values) != len(everyone):
            given_by = f"{name['models']} names" if models else "the default ensemble has"
            listing = " ".join(str(m) if isinstance(m, (str, MemberSpec)) else type(m).__name__ for m in everyone)
            raise ValueError(
                f"{name[key]} has {len(values)} value{'s' if len(values) != 1 else ''} but {given_by} "
                f"{len(everyone)} members ({listing}); give one per member, in that order"
            )
        resolve_weights(len(everyone), values if key == "weights" else None,
                        values if key == "force_rmse" else None)
    return EnsemblePlan(tuple(predictors), tuple(witnessing), weights=table if table is not None else weights,
                        force_rmse=force_rmse, **shared)


def build_ensemble(
    models: Sequence[Any] | None = None,
    *,
    witnesses: Sequence[Any] | None = None,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    force_rmse: Sequence[float] | None = None,
    weights_file: str | os.PathLike | None = None,
    ensemble_file: str | os.PathLike | None = None,
    device: str = "auto",
    parallel: bool = False,
    allow_mixed_reference: bool = False,
    max_energy_deviation: float | None = None,
    on_member_error: str = "raise",
    min_members: int | None = None,
    **calculator_options: Any,
):
    """Build a :class:`~hetens.HeterogeneousEnsembleCalculator` from members, weights and options.

    Every argument is optional: ``build_ensemble()`` is the default offline
    ensemble. Everything that needs no model is checked first
    (:func:`plan_ensemble`), so wrong arguments fail before anything loads.

    Args:
        models: member specs (``"sevenn:7net-0"``, ``"chgnet:0.3.0@role=witness"``),
            :class:`~hetens.Member` objects or ASE calculators; ``None`` or
            empty: the members of ``weights_file``, else the default ensemble.
        witnesses: members whose forces enter U only (docs/witnesses.md);
            ``None``: the default witnesses with the default ensemble, else none.
        weights: (M,) raw weights, one per member (predictors, then
            witnesses), or name -> weight; uniform when omitted.
        force_rmse: (M,) member force RMSEs in eV/Å: the paper's inverse-RMSE weights.
        weights_file: a JSON weights file written by ``hetens calibrate``
            (:func:`hetens.read_weights_file`); without ``models`` it also
            names the members and their roles.
        ensemble_file: a TOML ensemble file (docs/workers.md), instead of
            ``models``; ``weights``/``force_rmse``/``weights_file``,
            ``device`` (other than ``"auto"``), ``parallel=True`` and
            ``allow_mixed_reference=True`` replace the file's settings.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda[:N]"``.
        parallel: evaluate members concurrently, each in a worker process.
        allow_mixed_reference: allow predictors of different levels of theory
            or energy references to be averaged.
        max_energy_deviation: eV/atom; ``None``: the calculator's default (1 eV/atom).
        on_member_error: ``"raise"`` (default) or ``"drop"`` (a failing member
            is left out of that structure, weights renormalised).
        min_members: with ``"drop"``, the fewest members of U to carry on with.
        **calculator_options: other calculator arguments (``lazy``,
            ``min_distance``) and ``argument_names`` (see :func:`plan_ensemble`).

    Returns:
        The calculator; close it (or use it in a ``with`` block) to stop its
        worker processes.
    """
    arguments = dict(locals())  # the parameters above: plan_ensemble takes this one signature
    more = arguments.pop("calculator_options")
    return plan_ensemble(**arguments, **more).build()
