"""The online presets (``paper-top11``, ``best-online``) load, member by member, offline.

Each member's loader is given a small local model instead of the hub weights, so the
preset's own structure is what is checked: member names and order, specs, roles, levels of
theory, weights, and where each member runs. What stands in for the weights:

- in-process families load through their real adapters: orb, mace and mattersim get the
  tiny models of ``tests/tiny_models.py``; SevenNet's downloaded models get the shipped
  SevenNet checkpoints (``7net-mf-ompa@mpa``/``@omat24`` -> ``7net-mf-0`` with modal ``PBE``,
  ``7net-omat`` -> ``7net-0``); shipped members (``chgnet:r2scan``, ``diep``, the ``R2SCAN``
  head of ``7net-mf-0``) load their own weights;
- own-environment families (``fairchem1``, ``nequip``, ``grace``) are not installed in this
  environment: their members are loaded in-process by a stand-in (the tiny fairchem 2.x
  checkpoint for ``fairchem1``, the tiny MACE model for ``nequip`` and ``grace``) and the
  file's ``python = "env:FAMILY"`` is checked as written. Their real loaders on tiny models
  are tested in ``tests/test_own_envs.py`` (slow, where those environments are built).

The quality of the weights is not what is tested, and the ensembles are not evaluated: the
tiny models' energies are arbitrary, so the energy-reference guard would (rightly) refuse to
average them.
"""

from __future__ import annotations

import types

import pytest

import hetens
from hetens.errors import MissingFamilyError
from hetens.core.ensemble_file import read_ensemble_file
from hetens.families import FAMILIES, Family
from hetens.catalogue.spec import parse_spec
from hetens.core.weights import inverse_rmse_weights
from test_presets import PAPER_TOP11
from tiny_models import (
    TINY_OPTIONS,
    tiny_fairchem_checkpoint,
    tiny_mace_model,
    tiny_mattersim_checkpoint,
    tiny_orb_checkpoint,
)

