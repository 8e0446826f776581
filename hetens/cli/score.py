"""``hetens score``: rescore structures with live members or with predictions made elsewhere."""

from __future__ import annotations

import argparse
import json
import sys

from hetens.cli.config import add_config_option
from hetens.cli.options import (
    add_ensemble_options,
    add_error_reference_option,
    add_json_option,
    add_member_error_options,
    check_ensemble_args,
    check_model_specs,
    ensemble_from_args,
    ensemble_options,
)


def add_reading_options(parser: argparse.ArgumentParser, *, predictions: bool) -> None:
    """``--index``, reference label keys, ``--position-tol`` (and prediction keys)."""
    parser.add_argument(
        "--index",
        default=":",
        metavar="SEL",
        help="frames of each file, ASE syntax: ':' (all, default), '-1', '0:100', '::10'",
    )
    if predictions:
        parser.add_argument(
            "--energy-key",
            default="energy",
            help="where prediction files keep the energy: 'energy' (calculator result, "
            "default) or an info key",
        )
        parser.add_argument(
            "--forces-key",
            default="forces",
            help="where prediction files keep the forces: 'forces' (default) or an arrays key",
        )
    parser.add_argument(
        "--ref-energy-key",
        default="energy",
        help="reference energy key, e.g. REF_energy (default: the calculator result)",
    )
    parser.add_argument(
        "--ref-forces-key",
        default="forces",
        help="reference forces key, e.g. REF_forces (default: the calculator result)",
    )
    parser.add_argument(
        "--position-tol",
        type=float,
        default=1e-3,
        metavar="A",
        help="largest atom displacement between files still taken as the same frame (default 0.001 A)",
    )
    add_error_reference_option(parser)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "score",
        help="rescore structures: ensemble energy/forces/stress, U, per-atom u",
        description="Rescore every frame of FILE... with the ensemble (live members), or combine "
        "predictions made elsewhere (--precomputed, one file per member). Each output frame carries "
        "the ensemble energy, forces and stress as its results, and U (hetens_U), the energy spread "
        "and the per-atom uncertainty (hetens_u).",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="structures to score (extxyz, ASE trajectory or database, OUTCAR, vasprun.xml...)",
    )
    parser.add_argument(
        "-o", "--output", metavar="OUT.extxyz", help="scored frames (extxyz); required with FILE"
    )
    parser.add_argument("--format", help="ASE format of FILE (guessed from the name by default)")
    pre = parser.add_argument_group("precomputed predictions")
    pre.add_argument(
        "--precomputed",
        nargs="+",
        metavar="PRED",
        help="one file per member with its energy and forces for the same frames, same order",
    )
    pre.add_argument(
        "--names", nargs="+", metavar="NAME", help="member names for PRED files (default: file names)"
    )
    pre.add_argument(
        "--witness-names", nargs="+", metavar="NAME",
        help="PRED members (by their names: --names, or the file names) that are witnesses: their "
        "forces enter U only (docs/witnesses.md); a --weights-file with roles marks them too",
    )
    pre.add_argument("--jobs", type=int, default=1, help="read PRED files in this many processes (default 1)")
    parser.add_argument(
        "--reference",
        metavar="REF",
        help="reference (DFT) energies/forces for the same frames: adds member errors, "
        "Spearman rho(U, eps) and hetens_eps per frame",
    )
    add_reading_options(parser, predictions=True)
    add_ensemble_options(parser)
    add_member_error_options(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="frames per model call for members that evaluate batches (default 16)",
    )
    parser.add_argument(
        "--max-batch-atoms",
        type=int,
        default=4096,
        help="atoms per model call at most, to bound (GPU) memory (default 4096)",
    )
    parser.add_argument("--no-batch", action="store_true", help="evaluate frame by frame through ASE")
    parser.add_argument(
        "--keep-member-forces",
        action="store_true",
        help="also write each member's forces (arrays hetens_member_forces, N x 3M) and "
        "stresses, needed by 'select --label-source MEMBER'",
    )
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "log", "off"),
        default="auto",
        help="progress bar on a terminal, a log line every 30 s otherwise (auto)",
    )
    _add_cluster_options(parser)
    add_json_option(parser)
    add_config_option(parser)
    parser.set_defaults(func=run)


def _check_arguments(args: argparse.Namespace) -> None:
    check_model_specs(args, args.files)
    if args.precomputed and args.files:
        raise ValueError("give structure FILEs (live members) or --precomputed PRED files, not both")
    if not args.precomputed and not args.files:
        raise ValueError("give structure FILEs to score, or --precomputed PRED files")
    if args.precomputed:
        if args.models or getattr(args, "ensemble_file", None) or getattr(args, "witnesses", None):
            raise ValueError(
                "--models/--witnesses/--ensemble-file run live members; with --precomputed, name members "
                "with --names and mark witnesses with --witness-names"
            )
        if args.max_energy_deviation is not None:
            raise ValueError("--max-energy-deviation applies to live members, not to --precomputed predictions")
        if args.on_member_error != "raise":
            raise ValueError("--on-member-error applies to live members, not to --precomputed predictions")
    else:
        if not args.output:
            raise ValueError("live scoring needs -o OUT.extxyz for the scored frames")
        if args.names:
            raise ValueError("--names names PRED files; live members are named by their specs (--models)")
        if args.witness_names:
            raise ValueError("--witness-names marks PRED files; give live witnesses with --witnesses SPEC...")
        _check_paths(args)
        check_ensemble_args(args)


