"""mnistcli from Python: the same numbers as the command line, typed results, typed errors, no torch on import."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import mnistcli

from helpers import NEUTRAL, REAL_MNIST, ROOT, needs_real_mnist, render_digits, run


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A photo-like picture of a digit, as a file, and the numbers `predict --json` gives for it."""
    import imagegen

    digits, labels = render_digits(1, seed=4)
    folder = tmp_path_factory.mktemp("api")
    path, _, _ = imagegen.write_set(folder, digits, labels, seed=2, styles=("paper-photo",))[0]
    cli = json.loads(run("predict", path, "--json", "--top-k", 3, "-c", _bundled()).stdout)
    return path, cli["predictions"][0]


def _bundled():
    from mnistcli import checkpoint

    return checkpoint.PRETRAINED


def test_import_mnistcli_imports_no_torch():
    code = "import sys, mnistcli; print('torch' in sys.modules, sorted(mnistcli.__all__)[:3])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=NEUTRAL, check=True).stdout
    assert out.startswith("False"), out


def test_a_path_a_pil_image_and_an_array_give_the_numbers_of_predict_json(picture):
    path, cli = picture
    model = mnistcli.load()
    image = Image.open(path)
    array = np.asarray(image.convert("RGB"))
    for given in (path, str(path), path.read_bytes(), image, array, array.astype(np.float32) / 255):
        got = model.predict(given, top_k=3)
        assert isinstance(got, mnistcli.Prediction)
        row = got.to_dict()
        assert row["digit"] == cli["digit"] and [t["digit"] for t in row["top_k"]] == [t["digit"] for t in cli["top_k"]]
        assert [t["probability"] for t in row["top_k"]] == pytest.approx(
            [t["probability"] for t in cli["top_k"]], abs=1e-6
        )
        assert got.confidence == pytest.approx(cli["confidence"], abs=1e-6) and got.unsure == cli["unsure"]
        assert got.input.shape == (28, 28) and got.input.dtype == np.uint8
    assert model.predict(path).file == str(path) and model.predict(image).file == "image"


def test_several_pictures_come_back_in_order_and_raw_skips_the_clean_up():
    model = mnistcli.load()
    digits, _ = render_digits(6, seed=9)
    answers = model.predict(list(digits), raw=True, top_k=1)
    assert [a.file for a in answers] == [f"array[{i}]" for i in range(6)]
    assert all(np.array_equal(a.input, d) for a, d in zip(answers, digits))  # raw: the 28x28 as it is
    import torch

    assert [a.digit for a in model.predict([torch.from_numpy(d) for d in digits], raw=True)] == [
        a.digit for a in answers
    ]


def test_expected_failures_are_typed_exceptions_not_system_exit(tmp_path):
    model = mnistcli.load()
    with pytest.raises(mnistcli.ImageError, match="no such file"):
        model.predict(tmp_path / "missing.png")
    with pytest.raises(mnistcli.ImageError, match=r"array\[1\]: a float array must hold values in \[0, 1\]"):
        model.predict([np.zeros((28, 28), np.float32), np.full((28, 28), 7.0)], raw=True)
    with pytest.raises(mnistcli.ImageError, match="is not a picture"):
        model.predict(np.zeros((2, 3, 4, 5)))
    with pytest.raises(mnistcli.CheckpointError, match="checkpoint not found"):
        mnistcli.load(tmp_path / "none.pt")
    with pytest.raises(mnistcli.OptionError, match="top_k must be at least 1"):
        model.predict(np.zeros((28, 28), np.uint8), top_k=0)
    with pytest.raises(mnistcli.OptionError, match="not settings of a run: colour"):
        mnistcli.train(colour="red")
    assert issubclass(mnistcli.errors.DataError, mnistcli.MnistCliError)


def test_a_bare_load_is_the_bundled_model_whatever_the_folder(trained_run, tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "best.pt").write_bytes((trained_run / "best.pt").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert mnistcli.load().path == _bundled()
    assert mnistcli.load("checkpoints/best.pt").name == "cnn"


def test_evaluate_gives_what_evaluate_json_gives(trained_run, fixture_data):
    model = mnistcli.load(trained_run / "best.pt")
    report = model.evaluate(fixture_data, split="test")
    cli = json.loads(run("evaluate", trained_run / "best.pt", "--json", "--data-dir", fixture_data).stdout)
    assert report.to_dict() == {k: v for k, v in cli.items() if k not in ("checkpoint", "plots")}
    assert report.accuracy == cli["accuracy"]


def test_train_is_silent_and_returns_the_history_and_its_files(fixture_data, tmp_path, capsys):
    result = mnistcli.train(
        epochs=2, model="fc", batch_size=100, val_size=100, out_dir=tmp_path, data_dir=fixture_data, device="cpu"
    )
    assert capsys.readouterr().out == ""
    assert [row.epoch for row in result.history] == [1, 2] and not result.stopped
    assert result.best.is_file() and result.last.is_file() and result.config.is_file()
    assert result.load().name == "fc"


def test_a_client_of_the_api_type_checks(tmp_path):
    client = tmp_path / "client.py"
    client.write_text(
        "import mnistcli\n"
        "model: mnistcli.Model = mnistcli.load()\n"
        "one: mnistcli.Prediction = model.predict('digit.png')\n"
        "many: list[mnistcli.Prediction] = model.predict(['a.png', 'b.png'], top_k=2)\n"
        "digit: int = one.digit\n"
        "sure: float = many[0].confidence\n"
        "result: mnistcli.TrainResult = mnistcli.train(epochs=1)\n"
        "accuracy: float = model.evaluate().accuracy\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text("import mnistcli\nlabel: int = mnistcli.load().predict('d.png').label\n")
    mypy = [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", str(tmp_path / "cache")]
    ok = subprocess.run([*mypy, str(client)], capture_output=True, text=True, cwd=NEUTRAL)
    assert ok.returncode == 0, ok.stdout
    wrong = subprocess.run([*mypy, str(bad)], capture_output=True, text=True, cwd=NEUTRAL)
    assert wrong.returncode == 1 and "incompatible types in assignment" in wrong.stdout.lower(), wrong.stdout


@needs_real_mnist
def test_the_readmes_python_api_section_runs_and_gives_the_numbers_of_predict_json(picture, tmp_path, monkeypatch):
    import contextlib
    import io
    import re

    text = (ROOT / "README.md").read_text()
    start = text.index("## Python API\n")
    blocks = re.findall(r"```python\n(.*?)```", text[start : text.index("\n## ", start + 1)], re.S)
    assert len(blocks) >= 4
    path, _ = picture
    Image.open(path).save(tmp_path / "digit.png")  # a user's picture, in the folder the code runs in
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTCLI_DATA_DIR", str(REAL_MNIST))
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)
    cli = json.loads(run("predict", "digit.png", "--json", "-c", _bundled()).stdout)["predictions"][0]
    for name in ("prediction", "from_pil", "from_array"):
        got = namespace[name]
        assert (got.digit, got.unsure) == (cli["digit"], cli["unsure"]), name
        assert got.confidence == pytest.approx(cli["confidence"], abs=1e-6), name
        assert [r.probability for r in got.top_k] == pytest.approx([t["probability"] for t in cli["top_k"]], abs=1e-6)
    assert len(namespace["several"]) == 2 and len(namespace["run"].history) == 1
    assert "bytes: not an image" in printed.getvalue() and (tmp_path / "runs" / "fc" / "best.pt").is_file()
