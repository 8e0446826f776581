"""Registration with ASE's experimental plugin system (entry-point group ``ase.plugins``).

ASE 3.29 discovers ``__ase_plugins__`` here and lists the calculator under
``ase info --plugins``. With an ASE that lacks ``ase._4.plugins`` (any
release before it, or after the API moves) the set is empty, so loading the
entry point never fails; the calculator itself never depends on it.
"""

from __future__ import annotations

CITATION = (
    "K. Liu et al., Heterogeneous ensemble enables a universal uncertainty metric for "
    "atomistic foundation models, npj Comput. Mater. 12, 34 (2026), doi:10.1038/s41524-025-01905-x"
)

try:
    from ase._4.plugins.plugin import CalculatorPlugin
except ImportError:  # ASE without the experimental plugin system
    __ase_plugins__: set = set()
else:
    __ase_plugins__ = {
        CalculatorPlugin(
            name="hetens",
            citation=CITATION,
            implementation="hetens.calculator.HeterogeneousEnsembleCalculator",
        )
    }
