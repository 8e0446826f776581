"""hetens plot: every figure is written as a PNG, from arrays and from scored files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_rescore_precomputed import write_synthetic

from hetens.cli.main import main
from hetens.rescore.plots import (
    load_plot_data,
    make_plots,
    plot_dft_fraction,
    plot_u_histogram,
    plot_u_trajectory,
    plot_u_vs_error,
)
from hetens.rescore.score import score_precomputed

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG) and len(data) > 10_000


def test_every_plot_from_arrays(tmp_path):
    rng = np.random.default_rng(0)
    eps = 10 ** rng.normal(-1, 0.5, 3000)
    u = eps * 10 ** rng.normal(0, 0.3, 3000)
    n_atoms = rng.integers(2, 120, 3000)
    paths = [
        plot_u_vs_error(u, eps, tmp_path / "density.png"),  # many frames: a density
        plot_u_vs_error(u[:50], eps[:50], tmp_path / "points.png"),  # few frames: points
        plot_u_histogram(u, tmp_path / "hist.png", thresholds=[0.1, 1.0]),
        plot_dft_fraction(u, n_atoms, tmp_path / "fraction.png", thresholds=[0.1, 0.5, 1.0]),
        plot_u_trajectory(u[:300], tmp_path / "traj.png", max_u=0.8 * u[:300], thresholds=[0.5]),
    ]
    assert all(_is_png(p) for p in paths)


def test_plot_cli_from_scored_file(tmp_path, capsys):
    paths, ref, _, _ = write_synthetic(tmp_path, 12)
    scored = tmp_path / "scored.extxyz"
    score_precomputed(paths, scored, reference=ref, keep_member_forces=True, progress="off")
    code = main(["plot", str(scored), "-o", str(tmp_path / "figs"), "--threshold", "0.3", "--json"])
    assert code == 0
    written = json.loads(capsys.readouterr().out)
    assert set(written) == {"u_vs_eps", "hist", "fraction", "trajectory"}  # no key reads as a failure
    assert "error" not in written
    assert all(
        _is_png(tmp_path / "figs" / name)
        for name in ("u_vs_eps.png", "u_histogram.png", "dft_fraction.png", "u_trajectory.png")
    )
    # eps recomputed from --reference equals the hetens_eps stored by score.
    stored = load_plot_data([scored])
    recomputed = load_plot_data([scored], reference=ref)
    np.testing.assert_allclose(recomputed.eps, stored.eps, atol=1e-7)


def test_error_plot_needs_eps(tmp_path, capsys):
    paths, _, _, _ = write_synthetic(tmp_path, 6)
    scored = tmp_path / "scored.extxyz"
    score_precomputed(paths, scored, progress="off")
    data = load_plot_data([scored])
    assert data.eps is None
    assert "u_vs_eps" not in make_plots(data, tmp_path / "figs")
    code = main(["plot", str(scored), "-o", str(tmp_path / "figs"), "--kinds", "error"])  # the former name
    assert code == 0
    assert "give --reference" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown plot kind"):
        make_plots(data, tmp_path, kinds=["pie"])


def test_histogram_counts_whole_frames_and_labels_each_threshold():
    from hetens.rescore.plots import u_histogram_figure

    u = np.array([0.11, 0.12, 0.12, 0.15, 0.2])  # few frames: matplotlib would tick 0.5, 1.5...
    figure = u_histogram_figure(u, thresholds=[0.12, 0.18])
    figure.canvas.draw()
    ax = figure.axes[0]
    ticks = ax.get_yticks()
    assert np.allclose(ticks, np.round(ticks))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "U_c = 0.12 eV/Å" in labels and "U_c = 0.18 eV/Å" in labels
    assert len(labels) == 3  # two thresholds and the median, none unlabelled