def _check_paths(args: argparse.Namespace) -> None:
    """Live scoring: inputs readable and the output writable (not an input) before any model loads."""
    from hetens.io.files import check_output
    from hetens.io.reading import check_readable, check_selection

    for path in args.files:
        check_readable(path, scan=True, format=args.format)
        check_selection(path, args.index, args.format)
    if args.reference is not None:
        check_readable(args.reference, scan=True)
    check_output(args.output, [*args.files, args.reference], option="-o")


def _precomputed_witnesses(args: argparse.Namespace) -> list[str]:
    """Witness names: ``--witness-names``, else those the weights file marks as witnesses."""
    if args.witness_names:
        return list(args.witness_names)
    if args.weights_file:
        from hetens.core.weights import read_weights_roles

        return [name for name, role in read_weights_roles(args.weights_file).items() if role == "witness"]
    return []


def _precomputed_weights(args: argparse.Namespace):
    if args.weights_file:
        from hetens.core.weights import read_weights_file

        return read_weights_file(args.weights_file)
    return args.weights


def run(args: argparse.Namespace) -> int:
    from hetens.errors import Interrupted, MemberFailedError
    from hetens.rescore.report import format_report
    from hetens.jobs.score_live import score_live
    from hetens.rescore.precomputed_scoring import score_precomputed

    _check_arguments(args)
    human = sys.stderr if args.json else sys.stdout
    options = score_options(args)
    calc = None
    try:
        if args.cluster:
            result = _score_on_cluster(args, options, human)
        elif args.precomputed:
            result = score_precomputed(args.precomputed, args.output, options)
        else:
            calc = ensemble_from_args(args)
            result = score_live(args.files, args.output, calc, options)
    except MemberFailedError as exc:
        print(f"hetens score: error: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", []):
            print(f"hetens score: {note}", file=sys.stderr)
        return 1
    except Interrupted as exc:  # Ctrl-C: the complete frames were kept in OUT.partial.extxyz
        print(f"hetens score: {exc}", file=sys.stderr)
        return 130
    finally:
        if calc is not None:
            calc.close()  # stops worker processes
    for note in result.notes:
        print(f"note: {note}", file=human)
    print(format_report(result.report), file=human)
    if result.output is not None:
        rate = result.report.get("frames_per_s")
        print(
            f"wrote {result.report['n_frames']} frames to {result.output}"
            + (f" ({rate:.2f} frames/s)" if rate else ""),
            file=human,
        )
    if args.json:
        print(json.dumps(result.report))
    return 0


def score_options(args: argparse.Namespace):
    """The :class:`~hetens.rescore.options.ScoreOptions` the command line gives (every scoring
    function, local or cluster, live or precomputed, takes it and reads the fields it needs)."""
    from hetens.rescore.options import ScoreOptions

    options = ScoreOptions(
        index=args.index,
        format=args.format,
        reference=args.reference,
        reference_energy_key=args.ref_energy_key,
        reference_forces_key=args.ref_forces_key,
        position_tol=args.position_tol,
        error_reference=args.error_reference,
        batch_size=args.batch_size,
        max_batch_atoms=args.max_batch_atoms,
        batched=not args.no_batch,
        keep_member_forces=args.keep_member_forces,
        progress=args.progress,
        cluster=args.cluster,
        chunk_size=args.chunk_size,
        worker_threads=args.worker_threads,
        restart=args.restart,
        keep_chunks=args.keep_chunks,
    )
    if not args.precomputed:
        return options
    return options.replace(
        names=args.names,
        weights=_precomputed_weights(args),
        force_rmse=args.force_rmse,
        energy_key=args.energy_key,
        forces_key=args.forces_key,
        jobs=args.jobs,
        witnesses=_precomputed_witnesses(args),
    )


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (Dask; pip install 'hetens[dask]'; see docs/distributed.md)")
    group.add_argument(
        "--cluster",
        metavar="SPEC",
        help="score on a Dask cluster: local:N (N worker processes here), a scheduler address "
        "(tcp://host:8786) or a YAML cluster file for SLURM/PBS; resumable",
    )
    group.add_argument(
        "--chunk-size", type=int, default=256, metavar="N", help="frames per chunk with --cluster (default 256)"
    )
    group.add_argument(
        "--worker-threads", type=int, metavar="N",
        help="torch threads per Dask worker (default: the cluster file's, else 1)",
    )
    group.add_argument(
        "--restart", action="store_true",
        help="discard chunks left in OUT.hetens-chunks by another run (default: resume a matching run)",
    )
    group.add_argument(
        "--keep-chunks", action="store_true", help="keep OUT.hetens-chunks after the output is assembled"
    )


def _score_on_cluster(args: argparse.Namespace, options, human):
    """``--cluster``: the same scoring on Dask workers (:mod:`hetens.distributed`), resumable."""
    from hetens.distributed import EnsembleSpec, score_on_cluster, score_precomputed_on_cluster

    if not args.output:
        raise ValueError("--cluster writes the scored frames: give -o OUT.extxyz")
    try:
        if args.precomputed:
            result = score_precomputed_on_cluster(args.precomputed, args.output, options)
        else:
            ensemble = EnsembleSpec.from_options(**ensemble_options(args))
            result = score_on_cluster(args.files, args.output, ensemble, options)
    except KeyboardInterrupt as exc:  # the chunks finished so far stay on disk
        for note in getattr(exc, "__notes__", []):
            print(f"hetens score: {note}", file=sys.stderr)
        raise
    info = result.report["cluster"]
    print(
        f"cluster {info['cluster']}: {info['chunks_computed']} chunks computed, {info['chunks_reused']} reused, "
        f"{info['retries']} retried, {info['workers'] or 0} workers",
        file=human,
    )
    return result
