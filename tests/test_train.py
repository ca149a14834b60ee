import json
import os
import re
from datetime import datetime, timedelta, timezone

import pytest
import torch

from mnistcli import checkpoint, trainer
from mnistcli.settings import RunSettings

from helpers import REAL_MNIST, needs_real_mnist, plain, run, run_module


def test_list_models_shows_parameter_counts():
    result = run("train", "--list-models")
    assert result.exit_code == 0, result.output
    assert "report-cnn" in result.output and "21,840" in result.output and "fc" in result.output


def test_one_epoch_writes_checkpoints_history_and_curves(fixture_data, tmp_path):
    out = tmp_path / "run"
    result = run(
        "train",
        "--epochs",
        1,
        "--data-dir",
        fixture_data,
        "--out-dir",
        out,
        "--val-size",
        100,
        "--log-every",
        2,
        "--batch-size",
        64,
    )
    assert result.exit_code == 0, result.output
    for name in ("epoch-001.pt", "last.pt", "best.pt", "history.json", "history.csv", "curves.png"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1] and 0 <= history[0]["test_acc"] <= 1
    ckpt = checkpoint.load(out / "best.pt")
    assert ckpt.model == "cnn" and ckpt.epoch == 1 and ckpt.metrics["val_acc"] == history[0]["val_acc"]
    assert ckpt.recipe.val_size == 100
    # Not a terminal: plain lines, no live bar.
    assert "Epoch 1/1 | train loss" in result.stdout and "━" not in result.stdout


