"""Options shared by several subcommands, defined once (as janus-core does)."""

from __future__ import annotations

import argparse
from typing import Any


def add_ensemble_options(parser: argparse.ArgumentParser) -> None:
    """``--models``, ``--witnesses``, ``--weights``/``--force-rmse``/``--weights-file``, ``--device``,
    ``--allow-mixed-reference``, ``--max-energy-deviation``, ``--ensemble-file``, ``--parallel``:
    the arguments of :func:`hetens.build_ensemble` (mapped by :func:`ensemble_options`), the same
    for every command that takes members (md, relax, single, score, calibrate)."""
    group = parser.add_argument_group("ensemble")
    group.add_argument(
        "--models", nargs="*", metavar="SPEC",
        help="member specs FAMILY:MODEL[@HEAD][@role=witness][@python=ENV/bin/python] (without SPEC or "
        "without --models: the members of --weights-file, else the offline ensemble, "
        "hetens.core.ensemble.DEFAULT_MEMBERS with DEFAULT_WITNESSES as witnesses)",
    )
    group.add_argument(
        "--witnesses", nargs="+", metavar="SPEC",
        help="witness specs: their forces enter U only, never the returned energy/forces/stress, so "
        "they may have another level of theory (docs/witnesses.md); default: none with --models, "
        "hetens.core.ensemble.DEFAULT_WITNESSES without",
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


#: How the ensemble options are named in error messages (:func:`hetens.core.factory.plan_ensemble`).
OPTION_NAMES = {
    "models": "--models",
    "witnesses": "--witnesses",
    "weights": "--weights",
    "force_rmse": "--force-rmse",
    "weights_file": "--weights-file",
    "ensemble_file": "--ensemble-file",
    "on_member_error": "--on-member-error",
    "min_members": "--min-members",
    "max_energy_deviation": "--max-energy-deviation",
}


def ensemble_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`hetens.build_ensemble` that the options give
    (a command without some of the options gets the factory's defaults for those)."""
    return {
        "models": getattr(args, "models", None) or None,
        "witnesses": getattr(args, "witnesses", None),
        "weights": getattr(args, "weights", None),
        "force_rmse": getattr(args, "force_rmse", None),
        "weights_file": getattr(args, "weights_file", None),
        "ensemble_file": getattr(args, "ensemble_file", None),
        "device": getattr(args, "device", None) or "auto",
        "parallel": bool(getattr(args, "parallel", False)),
        "allow_mixed_reference": bool(getattr(args, "allow_mixed_reference", False)),
        "max_energy_deviation": getattr(args, "max_energy_deviation", None),
        "on_member_error": getattr(args, "on_member_error", None) or "raise",
        "min_members": getattr(args, "min_members", None),
    }


def check_ensemble_args(args: argparse.Namespace):
    """The ensemble options' checks that need no model, so they fail before any model loads.

    Specs must not be files (:func:`check_model_specs`); the rest is
    :func:`hetens.core.factory.plan_ensemble` (specs parse, the member-error policy,
    the weights file, one ``--weights``/``--force-rmse`` value per member).

    Returns:
        The :class:`~hetens.core.factory.EnsemblePlan` (nothing loaded).
    """
    from hetens.core.factory import plan_ensemble

    check_model_specs(args)
    return plan_ensemble(**ensemble_options(args), argument_names=OPTION_NAMES)


def ensemble_from_args(args: argparse.Namespace):
    """Build the :class:`~hetens.HeterogeneousEnsembleCalculator` the options describe, with
    :func:`hetens.build_ensemble` (after :func:`check_ensemble_args`: nothing loads when the
    options are wrong)."""
    return check_ensemble_args(args).build()


def add_error_reference_option(parser: argparse.ArgumentParser) -> None:
    """``--error-reference``: what eps, the true error U is ranked against, is the error of."""
    parser.add_argument(
        "--error-reference",
        choices=("returned", "member_mean"),
        default="returned",
        help="eps is the max force error of: 'returned', the forces hetens returns (weighted predictor "
        "mean; default), or 'member_mean', the plain mean of the predictors' forces, as the paper's "
        "notebook measured it (docs/method.md)",
    )
