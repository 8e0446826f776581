"""``hetens single STRUCTURE``: one structure through the ensemble (janus-core's ``singlepoint``).

Prints the energy (eV and eV/atom), a forces summary, the stress (GPa, when
periodic), U with the largest per-atom u, the most deviating member and every
member's energy; ``--json`` prints the same as one object; ``-o`` writes the
annotated frame (extxyz with U). Exit codes: 0, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hetens.cli.config import add_config_option
from hetens.cli.options import (
    add_ensemble_options,
    add_json_option,
    add_member_error_options,
    ensemble_from_args,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "single", help="energy, forces, stress and U of one structure",
        description="Evaluate one structure with a heterogeneous ensemble and print its energy (eV, "
        "eV/atom), forces (max |F|, RMS, eV/A), stress (GPa, periodic cells), the universal uncertainty "
        "U and the largest per-atom u (eV/A), the member deviating most and each member's energy. "
        "For many structures use 'hetens score'.",
    )
    parser.add_argument("structure", help="any ASE-readable structure file")
    parser.add_argument("--index", default="-1", help="frame of STRUCTURE (default: last)")
    add_ensemble_options(parser)
    add_member_error_options(parser)
    parser.add_argument("-o", "--output", help="write the frame with the ensemble's results and U (extxyz)")
    add_json_option(parser)
    add_config_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hetens.io.reading import iter_frames
    from hetens.jobs.singlepoint import single_point

    frames = [atoms for _, atoms in iter_frames(args.structure, args.index)]
    if len(frames) != 1:
        raise ValueError(f"{args.structure}: --index {args.index} selects {len(frames)} frames; "
                         "hetens single evaluates one (use 'hetens score' for many)")
    atoms = frames[0]
    atoms.calc = None
    output = Path(args.output) if args.output else None
    if output is not None:
        from hetens.cli.md import check_outputs

        if output.suffix.lower() not in (".extxyz", ".xyz"):
            raise ValueError(f"-o {output}: the frame is written as extended XYZ with U; use a .extxyz name")
        check_outputs(Path(args.structure), {"-o": output})

    with ensemble_from_args(args) as calc:
        summary, frame = single_point(atoms, calc)
    if output is not None:
        from hetens.io.files import write_frames_atomic

        write_frames_atomic(output, [frame], format="extxyz")
    summary = {"structure": args.structure, "index": args.index} | summary | {
        "output": str(output) if output else None}
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    """The human-readable lines of ``hetens single``."""
    lines = [
        f"structure      {s['structure']} ({s['formula']}, {s['natoms']} atoms)",
        f"energy         {s['energy']:.6f} eV  ({s['energy_per_atom']:.6f} eV/atom)",
        f"forces         max |F| {s['forces_max']:.4f} eV/A  RMS {s['forces_rms']:.4f} eV/A",
    ]
    if s["stress_GPa"] is not None:
        xx, yy, zz, yz, xz, xy = s["stress_GPa"]
        lines.append(f"stress [GPa]   xx {xx:.4f}  yy {yy:.4f}  zz {zz:.4f}  yz {yz:.4f}  xz {xz:.4f}  xy {xy:.4f}"
                     f"  (pressure {s['pressure_GPa']:.4f})")
    else:
        lines.append("stress         - (not periodic in all three directions)")
    lines += [
        f"U              {s['U']:.4f} eV/A  (max per-atom u {s['max_u']:.4f} eV/A on atom {s['max_u_atom']})",
        f"energy spread  {s['energy_std']:.4f} eV/atom",
        f"most deviating {s['most_deviating']}",
    ]
    from hetens.catalogue.u_scale import u_scale_line, witness_note

    roles = dict(zip(s["members"], s.get("roles") or ["predictor"] * len(s["members"])))
    note = witness_note(s["most_deviating"], roles)
    if note:
        lines[-1] += f"  ({note})"
    scale = u_scale_line(s["U"], s["members"])
    if scale:
        lines.append(f"U scale        {scale}")
    width = max(len(n) for n in [*s["members"], "members"])
    roles = s.get("roles") or ["predictor"] * len(s["members"])
    predictor_weights = s.get("predictor_weights") or s["weights"]
    lines.append(f"{'members':<{width + 2}}  role       U weight  predictor weight   energy [eV]   [eV/atom]")
    for name, role, weight, pw in zip(s["members"], roles, s["weights"], predictor_weights):
        e, per = s["member_energies"][name], s["member_energies_per_atom"][name]
        energy = "dropped" if e is None else f"{e:13.6f}   {per:9.6f}"
        if role == "witness" and e is not None:
            energy += "  (witness: in U only; its energy may be on another reference)"
        lines.append(f"  {name:<{width}}  {role:<9}  {weight:8.3f}  {pw:16.3f}  {energy}")
    if "witness" in roles:
        lines.append("energy, forces and stress are the predictors' weighted mean; U uses every member")
    if s.get("output"):
        lines.append(f"written        {s['output']}")
    return "\n".join(lines)
