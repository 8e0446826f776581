"""ASE finds the calculator: the ``ase.plugins`` entry point lists it and registers it by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
from ase.calculators.calculator import get_calculator_class
try:
    get_calculator_class("hetens")
    print("before: resolved")
except ModuleNotFoundError:
    print("before: ModuleNotFoundError")
import ase._4.plugins as plugins
print("listed:", sorted(p.name for p in plugins.plugins if p.name == "hetens"))
cls = get_calculator_class("hetens")
print("after:", cls.__module__ + "." + cls.__name__)
import sys
print("model packages:", sorted(m for m in ("torch", "sevenn", "chgnet", "mace") if m in sys.modules))
"""


def test_get_calculator_class_resolves_once_ases_plugins_are_loaded():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # ASE's get_calculator_class never loads plugins itself (documented in hetens/ase_plugin.py) ...
    assert lines[0] == "before: ModuleNotFoundError"
    # ... its plugin loader does, and then the name resolves, without importing any model package.
    assert lines[1] == "listed: ['hetens']"
    assert lines[2] == "after: hetens.core.calculator.HeterogeneousEnsembleCalculator"
    assert lines[3] == "model packages: []"


def test_register_is_idempotent():
    from ase.calculators.calculator import get_calculator_class

    from hetens.ase_plugin import register
    from hetens.core.calculator import HeterogeneousEnsembleCalculator

    assert register() is True and register() is True
    assert get_calculator_class("hetens") is HeterogeneousEnsembleCalculator
