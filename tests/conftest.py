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


# -- own environments (hetens env create), built once per test session -------------------------


def build_family_environment(family: str, prefix, name: str | None = None) -> str:
    """``hetens env create NAME --family FAMILY --no-compile`` under ``prefix``; its interpreter.

    Runs the hetens of this test process (``python -m hetens.cli.main``), so the new
    environment gets hetens installed editable from this very source tree.
    """
    import subprocess
    import sys
    import time

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "hetens.cli.main", "env", "create", name or f"{family}-env",
         "--family", family, "--prefix", str(prefix), "--quiet", "--no-compile"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, f"hetens env create --family {family} failed:\n{result.stderr[-3000:]}"
    python = result.stdout.strip().splitlines()[-1]
    print(f"{family} environment built in {time.monotonic() - started:.0f} s: {python}")
    return python


@pytest.fixture(scope="session")
def family_environment(tmp_path_factory):
    """``family_environment("nequip")``: the interpreter of an environment of that family,
    built with ``hetens env create`` at the first request and kept for the session.

    ``HETENS_TEST_ENV_<FAMILY>`` (e.g. ``HETENS_TEST_ENV_NEQUIP``) names an existing
    environment's interpreter to use instead while developing (for chgnet also the older
    ``HETENS_TEST_MEMBER_PYTHON``).
    """
    import shutil

    built: dict[str, str] = {}
    prefixes = []

    def get(family: str) -> str:
        if family not in built:
            given = os.environ.get(f"HETENS_TEST_ENV_{family.upper()}")
            if family == "chgnet":
                given = given or os.environ.get("HETENS_TEST_MEMBER_PYTHON")
            if given:
                built[family] = given
            else:
                prefix = tmp_path_factory.mktemp(f"envs-{family}")
                prefixes.append(prefix)
                built[family] = build_family_environment(family, prefix)
        return built[family]

    yield get
    for prefix in prefixes:
        shutil.rmtree(prefix, ignore_errors=True)  # 1-2 GB each
