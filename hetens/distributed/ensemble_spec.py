"""What a Dask worker needs to build the ensemble itself: specs and options, never a model."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EnsembleSpec"]


@dataclass(frozen=True)
class EnsembleSpec:
    """How to build a :class:`~hetens.HeterogeneousEnsembleCalculator`, as the CLI options say.

    The fields are the arguments of :func:`hetens.build_ensemble` (the
    function the CLI's ensemble options map onto), and :meth:`build` calls
    it, so a worker builds the ensemble a local run would build. Paths are
    absolute (workers may run in another folder).

    Attributes:
        models: member specs (``sevenn:7net-0``...); ``None``: the default
            offline ensemble (or the members a weights file names).
        weights: (M,) weights or name -> weight; ``None`` for uniform.
        force_rmse: (M,) member force RMSEs, eV/Å (inverse-RMSE weights).
        weights_file: a JSON file written by ``hetens calibrate``.
        ensemble_file: a TOML ensemble file (docs/workers.md), instead of ``models``.
        device: ``auto``, ``cpu``, ``cuda``; on a worker with several GPUs,
            ``auto``/``cuda`` become one GPU per worker (see
            :func:`hetens.distributed.tasks.worker_device`).
        witnesses: witness specs (forces in U only; docs/witnesses.md);
            ``None``: the default witnesses when ``models`` is ``None``, else none.
        allow_mixed_reference, parallel, on_member_error, min_members,
            max_energy_deviation: as for the calculator.
        exact_weights: (M,) normalised weights to set after building, bit for
            bit (from :meth:`from_calculator`: normalising normalised weights
            again may change the last bit).
        exact_combine_weights: (M,) with witnesses, the calculator's
            ``combine_weights`` to set after building, bit for bit.
    """

    models: tuple[str, ...] | None = None
    weights: tuple[float, ...] | Mapping[str, float] | None = None
    force_rmse: tuple[float, ...] | None = None
    weights_file: str | None = None
    ensemble_file: str | None = None
    device: str = "auto"
    allow_mixed_reference: bool = False
    parallel: bool = False
    exact_weights: tuple[float, ...] | None = None
    on_member_error: str = "raise"
    min_members: int | None = None
    witnesses: tuple[str, ...] | None = None
    max_energy_deviation: float | None = None
    exact_combine_weights: tuple[float, ...] | None = None

    @classmethod
    def from_options(cls, **options: Any) -> EnsembleSpec:
        """The spec of the ensemble :func:`hetens.build_ensemble` builds from ``options`` (its keyword
        arguments: ``models``, ``weights``, ``weights_file``...; members as specs), paths made absolute."""
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"EnsembleSpec.from_options got unknown option(s) {', '.join(unknown)}")

        def frozen(value):
            return tuple(value) if value is not None and not isinstance(value, Mapping) else value

        values = dict(options)
        for key in ("models", "weights", "force_rmse"):
            if key in values:
                values[key] = frozen(values[key]) or None  # empty: the default members / weights
        if values.get("witnesses") is not None:
            values["witnesses"] = tuple(values["witnesses"])
        for key in ("weights_file", "ensemble_file"):
            if key in values:
                values[key] = _absolute(values[key])
        return cls(**values)

    @classmethod
    def from_calculator(cls, calc, device: str = "auto") -> EnsembleSpec:
        """The specs and exact weights of a built ensemble (every member must come from a spec).

        Raises:
            ValueError: a member is a plain ASE calculator (a worker cannot rebuild it).
        """
        missing = [m.name for m in calc.members if not m.spec]
        if missing:
            raise ValueError(
                f"member(s) {', '.join(missing)} were given as calculator objects; a cluster run "
                "builds members on the workers from their specs (e.g. 'sevenn:7net-0'): give specs"
            )
        weights = tuple(float(w) for w in calc.weights)
        # Roles travel inside the specs, so the members keep their order.
        models = tuple(
            m.spec if m.role == "predictor" or "@role=" in m.spec else f"{m.spec}@role=witness"
            for m in calc.members
        )
        witnessed = any(m.role == "witness" for m in calc.members)
        return cls(
            models=models,
            witnesses=(),
            exact_combine_weights=tuple(float(w) for w in calc.combine_weights) if witnessed else None,
            max_energy_deviation=calc.max_energy_deviation,
            weights=weights,
            device=device,
            allow_mixed_reference=bool(calc.allow_mixed_reference),
            exact_weights=weights,
            on_member_error=calc.on_member_error,
            min_members=calc.min_members if calc.on_member_error == "drop" else None,
        )

    @classmethod
    def of(cls, ensemble: Any) -> EnsembleSpec:
        """An :class:`EnsembleSpec` from one, a calculator, a list of specs or ``None`` (the default)."""
        if ensemble is None:
            return cls()
        if isinstance(ensemble, EnsembleSpec):
            return ensemble
        if isinstance(ensemble, str):
            return cls(models=(ensemble,))
        if isinstance(ensemble, Sequence):
            return cls(models=tuple(str(s) for s in ensemble))
        if hasattr(ensemble, "members") and hasattr(ensemble, "weights"):
            return cls.from_calculator(ensemble)
        raise TypeError(
            f"ensemble must be an EnsembleSpec, a HeterogeneousEnsembleCalculator or member specs; "
            f"got {type(ensemble).__name__}"
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready description, with size and mtime of the files it reads (for the run id)."""
        out = dataclasses.asdict(self)
        if isinstance(self.weights, Mapping):
            out["weights"] = dict(self.weights)
        for key in ("weights_file", "ensemble_file"):
            path = getattr(self, key)
            if path is not None:
                stat = os.stat(path)
                out[f"{key}_stat"] = [stat.st_size, stat.st_mtime_ns]
        return out

    def key(self) -> str:
        """A string identifying this spec (the worker's cache key)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)

    def build(self, device: str | None = None):
        """Load the ensemble (on the worker) with :func:`hetens.build_ensemble`, on ``device`` if
        given, else ``self.device``."""
        from hetens.core.factory import build_ensemble

        calc = build_ensemble(
            list(self.models) if self.models else None,
            witnesses=list(self.witnesses) if self.witnesses is not None else None,
            weights=dict(self.weights) if isinstance(self.weights, Mapping)
            else (list(self.weights) if self.weights else None),
            force_rmse=list(self.force_rmse) if self.force_rmse else None,
            weights_file=self.weights_file,
            ensemble_file=self.ensemble_file,
            device=device or self.device,
            allow_mixed_reference=self.allow_mixed_reference,
            parallel=self.parallel,
            on_member_error=self.on_member_error,
            min_members=self.min_members,
            max_energy_deviation=self.max_energy_deviation,
        )
        if self.exact_weights is not None:
            import numpy as np

            if len(self.exact_weights) != len(calc.members):
                raise ValueError(
                    f"{len(self.exact_weights)} weights for {len(calc.members)} members built from the specs"
                )
            calc.weights = np.array(self.exact_weights, dtype=float)
            if self.exact_combine_weights is not None and calc.has_witnesses:
                calc.combine_weights = np.array(self.exact_combine_weights, dtype=float)
        return calc


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())
