"""Bad files and bad paths: one table, the same cases through the Python API and the CLI.

Each row names a failure (missing, empty, cut-short or corrupt file, a frame
without the energy/forces/U a command needs, misaligned predictions, an
unknown member spec, an unwritable output, an output that is an input), the
exact exception class the Python API raises and a regex its message must
match (file, frame, problem). Through the CLI (``hetens.cli.main.main``,
in-process) the same case must exit 2 with exactly one stderr line matching
the same regex, no traceback, no output file and no temporary file left.

Almost every case fails before any model loads; the few that need a live
member use the shipped SevenNet 7net-0.
"""

from __future__ import annotations

import dataclasses

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.md.verlet import VelocityVerlet

from hetens.cli.main import main
from hetens.errors import AlignmentError, FrameReadError, UnknownModelError

from conftest import tungsten_cell

N_FRAMES = 3
N_ATOMS = 16
LINES_PER_FRAME = N_ATOMS + 2


def _labelled(seed: int, energy: bool = True, forces: bool = True, u: float | None = None):
    frames = []
    for k in range(N_FRAMES):
        atoms = tungsten_cell(2, seed=k)
        rng = np.random.default_rng(100 * seed + k)
        labels: dict[str, Any] = {}
        if energy:
            labels["energy"] = -200.0 + k + 0.1 * rng.normal()
        if forces:
            labels["forces"] = 0.1 * rng.normal(size=(N_ATOMS, 3))
        atoms.calc = SinglePointCalculator(atoms, **labels)
        if u is not None:
            atoms.info["hetens_U"] = u * (k + 1)
            atoms.info["hetens_members"] = "m0,m1"
        frames.append(atoms)
    return frames


def _edit_lines(source: Path, target: Path, edit: Callable[[list[str]], list[str]]) -> None:
    target.write_text("".join(edit(source.read_text().splitlines(True))))


