"""The ensemble's policy, checked in one place before any model loads.

:func:`check_policy` checks ``on_member_error``, ``min_members`` and
``max_energy_deviation``; :func:`check_member_counts` the roles (two members
in U, one predictor). :func:`hetens.core.factory.plan_ensemble` (the CLI and
:func:`hetens.build_ensemble`) and the calculator both call them, so a bad
setting gives the same error whichever way it comes; ``argument_names`` lets
the CLI name its options (``--on-member-error``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hetens.errors import TooFewMembersError

__all__ = ["DEFAULT_MAX_ENERGY_DEVIATION", "DEFAULT_MIN_MEMBERS", "Policy", "check_policy", "check_member_counts"]

#: Largest distance (eV/atom) of a predictor's energy per atom from the
#: predictors' median before the ensemble refuses to average them: models of
#: one functional agree to a few 0.1 eV/atom at worst, while a different energy
#: reference (EMT, another code's zero) is off by several eV/atom.
DEFAULT_MAX_ENERGY_DEVIATION = 1.0

#: Fewest members (predictors and witnesses) in U with ``on_member_error="drop"``: U of one is 0.
DEFAULT_MIN_MEMBERS = 2


@dataclass(frozen=True)
class Policy:
    """What a member failure does and when the energies are refused (see the calculator's arguments)."""

    on_member_error: str = "raise"
    min_members: int = DEFAULT_MIN_MEMBERS
    max_energy_deviation: float = DEFAULT_MAX_ENERGY_DEVIATION


def check_policy(
    on_member_error: str = "raise",
    min_members: int | None = None,
    max_energy_deviation: float | None = None,
    *,
    n_members: int | None = None,
    argument_names: Mapping[str, str] | None = None,
) -> Policy:
    """The :class:`Policy` the settings give, or ``ValueError`` naming the setting and its value.

    ``min_members`` is checked against ``n_members`` when the count is known
    (members given as objects are counted only once loaded); ``None`` settings
    take the defaults.
    """
    name = {"on_member_error": "on_member_error", "min_members": "min_members",
            "max_energy_deviation": "max_energy_deviation", **(argument_names or {})}
    if on_member_error not in ("raise", "drop"):
        raise ValueError(f"{name['on_member_error']} must be 'raise' or 'drop'; got {on_member_error!r}")
    if max_energy_deviation is None:
        max_energy_deviation = DEFAULT_MAX_ENERGY_DEVIATION
    if not (isinstance(max_energy_deviation, (int, float)) and max_energy_deviation > 0):
        raise ValueError(f"{name['max_energy_deviation']} must be a positive number of eV/atom; "
                         f"got {max_energy_deviation!r}")
    if min_members is None:
        min_members = DEFAULT_MIN_MEMBERS
    elif n_members is not None and not 2 <= int(min_members) <= n_members:
        raise ValueError(
            f"{name['min_members']} must be between 2 and the {n_members} members; got {min_members} (it counts "
            "the members in U, predictors and witnesses: U of one member is always 0)"
        )
    return Policy(on_member_error, int(min_members), float(max_energy_deviation))


def check_member_counts(roles: Sequence[str]) -> None:
    """At least two members in U (predictors plus witnesses) and at least one predictor.

    Raises:
        TooFewMembersError: saying how many of each role there are.
    """
    n_predictors = sum(1 for r in roles if r == "predictor")
    n_witnesses = len(roles) - n_predictors
    if len(roles) < 2:
        raise TooFewMembersError(
            f"an ensemble needs at least two members for U (U of one model is always 0); got "
            f"{n_predictors} predictor(s) and {n_witnesses} witness(es): add a member or a witness"
        )
    if n_predictors == 0:
        raise TooFewMembersError(
            f"an ensemble needs at least one predictor; all {n_witnesses} members are witnesses"
        )
