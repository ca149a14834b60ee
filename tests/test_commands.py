"""CLI tests of evaluate, predict and show-samples on the fixture dataset and a small trained checkpoint."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from mnistcli import checkpoint

import imagegen
from helpers import is_png, plain, render_digits, run


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of realistic pictures of fixture digits, one per style, plus their labels."""
    digits, labels = render_digits(6, seed=11)
    folder = tmp_path_factory.mktemp("pictures")
    files = imagegen.write_set(folder, digits, labels, seed=1)
    return folder, files


def test_evaluate_matches_what_train_reported(trained_run, fixture_data):
    history = json.loads((trained_run / "history.json").read_text())
    best = checkpoint.load(trained_run / "best.pt")
    record = next(h for h in history if h["epoch"] == best.epoch)
    for split in ("test", "val"):
        result = run("evaluate", trained_run / "best.pt", "--split", split, "--json", "--data-dir", fixture_data)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["accuracy"] == record[f"{split}_acc"]  # to the last image
        assert doc["loss"] == pytest.approx(record[f"{split}_loss"], rel=1e-5)
        assert sum(map(sum, doc["confusion_matrix"])) == doc["images"]
        assert doc["errors"] == doc["images"] - sum(doc["confusion_matrix"][i][i] for i in range(10))
        assert len(doc["per_class"]) == 10 and doc["checkpoint"]["model"] == "cnn"


