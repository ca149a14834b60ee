"""`mnistcli explain`: each stage of the network for one digit, and a pixel map that passes the sanity
checks of Adebayo et al. 2018 (it is about the trained weights, not only about the picture)."""

import json

import numpy as np
import pytest
import torch

from mnistcli import checkpoint, explain, inference

from helpers import REAL_MNIST, is_png, needs_real_mnist, render_digits, run


def _digits(n=12):
    if (REAL_MNIST / "MNIST" / "raw").is_dir():
        from mnistcli import data

        test = data.load_dataset("mnist", REAL_MNIST, download_ok=False, val_size=0, splits=("test",)).test
        return test.images[:n].numpy()
    return render_digits(n, seed=5)[0]


def _explained(loaded, digits):
    out = []
    for i, d in enumerate(digits):
        prediction = inference.predict_inputs(loaded, [d], [f"#{i}"], top_k=3)[0]
        out.append(explain.explain(loaded, prediction))
    return out


def _spearman(a, b):
    ra, rb = np.argsort(np.argsort(a.ravel())), np.argsort(np.argsort(b.ravel()))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_the_trained_models_map_is_on_the_ink_and_a_reinitialised_ones_is_not_the_same():
    trained = checkpoint.load_model(checkpoint.PRETRAINED, torch.device("cpu"))
    digits = _digits()
    maps = _explained(trained, digits)
    assert np.mean([m.ink_share(m.prediction.digit) for m in maps]) > 0.7  # most of "for" lies on the strokes
    scrambled = checkpoint.load_model(checkpoint.PRETRAINED, torch.device("cpu"))
    torch.manual_seed(0)
    for module in scrambled.net.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()  # the same network, its learnt weights gone (Adebayo et al.'s randomisation)
    for m, d in zip(maps, digits):
        prediction = inference.prediction(
            m.prediction.file, [0.5], [m.prediction.digit], trained.checkpoint.classes, 1, d
        )
        random_map = explain.explain(scrambled, prediction).attribution[m.prediction.digit]
        ink = d > 0  # where a map from a blank baseline can be non-zero at all
        m.similarity = _spearman(m.attribution[m.prediction.digit][ink], random_map[ink])
    assert np.median(np.abs([m.similarity for m in maps])) < 0.5, [round(m.similarity, 2) for m in maps]


def test_the_map_adds_up_to_the_logits_rise_from_a_blank_image():
    loaded = checkpoint.load_model(checkpoint.PRETRAINED, torch.device("cpu"))
    digit = _digits(1)[0]
    m = _explained(loaded, [digit])[0]
    spec = loaded.checkpoint.spec
    from mnistcli.data import normalize

    with torch.no_grad():
        rise = (
            loaded.net(normalize(torch.from_numpy(digit)[None], spec.mean, spec.std))[0]
            - loaded.net(normalize(torch.zeros(1, 28, 28, dtype=torch.uint8), spec.mean, spec.std))[0]
        )
    for target, a in m.attribution.items():  # completeness (Sundararajan et al.), up to the path's steps
        assert a.sum() == pytest.approx(float(rise[target]), rel=0.05, abs=0.05)


def test_explain_writes_one_png_and_json_of_each_stage(tmp_path, trained_run, fixture_data):
    digit = render_digits(1, seed=8)[0][0]
    from PIL import Image

    Image.fromarray(digit).save(tmp_path / "d.png")
    result = run("explain", tmp_path / "d.png", "-o", tmp_path / "e.png", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    kinds = [s["kind"] for s in doc["stages"]]
    assert kinds[:4] == ["convolution", "pooling", "batch norm", "relu"] and kinds[-1] == "linear"
    assert doc["stages"][0]["shape"] == [32, 28, 28] and "integrated gradients" in doc["attribution"]["method"]
    assert is_png(tmp_path / "e.png") and doc["prediction"]["digit"] in range(10)
    fc = run(
        "explain", "--index", 3, "-c", trained_run / "best.pt", "--data-dir", fixture_data, "-o", tmp_path / "f.png"
    )
    assert fc.exit_code == 0 and is_png(tmp_path / "f.png"), fc.output
    refused = run("explain", "--index", 10_000, "--data-dir", fixture_data, "-o", tmp_path / "g.png")
    assert refused.exit_code == 2 and "--index must be 0 to 199" in refused.stderr
    assert run("explain").exit_code == 2


@needs_real_mnist
def test_the_fully_connected_nets_templates_and_units_are_shown(tmp_path):
    out = tmp_path / "fc"
    trained = run("train", "--model", "fc", "--epochs", 1, "--data-dir", REAL_MNIST, "--no-download", "--out-dir", out)
    assert trained.exit_code == 0, trained.output
    loaded = checkpoint.load_model(out / "best.pt", torch.device("cpu"))
    m = _explained(loaded, _digits(1))[0]
    assert m.filters.shape == (256, 28, 28) and [s.kind for s in m.stages] == [
        "linear",
        "relu",
        "linear",
        "relu",
        "linear",
    ]
    assert m.ink_share(m.prediction.digit) > 0.5
