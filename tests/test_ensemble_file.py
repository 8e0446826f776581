"""Ensemble files (TOML), the CLI options that read them, and `hetens env` argument checks.

Nothing here loads a model: isolated members start lazily and are never used.
"""

from __future__ import annotations

import argparse
import sys
import textwrap

import numpy as np
import pytest

import hetens
from hetens.cli.main import main as cli_main
from hetens.cli.options import add_ensemble_options, ensemble_from_args
from hetens.core.ensemble_file import load_ensemble_file, read_ensemble_file
from hetens.catalogue.envs import create_environment, list_environments


def write(tmp_path, text: str):
    path = tmp_path / "ensemble.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_file_with_isolated_members(tmp_path):
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "python").symlink_to(sys.executable)
    path = write(tmp_path, """
        device = "cpu"
        [[member]]
        spec = "chgnet:0.3.0"
        python = "env/bin/python"
        threads = 1
        timeout = 30
        env = { CUDA_VISIBLE_DEVICES = "" }
        weight = 3

        [[member]]
        spec = "chgnet:0.2.0"
        name = "older"
        python = "env/bin/python"
        weight = 1
    """)
    with load_ensemble_file(path) as calc:
        assert calc.member_names == ["chgnet:0.3.0", "older"]
        np.testing.assert_allclose(calc.weights, [0.75, 0.25])
        first, second = (m.calculator.worker for m in calc.members)
        assert first.python == str(tmp_path / "env" / "bin" / "python")  # relative to the file
        assert (first.threads, first.timeout, first.env) == (1, 30.0, {"CUDA_VISIBLE_DEVICES": ""})
        assert first.device == "cpu" and second.spec == "chgnet:0.2.0"
        assert second.threads == 1  # two workers on this machine's cores, set by the ensemble
        assert not first.started and not second.started
        assert calc.members[0].spec == f"chgnet:0.3.0@python={first.python}"  # provenance


def test_parallel_file_runs_every_member_as_a_worker(tmp_path):
    path = write(tmp_path, """
        parallel = true
        [[member]]
        spec = "chgnet:0.3.0"
        force_rmse = 0.2
        [[member]]
        spec = "chgnet:0.2.0"
        force_rmse = 0.4
    """)
    with load_ensemble_file(path, device="cpu") as calc:
        assert all(isinstance(m.calculator, hetens.IsolatedCalculator) for m in calc.members)
        assert all(m.calculator.worker.python == sys.executable for m in calc.members)
        np.testing.assert_allclose(calc.weights, [2 / 3, 1 / 3])


@pytest.mark.parametrize("text, message", [
    ("[[member]]\nspec = 'chgnet:0.3.0'\nwieght = 1\n", "member 1: unknown key 'wieght'"),
    ("[[member]]\npython = '/x'\n", "member 1: has no spec"),
    ("[[member]]\nspec = 'a:b'\nweight = 1\n[[member]]\nspec = 'c:d'\n",
     r"weight is given for member\(s\) \[1\] but not for \[2\]"),
    ("[[member]]\nspec = 'a:b'\nthreads = 'two'\n", "member 1: threads must be a int"),
    ("[[member]]\nspec = 'a:b'\nweight = 1\nforce_rmse = 0.2\n", "either weight or force_rmse"),
    ("parallel = 'yes'\n[[member]]\nspec = 'a:b'\n", "parallel must be a bool"),
    ("device = 'cpu'\n", "no members"),
    ("[[member]\n", "not a valid TOML ensemble file"),
    ("[[member]]\nspec = 'a:b'\nenv = { X = 1 }\n", "env values must be strings; X"),
])
def test_bad_files_name_the_file_and_member(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        read_ensemble_file(path)
    assert str(path) in str(caught.value)


def test_cli_options(tmp_path):
    path = write(tmp_path, """
        [[member]]
        spec = "chgnet:0.3.0"
        weight = 1
        [[member]]
        spec = "chgnet:0.2.0"
        weight = 1
    """)
    parser = argparse.ArgumentParser()
    add_ensemble_options(parser)
    args = parser.parse_args(["--ensemble-file", str(path), "--parallel", "--weights", "1", "3",
                              "--device", "cpu"])
    with ensemble_from_args(args) as calc:
        np.testing.assert_allclose(calc.weights, [0.25, 0.75])  # --weights wins over the file
        assert all(isinstance(m.calculator, hetens.IsolatedCalculator) for m in calc.members)
        assert calc.members[0].calculator.worker.device == "cpu"
    both = parser.parse_args(["--ensemble-file", str(path), "--models", "chgnet:0.3.0"])
    with pytest.raises(ValueError, match="either with --models or with --ensemble-file"):
        ensemble_from_args(both)
    specs = parser.parse_args(["--models", f"chgnet:0.3.0@python={sys.executable}",
                               f"chgnet:0.2.0@python={sys.executable}", "--device", "cpu"])
    with ensemble_from_args(specs) as calc:
        assert calc.members[0].calculator.worker.python == sys.executable


def test_env_create_refuses_bad_names_and_existing_folders(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown family 'alignn'"):
        create_environment("x", "alignn", prefix=tmp_path)
    with pytest.raises(ValueError, match="plain folder name"):
        create_environment("../x", "chgnet", prefix=tmp_path)
    (tmp_path / "half").mkdir()
    with pytest.raises(FileExistsError, match="unfinished build"):
        create_environment("half", "chgnet", prefix=tmp_path)
    assert cli_main(["env", "create", "half", "--family", "chgnet", "--prefix", str(tmp_path)]) == 2
    assert "unfinished build" in capsys.readouterr().err
    assert list_environments(tmp_path) == []
    assert cli_main(["env", "path", "half", "--prefix", str(tmp_path)]) == 2
