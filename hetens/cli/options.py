"""Options shared by several subcommands, defined once (as janus-core does)."""

from __future__ import annotations

import argparse
from typing import Any


def add_ensemble_options(parser: argparse.ArgumentParser) -> None:
    """``--models``, ``--witnesses``, ``--weights``/``--force-rmse``/``--weights-file``, ``--device``,
    ``--allow-mixed-reference``, ``--max-energy-deviation``, ``--ensemble-file``, ``--parallel``."""
    group = parser.add_argument_group("ensemble")
    group.add_argument(
        "--models", nargs="+", metavar="SPEC",
        help="member specs FAMILY:MODEL[@HEAD][@role=witness][@python=ENV/bin/python] (default: the "
        "offline ensemble, hetens.ensemble.DEFAULT_MEMBERS with DEFAULT_WITNESSES as witnesses)",
    )
    group.add_argument(
        "--witnesses", nargs="+", metavar="SPEC",
        help="witness specs: their forces enter U only, never the returned energy/forces/stress, so "
        "they may have another level of theory (docs/witnesses.md); default: none with --models, "
        "hetens.ensemble.DEFAULT_WITNESSES without",
    )
    weights = group.add_mutually_exclusive_group()
    weights.add_argument("--weights", nargs="+", type=float, metavar="W",
                         help="one weight per member, witnesses included (members first, then witnesses)")
    weights.add_argument("--force-rmse", nargs="+", type=float, metavar="RMSE",
                         help="member force RMSEs in eV/A; weights are their normalised inverses")
    weights.add_argument("--weights-file", metavar="JSON", help="weights written by 'hetens calibrate'")
    group.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    group.add_argument("--allow-mixed-reference", action="store_true",
                       help="allow averaging members of different levels of theory (PBE+U with r2SCAN) "
                       "or energy references (see --max-energy-deviation)")
    group.add_argument("--max-energy-deviation", type=float, metavar="EV_PER_ATOM",
                       help="refuse a structure where a predictor's energy per atom is further than this "
                       "from the predictors' median: they are on different energy references "
                       "(default 1.0 eV/atom)")
    group.add_argument("--ensemble-file", metavar="TOML",
                       help="members with their Python environments, devices and weights "
                       "(see docs/workers.md); instead of --models")
    group.add_argument("--parallel", action="store_true",
                       help="evaluate members concurrently, each in its own worker process")


def add_member_error_options(parser: argparse.ArgumentParser) -> None:
    """``--on-member-error raise|drop`` and ``--min-members`` (for commands that run the calculator)."""
    group = parser.add_argument_group("member failures")
    group.add_argument(
        "--on-member-error", choices=("raise", "drop"), default="raise",
        help="a member that fails (exception, NaN, dead worker, element it was not trained on): "
        "stop with an error naming it (raise, default), or leave it out of that MD step or "
        "scored frame and "
        "renormalise the others' weights (drop; warned once per member)",
    )
    group.add_argument(
        "--min-members", type=int, metavar="K",
        help="with --on-member-error drop: stop when fewer than K members of U (predictors and "
        "witnesses) are left (default and minimum 2)",
    )


def _member_error_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    policy = getattr(args, "on_member_error", "raise")
    minimum = getattr(args, "min_members", None)
    if minimum is not None and policy != "drop":
        raise ValueError("--min-members applies with --on-member-error drop")
    return {"on_member_error": policy, "min_members": minimum} if policy != "raise" else {}


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout; human text goes to stderr")


def check_model_specs(args: argparse.Namespace, files: list[str] | None = None) -> None:
    """``--models`` holds member specs, not structure files (``--models`` takes every word after it).

    A "spec" that names an existing file is a structure given after ``--models``:
    the error says so and shows the command in the right order.
    """
    import os
    import shlex

    models = list(getattr(args, "models", None) or [])
    strays = [m for m in models if os.path.isfile(m) or (os.path.isdir(m) and ":" not in m)]
    if not strays:
        return
    specs = [m for m in models if m not in strays]
    command = getattr(args, "command", None) or "COMMAND"
    order = " ".join(shlex.quote(p) for p in [*(files or []), *strays])
    spec_text = " ".join(shlex.quote(m) for m in specs) or "SPEC..."
    raise ValueError(
        f"--models got {strays[0]!r}, which is a file, not a member spec (FAMILY:MODEL): --models takes "
        f"every word after it, so give the structure files first: hetens {command} {order} "
        f"--models {spec_text} [options]"
    )


