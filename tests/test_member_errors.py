"""Member failures: ``on_member_error="raise"`` names the member; ``"drop"`` carries on, loudly.

Faults are injected around a real shipped model (:class:`FaultyMember`):
the model runs, then its output is corrupted or an exception is raised on
chosen calls, as a GPU running out of memory or a diverging model would.
Element failures need no injection: 7net-0 was not trained on Po, CHGNet was.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.md.verlet import VelocityVerlet

from hetens import HeterogeneousEnsembleCalculator, Member
from hetens.core.evaluation import evaluate_member
from hetens.errors import (
    InvalidStructureError,
    MemberDroppedWarning,
    MemberFailedError,
    UnsupportedElementError,
)
from hetens.monitor import UncertaintyLogger
from hetens.monitor.csvlog import read_log

from conftest import tungsten_cell


class FaultyMember(Calculator):
    """A real member whose output is corrupted on the calls listed in ``fail_on`` (1-based).

    ``fault``: ``"raise"`` (RuntimeError as from CUDA), ``"nan"`` (NaN force
    on atom 3), ``"inf"`` (infinite energy), ``"shape"`` (one atom's forces
    missing). ``fail_on=None`` fails on every call.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")

    def __init__(self, member: Member, fault: str, fail_on=None):
        super().__init__()
        self.member, self.fault, self.fail_on = member, fault, fail_on
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        energy, forces, stress = evaluate_member(self.member, self.atoms, True, force=True)
        if self.fail_on is None or self.calls in self.fail_on:
            if self.fault == "raise":
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\n(long torch detail)")
            if self.fault == "nan":
                forces = forces.copy()
                forces[3, 1] = np.nan
            elif self.fault == "inf":
                energy = np.inf
            elif self.fault == "shape":
                forces = forces[:-1]
        self.results = {"energy": energy, "free_energy": energy, "forces": forces, "stress": stress}


def faulty(member: Member, fault: str, fail_on=None, name: str = "faulty") -> Member:
    return Member.wrap(FaultyMember(member, fault, fail_on), name=name, level_of_theory="PBE+U")


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("raise", r"member faulty failed on W16: RuntimeError: CUDA out of memory\. Tried to allocate 2\.00 GiB$"),
        ("nan", r"member faulty returned non-finite forces \(first on atom 3, W\) for W16"),
        ("inf", r"member faulty returned a non-finite energy \(inf\) for W16"),
        ("shape", r"member faulty returned forces of shape \(15, 3\), expected \(16, 3\) for W16"),
    ],
)
def test_raise_names_the_member_the_property_and_the_structure(sevenn_member, chgnet_member, fault, message):
    calc = HeterogeneousEnsembleCalculator([sevenn_member, faulty(chgnet_member, fault)])
    atoms = tungsten_cell(2)
    atoms.calc = calc
    with pytest.raises(MemberFailedError, match=message) as caught:
        atoms.get_forces()
    if fault == "raise":
        assert isinstance(caught.value.__cause__, RuntimeError)  # the model's own error, chained


def test_drop_gives_exactly_the_ensemble_of_the_survivors(sevenn_member, chgnet_member):
    atoms = tungsten_cell(2)
    survivors = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], weights=[0.5, 0.3])
    expected = survivors.get_property("forces", atoms.copy()), dict(survivors.results)
    calc = HeterogeneousEnsembleCalculator(
        [sevenn_member, faulty(sevenn_member, "nan"), chgnet_member],
        weights=[0.5, 0.2, 0.3],
        on_member_error="drop",
    )
    atoms.calc = calc
    with pytest.warns(MemberDroppedWarning, match="member faulty dropped: .*non-finite forces"):
        forces = atoms.get_forces()
    r = calc.results
    # The same arithmetic on the same member outputs (weights renormalised: 1e-15 relative).
    np.testing.assert_allclose(forces, expected[0], rtol=1e-13, atol=1e-15)
    assert r["energy"] == pytest.approx(expected[1]["energy"], rel=1e-14)
    assert r["uncertainty"] == pytest.approx(expected[1]["uncertainty"], rel=1e-13)
    np.testing.assert_allclose(r["stress"], expected[1]["stress"], rtol=1e-13, atol=1e-15)
    assert list(r["dropped_members"]) == ["faulty"]
    assert "non-finite forces (first on atom 3, W)" in r["dropped_members"]["faulty"]
    np.testing.assert_allclose(r["member_weights"], [0.625, 0.0, 0.375])
    assert np.isnan(r["member_energies"][1]) and np.isnan(r["member_forces"][1]).all()
    assert np.isnan(r["member_stresses"][1]).all() and np.isnan(r["member_max_deviation"][1])
    np.testing.assert_array_equal(r["member_energies"][[0, 2]], expected[1]["member_energies"])
    assert r["most_deviating_member"] in (0, 2)


