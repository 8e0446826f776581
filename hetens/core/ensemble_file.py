"""Ensemble files: members, their Python environments, devices and weights in one TOML file.

Example (``ensemble.toml``)::

    parallel = true      # optional: members without `python` run as workers of this interpreter
    lazy = false         # optional: start the workers when the ensemble is built
    device = "cpu"       # optional: default device of the members
    allow_mixed_reference = false

    [[member]]
    spec = "sevenn:7net-0"
    weight = 0.4

    [[member]]
    spec = "chgnet:0.3.0"
    python = "envs/chgnet/bin/python"   # absolute, ~/..., or relative to this file
    device = "cpu"
    threads = 1
    timeout = 300                       # seconds per calculation
    weight = 0.6

    [[member]]
    spec = "chgnet:r2scan"
    role = "witness"                    # forces in U only (docs/witnesses.md)
    weight = 0.5

``python`` is an interpreter path, or ``"env:NAME"``: the environment
called NAME built by ``hetens env create`` (or, when there is none of that
name, one built for the family NAME), as in ``python = "env:fairchem1"``.
Instead of a path, a preset name (``paper-top11``, ``default``;
:mod:`hetens.catalogue.presets`) reads the file shipped with hetens.

Member keys: ``spec`` (required), ``role`` (``"predictor"``, the default,
or ``"witness"``), ``python``, ``device``, ``weight`` or
``force_rmse`` (on every member or on none), ``name``, ``threads``,
``timeout``, ``start_timeout`` and ``env`` (a table of environment variables
for the worker). Model paths inside specs are read as on the command line,
relative to the current directory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "load_ensemble_file",
    "load_preset",
    "read_ensemble_file",
    "write_ensemble_file",
    "MEMBER_KEYS",
    "TOP_LEVEL_KEYS",
]

#: Keys of a ``[[member]]`` table, with the types they take.
MEMBER_KEYS: dict[str, tuple[type, ...]] = {
    "spec": (str,),
    "role": (str,),
    "python": (str,),
    "device": (str,),
    "name": (str,),
    "weight": (int, float),
    "force_rmse": (int, float),
    "threads": (int,),
    "timeout": (int, float),
    "start_timeout": (int, float),
    "env": (dict,),
}
#: Keys allowed outside the member tables.
TOP_LEVEL_KEYS: dict[str, tuple[type, ...]] = {
    "member": (list,),
    "parallel": (bool,),
    "lazy": (bool,),
    "device": (str,),
    "allow_mixed_reference": (bool,),
}
_WORKER_KEYS = ("threads", "timeout", "start_timeout", "env")


def read_ensemble_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check an ensemble file.

    Returns:
        The top-level settings (``parallel``, ``lazy``, ``device``,
        ``allow_mixed_reference``, when given) plus ``members``: one dict per
        member with its keys, ``python`` made absolute.

    Raises:
        FileNotFoundError: no such file (nor a preset of that name).
        ValueError: not valid TOML, an unknown key, a value of the wrong type,
            no member, or weights on some members only. The message names the
            file and the member (1-based, in file order).
    """
    from hetens.catalogue.presets import preset_names, resolve_ensemble_path

    path = resolve_ensemble_path(path)
    toml = _toml_module()
    try:
        with open(path, "rb") as handle:
            table = toml.load(handle)
    except toml.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not a valid TOML ensemble file: {exc}") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"no ensemble file {path} (nor a preset of that name; presets: "
                                f"{', '.join(preset_names())})") from None
    _check_keys(table, TOP_LEVEL_KEYS, f"{path}")
    entries = table.pop("member", [])
    if not entries:
        raise ValueError(f"{path}: no members; add one [[member]] table per member with spec = \"...\"")
    members = []
    for index, entry in enumerate(entries, start=1):
        where = f"{path}, member {index}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: must be a [[member]] table")
        _check_keys(entry, MEMBER_KEYS, where)
        if "spec" not in entry:
            raise ValueError(f"{where}: has no spec (e.g. spec = \"chgnet:0.3.0\")")
        member = dict(entry)
        if member.get("role", "predictor") not in ("predictor", "witness"):
            raise ValueError(f"{where}: role must be \"predictor\" or \"witness\"; got {member['role']!r}")
        if "python" in member:
            member["python"] = _interpreter_path(member["python"], path.parent)
        if "env" in member:
            bad = [k for k, v in member["env"].items() if not isinstance(v, str)]
            if bad:
                raise ValueError(f"{where}: env values must be strings; {', '.join(bad)} is not")
        members.append(member)
    for key in ("weight", "force_rmse"):
        given = [i for i, m in enumerate(members, start=1) if key in m]
        if given and len(given) != len(members):
            missing = [i for i in range(1, len(members) + 1) if i not in given]
            raise ValueError(f"{path}: {key} is given for member(s) {given} but not for {missing}; "
                             f"give it for every member or for none")
    if any("weight" in m for m in members) and any("force_rmse" in m for m in members):
        raise ValueError(f"{path}: give either weight or force_rmse for the members, not both")
    return {**table, "members": members}


