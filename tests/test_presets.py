"""Preset ensemble files, the paper's pool in the registry, and what ``hetens models`` says runs here.

No network: the paper's preset names hub models (not on this machine) and fairchem-core 1.x
members (not installable here), so it must be refused before any model loads, naming each
member that cannot run; the default preset (shipped models) must build the default ensemble.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hetens
from hetens.catalogue.availability import check_runnable, ensemble_status, member_status
from hetens.cli.main import main
from hetens.core.ensemble_file import read_ensemble_file
from hetens.errors import MissingFamilyError
from hetens.families import FAMILIES
from hetens.catalogue.presets import PRESET_DIR, preset_names, preset_path
from hetens.catalogue.registry import (
    FAMILIES_NOT_INSTALLABLE,
    KNOWN_MODELS,
    PAPER_FORCE_RMSE,
    PAPER_POOL,
    KnownModel,
    find_model,
    paper_force_rmse,
)
from hetens.core.weights import inverse_rmse_weights

#: The paper's top 11 and normalised weights (METHOD.md), in its order.
PAPER_TOP11 = {
    "esen-omat": 0.1218, "eqV2-31M-omat": 0.1188, "eqV2-86M-omat": 0.1187, "7net-omat-2": 0.1139,
    "7net-omat": 0.1093, "7net": 0.1041, "MACE-omat": 0.0825, "orb-omat-20": 0.0593,
    "orb-omat-c-inf-conf": 0.0581, "orb-omat-d-20": 0.0571, "orb-omat-d-inf": 0.0565,
}


def test_paper_preset_members_weights_and_environments():
    settings = read_ensemble_file("paper-top11")
    members = settings["members"]
    assert [m["name"] for m in members] == list(PAPER_TOP11)
    pool = {p.paper_name: p for p in PAPER_POOL}
    for member in members:
        paper = pool[member["name"]]
        assert member["spec"] == paper.spec and member["force_rmse"] == paper.force_rmse
        hetens.parse_spec(member["spec"])
        # fairchem-core 1.x members run in their own environment, the rest in this process.
        family = member["spec"].split(":")[0]
        assert member.get("python") == ("env:fairchem1" if family == "fairchem1" else None), member
    weights = inverse_rmse_weights([m["force_rmse"] for m in members])
    assert [round(float(w), 4) for w in weights] == list(PAPER_TOP11.values())


def test_paper_pool_in_the_registry():
    assert len(PAPER_POOL) == 21 and len({p.spec for p in PAPER_POOL}) == 21
    assert PAPER_FORCE_RMSE["orb:orb-v3-conservative-20-omat"] == 0.48766
    assert paper_force_rmse("mace:medium-omat-0@name=m") == 0.350226
    assert paper_force_rmse("sevenn:7net-mf-ompa") == 0.27751  # the default head, mpa
    assert paper_force_rmse("sevenn:7net-mf-ompa@OMAT24") == 0.253712
    assert paper_force_rmse("sevenn:7net-0") is None
    assert find_model("sevenn", "7net-omat").force_rmse == 0.2643
    assert find_model("sevenn", "7net-mf-ompa").force_rmse_for("omat24") == 0.253712
    assert find_model("fairchem1", "eSEN-30M-OMAT24").force_rmse == 0.23719
    # Every pool model of a family this hetens has an adapter for (or the fairchem1 rows
    # kept here) is a registry row with the level of theory the paper's ensemble needs.
    for paper in PAPER_POOL:
        family, _, rest = paper.spec.partition(":")
        if family in FAMILIES or family in FAMILIES_NOT_INSTALLABLE:
            known = find_model(family, rest.partition("@")[0])
            if known is None and family not in ("sevenn", "mace", "fairchem1"):
                continue  # a family module added elsewhere lists its own rows
            assert known is not None, paper
            assert known.level_for(rest.partition("@")[2] or None) == "PBE+U", paper


def test_default_preset_is_the_default_ensemble():
    from hetens.core.ensemble import DEFAULT_MEMBERS, DEFAULT_WITNESSES

    members = read_ensemble_file("default")["members"]
    assert [m["spec"] for m in members] == [*DEFAULT_MEMBERS, *DEFAULT_WITNESSES]
    assert [m.get("role", "predictor") for m in members] == (
        ["predictor"] * len(DEFAULT_MEMBERS) + ["witness"] * len(DEFAULT_WITNESSES))
    assert not any("weight" in m or "force_rmse" in m for m in members)  # uniform, as the default
    calc = hetens.load_preset("default", device="cpu")
    assert calc.member_names == [*DEFAULT_MEMBERS, *DEFAULT_WITNESSES]
    assert calc.roles == ["predictor"] * len(DEFAULT_MEMBERS) + ["witness"] * len(DEFAULT_WITNESSES)
    assert list(calc.weights) == pytest.approx([1 / len(members)] * len(members))


def test_paper_preset_is_refused_before_loading_naming_every_member_that_cannot_run(capsys, tmp_path):
    statuses = ensemble_status(read_ensemble_file("paper-top11")["members"], weights=False)
    blocked = [s for s in statuses if s.blocking]
    assert {"esen-omat", "eqV2-31M-omat", "eqV2-86M-omat"} <= {s.name for s in blocked}
    with pytest.raises(MissingFamilyError) as caught:
        hetens.load_preset("paper-top11", device="cpu")
    text = str(caught.value)
    assert f"{len(blocked)} of 11 members cannot run here" in text
    for status in blocked:
        assert f"{status.name} ({status.spec}" in text
    assert "hetens env create fairchem1 --family fairchem1" in text
    # The members that only need their weights downloaded are named too (issue 22, point 10).
    downloads = [s for s in ensemble_status(read_ensemble_file("paper-top11")["members"]) if s.missing
                 and not s.blocking]
    assert len(blocked) + len(downloads) == 11
    assert f"{len(downloads)} more have weights not downloaded yet" in text
    for status in downloads:
        assert f"{status.name} ({status.spec})" in text

    structure = tmp_path / "w.extxyz"
    from ase.build import bulk
    from ase.io import write

    write(structure, bulk("W", "bcc", a=3.17))
    code = main(["single", str(structure), "--ensemble-file", "paper-top11"])
    assert code == 2
    err = capsys.readouterr().err
    assert "members cannot run here" in err and "esen-omat (fairchem1:eSEN-30M-OMAT24" in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_ensemble_file_lists_the_presets(tmp_path):
    with pytest.raises(FileNotFoundError, match="presets: best-online, default, paper-top11"):
        hetens.load_ensemble_file(tmp_path / "nope.toml")
    with pytest.raises(FileNotFoundError, match="no preset ensemble 'nope'"):
        preset_path("nope")
    # A file that exists wins over a preset of the same name.
    own = tmp_path / "default.toml"
    own.write_text('[[member]]\nspec = "chgnet:0.3.0"\n[[member]]\nspec = "chgnet:0.2.0"\n')
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        members = read_ensemble_file("default.toml")["members"]
    finally:
        os.chdir(cwd)
    assert [m["spec"] for m in members] == ["chgnet:0.3.0", "chgnet:0.2.0"]
    assert set(preset_names()) >= {"best-online", "default", "paper-top11"}
    assert all(p.parent == PRESET_DIR for p in PRESET_DIR.glob("*.toml"))


def test_presets_are_package_data():
    """setuptools ships hetens/catalogue/presets/*.toml (pyproject's package-data) with the package."""
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["hetens.catalogue.presets"]
    shipped = {p.name for p in PRESET_DIR.glob("*.toml")}
    assert shipped and all(any(Path(name).match(p) for p in patterns) for name in shipped)


@pytest.fixture
def env_dir(tmp_path, monkeypatch):
    """An environment root with one complete environment, 'myenv', of family chgnet, whose
    interpreter is this one (as `hetens env create` would record it)."""
    root = tmp_path / "envs"
    (root / "myenv").mkdir(parents=True)
    (root / "myenv" / "hetens-env.json").write_text(json.dumps(
        {"name": "myenv", "family": "chgnet", "python": sys.executable}))
    monkeypatch.setenv("HETENS_ENV_DIR", str(root))
    return root


def test_environment_names_in_specs_and_files(env_dir, tmp_path):
    for name in ("env:myenv", "env:chgnet"):  # by name, or by the family it was built for
        member = hetens.load_member(f"chgnet:0.3.0@python={name}", device="cpu")
        try:
            assert member.calculator.python == os.path.abspath(sys.executable)
            assert f"python={os.path.abspath(sys.executable)}" in member.spec
        finally:
            member.calculator.close()
    with pytest.raises(MissingFamilyError, match="hetens env create nope --family FAMILY"):
        hetens.load_member("chgnet:0.3.0@python=env:nope", device="cpu")

    status = member_status("chgnet:0.3.0", "env:myenv")
    assert status.runs_in == "env myenv" and status.missing == ()
    status = member_status("chgnet:0.3.0", "env:sevenn")
    assert status.blocking and "environment sevenn is not built" in status.missing[0]
    assert "hetens env create sevenn --family chgnet" in status.missing[0]
    assert member_status("chgnet:0.3.0", "/no/such/python").missing == ("interpreter /no/such/python does not exist",)

    path = tmp_path / "e.toml"
    path.write_text('[[member]]\nspec = "chgnet:0.3.0"\npython = "env:myenv"\n'
                    '[[member]]\nspec = "sevenn:7net-0"\npython = "env:missing"\n')
    with pytest.raises(MissingFamilyError, match=r"1 of 2 members cannot run here: sevenn:7net-0 "
                                                  r"\(sevenn:7net-0, env missing\): environment missing"):
        hetens.load_ensemble_file(path)
    # The environment's own hetens reports its members' weights.
    statuses = ensemble_status(read_ensemble_file(path)["members"], weights_in_workers=True)
    assert statuses[0].missing == () and statuses[1].blocking


def test_member_status_of_in_process_members(monkeypatch):
    assert member_status("chgnet:0.3.0").runnable
    hub = member_status("mace:medium-omat-0")
    assert not hub.blocking and hub.missing == (
        "weights not downloaded (fetched on first use, online)",)
    unknown = member_status("nosuch:model")
    assert unknown.blocking and "family 'nosuch' has no adapter" in unknown.missing[0]
    assert member_status("ase:ase.calculators.emt:EMT").runnable
    check_runnable("default", read_ensemble_file("default")["members"])  # nothing blocking


def test_fairchem1_outside_its_environment_says_how_to_build_one():
    """fairchem-core 2.x shares the import name; the family asks for 1.x, in its own environment."""
    with pytest.raises(MissingFamilyError, match=r"fairchem-core 1\.x \(found .*hetens env create fairchem1 "
                                                 "--family fairchem1"):
        hetens.load_member("fairchem1:eSEN-30M-OMAT24", device="cpu")


def test_registry_rows_of_a_family_without_an_adapter_do_not_break_the_table(monkeypatch):
    import hetens.catalogue.models_table as table

    extra = (KnownModel("nosuch", "m1", "PBE+U", "x"), KnownModel("gone", "x", "PBE+U", "y"))
    monkeypatch.setattr(table, "KNOWN_MODELS", KNOWN_MODELS + extra)
    monkeypatch.setattr(table, "FAMILIES_NOT_INSTALLABLE", {"gone": "why"})
    rows = {r.spec: r for r in table.model_rows()}
    assert rows["nosuch:m1"].weights == "family has no adapter in this hetens"
    assert rows["gone:x"].weights == "not installable here"


def test_hetens_models_json_lists_models_families_and_presets():
    """The CLI in a fresh process (every family's package imported for the first time), parsed."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "hetens.cli.main", "models", "--json"], capture_output=True,
                          text=True, env=env, cwd=root, timeout=600)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    models = {m["spec"]: m for m in listing["models"]}
    assert models["mace:medium-omat-0"]["force_rmse"] == 0.350226
    assert models["sevenn:7net-0"]["weights"] == "shipped" and models["sevenn:7net-0"]["force_rmse"] is None
    assert models["fairchem1:eSEN-30M-OMAT24"]["weights"].startswith("own environment")
    assert models["fairchem1:eSEN-30M-OMAT24"]["training_data"] == "OMat24"  # full detail in --json
    assert "no offline list" in models["nequip:NequIP-OAM-L-0.1"]["unverified"]
    families = {f["family"]: f for f in listing["families"]}
    assert families["ase"]["runs"] == "in-process"
    assert families["fairchem1"]["runs"] == "own environment"
    assert "hetens env create fairchem1 --family fairchem1" in families["fairchem1"]["detail"]
    for name, family in FAMILIES.items():
        expected = ("own environment",) if family.environment == "own" else (
            ("in-process",) if family.installed else ("not installed",))
        assert families[name]["runs"] in expected, name
    presets = {p["name"]: p for p in listing["presets"]}
    assert presets["default"]["runnable"] is True
    assert all(m["runnable"] and m["missing"] == [] for m in presets["default"]["members"])
    paper = presets["paper-top11"]
    assert paper["runnable"] is False and [m["name"] for m in paper["members"]] == list(PAPER_TOP11)
    esen = paper["members"][0]
    assert esen["runs_in"] == "env fairchem1" and "hetens env create fairchem1 --family fairchem1" in esen["missing"][0]
    assert all(m["missing"] or m["runnable"] for m in paper["members"])



def test_hetens_models_text(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "preset default: runnable here now" in text
    assert "preset paper-top11: not runnable here now" in text
    assert "7net-omat-2" in text and "0.254" in text
    assert "fairchem1  own environment  not created: hetens env create fairchem1 --family fairchem1" in text
    assert "  to do: hetens env create fairchem1 --family fairchem1" in text
    assert "pet:pet-omat-xs-v1.0.0?" in text  # unverified row marked
    assert max(len(line) for line in text.splitlines()) <= 100
