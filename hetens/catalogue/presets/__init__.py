"""Preset ensemble files shipped with hetens: ``--ensemble-file NAME`` or
:func:`hetens.load_preset` (:func:`hetens.core.ensemble_file.load_preset`).

Each preset is an ensemble file (the format of :mod:`hetens.core.ensemble_file`)
in this package folder, ``NAME.toml``:

- ``paper-top11``: the paper's ensemble (Liu et al. 2026), its 11 best
  uMLIPs on OMat24 with its inverse-RMSE weights; three members run in an
  environment of family ``fairchem1`` (``python = "env:fairchem1"``);
- ``default``: :func:`hetens.default_ensemble` as a file (two shipped PBE+U
  predictors and the shipped DIEP witness);
- ``best-online``: one strong model per architecture family (MP-compatible
  PBE+U predictors, downloaded on first use; three in environments of their
  families) plus the three shipped r2SCAN witnesses (docs/families.md).

A path that exists always wins over a preset name. Which presets can run on
this machine now, and what each member lacks: ``hetens models`` (or
:func:`hetens.catalogue.models_table.preset_rows`). This module imports nothing else of
hetens.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PRESET_DIR", "preset_names", "preset_path", "resolve_ensemble_path"]

#: The folder holding the preset files (package data).
PRESET_DIR = Path(__file__).resolve().parent


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    """The file of preset ``name`` (``"paper-top11"``; ``.toml`` may be given).

    Raises:
        FileNotFoundError: no such preset; lists those there are.
    """
    stem = name[:-5] if name.endswith(".toml") else name
    path = PRESET_DIR / f"{stem}.toml"
    if os.sep in stem or not path.is_file():
        raise FileNotFoundError(f"no preset ensemble {name!r}; presets: {', '.join(preset_names())}")
    return path


def resolve_ensemble_path(path: str | os.PathLike) -> Path:
    """``path`` when it exists (or names a folder), else the preset of that name, else ``path``
    unchanged (the reader then reports the missing file and lists the presets)."""
    given = Path(path).expanduser()
    if given.exists():
        return given
    text = os.fspath(path)
    stem = text[:-5] if text.endswith(".toml") else text
    if os.sep not in stem and stem in preset_names():
        return PRESET_DIR / f"{stem}.toml"
    return given
