"""``hetens calibrate``: member errors, weights, the top-N scan and a U bound, from reference data."""

from __future__ import annotations

import argparse
import json
import sys

from hetens.cli.options import add_json_option
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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--precomputed", nargs="+", metavar="PRED", help="one prediction file per member, same frames as REF"
    )
    source.add_argument(
        "--models",
        nargs="*",
        metavar="SPEC",
        help="live members evaluated on REF (no SPEC: the default offline ensemble)",
    )
    parser.add_argument("--names", nargs="+", metavar="NAME", help="member names for PRED files")
    parser.add_argument(
        "--witnesses", nargs="+", metavar="SPEC",
        help="live witness specs (forces in U only; docs/witnesses.md): the scan runs over the "
        "--models, every witness kept in U, and rho is reported with and without them "
        "(default: hetens.ensemble.DEFAULT_WITNESSES without --models SPEC, else none)",
    )
    parser.add_argument(
        "--witness-names", nargs="+", metavar="NAME",
        help="PRED members (by name: --names or the file names) that are witnesses",
    )
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
    live = parser.add_argument_group("live members")
    live.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    live.add_argument(
        "--allow-mixed-reference", action="store_true", help="allow members of different levels of theory"
    )
    live.add_argument("--batch-size", type=int, default=16, help="frames per model call (16)")
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
    from hetens.calculator import HeterogeneousEnsembleCalculator
    from hetens.cli.options import ensemble_members_from_args
    from hetens.rescore.score import predict_file

    members, witnesses = ensemble_members_from_args(args)
    calc = HeterogeneousEnsembleCalculator(
        members,
        witnesses=witnesses,
        allow_mixed_reference=args.allow_mixed_reference,
        device=args.device,
    )
    args.witness_names = [m.name for m in calc.members if m.role == "witness"]
    with calc:
        return predict_file(
            calc, args.reference, index=args.index, batch_size=args.batch_size, progress=args.progress
        )


def run(args: argparse.Namespace) -> int:
    from hetens.io.files import check_output
    from hetens.rescore.calibrate import calibrate, format_calibration, write_weights_file
    from hetens.rescore.precomputed import check_alignment, read_frame_arrays

    check_output(args.output, [args.reference, *(args.precomputed or [])], option="-o")
    if args.precomputed and args.witnesses:
        raise ValueError("--witnesses gives live witness specs; mark PRED witnesses with --witness-names")
    if not args.precomputed and args.witness_names:
        raise ValueError("--witness-names marks PRED files; give live witnesses with --witnesses SPEC...")
    predictions = _predictions(args)
    reference = read_frame_arrays(
        args.reference,
        args.index,
        energy_key=args.ref_energy_key,
        forces_key=args.ref_forces_key,
        require_energy=False,
    )
    check_alignment(predictions.frames, reference, args.position_tol)
    result = calibrate(
        predictions, reference, coverage_target=args.coverage, held_out_fraction=args.held_out, seed=args.seed,
        witnesses=args.witness_names or (),
    )
    path = write_weights_file(result, args.output)
    human = sys.stderr if args.json else sys.stdout
    print(format_calibration(result), file=human)
    print(f"wrote {path}", file=human)
    if args.json:
        print(json.dumps({**result.to_json(), "output": str(path)}))
    return 0
