"""Runs described by a file: every run writes config.toml, --print-config prints one, --config reads it."""

import json

from mnistcli import config
from mnistcli.settings import Recipe, RunSettings

from helpers import one_error_line, run


def test_print_config_then_config_repeats_the_run(fixture_data, tmp_path):
    printed = run("train", "--epochs", 2, "--batch-size", 50, "--val-size", 100, "--lr", 0.05, "--print-config")
    assert printed.exit_code == 0, printed.output
    assert "epochs = 2" in printed.stdout and "batch-size = 50" in printed.stdout and "lr = 0.05" in printed.stdout
    assert not (tmp_path / "a").exists()  # it only prints
    file = tmp_path / "run.toml"
    file.write_text(printed.stdout)
    first = run("train", "--config", file, "--data-dir", fixture_data, "--out-dir", tmp_path / "a")
    assert first.exit_code == 0, first.output
    written = (tmp_path / "a" / "config.toml").read_text()
    assert "epochs = 2" in written and f'data-dir = "{fixture_data}"' in written
    again = run("train", "--config", tmp_path / "a" / "config.toml", "--out-dir", tmp_path / "b")
    assert again.exit_code == 0, again.output
    a, b = (json.loads((tmp_path / d / "history.json").read_text()) for d in ("a", "b"))
    drop = ("seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]


def test_the_command_line_overrides_the_file_and_the_file_overrides_the_preset(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text('recipe = "report"\nepochs = 3\nlr = 0.02\n')
    printed = run("train", "--config", file, "--epochs", 4, "--print-config").stdout
    assert "epochs = 4" in printed and "lr = 0.02" in printed  # the command line, then the file
    assert 'model = "report-cnn"' in printed and "momentum = 0.5" in printed  # the preset the file names


def test_the_file_round_trips_every_setting():
    recipe = Recipe(epochs=7, lr=0.0125, nesterov=False, model="fc", rotate=3.5, paper=0.3)
    settings = RunSettings(device="cpu", threads=1, keep=2, download=False, log_every=50)
    path = _write(config.to_toml(recipe, settings, "default"))
    preset, given, run_values = config.read(path)
    assert preset == "default" and Recipe(**given) == recipe
    assert RunSettings(**run_values) == settings


def _write(text):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "c.toml"
    path.write_text(text)
    return path


def test_an_unknown_key_or_a_bad_value_is_one_line_naming_the_key_and_the_file(tmp_path):
    file = tmp_path / "c.toml"
    for text, expected in (
        ("epochz = 3\n", "unknown key 'epochz'"),
        ("batch_size = 3\n", "did you mean batch-size?"),
        ("epochs = 0\n", "epochs must be at least 1, got 0"),
        ('model = "resnet"\n', "model must be one of 'cnn', 'cnn-wide', 'report-cnn', 'fc', got 'resnet'"),
        ('lr = "fast"\n', "lr must be a number, got 'fast'"),
        ("epochs = [\n", "not a valid TOML file"),
    ):
        file.write_text(text)
        result = run("train", "--config", file, "--print-config")
        assert result.exit_code == 2, result.output
        line = one_error_line(result)
        assert str(file) in line and expected in line, line
    missing = one_error_line(run("train", "--config", tmp_path / "none.toml"))
    assert "config file not found" in missing


def test_the_config_holds_no_path_the_user_did_not_give(fixture_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("train", "--epochs", 1, "--model", "fc", "--val-size", 100, "--data-dir", fixture_data)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "checkpoints" / "config.toml").read_text()
    assert str(tmp_path) not in text.replace(str(fixture_data), "")  # the data folder is the user's own
    assert "# out-dir =" in text  # the default, not the folder it resolved to
