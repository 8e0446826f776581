"""Frames and member predictions as flat numpy arrays (the rescoring data model).

A set of F frames with T atoms in total is stored *ragged*: per-atom arrays
are concatenated over frames, and ``offsets`` (F + 1,) says where each frame
starts, so frame ``f`` owns rows ``offsets[f]:offsets[f + 1]``. This is
compact for frames of any sizes and lets every computation run over all
frames at once.

- :class:`FrameArrays`: one file's (or one batch's) structures, plus the
  energy/forces/stress it carries (predictions or DFT labels).
- :class:`PredictionSet`: M members' predictions on the same frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FrameArrays",
    "PredictionSet",
    "frame_arrays_from_atoms",
    "offsets_of",
    "concatenate_frames",
    "concatenate_predictions",
]


def offsets_of(n_atoms) -> np.ndarray:
    """(F + 1,) start of each frame in the concatenated atom axis, from (F,) atom counts."""
    counts = np.asarray(n_atoms, dtype=np.int64)
    return np.concatenate(([0], np.cumsum(counts)))


@dataclass
class FrameArrays:
    """F frames, T atoms in total, as flat arrays.

    Attributes:
        path: the file the frames came from (``""`` for frames built in memory).
        n_atoms: (F,) atom count of each frame.
        numbers: (T,) atomic numbers.
        positions: (T, 3) Cartesian positions, Å.
        cells: (F, 3, 3) cell vectors as rows, Å (zeros where there is none).
        pbc: (F, 3) periodic directions.
        energy: (F,) energy in eV, or ``None`` when the file has none.
        forces: (T, 3) forces in eV/Å, or ``None``.
        stress: (F, 6) Voigt stress in eV/Å³ (NaN rows for frames without
            one), or ``None`` when no frame has one.
        indices: (F,) index of each frame in its file.
    """

    path: str
    n_atoms: np.ndarray
    numbers: np.ndarray
    positions: np.ndarray
    cells: np.ndarray
    pbc: np.ndarray
    energy: np.ndarray | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    indices: np.ndarray | None = None
    offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.n_atoms = np.asarray(self.n_atoms, dtype=np.int64)
        self.offsets = offsets_of(self.n_atoms)
        if self.indices is None:
            self.indices = np.arange(self.n_frames)

    @property
    def n_frames(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def n_total_atoms(self) -> int:
        return int(self.offsets[-1])

    def frame_of_atom(self) -> np.ndarray:
        """(T,) frame index of every atom."""
        return np.repeat(np.arange(self.n_frames), self.n_atoms)

    def frame_label(self, frame: int) -> str:
        """``"PATH frame I"`` with I the index in the file, for error messages."""
        return f"{self.path or 'frames'} frame {int(self.indices[frame])}"

    def to_atoms(self, frame: int):
        """An ``Atoms`` (no calculator) for frame ``frame``."""
        from ase import Atoms

        rows = slice(self.offsets[frame], self.offsets[frame + 1])
        return Atoms(
            numbers=self.numbers[rows],
            positions=self.positions[rows],
            cell=self.cells[frame],
            pbc=self.pbc[frame],
        )


def frame_arrays_from_atoms(frames: Sequence, path: str = "", indices=None) -> FrameArrays:
    """Geometry of a list of ``Atoms`` as :class:`FrameArrays` (no energies or forces)."""
    n_atoms = np.array([len(a) for a in frames], dtype=np.int64)
    return FrameArrays(
        path=path,
        n_atoms=n_atoms,
        numbers=np.concatenate([a.numbers for a in frames]) if frames else np.zeros(0, np.int64),
        positions=np.concatenate([a.positions for a in frames]) if frames else np.zeros((0, 3)),
        cells=np.array([a.cell.array for a in frames]).reshape(-1, 3, 3),
        pbc=np.array([a.pbc for a in frames], dtype=bool).reshape(-1, 3),
        indices=None if indices is None else np.asarray(indices),
    )


@dataclass
class PredictionSet:
    """M members' predictions on the same F frames.

    Attributes:
        names: (M,) member names.
        frames: geometry of the frames (:class:`FrameArrays`; its own
            energy/forces are not used).
        member_energies: (F, M) eV.
        member_forces: (T, M, 3) eV/Å, atoms of all frames concatenated.
        member_stresses: (F, M, 6) Voigt eV/Å³ (NaN where a member gave no
            stress for a frame), or ``None``.
        sources: (M,) where each member's predictions came from (file path
            or member spec).
        dropped: frame position -> {member name: why} for the frames some
            members gave no results for (``on_member_error="drop"``); their
            entries in the member arrays are NaN. Empty when all members
            gave results everywhere.
    """

    names: list[str]
    frames: FrameArrays
    member_energies: np.ndarray
    member_forces: np.ndarray
    member_stresses: np.ndarray | None = None
    sources: list[str] = field(default_factory=list)
    dropped: dict[int, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        f, t, m = self.frames.n_frames, self.frames.n_total_atoms, len(self.names)
        if self.member_energies.shape != (f, m):
            raise ValueError(f"member_energies must be (F={f}, M={m}); got {self.member_energies.shape}")
        if self.member_forces.shape != (t, m, 3):
            raise ValueError(f"member_forces must be (T={t}, M={m}, 3); got {self.member_forces.shape}")
        if self.member_stresses is not None and self.member_stresses.shape != (f, m, 6):
            raise ValueError(f"member_stresses must be (F={f}, M={m}, 6); got {self.member_stresses.shape}")

    @property
    def n_members(self) -> int:
        return len(self.names)

    @property
    def n_frames(self) -> int:
        return self.frames.n_frames

    def subset(self, members: Sequence[int]) -> PredictionSet:
        """The same frames with only the members at positions ``members``, in that order."""
        idx = np.asarray(members, dtype=np.int64)
        return PredictionSet(
            names=[self.names[i] for i in idx],
            frames=self.frames,
            member_energies=self.member_energies[:, idx],
            member_forces=self.member_forces[:, idx],
            member_stresses=None if self.member_stresses is None else self.member_stresses[:, idx],
            sources=[self.sources[i] for i in idx] if self.sources else [],
            dropped=_dropped_among(self.dropped, [self.names[i] for i in idx]),
        )


def _dropped_among(dropped: dict[int, dict[str, str]], names: Sequence[str]) -> dict[int, dict[str, str]]:
    """``dropped`` restricted to the members ``names`` (frames left with no drop removed)."""
    kept = {f: {n: why for n, why in d.items() if n in names} for f, d in dropped.items()}
    return {f: d for f, d in kept.items() if d}


def concatenate_frames(parts: Sequence[FrameArrays]) -> FrameArrays:
    """Frames of several :class:`FrameArrays` one after the other (path of the first)."""
    if not parts:
        raise ValueError("nothing to concatenate")

    def joined(name):
        values = [getattr(p, name) for p in parts]
        return None if any(v is None for v in values) else np.concatenate(values)

    return FrameArrays(
        path=parts[0].path,
        n_atoms=np.concatenate([p.n_atoms for p in parts]),
        numbers=np.concatenate([p.numbers for p in parts]),
        positions=np.concatenate([p.positions for p in parts]),
        cells=np.concatenate([p.cells for p in parts]),
        pbc=np.concatenate([p.pbc for p in parts]),
        energy=joined("energy"),
        forces=joined("forces"),
        stress=joined("stress"),
        indices=np.concatenate([p.indices for p in parts]),
    )


def concatenate_predictions(parts: Sequence[PredictionSet]) -> PredictionSet:
    """Predictions of the same members on consecutive chunks of frames, joined."""
    if not parts:
        raise ValueError("nothing to concatenate")
    names = parts[0].names
    if any(p.names != names for p in parts):
        raise ValueError("prediction chunks must have the same members in the same order")
    stresses = [p.member_stresses for p in parts]
    if all(s is None for s in stresses):
        member_stresses = None
    else:
        member_stresses = np.concatenate(
            [
                s if s is not None else np.full((p.n_frames, len(names), 6), np.nan)
                for p, s in zip(parts, stresses)
            ]
        )
    return PredictionSet(
        names=list(names),
        frames=concatenate_frames([p.frames for p in parts]),
        member_energies=np.concatenate([p.member_energies for p in parts]),
        member_forces=np.concatenate([p.member_forces for p in parts]),
        member_stresses=member_stresses,
        sources=list(parts[0].sources),
        dropped={first + f: why for first, p in zip(_first_frames(parts), parts) for f, why in p.dropped.items()},
    )


def _first_frames(parts: Sequence[PredictionSet]) -> list[int]:
    """Position of each part's first frame in the concatenation."""
    return np.concatenate([[0], np.cumsum([p.n_frames for p in parts])[:-1]]).astype(int).tolist()
