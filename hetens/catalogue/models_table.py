"""What ``hetens models`` shows: every known model and whether it can run here now."""

from __future__ import annotations

from dataclasses import dataclass, field

from hetens.families import FAMILIES
from hetens.catalogue.registry import FAMILIES_NOT_INSTALLABLE, KNOWN_MODELS

__all__ = ["ModelRow", "model_rows", "PresetRow", "preset_rows"]


@dataclass(frozen=True)
class ModelRow:
    spec: str
    family: str
    level_of_theory: str
    training_data: str
    heads: str
    weights: str  # shipped / cached / download / family not installed / own environment
    force_rmse: float | None = None  # the paper's OMat24 force RMSE, eV/A (default head)
    unverified: str = ""  # why the name is not checked against the package's own list


def model_rows() -> list[ModelRow]:
    """One row per registry model; ``weights`` says whether it runs offline now.

    Checking availability imports each installed family's package once
    (seconds), but loads no weights.
    """
    rows = []
    status_of = {}
    for model in KNOWN_MODELS:
        family = FAMILIES.get(model.family)
        if family is None:  # a registry row whose family has no adapter (here)
            why = FAMILIES_NOT_INSTALLABLE.get(model.family)
            status = "not installable here" if why else "family has no adapter in this hetens"
        elif not family.installed:
            status = _not_here(family)
        else:
            adapter = status_of.setdefault(model.family, family.adapter())
            status = adapter.weights_status(model.name)
        heads = ", ".join(f"{h}={lvl}" for h, lvl in model.heads.items())
        rows.append(
            ModelRow(model.spec, model.family, model.level_of_theory, model.training_data, heads, status,
                     model.force_rmse, model.unverified)
        )
    return rows


# -- Presets: runnable here now? -------------------------------------------------------------


@dataclass(frozen=True)
class PresetRow:
    """One preset: whether every member runs here now, and each member's
    :class:`~hetens.catalogue.availability.MemberStatus`."""

    name: str
    path: str
    runnable: bool
    members: list = field(default_factory=list)


def preset_rows(weights_in_workers: bool = True) -> list[PresetRow]:
    """Every shipped preset with the status of each member
    (:func:`hetens.catalogue.availability.ensemble_status`; members in other environments are asked
    about their weights there when ``weights_in_workers``)."""
    from hetens.catalogue.availability import ensemble_status
    from hetens.core.ensemble_file import read_ensemble_file
    from hetens.catalogue.presets import preset_names, preset_path

    rows = []
    for name in preset_names():
        entries = read_ensemble_file(preset_path(name))["members"]
        statuses = ensemble_status(entries, weights=True, weights_in_workers=weights_in_workers)
        rows.append(PresetRow(name, str(preset_path(name)), all(s.runnable for s in statuses), statuses))
    return rows
def _not_here(family) -> str:
    """Status of a family whose package this interpreter lacks: where it can run instead."""
    if family.environment != "own":
        return f"not installed ({family.install_hint})"
    from hetens.catalogue.envs import list_environments

    built = [e for e in list_environments() if e.get("family") == family.name]
    if built:
        return f"own environment: @python={built[0]['python']}"
    return f"own environment, not created (hetens env create {family.name} --family {family.name})"
