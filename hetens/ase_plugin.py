"""Registration with ASE (entry-point group ``ase.plugins``).

What ASE 3.29 supports, read from its source (``ase/_4/plugins``,
``ase/calculators/calculator.py``):

- Its experimental plugin system loads every ``ase.plugins`` entry point when
  ``ase._4.plugins`` is first imported (``ase info --plugins`` does that) and
  collects each module's ``__ase_plugins__``; ``ase._4.plugins.plugins`` then
  lists the hetens :class:`CalculatorPlugin`, whose ``implementation`` is the
  calculator class.
- ``ase.calculators.calculator.get_calculator_class(name)`` does **not**
  consult that system: it knows a fixed list of names, then the classes given
  to ``register_calculator_class(name, cls)``, then tries to import
  ``ase.calculators.<name>`` (hence the ``ModuleNotFoundError`` for an
  unregistered name).

So loading this module (which ASE's plugin loader does) also registers the
calculator under the name ``"hetens"`` with ``register_calculator_class``:
after ``import ase._4.plugins`` (or ``import hetens.ase_plugin``),
``get_calculator_class("hetens")`` returns
:class:`~hetens.core.calculator.HeterogeneousEnsembleCalculator`. Nothing in ASE
imports the plugin modules before that, so a process that has imported
neither still gets ``ModuleNotFoundError`` from ``get_calculator_class``.
Loading this module imports ``hetens.core.calculator`` (numpy and ASE, no model
package). With an ASE that lacks ``ase._4.plugins`` the plugin set is empty
and the registration still happens; neither ever raises.
"""

from __future__ import annotations

__all__ = ["CITATION", "NAME", "register"]

NAME = "hetens"
CITATION = (
    "K. Liu et al., Heterogeneous ensemble enables a universal uncertainty metric for "
    "atomistic foundation models, npj Comput. Mater. 12, 34 (2026), doi:10.1038/s41524-025-01905-x"
)


def register() -> bool:
    """Register the calculator class with ASE's ``get_calculator_class`` under :data:`NAME`.

    Returns:
        Whether it is registered now (``False`` when this ASE has no
        ``register_calculator_class`` or another class already holds the name).
        Calling it again is harmless.
    """
    try:
        from ase.calculators import calculator as ase_calculator
    except ImportError:  # pragma: no cover - ASE is a dependency
        return False
    from hetens.core.calculator import HeterogeneousEnsembleCalculator

    registry = getattr(ase_calculator, "external_calculators", None)
    register_class = getattr(ase_calculator, "register_calculator_class", None)
    if registry is None or register_class is None:
        return False
    if NAME in registry:
        return registry[NAME] is HeterogeneousEnsembleCalculator
    register_class(NAME, HeterogeneousEnsembleCalculator)
    return True


try:
    from ase._4.plugins.plugin import CalculatorPlugin
except ImportError:  # ASE without the experimental plugin system
    __ase_plugins__: set = set()
else:
    __ase_plugins__ = {
        CalculatorPlugin(
            name=NAME,
            citation=CITATION,
            implementation="hetens.core.calculator.HeterogeneousEnsembleCalculator",
        )
    }

try:
    register()
except Exception:  # noqa: BLE001 - a plugin must never break ASE's plugin loading
    pass
