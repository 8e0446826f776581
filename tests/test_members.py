"""Member specs, the registry, load_member's errors, device selection, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hetens
from hetens.core.device import resolve_device
from hetens.errors import MemberSpecError, MissingFamilyError, UnknownModelError, WeightsUnavailableError
from hetens.families import FAMILIES, Family
from hetens.catalogue.registry import KNOWN_MODELS, find_model
from hetens.catalogue.spec import parse_spec


def test_parse_spec_forms():
    spec = parse_spec("sevenn:7net-mf-0@PBE")
    assert (spec.family, spec.model, spec.head, spec.options) == ("sevenn", "7net-mf-0", "PBE", {})
    spec = parse_spec("mace:/tmp/x.model@level=PBE+U@name=mine")
    assert spec.model == "/tmp/x.model" and spec.head is None
    assert spec.options == {"level": "PBE+U", "name": "mine"}
    assert spec.label == "mine"
    assert str(parse_spec("fairchem:uma-s-1p1@omat@device=cpu")) == "fairchem:uma-s-1p1@omat@device=cpu"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7net-0", "must look like FAMILY:MODEL"),
        ("sevenn:", "must look like FAMILY:MODEL"),
        ("sevenn:@PBE", "names no model"),
        ("sevenn:7net-mf-0@PBE@R2SCAN", "more than one head"),
        ("sevenn:7net-0@=x", "must be KEY=VALUE"),
    ],
)
def test_bad_specs(text, message):
    with pytest.raises(MemberSpecError, match=message):
        parse_spec(text)


def test_load_member_errors_name_the_problem(tmp_path):
    with pytest.raises(UnknownModelError, match="unknown model family 'orbital'; known families: sevenn"):
        hetens.load_member("orbital:v3", device="cpu")
    with pytest.raises(UnknownModelError, match="known sevenn models: 7net-0"):
        hetens.load_member("sevenn:7net-99", device="cpu")
    with pytest.raises(UnknownModelError, match="has no head 'PBE0'"):
        hetens.load_member("sevenn:7net-mf-0@PBE0", device="cpu")
    with pytest.raises(WeightsUnavailableError, match="no file or folder at"):
        hetens.load_member(f"chgnet:{tmp_path}/missing.pth.tar", device="cpu")


def test_missing_family_names_the_extra():
    family = Family("ghost", ("hetens_no_such_package",), "ghost", "test family")
    assert not family.installed
    with pytest.raises(MissingFamilyError, match=r"pip install 'hetens\[ghost\]'"):
        family.adapter()
    assert isinstance(MissingFamilyError("x"), ImportError)


def test_registry_levels_and_heads():
    assert find_model("sevenn", "7NET-0").name == "7net-0"
    mf = find_model("sevenn", "7net-mf-0")
    assert mf.level_for("PBE") == "PBE+U"
    assert mf.level_for("r2scan") == "r2SCAN"
    assert find_model("fairchem", "uma-s-1p1").level_for("omol") == "wB97M-V"
    assert find_model("chgnet", "r2scan").level_of_theory == "r2SCAN"
    from hetens.catalogue.registry import FAMILIES_NOT_INSTALLABLE

    assert all(m.family in FAMILIES or m.family in FAMILIES_NOT_INSTALLABLE for m in KNOWN_MODELS)
    shipped = {m.spec for m in KNOWN_MODELS if m.source == "wheel"}
    assert set(hetens.DEFAULT_MEMBERS) - {"sevenn:7net-mf-0@PBE"} <= shipped


def test_spec_head_sets_level_and_member_metadata():
    member = hetens.load_member("sevenn:7net-mf-0@R2SCAN", device="cpu")
    assert member.level_of_theory == "r2SCAN"
    assert member.family == "sevenn"
    assert member.training_data == "MPtrj + MP r2SCAN"
    assert member.calculator.modal == "R2SCAN"


def test_device_selection():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("gpu")


def test_import_loads_no_model_package():
    # The import time itself (< 1 s) is measured by benchmarks/bench_overhead.py, not asserted here.
    code = (
        "import sys, hetens;"
        "print([m for m in ('torch', 'sevenn', 'chgnet', 'mace', 'fairchem', 'matgl', 'matplotlib',"
        " 'ase.calculators.calculator') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # The conformance check and the adapter contract load nothing either until used.
    code = code.replace("import sys, hetens;", "import sys, hetens, hetens.testing, hetens.families.contract;")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_worker_program_imports_no_parent_side_code():
    """What every member environment runs loads members and their evaluation, not the
    ensemble, the pool or the worker client (checked at run time; tests/test_imports.py
    checks the static imports)."""
    code = (
        "import sys, hetens.workers.worker_main as w, hetens.core.evaluation, hetens.core.member;"
        "print([m for m in ('hetens.core.calculator', 'hetens.core.pool', 'hetens.workers.client',"
        " 'hetens.workers.isolated', 'hetens.core.combine', 'torch') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_adapter_fulfils_the_contract():
    """Each installed family's adapter module defines the FamilyAdapter functions; the batched
    path is declared by the families that have one; a module lacking a function is refused."""
    import types

    from hetens.families.contract import BatchedEvaluation, FamilyAdapter, check_adapter

    for family in FAMILIES.values():
        if family.installed:
            adapter = family.adapter()
            assert isinstance(adapter, FamilyAdapter), family.name
            assert isinstance(adapter, BatchedEvaluation) == (family.name in ("sevenn", "chgnet")), family.name
    incomplete = types.ModuleType("hetens.families.ghost")
    incomplete.load = incomplete.versions = lambda *a, **k: None
    with pytest.raises(TypeError, match="ghost lacks weights_status, elements"):
        check_adapter(incomplete)


def test_ase_plugin_registers_the_calculator():
    from hetens.ase_plugin import __ase_plugins__

    try:
        import ase._4.plugins  # noqa: F401
    except ImportError:
        assert __ase_plugins__ == set()
        return
    (plugin,) = __ase_plugins__
    assert plugin.name == "hetens"
    assert plugin.implementation is hetens.HeterogeneousEnsembleCalculator
