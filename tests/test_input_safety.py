"""Crafted or broken user files are refused with one one-line GenlabError, before anything runs.

Every test writes small files in the real on-disk formats (IDX, gzip, PNG, CIFAR pickles, MATLAB
v5, safetensors) into tmp_path: gzip and decompression bombs, empty and truncated files, bad
run specs in weights files, a weights file naming code to import, and paths whose folder names
are over 255 characters.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import sys
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from genlab.data.registry import load_dataset
from genlab.data.sources import cifar, idx, svhn
from genlab.data.sources.idx import read_idx
from genlab.errors import GenlabError

LONG = "x" * 300  # one path component longer than any file system allows (255)


pytestmark = pytest.mark.usefixtures("isolated_data")


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


# --------------------------------------------------------------------------------------------
# IDX files: gzip bombs, absurd headers, empty and truncated files


def idx_header(dims: tuple[int, ...], code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def write_idx_set(folder: Path, n: int = 6) -> None:
    """The four MNIST IDX files, uncompressed: n images (n, 4, 5) and n labels per split."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "t10k"):
        images = np.arange(n * 20, dtype=np.uint8).reshape(n, 4, 5)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{split}-images-idx3-ubyte").write_bytes(idx_header(images.shape)
                                                           + images.tobytes())
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(idx_header(labels.shape)
                                                           + labels.tobytes())


