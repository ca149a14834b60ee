import os

import pytest
import torch

from mnistcli import checkpoint, files
from mnistcli.checkpoint import Checkpoint
from mnistcli.errors import CheckpointError
from mnistcli.models import count_parameters, create_model, model_args


def make_ckpt(model_name="cnn"):
    model = create_model(model_name)
    return model, Checkpoint(model=model_name, state_dict=model.state_dict(), model_args=model_args(model_name))


def test_save_load_roundtrip_rebuilds_the_same_model(tmp_path):
    model, ckpt = make_ckpt()
    checkpoint.write_checkpoint(checkpoint.training_bytes(ckpt), [tmp_path / "a.pt"])
    loaded = checkpoint.load(tmp_path / "a.pt")
    rebuilt = checkpoint.build_model(loaded)
    x = torch.randn(2, 1, 28, 28)
    model.eval()
    assert torch.allclose(model(x), rebuilt(x), atol=1e-5)  # rebuilt in channels-last layout
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_atomic_write_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        files.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["last.pt"]


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "last.pt").write_bytes(b"whole")
    (tmp_path / "notes.tmp").write_bytes(b"not ours")
    removed = files.remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [".last.pt.abc123.tmp"]
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "notes.tmp"]


def test_bare_state_dict_needs_a_model_name(tmp_path):
    model = create_model("report-cnn")
    torch.save(model.state_dict(), tmp_path / "mnist_cnn.pt")
    with pytest.raises(CheckpointError, match="--model NAME"):
        checkpoint.load(tmp_path / "mnist_cnn.pt")
    rebuilt = checkpoint.build_model(checkpoint.load(tmp_path / "mnist_cnn.pt", model_name="report-cnn"))
    assert torch.equal(rebuilt.fc[0].weight, model.fc[0].weight)


@pytest.mark.parametrize(
    "content, expected",
    [(b"", "empty file"), (b"\xff\xd8\xff\xe0 not a checkpoint", "not a readable model file")],
)
def test_junk_files_are_refused(tmp_path, content, expected):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected):
        checkpoint.load(path)


def test_a_damaged_pytorch_file_says_what_torch_found_and_other_pickles_say_what_they_hold(tmp_path):
    _, ckpt = make_ckpt()
    checkpoint.write_checkpoint(checkpoint.training_bytes(ckpt), [tmp_path / "whole.pt"])
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(tmp_path / "cut.pt")
    reason = str(err.value).split("not a readable PyTorch checkpoint (")[1]
    assert "None" not in reason and len(reason) > 10 and "\n" not in reason
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"not an mnistcli checkpoint \(holds a list\)"):
        checkpoint.load(tmp_path / "list.pt")


def test_a_save_that_dies_before_its_rename_leaves_only_a_temp_file_that_is_cleared(tmp_path, monkeypatch):
    (tmp_path / "last.pt").write_bytes(b"the previous epoch")

    def die(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", die)
    monkeypatch.setattr(files.os, "unlink", lambda path: None)  # dead: nothing cleans up after it
    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(tmp_path / "last.pt", b"the next epoch")
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == b"the previous epoch" and len(os.listdir(tmp_path)) == 2
    assert len(files.remove_stale_temps(tmp_path)) == 1 and os.listdir(tmp_path) == ["last.pt"]


def test_newer_format_and_unknown_model_and_wrong_shapes(tmp_path):
    _, ckpt = make_ckpt()
    for change, expected in (
        ({"format_version": checkpoint.FORMAT_VERSION + 1}, "newer"),
        ({"model": "nope"}, "unknown model"),
        ({"model": "report-cnn", "model_args": {}}, "do not fit"),
    ):
        path = tmp_path / "c.pt"
        torch.save({**ckpt.to_dict(), **change}, path)
        with pytest.raises(CheckpointError, match=expected):
            checkpoint.build_model(checkpoint.load(path), path)


@pytest.mark.parametrize("torch_default", ["safe", "unsafe"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch, torch_default):
    if torch_default == "unsafe":  # torch before 2.6, or a user who turned its default off: mnistcli still asks
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoint.load(path)
    assert not marker.exists()


def test_a_checkpoint_from_before_model_args_were_stored_rebuilds_its_own_network(tmp_path):
    """The first release's cnn (24-48-64 channels) saved no model_args; today's cnn is another size."""
    from mnistcli.models.networks import BatchNormCNN

    old = BatchNormCNN()
    torch.save(
        {"format_version": 1, "model": "cnn", "model_args": {}, "state_dict": old.state_dict()}, tmp_path / "o.pt"
    )
    rebuilt = checkpoint.build_model(checkpoint.load(tmp_path / "o.pt"))
    assert count_parameters(rebuilt) == count_parameters(old) == 63_090 != count_parameters(create_model("cnn"))


def test_an_export_keeps_everything_that_describes_the_model(tmp_path):
    from mnistcli.dataset_specs import DATASETS

    spec = DATASETS["fashion-mnist"]
    _, ckpt = make_ckpt()
    ckpt.dataset, ckpt.classes = spec.name, list(spec.classes)
    ckpt.normalization = {"mean": spec.mean, "std": spec.std}
    ckpt.epoch, ckpt.metrics, ckpt.created = 7, {"val_acc": 0.9}, "2026-01-02T03:04:05+00:00"
    checkpoint.write_inference_file(ckpt, tmp_path / "m.safetensors")
    loaded = checkpoint.load(tmp_path / "m.safetensors")
    for name in ("model", "model_args", "dataset", "classes", "normalization", "epoch", "metrics", "created"):
        assert getattr(loaded, name) == getattr(ckpt, name), name


def test_a_safetensors_file_with_only_a_model_name_gets_the_mnist_defaults(tmp_path):
    import json

    from safetensors.torch import save_file

    from mnistcli.dataset_specs import DIGITS, MNIST_SPEC

    model, _ = make_ckpt()
    meta = {"format_version": checkpoint.FORMAT_VERSION, "model": "cnn", "model_args": model_args("cnn")}
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"), metadata={"mnistcli": json.dumps(meta)})
    loaded = checkpoint.load(tmp_path / "m.safetensors")
    assert loaded.classes == list(DIGITS) and loaded.dataset == "mnist" and loaded.created == ""
    assert loaded.normalization == {"mean": MNIST_SPEC.mean, "std": MNIST_SPEC.std}
    assert checkpoint.build_model(loaded)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_an_export_that_cannot_be_written_gives_the_reason_in_words(tmp_path):
    _, ckpt = make_ckpt()
    with pytest.raises(CheckpointError) as err:
        checkpoint.write_inference_file(ckpt, tmp_path / "missing" / "m.safetensors")
    assert str(err.value) == f"cannot write {tmp_path / 'missing' / 'm.safetensors'}: No such file or directory"


def test_a_damaged_file_is_named_with_the_first_line_of_the_reason(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad json here!}")
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(tmp_path / "m.safetensors")
    reason = str(err.value).split("not a readable safetensors file (")[1]
    assert reason.strip(")") and "None" not in reason and "\n" not in reason
