"""A member spec is parsed once (catalogue.spec.as_spec) and the parsed value passed along.

The factory (plan_ensemble, what the CLI and build_ensemble run) and the
calculator hand the MemberSpec on to the role count, the worker spec and
load_member; a spy on the parser counts the parses. Members: ASE's EMT by
import path (the ``ase`` family), which loads in no time.
"""

from __future__ import annotations

import pytest

import hetens
import hetens.catalogue.spec as spec_module
import hetens.core.member as member_module
from hetens.core.factory import plan_ensemble

SPECS = ["ase:ase.calculators.emt:EMT@level=EMT", "ase:ase.calculators.emt:EMT@level=EMT@name=emt-b"]
WITNESS = "ase:ase.calculators.emt:EMT@level=EMT@name=emt-w"


@pytest.fixture
def parses(monkeypatch):
    """The spec texts parsed while the test runs, in order."""
    seen: list[str] = []
    real = spec_module.parse_spec

    def spy(text):
        seen.append(text)
        return real(text)

    monkeypatch.setattr(spec_module, "parse_spec", spy)
    monkeypatch.setattr(member_module, "parse_spec", spy)
    return seen


def test_build_ensemble_parses_each_spec_once(parses):
    with hetens.build_ensemble(SPECS, witnesses=[WITNESS]) as calc:
        assert calc.member_names == ["ase:ase.calculators.emt:EMT", "emt-b", "emt-w"]
        assert calc.roles == ["predictor", "predictor", "witness"]
    assert sorted(parses) == sorted([*SPECS, WITNESS])


def test_the_calculator_parses_each_spec_once(parses):
    with hetens.HeterogeneousEnsembleCalculator(SPECS, witnesses=[WITNESS], on_member_error="drop") as calc:
        assert len(calc.members) == 3
    assert sorted(parses) == sorted([*SPECS, WITNESS])


def test_a_plan_carries_parsed_specs(parses):
    plan = plan_ensemble(SPECS, witnesses=[WITNESS])
    assert all(isinstance(m, spec_module.MemberSpec) for m in plan.members)
    assert len(parses) == 3


def test_policy_is_checked_in_one_place_with_the_callers_names():
    with pytest.raises(ValueError, match="--on-member-error must be 'raise' or 'drop'; got 'skip'"):
        plan_ensemble(SPECS, on_member_error="skip", argument_names={"on_member_error": "--on-member-error"})
    with pytest.raises(ValueError, match="^on_member_error must be 'raise' or 'drop'; got 'skip'"):
        hetens.HeterogeneousEnsembleCalculator(SPECS, on_member_error="skip")
    with pytest.raises(ValueError, match="max_energy_deviation must be a positive number of eV/atom; got -1"):
        hetens.HeterogeneousEnsembleCalculator(SPECS, max_energy_deviation=-1)