def test_evaluate_prints_tables_and_saves_plots(trained_run, fixture_data, tmp_path):
    result = run("evaluate", trained_run / "last.pt", "--data-dir", fixture_data, "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    for text in ("accuracy", "Precision", "Recall", "F1", "Confusion matrix", "errors"):
        assert text in result.stdout
    assert is_png(tmp_path / "confusion.png") and is_png(tmp_path / "mistakes.png")


def test_evaluate_refuses_a_bad_split_and_a_missing_checkpoint(tmp_path):
    refused = run("evaluate", tmp_path / "x.pt", "--split", "dev")
    message = plain(refused.stderr)
    assert refused.exit_code == 2 and "'dev'" in message and "'test', 'val', 'train'" in message, refused.stderr
    result = run("evaluate", tmp_path / "x.pt")
    assert result.exit_code == 1 and "checkpoint not found" in result.stderr


def test_predict_reads_every_style_and_reports_json(trained_run, images):
    folder, files = images
    result = run("predict", folder, "--checkpoint", trained_run / "best.pt", "--json", "--top-k", 3)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(doc["predictions"]) == len(files) and doc["errors"] == []
    for p in doc["predictions"]:
        assert 0 <= p["digit"] <= 9 and len(p["top_k"]) == 3
        assert p["top_k"][0]["probability"] == p["confidence"] >= p["top_k"][1]["probability"]
    assert doc["checkpoint"]["path"].endswith("best.pt")


def test_predict_table_names_the_checkpoint(trained_run, images):
    _folder, files = images
    result = run("predict", files[0][0], files[1][0], "-c", trained_run / "best.pt")
    assert result.exit_code == 0, result.output
    assert "best.pt" in result.stdout and "Confidence" in result.stdout and "Top 3" in result.stdout


def test_one_bad_file_does_not_stop_the_others(trained_run, images, tmp_path):
    _folder, files = images
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    Image.new("L", (100, 100), 255).save(tmp_path / "blank.png")
    result = run(
        "predict", files[0][0], tmp_path / "broken.png", tmp_path / "blank.png", "-c", trained_run / "best.pt", "--json"
    )
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [p["file"] for p in doc["predictions"]] == [str(files[0][0])]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2 and "broken.png" in errors[0] and "blank.png: no digit found" in errors[1]
    assert "Traceback" not in result.output


def test_predict_show_and_save_inputs(trained_run, images, tmp_path):
    _folder, files = images
    result = run("predict", files[0][0], "-c", trained_run / "best.pt", "--show", "--save-inputs", tmp_path / "seen")
    assert result.exit_code == 0, result.output
    saved = tmp_path / "seen" / (files[0][0].stem + ".png")
    assert np.asarray(Image.open(saved)).shape == (28, 28)
    assert "@@" in result.stdout  # the 28x28 input drawn as text


def test_predict_raw_takes_mnist_style_images(trained_run, tmp_path):
    digits, _ = render_digits(2, seed=5)
    Image.fromarray(digits[0]).save(tmp_path / "d.png")
    result = run("predict", tmp_path / "d.png", "-c", trained_run / "best.pt", "--raw", "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)["predictions"]) == 1


def test_predict_without_any_checkpoint_says_what_to_do(tmp_path, monkeypatch, images):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkpoint, "PRETRAINED", tmp_path / "none.pt")
    result = run("predict", images[1][0][0])
    assert result.exit_code == 1 and "mnistcli train" in result.stderr and "--checkpoint" in result.stderr
    assert "no checkpoint: ./checkpoints/best.pt does not exist and no pretrained model is bundled" in result.stderr


def test_predict_prefers_the_local_best_checkpoint(trained_run, tmp_path, monkeypatch, images):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_bytes((trained_run / "best.pt").read_bytes())
    monkeypatch.chdir(tmp_path)
    result = run("predict", images[1][0][0], "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"]["source"].startswith("local best")


def test_show_samples_writes_a_grid_and_the_label_counts(fixture_data, tmp_path):
    out = tmp_path / "grid.png"
    result = run("show-samples", "--data-dir", fixture_data, "--output", out, "--per-class", 3)
    assert result.exit_code == 0, result.output
    assert is_png(out) and "Labels in the test split" in result.stdout and "Share" in result.stdout
    result = run("show-samples", "--data-dir", fixture_data, "--output", out, "--split", "train", "--count", 12)
    assert result.exit_code == 0 and "Saved 12 images" in result.stdout


def test_show_samples_with_a_checkpoint_and_errors_only(trained_run, fixture_data, tmp_path):
    out = tmp_path / "errors.png"
    result = run("show-samples", "--data-dir", fixture_data, "-c", trained_run / "best.pt", "--errors-only", "-o", out)
    assert result.exit_code == 0, result.output
    doc = json.loads(run("evaluate", trained_run / "best.pt", "--json", "--data-dir", fixture_data).stdout)
    shown = min(40, doc["errors"])
    assert (f"Saved {shown} images" in result.stdout) if shown else ("makes no mistakes" in result.stdout)
    best = checkpoint.load(trained_run / "best.pt")
    assert f"Checkpoint {trained_run / 'best.pt'} (given): model cnn, epoch {best.epoch}," in result.stdout
    assert f"True labels of the {shown} mistakes shown ({doc['errors']} in the test split)" in result.stdout
    wrong = [t for t in range(10) for p in range(10) if t != p for _ in range(doc["confusion_matrix"][t][p])]
    counts = dict(re.findall(r"^\s*(\d)\s+(\d+)\s+[\d.]+%", result.stdout, re.M))
    assert sum(map(int, counts.values())) == shown and (
        shown < doc["errors"] or all(int(counts[str(c)]) == wrong.count(c) for c in range(10))
    )


def test_show_samples_errors_only_needs_a_checkpoint(fixture_data):
    result = run("show-samples", "--data-dir", fixture_data, "--errors-only")
    assert result.exit_code == 2 and "--errors-only needs --checkpoint" in result.stderr


def test_evaluate_json_on_a_case_worked_out_by_hand(tmp_path):
    """Six test images, each with one lit pixel, and a linear model that answers "the lit pixel's column":
    truth 0 0 0 1 1 2, answers 0 1 1 1 2 2."""
    import math

    import torch

    from mnistcli.checkpoint import Checkpoint
    from mnistcli.dataset_specs import MEAN, STD
    from mnistcli.models import create_model

    from helpers import write_idx

    truth, answers = [0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 2, 2]
    images = np.zeros((6, 28, 28), np.uint8)
    images[np.arange(6), 0, answers] = 255
    for name, array in (
        ("t10k-images-idx3-ubyte", images),
        ("t10k-labels-idx1-ubyte", np.array(truth, np.uint8)),
        ("train-images-idx3-ubyte", images),
        ("train-labels-idx1-ubyte", np.array(truth, np.uint8)),
    ):
        write_idx(tmp_path / name, array, gz=False)
    net = create_model("fc", hidden=[])
    with torch.no_grad():
        net.net[1].weight.zero_()
        net.net[1].bias.zero_()
        net.net[1].weight[torch.arange(10), torch.arange(10)] = 10.0  # class c <- pixel (0, c)
    ckpt = Checkpoint(model="fc", model_args={"hidden": []}, state_dict=net.state_dict())
    checkpoint.write_checkpoint(checkpoint.training_bytes(ckpt), [tmp_path / "m.pt"])

    result = run("evaluate", tmp_path / "m.pt", "--data-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["images"], doc["errors"], doc["accuracy"]) == (6, 3, 0.5)
    cm = np.zeros((10, 10), int)
    cm[:3, :3] = [[1, 2, 0], [0, 1, 1], [0, 0, 1]]
    assert doc["confusion_matrix"] == cm.tolist()
    rows = {r["class"]: r for r in doc["per_class"]}
    assert (rows[0]["precision"], rows[0]["recall"], rows[0]["f1"], rows[0]["support"]) == (1.0, 1 / 3, 0.5, 3)
    assert rows[1]["precision"] == pytest.approx(1 / 3) and rows[1]["recall"] == 0.5 and rows[1]["support"] == 2
    assert rows[2]["precision"] == 0.5 and rows[2]["recall"] == 1.0 and rows[2]["f1"] == pytest.approx(2 / 3)
    assert rows[5] == {"class": 5, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    lit, dark = 10 * (1 - MEAN) / STD, 10 * -MEAN / STD  # the logit of the lit class and of the others
    right = math.log(1 + 9 * math.exp(dark - lit))
    wrong = math.log(math.exp(lit) + 9 * math.exp(dark)) - dark
    assert doc["loss"] == pytest.approx((3 * right + 3 * wrong) / 6, rel=1e-4)


def test_an_unsure_answer_says_so_in_the_table_and_the_json(trained_run, images, monkeypatch):
    from mnistcli import inference

    _folder, files = images
    monkeypatch.setattr(inference, "UNSURE_BELOW", 1.01)  # every answer is unsure
    doc = json.loads(run("predict", files[0][0], "-c", trained_run / "best.pt", "--json", "--top-k", 1).stdout)
    row = doc["predictions"][0]
    assert row["unsure"] is True and row["runner_up"]["digit"] != row["digit"] and len(row["top_k"]) == 1
    table = run("predict", files[0][0], "-c", trained_run / "best.pt").stdout
    assert f"{row['label']} or {row['runner_up']['label']}?" in table
    monkeypatch.setattr(inference, "UNSURE_BELOW", 0.0)  # no answer is unsure
    assert (
        json.loads(run("predict", files[0][0], "-c", trained_run / "best.pt", "--json").stdout)["predictions"][0][
            "unsure"
        ]
        is False
    )
    assert " or " not in run("predict", files[0][0], "-c", trained_run / "best.pt").stdout


def test_an_answer_that_a_pixels_shift_overturns_is_unsure_however_confident():
    import dataclasses

    import numpy as np
    import torch

    from mnistcli import checkpoint, inference

    class OnePixel(torch.nn.Module):
        """Says 1 when the centre pixel is nearly full ink, else 0: an answer a pixel's shift overturns."""

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # where the network's device is read from

        def forward(self, x):
            lit = x[:, 0, 14, 14] > (200 / 255 - 0.1307) / 0.3081
            return torch.zeros(len(x), 10).index_put_(
                (torch.arange(len(x)), torch.ones(len(x), dtype=torch.long)), torch.where(lit, 20.0, -20.0)
            )

    bundled = checkpoint.load_model(None, torch.device("cpu"))
    loaded = dataclasses.replace(bundled, net=OnePixel())
    dot, blob = np.zeros((2, 28, 28), np.uint8)
    dot[14, 14] = 255  # gone when moved by a pixel or thinned
    blob[9:20, 9:20] = 255  # there under every change
    shaky, steady = inference.predict_inputs(loaded, [dot, blob], ["dot", "blob"])
    assert shaky.digit == steady.digit == 1 and shaky.confidence > 0.99 and steady.confidence > 0.99
    assert shaky.unsure and not steady.unsure
    assert inference.UNSURE_BELOW == 0.6


def test_predict_normalizes_with_the_checkpoints_own_dataset(trained_run, tmp_path):
    import torch

    from mnistcli import engine

    ck = checkpoint.load(trained_run / "best.pt")
    ck.dataset, ck.normalization = "fashion-mnist", {"mean": 0.2860, "std": 0.3530}
    ck.temperature = 1.5  # softer answers, so that the normalisations differ visibly
    ck.classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
    path = tmp_path / "fashion.pt"
    checkpoint.write_checkpoint(checkpoint.training_bytes(ck), [path])
    digit, _ = render_digits(1, seed=3)
    Image.fromarray(digit[0]).save(tmp_path / "x.png")
    result = run("predict", tmp_path / "x.png", "-c", path, "--raw", "--json", "--top-k", 10)
    assert result.exit_code == 0, result.output
    got = {t["digit"]: t["probability"] for t in json.loads(result.stdout)["predictions"][0]["top_k"]}
    net, x = checkpoint.build_model(ck), torch.from_numpy(digit)
    t = ck.temperature  # the calibration the checkpoint carries
    own = engine.predict_probabilities(net, x, mean=0.2860, std=0.3530, temperature=t)[0].tolist()
    mnist = engine.predict_probabilities(net, x, mean=0.1307, std=0.3081, temperature=t)[0].tolist()
    assert max(abs(a - b) for a, b in zip(own, mnist)) > 1e-3  # the two normalisations give other answers
    assert [got[d] for d in range(10)] == pytest.approx(own, abs=1e-6)
