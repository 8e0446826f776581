"""A conformance check for ensemble members: :func:`check_member`.

The same physics checks every model family in hetens passes (its test suite
runs them on every family, shipped and tiny models alike), for your own
members too::

    from hetens import Member
    from hetens.testing import check_member

    report = check_member(Member.wrap(MyCalculator(), name="mine", level_of_theory="PBE"))
    print(report)

A failing check raises :class:`~hetens.errors.ConformanceError` (an
``AssertionError``) naming the check, the member, the numbers and the
tolerance (a field of :class:`Tolerances`). The checks, in order
(:data:`CHECKS`):

- ``outputs``: energy finite; forces (N, 3) floating, finite; stress (6,)
  Voigt when the calculator implements it; the elements the member declares
  include the probe's;
- ``force_gradient``: ``-F·d`` equals the central difference of the energy
  along random unit directions ``d`` of all 3N coordinates (conservative
  forces in eV/Å);
- ``stress_strain_derivative``: ``V σ:D`` equals the central difference of
  the energy along random symmetric strains ``D`` (stress is ``(1/V) dE/dε``
  in eV/Å³ with ASE's sign; GPa is off by 160);
- ``translation``, ``lattice_shift``, ``rotation``, ``permutation``: energy
  unchanged and forces (and stress) following the move: a rigid translation;
  one atom moved by a lattice vector; atoms and cell rotated; atoms reversed;
- ``one_atom_cell``: a one-atom bcc cell works, has zero force and half the
  energy of the two-atom cubic cell (periodic images counted right);
- ``recomputes_on_change``: results follow an atom moved in place in the same
  ``Atoms`` object, and come back when it moves back;
- ``inputs_unchanged``: no check's input ``Atoms`` was modified (positions,
  numbers, cell, pbc, info, arrays, calculator).

Structures without a 3D periodic cell skip the stress and lattice checks. No
model package is imported until :func:`check_member` runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hetens.errors import ConformanceError

__all__ = ["check_member", "Tolerances", "ConformanceReport", "CHECKS", "probe_cell"]

#: Every check, in the order run.
CHECKS = (
    "outputs",
    "force_gradient",
    "stress_strain_derivative",
    "translation",
    "lattice_shift",
    "rotation",
    "permutation",
    "one_atom_cell",
    "recomputes_on_change",
    "inputs_unchanged",
)


@dataclass(frozen=True)
class Tolerances:
    """Steps and tolerances of :func:`check_member`, named in its error messages.

    Defaults fit float32 models (energy round-off ~1e-6 eV over a 2h step).

    Attributes:
        position_step: central-difference step along a unit direction, Å.
        strain_step: central-difference step of the strain (dimensionless).
        directions: random directions (and strains) per finite-difference check.
        force_fd_atol, force_fd_rtol: ``|dE/da - (-F·d)| <= atol + rtol |F|``, eV/Å.
        stress_fd_atol, stress_fd_rtol: ``|dE/da / V - σ:D| <= atol + rtol |σ|``, eV/Å³
            (2e-4 eV/Å³ = 0.03 GPa).
        energy_atol_per_atom: energy invariance, eV/atom.
        force_atol: forces that must agree or vanish, eV/Å.
        stress_atol: stresses that must agree, eV/Å³.
    """

    position_step: float = 2e-3
    strain_step: float = 1e-3
    directions: int = 2
    force_fd_atol: float = 2e-3
    force_fd_rtol: float = 1e-2
    stress_fd_atol: float = 2e-4
    stress_fd_rtol: float = 1e-2
    energy_atol_per_atom: float = 1e-4
    force_atol: float = 1e-3
    stress_atol: float = 2e-4


@dataclass
class ConformanceReport:
    """What :func:`check_member` did.

    Attributes:
        member: the member's name.
        passed: the checks run and passed, in order.
        skipped: check -> why it was not run (no stress, no 3D cell, not asked for).
        evaluations: model calls made (energy and forces of one structure each).
        seconds: wall time of the whole check.
    """

    member: str
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    evaluations: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"{self.member}: {len(self.passed)} checks passed in {self.seconds:.1f} s "
                 f"({self.evaluations} evaluations)"]
        lines += [f"  passed   {name}" for name in self.passed]
        lines += [f"  skipped  {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def probe_cell():
    """The default probe: WMo in a sheared, rattled two-atom bcc cell (a = 3.17 Å), so no
    symmetry is left and the stress has off-diagonal parts."""
    from ase.build import bulk

    atoms = bulk("W", "bcc", a=3.17, cubic=True)
    atoms[1].symbol = "Mo"
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.03, 0.0], [0.0, 1.02, -0.04], [0.05, 0.0, 0.98]]),
                   scale_atoms=True)
    atoms.rattle(0.08, seed=7)
    return atoms


def check_member(
    member: Any,
    atoms=None,
    *,
    tolerances: Tolerances | None = None,
    checks: Iterable[str] | None = None,
    seed: int = 11,
) -> ConformanceReport:
    """Run the conformance checks (module docstring) on one member.

    Args:
        member: a :class:`hetens.Member`, a member spec (``"sevenn:7net-0"``,
            loaded on CPU) or any ASE calculator (wrapped with
            :meth:`hetens.Member.wrap`).
        atoms: the probe structure (not modified), a few atoms of elements the
            member knows, best without symmetry; default :func:`probe_cell`
            (W and Mo). A molecule (``pbc=False``) skips the periodic checks;
            the one-atom cell is a bcc cell of the probe's first element with
            the probe's volume per atom (3.17 Å for the default probe).
        tolerances: :class:`Tolerances`; the defaults fit float32 models.
        checks: names from :data:`CHECKS` to run (default: all).
        seed: seed of the random directions and strains.

    Returns:
        A :class:`ConformanceReport`.

    Raises:
        ConformanceError: the first failing check, naming it, the member, the
            values and the tolerance.
        ValueError: an unknown check name.
    """
    started = time.perf_counter()
    member = _as_member(member)
    wanted = tuple(CHECKS if checks is None else checks)
    unknown = sorted(set(wanted) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; the checks are {', '.join(CHECKS)}")
    probe = probe_cell() if atoms is None else atoms
    one_atom = ("W", 3.17) if atoms is None else _bcc_like(probe)
    run = _Run(member, tolerances or Tolerances(), np.random.default_rng(seed))
    report = ConformanceReport(member.name)
    before = _snapshot(probe)
    periodic = bool(probe.pbc.all()) and probe.cell.rank == 3
    has_stress = periodic and "stress" in getattr(member.calculator, "implemented_properties", ())

    if "outputs" in wanted:
        run.declared_elements(probe)
    e0, forces = run.energy_forces(probe)
    stress = run.stress(probe) if has_stress else None
    why_not = {
        "stress_strain_derivative": None if has_stress else (
            "the calculator implements no stress" if periodic else "the probe has no 3D periodic cell"),
        "lattice_shift": None if periodic else "the probe has no 3D periodic cell",
    }
    steps = {
        "outputs": lambda: run.outputs(probe, e0, forces, stress),
        "force_gradient": lambda: run.force_gradient(probe, forces),
        "stress_strain_derivative": lambda: run.stress_strain_derivative(probe, stress),
        "translation": lambda: run.translation(probe, e0, forces, stress),
        "lattice_shift": lambda: run.lattice_shift(probe, e0, forces),
        "rotation": lambda: run.rotation(probe, e0, forces, stress),
        "permutation": lambda: run.permutation(probe, e0, forces),
        "one_atom_cell": lambda: run.one_atom_cell(*one_atom),
        "recomputes_on_change": lambda: run.recomputes_on_change(probe, e0, forces),
        "inputs_unchanged": lambda: run.unchanged(probe, before),
    }
    for name in CHECKS:
        if name not in wanted:
            report.skipped[name] = "not asked for"
        elif why_not.get(name):
            report.skipped[name] = why_not[name]
        else:
            steps[name]()
            report.passed.append(name)
    report.evaluations = run.evaluations
    report.seconds = time.perf_counter() - started
    return report


def _as_member(item: Any):
    from hetens.core.member import Member, as_member

    if isinstance(item, Member):
        return item
    if isinstance(item, str):
        return as_member(item, device="cpu")
    return Member.wrap(item)


def _bcc_like(atoms) -> tuple[str, float]:
    """(symbol, a): the probe's first element, a bcc lattice constant from its volume per atom
    (periodic) or twice its covalent radius as the nearest-neighbour distance."""
    from ase.data import covalent_radii

    symbol = atoms[0].symbol
    if atoms.pbc.all() and atoms.cell.rank == 3:
        return symbol, float((2.0 * atoms.get_volume() / len(atoms)) ** (1.0 / 3.0))
    return symbol, float(4.0 * covalent_radii[atoms[0].number] / np.sqrt(3.0))


def _snapshot(atoms) -> dict:
    return {
        "positions": atoms.positions.copy(), "numbers": atoms.numbers.copy(),
        "cell": atoms.cell.array.copy(), "pbc": atoms.pbc.copy(), "info": dict(atoms.info),
        "arrays": sorted(atoms.arrays), "calc": atoms.calc,
    }


def _rotation(axis, angle: float) -> np.ndarray:
    """(3, 3) rotation matrix about ``axis`` by ``angle`` radians (Rodrigues)."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


