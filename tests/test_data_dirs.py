"""Where the data is: one user cache for every folder, ./data still found, a checkpoint remembers its folder."""

import dataclasses
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnistcli import checkpoint, data
from mnistcli.dataset_specs import MNIST_SPEC

from helpers import one_error_line, run, write_dataset


def test_the_default_folder_is_the_users_cache_shared_by_every_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.default_data_dir() == tmp_path / "cache" / "mnistcli" / "data"
    downloads = []

    def fake_download(root, spec, looked=None):  # what torchvision would do, without the network
        downloads.append(root)
        write_dataset(root, n_train=30, n_test=10)

    monkeypatch.setattr(data, "download", fake_download)
    for folder in ("a", "b"):  # two working folders, one download
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        ds = data.load_dataset("mnist", val_size=0)
        assert ds.root == tmp_path / "cache" / "mnistcli" / "data" and len(ds.test) == 10
    assert downloads == [tmp_path / "cache" / "mnistcli" / "data"]


def test_an_existing_dot_data_folder_is_still_found(tmp_path, monkeypatch):
    write_dataset(tmp_path / "data", n_train=30, n_test=10)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "download", lambda *a, **k: pytest.fail("tried to download"))
    assert data.load_dataset("mnist", val_size=0).root == (tmp_path / "data").resolve()


def test_missing_data_says_everywhere_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(data.DataError) as err:
        data.load_dataset("mnist", download_ok=False, recorded_dir=tmp_path / "old-run-data")
    message = str(err.value)
    for place in (tmp_path / "old-run-data", Path("data"), tmp_path / "cache" / "mnistcli" / "data"):
        assert str(place) in message, message
    assert "--data-dir" in message and "MNISTCLI_DATA_DIR" in message and "\n" not in message


def test_a_named_folder_is_the_only_place_looked_in(fixture_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "data", n_train=30, n_test=10)  # would be found without --data-dir
    looked, target = data.search_dirs(MNIST_SPEC, tmp_path / "empty", recorded_dir=fixture_data)
    assert looked == [tmp_path / "empty"] and target == tmp_path / "empty"