def check_ensemble_args(args: argparse.Namespace) -> None:
    """The ensemble options' checks that need no model, so they fail before any model loads.

    Specs are parsed (and must not be files: :func:`check_model_specs`), the
    ``--min-members`` policy is checked, a weights file is read, and
    ``--weights``/``--force-rmse`` must be valid and give one value per member.
    """
    from hetens.spec import parse_spec
    from hetens.weights import read_weights_file, resolve_weights

    check_model_specs(args)
    _member_error_kwargs(args)
    _reference_kwargs(args)
    models = list(getattr(args, "models", None) or [])
    for spec in [*models, *(getattr(args, "witnesses", None) or [])]:
        parse_spec(spec)
    if getattr(args, "ensemble_file", None):
        return  # the file names the members; it is read when the ensemble is built
    predictors, witnesses = ensemble_members_from_args(args)
    members = predictors + witnesses
    if getattr(args, "weights_file", None):
        table = read_weights_file(args.weights_file)
        members = models + witnesses if models else list(table)
    n = len(members)
    for option, values in (("--weights", getattr(args, "weights", None)),
                           ("--force-rmse", getattr(args, "force_rmse", None))):
        if values is None:
            continue
        if len(values) != n:
            given = "--models names" if models else "the default ensemble has"
            raise ValueError(
                f"{option} has {len(values)} value{'s' if len(values) != 1 else ''} but {given} {n} "
                f"members ({' '.join(members)}); give one per member, in that order"
            )
        resolve_weights(n, values if option == "--weights" else None,
                        values if option == "--force-rmse" else None)


def ensemble_from_args(args: argparse.Namespace, **kwargs: Any):
    """Build the :class:`~hetens.HeterogeneousEnsembleCalculator` the options describe
    (after :func:`check_ensemble_args`: nothing loads when the options are wrong)."""
    from hetens.calculator import HeterogeneousEnsembleCalculator
    from hetens.weights import read_weights_file, read_weights_roles

    check_ensemble_args(args)
    kwargs = {**_member_error_kwargs(args), **_reference_kwargs(args), **kwargs}
    if getattr(args, "ensemble_file", None):
        return _ensemble_from_file(args, **kwargs)
    weights: Any = args.weights
    members, witnesses = ensemble_members_from_args(args)
    if getattr(args, "weights_file", None):
        weights = read_weights_file(args.weights_file)
        # A weights file names its members (and their roles); they are the ensemble
        # unless --models says otherwise.
        if not args.models:
            roles = read_weights_roles(args.weights_file)
            members = [n for n in weights if roles.get(n, "predictor") == "predictor"]
            witnesses = [n for n in weights if roles.get(n) == "witness"]
    return HeterogeneousEnsembleCalculator(
        members,
        weights=weights,
        witnesses=witnesses,
        force_rmse=args.force_rmse,
        allow_mixed_reference=args.allow_mixed_reference,
        device=args.device,
        parallel=getattr(args, "parallel", False),
        **kwargs,
    )


def ensemble_members_from_args(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(member specs, witness specs) the options name: ``--models`` and ``--witnesses``, or
    without ``--models`` the defaults (:data:`hetens.ensemble.DEFAULT_MEMBERS` and
    :data:`~hetens.ensemble.DEFAULT_WITNESSES`; ``--witnesses`` replaces the latter).

    Checks, before any model loads, that U will have two members and a predictor.
    """
    from hetens.calculator import check_member_counts, declared_role
    from hetens.ensemble import DEFAULT_MEMBERS, DEFAULT_WITNESSES

    witnesses = getattr(args, "witnesses", None)
    if args.models:
        members, witnesses = list(args.models), list(witnesses or ())
    else:
        members = list(DEFAULT_MEMBERS)
        witnesses = list(DEFAULT_WITNESSES if witnesses is None else witnesses)
    if not getattr(args, "weights_file", None) or args.models:
        check_member_counts([declared_role(m) for m in members] + ["witness"] * len(witnesses))
    return members, witnesses


def _reference_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    value = getattr(args, "max_energy_deviation", None)
    if value is None:
        return {}
    if not value > 0:
        raise ValueError(f"--max-energy-deviation must be a positive number of eV/atom; got {value}")
    return {"max_energy_deviation": value}


def _ensemble_from_file(args: argparse.Namespace, **kwargs: Any):
    """``--ensemble-file``: the file's members; weight, device and parallel options given here win."""
    from hetens.ensemble_file import load_ensemble_file
    from hetens.weights import read_weights_file

    if args.models or getattr(args, "witnesses", None):
        raise ValueError("give the members either with --models or with --ensemble-file, not both "
                         "(nor --witnesses: mark witnesses in the file with role = \"witness\")")
    overrides: dict[str, Any] = dict(kwargs)
    if args.weights_file:
        overrides["weights"] = read_weights_file(args.weights_file)
    elif args.weights or args.force_rmse:
        overrides["weights"], overrides["force_rmse"] = args.weights, args.force_rmse
    if args.device != "auto":
        overrides["device"] = args.device
    if args.parallel:
        overrides["parallel"] = True
    if args.allow_mixed_reference:
        overrides["allow_mixed_reference"] = True
    return load_ensemble_file(args.ensemble_file, **overrides)