def test_report_recipe_is_one_flag(fixture_data, tmp_path):
    result = run("train", "--recipe", "report", "--epochs", 1, "--data-dir", fixture_data, "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    recipe = checkpoint.load(tmp_path / "last.pt").recipe
    assert (recipe.model, recipe.optimizer, recipe.lr, recipe.momentum, recipe.batch_size) == (
        "report-cnn",
        "sgd",
        0.01,
        0.5,
        128,
    )
    assert recipe.val_size == 0 and "chosen by test accuracy" in result.stdout


def _fit(data_dir, out, epochs, resume=None, stop=lambda: False, scheduler="onecycle"):
    given = {"epochs": epochs}
    if resume is None:
        given.update(val_size=100, batch_size=20, augment=2, ema=0.9, scheduler=scheduler)
    options = RunSettings(data_dir=data_dir, download=False, out_dir=out, device="cpu", resume=resume)
    return trainer.fit(options, given=given, should_stop=stop)


def _same_weights(a, b):
    sa, sb = checkpoint.load(a).state_dict, checkpoint.load(b).state_dict
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_gives_the_same_weights_as_a_straight_run(fixture_data, tmp_path):
    # With a constant learning rate, 1 epoch then --resume --epochs 2 is the same run as 2 epochs.
    _fit(fixture_data, tmp_path / "straight", 2, scheduler="none")
    _fit(fixture_data, tmp_path / "split", 1, scheduler="none")
    assert not _same_weights(tmp_path / "straight" / "last.pt", tmp_path / "split" / "last.pt")
    result = _fit(fixture_data, tmp_path / "split", 2, resume=tmp_path / "split" / "last.pt", scheduler="none")
    assert [h.epoch for h in result.history] == [1, 2]
    assert _same_weights(tmp_path / "straight" / "last.pt", tmp_path / "split" / "last.pt")


def test_stop_after_an_epoch_and_resume_follows_the_same_schedule(fixture_data, tmp_path):
    _fit(fixture_data, tmp_path / "straight", 2)
    result = _fit(fixture_data, tmp_path / "stopped", 2, stop=(tmp_path / "stopped" / "epoch-001.pt").exists)
    assert result.interrupted and [h.epoch for h in result.history] == [1]
    assert checkpoint.load(tmp_path / "stopped" / "last.pt").stopped_at is None
    _fit(fixture_data, tmp_path / "stopped", 2, resume=tmp_path / "stopped")
    assert _same_weights(tmp_path / "straight" / "last.pt", tmp_path / "stopped" / "last.pt")


def test_interrupt_mid_epoch_saves_and_resumes_exactly(fixture_data, tmp_path):
    _fit(fixture_data, tmp_path / "straight", 2)
    calls = iter(range(1000))
    result = _fit(fixture_data, tmp_path / "stopped", 2, stop=lambda: next(calls) >= 0)  # stop at once
    assert result.interrupted and result.interrupted_at == (1, 1)  # stops after the batch in progress
    partial = checkpoint.load(tmp_path / "stopped" / "last.pt")
    assert partial.epoch == 0 and partial.stopped_at.batch == 1
    result = _fit(fixture_data, tmp_path / "stopped", 2, resume=tmp_path / "stopped" / "last.pt")
    assert not result.interrupted and [h.epoch for h in result.history] == [1, 2]
    assert _same_weights(tmp_path / "straight" / "last.pt", tmp_path / "stopped" / "last.pt")


def test_cli_resume_continues_and_refuses_conflicts(fixture_data, tmp_path):
    base = ("--data-dir", fixture_data, "--out-dir", tmp_path, "--val-size", 100)
    assert run("train", "--epochs", 1, *base).exit_code == 0
    refused = run("train", "--resume", tmp_path, "--model", "fc", "--epochs", 2)
    assert refused.exit_code != 0 and "cannot resume" in refused.output and "--model fc" in refused.output
    done = run("train", "--resume", tmp_path / "last.pt", "--data-dir", fixture_data)
    assert done.exit_code != 0 and "already finished epoch 1 of 1" in done.output
    resumed = run("train", "--resume", tmp_path, "--epochs", 2, "--data-dir", fixture_data)
    assert resumed.exit_code == 0, resumed.output
    assert "--epochs: 1 -> 2" in resumed.stdout and f"Resuming {tmp_path}" in resumed.stdout
    assert [h["epoch"] for h in json.loads((tmp_path / "history.json").read_text())] == [1, 2]


def test_missing_data_is_one_clear_line(tmp_path):
    result = run("train", "--epochs", 1, "--data-dir", tmp_path / "none", "--no-download", "--out-dir", tmp_path / "o")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte" in lines[0] and "--data-dir" in lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--epochs", "0"), "--epochs must be at least 1"),
        (("--batch-size", "0"), "--batch-size must be at least 1"),
        (("--lr", "-1"), "--lr must be a positive number"),
        (("--keep", "0"), "--keep must be at least 1"),
    ],
)
def test_impossible_values_are_refused_before_any_work(tmp_path, args, expected):
    result = run("train", *args, "--data-dir", tmp_path / "none", "--no-download", "--out-dir", tmp_path / "o")
    assert result.exit_code == 2 and expected in result.stderr, result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "option, choices",
    [
        ("--model", ["cnn", "report-cnn", "fc"]),
        ("--optimizer", ["sgd", "adam", "adamw"]),
        ("--scheduler", ["onecycle", "cosine", "none"]),
        ("--recipe", ["default", "report"]),
        ("--dataset", ["mnist", "fashion-mnist", "kmnist", "emnist-digits"]),
        ("--device", ["auto", "cpu", "cuda", "mps"]),
        ("--precision", ["auto", "fp32", "bf16"]),
    ],
)
def test_the_parser_refuses_an_unknown_choice_with_the_list(tmp_path, option, choices):
    result = run("train", option, "nope", "--data-dir", tmp_path / "none", "--out-dir", tmp_path / "o")
    assert result.exit_code == 2, result.output
    message = plain(result.stderr)
    assert "'nope'" in message and all(f"'{c}'" in message for c in choices), result.stderr
    assert not (tmp_path / "o").exists()


def test_cuda_device_without_cuda_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run("train", "--device", "cuda", "--data-dir", tmp_path, "--out-dir", tmp_path / "o")
    assert result.exit_code == 2 and "no CUDA GPU" in result.stderr


