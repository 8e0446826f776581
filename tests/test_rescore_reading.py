"""Streaming frames from files: selections, counts, header scans, errors naming file and frame."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from hetens.errors import FrameReadError
from hetens.io.reading import FrameSource, count_frames, iter_frames, parse_index, scan_extxyz_info


@pytest.fixture
def trajectory(tmp_path):
    frames = []
    for k in range(7):
        atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat((1 + k % 2, 1, 1))
        atoms.info["step"] = k
        frames.append(atoms)
    path = tmp_path / "traj.extxyz"
    write(path, frames)
    return path


def test_iter_frames_selection_and_sources(trajectory, tmp_path):
    items = list(iter_frames([trajectory, trajectory], "1::3"))
    assert [s.index for s, _ in items] == [1, 4, 1, 4]
    assert [a.info["step"] for _, a in items] == [1, 4, 1, 4]
    assert str(items[1][0]) == f"{trajectory} frame 4"
    last = list(iter_frames(trajectory, "-1"))
    assert len(last) == 1 and last[0][1].info["step"] == 6
    assert str(last[0][0]) == f"{trajectory} selected frame 0"  # index unknown without reading ahead
    traj = tmp_path / "traj.traj"
    write(traj, [a for _, a in iter_frames(trajectory)])
    assert [a.info["step"] for _, a in iter_frames(traj, "::2")] == [0, 2, 4, 6]
    database = tmp_path / "frames.db"
    write(database, [a for _, a in iter_frames(trajectory)])
    assert [len(a) for _, a in iter_frames(database, "4:")] == [2, 4, 2]


def test_counts_and_header_scan(trajectory, tmp_path):
    assert count_frames(trajectory) == 7
    assert count_frames(trajectory, "::2") == 4
    assert count_frames(trajectory, "-1") == 1
    write(tmp_path / "t.traj", [bulk("W")] * 3)
    assert count_frames(tmp_path / "t.traj", "1:") == 2
    assert count_frames(tmp_path / "POSCAR") is None
    scanned = list(scan_extxyz_info(trajectory, "2:6:2"))
    assert [(s.index, n, info["step"]) for s, n, info in scanned] == [(2, 2, 2), (4, 2, 4)]
    assert [s.index for s, _, _ in scan_extxyz_info(trajectory, "-2:")] == [5, 6]


def test_bad_frame_is_named(trajectory, tmp_path):
    lines = trajectory.read_text().splitlines()
    # Frame 0 has 2 atoms (4 lines), frame 1 has 4 (6 lines): corrupt frame 2's second atom line.
    lines[4 + 6 + 3] = "W  not-a-number 0 0"
    bad = tmp_path / "bad.extxyz"
    bad.write_text("\n".join(lines) + "\n")
    frames = iter_frames(bad)
    assert next(frames)[0] == FrameSource(str(bad), 0, 0)
    next(frames)
    with pytest.raises(FrameReadError, match=r"cannot read .*bad.extxyz frame 2: ValueError"):
        next(frames)


def test_missing_file_and_bad_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.extxyz does not exist"):
        list(iter_frames(tmp_path / "nothere.extxyz"))
    with pytest.raises(ValueError, match="--index 'a:b' is not a frame selection"):
        parse_index("a:b")
    (tmp_path / "junk.bin").write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    with pytest.raises(FrameReadError, match=r"cannot tell the format of .*junk.bin.*--format"):
        list(iter_frames(tmp_path / "junk.bin"))


def test_chunks_respect_files_frames_and_atoms(trajectory, tmp_path):
    from hetens.rescore.batches import batches

    other = tmp_path / "other.extxyz"
    other.write_text(trajectory.read_text())
    items = list(iter_frames([trajectory, other]))  # 2 files x 7 frames of 2 or 4 atoms
    sizes = [[len(a) for _, a in chunk] for chunk in batches(items, 3, max_atoms=7)]
    # Never across files, at most 3 frames, at most 7 atoms unless one frame alone is bigger.
    assert sizes == [[2, 4], [2, 4], [2, 4], [2], [2, 4], [2, 4], [2, 4], [2]]
    assert [len(c) for c in batches(items, 4)] == [4, 3, 4, 3]
