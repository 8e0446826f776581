"""The ensemble factory (``hetens.build_ensemble``), the options every command that takes members
shares (``hetens calibrate`` included), and the public API's one export table.

Real shipped models; the checks that must fail before anything loads run with model loading
made to fail the test.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import hetens
from hetens.cli.main import main
from hetens.cli.options import OPTION_NAMES, add_ensemble_options, add_member_error_options, ensemble_from_args, \
    ensemble_options
from hetens.distributed import EnsembleSpec
from hetens.core.factory import QUIET_WARNINGS, build_ensemble, plan_ensemble, quiet_upstream_warnings

from conftest import tungsten_cell

PAIR = ["sevenn:7net-0", "chgnet:0.3.0"]
INIT = Path(hetens.__file__)


@pytest.fixture
def no_model_loads(monkeypatch):
    import hetens.families
    import hetens.core.member

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the check")

    monkeypatch.setattr(hetens.core.member, "load_member", refuse)
    monkeypatch.setattr(hetens.families.Family, "adapter", refuse)


def weights_file(tmp_path, weights: dict, roles: dict | None = None) -> str:
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"weights": weights, **({"roles": roles} if roles else {})}))
    return str(path)


# ------------------------------------------------------------------ plan: checks, no model


def texts(members) -> list[str]:
    """A plan's members (parsed once, MemberSpec) as spec text."""
    return [str(m) for m in members]


def test_plan_resolves_members_without_loading(no_model_loads, tmp_path):
    default = plan_ensemble()
    assert texts(default.predictors) == list(hetens.DEFAULT_MEMBERS)
    assert texts(default.witnesses) == list(hetens.DEFAULT_WITNESSES)
    assert plan_ensemble(PAIR).witnesses == ()  # models given: no default witnesses
    assert texts(plan_ensemble(witnesses=["chgnet:0.2.0"]).members) == [*hetens.DEFAULT_MEMBERS, "chgnet:0.2.0"]
    path = weights_file(tmp_path, {"sevenn:7net-0": 0.5, "chgnet:0.3.0": 0.3, "chgnet:0.2.0": 0.2},
                        {"chgnet:0.3.0": "witness"})
    plan = plan_ensemble(weights_file=path)
    assert texts(plan.predictors) == ["sevenn:7net-0", "chgnet:0.2.0"] and texts(plan.witnesses) == ["chgnet:0.3.0"]
    assert plan.weights == {"sevenn:7net-0": 0.5, "chgnet:0.3.0": 0.3, "chgnet:0.2.0": 0.2}
    # models win over the file's members; the file's weights are matched by name
    assert texts(plan_ensemble(PAIR, weights_file=path).members) == PAIR
    plan = plan_ensemble(PAIR, on_member_error="drop", min_members=2, max_energy_deviation=0.5, lazy=False)
    assert plan.options == {"on_member_error": "drop", "min_members": 2, "max_energy_deviation": 0.5,
                            "lazy": False}


