"""``hetens calibrate``: member errors, weights, the top-N scan and a U bound, from reference data."""

from __future__ import annotations

import argparse
import json
import sys

from hetens.cli.options import add_ensemble_options, add_json_option, check_ensemble_args, ensemble_from_args
from hetens.cli.score import add_reading_options


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit weights and the ensemble size on reference (DFT) data; bound the force error",
        description="Compare members with reference (DFT) labels: per-member force and energy RMSE, "
        "inverse-force-RMSE weights, the paper's top-N scan (members sorted by force RMSE, Spearman "
        "rho(U, eps) for N = 2..M, best N chosen) and a split-conformal factor k with "
        "max force error <= k U at the requested coverage, checked on held-out frames. Writes a "
        "weights file for --weights-file.",
    )
    parser.add_argument("--reference", required=True, metavar="REF", help="reference energies/forces (DFT)")
    pre = parser.add_argument_group("precomputed predictions")
    pre.add_argument(
        "--precomputed", nargs="+", metavar="PRED",
        help="one prediction file per member, same frames as REF (without it: live members evaluated on REF, "
        "chosen with the ensemble options)",
    )
    pre.add_argument("--names", nargs="+", metavar="NAME", help="member names for PRED files")
    pre.add_argument(
        "--witness-names", nargs="+", metavar="NAME",
        help="PRED members (by name: --names or the file names) that are witnesses",
    )
    add_ensemble_options(parser)  # live members: the scan runs over the predictors, witnesses kept in U
    parser.add_argument("-o", "--output", required=True, metavar="weights.json", help="weights file to write")
    parser.add_argument("--coverage", type=float, default=0.95, help="target coverage of the bound (0.95)")
    parser.add_argument(
        "--held-out",
        type=float,
        default=0.5,
        metavar="FRACTION",
        help="share of frames held out to check the bound's coverage (0.5)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration/held-out split")
    add_reading_options(parser, predictions=True)
    parser.add_argument("--batch-size", type=int, default=16, help="frames per model call for live members (16)")
    parser.add_argument("--jobs", type=int, default=1, help="read PRED files in this many processes")
    parser.add_argument("--progress", choices=("auto", "bar", "log", "off"), default="auto")
    add_json_option(parser)
    parser.set_defaults(func=run)


def _predictions(args: argparse.Namespace):
    if args.precomputed:
        from hetens.rescore.precomputed import load_predictions

        return load_predictions(
            args.precomputed,
            args.names,
            index=args.index,
            energy_key=args.energy_key,
            forces_key=args.forces_key,
            position_tol=args.position_tol,
            jobs=args.jobs,
        )
    if args.names:
        raise ValueError("--names names PRED files; live members are named by their specs")
    from hetens.rescore.predict import predict_file

    with ensemble_from_args(args) as calc:  # closing stops worker processes (--parallel, --ensemble-file)
        args.witness_names = [m.name for m in calc.members if m.role == "witness"]
        return predict_file(
            calc, args.reference, index=args.index, batch_size=args.batch_size, progress=args.progress
        )


def _check_arguments(args: argparse.Namespace) -> None:
    """Before any model loads: the sources of members agree and the ensemble options are valid."""
    live = [option for option, value in (
        ("--models", args.models is not None), ("--witnesses", args.witnesses), ("--ensemble-file", args.ensemble_file),
        ("--parallel", args.parallel), ("--max-energy-deviation", args.max_energy_deviation is not None),
        ("--device", args.device != "auto"), ("--allow-mixed-reference", args.allow_mixed_reference),
    ) if value]
    if args.precomputed and live:
        raise ValueError(f"{live[0]} applies to live members; with --precomputed, name members with --names "
                         "and mark witnesses with --witness-names")
    if args.precomputed and (args.weights or args.force_rmse or args.weights_file):
        raise ValueError("calibrate fits the weights itself; --weights/--force-rmse/--weights-file choose live "
                         "members' weights and do not apply to --precomputed")
    if not args.precomputed and args.witness_names:
        raise ValueError("--witness-names marks PRED files; give live witnesses with --witnesses SPEC...")
    if not args.precomputed:
        if args.weights or args.force_rmse:
            which = "--weights" if args.weights else "--force-rmse"
            raise ValueError(f"calibrate fits the weights (inverse force RMSE on REF), so {which} has no effect; "
                             "name the members with --models, --ensemble-file or --weights-file")
        if args.weights_file and args.models:
            raise ValueError("--weights-file names the members to calibrate (its weights are fitted again); "
                             "give it or --models, not both")
        check_ensemble_args(args)


def run(args: argparse.Namespace) -> int:
    from hetens.io.files import check_output
    from hetens.rescore.calibrate import calibrate, format_calibration, write_weights_file
    from hetens.rescore.precomputed import read_reference

    check_output(args.output, [args.reference, *(args.precomputed or [])], option="-o")
    _check_arguments(args)
    predictions = _predictions(args)
    reference = read_reference(args.reference, args.index, predictions.frames, energy_key=args.ref_energy_key,
                               forces_key=args.ref_forces_key, position_tol=args.position_tol)
    result = calibrate(
        predictions, reference, coverage_target=args.coverage, held_out_fraction=args.held_out, seed=args.seed,
        witnesses=args.witness_names or (), error_reference=args.error_reference,
    )
    path = write_weights_file(result, args.output)
    human = sys.stderr if args.json else sys.stdout
    print(format_calibration(result), file=human)
    print(f"wrote {path}", file=human)
    if args.json:
        print(json.dumps({**result.to_json(), "output": str(path)}))
    return 0