@needs_real_mnist
@pytest.mark.slow
def test_default_model_reaches_98_5_percent_in_one_epoch_on_real_mnist(tmp_path):
    result = run("train", "--epochs", 1, "--data-dir", REAL_MNIST, "--no-download", "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[0]["test_acc"] >= 0.985, history


@pytest.mark.slow
def test_compile_trains_and_saves_a_plain_checkpoint(fixture_data, tmp_path):
    result = run(
        "train",
        "--compile",
        "--epochs",
        1,
        "--data-dir",
        fixture_data,
        "--out-dir",
        tmp_path,
        "--val-size",
        100,
        "--batch-size",
        100,
        "--precision",
        "fp32",
    )
    assert result.exit_code == 0, result.output
    ckpt = checkpoint.load(tmp_path / "best.pt")
    assert not any(k.startswith("_orig_mod.") for k in ckpt.state_dict)
    checkpoint.build_model(ckpt)


def test_best_pt_is_the_epoch_with_the_best_validation_accuracy(fixture_data, tmp_path, monkeypatch):
    """Validation accuracy goes up, then down; test accuracy is best in the last epoch (a trap)."""
    from mnistcli.engine import EvalResult

    scripted = iter([0.50, 0.95, 0.90, 0.99, 0.70, 0.999])  # (val, test) for epochs 1, 2, 3

    def fake_evaluate(model, split):
        acc = next(scripted)
        return EvalResult(1 - acc, int(acc * 1000), 1000, torch.zeros(0, 10), torch.zeros(0))

    monkeypatch.setattr(trainer, "evaluate_split", fake_evaluate)
    result = _fit(fixture_data, tmp_path, 3)
    assert [h.val_acc for h in result.history] == [0.5, 0.9, 0.7]
    assert result.best_epoch == 2
    best, last = checkpoint.load(tmp_path / "best.pt"), checkpoint.load(tmp_path / "last.pt")
    assert best.epoch == 2 and best.metrics["val_acc"] == 0.9 and last.epoch == 3 and last.best_epoch == 2
    assert torch.equal(
        best.state_dict["head.2.weight"], checkpoint.load(tmp_path / "epoch-002.pt").state_dict["head.2.weight"]
    )


def test_without_a_validation_split_best_pt_is_chosen_by_test_accuracy(fixture_data, tmp_path, monkeypatch):
    from mnistcli.engine import EvalResult

    scripted = iter([0.6, 0.9, 0.8])  # test only

    monkeypatch.setattr(
        trainer,
        "evaluate_split",
        lambda m, s: (lambda a: EvalResult(1 - a, int(a * 100), 100, torch.zeros(0, 10), torch.zeros(0)))(
            next(scripted)
        ),
    )
    options = RunSettings(data_dir=fixture_data, download=False, out_dir=tmp_path, device="cpu")
    result = trainer.fit(options, given={"epochs": 3, "val_size": 0, "batch_size": 50})
    assert result.best_epoch == 2 and checkpoint.load(tmp_path / "best.pt").epoch == 2


def test_the_weight_average_is_what_is_saved_and_it_differs_from_the_raw_weights(trained_run):
    ckpt = checkpoint.load(trained_run / "last.pt")
    assert ckpt.recipe.ema > 0 and ckpt.train_state_dict is not None
    steps = sum(h.steps for h in ckpt.history)
    assert ckpt.ema_steps == steps
    floats = [k for k, v in ckpt.state_dict.items() if v.dtype.is_floating_point]
    assert all(not torch.equal(ckpt.state_dict[k], ckpt.train_state_dict[k]) for k in floats if "running" not in k)
    # Evaluating the saved weights gives the recorded accuracy: they are what was scored.
    assert ckpt.metrics["test_acc"] == ckpt.history[-1].test_acc


def test_the_weight_average_matches_one_computed_by_hand():
    from mnistcli.optim import WeightAverage

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    average = WeightAverage(model, decay=0.8)
    expected = 0.0
    for n, w in enumerate([1.0, 2.0, -3.0, 4.0, 10.0, 0.5], start=1):
        with torch.no_grad():
            model.weight.fill_(w)
        average.update()
        d = min(0.8, (1 + n) / (10 + n))  # the decay warms up
        expected = d * expected + (1 - d) * w
        assert average.model.weight[0, 0].item() == pytest.approx(expected, rel=1e-6), n
    assert average.steps == 6 and model.weight[0, 0].item() == 0.5  # the model itself is untouched


def test_a_resumed_run_continues_the_same_average(fixture_data, tmp_path):
    _fit(fixture_data, tmp_path / "straight", 2)
    _fit(fixture_data, tmp_path / "stopped", 2, stop=(tmp_path / "stopped" / "epoch-001.pt").exists)
    _fit(fixture_data, tmp_path / "stopped", 2, resume=tmp_path / "stopped")
    a, b = checkpoint.load(tmp_path / "straight" / "last.pt"), checkpoint.load(tmp_path / "stopped" / "last.pt")
    assert a.ema_steps == b.ema_steps > 0
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert not all(torch.equal(a.state_dict[k], a.train_state_dict[k]) for k in a.state_dict)


def test_a_row_of_loss_and_accuracy_every_log_every_batches(fixture_data, tmp_path):
    # 500 training images in batches of 64: 8 batches per epoch; a row every 3 -> batches 3 and 6.
    result = run(
        "train",
        "--epochs",
        2,
        "--data-dir",
        fixture_data,
        "--out-dir",
        tmp_path,
        "--val-size",
        100,
        "--log-every",
        3,
        "--batch-size",
        64,
    )
    assert result.exit_code == 0, result.output
    rows = re.findall(r"^\s*(\d+)\s+(\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)%\s*$", result.stdout, re.MULTILINE)
    assert [(int(e), int(b)) for e, b, _, _ in rows] == [(1, 3), (1, 6), (2, 3), (2, 6)], result.stdout
    assert len(re.findall(r"^\s*Epoch\s+Batch\s", result.stdout, re.MULTILINE)) == 1, result.stdout  # once a run


def test_the_schedule_spans_the_epochs_asked_for(fixture_data, tmp_path):
    for epochs in (1, 3):
        out = tmp_path / str(epochs)
        options = RunSettings(data_dir=fixture_data, download=False, out_dir=out, device="cpu")
        trainer.fit(options, given={"epochs": epochs, "batch_size": 50, "val_size": 100, "lr": 0.2})
        ckpt = checkpoint.load(out / "last.pt")
        assert ckpt.scheduler["total_steps"] == epochs * 10 and ckpt.scheduler["last_epoch"] == epochs * 10
        lrs = [h.lr for h in ckpt.history]
        assert lrs[-1] < 0.2 / 20  # annealed to (almost) nothing at the end of the run, not of epoch 1
        if epochs == 3:
            assert lrs[0] > 0.1  # still high after epoch 1 of 3


def test_data_dir_from_the_environment_is_used_and_recorded(fixture_data, tmp_path):
    result = run(
        "train",
        "--epochs",
        1,
        "--out-dir",
        tmp_path,
        "--val-size",
        100,
        "--no-download",
        env={"MNISTCLI_DATA_DIR": str(fixture_data)},
    )
    assert result.exit_code == 0, result.output
    assert str(fixture_data) in result.stdout
    assert checkpoint.load(tmp_path / "last.pt").data_dir == fixture_data.resolve()


def test_recipe_options_given_explicitly_override_the_preset(fixture_data, tmp_path):
    result = run(
        "train", "--recipe", "report", "--lr", "0.05", "--epochs", 1, "--data-dir", fixture_data, "--out-dir", tmp_path
    )
    assert result.exit_code == 0, result.output
    recipe = checkpoint.load(tmp_path / "last.pt").recipe
    assert (recipe.lr, recipe.momentum, recipe.model, recipe.val_size) == (0.05, 0.5, "report-cnn", 0)


def test_recipe_with_resume_is_refused(fixture_data, tmp_path):
    assert (
        run("train", "--epochs", 1, "--data-dir", fixture_data, "--out-dir", tmp_path, "--val-size", 100).exit_code == 0
    )
    result = run("train", "--resume", tmp_path, "--recipe", "report", "--epochs", 2, "--data-dir", fixture_data)
    assert result.exit_code == 2 and "--recipe cannot be combined with --resume" in result.stderr


def test_each_logged_row_covers_only_the_batches_since_the_last_row():
    from mnistcli.data import Split
    from mnistcli.engine import train_epoch

    torch.manual_seed(0)
    split = Split("train", torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (100,)))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    events = []
    stats, done = train_epoch(
        model,
        split,
        torch.optim.SGD(model.parameters(), lr=0.01),
        batch_size=10,
        order=torch.arange(100),
        log_every=3,
        on_batch=events.append,
    )
    windows = [(e.batch, e.window) for e in events if e.window is not None]
    assert [b for b, _ in windows] == [3, 6, 9] and done == 10 and stats.seen == 100
    assert all(w.seen == 30 for _, w in windows)  # 3 batches of 10, not everything so far
    assert sum(w.loss_sum for _, w in windows) < stats.loss_sum  # the epoch also counts batch 10