def gzip_bomb(header: bytes, zeros_mb: int) -> bytes:
    """A gzip file: ``header``, then ``zeros_mb`` MiB of zero bytes, in about 1 KB per MiB.

    One MiB of zeros is deflated once, ending in a full flush (byte-aligned, no reference to
    earlier data), and that block repeated; the CRC is left wrong, as a reader that refuses in
    time never gets there."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(bytes(1 << 20)) + comp.flush(zlib.Z_FULL_FLUSH)
    last = comp.flush(zlib.Z_FINISH)
    size = (len(header) + (zeros_mb << 20)) & 0xFFFFFFFF
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return head + first + block * zeros_mb + last + struct.pack("<II", 0, size)


@pytest.mark.parametrize("dims", [(2, 4, 5), (1000, 28, 28)])
def test_idx_gzip_bomb_is_refused_while_decompressing(tmp_path: Path, dims):
    write_idx_set(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    (tmp_path / "train-images-idx3-ubyte").unlink()
    path.write_bytes(gzip_bomb(idx_header(dims), 1024))  # 1 GiB of zeros in ~1 MB
    assert path.stat().st_size < 2 << 20
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(GenlabError) as err:
            load_dataset("mnist", data_dir=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 2.0  # refused early, not after inflating 1 GiB
    assert peak < 16 << 20, peak
    msg = one_line(err)
    assert str(path) in msg and "holds more" in msg and "download again" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_with_absurd_dims_is_refused_unread(tmp_path: Path, gz: bool):
    path = tmp_path / "x-idx3-ubyte"
    data = idx_header((2**32 - 1,) * 3) + bytes(64)
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(GenlabError) as err:
        read_idx(path)
    msg = one_line(err)
    assert str(path) in msg and "header claims dims 4294967295 x" in msg


def test_idx_header_claiming_more_than_the_file_is_refused_before_reading(tmp_path: Path):
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_header((60000, 28, 28)) + bytes(10))
    with pytest.raises(GenlabError) as err:
        read_idx(path)
    assert "expected 47040000 bytes of data, found 10" in one_line(err)


def test_idx_with_more_data_than_its_header_is_refused(tmp_path: Path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(idx_header((3,)) + bytes(4))
    with pytest.raises(GenlabError, match="expected 3 bytes of data, found 4"):
        read_idx(path)


def test_idx_gzip_with_a_bad_crc_is_refused(tmp_path: Path):
    path = tmp_path / "x-idx1-ubyte.gz"
    good = gzip.compress(idx_header((3,)) + bytes([1, 2, 3]))
    path.write_bytes(good[:-8] + b"\0\0\0\0" + good[-4:])
    with pytest.raises(GenlabError) as err:
        read_idx(path)
    assert f"corrupt gzip file {path}" in one_line(err)


EMPTY_AND_TRUNCATED = {
    "empty": (b"", "not an IDX file (magic number (empty file))"),
    "magic only": (b"\x00\x00\x08", "not an IDX file (magic number 000008)"),
    "short header": (b"\x00\x00\x08\x03\x00\x00\x00\x06", "header needs 16 bytes"),
    "short body": (idx_header((6, 4, 5)) + bytes(100), "expected 120 bytes of data, found 100"),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", list(EMPTY_AND_TRUNCATED))
def test_empty_or_truncated_idx_file_is_refused_at_load(tmp_path: Path, case: str, gz: bool):
    write_idx_set(tmp_path)
    data, expected = EMPTY_AND_TRUNCATED[case]
    path = tmp_path / "t10k-images-idx3-ubyte"
    if gz:
        path.unlink()
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    with pytest.raises(GenlabError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    msg = one_line(err)
    assert str(path) in msg and expected in msg


def test_empty_gzip_file_is_refused(tmp_path: Path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b")  # a gzip magic number and nothing else
    with pytest.raises(GenlabError) as err:
        read_idx(path)
    assert f"corrupt gzip file {path}" in one_line(err)


def test_empty_idx_file_stops_the_run_before_anything_runs(tmp_path: Path, capsys):
    from genlab.cli import main

    write_idx_set(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    out = tmp_path / "out"
    argv = ["run", "figure1", "--dataset", "mnist", "--data-dir", str(tmp_path), "--model",
            "mlp:8", "--epochs", "1", "--device", "cpu", "--workers", "1", "--quiet",
            "--no-report", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "train-images-idx3-ubyte is not an IDX file" in err
    assert not out.exists()  # no run was stored, failed or otherwise


def test_idx_reader_still_reads_every_dtype(tmp_path: Path):
    for arr, code in [(np.arange(6, dtype=np.uint8).reshape(2, 3), 0x08),
                      (np.array([-1, 2], dtype=">i4"), 0x0C),
                      (np.array([1.5, -2.0], dtype=">f8"), 0x0E),
                      (np.zeros((0, 4), dtype=np.uint8), 0x08)]:
        for gz in (False, True):
            raw = idx_header(arr.shape, code) + arr.tobytes()
            path = tmp_path / f"a{code}{gz}"
            path.write_bytes(gzip.compress(raw) if gz else raw)
            got = read_idx(path)
            assert got.dtype.isnative and got.shape == arr.shape
            np.testing.assert_array_equal(got, arr)
            if got.size:
                got.flat[0] = 0  # writable, like the copy the reader used to return


# --------------------------------------------------------------------------------------------
# Paths with a component over 255 characters, and other paths that cannot be looked at


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn",
                                  "imagefolder-32", "imagefolder-32-stream", "mnist-binary"])
def test_data_dir_with_a_component_over_255_characters(tmp_path: Path, name: str):
    long_dir = tmp_path / LONG
    with pytest.raises(GenlabError) as err:
        load_dataset(name, data_dir=long_dir)
    msg = one_line(err)
    assert str(long_dir) in msg and "shorter path" in msg


def test_genlab_data_with_a_component_over_255_characters(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / LONG))
    with pytest.raises(GenlabError, match="shorter path"):
        load_dataset("mnist")


READERS = {"read_idx": idx.read_idx, "load_cifar_pickle": cifar.load_cifar_pickle,
           "read_cifar_bin": cifar.read_cifar_bin, "read_svhn_mat": svhn.read_svhn_mat}


@pytest.mark.parametrize("reader", list(READERS))
def test_readers_given_a_path_over_255_characters(tmp_path: Path, reader: str):
    path = tmp_path / LONG / "file"
    with pytest.raises(GenlabError) as err:
        READERS[reader](path)
    assert str(path) in one_line(err)


def test_data_dir_with_a_nul_byte_or_an_unknown_home(tmp_path: Path):
    with pytest.raises(GenlabError, match="embedded null byte"):
        load_dataset("mnist", data_dir=f"{tmp_path}/a\0b")
    with pytest.raises(GenlabError, match="cannot expand '~'"):
        load_dataset("mnist", data_dir="~no-such-user-genlab/data")


# --------------------------------------------------------------------------------------------
# ImageFolder trees: decompression-bomb PNGs, corrupt images, trees without classes


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A 70-byte PNG whose header claims width x height RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(bytes(100))) + png_chunk(b"IEND", b""))


def noise_png(seed: int, size: tuple[int, int] = (10, 12)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, "png")
    return buf.getvalue()


def image_tree(root: Path) -> Path:
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                (root / split / c / f"{i}.png").write_bytes(noise_png(i))
    return root


@pytest.fixture(scope="module", autouse=True)
def _torchvision_imported():
    """Import torchvision (for the ImageFolder tests) once, outside any one test's time."""


