"""The conditions of an exploration campaign: temperature, pressure (NPT), steps, seed.

A campaign runs one monitored MD per (structure, condition). Conditions are
a grid (every temperature x pressure x seed, one step count) or a list from
a YAML file (``hetens explore --config``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "condition_grid", "as_number", "conditions_from_list"]


@dataclass(frozen=True)
class Condition:
    """One MD condition.

    Attributes:
        temperature_K: thermostat target and start temperature, K (>= 0).
        pressure_GPa: target pressure, GPa, for an NPT run; ``None``: constant volume.
        steps: MD steps (>= 0).
        seed: seeds the velocities and the thermostat noise.
    """

    temperature_K: float
    pressure_GPa: float | None = None
    steps: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature_K) and self.temperature_K >= 0):
            raise ValueError(f"a condition's temperature must be a number of K >= 0; got {self.temperature_K}")
        if self.pressure_GPa is not None and not math.isfinite(self.pressure_GPa):
            raise ValueError(f"a condition's pressure must be a finite number of GPa; got {self.pressure_GPa}")
        if self.steps < 0:
            raise ValueError(f"a condition's steps must be >= 0; got {self.steps}")

    @property
    def npt(self) -> bool:
        return self.pressure_GPa is not None

    def label(self) -> str:
        """A name usable in a folder name: ``T600K_P2GPa_n200_s0`` (``P-`` for constant volume)."""
        pressure = "P-" if self.pressure_GPa is None else f"P{self.pressure_GPa:g}GPa"
        return f"T{self.temperature_K:g}K_{pressure}_n{self.steps}_s{self.seed}"

    def describe(self) -> str:
        """``T=600K P=2GPa steps=200 seed=0`` (``NVT`` without a pressure)."""
        pressure = "NVT" if self.pressure_GPa is None else f"P={self.pressure_GPa:g}GPa"
        return f"T={self.temperature_K:g}K {pressure} steps={self.steps} seed={self.seed}"

    def as_dict(self) -> dict[str, Any]:
        return {"temperature_K": self.temperature_K, "pressure_GPa": self.pressure_GPa,
                "steps": self.steps, "seed": self.seed}


def as_number(value: Any, what: str, kind: type = float) -> float | int:
    """``value`` as a ``kind`` (float or int), or ValueError ``"{what}: 'abc' is not a number"``."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{what}: {value!r} is not a finite number")
    if kind is int:
        if number != int(number):
            raise ValueError(f"{what}: {value!r} is not a whole number")
        return int(number)
    return number


def condition_grid(temperatures: Iterable[Any], pressures: Iterable[Any] | None = None,
                   steps: Any = 200, seeds: Iterable[Any] = (0,)) -> list[Condition]:
    """Every temperature x pressure x seed, in that order; values are checked to be numbers.

    ``pressures`` ``None`` (or empty): constant-volume runs; a pressure makes
    the run NPT. Raises ValueError naming the option and the value that is not a number.
    """
    temps = [as_number(t, "temperature") for t in temperatures]
    if not temps:
        raise ValueError("give at least one temperature (K)")
    press: list[float | None] = [as_number(p, "pressure") for p in (pressures or [])] or [None]
    seeds = [as_number(s, "seed", int) for s in seeds] or [0]
    n_steps = as_number(steps, "steps", int)
    return [Condition(t, p, n_steps, s) for t in temps for p in press for s in seeds]


def conditions_from_list(items: Sequence[Any], default_steps: int = 200, default_seed: int = 0) -> list[Condition]:
    """Conditions from a list of mappings (a YAML ``conditions:`` list)::

        - {temperature: 300}
        - {temperature: 1200, pressure: 5, steps: 500, seed: 1}

    Raises ValueError naming the item and key that is unknown or not a number.
    """
    out = []
    allowed = {"temperature", "pressure", "steps", "seed"}
    for i, item in enumerate(items):
        where = f"condition {i + 1}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping such as {{temperature: 600}}; got {item!r}")
        unknown = sorted(set(map(str, item)) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
        if "temperature" not in item:
            raise ValueError(f"{where}: give a temperature (K)")
        pressure = item.get("pressure")
        out.append(Condition(
            as_number(item["temperature"], f"{where} temperature"),
            None if pressure is None else as_number(pressure, f"{where} pressure"),
            as_number(item.get("steps", default_steps), f"{where} steps", int),
            as_number(item.get("seed", default_seed), f"{where} seed", int),
        ))
    return out