def test_a_run_reports_each_step_to_its_hooks_in_order_and_a_stop_after_the_last_epoch_ends_it_whole(
    fixture_data, tmp_path
):
    calls = []

    class Recording:
        def on_start(self, info):
            calls.append(("start", info.recipe.epochs, str(info.device)))

        def on_epoch_start(self, epoch, total_epochs, steps, start_batch):
            calls.append(("epoch", epoch, total_epochs, steps, start_batch))

        def on_batch(self, epoch, event):
            if event.batch == event.total:
                calls.append(("last batch", epoch, event.batch))

        def on_evaluating(self, epoch):
            calls.append(("evaluating", epoch))

        def on_epoch_end(self, end):
            calls.append(("end", end.row.epoch, [p.name for p in end.saved], end.is_best))

    options = RunSettings(data_dir=fixture_data, download=False, out_dir=tmp_path, device="cpu", precision="fp32")
    last_evaluated = lambda: ("evaluating", 2) in calls  # noqa: E731 - Ctrl-C while the last epoch is evaluated
    given = {"epochs": 2, "batch_size": 100, "val_size": 100}
    result = trainer.fit(options, given=given, hooks=Recording(), should_stop=last_evaluated)
    assert not result.interrupted and [h.epoch for h in result.history] == [1, 2]  # the run was complete
    saved = checkpoint.load(tmp_path / "last.pt")
    assert saved.config.precision == "fp32"
    age = datetime.now(timezone.utc) - datetime.fromisoformat(saved.created)
    assert timedelta(0) <= age < timedelta(minutes=10)
    steps = 5  # 500 training images (600 less 100 for validation) in batches of 100
    assert calls[0] == ("start", 2, "cpu") and len(calls) == 9
    for epoch, at in ((1, 1), (2, 5)):
        assert calls[at : at + 3] == [
            ("epoch", epoch, 2, steps, 0),
            ("last batch", epoch, steps),
            ("evaluating", epoch),
        ]
    assert calls[4] == ("end", 1, ["epoch-001.pt", "best.pt", "last.pt"], True)  # the first epoch is the best so far
    best = calls[8][3]
    assert calls[8] == ("end", 2, ["epoch-002.pt"] + ["best.pt"] * best + ["last.pt"], best)


