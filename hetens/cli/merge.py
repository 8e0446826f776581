"""``hetens merge``: DFT results back into a selection, one energy reference, training sets."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from hetens.cli.options import add_json_option


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="bring DFT results back into a selection and write training sets (extxyz, pacemaker, DeePMD)",
        description="Match the DFT results (any format ASE reads, any number of files) to the frames "
        "SELECTION queued for DFT (a folder written by 'hetens select --out-dir'), fit per-element "
        "energy shifts E_DFT - E_uMLIP on them, apply the shifts to the uMLIP-labelled frames, and "
        "write the merged training set to OUT_DIR with a provenance.json.",
    )
    parser.add_argument("selection", metavar="SELECTION", help="a Uc_<value> folder of 'hetens select --out-dir'")
    parser.add_argument("dft", nargs="*", metavar="DFT",
                        help="DFT results (OUTCAR, vasprun.xml, extxyz...); none when nothing was queued")
    parser.add_argument("-o", "--out-dir", required=True, metavar="OUT_DIR", help="output folder (created)")
    parser.add_argument("--threshold", type=float, metavar="U_c",
                        help="which Uc_<value> folder when SELECTION holds several")
    parser.add_argument("--format", dest="formats", nargs="+", default=["extxyz", "pacemaker"],
                        choices=["extxyz", "pacemaker", "deepmd"],
                        help="training-set formats (default: extxyz pacemaker; deepmd needs dpdata)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="merge without queued frames that have no DFT result, and report them")
    parser.add_argument("--no-align", dest="align", action="store_false",
                        help="keep uMLIP energies on their own reference (no per-element shifts)")
    parser.add_argument("--position-tol", type=float, default=1e-3, metavar="A",
                        help="largest atom displacement between a queued frame and its DFT result (0.001 A)")
    parser.add_argument("--energy-key", default="REF_energy", help="extxyz key of the energy (REF_energy)")
    parser.add_argument("--forces-key", default="REF_forces", help="extxyz key of the forces (REF_forces)")
    parser.add_argument("--stress-key", default="REF_stress", help="extxyz key of the stress (REF_stress)")
    parser.add_argument("--umlip-weight", type=float, default=1.0, help="config_weight of uMLIP frames (1)")
    parser.add_argument("--dft-weight", type=float, default=1.0, help="config_weight of DFT frames (1)")
    parser.add_argument("--dft-format", metavar="FMT", help="ASE format of the DFT files (guessed by default)")
    parser.add_argument("--dft-energy-key", metavar="KEY", help="info key of the DFT energy, if not a result")
    parser.add_argument("--dft-forces-key", metavar="KEY", help="arrays key of the DFT forces, if not a result")
    add_json_option(parser)
    parser.set_defaults(func=run)


def format_merge(report: dict) -> str:
    n, a = report["n_frames"], report["n_atoms"]
    frac = report["dft_fraction_atoms"]
    lines = [
        f"{n['total']} frames ({n['umlip']} uMLIP-labelled from {report['label_source']}, {n['dft']} DFT, "
        f"{n['missing']} missing), {a['total']} atoms; DFT fraction (atoms) "
        + ("-" if frac is None else f"{100 * frac:.1f} %"),
    ]
    if report["shifts_eV_per_atom"] is not None:
        shifts = ", ".join(f"{e} {s:+.6f}" for e, s in report["shifts_eV_per_atom"].items())
        lines.append(
            f"per-element shifts [eV/atom] over {report['fit_frames']} {report.get('fit_on') or 'DFT frames'}: "
            f"{shifts}; residual "
            f"RMSE {1000 * report['fit_residual_rmse_eV_per_atom']:.3f} meV/atom, max "
            f"{1000 * report['fit_residual_max_eV_per_atom']:.3f} meV/atom"
        )
    for kind, path in report.get("files", {}).items():
        lines.append(f"  {kind}: {path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from hetens.distill.merge import merge_selection

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the report's warnings are printed below
        result = merge_selection(
            args.selection,
            args.dft,
            args.out_dir,
            threshold=args.threshold,
            formats=args.formats,
            keys={"energy": args.energy_key, "forces": args.forces_key, "stress": args.stress_key},
            align=args.align,
            allow_missing=args.allow_missing,
            position_tol=args.position_tol,
            umlip_weight=args.umlip_weight,
            dft_weight=args.dft_weight,
            dft_format=args.dft_format,
            dft_energy_key=args.dft_energy_key,
            dft_forces_key=args.dft_forces_key,
        )
    for message in result.report["warnings"]:
        print(f"hetens merge: warning: {message}", file=sys.stderr)
    print(format_merge(result.report), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result.report))
    return 0
