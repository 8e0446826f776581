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
from hetens.rescore.precomputed_scoring import score_precomputed

PNG = b"\x89PNG\r\n\x1a\n"
TAB_BLUE, TAB_ORANGE, TAB_RED = (31, 119, 180), (255, 127, 14), (214, 39, 40)


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG) and len(data) > 10_000


def _pixels(path) -> np.ndarray:
    """(H, W, 3) RGB of a written PNG, 0-255."""
    from matplotlib.image import imread

    assert _is_png(path), path
    return (imread(path)[..., :3] * 255).round().astype(int)


def _near(image, rgb, alpha: float = 1.0, tol: int = 6) -> np.ndarray:
    """(H, W) mask of the pixels of colour ``rgb`` drawn with ``alpha`` on white."""
    colour = alpha * np.array(rgb) + (1 - alpha) * 255
    return np.abs(image - colour).max(axis=-1) <= tol


def _width_share(mask) -> float:
    """The share of the image's columns between the first and the last marked pixel."""
    columns = np.flatnonzero(mask.any(axis=0))
    return (columns[-1] - columns[0]) / mask.shape[1] if columns.size else 0.0


def test_every_plot_from_arrays(tmp_path):
    """Each figure has its size and shows its data in the data's colours, where the data lie."""
    from matplotlib import colormaps

    rng = np.random.default_rng(0)
    eps = 10 ** rng.normal(-1, 0.5, 3000)
    u = eps * 10 ** rng.normal(0, 0.3, 3000)
    n_atoms = rng.integers(2, 120, 3000)

    # Many frames: a viridis density in the main axes (the colour bar is the right quarter).
    density = _pixels(plot_u_vs_error(u, eps, tmp_path / "density.png"))
    assert density.shape == (630, 780, 3)  # 5.2 x 4.2 in at 150 dpi
    viridis = (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(int)
    colours, counts = np.unique(density[:, : int(0.75 * density.shape[1])].reshape(-1, 3), axis=0, return_counts=True)
    distance = np.abs(colours[:, None, :] - viridis[None]).max(axis=-1).min(axis=1)
    coloured = colours.max(axis=1) - colours.min(axis=1) >= 10  # not grey, black or white
    assert counts[(distance <= 3) & coloured].sum() > 10_000

    # Few frames: one translucent blue point each, no density.
    points = _pixels(plot_u_vs_error(u[:50], eps[:50], tmp_path / "points.png"))
    assert points.shape == (630, 780, 3)
    dots = _near(points, TAB_BLUE, alpha=0.7)
    assert dots.sum() > 50 * 10 and _width_share(dots) > 0.3

    histogram = _pixels(plot_u_histogram(u, tmp_path / "hist.png", thresholds=[0.1, 1.0]))
    assert histogram.shape == (570, 840, 3)  # 5.6 x 3.8 in
    bars = _near(histogram, TAB_BLUE, alpha=0.85)
    assert bars.mean() > 0.1 and _width_share(bars) > 0.5
    purple = _near(histogram, (148, 103, 189))  # the second threshold, C4, a full-height line
    rows = np.flatnonzero(purple.any(axis=1))
    assert (rows[-1] - rows[0]) / histogram.shape[0] > 0.6

    fraction = _pixels(plot_dft_fraction(u, n_atoms, tmp_path / "fraction.png", thresholds=[0.1, 0.5, 1.0]))
    assert fraction.shape == (570, 840, 3)
    assert _width_share(_near(fraction, TAB_BLUE)) > 0.7  # share of atoms over the whole U_c range
    assert _width_share(_near(fraction, TAB_ORANGE)) > 0.7  # share of frames
    assert _near(fraction, TAB_RED).sum() > 100  # the three U_c marks

    trajectory = _pixels(
        plot_u_trajectory(u[:300], tmp_path / "traj.png", max_u=0.8 * u[:300], thresholds=[0.5])
    )
    assert trajectory.shape == (540, 960, 3)  # 6.4 x 3.6 in
    for colour in (TAB_BLUE, TAB_ORANGE, TAB_RED):  # U, max per-atom u, U_c
        assert _width_share(_near(trajectory, colour)) > 0.75, colour


def test_trajectory_pixels_follow_u(tmp_path):
    """U low for the first half, high for the second: the blue line is drawn low, then high."""
    u = np.r_[np.full(50, 0.1), np.full(50, 1.0)]
    image = _pixels(plot_u_trajectory(u, tmp_path / "step.png"))
    line = _near(image, TAB_BLUE)
    columns = np.flatnonzero(line.any(axis=0))
    first, last = columns[0], columns[-1]
    quarter = (last - first) // 4
    rows = np.nonzero(line)
    left = np.median(rows[0][rows[1] < first + quarter])
    right = np.median(rows[0][rows[1] > last - quarter])
    assert left - right > 0.5 * image.shape[0]  # rows count downwards: low U sits lower


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
