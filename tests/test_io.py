"""hetens.io: the one extxyz scanner, the output check, the progress reporter, the keys."""

from __future__ import annotations

import io

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write
from ase.io.extxyz import read_xyz

from hetens.errors import FrameReadError
from hetens.io import keys
from hetens.io.extxyz import frame_text, scan_extxyz, scan_extxyz_lines
from hetens.io.files import EXTXYZ_SUFFIXES, StagedOutput, check_output
from hetens.io.progress import Progress


@pytest.fixture
def frames():
    out = []
    for k in range(5):
        atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat((1 + k % 3, 1, 1))
        atoms.rattle(0.02, seed=k)
        atoms.info["step"] = k
        out.append(atoms)
    return out


def test_scanner_spans_hold_exactly_one_frame_each(frames, tmp_path):
    """Byte spans (binary scan) parse back to each frame; text and binary scans agree."""
    path = tmp_path / "frames.extxyz"
    write(path, frames)
    data = path.read_bytes()
    spans = list(scan_extxyz(path, binary=True))
    assert [f.n_atoms for f in spans] == [len(a) for a in frames]
    assert [f.index for f in spans] == list(range(5))
    assert spans[0].offset == 0 and spans[-1].offset + spans[-1].length == len(data)
    for span, atoms, written in zip(spans, frames, read(path, ":")):
        text = data[span.offset : span.offset + span.length].decode()
        assert text == frame_text(atoms)  # the writer's frame is the scanner's frame
        again = next(read_xyz(io.StringIO(text), slice(None)))
        np.testing.assert_array_equal(again.positions, written.positions)
    text_scan = list(scan_extxyz(path))
    assert [(f.n_atoms, f.line) for f in text_scan] == [(f.n_atoms, f.line) for f in spans]
    assert [f.line for f in text_scan] == list(np.cumsum([0] + [len(a) + 2 for a in frames[:-1]]))
    assert text_scan[2].comment.strip() == spans[2].comment.decode().strip()


def test_scanner_reads_vec_lines_as_ase_does(tmp_path):
    path = tmp_path / "old.xyz"
    path.write_text("2\nold file\nW 0 0 0\nW 1.5 1.5 1.5\nVEC1 3 0 0\nVEC2 0 3 0\nVEC3 0 0 3\n1\nnext\nW 0 0 0\n")
    scanned = list(scan_extxyz(path))
    assert [(f.n_atoms, f.n_vec, f.line) for f in scanned] == [(2, 3, 0), (1, 0, 7)]
    assert len(read(path, ":")) == 2  # ASE agrees on the frames


@pytest.mark.parametrize(
    "text, message",
    [
        ("2\ncomment\nW 0 0 0\n", "frame 0 is cut short: it announces 2 atoms but the file ends after 1 atom lines"),
        ("1\nc\nW 0 0 0\nx\nc\nW 0 0 0\n", "frame 1: expected an atom count on the first line, got 'x'"),
        ("1\nc\nW 0 0 0\n\n1\nc\nW 0 0 0\n", "frame 1: expected an atom count on the first line, got a blank line"),
        ("-1\nc\n", "frame 0: negative atom count -1"),
    ],
)
def test_scanner_errors_name_file_and_frame(tmp_path, text, message):
    path = tmp_path / "bad.extxyz"
    path.write_text(text)
    with pytest.raises(FrameReadError, match=f"^{path} {message}"):
        list(scan_extxyz(path))
    with pytest.raises(FrameReadError, match=message):
        list(scan_extxyz_lines(text.split("\n")[:-1], "given"))


def test_scanner_names_bytes_that_are_not_text(tmp_path):
    path = tmp_path / "binary.extxyz"
    path.write_bytes(b"1\ncomment\nW 0 0 0\xff\n")
    with pytest.raises(FrameReadError, match=r"byte 17 \(line 3\) is not UTF-8"):
        list(scan_extxyz(path))


def test_output_check_and_staged_output(frames, tmp_path):
    source = tmp_path / "in.extxyz"
    write(source, frames)
    with pytest.raises(ValueError, match="must be an extxyz file"):
        check_output(tmp_path / "out.traj", [source], suffixes=EXTXYZ_SUFFIXES)
    with pytest.raises(ValueError, match="is also the input"):
        check_output(source, [source], suffixes=EXTXYZ_SUFFIXES)
    out = tmp_path / "out.extxyz"
    assert check_output(out, [source], suffixes=EXTXYZ_SUFFIXES) == out
    with pytest.raises(RuntimeError) as caught, StagedOutput(out) as staged:
        for atoms in frames[:2]:
            staged.write(atoms)
        raise RuntimeError("a member failed")
    assert not out.exists() and len(read(tmp_path / "out.partial.extxyz", ":")) == 2
    assert "2 frames scored before this were kept" in caught.value.__notes__[0]
    with StagedOutput(out) as staged:
        for atoms in frames:
            staged.write(atoms)
    assert out.read_text() == "".join(frame_text(a) for a in frames)
    assert [p.name for p in tmp_path.glob(".*.tmp")] == []


def test_progress_log_lines(capsys):
    with Progress(10, "log", unit="chunk", label="scored", initial=4, interval=0.0) as bar:
        bar.update(1)
        bar.update(2)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # one a call (interval 0), one closing
    assert lines[0].startswith("hetens: scored 5/10 chunks, ") and lines[0].endswith(" s")
    assert lines[1].startswith("hetens: scored 7/10 chunks, ") and "chunks/s" in lines[1]
    stream = io.StringIO()
    with Progress(5, "log", unit="step", every=2, stream=stream, line=lambda p: f"step {p.count}") as bar:
        for _ in range(5):
            bar.update(1)
    assert stream.getvalue().splitlines() == ["step 2", "step 4", "step 5"]
    with Progress(3, "off") as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress must be auto, bar, log or off"):
        Progress(1, "loud")


def test_every_key_has_the_prefix_and_is_unique():
    names = [getattr(keys, n) for n in keys.__all__ if n.endswith("_KEY")]
    assert all(name.startswith(keys.PREFIX) for name in names)
    assert len(set(names)) == len(names) > 15
