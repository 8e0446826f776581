"""fairchem-core 1.x (family ``fairchem1``): the environment recipe and the adapter outside it.

The environment itself (torch 2.4 and torch_scatter from the PyTorch and PyG indexes) is not
built here: those indexes cannot be reached from this machine (docs/families.md says what was
measured). These tests check the recipe ``hetens env create`` runs, and that the adapter,
imported where fairchem-core 2.x is installed, refuses clearly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import hetens
import hetens.catalogue.envs as envs
from hetens.errors import MissingFamilyError
from hetens.families import FAMILIES


def test_env_create_fairchem1_runs_fairchem_1x_recipe_with_index_urls(monkeypatch, tmp_path):
    commands: list[list[str]] = []

    def step(log, what, command):
        commands.append(command)
        if command[1:3] == ["-m", "venv"]:
            Path(command[-1]).mkdir(parents=True)

    monkeypatch.setattr(envs, "_step", step)
    envs.create_environment("fairchem1", "fairchem1", prefix=tmp_path / "envs", quiet=True)
    torch_step = next(c for c in commands if "torch==2.4.1" in c)
    assert torch_step[torch_step.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    packages = next(c for c in commands if "fairchem-core==1.10.0" in c)
    assert packages[packages.index("-f") + 1] == "https://data.pyg.org/whl/torch-2.4.0+cpu.html"
    assert {"torch-scatter", "torch-geometric"} <= set(packages)
    assert "numpy<2" in (tmp_path / "envs" / "fairchem1" / "hetens-constraints.txt").read_text()
    check = commands[-1]
    assert "fairchem.core.common.relaxation.ase_utils" in check[-1] and "torch_scatter" in check[-1]

    # Both URLs are options the user can change (a mirror, a CUDA build).
    commands.clear()
    envs.create_environment("other", "fairchem1", prefix=tmp_path / "envs2", quiet=True,
                            torch_index_url="https://mirror.example/torch", find_links=["https://mirror.example/pyg"])
    assert "https://mirror.example/torch" in next(c for c in commands if "torch==2.4.1" in c)
    assert "https://mirror.example/pyg" in next(c for c in commands if "fairchem-core==1.10.0" in c)


def test_fairchem1_members_need_their_environment():
    family = FAMILIES["fairchem1"]
    assert family.environment == "own"
    if family.installed:
        pytest.skip("fairchem-core 1.x is installed in this environment")
    with pytest.raises(MissingFamilyError, match="hetens env create fairchem1 --family fairchem1"):
        hetens.load_member("fairchem1:EquiformerV2-31M-OMAT24", device="cpu")
    from hetens.families import fairchem1

    assert fairchem1.weights_status("eSEN-30M-OAM") == "download"
    assert fairchem1.weights_status("no-such-model") == "missing"