def load_ensemble_file(path: str | os.PathLike, **overrides: Any):
    """Build the :class:`~hetens.HeterogeneousEnsembleCalculator` an ensemble file describes.

    Args:
        path: the TOML file (format in this module's docstring and docs/workers.md).
        **overrides: arguments of the calculator that replace the file's
            (``weights``, ``force_rmse``, ``device``, ``parallel``, ``lazy``...).

    Members with a ``python`` (or any worker key, or all members when
    ``parallel = true``) run in worker processes; close the calculator (or
    use it in a ``with`` block) to stop them early. ``path`` may be a preset
    name (:mod:`hetens.catalogue.presets`).

    Raises:
        MissingFamilyError: before any member loads, when members cannot run
            here (family unknown, not installable or not installed; an
            ``env:NAME`` not built), naming each with what it lacks
            (:func:`hetens.catalogue.availability.check_runnable`).
    """
    from hetens.catalogue.availability import check_runnable
    from hetens.core.calculator import HeterogeneousEnsembleCalculator
    from hetens.core.member import load_member

    settings = read_ensemble_file(path)
    entries = settings.pop("members")
    check_runnable(path, entries)
    parallel = overrides.pop("parallel", settings.get("parallel", False))
    lazy = overrides.pop("lazy", settings.get("lazy", True))
    device = overrides.pop("device", settings.get("device", "auto"))
    weights = [m["weight"] for m in entries] if "weight" in entries[0] else None
    force_rmse = [m["force_rmse"] for m in entries] if "force_rmse" in entries[0] else None
    if "weights" in overrides or "force_rmse" in overrides:
        weights = force_rmse = None
    arguments: dict[str, Any] = {
        "weights": weights,
        "force_rmse": force_rmse,
        "allow_mixed_reference": settings.get("allow_mixed_reference", False),
        **overrides,
    }
    members = []
    try:
        for entry in entries:
            spec = entry["spec"] + (f"@name={entry['name']}" if "name" in entry else "")
            if "role" in entry:
                spec += f"@role={entry['role']}"
            worker = {k: entry[k] for k in _WORKER_KEYS if k in entry}
            if "python" in entry or worker or parallel:
                worker["python"] = entry.get("python", sys.executable)
            members.append(load_member(spec, device=entry.get("device", device), **worker))
        return HeterogeneousEnsembleCalculator(members, device=device, parallel=parallel, lazy=lazy,
                                               **arguments)
    except BaseException:
        from hetens.core.pool import close_workers

        close_workers(members)
        raise


def load_preset(name: str, **overrides: Any):
    """Build the :class:`~hetens.HeterogeneousEnsembleCalculator` of the preset ``name``
    (``"paper-top11"``, ``"default"``; :mod:`hetens.catalogue.presets`).

    Args:
        name: a name from :func:`hetens.catalogue.presets.preset_names`.
        **overrides: as for :func:`load_ensemble_file` (``device``, ``weights``...).

    Raises:
        FileNotFoundError: no such preset (the message lists them).
        MissingFamilyError: members that cannot run here (each named with what it lacks),
            before any member loads.
    """
    from hetens.catalogue.presets import preset_path

    return load_ensemble_file(preset_path(name), **overrides)


def write_ensemble_file(calc, path: str | os.PathLike) -> Path:
    """Write the ensemble file of a built ensemble: each member's spec, role and weight.

    The members must come from specs (a plain ASE calculator cannot be
    written down). Worker settings other than ``python`` (kept in the spec)
    are not recorded. :func:`load_ensemble_file` builds the same ensemble
    back (members, roles, weights).
    """
    import json

    from hetens.io.files import atomic_path
    from hetens.catalogue.spec import MemberSpec, parse_spec

    missing = [m.name for m in calc.members if not m.spec]
    if missing:
        raise ValueError(f"member(s) {', '.join(missing)} were given as calculator objects; "
                         "an ensemble file names members by spec: give specs")
    lines = [f"allow_mixed_reference = {'true' if calc.allow_mixed_reference else 'false'}"]
    for member, weight in zip(calc.members, calc.weights):
        parsed = parse_spec(member.spec)
        options = {k: v for k, v in parsed.options.items() if k not in ("role", "name")}
        bare = MemberSpec(parsed.family, parsed.model, parsed.head, options)
        lines += ["", "[[member]]", f"spec = {json.dumps(str(bare))}"]
        if member.name != bare.label:
            lines.append(f"name = {json.dumps(member.name)}")
        lines += [f"role = {json.dumps(member.role)}", f"weight = {float(weight)!r}"]
    target = Path(path)
    with atomic_path(target) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return target


def _interpreter_path(python: str, folder: Path) -> str:
    """``python`` expanded: ``~`` and paths relative to the file's folder; bare names kept for PATH."""
    expanded = os.path.expanduser(python)
    if os.sep not in expanded:
        return expanded
    return str(folder / expanded) if not os.path.isabs(expanded) else expanded


def _check_keys(table: Mapping[str, Any], allowed: Mapping[str, tuple[type, ...]], where: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r}; allowed keys: {', '.join(allowed)}")
        types = allowed[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise ValueError(f"{where}: {key} must be a {names}; got {value!r}")


def _toml_module():
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli
    except ImportError:
        raise ImportError("reading ensemble files needs Python 3.11+ or the tomli package "
                          "(pip install tomli)") from None
    return tomli