def _replace_line(index: int, text: str):
    def edit(lines):
        lines[index] = text
        return lines

    return edit


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The good and bad files of the table (3 frames of 16 W atoms each)."""
    d = tmp_path_factory.mktemp("data")
    write(d / "a.extxyz", _labelled(1))
    write(d / "b.extxyz", _labelled(2))
    write(d / "ref.extxyz", _labelled(3))
    write(d / "noforces.extxyz", _labelled(4, forces=False))
    write(d / "noenergy.extxyz", _labelled(4, energy=False))
    write(d / "scored.extxyz", _labelled(5, u=0.1))
    write(d / "two.extxyz", _labelled(6)[:2])
    a = d / "a.extxyz"
    (d / "empty.extxyz").write_text("")
    # Frame 1 announces 16 atoms; the file ends after 8 of them.
    _edit_lines(a, d / "trunc.extxyz", lambda lines: lines[: LINES_PER_FRAME + 2 + 8])
    _edit_lines(d / "scored.extxyz", d / "scored_trunc.extxyz", lambda lines: lines[: LINES_PER_FRAME + 2 + 8])
    # Frame 1, atom 3: a word in a coordinate column.
    _edit_lines(a, d / "garbage.extxyz", _replace_line(LINES_PER_FRAME + 2 + 3, "W 0.1 zz 0.3 0.1 0.1 0.1\n"))
    # Frame 1: a Lattice of 7 numbers.
    lines = a.read_text().splitlines(True)
    bad_lattice = lines[LINES_PER_FRAME + 1].replace('Lattice="6.34 0.0 0.0', 'Lattice="6.34', 1)
    _edit_lines(a, d / "badlat.extxyz", _replace_line(LINES_PER_FRAME + 1, bad_lattice))
    scored_lines = (d / "scored.extxyz").read_text().splitlines(True)
    _edit_lines(
        d / "scored.extxyz", d / "scored_badlat.extxyz",
        _replace_line(LINES_PER_FRAME + 1, scored_lines[LINES_PER_FRAME + 1].replace('Lattice="6.34 0.0', 'Lattice="6.34', 1)),
    )
    # Frame 2, atom 5 moved by about 2.7 A.
    _edit_lines(d / "b.extxyz", d / "moved.extxyz", _replace_line(2 * LINES_PER_FRAME + 2 + 5, "W 1.0 1.0 1.0 0 0 0\n"))
    frames = _labelled(2)
    short = frames[1][:-1]
    short.calc = SinglePointCalculator(short, energy=-1.0, forces=np.zeros((N_ATOMS - 1, 3)))
    frames[1] = short
    write(d / "natoms.extxyz", frames)
    return d


@pytest.fixture
def work(data, tmp_path) -> Path:
    """A fresh copy of the data folder: each case checks what it leaves there."""
    folder = tmp_path / "work"
    shutil.copytree(data, folder)
    return folder


@pytest.fixture(scope="module")
def live_calc(sevenn_member):
    from hetens import HeterogeneousEnsembleCalculator

    return HeterogeneousEnsembleCalculator([sevenn_member, dataclasses.replace(sevenn_member, name="copy")])


# ------------------------------------------------------------------ the Python API side


def _score_pre(*names, out="out.extxyz", **kwargs):
    from hetens.rescore.precomputed_scoring import score_precomputed

    def call(d: Path, calc):
        return score_precomputed([d / n for n in names], d / out if out else None, **kwargs)

    return call


def _with_reference(reference: str, out: str = "out.extxyz"):
    from hetens.rescore.precomputed_scoring import score_precomputed

    def call(d: Path, calc):
        return score_precomputed([d / "a.extxyz", d / "b.extxyz"], d / out, reference=d / reference)

    return call


def _score_live(name: str, out: str = "out.extxyz", **kwargs):
    from hetens.jobs.score_live import score_live

    def call(d: Path, calc):
        kwargs_ = {k: d / v if k == "reference" else v for k, v in kwargs.items()}
        return score_live(d / name, d / out, calc, progress="off", **kwargs_)

    call.needs_model = True
    return call


def _select(name: str, out_dir: str | None = None, **kwargs):
    from hetens.rescore.select import select_frames

    return lambda d, calc: select_frames(d / name, [0.15], out_dir=d / out_dir if out_dir else None, **kwargs)


def _calibrate(reference: str, out: str = "w.json"):
    """What ``hetens calibrate --precomputed`` does before fitting: read, check, write."""
    from hetens.io.files import check_output
    from hetens.rescore.calibrate import calibrate, write_weights_file
    from hetens.rescore.precomputed import check_alignment, load_predictions, read_frame_arrays

    def call(d: Path, calc):
        preds = [d / "a.extxyz", d / "b.extxyz"]
        check_output(d / out, [d / reference, *preds], option="-o")
        predictions = load_predictions(preds)
        labels = read_frame_arrays(d / reference, require_energy=False)
        check_alignment(predictions.frames, labels)
        return write_weights_file(calibrate(predictions, labels), d / out)

    return call


def _iter(name: str, index: str = ":"):
    from hetens.io.reading import iter_frames

    return lambda d, calc: list(iter_frames(d / name, index))


def _scan(name: str):
    from hetens.io.reading import scan_extxyz_info

    return lambda d, calc: list(scan_extxyz_info(d / name))


def _load_member(spec: str):
    import hetens

    return lambda d, calc: hetens.load_member(spec, device="cpu")


def _observer(kind: str, out: str):
    from hetens.monitor import FlagWriter, TrajectoryWriter, UncertaintyLogger

    def call(d: Path, calc):
        atoms = tungsten_cell(2)
        dyn = VelocityVerlet(atoms, timestep=1.0)
        if kind == "log":
            return UncertaintyLogger(dyn, d / out)
        if kind == "flag":
            return FlagWriter(dyn, d / out, 0.5)
        return TrajectoryWriter(dyn, d / out)

    return call


# ------------------------------------------------------------------------------ table


@dataclass(frozen=True)
class Case:
    api: Callable | None  # (data folder, live calc) -> anything; must raise ``error``
    argv: list[str] | None  # hetens arguments, "{d}" is the data folder
    error: type[BaseException]
    message: str  # regex on the message / the stderr line
    out: str | None = None  # output that must not exist afterwards (relative to the folder)


PRE = ["score", "--precomputed"]
A_B = ["{d}/a.extxyz", "{d}/b.extxyz"]
SEVENN = ["--models", "sevenn:7net-0", "--witnesses", "sevenn:7net-0@name=w", "--device", "cpu"]
NO_MODEL = ["--models", "nosuch:model"]  # never reached: the files fail first
MD = ["--log", "{d}/md.csv", "--steps", "2"]

TABLE = {
    # -- missing files
    "missing/prediction": Case(
        _score_pre("a.extxyz", "nope.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/nope.extxyz", "-o", "{d}/out.extxyz"],
        FileNotFoundError, r"prediction file .*nope\.extxyz does not exist", "out.extxyz"),
    "missing/reference": Case(
        _with_reference("nope.extxyz"), [*PRE, *A_B, "--reference", "{d}/nope.extxyz", "-o", "{d}/out.extxyz"],
        FileNotFoundError, r"input file .*nope\.extxyz does not exist", "out.extxyz"),
    "missing/live-input": Case(
        _score_live("nope.extxyz"), ["score", "{d}/nope.extxyz", "-o", "{d}/out.extxyz", *NO_MODEL],
        FileNotFoundError, r"input file .*nope\.extxyz does not exist", "out.extxyz"),
    "missing/select": Case(
        _select("nope.extxyz", "sel"), ["select", "{d}/nope.extxyz", "--threshold", "0.15", "--out-dir", "{d}/sel"],
        FileNotFoundError, r"input file .*nope\.extxyz does not exist", "sel"),
    "missing/calibrate-reference": Case(
        _calibrate("nope.extxyz"), ["calibrate", "--reference", "{d}/nope.extxyz", "--precomputed", *A_B, "-o", "{d}/w.json"],
        FileNotFoundError, r"input file .*nope\.extxyz does not exist", "w.json"),
    "missing/md-structure": Case(
        _iter("nope.extxyz", "-1"), ["md", "{d}/nope.extxyz", *MD, *NO_MODEL],
        FileNotFoundError, r"input file .*nope\.extxyz does not exist", "md.csv"),
    # -- empty files
    "empty/prediction": Case(
        _score_pre("a.extxyz", "empty.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/empty.extxyz", "-o", "{d}/out.extxyz"],
        FrameReadError, r"empty\.extxyz: the file is empty \(0 bytes\)", "out.extxyz"),
    "empty/live-input": Case(
        _score_live("empty.extxyz"), ["score", "{d}/empty.extxyz", "-o", "{d}/out.extxyz", *NO_MODEL],
        FrameReadError, r"empty\.extxyz: the file is empty", "out.extxyz"),
    "empty/select": Case(
        _select("empty.extxyz"), ["select", "{d}/empty.extxyz", "--threshold", "0.15"],
        FrameReadError, r"empty\.extxyz: the file is empty"),
    "empty/md-structure": Case(
        _iter("empty.extxyz", "-1"), ["md", "{d}/empty.extxyz", *MD, *NO_MODEL],
        FrameReadError, r"empty\.extxyz: the file is empty", "md.csv"),
    # -- cut short: frame 1 announces 16 atoms, the file ends after 8
    "truncated/prediction": Case(
        _score_pre("a.extxyz", "trunc.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/trunc.extxyz", "-o", "{d}/out.extxyz"],
        FrameReadError, r"trunc\.extxyz frame 1 is cut short: it announces 16 atoms .* 8 atom lines", "out.extxyz"),
    "truncated/live-input": Case(
        _score_live("trunc.extxyz"), ["score", "{d}/trunc.extxyz", "-o", "{d}/out.extxyz", *NO_MODEL],
        FrameReadError, r"trunc\.extxyz frame 1", "out.extxyz"),
    "truncated/select": Case(
        _select("scored_trunc.extxyz"), ["select", "{d}/scored_trunc.extxyz", "--threshold", "0.15"],
        FrameReadError, r"scored_trunc\.extxyz frame 1 is cut short: it announces 16 atoms"),
    "truncated/select-out-dir": Case(
        _select("scored_trunc.extxyz", "sel"),
        ["select", "{d}/scored_trunc.extxyz", "--threshold", "0.15", "--out-dir", "{d}/sel"],
        FrameReadError, r"scored_trunc\.extxyz frame 1 is cut short: it announces 16 atoms", "sel"),
    "truncated/md-structure": Case(
        _iter("trunc.extxyz", "1"), ["md", "{d}/trunc.extxyz", "--index", "1", *MD, *NO_MODEL],
        FrameReadError, r"trunc\.extxyz frame 1: .*8 atoms, expected 16", "md.csv"),
    # -- corrupt: a word in a coordinate column, a Lattice of 7 numbers
    "corrupt-coordinate/prediction": Case(
        _score_pre("a.extxyz", "garbage.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/garbage.extxyz", "-o", "{d}/out.extxyz"],
        FrameReadError, r"garbage\.extxyz frame 1: ValueError: could not convert string to float: 'zz'", "out.extxyz"),
    "corrupt-coordinate/live-input": Case(
        _score_live("garbage.extxyz"), ["score", "{d}/garbage.extxyz", "-o", "{d}/out.extxyz", *SEVENN],
        FrameReadError, r"garbage\.extxyz frame 1: ValueError: could not convert string to float", "out.extxyz"),
    "corrupt-coordinate/md-structure": Case(
        _iter("garbage.extxyz", "1"), ["md", "{d}/garbage.extxyz", "--index", "1", *MD, *NO_MODEL],
        FrameReadError, r"garbage\.extxyz frame 1: ValueError: could not convert", "md.csv"),
    "corrupt-lattice/prediction": Case(
        _score_pre("a.extxyz", "badlat.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/badlat.extxyz", "-o", "{d}/out.extxyz"],
        FrameReadError, r"badlat\.extxyz frame 1: unreadable comment line: .*Lattice", "out.extxyz"),
    "corrupt-lattice/select": Case(
        _select("scored_badlat.extxyz"), ["select", "{d}/scored_badlat.extxyz", "--threshold", "0.15"],
        FrameReadError, r"scored_badlat\.extxyz frame 1: bad comment line: .*Lattice"),
    "corrupt-lattice/reference": Case(
        _with_reference("badlat.extxyz"), [*PRE, *A_B, "--reference", "{d}/badlat.extxyz", "-o", "{d}/out.extxyz"],
        FrameReadError, r"badlat\.extxyz frame 1: unreadable comment line", "out.extxyz"),
    # -- labels missing where they are required
    "no-forces/prediction": Case(
        _score_pre("a.extxyz", "noforces.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/noforces.extxyz", "-o", "{d}/out.extxyz"],
        FrameReadError, r"noforces\.extxyz frame 0 has no forces under 'forces'.*--forces-key", "out.extxyz"),
    "no-energy/prediction": Case(
        _score_pre("a.extxyz", "noenergy.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/noenergy.extxyz", "-o", "{d}/out.extxyz"],
        FrameReadError, r"noenergy\.extxyz frame 0 has no energy under 'energy'.*--energy-key", "out.extxyz"),
    "no-forces/reference": Case(
        _with_reference("noforces.extxyz"), [*PRE, *A_B, "--reference", "{d}/noforces.extxyz", "-o", "{d}/out.extxyz"],
        FrameReadError, r"noforces\.extxyz frame 0 has no forces under 'forces'", "out.extxyz"),
    "no-forces/live-reference": Case(
        _score_live("a.extxyz", reference="noforces.extxyz"), None,
        FrameReadError, r"noforces\.extxyz frame 0 has no forces under 'forces'", "out.extxyz"),
    "no-forces/calibrate-reference": Case(
        _calibrate("noforces.extxyz"),
        ["calibrate", "--reference", "{d}/noforces.extxyz", "--precomputed", *A_B, "-o", "{d}/w.json"],
        FrameReadError, r"noforces\.extxyz frame 0 has no forces under 'forces'", "w.json"),
    "no-U/select": Case(
        _select("a.extxyz"), ["select", "{d}/a.extxyz", "--threshold", "0.15"],
        FrameReadError, r"a\.extxyz frame 0 has no hetens_U; .*hetens score"),
    "no-U/select-out-dir": Case(
        _select("a.extxyz", "sel"), ["select", "{d}/a.extxyz", "--threshold", "0.15", "--out-dir", "{d}/sel"],
        FrameReadError, r"a\.extxyz frame 0 has no hetens_U", "sel"),
    "unknown-label-source/select": Case(
        _select("scored.extxyz", label_source="nosuch"),
        ["select", "{d}/scored.extxyz", "--threshold", "0.15", "--label-source", "nosuch"],
        ValueError, r"--label-source 'nosuch' is not a member of the ensemble that scored .*scored\.extxyz "
                    r"frame 0; members: m0, m1"),
    "unknown-label-source/select-out-dir": Case(
        _select("scored.extxyz", "sel", label_source="nosuch"),
        ["select", "{d}/scored.extxyz", "--threshold", "0.15", "--label-source", "nosuch", "--out-dir", "{d}/sel"],
        ValueError, r"--label-source 'nosuch' is not a member of the ensemble that scored .*scored\.extxyz "
                    r"frame 0; members: m0, m1", "sel"),
    "no-U/plot": Case(
        None, ["plot", "{d}/a.extxyz", "-o", "{d}/figs"],
        FrameReadError, r"a\.extxyz frame 0 has no hetens_U", "figs"),
    # -- misaligned predictions
    "misaligned/frame-count": Case(
        _score_pre("a.extxyz", "two.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/two.extxyz", "-o", "{d}/out.extxyz"],
        AlignmentError, r"two\.extxyz holds 2 frames but .*a\.extxyz holds 3", "out.extxyz"),
    "misaligned/positions": Case(
        _score_pre("a.extxyz", "moved.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/moved.extxyz", "-o", "{d}/out.extxyz"],
        AlignmentError, r"moved\.extxyz frame 2: atom 5 \(W\) is 2\.\d+ A from its position in .*a\.extxyz frame 2",
        "out.extxyz"),
    "misaligned/atom-count": Case(
        _score_pre("a.extxyz", "natoms.extxyz"), [*PRE, "{d}/a.extxyz", "{d}/natoms.extxyz", "-o", "{d}/out.extxyz"],
        AlignmentError, r"natoms\.extxyz frame 1 has 15 atoms but .*a\.extxyz frame 1 has 16", "out.extxyz"),
    "misaligned/reference": Case(
        _with_reference("two.extxyz"), [*PRE, *A_B, "--reference", "{d}/two.extxyz", "-o", "{d}/out.extxyz"],
        AlignmentError, r"two\.extxyz holds 2 frames but .*a\.extxyz holds 3", "out.extxyz"),
    "misaligned/calibrate-reference": Case(
        _calibrate("moved.extxyz"),
        ["calibrate", "--reference", "{d}/moved.extxyz", "--precomputed", *A_B, "-o", "{d}/w.json"],
        AlignmentError, r"moved\.extxyz frame 2: atom 5 \(W\)", "w.json"),
    "misaligned/live-reference-count": Case(
        _score_live("a.extxyz", reference="two.extxyz"), None,
        AlignmentError, r"two\.extxyz holds 2 selected frames but the inputs hold 3", "out.extxyz"),
    # -- unknown member specs
    "unknown-family": Case(
        _load_member("nosuch:model"),
        ["score", "{d}/a.extxyz", "-o", "{d}/out.extxyz", "--models", "nosuch:model", "sevenn:7net-0"],
        UnknownModelError, r"unknown model family 'nosuch'; known families: sevenn", "out.extxyz"),
    "unknown-model": Case(
        _load_member("sevenn:not-a-model"),
        ["md", "{d}/a.extxyz", *MD, "--models", "sevenn:not-a-model", "sevenn:7net-0"],
        UnknownModelError, r"sevenn has no model 'not-a-model'.*known sevenn models: 7net-0", "md.csv"),
    # -- outputs that cannot be written
    "unwritable/no-folder-score": Case(
        _score_pre("a.extxyz", "b.extxyz", out="nodir/out.extxyz"), [*PRE, *A_B, "-o", "{d}/nodir/out.extxyz"],
        FileNotFoundError, r"cannot write .*nodir/out\.extxyz: folder .*nodir does not exist", "nodir"),
    "unwritable/no-folder-live": Case(
        _score_live("a.extxyz", out="nodir/out.extxyz"), ["score", "{d}/a.extxyz", "-o", "{d}/nodir/out.extxyz", *NO_MODEL],
        FileNotFoundError, r"cannot write .*nodir/out\.extxyz: folder .*nodir does not exist", "nodir"),
    "unwritable/no-folder-calibrate": Case(
        _calibrate("ref.extxyz", out="nodir/w.json"),
        ["calibrate", "--reference", "{d}/ref.extxyz", "--precomputed", *A_B, "-o", "{d}/nodir/w.json"],
        FileNotFoundError, r"cannot write .*nodir/w\.json: folder .*nodir does not exist", "nodir"),
    "unwritable/no-folder-log": Case(
        _observer("log", "nodir/u.csv"), ["md", "{d}/a.extxyz", "--log", "{d}/nodir/u.csv", *NO_MODEL],
        FileNotFoundError, r"cannot write .*nodir/u\.csv: folder .*nodir does not exist", "nodir"),
    "unwritable/proc-log": Case(  # os.access says yes to root in /proc; opening the file fails
        _observer("log", "/proc/hetens-run.csv"), ["md", "{d}/a.extxyz", "--log", "/proc/hetens-run.csv", *NO_MODEL],
        FileNotFoundError, r"cannot write /proc/hetens-run\.csv: opening it for writing fails \(.+\); "
                           r"give a file in a writable folder$"),
    "unwritable/parent-is-a-file-trajectory": Case(
        _observer("traj", "a.extxyz/t.extxyz"), ["md", "{d}/b.extxyz", *MD, "--traj", "{d}/a.extxyz/t.extxyz", *NO_MODEL],
        NotADirectoryError, r"cannot write .*a\.extxyz/t\.extxyz: .*a\.extxyz is a file, not a folder", "md.csv"),
    "unwritable/parent-is-a-file-flagged": Case(
        _observer("flag", "a.extxyz/f.extxyz"), [*PRE, *A_B, "-o", "{d}/a.extxyz/out.extxyz"],
        NotADirectoryError, r"a\.extxyz is a file, not a folder"),
    "unwritable/parent-is-a-file-select": Case(
        _select("scored.extxyz", "a.extxyz/sel"),
        ["select", "{d}/scored.extxyz", "--threshold", "0.15", "--out-dir", "{d}/a.extxyz/sel"],
        NotADirectoryError, r"cannot create output folder .*a\.extxyz/sel: Not a directory"),
    "unwritable/read-only-folder": Case(
        _score_pre("a.extxyz", "b.extxyz", out="ro/out.extxyz"), [*PRE, *A_B, "-o", "{d}/ro/out.extxyz"],
        PermissionError, r"cannot write .*ro/out\.extxyz: folder .*ro is not writable", "ro/out.extxyz"),
    # -- an output that is an input
    "output-is-input/precomputed": Case(
        _score_pre("a.extxyz", "b.extxyz", out="a.extxyz"), [*PRE, *A_B, "-o", "{d}/a.extxyz"],
        ValueError, r"output .*a\.extxyz is also the input .*a\.extxyz"),
    "output-is-input/live": Case(
        _score_live("a.extxyz", out="a.extxyz"), ["score", "{d}/a.extxyz", "-o", "{d}/a.extxyz", *NO_MODEL],
        ValueError, r"output .*a\.extxyz is also the input|-o .*a\.extxyz is also the input"),
    "output-is-input/calibrate": Case(
        _calibrate("ref.extxyz", out="ref.extxyz"),
        ["calibrate", "--reference", "{d}/ref.extxyz", "--precomputed", *A_B, "-o", "{d}/ref.extxyz"],
        ValueError, r"-o .*ref\.extxyz is also the input .*ref\.extxyz"),
    "output-is-input/md-trajectory": Case(
        None, ["md", "{d}/a.extxyz", *MD, "--traj", "{d}/a.extxyz", *NO_MODEL],
        ValueError, r"--traj .*a\.extxyz is also STRUCTURE"),
}



def _cases(side: str):
    for name, case in TABLE.items():
        if getattr(case, side) is None:
            continue
        marks = []
        if name == "unwritable/read-only-folder":
            marks.append(pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders"))
        yield pytest.param(case, id=name, marks=marks)


def _prepare(work: Path) -> None:
    (work / "ro").mkdir()
    os.chmod(work / "ro", 0o555)


def _leftovers(folder: Path, before: set[str]) -> list[str]:
    """Files created in ``folder`` (recursively) that were not there before."""
    now = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    return sorted(now - before)


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", list(_cases("api")))
def test_python_api_raises_the_documented_error(case: Case, work: Path, request):
    _prepare(work)
    before, contents = _snapshot(work), _contents(work)
    calc = request.getfixturevalue("live_calc") if getattr(case.api, "needs_model", False) else None
    with pytest.raises(case.error, match=case.message) as caught:
        case.api(work, calc)
    assert caught.type is case.error, f"{caught.type.__name__} is not {case.error.__name__}: {caught.value}"
    assert "\n" not in str(caught.value)
    assert _leftovers(work, before) == []  # no output, no temporary file, no folder
    assert _contents(work) == contents  # no input touched


@pytest.mark.parametrize("case", list(_cases("argv")))
def test_cli_exits_2_with_one_line(case: Case, work: Path, capsys):
    _prepare(work)
    before, contents = _snapshot(work), _contents(work)
    argv = [arg.format(d=work) for arg in case.argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hetens {argv[0]}: error: ")
    assert re.search(case.message, lines[0]), lines[0]
    assert "Traceback" not in err
    if case.out is not None:
        assert not (work / case.out).exists()
    assert _leftovers(work, before) == []
    assert _contents(work) == contents


def test_debug_shows_the_traceback(work: Path):
    with pytest.raises(FrameReadError, match="the file is empty"):
        main(["--debug", "select", str(work / "empty.extxyz"), "--threshold", "0.1"])


def test_subprocess_cli_has_no_traceback(work: Path):
    """The installed entry point, in its own process: exit 2, one line, no traceback."""
    import subprocess
    import sys

    out = work / "out.extxyz"
    proc = subprocess.run(
        [sys.executable, "-m", "hetens.cli.main", "score", "--precomputed", str(work / "a.extxyz"),
         str(work / "moved.extxyz"), "-o", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "moved.extxyz frame 2: atom 5" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_good_files_of_the_table_are_good(data: Path, tmp_path: Path):
    """The table's bad files are bad only where it says: the good ones score and select."""
    from hetens.rescore.precomputed_scoring import score_precomputed
    from hetens.rescore.select import select_frames

    result = score_precomputed([data / "a.extxyz", data / "b.extxyz"], tmp_path / "s.extxyz",
                               reference=data / "ref.extxyz", progress="off")
    assert result.report["n_frames"] == N_FRAMES
    assert len(read(tmp_path / "s.extxyz", ":")) == N_FRAMES
    selection = select_frames(data / "scored.extxyz", [0.15], out_dir=tmp_path / "sel", anchors=0)
    assert selection.report["thresholds"][0]["n_frames_umlip"] == 1
    anchored = select_frames(data / "scored.extxyz", [0.15], out_dir=tmp_path / "anchored")
    assert anchored.report["thresholds"][0]["n_anchors"] == 1  # the one calm frame goes to DFT too
    assert anchored.report["thresholds"][0]["n_frames_umlip"] == 0
