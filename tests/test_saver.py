"""The run folder's file set: what each epoch writes, --keep, the history files and their errors."""

import csv
import json

import pytest

from mnistcli import checkpoint
from mnistcli.checkpoint import Checkpoint
from mnistcli.errors import CheckpointError
from mnistcli.history import HistoryRow
from mnistcli.models import create_model, model_args
from mnistcli.saver import CheckpointSaver


def _epoch(n: int, history: list) -> Checkpoint:
    history.append(HistoryRow.from_dict({"epoch": n, "train_loss": 1.0 / n, "val_acc": 0.9 + n / 100, "lr": 0.1}))
    model = create_model("fc")
    return Checkpoint(model="fc", state_dict=model.state_dict(), model_args=model_args("fc"), epoch=n, history=history)


def test_each_epoch_writes_its_file_best_when_best_then_last_and_the_history(tmp_path):
    saver, history = CheckpointSaver(tmp_path), []
    assert saver.save_epoch(_epoch(1, history), is_best=True) == [tmp_path / "epoch-001.pt", saver.best, saver.last]
    assert saver.save_epoch(_epoch(2, history), is_best=False) == [tmp_path / "epoch-002.pt", saver.last]
    assert checkpoint.load(saver.best).epoch == 1 and checkpoint.load(saver.last).epoch == 2
    text = (tmp_path / "history.json").read_text()
    rows = [row.to_dict() for row in history]
    assert json.loads(text) == rows and text == json.dumps(rows, indent=2)  # one field a line, for people
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["val_acc"] == "0.92" and rows[0]["test_acc"] == ""


def test_keep_n_leaves_only_the_last_n_epoch_files_and_best_and_last(tmp_path):
    saver, history = CheckpointSaver(tmp_path, keep=2), []
    for n in range(1, 6):
        saver.save_epoch(_epoch(n, history), is_best=n == 2)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["best.pt", "epoch-004.pt", "epoch-005.pt", "last.pt"]
    assert checkpoint.load(saver.best).epoch == 2
    everything, history = CheckpointSaver(tmp_path / "all"), []
    everything.prepare()
    for n in range(1, 4):
        everything.save_epoch(_epoch(n, history), is_best=False)
    assert len(list((tmp_path / "all").glob("epoch-*.pt"))) == 3  # without --keep, every epoch stays
    with pytest.raises(ValueError):
        CheckpointSaver(tmp_path, keep=0)


def test_history_that_cannot_be_written_gives_the_reason_in_words(tmp_path):
    saver = CheckpointSaver(tmp_path / "missing")
    with pytest.raises(CheckpointError) as err:
        saver.write_history([HistoryRow.from_dict({"epoch": 1})])
    assert str(err.value) == f"cannot write history in {tmp_path / 'missing'}: No such file or directory"


def test_a_checkpoint_that_cannot_be_written_gives_the_file_and_the_reason_in_words(tmp_path):
    saver = CheckpointSaver(tmp_path / "missing")  # never prepared: the folder does not exist
    with pytest.raises(CheckpointError) as err:
        saver.save_epoch(_epoch(1, []), is_best=True)
    assert (
        str(err.value) == f"cannot write checkpoint {tmp_path / 'missing' / 'epoch-001.pt'}: No such file or directory"
    )


def test_keep_one_is_allowed_and_less_is_refused_in_words(tmp_path):
    saver, history = CheckpointSaver(tmp_path, keep=1), []
    for n in (1, 2):
        saver.save_epoch(_epoch(n, history), is_best=False)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.pt")) == ["epoch-002.pt"]
    with pytest.raises(ValueError, match="keep must be at least 1"):
        CheckpointSaver(tmp_path, keep=0)


def test_prepare_makes_nested_folders_and_refuses_a_file_in_words(tmp_path):
    CheckpointSaver(tmp_path / "a" / "b" / "c").prepare()
    assert (tmp_path / "a" / "b" / "c").is_dir()
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointError) as err:
        CheckpointSaver(tmp_path / "file").prepare()
    assert str(err.value) == f"cannot write to output folder {tmp_path / 'file'}: File exists"


def test_the_next_run_clears_the_temp_files_a_crashed_save_left_and_nothing_else(fixture_data, tmp_path):
    from mnistcli import trainer
    from mnistcli.settings import RunSettings

    left = [tmp_path / ".last.pt.k3j2h1g0.tmp", tmp_path / ".history.json.0a9b8c7d.tmp"]
    mine = [tmp_path / "notes.txt", tmp_path / ".keep", tmp_path / "draft.tmp"]  # not the saver's temp files
    for path in left + mine:
        path.write_bytes(b"half a file")
    options = RunSettings(data_dir=fixture_data, download=False, out_dir=tmp_path, device="cpu")
    trainer.fit(options, given={"epochs": 1, "batch_size": 100, "val_size": 100, "model": "fc"})
    assert not any(p.exists() for p in left)
    assert all(p.read_bytes() == b"half a file" for p in mine)
    assert (tmp_path / "last.pt").is_file()
