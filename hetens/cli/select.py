"""``hetens select``: split scored frames at thresholds U_c into uMLIP-labelled and DFT-queued sets."""

from __future__ import annotations

import argparse
import json
import sys

from hetens.cli.options import add_json_option


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "select",
        help="uncertainty-aware distillation: which frames need DFT at each threshold U_c",
        description="For each threshold U_c, frames of SCORED with U < U_c keep uMLIP labels and the "
        "others are queued for DFT. Reports frames and atoms on each side and the DFT fraction in "
        "atoms and in frames. With --out-dir, writes DIR/Uc_<value>/umlip_labelled.extxyz and "
        "needs_dft.extxyz, each frame recording its label source (hetens_label_source).",
    )
    parser.add_argument("scored", nargs="+", metavar="SCORED", help="files written by 'hetens score'")
    parser.add_argument(
        "--threshold",
        "--thresholds",
        dest="thresholds",
        nargs="+",
        type=float,
        required=True,
        metavar="U_c",
        help="thresholds in eV/A",
    )
    parser.add_argument("--out-dir", metavar="DIR", help="write the two sets per threshold here")
    parser.add_argument(
        "--label-source",
        default="ensemble",
        metavar="ensemble|MEMBER",
        help="labels of uMLIP frames: the ensemble mean (default) or one member's "
        "(needs 'score --keep-member-forces')",
    )
    parser.add_argument("--index", default=":", metavar="SEL", help="frames of each file (ASE syntax)")
    parser.add_argument(
        "--anchors", type=int, default=None, metavar="N",
        help="at each U_c, also queue for DFT the N lowest-U frames below U_c of each element set "
        "(marked hetens_anchor): 'hetens merge' fits the energy reference on these calm frames, "
        "where the uMLIPs' errors do not bias it (default 3; 0 for the paper's plain split)",
    )
    add_json_option(parser)
    parser.set_defaults(func=run)


def format_selection(report: dict) -> str:
    lines = [
        f"{report['n_frames']} frames, {report['n_atoms']} atoms; uMLIP labels from {report['label_source']}",
        f"{'U_c [eV/A]':>10}  {'uMLIP frames':>12}  {'DFT frames':>10}  {'of which anchors':>16}  "
        f"{'DFT atoms':>10}  {'DFT % atoms':>11}  {'DFT % frames':>12}",
    ]
    for e in report["thresholds"]:
        lines.append(
            f"{e['threshold']:>10g}  {e['n_frames_umlip']:>12d}  {e['n_frames_dft']:>10d}  "
            f"{e.get('n_anchors', 0):>16d}  {e['n_atoms_dft']:>10d}  {100 * e['dft_fraction_atoms']:>11.1f}  "
            f"{100 * e['dft_fraction_frames']:>12.1f}"
        )
        if "files" in e:
            lines.append(f"{'':>10}  -> {e['files']['umlip_labelled']}, {e['files']['needs_dft']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from hetens.rescore.select import DEFAULT_ANCHORS, select_frames

    if args.anchors is not None and args.anchors < 0:
        raise ValueError(f"--anchors must be 0 or more; got {args.anchors}")
    anchors = DEFAULT_ANCHORS if args.anchors is None else args.anchors
    result = select_frames(args.scored, args.thresholds, out_dir=args.out_dir, label_source=args.label_source,
                           index=args.index, anchors=anchors)
    print(format_selection(result.report), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result.report))
    return 0