def load_tree(root: Path, stream: bool):
    from genlab.data.sources.imagefolder import imagefolder_name

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with pytest.raises(GenlabError) as err:
                load_dataset(imagefolder_name(16, stream=stream), data_dir=root)
        finally:
            assert not caught, [str(w.message) for w in caught]  # no warning printed
    return one_line(err)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("pixels", [30000, 10000])  # PIL errors above 179M px, warns above 89M
def test_decompression_bomb_png_is_refused(tmp_path: Path, stream: bool, pixels: int):
    root = image_tree(tmp_path / "tree")
    bomb = root / "train" / "b" / "bomb.png"
    bomb.write_bytes(png_claiming(pixels, pixels))
    msg = load_tree(root, stream)
    assert f"refusing image {bomb}" in msg and f"{pixels * pixels} pixels" in msg


@pytest.mark.parametrize("limit", [50, 100])  # 10x12 images: error at 50, warning at 100
def test_image_over_pils_pixel_limit_is_refused_without_warning(tmp_path: Path, monkeypatch,
                                                                limit: int):
    from PIL import Image

    root = image_tree(tmp_path / "tree")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    msg = load_tree(root, stream=False)
    assert "refusing image" in msg and str(root / "train" / "a" / "0.png") in msg


@pytest.mark.parametrize("content", ["truncated", "junk", "empty", "bad crc"])
def test_corrupt_image_file_is_refused(tmp_path: Path, content: str):
    root = image_tree(tmp_path / "tree")
    good = noise_png(7, (40, 40))
    bad = {"truncated": good[: len(good) // 2], "junk": b"not an image at all" * 10,
           "empty": b"", "bad crc": good[:40] + bytes([good[40] ^ 0xFF]) + good[41:]}[content]
    path = root / "val" / "a" / "broken.jpg"
    path.write_bytes(bad)
    msg = load_tree(root, stream=False)
    assert f"cannot read image {path}" in msg


def test_imagefolder_trees_without_classes_or_images(tmp_path: Path):
    from genlab.data.sources.imagefolder import load_imagefolder

    root = tmp_path / "t"
    (root / "train").mkdir(parents=True)
    (root / "val" / "a").mkdir(parents=True)
    with pytest.raises(GenlabError, match="must hold one folder of images per class"):
        load_imagefolder(root, 16)
    (root / "train" / "a").mkdir()
    (root / "train" / "b").mkdir()
    with pytest.raises(GenlabError, match="no images"):  # empty class folders only
        load_imagefolder(root, 16)
    (root / "train" / "a" / "0.png").write_bytes(noise_png(0))
    (root / "val" / "c").mkdir()
    (root / "val" / "c" / "0.png").write_bytes(noise_png(1))
    with pytest.raises(GenlabError, match="not among the training classes"):
        load_imagefolder(root, 16)
    (root / "val" / "c" / "0.png").unlink()
    (root / "val" / "c").rmdir()
    (root / "val" / "a" / "0.png").write_bytes(noise_png(2))
    data = load_imagefolder(root, 16)  # an empty training class folder is allowed
    assert data.classes == ["a", "b"] and len(data.y_train) == 1


def test_bad_image_sizes_and_memory_limits(monkeypatch):
    from genlab.data.sources.imagefolder import MAX_SIZE, memory_limit_gb

    for name in ("imagefolder-99999", "imagefolder-" + "9" * 5000):
        with pytest.raises(GenlabError, match=f"from 8 to {MAX_SIZE}"):
            load_dataset(name)
    for bad in ("nan", "-1", "lots"):
        monkeypatch.setenv("GENLAB_IMAGEFOLDER_MAX_GB", bad)
        with pytest.raises(GenlabError, match="GENLAB_IMAGEFOLDER_MAX_GB"):
            memory_limit_gb()


def test_absurd_hypersphere_dimensions_are_refused():
    for name in ("hyperspheres-d1000000", "hyperspheres-d" + "9" * 5000):
        with pytest.raises(GenlabError, match="too large"):
            load_dataset(name)
    from genlab.data.sources.hyperspheres import register_hyperspheres

    for bad in (2.5, float("inf"), float("nan"), "7", True):
        with pytest.raises(GenlabError, match="integer >= 2"):
            register_hyperspheres(bad)
    assert register_hyperspheres(np.int64(3)) == "hyperspheres-d3"


# --------------------------------------------------------------------------------------------
# CIFAR pickles and SVHN .mat files


def cifar10_folder(root: Path, n: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": np.zeros((n, 3072), np.uint8), "labels": [0] * n}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


@pytest.mark.parametrize("case", ["list of one row", "labels of lists", "huge label",
                                  "bool labels", "labels a string"])
def test_cifar_batch_of_the_wrong_shape_is_refused_before_it_is_expanded(tmp_path: Path,
                                                                        case: str):
    folder = cifar10_folder(tmp_path)
    n = 200_000
    row = [0] * 3072
    batch = {"list of one row": {"data": [row] * n, "labels": [0] * n},
             "labels of lists": {"data": np.zeros((2, 3072), np.uint8), "labels": [row] * 2},
             "huge label": {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10**30]},
             "bool labels": {"data": np.zeros((2, 3072), np.uint8), "labels": [True, False]},
             "labels a string": {"data": np.zeros((2, 3072), np.uint8), "labels": "ab"}}[case]
    payload = pickle.dumps(batch, protocol=2)
    assert len(payload) < 2 << 20  # shared references: small file, 4.9 GB as an int64 array
    path = folder / "data_batch_2"
    path.write_bytes(payload)
    t0 = time.perf_counter()
    with pytest.raises(GenlabError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert time.perf_counter() - t0 < 2.0
    msg = one_line(err)
    assert f"corrupt CIFAR file {path}" in msg


@pytest.mark.parametrize("content", [b"", b"\x80\x02junk", bytes(range(256)) * 4,
                                     pickle.dumps([1, 2, 3])[:-1]])
def test_cifar_junk_is_refused(tmp_path: Path, content: bytes):
    folder = cifar10_folder(tmp_path)
    (folder / "test_batch").write_bytes(content)
    with pytest.raises(GenlabError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(folder / "test_batch") in one_line(err)


def test_oversized_cifar_files_are_refused_unread(tmp_path: Path, monkeypatch):
    cifar10_folder(tmp_path)
    monkeypatch.setattr(cifar, "MAX_DATA_BYTES", 1000)
    with pytest.raises(GenlabError, match="more than genlab reads from one file"):
        load_dataset("cifar10", data_dir=tmp_path)
    binary = tmp_path / "b.bin"
    binary.write_bytes(bytes(3073))
    with pytest.raises(GenlabError, match="more than genlab reads from one file"):
        cifar.read_cifar_bin(binary)


def svhn_bytes(n: int, claim: int | None = None) -> bytes:
    """A MATLAB v5 SVHN file with n images; its header's image count patched to ``claim``."""
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {"X": np.zeros((32, 32, 3, n), np.uint8),
                  "y": np.ones((n, 1), np.uint8)})
    raw = buf.getvalue()
    if claim is not None:
        dims = struct.pack("<4i", 32, 32, 3, n)
        assert raw.count(dims) == 1
        raw = raw.replace(dims, struct.pack("<4i", 32, 32, 3, claim))
    return raw


def mat73_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 00:00:00 2024 HDF5"
    return text.ljust(116, b" ") + bytes(8) + struct.pack("<H", 0x0200) + b"IM" + bytes(400)


@pytest.mark.parametrize("case", ["huge header", "empty", "v7.3", "truncated"])
def test_bad_svhn_mat_files_are_refused(tmp_path: Path, case: str):
    (tmp_path / "train_32x32.mat").write_bytes(svhn_bytes(3))
    content = {"huge header": svhn_bytes(1, claim=2_000_000_000), "empty": b"",
               "v7.3": mat73_header(), "truncated": svhn_bytes(3)[:300]}[case]
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(content)
    with pytest.raises(GenlabError) as err:
        load_dataset("svhn", data_dir=tmp_path)
    msg = one_line(err)
    assert str(path) in msg
    if case == "huge header":
        assert "header claims X of shape (32, 32, 3, 2000000000)" in msg


# --------------------------------------------------------------------------------------------
# genlab measure FILE.safetensors: bad specs, a file naming code to import, corrupt files

NO_BOUNDS = {"dr": False, "compression": False, "sharpness": False}


def weights_file(path: Path, spec: object = None, *, raw_spec: str | None = None,
                 width: int = 8) -> Path:
    """An mlp:WIDTH state dict for 8x8 digits, with ``spec`` (JSON) as its metadata."""
    from safetensors.torch import save_file

    from genlab.models.registry import build_model

    net = build_model(f"mlp:{width}", (1, 8, 8), 10)
    meta = None
    if raw_spec is not None:
        meta = {"spec": raw_spec}
    elif spec is not None:
        meta = {"spec": json.dumps(spec)}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)
    return path


def good_spec(**changes) -> dict:
    from genlab.spec import RunSpec

    d = RunSpec(dataset="digits", model="mlp:8", train_size=50, test_size=30).to_dict()
    d.update(changes)
    return d


def measure(path: Path, **kw):
    from genlab.experiments.bound_sweep import measure_checkpoint

    return measure_checkpoint(path, params=NO_BOUNDS, **kw)


BAD_SPECS = {
    "not json": ("{not json", "is not JSON"),
    "json list": (json.dumps([["dataset", "digits"]]), "should be a JSON object, found list"),
    "json string": (json.dumps("digits"), "found str"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "is not JSON"),
    "missing model": (json.dumps({"dataset": "digits"}), "lacks model"),
    "unknown field": (json.dumps(good_spec(evil=1)), "unknown field(s) 'evil'"),
    "train_size text": (json.dumps(good_spec(train_size="abc")),
                        "field 'train_size' should be an integer, found \"abc\""),
    "seed bool": (json.dumps(good_spec(seed=True)), "'seed' should be an integer"),
    "seed float": (json.dumps(good_spec(seed=1.5)), "'seed' should be an integer"),
    "model number": (json.dumps(good_spec(model=5)), "'model' should be a string"),
    "dropout text": (json.dumps(good_spec(dropout="0.5")), "'dropout' should be a number"),
    "recipe list": (json.dumps(good_spec(recipe=[1])), "'recipe' should be an object"),
    "recipe unknown": (json.dumps(good_spec(recipe={"lr": 0.1, "evil": 2})),
                       "unknown field(s) 'evil' in the spec recipe"),
    "recipe lr text": (json.dumps(good_spec(recipe={"lr": "fast"})),
                       "spec recipe field 'lr' should be a number"),
    "recipe fast number": (json.dumps(good_spec(recipe={"fast": 1})),
                           "'fast' should be true or false"),
    "version text": (json.dumps(good_spec(spec_version="1")), "'spec_version' should be"),
    "bad condition": (json.dumps(good_spec(condition="nope")), "condition"),
    "negative size": (json.dumps(good_spec(train_size=-3)), "train_size must be >= 0"),
    "nan lr": ('{"dataset": "digits", "model": "mlp:8", "recipe": {"lr": NaN}}', "lr must"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_malformed_spec_metadata_is_refused(tmp_path: Path, case: str, monkeypatch):
    from genlab.experiments import bound_sweep as bounds  # noqa: F401  (imports genlab.runner's prepare)

    def no_data(*a, **k):
        raise AssertionError("the data set was loaded before the spec was checked")

    monkeypatch.setattr("genlab.execution.prepare.prepare", no_data)
    raw, expected = BAD_SPECS[case]
    path = weights_file(tmp_path / "w.safetensors", raw_spec=raw)
    with pytest.raises(GenlabError) as err:
        measure(path)
    msg = one_line(err)
    assert expected in msg


def test_malformed_spec_is_one_line_from_the_cli(tmp_path: Path, capsys):
    from genlab.cli import main

    path = weights_file(tmp_path / "w.safetensors", raw_spec=json.dumps(good_spec(seed="x")))
    assert main(["measure", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'seed' should be an integer" in err


@pytest.fixture
def evil_module(tmp_path: Path, monkeypatch):
    """An importable module that records being imported (and provides a working factory)."""
    pkg = tmp_path / "evil_genlab_pkg"
    pkg.mkdir()
    marker = tmp_path / "imported"
    (pkg / "__init__.py").write_text("")
    (pkg / "payload.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('imported')\n"
        "def factory(input_shape, num_classes):\n"
        "    from genlab.models.registry import build_model\n"
        "    return build_model('mlp:8', input_shape, num_classes)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "evil_genlab_pkg.payload:factory", marker
    for name in ("evil_genlab_pkg.payload", "evil_genlab_pkg"):
        sys.modules.pop(name, None)


@pytest.mark.filterwarnings("ignore:the 10th-percentile margin")
def test_weights_file_cannot_choose_code_to_import(tmp_path: Path, evil_module):
    name, marker = evil_module
    path = weights_file(tmp_path / "w.safetensors", good_spec(model=name))
    with pytest.raises(GenlabError) as err:
        measure(path)
    msg = one_line(err)
    assert f"names model {name!r}" in msg and f"--model {name}" in msg
    assert not marker.exists() and "evil_genlab_pkg.payload" not in sys.modules
    # named by the user on the command line, the same factory is the user's choice
    res = measure(path, model=name)
    assert marker.exists() and res["model"] == name and res["measure_n_params"] > 0


@pytest.mark.filterwarnings("ignore:the 10th-percentile margin")
def test_registered_models_and_families_still_come_from_the_file(tmp_path: Path):
    res = measure(weights_file(tmp_path / "w.safetensors", good_spec()))
    assert res["model"] == "mlp:8" and res["dataset"] == "digits" and res["train_size"] == 50
    bad = weights_file(tmp_path / "u.safetensors", good_spec(model="no-such-model"))
    with pytest.raises(GenlabError, match="unknown model 'no-such-model'"):
        measure(bad)


def test_weights_not_fitting_the_model_are_refused(tmp_path: Path):
    path = weights_file(tmp_path / "w.safetensors", good_spec(), width=4)
    with pytest.raises(GenlabError) as err:
        measure(path)
    assert "does not fit model mlp:8 on digits" in one_line(err)


@pytest.mark.parametrize("case", ["empty", "junk", "truncated", "huge header", "bad json",
                                  "bad dtype", "long path", "a folder"])
def test_corrupt_or_unreadable_weights_files_are_refused(tmp_path: Path, case: str):
    good = weights_file(tmp_path / "good.safetensors", good_spec()).read_bytes()
    n = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key]["dtype"] = "Q9"
    bad_dtype = json.dumps(header).encode()
    content = {"empty": b"", "junk": b"not a safetensors file, really" * 3,
               "truncated": good[:-10], "huge header": struct.pack("<Q", 1 << 40) + good[8:],
               "bad json": struct.pack("<Q", 5) + b"{oops" + good[13:],
               "bad dtype": struct.pack("<Q", len(bad_dtype)) + bad_dtype + good[8 + n:]}
    path = tmp_path / "w.safetensors"
    if case == "long path":
        path = tmp_path / LONG / "w.safetensors"
    elif case == "a folder":
        path.mkdir()
    else:
        path.write_bytes(content[case])
    with pytest.raises(GenlabError) as err:
        measure(path)
    assert str(path) in one_line(err)
