"""Tests for genlab.data.registry: loaders, readers, the restricted unpickler and subsetting."""

from __future__ import annotations

import gzip
import os
import pickle
import random
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genlab.data import locations
from genlab.data import registry as datasets
from genlab.data.registry import Dataset, load_dataset, stratified_indices, subset
from genlab.data.sources import cifar, idx, packaged
from genlab.data.sources.idx import read_idx
from genlab.errors import GenlabError

_REAL_DEBIAN_DIRS = locations.debian_fashion_mnist_dirs


pytestmark = pytest.mark.usefixtures("isolated_data")


# --------------------------------------------------------------------------------------------
# helpers that write tiny files in the real on-disk formats

_IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
              np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    dtype = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    header = bytes([0, 0, _IDX_CODES[dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dtype).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_idx_set(folder: Path, gz: bool, n_train: int = 12, n_test: int = 6, splits=("train",
                 "t10k"), seed: int = 0) -> dict[str, np.ndarray]:
    """Write IDX images (N, 4, 5) and labels; returns the arrays written, keyed like the files."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 4, 5), dtype=np.uint8)
        images[0, 0, 0], images[0, 3, 4] = 255, 0  # known corners
        labels = (np.arange(n) % 10).astype(np.uint8)
        out[split] = images, labels
        if split in splits:
            write_idx(folder / f"{split}-images-idx3-ubyte", images, gz)
            write_idx(folder / f"{split}-labels-idx1-ubyte", labels, gz)
    return out


def cifar_batch(n: int, num_classes: int, seed: int, label_key: str = "labels") -> dict:
    rng = np.random.default_rng(seed)
    return {"batch_label": f"batch {seed}", label_key: [int(v) for v in rng.integers(0, num_classes,
            n)], "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "filenames": [f"img{i}.png" for i in range(n)]}


def write_pickle(path: Path, obj: object, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def write_cifar10_py(folder: Path) -> list[dict]:
    """Five training batches of 3 images and a test batch of 4, in varied pickle dialects."""
    batches = [cifar_batch(3, 10, seed) for seed in range(5)] + [cifar_batch(4, 10, 9)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, (name, batch) in enumerate(zip(names, batches, strict=True)):
        obj = batch if i != 1 else {k.encode(): v for k, v in batch.items()}  # bytes keys
        write_pickle(folder / name, obj, protocol=(2, 4, 5)[i % 3])
    write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]}, 2)
    return batches


def _py2_str(b: bytes) -> bytes:
    """A Python 2 ``str`` opcode (read back as text under encoding='latin1')."""
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def py2_pickle(data: np.ndarray, labels: list[int], names: list[str]) -> bytes:
    """A protocol-2 pickle of a CIFAR batch laid out as Python 2 + numpy 1.x wrote the real files.

    The keys and the array bytes are Python 2 ``str`` objects, and the array is rebuilt through
    ``numpy.core.multiarray._reconstruct`` -- what genlab must accept in the downloaded files.
    """
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"u1") + b"\x89\x88\x87R(K\x03" + _py2_str(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in data.shape) + b"t"
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _py2_str(b"b")
             + b"\x87R(K\x01" + shape + dtype + b"\x89" + _py2_str(data.tobytes()) + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    name_list = b"](" + b"".join(_py2_str(n.encode()) for n in names) + b"e"
    return (b"\x80\x02}(" + _py2_str(b"data") + array + _py2_str(b"labels") + label_list
            + _py2_str(b"label_names") + name_list + b"u.")


def cifar_expected(batches: list[dict], label_key: str = "labels"):
    data = np.concatenate([b["data"] for b in batches])
    labels = np.concatenate([np.asarray(b[label_key]) for b in batches])
    return data, labels


def check_cifar_pixels(x: torch.Tensor, data: np.ndarray) -> None:
    """x[i, c, h, w] must be data[i, c * 1024 + h * 32 + w] / 255 (CIFAR's channel-major rows)."""
    assert x.shape == (len(data), 3, 32, 32) and x.dtype == torch.float32
    for i, c, h, w in [(0, 0, 0, 0), (0, 2, 31, 31), (len(data) - 1, 1, 5, 17), (1, 2, 0, 3)]:
        want = np.float32(data[i, c * 1024 + h * 32 + w]) / np.float32(255)
        assert x[i, c, h, w].item() == pytest.approx(float(want), abs=1e-7)
    np.testing.assert_allclose(x.reshape(len(data), -1).numpy() * 255, data, atol=1e-4)


class _Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvilEval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')",)


# --------------------------------------------------------------------------------------------
# registry and subsetting (on digits, which ships with scikit-learn)


def test_registry_lists_every_data_set():
    names = datasets.list_datasets()
    for name in ("digits", "mnist1d", "fashion-mnist", "mnist", "cifar10", "cifar100", "svhn",
                 "gaussian"):
        assert name in names and names[name]


def test_unknown_name_lists_known_names():
    with pytest.raises(GenlabError, match=r"unknown data set 'imagenet'.*digits.*fashion-mnist"):
        load_dataset("imagenet")


def test_names_are_case_and_underscore_insensitive():
    assert load_dataset("Digits", train_size=10, test_size=10).name == "digits"


def test_register_custom_loader(monkeypatch: pytest.MonkeyPatch):
    calls = []

    def loader(data_dir, download):
        calls.append((data_dir, download))
        x = torch.zeros(4, 1, 2, 2)
        return datasets.build_dataset("tiny", x, torch.tensor([0, 1, 0, 1]), x,
                                      torch.tensor([0, 1, 0, 1]), ["a", "b"], "test")

    datasets.register_dataset("tiny", loader, "tiny one")
    load_dataset("tiny", data_dir="/nowhere", download=True)
    load_dataset("tiny", data_dir="/nowhere", train_size=2)
    assert calls == [(Path("/nowhere"), True)]  # second load came from the cache
    assert datasets.list_datasets()["tiny"] == "tiny one"


def test_digits_shapes_values_and_split():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape == (1497, 1, 8, 8) and ds.x_test.shape == (300, 1, 8, 8)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.y_test.dtype == torch.int64
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert ds.classes == [str(i) for i in range(10)]
    assert 0.0 == ds.x_train.min().item() and ds.x_train.max().item() == 1.0
    # the fixed test split is stratified: about 300 / 10 of each digit
    assert all(abs(int(c) - 30) <= 1 for c in torch.bincount(ds.y_test, minlength=10))
    # together the splits are exactly scikit-learn's images / 16, in the original order
    ref = load_digits()
    allx = torch.cat([ds.x_train, ds.x_test]).reshape(1797, 64).numpy()
    order = np.lexsort(allx.T[::-1])
    ref_x = (ref.images.reshape(1797, 64) / 16).astype(np.float32)
    np.testing.assert_array_equal(allx[order], ref_x[np.lexsort(ref_x.T[::-1])])
    # train keeps scikit-learn's order: the complement of the fixed test choice
    test_idx = stratified_indices(torch.from_numpy(ref.target), 300, np.random.default_rng(0))
    keep = np.setdiff1d(np.arange(1797), test_idx.numpy())
    np.testing.assert_array_equal(ds.x_train[:, 0].numpy() * 16, ref.images[keep])
    np.testing.assert_array_equal(ds.y_test.numpy(), ref.target[test_idx.numpy()])
    mean, std = ds.x_train.mean().item(), ds.x_train.std(correction=0).item()
    assert ds.mean == pytest.approx((mean,), rel=1e-5) and ds.std == pytest.approx((std,), rel=1e-5)
    # the split does not depend on the user's seed
    assert torch.equal(load_dataset("digits", seed=7).y_test, ds.y_test)


def test_subset_is_stratified_exact_and_seeded():
    full = load_dataset("digits")
    a = load_dataset("digits", train_size=101, test_size=37, seed=1)
    assert len(a.y_train) == 101 and len(a.y_test) == 37
    assert a.x_train.shape == (101, 1, 8, 8)
    for part, whole in ((a.y_train, full.y_train), (a.y_test, full.y_test)):
        want = torch.bincount(whole, minlength=10).double() * len(part) / len(whole)
        got = torch.bincount(part, minlength=10).double()
        assert torch.all((got - want).abs() < 1)
    b = load_dataset("digits", train_size=101, test_size=37, seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = load_dataset("digits", train_size=101, test_size=37, seed=2)
    assert not torch.equal(a.x_train, c.x_train) and not torch.equal(a.x_test, c.x_test)
    # the train subset does not depend on the test size
    assert torch.equal(load_dataset("digits", train_size=101, test_size=5, seed=1).x_train,
                       a.x_train)
    # every chosen image is a real training image with its own label
    flat = full.x_train.reshape(len(full.x_train), -1)
    for img, label in zip(a.x_train[:20], a.y_train[:20], strict=True):
        hits = (flat == img.reshape(1, -1)).all(dim=1).nonzero().flatten()
        assert len(hits) >= 1 and bool((full.y_train[hits] == label).any())
    # statistics describe the subset, not the full set
    assert a.mean[0] == pytest.approx(a.x_train.mean().item(), rel=1e-5)
    assert a.std[0] == pytest.approx(a.x_train.std(correction=0).item(), rel=1e-5)


def test_full_split_statistics_wait_until_read(monkeypatch: pytest.MonkeyPatch):
    calls: list[int] = []
    real = datasets.channel_stats
    monkeypatch.setattr(datasets, "channel_stats", lambda x: calls.append(len(x)) or real(x))
    x = torch.rand(50, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    y = torch.arange(50) % 2
    full = datasets.build_dataset("t", x, y, x[:5], y[:5], ["a", "b"], "test")
    assert calls == []  # building the full split computes nothing
    # by hand: population mean and std per channel, in float64
    flat = x.double().permute(1, 0, 2, 3).reshape(3, -1)
    want_mean, want_std = flat.mean(1), ((flat - flat.mean(1, keepdim=True)) ** 2).mean(1).sqrt()
    assert full.std == pytest.approx(tuple(want_std.tolist()), rel=1e-5)
    assert full.mean == pytest.approx(tuple(want_mean.tolist()), rel=1e-5)
    assert calls == [50]  # once, for both
    # a copy with new images keeps the statistics it was made from, as a stored field would
    assert full.replace(x_train=x * 2).mean == full.mean
    # given statistics are kept, and a pickled copy computes its own when read
    given = full.replace(mean=(1, 2, 3), std=[4, 5, 6])
    assert (given.mean, given.std) == ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    lazy = pickle.loads(pickle.dumps(datasets.build_dataset("t", x, y, x, y, ["a", "b"], "t")))
    assert lazy.mean == full.mean and calls == [50, 50]
    # the subsets every run trains on compute theirs from the subset
    part = subset(full, train_size=10)
    assert part.mean == real(part.x_train)[0] != full.mean


@pytest.mark.parametrize("counts", [(70, 20, 10), (1, 1, 50), (5, 5, 5, 5, 5, 5, 5)])
def test_stratified_indices_largest_remainder(counts):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    for size in range(1, len(labels) + 1):
        idx = stratified_indices(labels, size, np.random.default_rng(size))
        assert len(idx) == size and len(torch.unique(idx)) == size
        assert torch.all(idx[1:] > idx[:-1])
        got = torch.bincount(labels[idx], minlength=len(counts)).double()
        want = torch.tensor(counts, dtype=torch.float64) * size / len(labels)
        assert torch.all((got - want).abs() < 1)


def test_subset_size_errors():
    with pytest.raises(GenlabError, match=r"train_size 1498 .* digits training split \(1497"):
        load_dataset("digits", train_size=1498)
    with pytest.raises(GenlabError, match=r"test_size 301 .*\(300 images\)"):
        load_dataset("digits", test_size=301)
    with pytest.raises(GenlabError, match="train_size must be a non-negative integer"):
        load_dataset("digits", train_size=-1)
    with pytest.raises(GenlabError, match="seed"):
        load_dataset("digits", seed=-3)
    full = load_dataset("digits", train_size=1497, test_size=300)
    assert len(full.y_train) == 1497 and len(full.y_test) == 300


def test_callers_cannot_corrupt_the_cache():
    first = load_dataset("digits")
    first.x_train.add_(5.0)
    first.y_test.zero_()
    again = load_dataset("digits")
    assert again.x_train.max().item() == 1.0 and again.y_test.max().item() == 9
    part = subset(again, train_size=10, seed=0)
    part.x_train.zero_()
    assert again.x_train.max().item() == 1.0


# --------------------------------------------------------------------------------------------
# IDX reader, Fashion-MNIST and MNIST


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_round_trip(tmp_path: Path, gz: bool, dtype: str):
    arr = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype) if dtype != "u1" else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "a-idx3-ubyte", arr, gz)
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_tiny_files(tmp_path: Path, layout: str, gz: bool):
    root = tmp_path / "data"
    folder = root if layout == "flat" else root / "FashionMNIST" / "raw"
    written = make_idx_set(folder, gz)
    ds = load_dataset("fashion-mnist", data_dir=root)
    assert ds.x_train.shape == (12, 1, 4, 5) and ds.x_test.shape == (6, 1, 4, 5)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    for split, x, y in (("train", ds.x_train, ds.y_train), ("t10k", ds.x_test, ds.y_test)):
        images, labels = written[split]
        np.testing.assert_array_equal(x[:, 0].numpy(), images.astype(np.float32) / 255)
        np.testing.assert_array_equal(y.numpy(), labels)
    assert ds.x_train[0, 0, 0, 0].item() == 1.0 and ds.x_train[0, 0, 3, 4].item() == 0.0
    assert ds.num_classes == 10 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert str(folder) in ds.source
    assert ds.mean[0] == pytest.approx(written["train"][0].mean() / 255, rel=1e-5)


def test_fashion_mnist_from_genlab_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    make_idx_set(tmp_path / "env" / "FashionMNIST" / "raw", gz=True)
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "env"))
    ds = load_dataset("fashion-mnist", train_size=10, test_size=5, seed=3)
    assert len(ds.y_train) == 10 and len(ds.y_test) == 5
    assert str(tmp_path / "env") in ds.source


def test_data_dir_is_searched_before_genlab_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    make_idx_set(tmp_path / "env", gz=False, n_train=8)
    make_idx_set(tmp_path / "arg", gz=False, n_train=14)
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "env"))
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path / "arg").y_train) == 14
    assert len(load_dataset("fashion-mnist").y_train) == 8


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_file_is_reported(tmp_path: Path, gz: bool):
    make_idx_set(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    data = path.read_bytes()[:-7]
    if gz:
        path.unlink()
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    with pytest.raises(GenlabError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert str(path) in msg and "expected 240 bytes of data, found 233" in msg
    assert "download again" in msg and "\n" not in msg


def test_truncated_gzip_stream_is_reported(tmp_path: Path):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((3, 4, 4), np.uint8), gz=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(GenlabError, match=f"corrupt gzip file {path}"):
        read_idx(path)


def test_wrong_magic_number_is_reported(tmp_path: Path):
    make_idx_set(tmp_path, gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(b"\x00\x01" + path.read_bytes()[2:])
    with pytest.raises(GenlabError, match=f"{path} is not an IDX file"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    path.write_bytes(b"\x00\x00\x07\x01" + path.read_bytes()[4:])  # unknown dtype code
    with pytest.raises(GenlabError, match="not an IDX file"):
        read_idx(path)


def test_image_and_label_counts_must_match(tmp_path: Path):
    make_idx_set(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11, np.uint8), gz=False)
    with pytest.raises(GenlabError, match="train-labels-idx1-ubyte.*12 images"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_missing_fashion_mnist_names_every_folder(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GenlabError) as err:
        load_dataset("fashion-mnist", data_dir=empty)
    msg = str(err.value)
    assert "\n" not in msg and "Fashion-MNIST not found" in msg
    for folder in (empty, empty / "FashionMNIST" / "raw", tmp_path / "xdg-cache" / "genlab"):
        assert str(folder) in msg
    assert "--data-dir" in msg and "GENLAB_DATA" in msg and "--download" in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_debian_folder_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    make_idx_set(tmp_path / "deb", gz=True)
    monkeypatch.setattr(idx, "debian_fashion_mnist_dirs", lambda: (tmp_path / "deb",))
    assert str(tmp_path / "deb") in load_dataset("fashion-mnist").source
    with pytest.raises(GenlabError, match="MNIST not found"):  # only Fashion-MNIST looks there
        load_dataset("mnist")


def test_download_uses_torchvision_then_own_reader(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    calls = []

    class FakeFashionMNIST:
        def __init__(self, root: str, download: bool = False) -> None:
            calls.append((root, download))
            make_idx_set(Path(root) / "FashionMNIST" / "raw", gz=True, n_train=20)

    monkeypatch.setattr(locations, "_torchvision_datasets",
                        lambda: SimpleNamespace(FashionMNIST=FakeFashionMNIST))
    with pytest.raises(GenlabError, match="not found"):
        load_dataset("fashion-mnist", data_dir=tmp_path / "dl")
    assert calls == []  # nothing is fetched without download=True
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "dl", download=True)
    assert calls == [(str(tmp_path / "dl"), True)] and len(ds.y_train) == 20


def test_download_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    class Offline:
        def __init__(self, root: str, download: bool = False) -> None:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors")

    monkeypatch.setattr(locations, "_torchvision_datasets", lambda: SimpleNamespace(MNIST=Offline))
    with pytest.raises(GenlabError) as err:
        load_dataset("mnist", download=True)
    msg = str(err.value)
    cache = tmp_path / "xdg-cache" / "genlab"
    assert "\n" not in msg and "download failed" in msg and "Tried mirrors" in msg
    assert "retry --download with network access" in msg
    assert str(cache) in msg and str(cache / "MNIST" / "raw") in msg


def test_real_fashion_mnist_from_debian_package(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(idx, "debian_fashion_mnist_dirs", _REAL_DEBIAN_DIRS)
    dirs = [d for d in _REAL_DEBIAN_DIRS() if (d / "train-images-idx3-ubyte.gz").is_file()]
    if not dirs:
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.num_classes == 10 and len(ds.classes) == 10
    assert torch.equal(torch.bincount(ds.y_train), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(ds.y_test), torch.full((10,), 1000))
    assert 0.0 <= ds.x_train.min().item() and ds.x_train.max().item() == 1.0
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-3)
    assert ds.std[0] == pytest.approx(0.3530, abs=1e-3)


def test_mnist_torchvision_layout(tmp_path: Path):
    written = make_idx_set(tmp_path / "MNIST" / "raw", gz=True)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.classes == [str(i) for i in range(10)] and ds.x_train.shape == (12, 1, 4, 5)
    np.testing.assert_array_equal(ds.x_test[:, 0].numpy() * 255, written["t10k"][0])


def test_mnist_test_split_only_is_an_error(tmp_path: Path):
    make_idx_set(tmp_path, gz=True, splits=("t10k",))
    with pytest.raises(GenlabError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "MNIST training split is missing" in msg and str(tmp_path) in msg
    assert "train-images-idx3-ubyte" in msg and "\n" not in msg


# --------------------------------------------------------------------------------------------
# CIFAR


def test_cifar10_python_batches(tmp_path: Path):
    batches = write_cifar10_py(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", data_dir=tmp_path)
    train, test = batches[:5], batches[5:]
    check_cifar_pixels(ds.x_train, cifar_expected(train)[0])
    check_cifar_pixels(ds.x_test, cifar_expected(test)[0])
    np.testing.assert_array_equal(ds.y_train.numpy(), cifar_expected(train)[1])
    np.testing.assert_array_equal(ds.y_test.numpy(), cifar_expected(test)[1])
    assert ds.classes == [f"c{i}" for i in range(10)] and ds.num_classes == 10
    assert ds.input_shape == (3, 32, 32) and len(ds.mean) == 3 and len(ds.std) == 3
    red = cifar_expected(train)[0][:, :1024] / 255
    assert ds.mean[0] == pytest.approx(red.mean(), rel=1e-5)
    assert ds.std[0] == pytest.approx(red.std(), rel=1e-5)


def test_cifar10_python2_pickles_like_the_real_files(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(12, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, 12)]
    names = [f"n{i}" for i in range(10)]
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(files):
        (folder / name).write_bytes(py2_pickle(data[2 * i:2 * i + 2], labels[2 * i:2 * i + 2], []))
    (folder / "batches.meta").write_bytes(py2_pickle(data[:0], [], names))
    assert pickle.loads((folder / "test_batch").read_bytes(), encoding="latin1")["labels"] == \
        labels[10:]
    ds = load_dataset("cifar10", data_dir=tmp_path)
    check_cifar_pixels(ds.x_train, data[:10])
    check_cifar_pixels(ds.x_test, data[10:])
    assert ds.y_train.tolist() == labels[:10] and ds.classes == names


def test_cifar10_without_meta_uses_standard_names(tmp_path: Path):
    write_cifar10_py(tmp_path)  # flat: the batches folder itself
    (tmp_path / "batches.meta").unlink()
    assert load_dataset("cifar10", data_dir=tmp_path).classes[0] == "airplane"


@pytest.mark.parametrize("evil", [_Evil, _EvilEval])
def test_malicious_cifar_pickle_is_refused(tmp_path: Path, evil):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_py(folder)
    batch = cifar_batch(3, 10, 0)
    batch["labels"] = evil(marker)
    payload = pickle.dumps(batch)
    assert b"system" in payload or b"eval" in payload
    (folder / "data_batch_3").write_bytes(payload)
    with pytest.raises(GenlabError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"refusing to load {folder / 'data_batch_3'}")
    assert ("system" in msg or "builtins.eval" in msg) and "not CIFAR data" in msg
    assert not marker.exists()


def test_pickled_object_array_is_refused(tmp_path: Path):
    batch = cifar_batch(3, 10, 0)
    batch["labels"] = np.array([1, 2, 3], dtype=object)
    write_pickle(tmp_path / "x", batch)
    with pytest.raises(GenlabError, match="refusing to load .*Python objects"):
        cifar.load_cifar_pickle(tmp_path / "x")


def test_corrupt_cifar_files(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10_py(folder)
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(GenlabError, match=f"corrupt CIFAR file {path}"):
        load_dataset("cifar10", data_dir=tmp_path)
    bad = cifar_batch(4, 10, 1)
    bad["labels"] = [0, 1, 2, 10]
    write_pickle(path, bad)
    with pytest.raises(GenlabError, match=r"labels outside 0\.\.9"):
        load_dataset("cifar10", data_dir=tmp_path)
    bad["data"] = np.zeros((4, 1000), np.uint8)
    write_pickle(path, bad)
    with pytest.raises(GenlabError, match=r"\(N, 3072\)"):
        load_dataset("cifar10", data_dir=tmp_path)
    write_pickle(path, [1, 2, 3])
    with pytest.raises(GenlabError, match="expected a dict"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar10_binary_batches(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(5)
    records = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rec = rng.integers(0, 256, size=(2, 3073), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, 2)
        (folder / f"{name}.bin").write_bytes(rec.tobytes())
        records[name] = rec
    ds = load_dataset("cifar10", data_dir=tmp_path)
    train = np.concatenate([records[f"data_batch_{i}"] for i in range(1, 6)])
    check_cifar_pixels(ds.x_train, train[:, 1:])
    check_cifar_pixels(ds.x_test, records["test_batch"][:, 1:])
    np.testing.assert_array_equal(ds.y_train.numpy(), train[:, 0])
    assert ds.classes[9] == "truck" and "binary" in ds.source
    (folder / "test_batch.bin").write_bytes(records["test_batch"].tobytes()[:-1])
    with pytest.raises(GenlabError, match="3073-byte records"):
        load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-bin")


def test_cifar100_python_files(tmp_path: Path):
    folder = tmp_path / "cifar-100-python"
    train = cifar_batch(6, 100, 1, "fine_labels")
    train["fine_labels"][0] = 99
    train["coarse_labels"] = [0] * 6
    test = cifar_batch(3, 100, 2, "fine_labels")
    write_pickle(folder / "train", train, 2)
    write_pickle(folder / "test", test, 2)
    write_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                   "coarse_label_names": [f"s{i}" for i in range(20)]}, 2)
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.num_classes == 100 and ds.classes[99] == "f99"
    check_cifar_pixels(ds.x_train, train["data"])
    np.testing.assert_array_equal(ds.y_train.numpy(), train["fine_labels"])
    np.testing.assert_array_equal(ds.y_test.numpy(), test["fine_labels"])


def test_missing_cifar_names_folders(tmp_path: Path):
    with pytest.raises(GenlabError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "--download" in msg
    assert str(tmp_path / "cifar-10-batches-bin") in msg and "\n" not in msg


# --------------------------------------------------------------------------------------------
# SVHN


def write_svhn(folder: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, 10 = digit 0
    folder.mkdir(parents=True, exist_ok=True)
    savemat(str(folder / f"{'train' if seed == 0 else 'test'}_32x32.mat"), {"X": x, "y": y})
    return x, y


@pytest.mark.parametrize("sub", ["", "svhn"])
def test_svhn_mat_files(tmp_path: Path, sub: str):
    folder = tmp_path / sub if sub else tmp_path
    x, y = write_svhn(folder, 12, 0)
    write_svhn(folder, 4, 1)
    ds = load_dataset("svhn", data_dir=tmp_path)
    assert ds.x_train.shape == (12, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.y_train.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    for i, c, h, w in [(0, 0, 0, 0), (3, 2, 31, 0), (11, 1, 7, 30)]:
        assert ds.x_train[i, c, h, w].item() == pytest.approx(x[h, w, c, i] / 255, abs=1e-7)
    assert ds.classes == [str(i) for i in range(10)]


def test_corrupt_svhn_file(tmp_path: Path):
    write_svhn(tmp_path, 4, 0)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 garbage" * 3)
    with pytest.raises(GenlabError, match=f"SVHN file {tmp_path / 'test_32x32.mat'}"):
        load_dataset("svhn", data_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# offline synthetic sets


def test_gaussian():
    ds = load_dataset("gaussian")
    assert ds.x_train.shape == (5000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.num_classes == 10
    assert 0 <= ds.y_train.min() and ds.y_train.max() <= 9
    assert abs(ds.mean[0]) < 0.01 and ds.std[0] == pytest.approx(1.0, abs=0.01)
    datasets.clear_cache()
    assert torch.equal(load_dataset("gaussian").x_test, ds.x_test)  # fixed generator


def test_mnist1d_is_generated_offline_without_touching_global_rng(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)  # the package's get_dataset would write a pickle here
    # The defaults give 4000 / 1000; generate a fifth of that to keep the test fast.
    assert (packaged.MNIST1D_NUM_SAMPLES, packaged.MNIST1D_TRAIN_SPLIT) == (5000, 0.8)
    monkeypatch.setattr(packaged, "MNIST1D_NUM_SAMPLES", 1000)
    np.random.seed(123)
    random.seed(123)
    ds = load_dataset("mnist1d")
    assert np.random.randint(1 << 30) == np.random.RandomState(123).randint(1 << 30)
    assert random.random() == random.Random(123).random()
    assert ds.x_train.shape == (800, 1, 1, 40) and ds.x_test.shape == (200, 1, 1, 40)
    assert ds.x_train.dtype == torch.float32 and ds.num_classes == 10
    assert set(ds.y_train.unique().tolist()) == set(range(10))
    assert list(tmp_path.iterdir()) == []


def test_name_families_register_on_first_use():
    """Names outside the import-time registrations (hyperspheres-d7, imagefolder-40-stream)
    resolve on first use, as in a spawned worker process that never saw them registered."""
    for name in ("hyperspheres-d7", "imagefolder-40-stream"):
        datasets.DATASETS.remove(name)
        assert name not in datasets.list_datasets()
    data = datasets.load_dataset("hyperspheres-d7", train_size=8, test_size=4)
    assert data.input_shape[-1] == 7 and data.num_classes == 2
    assert datasets.may_stream("imagefolder-40-stream")
    with pytest.raises(GenlabError, match="dimension d must be an integer >= 2"):
        datasets.load_dataset("hyperspheres-d1")
    with pytest.raises(GenlabError, match="unknown data set 'imagefolder-x'"):
        datasets.load_dataset("imagefolder-x")


# --------------------------------------------------------------------------------------------
# gzipped IDX files in one zlib pass, and read ahead of the load on a background thread


def _no_streaming(*_a, **_k):
    raise AssertionError("the streaming reader was used")


@pytest.mark.parametrize("dtype", ["u1", ">i4", ">f8"])
def test_gzipped_idx_is_read_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         dtype: str):
    arr = (np.arange(2 * 3 * 5) % 251).astype(dtype).reshape(2, 3, 5)
    path = write_idx(tmp_path / "x-idx3-ubyte", arr, gz=True)
    monkeypatch.setattr(idx, "_read_idx_stream", _no_streaming)
    out = read_idx(path)
    assert out.dtype.isnative and out.flags.writeable and out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, arr)


def test_gzip_of_several_members_is_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(arr)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw[:20]) + gzip.compress(raw[20:]))  # a valid gzip file
    streamed = []
    real = idx._read_idx_stream
    monkeypatch.setattr(idx, "_read_idx_stream",
                        lambda *a: streamed.append(1) or real(*a))
    np.testing.assert_array_equal(read_idx(path), arr)
    assert streamed == [1]


def test_gzip_with_a_member_after_the_data_is_refused_as_before(tmp_path: Path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(arr)) + gzip.compress(b"\x07"))
    with pytest.raises(GenlabError, match="holds more"):
        read_idx(path)


def _finish_reads() -> None:
    for future, _ in list(idx._AHEAD.values()):
        future.exception(timeout=30)


def _count_main_thread_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = idx.read_idx
    monkeypatch.setattr(idx, "read_idx", lambda p: calls.append(Path(p)) or real(p))
    return calls


def test_read_ahead_hands_the_load_what_it_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    written = make_idx_set(tmp_path, gz=True)
    datasets.read_ahead("mnist", tmp_path)
    assert sorted(p.name for p in idx._AHEAD) == sorted(
        f"{b}.gz" for b in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    _finish_reads()
    calls = _count_main_thread_reads(monkeypatch)
    d = load_dataset("mnist", data_dir=tmp_path)
    assert calls == [] and idx._AHEAD == {}
    images, labels = written["train"]
    np.testing.assert_array_equal((d.x_train[:, 0] * 255).round().numpy(), images)
    np.testing.assert_array_equal(d.y_train.numpy(), labels)
    np.testing.assert_array_equal(d.y_test.numpy(), written["t10k"][1])


def test_read_ahead_of_a_file_changed_since_is_not_used(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    make_idx_set(tmp_path, gz=True)
    datasets.read_ahead("mnist", tmp_path)
    _finish_reads()
    written = make_idx_set(tmp_path, gz=True, n_train=14, seed=1, splits=("train",))
    calls = _count_main_thread_reads(monkeypatch)
    d = load_dataset("mnist", data_dir=tmp_path)
    assert {p.name for p in calls} == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}
    np.testing.assert_array_equal(d.y_train.numpy(), written["train"][1])
    assert d.x_train.shape == (14, 1, 4, 5)


def test_read_ahead_leaves_a_bad_file_for_the_load_to_report(tmp_path: Path):
    make_idx_set(tmp_path, gz=True)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03\x00\x00\x00\x06"))
    with pytest.raises(GenlabError) as direct:
        load_dataset("mnist", data_dir=tmp_path)
    datasets.read_ahead("mnist", tmp_path)
    assert len(idx._AHEAD) == 4
    with pytest.raises(GenlabError) as ahead:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(ahead.value) == str(direct.value) and "header needs 16 bytes" in str(ahead.value)


def test_read_ahead_does_nothing_where_it_cannot_help(tmp_path: Path):
    make_idx_set(tmp_path, gz=True)
    datasets.read_ahead("digits", tmp_path)  # no files to read ahead
    datasets.read_ahead("no-such-set", tmp_path)
    datasets.read_ahead("mnist", tmp_path / "missing")  # nothing there (nor anywhere else)
    datasets.read_ahead("mnist", "bad\0dir")
    assert idx._AHEAD == {}
    load_dataset("mnist", data_dir=tmp_path)
    datasets.read_ahead("mnist", tmp_path)  # already in memory
    assert idx._AHEAD == {}


@pytest.mark.parametrize(("executor", "workers", "reads"),
                         [("local", 0, True), ("local", 1, True), ("local", 2, False),
                          ("ray", 0, False)])
def test_the_cli_reads_a_run_data_set_ahead_only_for_runs_in_its_process(
        tmp_path: Path, executor: str, workers: int, reads: bool):
    from argparse import Namespace

    from genlab.cli import preload

    make_idx_set(tmp_path, gz=True)
    preload(["genlab.data"], Namespace(dataset="mnist", data_dir=str(tmp_path),
                                       executor=executor, workers=workers))
    assert len(idx._AHEAD) == (4 if reads else 0)


def test_debian_folder_is_found_without_spawning_dpkg(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    spawned: list[list[str]] = []

    def run(cmd, **_kw):
        spawned.append(cmd)
        listed = f"{tmp_path / 'elsewhere' / 'train-images-idx3-ubyte.gz'}\n"
        return SimpleNamespace(returncode=0, stdout=listed)

    monkeypatch.setattr(locations.subprocess, "run", run)
    monkeypatch.setattr(locations, "DEBIAN_FASHION_MNIST", tmp_path / "std")
    _REAL_DEBIAN_DIRS.cache_clear()
    try:
        assert _REAL_DEBIAN_DIRS() == (tmp_path / "elsewhere",) and len(spawned) == 1
        write_idx(tmp_path / "std" / "train-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8),
                  gz=True)
        _REAL_DEBIAN_DIRS.cache_clear()
        assert _REAL_DEBIAN_DIRS() == (tmp_path / "std",) and len(spawned) == 1
    finally:
        _REAL_DEBIAN_DIRS.cache_clear()
