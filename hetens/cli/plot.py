"""``hetens plot``: PNG figures of U from scored files."""

from __future__ import annotations

import argparse
import json
import sys

from hetens.cli.options import add_error_reference_option, add_json_option


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="figures: U vs true error, histogram of U, DFT fraction vs U_c, U along a trajectory",
        description="Draw PNG figures from files written by 'hetens score': U against the true max "
        "force error (log-log density with y = x, 10x, 0.1x guides and Spearman rho; needs "
        "hetens_eps in the frames or --reference), the histogram of U, the DFT fraction against the "
        "threshold U_c, and U along the frames (a trajectory).",
    )
    parser.add_argument("scored", nargs="+", metavar="SCORED", help="files written by 'hetens score'")
    parser.add_argument("-o", "--out-dir", default=".", metavar="DIR", help="folder for the PNG files (.)")
    parser.add_argument("--reference", metavar="REF", help="reference forces for the U-vs-error plot")
    parser.add_argument("--ref-energy-key", default="energy", help=argparse.SUPPRESS)
    parser.add_argument("--ref-forces-key", default="forces", help="reference forces key (default: forces)")
    add_error_reference_option(parser)
    parser.add_argument(
        "--threshold",
        "--thresholds",
        dest="thresholds",
        nargs="+",
        type=float,
        default=[],
        metavar="U_c",
        help="thresholds to mark, eV/A",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=None,
        metavar="KIND",
        help="which figures: u_vs_eps (U against the true error; needs eps) hist fraction trajectory "
        "(default: all that apply)",
    )
    parser.add_argument("--prefix", default="", help="prefix of the PNG file names")
    parser.add_argument("--index", default=":", metavar="SEL", help="frames of each file (ASE syntax)")
    add_json_option(parser)
    parser.set_defaults(func=run)


_EPS_MEANING = {
    "returned": "max force error of the forces hetens returns",
    "member_mean": "max force error of the plain mean of the predictors' forces",
}


def run(args: argparse.Namespace) -> int:
    from hetens.rescore.plots import PLOT_KINDS, load_plot_data, make_plots

    data = load_plot_data(
        args.scored,
        reference=args.reference,
        reference_energy_key=args.ref_energy_key,
        reference_forces_key=args.ref_forces_key,
        index=args.index,
        error_reference=args.error_reference,
    )
    kinds = args.kinds or PLOT_KINDS
    written = make_plots(data, args.out_dir, kinds=kinds, thresholds=args.thresholds, prefix=args.prefix)
    human = sys.stderr if args.json else sys.stdout
    if {"u_vs_eps", "error"} & set(kinds) and "u_vs_eps" not in written:
        print("note: no U-vs-error plot: the frames carry no hetens_eps; give --reference", file=human)
    if "u_vs_eps" in written:
        from hetens.rescore.metrics import spearman

        rho = spearman(data.uncertainty, data.eps)
        print(f"Spearman rho(U, eps) = {'n/a' if rho is None else f'{rho:.3f}'} "
              f"(eps: {_EPS_MEANING[args.error_reference] if args.reference else 'as the frames hetens_eps'})",
              file=human)
    for kind, path in written.items():
        print(f"{kind}: {path}", file=human)
    if args.json:
        print(json.dumps({kind: str(path) for kind, path in written.items()}))
    return 0