BEST_ONLINE = {
    "eSEN-30M-OAM": ("fairchem1:eSEN-30M-OAM", "env:fairchem1"),
    "NequIP-OAM-L": ("nequip:NequIP-OAM-L-0.1", "env:nequip"),
    "ORB-v3-mpa": ("orb:orb-v3-conservative-inf-mpa", None),
    "7net-mf-ompa": ("sevenn:7net-mf-ompa@mpa", None),
    "GRACE-2L-OAM": ("grace:GRACE-2L-OAM", "env:grace"),
    "MatterSim-5M": ("mattersim:MatterSim-v1.0.0-5M", None),
    "MACE-MPA-0": ("mace:medium-mpa-0", None),
    "7net-mf-0-r2scan": ("sevenn:7net-mf-0@R2SCAN", None),
    "CHGNet-r2scan": ("chgnet:r2scan", None),
    "DIEP": ("diep:diep_fold1", None),
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_online")


def _options(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split("@") if part)


@pytest.fixture
def local_loaders(monkeypatch, tiny_dir):
    """Every family's adapter, with registry names of hub models mapped to local models."""
    for family in ("sevenn", "chgnet", "diep", "orb", "mace", "mattersim", "fairchem"):
        if not FAMILIES[family].installed:
            pytest.skip(f"family {family} is not installed here")
    from sevenn import _const

    real_adapter = Family.adapter
    sevenn_files = {"7net-mf-ompa": (_const.SEVENNET_MF_0, "PBE"), "7net-omat": (_const.SEVENNET_0_11Jul2024, None)}
    # family -> (family whose real adapter loads it, the local model or None for its own weights, options)
    local = {
        "orb": ("orb", tiny_orb_checkpoint(tiny_dir), _options(TINY_OPTIONS["orb"])),
        "mace": ("mace", tiny_mace_model(tiny_dir), {}),
        "mattersim": ("mattersim", tiny_mattersim_checkpoint(tiny_dir), {}),
        "fairchem1": ("fairchem", tiny_fairchem_checkpoint(tiny_dir), {}),
        "nequip": ("mace", tiny_mace_model(tiny_dir), {}),
        "grace": ("mace", tiny_mace_model(tiny_dir), {}),
    }
    loaded: list[tuple[str, str, str | None]] = []

    def adapter(self):
        target, path, local_options = local.get(self.name, (self.name, None, {}))
        module = real_adapter(FAMILIES[target])

        def load(model, *, head, device, options):
            if self.name == "sevenn" and model in sevenn_files:
                model, head = sevenn_files[model]
            elif path is not None:
                model, head = str(path), ("omat" if target == "fairchem" else None)
                options = local_options
            loaded.append((self.name, model, head))
            return module.load(model, head=head, device=device, options=dict(options))

        return types.SimpleNamespace(load=load, versions=module.versions, elements=module.elements,
                                     weights_status=module.weights_status)

    monkeypatch.setattr(Family, "adapter", adapter)
    # The own-environment members run here (stand-ins), so the file's python keys are dropped and
    # the runnable check (which would ask for those environments) is left out.
    monkeypatch.setattr("hetens.catalogue.availability.check_runnable", lambda path, entries: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return loaded


def _load_without_python(name, tmp_path, **overrides):
    """``name``'s members (python keys dropped) as a calculator, through hetens.load_ensemble_file."""
    members = read_ensemble_file(name)["members"]
    lines = []
    for member in members:
        lines.append("[[member]]")
        for key in ("name", "spec", "role", "force_rmse", "weight"):
            if key in member:
                value = member[key]
                lines.append(f"{key} = {value!r}".replace("'", '"'))
    path = tmp_path / f"{name}-here.toml"
    path.write_text("\n".join(lines) + "\n")
    return members, hetens.load_ensemble_file(path, device="cpu", **overrides)


def test_paper_top11_loads_with_local_models(local_loaders, tmp_path):
    members, calc = _load_without_python("paper-top11", tmp_path)
    with calc:
        assert calc.member_names == list(PAPER_TOP11)
        assert calc.roles == ["predictor"] * 11
        assert [m.level_of_theory for m in calc.members] == ["PBE+U"] * 11
        assert [round(float(w), 4) for w in calc.weights] == list(PAPER_TOP11.values())
        assert [round(float(w), 6) for w in calc.weights] == [
            round(float(w), 6) for w in inverse_rmse_weights([m["force_rmse"] for m in members])]
        assert [m.get("python") for m in members] == ["env:fairchem1"] * 3 + [None] * 8
        # every member went through a loader, each fairchem1 member through the stand-in
        assert [family for family, _, _ in local_loaders] == (
            ["fairchem1"] * 3 + ["sevenn"] * 3 + ["mace"] + ["orb"] * 4)


def test_best_online_loads_with_local_models(local_loaders, tmp_path):
    members, calc = _load_without_python("best-online", tmp_path)
    with calc:
        assert {m["name"]: (m["spec"], m.get("python")) for m in members} == BEST_ONLINE
        assert calc.member_names == list(BEST_ONLINE)
        roles = ["predictor"] * 7 + ["witness"] * 3
        assert calc.roles == roles
        assert [m.level_of_theory for m in calc.members] == ["PBE+U"] * 7 + ["r2SCAN"] * 3
        assert list(calc.weights) == pytest.approx([0.1] * 10)
        # one model per architecture family among the predictors
        predictors = [parse_spec(spec).family for spec, _ in list(BEST_ONLINE.values())[:7]]
        assert len(set(predictors)) == 7


def test_best_online_is_refused_naming_every_member_with_its_command(monkeypatch, tmp_path):
    monkeypatch.setenv("HETENS_ENV_DIR", str(tmp_path / "no-envs"))
    with pytest.raises(MissingFamilyError) as caught:
        hetens.load_preset("best-online", device="cpu")
    text = str(caught.value)
    for family in ("fairchem1", "nequip", "grace"):
        assert f"hetens env create {family} --family {family}" in text
    for name in ("ORB-v3-mpa", "7net-mf-ompa", "MatterSim-5M", "MACE-MPA-0"):
        assert f"{name} (" in text  # weights to download, named too

