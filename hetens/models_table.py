"""What ``hetens models`` shows: every known model and whether it can run here now."""

from __future__ import annotations

from dataclasses import dataclass

from hetens.families import FAMILIES
from hetens.registry import KNOWN_MODELS

__all__ = ["ModelRow", "model_rows"]


@dataclass(frozen=True)
class ModelRow:
    spec: str
    family: str
    level_of_theory: str
    training_data: str
    heads: str
    weights: str  # shipped / cached / download / family not installed / own environment


def model_rows() -> list[ModelRow]:
    """One row per registry model; ``weights`` says whether it runs offline now.

    Checking availability imports each installed family's package once
    (seconds), but loads no weights.
    """
    rows = []
    status_of = {}
    for model in KNOWN_MODELS:
        family = FAMILIES[model.family]
        if not family.installed:
            status = _not_here(family)
        else:
            adapter = status_of.setdefault(model.family, family.adapter())
            status = adapter.weights_status(model.name)
        heads = ", ".join(f"{h}={lvl}" for h, lvl in model.heads.items())
        rows.append(
            ModelRow(model.spec, model.family, model.level_of_theory, model.training_data, heads, status)
        )
    return rows


def _not_here(family) -> str:
    """Status of a family whose package this interpreter lacks: where it can run instead."""
    if family.environment != "own":
        return f"not installed ({family.install_hint})"
    from hetens.envs import list_environments

    built = [e for e in list_environments() if e.get("family") == family.name]
    if built:
        return f"own environment: @python={built[0]['python']}"
    return f"own environment, not created (hetens env create {family.name}-env --family {family.name})"
