"""`mnistcli export`: inference-only files that load everywhere a checkpoint does, and ONNX."""

import json
import os

import numpy as np
import pytest
import torch

from mnistcli import checkpoint, onnx_export

from helpers import ROOT, one_error_line, render_digits, run


def test_a_safetensors_export_holds_the_weights_and_what_is_needed_to_use_them(trained_run, tmp_path):
    out = tmp_path / "model.safetensors"
    result = run("export", trained_run / "best.pt", out)
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    meta = json.loads(header["__metadata__"]["mnistcli"])
    source = checkpoint.load(trained_run / "best.pt")
    assert meta["model"] == source.model and meta["classes"] == source.classes
    assert meta["normalization"] == source.normalization and meta["metrics"] == source.metrics
    assert meta["config"]["recipe"] == source.config.recipe and meta["torch_version"]
    assert {k for k in header if k != "__metadata__"} == set(source.state_dict)  # the averaged weights only
    assert set(meta) == {
        "format_version",
        "model",
        "model_args",
        "dataset",
        "classes",
        "normalization",
        "epoch",
        "metrics",
        "temperature",
        "config",
        "torch_version",
        "mnistcli_version",
        "created",
    }
    assert b"momentum_buffer" not in raw and b"history" not in raw and str(trained_run).encode() not in raw
    assert str(ROOT).encode() not in raw and b"/tmp" not in raw  # no paths of this machine
    loaded = checkpoint.load(out)
    assert all(torch.equal(loaded.state_dict[k], source.state_dict[k]) for k in source.state_dict)
    assert out.stat().st_size < (trained_run / "best.pt").stat().st_size / 2


def test_an_export_evaluates_and_predicts_exactly_as_its_checkpoint(trained_run, fixture_data, tmp_path):
    out = tmp_path / "model.safetensors"
    assert run("export", trained_run / "best.pt", out).exit_code == 0
    models = (trained_run / "best.pt", out)
    docs = [json.loads(run("evaluate", m, "--data-dir", fixture_data, "--json").stdout) for m in models]
    assert docs[0]["accuracy"] == docs[1]["accuracy"] and docs[0]["confusion_matrix"] == docs[1]["confusion_matrix"]
    from PIL import Image

    Image.fromarray(render_digits(1, 3)[0][0]).resize((100, 100)).save(tmp_path / "d.png")
    rows = [json.loads(run("predict", tmp_path / "d.png", "-c", m, "--json").stdout)["predictions"] for m in models]
    assert rows[0][0]["top_k"] == rows[1][0]["top_k"]


def test_an_export_cannot_be_resumed_and_says_so(trained_run, fixture_data, tmp_path):
    out = tmp_path / "model.safetensors"
    assert run("export", trained_run / "best.pt", out).exit_code == 0
    line = one_error_line(run("train", "--resume", out, "--epochs", 9, "--data-dir", fixture_data))
    assert "cannot be resumed" in line and "last.pt" in line


def test_exporting_something_that_is_not_a_checkpoint_is_one_line(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"nonsense")
    line = one_error_line(run("export", tmp_path / "x.pt", tmp_path / "y.safetensors"))
    assert "not a readable model file" in line and not (tmp_path / "y.safetensors").exists()


def test_a_damaged_safetensors_file_is_one_line(trained_run, tmp_path):
    out = tmp_path / "model.safetensors"
    assert run("export", trained_run / "best.pt", out).exit_code == 0
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    assert "not a readable safetensors file" in one_error_line(run("predict", tmp_path, "-c", cut))


def test_onnx_export_runs_in_onnxruntime_with_the_same_probabilities(trained_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    result = run("export", trained_run / "best.pt", out)
    assert result.exit_code == 0, result.output
    source = checkpoint.load(trained_run / "best.pt")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    meta = json.loads(session.get_modelmeta().custom_metadata_map["mnistcli"])
    assert meta["classes"] == source.classes and meta["normalization"] == source.normalization
    images = render_digits(7, seed=9)[0]
    reference = onnx_export.probabilities_module(source)
    for batch in (images[:1], images):  # any batch size
        pixels = batch.astype(np.float32)
        (probs,) = session.run(["probabilities"], {"pixels": pixels})
        with torch.no_grad():
            expected = reference(torch.from_numpy(pixels)).numpy()
        assert probs.shape == (len(batch), 10) and np.allclose(probs, expected, atol=1e-4)
    # ...and the module is the network mnistcli uses: the same probabilities as engine.predict.
    from mnistcli import engine

    net = checkpoint.build_model(source)
    direct = engine.predict_probabilities(
        net, torch.from_numpy(images), mean=source.spec.mean, std=source.spec.std, temperature=source.temperature
    ).numpy()
    assert np.allclose(probs, direct, atol=1e-4)


@pytest.fixture
def umask_027():
    before = os.umask(0o027)
    yield 0o640  # the mode a new file gets under it
    os.umask(before)


def test_every_file_written_gets_the_umasks_mode_not_a_temp_files(trained_run, fixture_data, tmp_path, umask_027):
    pytest.importorskip("onnxruntime")
    for name in ("model.safetensors", "model.onnx"):
        assert run("export", trained_run / "best.pt", tmp_path / name).exit_code == 0
    out = tmp_path / "run"
    result = run(
        "train", "--data-dir", fixture_data, "--out-dir", out, "--epochs", 1, "--model", "fc", "--val-size", 100
    )
    assert result.exit_code == 0, result.output
    written = [
        tmp_path / "model.safetensors",
        tmp_path / "model.onnx",
        *sorted(p for p in out.iterdir() if p.is_file()),
    ]
    assert {"last.pt", "best.pt", "history.json", "curves.png", "config.toml"} <= {p.name for p in written}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(umask_027) for p in written}
