"""eps against the returned forces (default) or the plain member mean (the paper's notebook).

A synthetic pool where the two definitions rank frames differently: three
members with very unequal weights, on random structures. Each option's rho is
checked against its own definition computed here by hand (numpy ranks; the
random data have no ties), through ``score_precomputed`` on files and through
``hetens plot``'s reading of a scored file.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from hetens.rescore.plots import load_plot_data
from hetens.rescore.precomputed_scoring import score_precomputed

WEIGHTS = np.array([0.8, 0.1, 0.1])
N_FRAMES, N_ATOMS = 40, 5


def _pool(tmp_path):
    """(reference file, member files, member forces (F, M, N, 3), reference forces (F, N, 3))."""
    rng = np.random.default_rng(7)
    positions = rng.uniform(0, 6, size=(N_FRAMES, N_ATOMS, 3))
    reference = rng.normal(size=(N_FRAMES, N_ATOMS, 3))
    # member 0 (heavy weight) close to the reference, 1 and 2 far off and spread by frame
    spread = rng.uniform(0.1, 2.0, size=(N_FRAMES, 3))
    members = np.stack(
        [reference + rng.normal(scale=0.05 + spread[:, m, None, None] * (m > 0), size=reference.shape)
         for m in range(3)], axis=1)

    def frames(forces):
        out = []
        for f in range(N_FRAMES):
            atoms = Atoms("W" * N_ATOMS, positions=positions[f], cell=[12, 12, 12], pbc=True)
            atoms.calc = SinglePointCalculator(atoms, energy=-10.0 * N_ATOMS + f * 0.01, forces=forces[f])
            out.append(atoms)
        return out

    write(tmp_path / "ref.extxyz", frames(reference))
    paths = []
    for m in range(3):
        paths.append(tmp_path / f"m{m}.extxyz")
        write(paths[-1], frames(members[:, m]))
    return tmp_path / "ref.extxyz", paths, members, reference


def _rank(x):
    return np.argsort(np.argsort(x)).astype(float)


def _spearman(x, y):
    return float(np.corrcoef(_rank(x), _rank(y))[0, 1])


def _by_hand(members, reference):
    """(U, eps of the weighted mean, eps of the plain mean), each (F,)."""
    w = WEIGHTS / WEIGHTS.sum()
    plain = members.mean(axis=1)  # (F, N, 3)
    d = np.linalg.norm(members - plain[:, None], axis=3).max(axis=2)  # (F, M)
    u = np.sqrt((w * d**2).sum(axis=1))
    returned = np.einsum("m,fmnk->fnk", w, members)
    eps_returned = np.linalg.norm(reference - returned, axis=2).max(axis=1)
    eps_plain = np.linalg.norm(reference - plain, axis=2).max(axis=1)
    return u, eps_returned, eps_plain


def test_each_option_gives_its_own_definition(tmp_path):
    ref, paths, members, reference = _pool(tmp_path)
    u, eps_returned, eps_plain = _by_hand(members, reference)
    rho_returned, rho_plain = _spearman(u, eps_returned), _spearman(u, eps_plain)
    assert abs(rho_returned - rho_plain) > 0.05  # the case separates the two definitions

    common = dict(weights=list(WEIGHTS), reference=ref, progress="off")
    default = score_precomputed(paths, tmp_path / "returned.extxyz", **common)
    paper = score_precomputed(paths, tmp_path / "mean.extxyz", error_reference="member_mean",
                              keep_member_forces=True, **common)
    assert default.report["spearman_rho"] == pytest.approx(rho_returned, abs=1e-12)
    assert paper.report["spearman_rho"] == pytest.approx(rho_plain, abs=1e-12)

    # hetens plot: eps read back from the frames, or computed again from the reference
    assert np.allclose(load_plot_data([tmp_path / "mean.extxyz"]).eps, eps_plain, atol=1e-6)
    again = load_plot_data([tmp_path / "mean.extxyz"], reference=ref, error_reference="member_mean")
    assert np.allclose(again.eps, eps_plain, atol=1e-6)
    returned = load_plot_data([tmp_path / "mean.extxyz"], reference=ref)
    assert np.allclose(returned.eps, eps_returned, atol=1e-6)


def test_member_mean_without_member_forces_says_what_to_do(tmp_path):
    ref, paths, _, _ = _pool(tmp_path)
    score_precomputed(paths, tmp_path / "plain.extxyz", weights=list(WEIGHTS), progress="off")
    with pytest.raises(Exception, match="needs the members' forces \\(score with --keep-member-forces\\)"):
        load_plot_data([tmp_path / "plain.extxyz"], reference=ref, error_reference="member_mean")
    with pytest.raises(ValueError, match="error_reference must be one of returned, member_mean; got 'mean'"):
        score_precomputed(paths, None, reference=ref, error_reference="mean")
