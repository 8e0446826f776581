"""Options of the monitored runs (md, relax, explore): a driver with periodic checks, the trust window.

Defined once, checked before any model loads (:func:`check_monitor_options`).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_driver_options", "add_trust_options", "check_monitor_options", "driven", "driver_preflight"]

#: hetens.monitor.driver.DEFAULT_CHECK_EVERY and PREDICTORS, repeated so --help imports no ASE.
DEFAULT_CHECK_EVERY = 10
PREDICTORS = "predictors"


def add_driver_options(parser: argparse.ArgumentParser) -> None:
    """``--driver MEMBER|predictors`` and ``--check-every K``."""
    group = parser.add_argument_group("driver with periodic checks (as DeePMD's out_freq, DP-GEN's trj_freq)")
    group.add_argument(
        "--driver", metavar="MEMBER|predictors",
        help="propagate with one predictor (its name or spec, e.g. chgnet:0.3.0) or 'predictors' (their mean, "
        "without the witnesses); the whole ensemble is evaluated and U observed only every --check-every steps. "
        "Default: the ensemble drives and U is observed every step",
    )
    group.add_argument(
        "--check-every", type=int, metavar="K",
        help=f"with --driver: evaluate every member and observe U every K steps (default {DEFAULT_CHECK_EVERY}); "
        "a check above --halt-above is confirmed on the next step. K = 1 when a halt must fire at the very step "
        "U crosses, see docs/monitoring.md",
    )


def add_trust_options(parser, *, flag_above: bool = False) -> None:
    """``--flag-between LO HI`` and ``--failed`` (the trust window); ``--flag-above`` too when asked."""
    group = parser.add_argument_group("trust window (DP-GEN's trust_lo / trust_hi)")
    if flag_above:
        group.add_argument("--flag-above", type=float, metavar="U",
                           help="candidates: frames with U above this (eV/A), no upper level")
    group.add_argument(
        "--flag-between", nargs=2, type=float, metavar=("LO", "HI"),
        help="DP-GEN's trust levels in eV/A: frames with U <= LO are accurate, LO < U <= HI candidates "
        "(written to the flagged file), U > HI failed (written to the failed file, never among the candidates)",
    )
    group.add_argument("--failed", metavar="EXTXYZ",
                       help="extxyz for failed frames, U above HI (default: LOG stem + .failed.extxyz)")


def check_monitor_options(args: argparse.Namespace) -> None:
    """The checks of the driver and trust options that need no model (ValueError, one line).

    Sets ``args.flag_above`` and ``args.flag_below`` from ``--flag-between``
    and ``args.check_every`` to its default with ``--driver``.
    """
    driver = getattr(args, "driver", None)
    k = getattr(args, "check_every", None)
    if k is not None and k < 1:
        raise ValueError(f"--check-every must be >= 1 step; got {k}")
    if k is not None and driver is None:
        raise ValueError("--check-every needs --driver MEMBER|predictors (without a driver the ensemble "
                         "is evaluated, and U observed, every step)")
    if driver is not None and k is None:
        args.check_every = DEFAULT_CHECK_EVERY
    window = getattr(args, "flag_between", None)
    args.flag_below = None
    if window is not None:
        lo, hi = window
        if getattr(args, "flag_above", None) is not None:
            raise ValueError("give --flag-above U or --flag-between LO HI, not both")
        if not lo > 0:
            raise ValueError(f"--flag-between: LO must be a positive U in eV/A; got {lo:g}")
        if not hi > lo:
            raise ValueError(f"--flag-between LO HI needs LO < HI; got LO = {lo:g}, HI = {hi:g} eV/A")
        args.flag_above, args.flag_below = lo, hi
    if getattr(args, "failed", None) and window is None:
        raise ValueError("--failed needs --flag-between LO HI (frames above HI are the failed ones)")


def driver_preflight(args: argparse.Namespace, plan) -> None:
    """Refuse an unknown driver or a witness as driver from the ensemble plan, before any model loads.

    ``plan`` is the :class:`~hetens.core.factory.EnsemblePlan`; with an ensemble
    file (members known only once loaded) the check is left to :func:`driven`.
    """
    driver = getattr(args, "driver", None)
    if driver is None or (not plan.predictors and not plan.witnesses):
        return
    from hetens.catalogue.spec import MemberSpec, parse_spec
    from hetens.core.calculator import declared_role
    from hetens.monitor.driver import check_driver_choice

    names, roles, specs = [], [], []
    for role_default, items in (("predictor", plan.predictors), ("witness", plan.witnesses)):
        for item in items:
            if isinstance(item, (str, MemberSpec)):
                parsed = item if isinstance(item, MemberSpec) else parse_spec(item)
                names.append(parsed.options.get("name") or parsed.label)
                specs.append(str(parsed))
            else:  # a Member or calculator object given in Python
                names.append(getattr(item, "name", str(item)))
                specs.append(getattr(item, "spec", None))
            roles.append("witness" if role_default == "witness" else declared_role(item))
    check_driver_choice(driver, names, roles, specs)


def driven(args: argparse.Namespace, calc) -> Any:
    """``calc`` itself, or with ``--driver`` a :class:`~hetens.monitor.driver.CheckedDriverCalculator` around it."""
    if getattr(args, "driver", None) is None:
        return calc
    from hetens.monitor.driver import CheckedDriverCalculator

    return CheckedDriverCalculator(calc, args.driver, args.check_every)


def what_u_means(log: Path, calc) -> list[str]:
    """Summary lines placing a monitored run's U: which member deviated most on how many logged
    steps (saying so when it is a witness), and the default ensemble's calibrated scale at the
    run's median U (:mod:`hetens.catalogue.u_scale`)."""
    import numpy as np

    from hetens.catalogue.u_scale import u_context_lines
    from hetens.monitor import read_log

    logged = read_log(log)
    names = [name for name in logged["most_deviating"] if name]
    counts = {name: names.count(name) for name in dict.fromkeys(names)}
    u = logged["U"][np.isfinite(logged["U"])]
    roles = dict(zip(calc.member_names, calc.roles))
    lines = u_context_lines(float(np.median(u)) if u.size else float("nan"), calc.member_names, roles,
                            counts, unit="logged steps")
    return [f"{label:<15}{text}" for label, text in (line.split(": ", 1) for line in lines)]
