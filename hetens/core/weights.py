"""Member weights: uniform, explicit, or the paper's inverse force RMSE.

Pure functions on arrays. Every function returns a float64 array of shape
(M,) that is non-negative and sums to 1, or raises ``ValueError`` saying
which value was wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "normalise_weights",
    "inverse_rmse_weights",
    "resolve_weights",
    "raw_weights",
    "read_weights_file",
    "read_weights_roles",
]


def _as_vector(values, n_members: int | None, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers; got {values!r}") from exc
    if array.ndim != 1:
        raise ValueError(f"{what} must be a flat list, one value per member; got shape {array.shape}")
    if n_members is not None and array.shape[0] != n_members:
        raise ValueError(
            f"{what} has {array.shape[0]} values but the ensemble has {n_members} members"
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{what} must be finite; member {int(bad[0])} has {array[bad[0]]}")
    return array


def normalise_weights(weights, n_members: int) -> np.ndarray:
    """Normalise weights to sum 1.

    Args:
        weights: (M,) non-negative, finite, not all zero; ``None`` for uniform.
        n_members: M, the number of members the weights must match.

    Returns:
        (M,) float64 weights summing to 1.
    """
    if n_members < 1:
        raise ValueError(f"an ensemble needs at least one member; got {n_members}")
    if weights is None:
        return np.full(n_members, 1.0 / n_members)
    w = _as_vector(weights, n_members, "weights")
    negative = np.flatnonzero(w < 0)
    if negative.size:
        raise ValueError(f"weights must be >= 0; member {int(negative[0])} has {w[negative[0]]}")
    total = w.sum()
    if total <= 0:
        raise ValueError("weights are all zero; at least one member needs a positive weight")
    return w / total


def inverse_rmse_weights(force_rmse) -> np.ndarray:
    """The paper's weights ``w[m] = (1/RMSE_F[m]) / sum_k (1/RMSE_F[k])``.

    Args:
        force_rmse: (M,) force RMSE of each member against DFT on a reference
            set, in eV/Å; strictly positive and finite.

    Returns:
        (M,) weights summing to 1.
    """
    rmse = _as_vector(force_rmse, None, "force_rmse")
    if rmse.size == 0:
        raise ValueError("force_rmse is empty; give one RMSE per member")
    bad = np.flatnonzero(rmse <= 0)
    if bad.size:
        raise ValueError(
            f"force_rmse must be > 0 eV/A; member {int(bad[0])} has {rmse[bad[0]]}"
        )
    inverse = 1.0 / rmse
    return inverse / inverse.sum()


def resolve_weights(
    n_members: int,
    weights: Sequence[float] | None = None,
    force_rmse: Sequence[float] | None = None,
) -> np.ndarray:
    """Pick and normalise weights from at most one of ``weights`` and ``force_rmse``.

    Returns:
        (M,) weights summing to 1; uniform when neither is given.
    """
    if weights is not None and force_rmse is not None:
        raise ValueError("give either weights or force_rmse, not both")
    if force_rmse is not None:
        w = inverse_rmse_weights(force_rmse)
        if w.shape[0] != n_members:
            raise ValueError(
                f"force_rmse has {w.shape[0]} values but the ensemble has {n_members} members"
            )
        return w
    return normalise_weights(weights, n_members)


def raw_weights(
    n_members: int,
    weights: Sequence[float] | None = None,
    force_rmse: Sequence[float] | None = None,
) -> np.ndarray:
    """The un-normalised weights behind :func:`resolve_weights`: ``weights`` as given,
    ``1 / force_rmse``, or ones. Checked as :func:`resolve_weights` checks them.

    An ensemble with witnesses normalises these twice over (see
    docs/witnesses.md): over every member for U, over the predictors for the
    returned energy, forces and stress.

    Returns:
        (M,) non-negative weights, not all zero.
    """
    resolve_weights(n_members, weights, force_rmse)  # the same checks and messages
    if force_rmse is not None:
        return 1.0 / _as_vector(force_rmse, n_members, "force_rmse")
    if weights is None:
        return np.ones(n_members)
    return _as_vector(weights, n_members, "weights")


def read_weights_file(path: str | os.PathLike) -> dict[str, float]:
    """Read a weights file written by ``hetens calibrate`` (or by hand).

    The file is JSON with a ``"weights"`` object mapping member name to
    weight, e.g. ``{"weights": {"sevenn:7net-0": 0.6, "chgnet:0.3.0": 0.4}}``,
    and optionally a ``"roles"`` object mapping member name to
    ``"predictor"`` or ``"witness"`` (see :func:`read_weights_roles`).

    Returns:
        Member name -> weight (not yet normalised).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"weights file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"weights file {path} is not valid JSON: {exc}") from None
    table = data.get("weights") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not table:
        raise ValueError(
            f'weights file {path} needs a "weights" object mapping member names to weights'
        )
    out: dict[str, float] = {}
    for name, value in table.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"weights file {path}: weight of {name!r} is {value!r}, not a number")
        out[str(name)] = float(value)
    return out


def read_weights_roles(path: str | os.PathLike) -> dict[str, str]:
    """The ``"roles"`` object of a weights file (member name -> ``"predictor"``/``"witness"``).

    Empty when the file has none (every member a predictor). Every name must
    also be in the file's ``"weights"``.
    """
    path = Path(path)
    weights = read_weights_file(path)
    data = json.loads(path.read_text())
    roles = data.get("roles", {})
    if not isinstance(roles, dict):
        raise ValueError(f'weights file {path}: "roles" must map member names to "predictor" or "witness"')
    for name, role in roles.items():
        if role not in ("predictor", "witness"):
            raise ValueError(f"weights file {path}: role of {name!r} is {role!r}, not 'predictor' or 'witness'")
        if name not in weights:
            raise ValueError(f'weights file {path}: {name!r} has a role but no weight in "weights"')
    return {str(k): str(v) for k, v in roles.items()}
