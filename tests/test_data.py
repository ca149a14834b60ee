import gzip

import numpy as np
import pytest
import torch

from mnistcli import data
from mnistcli.errors import DataError

from helpers import REAL_MNIST, idx_bytes, needs_real_mnist, write_dataset


def test_reads_gzipped_torchvision_layout(fixture_data):
    ds = data.load_dataset("mnist", fixture_data, download_ok=False, val_size=100)
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape == (500, 28, 28)
    assert ds.val.images.shape == (100, 28, 28)
    assert ds.test.images.shape == (200, 28, 28) and ds.test.labels.dtype == torch.int64
    assert set(ds.test.labels.tolist()) == set(range(10))


def test_reads_raw_flat_layout_and_same_pixels(fixture_data, fixture_data_flat):
    flat = data.load_dataset("mnist", fixture_data_flat, download_ok=False, val_size=0)
    gz = data.load_dataset("mnist", fixture_data, download_ok=False, val_size=0)
    assert flat.val is None and len(flat.train) == 600
    assert torch.equal(flat.test.images, gz.test.images)


def test_validation_split_is_seeded_and_disjoint():
    tr1, va1 = data.validation_indices(1000, 100)
    _tr2, va2 = data.validation_indices(1000, 100)
    assert torch.equal(va1, va2) and len(va1) == 100 and len(tr1) == 900
    assert not set(tr1.tolist()) & set(va1.tolist())


def test_missing_data_without_download_names_the_files(tmp_path):
    with pytest.raises(DataError) as err:
        data.load_dataset("mnist", tmp_path, download_ok=False)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg and "--no-download" in msg


def test_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://..., got:\n<urlopen error>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError) as err:
        data.load_dataset("mnist", tmp_path / "new", download_ok=True)
    assert "download failed" in str(err.value) and "\n" not in str(err.value)


def test_download_asks_torchvision_for_both_splits_in_the_folder(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_mnist(root, train, download=False):
        calls.append((root, train, download))

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    data.download(tmp_path / "new")
    assert calls == [(str(tmp_path / "new"), True, True), (str(tmp_path / "new"), False, True)]


def test_a_download_failure_without_a_message_names_the_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise ConnectionError()

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError) as err:
        data.download(tmp_path / "new")
    assert str(err.value).endswith("(download failed: ConnectionError)")


def test_local_files_are_used_without_any_download(fixture_data, monkeypatch):
    monkeypatch.setattr(data, "download", lambda root: pytest.fail("tried to download"))
    assert len(data.load_dataset("mnist", fixture_data, download_ok=True, val_size=0).test) == 200


@pytest.mark.parametrize(
    "mangle, expected",
    [
        (lambda b: b[:-10], "truncated or corrupt"),
        (lambda b: b"\x08\x03" + b[2:], "bad magic"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b"", "bad magic"),
    ],
)
def test_corrupt_idx_is_named(tmp_path, mangle, expected):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(mangle(idx_bytes(np.zeros((3, 28, 28), np.uint8))))
    with pytest.raises(DataError) as err:
        data.read_idx(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_truncated_gzip_is_named(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))[:-30])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        data.read_idx(path)


def test_labels_that_do_not_match_images_are_refused(tmp_path):
    root = write_dataset(tmp_path, n_train=20, n_test=10, gz=False, layout="flat")
    (root / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DataError, match="7 labels for 10 images"):
        data.load_dataset("mnist", root, download_ok=False)


def test_normalize_matches_the_torchvision_transform():
    x = torch.tensor([[[0, 255], [128, 33]]], dtype=torch.uint8)
    expected = (x.float() / 255 - data.MEAN) / data.STD
    assert torch.allclose(data.normalize(x)[:, 0], expected, atol=1e-6)


def test_batches_cover_the_permutation_once():
    split = data.Split(
        "s", torch.arange(10, dtype=torch.uint8).view(10, 1, 1).expand(10, 28, 28).clone(), torch.arange(10)
    )
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    seen = torch.cat([y for _, y in data.iterate_batches(split, 4, order=order)])
    assert torch.equal(seen, order)
    assert [len(y) for _, y in data.iterate_batches(split, 4, order=order, start=1)] == [4, 2]


@needs_real_mnist
def test_real_mnist_loads_with_torchvision_checksum_mismatch():
    ds = data.load_dataset("mnist", REAL_MNIST, download_ok=False, val_size=5000)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)
    assert abs(ds.test.images.float().mean().item() / 255 - data.MEAN) < 0.01


def test_gzipped_files_are_decompressed_once_into_the_cache(fixture_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = fixture_data / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    first = data.read_idx(src)
    (cached,) = (tmp_path / "cache" / "mnistcli" / "idx").glob("t10k-images-idx3-ubyte.gz-*.npy")
    monkeypatch.setattr(data.gzip, "decompress", lambda raw: pytest.fail("decompressed again"))
    assert np.array_equal(data.read_idx(src), first)
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached.write_bytes(cached.read_bytes()[:100])  # a damaged cache entry is not trusted
    assert np.array_equal(data.read_idx(src), first)
    changed = tmp_path / "t10k-images-idx3-ubyte.gz"
    changed.write_bytes(gzip.compress(idx_bytes(np.full((2, 28, 28), 7, np.uint8))))
    assert data.read_idx(changed).tolist() == np.full((2, 28, 28), 7).tolist()  # other bytes: another entry


def test_an_unwritable_cache_only_costs_time(fixture_data, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    src = fixture_data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    assert data.read_idx(src).shape == (200,)


def test_a_cache_entry_is_written_beside_its_final_name(fixture_data, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))  # not the system's temp folder
    data.read_idx(fixture_data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz")
    folder = tmp_path / "cache" / "mnistcli" / "idx"
    assert [p.name.endswith(".npy") for p in folder.iterdir()] == [True]  # renamed in place, nothing left over


def test_splits_are_named_and_a_test_only_load_has_an_empty_train_split(fixture_data):
    both = data.load_dataset("mnist", fixture_data, download_ok=False, val_size=100)
    assert (both.train.name, both.val.name, both.test.name) == ("train", "val", "test")
    test_only = data.load_dataset("mnist", fixture_data, download_ok=False, splits=("test",))
    assert test_only.train.name == "train" and len(test_only.train) == 0 and test_only.val is None


def test_a_same_sized_file_with_other_bytes_is_not_served_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    first, second = (gzip.compress(idx_bytes(np.full(50, v, np.uint8)), mtime=0) for v in (3, 4))
    assert len(first) == len(second) and first != second  # the cache key's size cannot tell them apart
    path.write_bytes(first)
    assert data.read_idx(path).tolist() == [3] * 50
    path.write_bytes(second)
    assert data.read_idx(path).tolist() == [4] * 50