@pytest.mark.parametrize("kwargs, message", [
    (dict(models=PAIR, weights=[1.0]), r"weights has 1 value but models names 2 members \(sevenn:7net-0 chgnet:0.3.0\)"),
    (dict(force_rmse=[0.1, 0.2]), "force_rmse has 2 values but the default ensemble has 3 members"),
    (dict(models=PAIR, weights=[1.0, -1.0]), "weights must be >= 0"),
    (dict(models=PAIR, weights=[1.0, 1.0], force_rmse=[0.1, 0.2]), "give the weights one way"),
    (dict(models=PAIR, min_members=2), "min_members applies with on_member_error drop"),
    (dict(models=PAIR, on_member_error="ignore"), "on_member_error must be 'raise' or 'drop'"),
    (dict(models=PAIR, max_energy_deviation=0.0), "max_energy_deviation must be a positive number"),
    (dict(models=["sevenn:7net-0"]), "at least two members"),
    (dict(models=["sevenn:7net-0@role=witness", "chgnet:0.3.0@role=witness"]), "at least one predictor"),
    (dict(models=["sevenn", "chgnet:0.3.0"]), "member spec .sevenn. must look like FAMILY:MODEL"),
    (dict(models=PAIR, ensemble_file="e.toml"), "either with models or with ensemble_file"),
])
def test_plan_refuses_bad_arguments_before_loading(no_model_loads, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_ensemble(**kwargs)


def test_plan_names_options_as_the_caller_does(no_model_loads, tmp_path):
    with pytest.raises(ValueError, match="--weights has 1 value but --models names 2 members"):
        plan_ensemble(PAIR, weights=[1.0], argument_names=OPTION_NAMES)
    path = weights_file(tmp_path, {"sevenn:7net-0": 1.0, "chgnet:0.3.0": 1.0})
    with pytest.raises(ValueError, match="--weights-file .* names the members"):
        plan_ensemble(weights_file=path, witnesses=["chgnet:0.2.0"], argument_names=OPTION_NAMES)


# ------------------------------------------------------------- one factory for CLI, cluster, Python


def test_cluster_spec_from_the_factory_arguments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = EnsembleSpec.from_options(models=PAIR, weights=[1.0, 2.0], weights_file=None,
                                     ensemble_file="e.toml", witnesses=[], device="cpu")
    assert spec.models == tuple(PAIR) and spec.weights == (1.0, 2.0) and spec.witnesses == ()
    assert spec.ensemble_file == str(tmp_path / "e.toml")  # absolute: workers run elsewhere
    assert EnsembleSpec.from_options(models=[]).models is None  # bare --models: the default members
    with pytest.raises(TypeError, match="unknown option.*colour"):
        EnsembleSpec.from_options(colour="red")


def test_cli_python_and_cluster_spec_build_the_same_ensemble():
    parser = argparse.ArgumentParser()
    add_ensemble_options(parser)
    add_member_error_options(parser)
    args = parser.parse_args(["--models", "chgnet:0.3.0", "--witnesses", "chgnet:0.2.0", "--weights", "3", "1",
                              "--device", "cpu", "--on-member-error", "drop", "--max-energy-deviation", "2"])
    built = [
        build_ensemble(["chgnet:0.3.0"], witnesses=["chgnet:0.2.0"], weights=[3, 1], device="cpu",
                       on_member_error="drop", max_energy_deviation=2.0),
        ensemble_from_args(args),
        EnsembleSpec.from_options(**ensemble_options(args)).build(),
    ]
    results = []
    for calc in built:
        assert calc.member_names == ["chgnet:0.3.0", "chgnet:0.2.0"]
        assert calc.roles == ["predictor", "witness"]
        np.testing.assert_array_equal(calc.weights, [0.75, 0.25])
        assert (calc.on_member_error, calc.max_energy_deviation) == ("drop", 2.0)
        atoms = tungsten_cell(1, rattle=0.1)
        atoms.calc = calc
        results.append((atoms.get_potential_energy(), calc.results["uncertainty"]))
    assert results[0] == results[1] == results[2] and results[0][1] > 0


def test_quiet_warnings_are_ignored_inside_the_block_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_upstream_warnings():
            for message in QUIET_WARNINGS:
                warnings.warn(message + " (from an upstream package)", UserWarning)
            warnings.warn("something else", UserWarning)
        warnings.warn(QUIET_WARNINGS[0], UserWarning)
    assert [str(w.message) for w in caught] == ["something else", QUIET_WARNINGS[0]]


# ------------------------------------------------------------------- hetens calibrate, live


@pytest.fixture(scope="module")
def reference(tmp_path_factory, chgnet_member) -> str:
    """Eight 2-atom W cells labelled by CHGNet 0.3.0 plus noise (stand-in reference labels)."""
    calc = chgnet_member.calculator
    rng = np.random.default_rng(5)
    frames = []
    for k in range(8):
        atoms = tungsten_cell(1, rattle=0.1, seed=k)
        atoms.calc = calc
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        labelled = atoms.copy()
        labelled.calc = SinglePointCalculator(labelled, energy=energy + rng.normal(0, 0.05),
                                              forces=forces + rng.normal(0, 0.3, forces.shape))
        frames.append(labelled)
    path = tmp_path_factory.mktemp("reference") / "ref.extxyz"
    write(path, frames)
    return str(path)


def calibrate_json(capsys, *argv: str) -> dict:
    code = main(["calibrate", *argv, "--json", "--progress", "off"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_calibrate_weights_file_names_the_members_and_roles(reference, tmp_path, capsys):
    """--weights-file: its members are calibrated (weights fitted again), the scan over the
    predictors with the witness kept in U, as --precomputed does."""
    path = weights_file(tmp_path, {"sevenn:7net-0": 0.2, "chgnet:0.3.0": 0.7, "chgnet:0.2.0": 0.1},
                        {"chgnet:0.2.0": "witness"})
    out = tmp_path / "fitted.json"
    result = calibrate_json(capsys, "--reference", reference, "--weights-file", path, "--device", "cpu",
                            "-o", str(out))
    assert sorted(result["members"]) == ["chgnet:0.2.0", "chgnet:0.3.0", "sevenn:7net-0"]
    assert [e["n"] for e in result["top_n_scan"]] == [1, 2]  # over the two predictors
    assert all("chgnet:0.2.0" in e["members"] for e in result["top_n_scan"])
    written = json.loads(out.read_text())
    assert written["roles"]["chgnet:0.2.0"] == "witness"
    rmse = written["force_rmse"]
    inverse = {n: 1 / rmse[n] for n in written["weights"]}
    np.testing.assert_allclose([written["weights"][n] for n in inverse],
                               np.array(list(inverse.values())) / sum(inverse.values()))  # fitted, not the file's


def test_calibrate_ensemble_file_with_parallel_runs_workers(reference, chgnet_member, tmp_path, capsys,
                                                            monkeypatch):
    from hetens.core.factory import EnsemblePlan

    toml = tmp_path / "ensemble.toml"
    toml.write_text('[[member]]\nspec = "chgnet:0.3.0"\n[[member]]\nspec = "chgnet:0.2.0"\n')
    built = []
    build = EnsemblePlan.build
    monkeypatch.setattr(EnsemblePlan, "build", lambda plan: built.append(build(plan)) or built[-1])
    result = calibrate_json(capsys, "--reference", reference, "--ensemble-file", str(toml), "--parallel",
                            "--device", "cpu", "-o", str(tmp_path / "w.json"))
    (calc,) = built
    assert all(isinstance(m.calculator, hetens.IsolatedCalculator) for m in calc.members)
    assert all(m.calculator.worker.device == "cpu" for m in calc.members)
    assert sorted(result["members"]) == ["chgnet:0.2.0", "chgnet:0.3.0"]
    assert [e["n"] for e in result["top_n_scan"]] == [2] and result["chosen_n"] == 2
    assert all(r > 0 for r in result["force_rmse"].values())
    # the worker evaluates the model this process has: the same error against the labels
    frames = read(reference, ":")
    labels = np.concatenate([f.get_forces() for f in frames])
    predicted = []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = chgnet_member.calculator
        predicted.append(atoms.get_forces())
    rmse = np.sqrt(np.mean((labels - np.concatenate(predicted)) ** 2))
    assert result["force_rmse"]["chgnet:0.3.0"] == pytest.approx(rmse, rel=1e-4)  # float32 models


@pytest.mark.parametrize("argv, message", [
    (["--precomputed", "a.extxyz", "b.extxyz", "--parallel"], "--parallel applies to live members"),
    (["--precomputed", "a.extxyz", "b.extxyz", "--ensemble-file", "e.toml"], "--ensemble-file applies to live"),
    (["--precomputed", "a.extxyz", "b.extxyz", "--weights-file", "w.json"], "calibrate fits the weights itself"),
    (["--models", *PAIR, "--weights", "1", "2"], "--weights has no effect"),
    (["--models", *PAIR, "--weights-file", "w.json"], "give it or --models, not both"),
    (["--models", *PAIR, "--witness-names", "x"], "--witness-names marks PRED files"),
    (["--models", "sevenn:7net-0"], "at least two members"),
])
def test_calibrate_refuses_mixed_sources_before_loading(no_model_loads, reference, tmp_path, capsys, argv, message):
    code = main(["calibrate", "--reference", reference, "-o", str(tmp_path / "w.json"), *argv])
    assert code == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------- the public API


def type_checking_names(path: Path) -> dict[str, str]:
    """Name -> module of every ``from M import name`` under ``if TYPE_CHECKING:`` in ``path``."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for statement in ast.walk(node):
                if isinstance(statement, ast.ImportFrom):
                    found.update({a.asname or a.name: statement.module for a in statement.names})
    return found


def test_the_lazy_exports_are_the_type_checking_block():
    declared = type_checking_names(INIT)
    assert {"build_ensemble", "run_monitored", "UncertaintyMonitor", "score_live", "calibrate",
            "HeterogeneousEnsembleCalculator", "compute_uncertainty", "read_weights_file"} <= set(declared)
    assert sorted(hetens.__all__) == sorted(["__version__", *declared])
    assert sorted(dir(hetens)) == sorted(hetens.__all__)
    import importlib

    for name, module in declared.items():
        assert getattr(hetens, name) is getattr(importlib.import_module(module), name), name
    with pytest.raises(AttributeError, match="no attribute 'read_annotation'"):
        hetens.read_annotation  # noqa: B018 (removed: unused)


def test_import_hetens_stays_light():
    code = ("import sys, hetens; print(sorted(m for m in ('ase.calculators.calculator', 'torch', 'hetens.core.calculator',"
            " 'hetens.monitor', 'hetens.jobs', 'hetens.jobs.score_live') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_scoring_entry_point_takes_one_options_object():
    """No entry point spells the scoring keywords out: each takes ``options`` and field overrides."""
    from hetens.distributed import score_on_cluster, score_precomputed_on_cluster
    from hetens.jobs.score_live import score_live
    from hetens.rescore.options import ScoreOptions
    from hetens.rescore.precomputed_scoring import score_loaded_predictions, score_precomputed

    fields = set(ScoreOptions.__dataclass_fields__)
    for function in (score_live, score_precomputed, score_loaded_predictions, score_on_cluster,
                     score_precomputed_on_cluster):
        parameters = inspect.signature(function).parameters
        assert "options" in parameters and parameters["options"].default is None, function.__name__
        assert any(p.kind is p.VAR_KEYWORD for p in parameters.values()), function.__name__
        assert not fields & set(parameters), (function.__name__, fields & set(parameters))