def test_drop_warns_once_per_member_and_retries_the_member_next_time(sevenn_member, chgnet_member):
    flaky = faulty(chgnet_member, "raise", fail_on={1, 2}, name="flaky")
    calc = HeterogeneousEnsembleCalculator(
        [sevenn_member, chgnet_member, flaky], on_member_error="drop"
    )
    atoms = tungsten_cell(2)
    atoms.calc = calc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dropped = []
        for step in range(3):
            atoms.positions[0, 0] += 0.01
            atoms.get_forces()
            dropped.append(list(calc.results["dropped_members"]))
    assert dropped == [["flaky"], ["flaky"], []]  # back in once it works again
    assert [w.category for w in caught] == [MemberDroppedWarning]
    assert calc.results["member_weights"] == pytest.approx([1 / 3] * 3)


def test_drop_below_min_members_raises_with_every_failure(sevenn_member, chgnet_member):
    calc = HeterogeneousEnsembleCalculator(
        [sevenn_member, faulty(chgnet_member, "raise", name="a"), faulty(chgnet_member, "inf", name="b")],
        on_member_error="drop",
    )
    atoms = tungsten_cell(2)
    atoms.calc = calc
    with pytest.raises(MemberFailedError, match=r"only 1 of 3 members gave results for W16 \(min_members=2\): "
                       r"a: .*CUDA out of memory.*; b: .*non-finite energy"):
        atoms.get_potential_energy()
    # U of one member is identically 0: min_members below 2 is refused.
    with pytest.raises(ValueError, match=r"min_members must be between 2 and the 3 members; got 1 \(it counts "
                       r"the members in U"):
        HeterogeneousEnsembleCalculator(calc.members, on_member_error="drop", min_members=1)


def test_element_outside_a_members_training_set(sevenn_member, chgnet_member):
    atoms = tungsten_cell(2)
    atoms.numbers[5] = 84  # Po: in CHGNet's 94 elements, not in 7net-0's 89
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    with pytest.raises(UnsupportedElementError, match=r"member sevenn:7net-0 was not trained on element\(s\) Po "
                       r"\(structure PoW15\)"):
        calc.get_potential_energy(atoms)
    dropping = HeterogeneousEnsembleCalculator(
        [sevenn_member, chgnet_member, faulty(chgnet_member, "none", name="chgnet-copy")],
        on_member_error="drop",
    )
    with pytest.warns(MemberDroppedWarning, match="sevenn:7net-0 dropped: .*not trained on element") as caught:
        dropping.get_potential_energy(atoms)
    assert not any("on_member_error='drop'" in str(w.message) for w in caught)  # already passed: no advice
    assert list(dropping.results["dropped_members"]) == ["sevenn:7net-0"]
    assert dropping.results["member_energies"][1] == dropping.results["member_energies"][2]