@pytest.mark.parametrize(
    "name, value", [("rotate", 20.0), ("scale", 0.2), ("shear", 20.0), ("elastic", 20.0), ("stroke", 0.7)]
)
def test_each_augmentation_option_reaches_the_batches_as_itself(fixture_data, tmp_path, name, value):
    from mnistcli.augment import Distortion, distort
    from mnistcli.settings import resolve_recipe

    given = {"augment": 0, "rotate": 0.0, "scale": 0.0, "shear": 0.0, "elastic": 0.0, "stroke": 0.0, "val_size": 100}
    given[name] = value
    options = RunSettings(data_dir=fixture_data, download=False, out_dir=tmp_path, device="cpu")
    run_, _ = trainer.set_up(resolve_recipe(None, given), options, torch.device("cpu"), None)
    augment = trainer._augmentation(run_)
    x = torch.full((8, 1, 28, 28), -0.4242).contiguous(memory_format=torch.channels_last)
    x[:, :, 6:22, 12:16] = 2.8  # a bar on the blank background
    state = run_.generator.get_state()
    out = augment(x)
    generator = torch.Generator()
    generator.set_state(state)
    blank = -run_.data.spec.mean / run_.data.spec.std
    assert torch.equal(out, distort(x, Distortion(**{name: value}), generator, blank)) and not torch.equal(out, x)


