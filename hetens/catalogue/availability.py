"""What can run on this machine now: families, ensemble-file members and presets.

Loads no weights. Checking a member of an in-process family imports that
family's adapter and package (seconds, once); checking the weights of a
member in another environment runs that environment's interpreter once per
environment (:func:`ensemble_status` with ``weights_in_workers=True``).

What a member can lack, in :attr:`MemberStatus.missing`:

- its family: unknown to this hetens, not installable here
  (:data:`hetens.catalogue.registry.FAMILIES_NOT_INSTALLABLE`), not installed (the pip
  extra), or a family that runs only in its own environment given none;
- its environment: ``python = "env:NAME"`` not built by ``hetens env create``,
  or an interpreter path that does not exist;
- its weights: not downloaded yet (fetched on first use when the hub can be
  reached) or missing.

All but "not downloaded" are *blocking*: no network fixes them, and
:func:`hetens.load_ensemble_file` refuses a file with a blocking member
before loading any (:func:`check_runnable`). The presets' table is
:func:`hetens.catalogue.models_table.preset_rows`.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hetens.errors import MissingFamilyError

__all__ = [
    "MemberStatus",
    "FamilyRow",
    "member_status",
    "ensemble_status",
    "check_runnable",
    "family_rows",
]

#: Weights statuses (``FamilyAdapter.weights_status``) that mean the member runs now.
_PRESENT = ("shipped", "cached", "local file")


@dataclass(frozen=True)
class MemberStatus:
    """Whether one member can run here now.

    Attributes:
        name: the member's display name (``name`` in the file, else its spec's label).
        spec: its spec.
        runs_in: ``"this process"``, ``"env NAME"`` or the interpreter path given.
        missing: what it lacks, one phrase each; empty when it runs now.
        blocking: whether something is missing that no download fixes.
    """

    name: str
    spec: str
    runs_in: str
    missing: tuple[str, ...] = ()
    blocking: bool = False

    @property
    def runnable(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class FamilyRow:
    """Where one family's members run: ``runs`` is ``"in-process"``, ``"own environment"``,
    ``"not installed"`` or ``"not installable here"``; ``detail`` says how (or why)."""

    family: str
    runs: str
    detail: str


def _family_problem(family_name: str) -> str | None:
    """Why members of ``family_name`` cannot run in any environment here, or ``None``."""
    from hetens._version import __version__
    from hetens.families import FAMILIES
    from hetens.catalogue.registry import FAMILIES_NOT_INSTALLABLE

    if family_name in FAMILIES_NOT_INSTALLABLE and family_name not in FAMILIES:
        return f"family {family_name} is not installable here (why: hetens models, docs/families.md)"
    if family_name not in FAMILIES:
        return f"family {family_name!r} has no adapter in this hetens ({__version__}); known: {', '.join(FAMILIES)}"
    return None


def member_status(spec: str, python: str | None = None, name: str | None = None,
                  weights: bool = True) -> MemberStatus:
    """Whether the member ``spec`` (run under ``python``, or in this process) can run now.

    Args:
        spec: a member spec; a ``@python=`` option in it counts like ``python``.
        python: the interpreter of its environment (``env:NAME`` or a path), ``None`` for this
            process.
        name: display name (default: the spec's label).
        weights: check the weights of an in-process member (imports its family's package).
    """
    from hetens.families import FAMILIES
    from hetens.catalogue.spec import parse_spec

    parsed = parse_spec(spec)
    python = python or parsed.options.get("python")
    label = name or parsed.options.get("name") or parsed.label
    missing: list[str] = []
    blocking = False
    runs_in = "this process"
    problem = _family_problem(parsed.family)
    if problem:
        missing.append(problem)
        blocking = True
    if python:
        where, env_problem = _environment_problem(python, parsed.family)
        runs_in = where
        if env_problem and not problem:
            missing.append(env_problem)
            blocking = True
    elif not problem:
        family = FAMILIES[parsed.family]
        if family.environment == "own":
            missing.append(f"family {family.name} runs only in its own environment: build one with "
                           f"'hetens env create {family.name} --family {family.name}' and give the "
                           f"member python = \"env:{family.name}\"")
            blocking = True
        elif not family.installed:
            missing.append(f"family {family.name} is not installed (pip install 'hetens[{family.extra}]')")
            blocking = True
        elif weights:
            status = _weights_status(parsed.family, parsed.model)
            if status not in _PRESENT:
                missing.append(_weights_phrase(status))
                blocking = status not in ("download",)
    return MemberStatus(label, str(spec), runs_in, tuple(missing), blocking)


def _environment_problem(python: str, family: str) -> tuple[str, str | None]:
    """(where the member runs, what is missing there or ``None``) for an interpreter given."""
    from hetens.catalogue.envs import ENV_PREFIX, environment_root, find_environment

    if python.startswith(ENV_PREFIX):
        env = python[len(ENV_PREFIX):]
        entry = find_environment(env)
        if entry is None:
            return (f"env {env}", f"environment {env} is not built under {environment_root()} "
                    f"(hetens env create {env} --family {family})")
        return f"env {entry['name']}", None
    path = Path(python).expanduser()
    if os.sep in python and not (path.is_file() and os.access(path, os.X_OK)):
        return python, f"interpreter {python} does not exist"
    return python, None


def _weights_status(family: str, model: str) -> str:
    from hetens.families import FAMILIES
    from hetens.catalogue.registry import find_model

    known = find_model(family, model)
    try:
        return FAMILIES[family].adapter().weights_status(known.name if known else model)
    except Exception as exc:  # an adapter that cannot tell must not break the listing
        return f"unknown ({type(exc).__name__}: {exc})"


def _weights_phrase(status: str) -> str:
    if status == "download":
        return "weights not downloaded (fetched on first use, online)"
    if status == "missing":
        return "weights missing"
    return f"weights {status}"


def _weights_in_environment(python: str, members: list[tuple[str, str]]) -> list[str] | None:
    """Weights statuses of ``members`` ((family, model) pairs) as that environment's hetens
    reports them; ``None`` when it cannot say (its hetens lacks the family, a timeout)."""
    code = (
        "import json, sys\n"
        "from hetens.families import get_family\n"
        "try:\n"
        "    from hetens.catalogue.registry import find_model\n"
        "except ImportError:  # that environment's hetens predates the catalogue folder\n"
        "    from hetens.registry import find_model\n"
        "out = []\n"
        "for family, model in json.loads(sys.argv[1]):\n"
        "    known = find_model(family, model)\n"
        "    try:\n"
        "        out.append(get_family(family).adapter().weights_status(known.name if known else model))\n"
        "    except Exception as exc:\n"
        "        out.append('unknown (%s)' % type(exc).__name__)\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run([python, "-I", "-c", code, json.dumps(members)], capture_output=True,
                              text=True, timeout=180)
        found = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return found if isinstance(found, list) and len(found) == len(members) else None


def ensemble_status(entries: list[dict], weights: bool = True,
                    weights_in_workers: bool = False) -> list[MemberStatus]:
    """The status of every member of an ensemble file, in file order.

    Args:
        entries: the file's members, as :func:`hetens.core.ensemble_file.read_ensemble_file`
            gives them (dicts with ``spec`` and optionally ``python``, ``name``).
        weights: check the weights of in-process members.
        weights_in_workers: also ask each member environment's own hetens about the weights
            of its members (one interpreter start per environment).
    """
    from hetens.catalogue.envs import ENV_PREFIX, find_environment
    from hetens.catalogue.spec import parse_spec

    statuses = [member_status(e["spec"], e.get("python"), e.get("name"), weights) for e in entries]
    if not weights_in_workers:
        return statuses
    by_python: dict[str, list[int]] = {}
    for index, (entry, status) in enumerate(zip(entries, statuses)):
        python = entry.get("python")
        if python and not status.blocking:
            if python.startswith(ENV_PREFIX):
                python = find_environment(python[len(ENV_PREFIX):])["python"]
            by_python.setdefault(python, []).append(index)
    for python, indices in by_python.items():
        pairs = [(parse_spec(entries[i]["spec"]).family, parse_spec(entries[i]["spec"]).model) for i in indices]
        found = _weights_in_environment(python, pairs)
        for i, status in zip(indices, found or [None] * len(indices)):
            old = statuses[i]
            if status is None:
                extra = (f"weights not checked ({python} could not say)",)
                statuses[i] = MemberStatus(old.name, old.spec, old.runs_in, old.missing + extra, old.blocking)
            elif status not in _PRESENT:
                statuses[i] = MemberStatus(old.name, old.spec, old.runs_in,
                                           old.missing + (_weights_phrase(status),),
                                           old.blocking or status != "download")
    return statuses


def check_runnable(path: str | os.PathLike, entries: list[dict]) -> None:
    """Refuse an ensemble file with members that cannot run here, naming every member that
    needs something, with what to do.

    Only blocking problems refuse the file (a family or environment that is not here);
    weights that are merely not downloaded yet are left to the loaders, which fetch them or
    fail fast offline. When the file is refused, the message also names the members whose
    weights are still to be downloaded, so that one message says everything the file needs.

    Args:
        path: the file, for the message.
        entries: its members (see :func:`ensemble_status`).

    Raises:
        MissingFamilyError: one message listing every such member.
    """
    statuses = ensemble_status(entries, weights=False)
    if not any(s.blocking for s in statuses):
        return
    statuses = ensemble_status(entries, weights=True)  # the weights too, now that it is refused
    blocked = [s for s in statuses if s.blocking]
    downloads = [s for s in statuses if s.missing and not s.blocking]
    listing = "; ".join(f"{s.name} ({s.spec}, {s.runs_in}): {', '.join(s.missing)}" for s in blocked)
    message = f"ensemble file {path}: {len(blocked)} of {len(statuses)} members cannot run here: {listing}"
    if downloads:
        message += (f"; {len(downloads)} more have weights not downloaded yet, fetched on first use "
                    "when their host can be reached: "
                    + ", ".join(f"{s.name} ({s.spec})" for s in downloads))
    raise MissingFamilyError(message + ". 'hetens models' lists what every preset and family needs")


def family_rows() -> list[FamilyRow]:
    """One row per family hetens knows (and per registry family it cannot install here)."""
    from hetens.catalogue.envs import FAMILY_STACKS, list_environments
    from hetens.families import FAMILIES
    from hetens.catalogue.registry import FAMILIES_NOT_INSTALLABLE

    envs = list_environments()
    rows = []
    for family in FAMILIES.values():
        built = [e for e in envs if e.get("family") == family.name]
        built_text = "; environments: " + ", ".join(f"{e['name']} ({e['python']})" for e in built) if built else ""
        if family.environment == "own":
            if built:
                rows.append(FamilyRow(family.name, "own environment", built_text[2:]))
            else:
                rows.append(FamilyRow(family.name, "own environment",
                                      f"not created: hetens env create {family.name} --family {family.name}"))
        elif family.installed:
            also = (f"; or its own: hetens env create {family.name} --family {family.name}"
                    if family.name in FAMILY_STACKS else "")
            rows.append(FamilyRow(family.name, "in-process", f"installed here{also}{built_text}"))
        else:
            rows.append(FamilyRow(family.name, "not installed",
                                  f"pip install 'hetens[{family.extra}]'{built_text}"))
    for name, why in FAMILIES_NOT_INSTALLABLE.items():
        if name not in FAMILIES:
            rows.append(FamilyRow(name, "not installable here", why))
    return rows