class _Run:
    """The checks, on one member's calculator, counting evaluations."""

    def __init__(self, member, tol: Tolerances, rng: np.random.Generator) -> None:
        self.member, self.calc, self.tol, self.rng = member, member.calculator, tol, rng
        self.evaluations = 0

    def fail(self, check: str, text: str, tolerance: str = "") -> ConformanceError:
        told = f" (tolerance {tolerance})" if tolerance else ""
        return ConformanceError(f"member {self.member.name} fails check '{check}': {text}{told}")

    # -- evaluation --------------------------------------------------------------------

    def energy(self, atoms) -> float:
        self.evaluations += 1
        return float(self.calc.get_potential_energy(atoms))

    def energy_forces(self, atoms) -> tuple[float, np.ndarray]:
        energy = self.energy(atoms)
        return energy, np.asarray(self.calc.get_forces(atoms))

    def stress(self, atoms) -> np.ndarray:
        return np.asarray(self.calc.get_stress(atoms))

    # -- checks ------------------------------------------------------------------------

    def declared_elements(self, atoms) -> None:
        """Before any evaluation: the member declares the probe's elements (when it declares any)."""
        elements = self.member.supported_elements()
        if elements is not None and not set(atoms.numbers.tolist()) <= set(elements):
            missing = sorted(set(atoms.numbers.tolist()) - set(elements))
            raise self.fail("outputs", f"the probe holds elements {missing} the member does not declare; "
                                       "give a probe of its elements (atoms=...)")

    def outputs(self, atoms, energy, forces, stress) -> None:
        if not np.isfinite(energy):
            raise self.fail("outputs", f"energy {energy} on {atoms.get_chemical_formula()} is not finite")
        if forces.shape != (len(atoms), 3) or not np.issubdtype(forces.dtype, np.floating):
            raise self.fail("outputs", f"forces of shape {forces.shape} and dtype {forces.dtype}, "
                                       f"expected ({len(atoms)}, 3) floating")
        if not np.isfinite(forces).all():
            raise self.fail("outputs", "forces are not finite")
        if stress is not None and (stress.shape != (6,) or not np.issubdtype(stress.dtype, np.floating)
                                   or not np.isfinite(stress).all()):
            raise self.fail("outputs", f"stress of shape {stress.shape}, dtype {stress.dtype}: expected "
                                       "(6,) Voigt, floating and finite")

    def force_gradient(self, atoms, forces) -> None:
        tol = self.tol
        directions = [d / np.linalg.norm(d) for d in self.rng.normal(size=(tol.directions, *forces.shape))]

        def displaced(step):
            moved = atoms.copy()
            moved.positions += step
            return moved

        self._central_difference(
            "force_gradient", displaced, directions, tol.position_step, lambda d: -np.sum(forces * d),
            tol.force_fd_atol + tol.force_fd_rtol * np.linalg.norm(forces),
            "-F.d", "eV/A", "(forces are not the negative gradient of the energy)",
            "force_fd_atol + force_fd_rtol * |F|",
        )

    def stress_strain_derivative(self, atoms, stress) -> None:
        from ase.stress import voigt_6_to_full_3x3_stress

        tol = self.tol
        volume = atoms.get_volume()
        sigma = voigt_6_to_full_3x3_stress(stress)
        directions = [d + d.T for d in self.rng.normal(size=(tol.directions, 3, 3))]
        self._central_difference(
            "stress_strain_derivative", lambda eps: _strained(atoms, eps),
            [d / np.linalg.norm(d) for d in directions], tol.strain_step,
            lambda d: volume * np.sum(sigma * d),
            (tol.stress_fd_atol + tol.stress_fd_rtol * np.linalg.norm(sigma)) * volume,
            "V sigma:D", "eV", "(stress in GPa, or the opposite sign convention?)",
            "(stress_fd_atol + stress_fd_rtol * |sigma|) * V",
        )

    def _central_difference(self, check, displaced, directions, step, analytic, bound, what, unit, hint, rule):
        """The energy's central difference along each direction (step ``step``) against ``analytic(d)``."""
        for d in directions:
            fd = (self.energy(displaced(step * d)) - self.energy(displaced(-step * d))) / (2 * step)
            expected = analytic(d)
            if not abs(fd - expected) <= bound:
                raise self.fail(check, f"{what} = {expected:.6f} {unit} but the energy's central difference "
                                       f"gives {fd:.6f} {unit} {hint}", f"{bound:.1e} {unit} = {rule}")

    def _same(self, check: str, atoms, e0, expected_forces, expected_stress=None) -> None:
        tol = self.tol
        energy, forces = self.energy_forces(atoms)
        bound = tol.energy_atol_per_atom * len(atoms)
        if not abs(energy - e0) <= bound:
            raise self.fail(check, f"energy {energy:.6f} eV, {e0:.6f} eV before",
                            f"{bound:.1e} eV = energy_atol_per_atom * N")
        worst = float(np.max(np.abs(forces - expected_forces)))
        if not worst <= tol.force_atol:
            raise self.fail(check, f"forces differ from the expected ones by up to {worst:.2e} eV/A",
                            f"force_atol = {tol.force_atol:.1e} eV/A")
        if expected_stress is not None:
            worst = float(np.max(np.abs(self.stress(atoms) - expected_stress)))
            if not worst <= tol.stress_atol:
                raise self.fail(check, f"stress differs from the expected one by up to {worst:.2e} eV/A^3",
                                f"stress_atol = {tol.stress_atol:.1e} eV/A^3")

    def translation(self, atoms, e0, forces, stress) -> None:
        moved = atoms.copy()
        moved.translate([0.37, -0.21, 0.55])
        self._same("translation", moved, e0, forces, stress)

    def lattice_shift(self, atoms, e0, forces) -> None:
        image = atoms.copy()
        image.positions[0] += image.cell[0] - 2 * image.cell[2]
        self._same("lattice_shift", image, e0, forces)

    def rotation(self, atoms, e0, forces, stress) -> None:
        from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

        r = _rotation([1.0, 2.0, 3.0], 0.7)
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ r.T
        if atoms.cell.rank:
            rotated.set_cell(atoms.cell.array @ r.T, scale_atoms=False)
        expected_stress = None
        if stress is not None:
            expected_stress = full_3x3_to_voigt_6_stress(r @ voigt_6_to_full_3x3_stress(stress) @ r.T)
        self._same("rotation", rotated, e0, forces @ r.T, expected_stress)

    def permutation(self, atoms, e0, forces) -> None:
        order = np.arange(len(atoms))[::-1]
        self._same("permutation", atoms[order], e0, forces[order])

    def one_atom_cell(self, symbol: str, a: float) -> None:
        from ase.build import bulk

        tol = self.tol
        one = bulk(symbol, "bcc", a=a)
        two = bulk(symbol, "bcc", a=a, cubic=True)
        e1, f1 = self.energy_forces(one)
        if not np.isfinite(e1) or f1.shape != (1, 3):
            raise self.fail("one_atom_cell", f"a one-atom {symbol} cell gave energy {e1} and forces of shape {f1.shape}")
        if not np.abs(f1).max() <= tol.force_atol:
            raise self.fail("one_atom_cell", f"force {f1[0].tolist()} eV/A in a one-atom bcc {symbol} cell "
                                             "(zero by symmetry)", f"force_atol = {tol.force_atol:.1e} eV/A")
        if "stress" in getattr(self.calc, "implemented_properties", ()):
            s1 = self.stress(one)
            if s1.shape != (6,) or not np.isfinite(s1).all():
                raise self.fail("one_atom_cell", f"stress {s1} of a one-atom cell: expected (6,), finite")
        e2 = self.energy(two)
        if not abs(e1 - e2 / 2) <= tol.energy_atol_per_atom:
            raise self.fail("one_atom_cell", f"{e1:.6f} eV per atom in the one-atom bcc {symbol} cell but "
                                             f"{e2 / 2:.6f} in the two-atom cell (periodic images counted wrong?)",
                            f"energy_atol_per_atom = {tol.energy_atol_per_atom:.1e} eV")

    def recomputes_on_change(self, atoms, e0, forces) -> None:
        tol = self.tol
        work = atoms.copy()
        step = np.array([0.05, -0.03, 0.02])
        index = 1 if len(work) > 1 else 0
        if not abs(self.energy(work) - e0) <= tol.energy_atol_per_atom:
            raise self.fail("recomputes_on_change", "a copy of the probe gave another energy",
                            f"energy_atol_per_atom = {tol.energy_atol_per_atom:.1e} eV")
        work.positions[index] += step
        e1, f1 = self.energy_forces(work)
        if e1 == e0 or np.allclose(f1, forces):
            raise self.fail("recomputes_on_change", f"results did not change when atom {index} moved in place "
                                                    "(stale cache?)")
        work.positions[index] -= step
        back = self.energy(work)
        if not abs(back - e0) <= tol.energy_atol_per_atom:
            raise self.fail("recomputes_on_change", f"energy {back:.6f} eV after moving the atom back, "
                                                    f"{e0:.6f} eV before",
                            f"energy_atol_per_atom = {tol.energy_atol_per_atom:.1e} eV")

    def unchanged(self, atoms, before: dict) -> None:
        after = _snapshot(atoms)
        for key in ("positions", "numbers", "cell", "pbc"):
            if not np.array_equal(after[key], before[key]):
                raise self.fail("inputs_unchanged", f"the member changed atoms.{key} of its input")
        if after["info"] != before["info"]:
            raise self.fail("inputs_unchanged", f"the member changed atoms.info: {after['info']}")
        if after["arrays"] != before["arrays"]:
            raise self.fail("inputs_unchanged", f"the member added arrays {after['arrays']}")
        if after["calc"] is not before["calc"]:
            raise self.fail("inputs_unchanged", "the member attached a calculator to the input atoms")


def _strained(atoms, eps: np.ndarray):
    """A copy of ``atoms`` with cell -> cell (1 + eps), atoms following; eps (3, 3) symmetric."""
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return out