def test_a_resumed_run_reads_its_data_from_the_folder_its_checkpoint_recorded(fixture_data, tmp_path, monkeypatch):
    first = RunSettings(data_dir=fixture_data, download=False, out_dir=tmp_path / "run", device="cpu")
    trainer.fit(first, given={"epochs": 1, "batch_size": 100, "val_size": 100})
    monkeypatch.chdir(tmp_path)  # no ./data here, no MNISTCLI_DATA_DIR, an empty user cache, no download
    again = RunSettings(data_dir=None, download=False, resume=tmp_path / "run" / "last.pt", device="cpu")
    result = trainer.fit(again, given={"epochs": 2})
    assert [h.epoch for h in result.history] == [1, 2] and result.data_dir == fixture_data.resolve()


def test_a_resume_with_more_epochs_continues_the_schedule_over_the_new_total(fixture_data, tmp_path):
    def fit(out, epochs, resume=None):
        given = {"epochs": epochs} if resume else {"epochs": epochs, "batch_size": 50, "val_size": 100, "lr": 0.2}
        options = RunSettings(data_dir=fixture_data, download=False, out_dir=out, device="cpu", resume=resume)
        return trainer.fit(options, given=given)

    straight = fit(tmp_path / "straight", 3)
    fit(tmp_path / "grown", 1)
    grown = fit(tmp_path / "grown", 3, resume=tmp_path / "grown" / "last.pt")
    ckpt = checkpoint.load(tmp_path / "grown" / "last.pt")
    assert ckpt.scheduler["total_steps"] == 30 and ckpt.scheduler["last_epoch"] == 30
    # From the step epoch 1 reached, on the 3-epoch schedule: the same rates as a 3-epoch run from the start.
    assert [h.lr for h in grown.history[1:]] == pytest.approx([h.lr for h in straight.history[1:]], rel=1e-9)
    assert grown.history[0].lr < straight.history[0].lr / 10  # epoch 1 ran a 1-epoch schedule


def test_threads_sets_torchs_cpu_threads_and_the_environment_is_honoured(fixture_data, tmp_path):
    before = torch.get_num_threads()
    try:
        result = run(
            "train",
            "--epochs",
            1,
            "--model",
            "fc",
            "--threads",
            1,
            "--data-dir",
            fixture_data,
            "--out-dir",
            tmp_path / "a",
            "--val-size",
            100,
            "--device",
            "cpu",
        )
        assert result.exit_code == 0, result.output
        assert "on cpu (" in result.stdout and ", 1 thread)" in result.stdout and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["train", "--epochs", 1, "--model", "fc", "--out-dir", tmp_path / "b", "--device", "cpu"]
    child = run_module(*cmd, "--data-dir", fixture_data, "--val-size", 100, env=env)
    assert ", 1 thread)" in child.stdout
    refused = run("train", "--threads", 0, "--data-dir", fixture_data, "--out-dir", tmp_path / "c")
    assert refused.exit_code == 2 and "--threads must be at least 1" in refused.stderr


def test_each_checkpoint_is_calibrated_on_the_validation_split_and_never_on_the_test_split(trained_run, fixture_data):
    from mnistcli.data import load_dataset
    from mnistcli.engine import evaluate_split
    from mnistcli.metrics import fit_temperature

    ckpt = checkpoint.load(trained_run / "best.pt")
    data = load_dataset("mnist", fixture_data, download_ok=False, val_size=ckpt.recipe.val_size)
    net = checkpoint.build_model(ckpt)
    val, test = evaluate_split(net, data.val), evaluate_split(net, data.test)
    assert ckpt.temperature == pytest.approx(fit_temperature(val.logits, val.labels), rel=1e-6)
    assert ckpt.temperature != pytest.approx(fit_temperature(test.logits, test.labels), rel=1e-3)
    assert ckpt.history[ckpt.epoch - 1].temperature == ckpt.temperature


def test_without_a_validation_split_the_temperature_stays_one(fixture_data, tmp_path):
    result = run("train", "--recipe", "report", "--epochs", 1, "--data-dir", fixture_data, "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert checkpoint.load(tmp_path / "best.pt").temperature == 1.0
