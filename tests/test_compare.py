"""`mnistcli compare`: runs side by side, and the report's experiment in one command."""

import json

from mnistcli import checkpoint

from helpers import is_png, one_error_line, run, write_dataset


def _train(data, out, *extra):
    result = run("train", "--data-dir", data, "--out-dir", out, "--val-size", 100, "--batch-size", 100, *extra)
    assert result.exit_code == 0, result.output
    return out


def test_two_runs_side_by_side_as_a_table_json_markdown_and_one_png(trained_run, fixture_data, tmp_path):
    fc = _train(fixture_data, tmp_path / "fc", "--model", "fc", "--epochs", 2, "--lr", 0.05)
    figure = tmp_path / "cmp.png"
    doc = json.loads(run("compare", trained_run, fc, "--json", "--figure", figure).stdout)
    rows = {r["name"]: r for r in doc["runs"]}
    assert rows["fc"]["model"] == "fc" and rows["fc"]["parameters"] == 235_146 and rows["fc"]["epochs_done"] == 2
    assert rows["fc"]["changes"] == "default recipe, --batch-size 100, --lr 0.05, --val-size 100"
    history = json.loads((fc / "history.json").read_text())
    assert rows["fc"]["last_test"] == history[-1]["test_acc"]
    assert rows["fc"]["best_test"] == checkpoint.load(fc / "best.pt").metrics["test_acc"]
    assert rows["fc"]["seconds"] == sum(h["seconds"] for h in history) and is_png(figure)
    first = next((h["epoch"] for h in history if h["test_acc"] >= 0.99), None)
    assert rows["fc"]["first_at_target"] == first
    table = run("compare", trained_run, fc, "--figure", figure).stdout
    assert "Runs compared" in table and "fc" in table and ("never" in table or "epoch" in table)
    markdown = run("compare", trained_run, fc, "--markdown", "--figure", figure).stdout
    assert markdown.startswith("| Run | Model |") and len(markdown.strip().splitlines()) == 4  # header, rule, 2 runs


def test_a_bad_folder_is_one_line_and_the_others_are_still_compared(trained_run, tmp_path):
    result = run("compare", trained_run, tmp_path / "missing", "--figure", tmp_path / "c.png")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "missing: no such run folder" in result.stderr and "Runs compared" in result.stdout


def test_runs_on_different_datasets_are_refused(trained_run, tmp_path):
    fashion = write_dataset(tmp_path / "fashion", n_train=300, n_test=100, dataset="fashion-mnist")
    other = _train(fashion, tmp_path / "f", "--dataset", "fashion-mnist", "--epochs", 1, "--model", "fc")
    line = one_error_line(run("compare", trained_run, other, "--figure", tmp_path / "c.png"))
    assert "different datasets (fashion-mnist, mnist)" in line


def test_a_stopped_run_is_compared_on_the_epochs_it_has(fixture_data, tmp_path):
    out = _train(fixture_data, tmp_path / "short", "--model", "fc", "--epochs", 1)
    ckpt = checkpoint.load(out / "last.pt")
    ckpt.config.recipe = {**ckpt.config.recipe, "epochs": 5}  # as if stopped after 1 of 5
    checkpoint.write_checkpoint(checkpoint.training_bytes(ckpt), [out / "last.pt"])
    doc = json.loads(run("compare", out, "--json", "--figure", tmp_path / "c.png").stdout)
    assert doc["runs"][0]["epochs_done"] == 1 and doc["runs"][0]["epochs"] == 5


def test_train_makes_each_run_then_compares_and_keeps_finished_ones(fixture_data, tmp_path):
    args = ("compare", "--train", "fc,report-cnn", "--recipe", "report", "--epochs", 2, "--data-dir", fixture_data)
    first = run(*args, "--out-dir", tmp_path, "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout[first.stdout.index('{\n  "runs"') :])
    assert [r["name"] for r in doc["runs"]] == ["fc", "report-cnn"]
    assert all(r["changes"] == "report recipe" and r["epochs_done"] == 2 for r in doc["runs"])
    assert is_png(tmp_path / "comparison.png")
    again = run(*args, "--out-dir", tmp_path)
    assert again.exit_code == 0 and again.stdout.count("finished (2 epochs), kept") == 2, again.output
    refused = one_error_line(run("compare", "--train", "resnet", "--out-dir", tmp_path))
    assert "unknown model 'resnet'" in refused


def test_the_first_epoch_at_99_percent_is_read_from_the_history(trained_run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    rows = json.loads((copy / "history.json").read_text())
    for row, acc in zip(rows, [0.95, 0.989, 0.990, 0.995]):
        row["test_acc"] = acc
    (copy / "history.json").write_text(json.dumps(rows))
    doc = json.loads(run("compare", copy, "--json", "--figure", tmp_path / "c.png").stdout)
    assert len(rows) >= 3 and doc["runs"][0]["first_at_target"] == 3


def test_train_resumes_a_run_with_fewer_epochs_than_asked(fixture_data, tmp_path):
    args = (
        "compare",
        "--train",
        "fc",
        "--recipe",
        "report",
        "--data-dir",
        fixture_data,
        "--out-dir",
        tmp_path,
        "--json",
    )
    assert run(*args, "--epochs", 1).exit_code == 0
    again = run(*args, "--epochs", 2)
    assert again.exit_code == 0 and "resuming at epoch 2" in again.output, again.output
    doc = json.loads(again.stdout[again.stdout.index('{\n  "runs"') :])
    assert doc["runs"][0]["epochs_done"] == 2
