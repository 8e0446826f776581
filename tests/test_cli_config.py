"""``--config FILE.yaml``: keys are long option names, the command line wins, bad keys are one-line errors."""

from __future__ import annotations

import pytest

from hetens.cli.config import load_config, parse_args
from hetens.cli.main import build_parser, main


def _md_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return parser, sub.choices["md"]


def _write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_keys_with_dashes_or_underscores_are_converted_like_the_command_line(tmp_path):
    _, md = _md_parser()
    values = load_config(_write(tmp_path, (
        "models: [sevenn:7net-0, chgnet:0.3.0]\n"
        "temperature: 600\n"
        "halt_above: 0.5\n"
        "flag-above: 0.25\n"
        "dynamics: npt-mtk\n"
        "no_plot: true\n"
        "steps: 20\n"
        "index: -1\n"
        "weights: 1\n"
    )), md)
    assert values == {
        "models": ["sevenn:7net-0", "chgnet:0.3.0"], "temperature": 600.0, "halt_above": 0.5,
        "flag_above": 0.25, "dynamics": "npt-mtk", "no_plot": True, "steps": 20, "index": "-1",
        "weights": [1.0],
    }
    assert isinstance(values["temperature"], float) and isinstance(values["steps"], int)


def test_command_line_wins_over_the_file_even_when_it_repeats_the_default(tmp_path):
    parser, _ = _md_parser()
    path = _write(tmp_path, "temperature: 600\nsteps: 20\nweights: [1, 3]\nmodels: [a:b, c:d]\n")
    args = parse_args(parser, ["md", "s.xyz", "--config", path])
    assert (args.temperature, args.steps, args.weights, args.models) == (600.0, 20, [1.0, 3.0], ["a:b", "c:d"])
    # 300 K is md's default: given on the command line it still wins over the file.
    args = parse_args(parser, ["md", "s.xyz", "--config", path, "--temperature", "300", "--models", "e:f"])
    assert (args.temperature, args.steps, args.models) == (300.0, 20, ["e:f"])
    # --force-rmse on the command line excludes the file's --weights (one mutually exclusive group).
    args = parse_args(parser, ["md", "s.xyz", "--force-rmse", "0.1", "0.2", "--config", path])
    assert args.force_rmse == [0.1, 0.2] and args.weights is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("temprature: 300\n", "unknown key 'temprature' for 'hetens md'; did you mean 'temperature'?"),
        ("halt_abov: 1\n", "did you mean 'halt-above'?"),
        ("steps: many\n", "key 'steps': expected an integer, got 'many'"),
        ("temperature: [1, 2]\n", "key 'temperature' takes one value"),
        ("dynamics: npt\n", "key 'dynamics': 'npt' is not one of langevin, nve"),
        ("no_plot: 1\n", "key 'no_plot' is a flag: give true or false"),
        ("- steps\n", "a config file is a mapping of option names to values; found a list"),
        ("steps: [1\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_line_exit_2_before_anything_runs(text, message, tmp_path, capsys):
    path = _write(tmp_path, text)
    with pytest.raises(SystemExit) as exited:
        main(["md", "s.xyz", "--config", path, "--log", str(tmp_path / "x.csv")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hetens md: error: ") and message in err[0], err
    assert path in err[0]
    assert not (tmp_path / "x.csv").exists()


def test_missing_config_file_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["relax", "s.xyz", "--config", str(tmp_path / "nope.yaml")])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.yaml" in err[0]


@pytest.mark.parametrize("command", ["md", "relax", "single", "score"])
def test_every_structure_command_takes_a_config(command, tmp_path, capsys):
    path = _write(tmp_path, "device: cpu\nmodels: [sevenn:7net-0]\n")
    parser = build_parser()
    args = parse_args(parser, [command, "s.xyz", "--config", path])
    assert args.device == "cpu" and args.models == ["sevenn:7net-0"]