def test_element_no_member_supports_is_refused_before_any_model_runs(sevenn_member, chgnet_member):
    spy = faulty(chgnet_member, "none")
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], on_member_error="drop")
    atoms = tungsten_cell(2)
    atoms.numbers[0] = 95  # Am: beyond CHGNet's 94 and 7net-0's set
    with pytest.raises(InvalidStructureError, match=r"AmW15: no member of the ensemble was trained on element\(s\) Am"):
        calc.get_potential_energy(atoms)
    assert spy.calculator.calls == 0
    # A member whose elements are unknown might support it: then the members that do not, fail.
    unknown = HeterogeneousEnsembleCalculator([sevenn_member, spy], on_member_error="raise")
    with pytest.raises(UnsupportedElementError, match="sevenn:7net-0 was not trained on element"):
        unknown.get_potential_energy(atoms)
    assert spy.calculator.calls == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"on_member_error": "ignore"}, "on_member_error must be 'raise' or 'drop'; got 'ignore'"),
        ({"on_member_error": "drop", "min_members": 0}, "min_members must be between 2 and the 2 members; got 0"),
        ({"on_member_error": "drop", "min_members": 3}, "min_members must be between 2 and the 2 members; got 3"),
    ],
)
def test_policy_arguments_are_checked(sevenn_member, chgnet_member, kwargs, message):
    with pytest.raises(ValueError, match=message):
        HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member], **kwargs)


def test_monitored_md_carries_on_through_a_failing_member(sevenn_member, chgnet_member, tmp_path):
    flaky = faulty(chgnet_member, "nan", fail_on={3, 4}, name="flaky")
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member, flaky], on_member_error="drop")
    atoms = tungsten_cell(2)
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=1.0 * 0.09822694788464063)  # 1 fs in ASE units
    logger = UncertaintyLogger(dyn, tmp_path / "u.csv")
    dyn.attach(logger)
    with pytest.warns(MemberDroppedWarning, match="flaky"):
        dyn.run(5)
    logger.close()
    log = read_log(tmp_path / "u.csv")
    assert log["step"].tolist() == [0, 1, 2, 3, 4, 5]
    assert np.isfinite(log["U"]).all() and np.isfinite(atoms.positions).all()


def test_written_frames_record_the_drop(sevenn_member, chgnet_member):
    from hetens.core.frames import annotate

    calc = HeterogeneousEnsembleCalculator(
        [sevenn_member, faulty(chgnet_member, "raise"), chgnet_member], on_member_error="drop"
    )
    atoms = tungsten_cell(2)
    with pytest.warns(MemberDroppedWarning):
        calc.get_potential_energy(atoms)
    frame = annotate(atoms, calc.results, calc.member_names, calc.weights)
    assert frame.info["hetens_dropped"] == "faulty"
    np.testing.assert_allclose(frame.info["hetens_weights"], [0.5, 0.0, 0.5])


def test_a_real_model_crash_is_named(sevenn_member, chgnet_member):
    """CHGNet's own calculator cannot take a structure without a cell (pymatgen inverts the
    zero lattice); hetens' CHGNet member boxes it (hetens.families.chgnet), the plain one crashes."""
    from chgnet.model.dynamics import CHGNetCalculator

    molecule = Atoms("W2", positions=[[0, 0, 0], [0, 0, 2.3]])
    assert np.isfinite(HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member]).get_potential_energy(molecule))
    plain = Member.wrap(CHGNetCalculator(model=chgnet_member.calculator.model, use_device="cpu"), name="chgnet-plain")
    calc = HeterogeneousEnsembleCalculator([sevenn_member, plain])
    with pytest.raises(MemberFailedError, match=r"^member chgnet-plain failed on W2: LinAlgError: Singular matrix$"):
        calc.get_potential_energy(molecule)
    with pytest.raises(InvalidStructureError, match=r"atoms 0 \(W\) and 1 \(W\) are 0.100 A apart"):
        calc.get_potential_energy(Atoms("W2", positions=[[0, 0, 0], [0, 0, 0.1]]))


def test_rescoring_names_the_frame_before_any_model_runs(sevenn_member, chgnet_member, tmp_path):
    from ase.io import write

    from hetens.jobs.score_live import score_live

    frames = [tungsten_cell(1, seed=i) for i in range(4)]
    frames[2].numbers[1] = 84  # Po
    write(tmp_path / "in.extxyz", frames)
    calc = HeterogeneousEnsembleCalculator([sevenn_member, chgnet_member])
    with pytest.raises(UnsupportedElementError, match=r"in\.extxyz frame 2: member sevenn:7net-0 was not "
                       r"trained on element\(s\) Po"):
        score_live(tmp_path / "in.extxyz", tmp_path / "out.extxyz", calc, progress="off")
    assert not (tmp_path / "out.extxyz").exists()
