"""Fixtures: a small real IDX dataset written into a temp folder, a small trained run, a clean environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

from helpers import NEUTRAL, ROOT, UNDER_MUTATION, write_dataset

# Property tests draw the same examples every run, so CI cannot go red by chance;
# MNISTCLI_HYPOTHESIS=random draws new ones (to look for counterexamples).
settings.register_profile("derandomized", derandomize=True)
settings.register_profile("random", derandomize=False)
settings.load_profile(os.environ.get("MNISTCLI_HYPOTHESIS", "derandomized"))

# Child processes (which run in an empty folder, helpers.NEUTRAL) import this checkout's code.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

# tools/mutation.sh runs the suite once per mutant; there the session fixtures are built once,
# by the unmutated code, and shared through this folder.
SHARED = os.environ.get("MNISTCLI_TEST_FIXTURE_CACHE")


def _built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    if not SHARED:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    folder = Path(SHARED) / name
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        build(folder)
        (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory) -> Path:
    """A small MNIST-format dataset, gzipped, in torchvision's MNIST/raw layout."""
    return _built_once(tmp_path_factory, "mnist", write_dataset)


@pytest.fixture(scope="session")
def fixture_data_flat(tmp_path_factory) -> Path:
    """The same kind of dataset, uncompressed, flat in one folder."""
    return write_dataset(tmp_path_factory.mktemp("mnist_flat"), gz=False, layout="flat")


@pytest.fixture(scope="session", autouse=True)
def _neutral_folder():
    """Session and module fixtures, too, run in an empty folder (tests then each get their own)."""
    before = os.getcwd()
    os.chdir(NEUTRAL)
    yield
    os.chdir(before)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    # Tests say where the data is: a developer's MNISTCLI_DATA_DIR or cache must not leak in,
    # and nothing is ever downloaded into the real user cache.
    monkeypatch.delenv("MNISTCLI_DATA_DIR", raising=False)
    monkeypatch.delenv("MNISTCLI_DEBUG", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
    # Every test starts in an empty folder of its own: what is in the folder pytest runs from (a
    # quick start's ./checkpoints/best.pt, a ./data) must not change what it sees.
    if not UNDER_MUTATION:
        monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="module")
def served():
    """`mnistcli serve` with the bundled model in a child process; its URL."""
    from helpers import start_server

    proc, url = start_server()
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def trained_run(fixture_data, tmp_path_factory) -> Path:
    """A small checkpoint trained for a few epochs on the fixture dataset; returns its run folder."""
    from mnistcli import trainer
    from mnistcli.settings import RunSettings

    def train(out: Path) -> None:
        options = RunSettings(data_dir=fixture_data, download=False, out_dir=out, device="cpu")
        trainer.fit(options, given={"epochs": 4, "batch_size": 32, "lr": 0.05, "val_size": 100})

    return _built_once(tmp_path_factory, "run", train)