def test_commands_with_a_checkpoint_find_the_data_it_was_trained_on(trained_run, fixture_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # another folder, no --data-dir, no ./data, an empty cache
    assert checkpoint.load(trained_run / "best.pt").data_dir == fixture_data.resolve()
    result = run("evaluate", trained_run / "best.pt", "--no-download")
    assert result.exit_code == 0, result.output
    assert str(fixture_data.resolve()) in result.stdout  # it says which folder it used
    result = run("show-samples", "-c", trained_run / "best.pt", "--no-download", "-o", tmp_path / "s.png")
    assert result.exit_code == 0 and str(fixture_data.resolve()) in result.stdout, result.output
    moved = tmp_path / "moved"
    shutil.copytree(fixture_data, moved)
    result = run("evaluate", trained_run / "best.pt", "--no-download", "--data-dir", moved, "--json")
    assert json.loads(result.stdout)["data_dir"] == str(moved.resolve())  # --data-dir still wins


def test_a_recorded_folder_that_no_longer_holds_the_data_is_passed_over(trained_run, tmp_path, monkeypatch):
    ckpt = checkpoint.load(trained_run / "best.pt")
    ckpt.config = dataclasses.replace(ckpt.config, data_dir=str(tmp_path / "gone"))
    checkpoint.write_checkpoint(checkpoint.training_bytes(ckpt), [tmp_path / "old.pt"])
    monkeypatch.chdir(tmp_path)
    line = one_error_line(run("evaluate", tmp_path / "old.pt", "--no-download"))
    assert str(tmp_path / "gone") in line and "not found" in line


@pytest.mark.slow
def test_ctrl_c_then_the_printed_resume_line_works_from_another_folder(fixture_data, tmp_path):
    """The story of a user: train with --data-dir into runs/a, Ctrl-C in epoch 2, run the line it printed."""
    folder = tmp_path / "work"
    folder.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [
        sys.executable,
        "-m",
        "mnistcli",
        "train",
        "--model",
        "fc",
        "--epochs",
        "3",
        "--data-dir",
        str(fixture_data),
        "--out-dir",
        "runs/a",
        "--batch-size",
        "4",
        "--val-size",
        "100",
    ]
    proc = subprocess.Popen(cmd, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (folder / "runs" / "a" / "epoch-001.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "stopped in epoch 2 after batch" in stderr
    line = next(x for x in stdout.splitlines() if x.startswith("Resume with: ")).removeprefix("Resume with: ")
    assert shlex.split(line)[:3] == ["mnistcli", "train", "--resume"], line
    resumed = subprocess.run(line, shell=True, cwd=folder, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    history = json.loads((folder / "runs" / "a" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert str(fixture_data.resolve()) in resumed.stdout  # found where the checkpoint said


def test_the_resume_hint_carries_the_run_options_that_were_not_defaults():
    from mnistcli.commands.train import resume_command
    from mnistcli.settings import RunSettings

    plain = resume_command(Path("runs/a b/last.pt"), RunSettings())
    assert plain == "mnistcli train --resume 'runs/a b/last.pt'"
    options = RunSettings(device="cpu", precision="fp32", log_every=50, keep=2, compile=True, download=False)
    assert shlex.split(resume_command(Path("r/last.pt"), options)) == [
        "mnistcli",
        "train",
        "--resume",
        "r/last.pt",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--log-every",
        "50",
        "--keep",
        "2",
        "--compile",
        "--no-download",
    ]


def test_evaluating_the_test_split_needs_only_the_test_files(fixture_data, tmp_path, monkeypatch):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(fixture_data / "MNIST" / "raw" / name, raw / name)
    monkeypatch.chdir(tmp_path)  # ./data, as a user who downloaded only the test files has it
    result = run("evaluate", "--no-download", "--json")  # the bundled model
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["images"] == 200 and doc["checkpoint"]["source"] == "bundled pretrained"
    line = one_error_line(run("evaluate", "--no-download", "--split", "val"))  # val is carved from train
    assert "train-images-idx3-ubyte.gz" in line


def test_the_missing_data_message_shows_the_relative_folder_as_dot_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DataError) as err:
        data.load_dataset("mnist", download_ok=False)
    assert f".{os.sep}data," in str(err.value) or f".{os.sep}data)" in str(err.value), str(err.value)


class _WrongBytes(io.BytesIO):
    """What urlopen gives for a mirror that serves some other file than the published one."""

    length = 12

    def __init__(self, url: str) -> None:
        super().__init__(b"not the file")
        self.url = url


@pytest.mark.parametrize(
    "failure, reason",
    [
        ("network", "no network"),
        ("http", "HTTP 404: Not Found"),
        ("checksum", "checksum mismatch"),
    ],
)
def test_a_failed_download_says_why(tmp_path, monkeypatch, failure, reason):
    import urllib.error
    import urllib.request

    def fetch(request, *args, **kwargs):
        if failure == "http":
            raise urllib.error.HTTPError(getattr(request, "full_url", request), 404, "Not Found", {}, None)
        if failure == "network":
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return _WrongBytes(getattr(request, "full_url", request))

    monkeypatch.setattr(urllib.request, "urlopen", fetch)
    monkeypatch.chdir(tmp_path)
    result = run("evaluate", "--data-dir", tmp_path / "d")
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.stderr.strip().splitlines()[-1]  # after the download's own progress lines, if any
    assert line.startswith("error: MNIST not found") and f"(download failed: {reason}" in line, line
    assert "tried 2 mirrors" in line


def test_download_progress_never_reaches_stdout(tmp_path, monkeypatch):
    import torchvision.datasets

    class Chatty:  # as torchvision's datasets before 0.20 did: a line per file on stdout
        def __init__(self, root, train, download):
            print("Downloading https://example.org/train-images-idx3-ubyte.gz")
            write_dataset(Path(root), n_train=30, n_test=10)

    monkeypatch.setattr(torchvision.datasets, "MNIST", Chatty)
    monkeypatch.chdir(tmp_path)
    result = run("evaluate", "--data-dir", tmp_path / "d", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 10 and "Downloading" in result.stderr
