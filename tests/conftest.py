"""Shared fixtures. Real shipped models only; hub families use tiny models built in code."""

from __future__ import annotations

import os

# Never touch the network: hub loaders must fail fast (set before any import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HETENS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np
import pytest
from ase.build import bulk
from hypothesis import settings

# Property tests draw the same examples on every run ("ci", the default), so a
# red CI run always reproduces; "explore" draws fresh ones to hunt for bugs.
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def tungsten_cell(repeat: int = 2, rattle: float = 0.05, seed: int = 42):
    """bcc W, a = 3.17 Å, ``2 * repeat**3`` atoms, rattled reproducibly."""
    atoms = bulk("W", "bcc", a=3.17, cubic=True).repeat(repeat)
    atoms.rattle(rattle, seed=seed)
    return atoms


@pytest.fixture(scope="session")
def default_calc():
    """The default offline ensemble (2 predictors + 1 witness, shipped), loaded once per test session.

    Tests must not change its weights or members; use ``calc.reset()`` freely.
    """
    import hetens

    calc = hetens.default_ensemble(device="cpu")
    yield calc


@pytest.fixture(scope="session")
def sevenn_member():
    import hetens

    return hetens.load_member("sevenn:7net-0", device="cpu")


@pytest.fixture(scope="session")
def chgnet_member():
    import hetens

    return hetens.load_member("chgnet:0.3.0", device="cpu")


@pytest.fixture
def w16():
    """A 16-atom rattled W cell."""
    return tungsten_cell(2)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
