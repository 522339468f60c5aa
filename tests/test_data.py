"""The dataset package nnc.data: where files are found, checksummed downloads, binding, splits, broken files.

Downloads go to a local `http.server` on 127.0.0.1 in a thread, serving a tiny
synthetic image set (IDX files written here, gzip-compressed) whose checksums
the test computes, so the real fetching code runs end to end without the
network. Every broken-file case checks the one message nnc gives: it names the
file and the problem.
"""

from __future__ import annotations

import gzip
import http.server
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, nnc_env, run_main

import nnc
from nnc.data import fetch, load_dataset, load_for_model, open_dataset
from nnc.data.fetch import KnownFile, cache_root, fetch_files, sha256_of
from nnc.data.images import IDX_FILE_NAMES, ImageSet, load_image_set
from nnc.errors import NncError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
LINREG = EXAMPLES / "linreg.nn"
TRAIN, TEST = 24, 8


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An uncompressed IDX file: magic, one big-endian size per dimension, the bytes."""
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + \
        array.astype(np.uint8).tobytes()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def synthetic_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (TRAIN + TEST, 28, 28), dtype=np.uint8)
    images[0, 0, :2] = (255, 0)  # the extremes, for the scaling check
    labels = rng.integers(0, 10, TRAIN + TEST, dtype=np.uint8)
    return {"train-images": images[:TRAIN], "train-labels": labels[:TRAIN],
            "t10k-images": images[TRAIN:], "t10k-labels": labels[TRAIN:]}


def synthetic_files(seed: int = 0) -> dict[str, bytes]:
    """The four gzip IDX files of a tiny image set, by file name."""
    arrays = synthetic_arrays(seed)
    return {name: gz(idx_bytes(arrays[name.split("-idx")[0]], IMAGES_MAGIC if "images" in name else LABELS_MAGIC))
            for name in IDX_FILE_NAMES}


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def known(files: dict[str, bytes]) -> tuple[KnownFile, ...]:
    import hashlib

    return tuple(KnownFile(name, len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
                 for name, data in files.items())


TINY_FILES = synthetic_files()
TINY = ImageSet("tiny", known(TINY_FILES), ("http://127.0.0.1:9/unused/",), tuple(str(d) for d in range(10)))


def model_file(tmp_path: Path, text: str, name: str = "m.nn"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return nnc.load(path)


# ---- a local HTTP mirror ---------------------------------------------------------------------------


class Mirror:
    """A web server on 127.0.0.1 in a thread: `routes` maps a path to bytes, or to ("partial"|"stall", bytes)."""

    def __init__(self):
        self.routes: dict[str, object] = {}
        self.requests: list[str] = []
        self.release = threading.Event()  # a stalled response finishes when this is set
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.requests.append(self.path)
                route = mirror.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                mode, data = route if isinstance(route, tuple) else ("full", route)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if mode == "full":
                    self.wfile.write(data)
                    return
                self.wfile.write(data[:len(data) // 2])  # then the connection drops, or stalls
                self.wfile.flush()
                if mode == "stall":
                    mirror.release.wait(60)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, folder: str, files: dict[str, object]) -> str:
        for name, data in files.items():
            self.routes[f"/{folder}/{name}"] = data
        return f"{self.url}{folder}/"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    m = Mirror()
    yield m
    m.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: every download is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def cache_listing(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


# ---- lookup order and downloads ----------------------------------------------------------------------


def test_cache_folder_honours_xdg_cache_home(dirs):
    _, cache = dirs
    assert cache_root() == cache


def test_user_data_dir_comes_first_then_the_cache_then_a_download(dirs, mirror, monkeypatch):
    user, cache = dirs
    monkeypatch.setenv("NNC_DATASET_MIRROR", mirror.serve("tiny", TINY_FILES))
    # 1. Nothing on disk: every file is downloaded, checked and cached.
    first = load_image_set(TINY)
    assert sorted(mirror.requests) == sorted(f"/tiny/{n}" for n in IDX_FILE_NAMES)
    assert cache_listing(cache / "tiny") == sorted(IDX_FILE_NAMES)
    for f in TINY.files:
        assert sha256_of(cache / "tiny" / f.name) == f.sha256
    np.testing.assert_array_equal(first.train["image"], synthetic_arrays()["train-images"])
    # 2. Cached: no request at all.
    mirror.requests.clear()
    load_image_set(TINY)
    assert mirror.requests == []
    # 3. A file in NNC_DATA_DIR wins over the cache: a damaged copy there is reported, never replaced.
    write_folder(user / "tiny", TINY_FILES)
    paths = fetch_files("tiny", TINY.files, [mirror.url])
    assert all(p.parent == user / "tiny" for p in paths.values())
    (user / "tiny" / IDX_FILE_NAMES[1]).write_bytes(b"not the labels")
    with pytest.raises(NncError) as err:
        fetch_files("tiny", TINY.files, [mirror.url])
    text = err.value.format()
    assert text.startswith(f"{user / 'tiny' / IDX_FILE_NAMES[1]}: error: checksum mismatch")
    assert (user / "tiny" / IDX_FILE_NAMES[1]).read_bytes() == b"not the labels"
    assert mirror.requests == []


def test_a_damaged_cache_entry_is_fetched_again(dirs, mirror, monkeypatch):
    _, cache = dirs
    monkeypatch.setenv("NNC_DATASET_MIRROR", mirror.serve("tiny", TINY_FILES))
    load_image_set(TINY)
    entry = cache / "tiny" / IDX_FILE_NAMES[0]
    entry.write_bytes(entry.read_bytes()[:100])
    mirror.requests.clear()
    load_image_set(TINY)
    assert mirror.requests == [f"/tiny/{IDX_FILE_NAMES[0]}"]
    assert sha256_of(entry) == TINY.files[0].sha256


def test_a_corrupted_download_is_rejected_and_nothing_stays_in_the_cache(dirs, mirror):
    _, cache = dirs
    corrupt = dict(TINY_FILES)
    name = IDX_FILE_NAMES[0]
    corrupt[name] = corrupt[name][:-1] + bytes([corrupt[name][-1] ^ 1])  # same size, one bit off
    bad = mirror.serve("bad", corrupt)
    with pytest.raises(NncError) as err:
        load_image_set(TINY, mirrors=[bad])
    text = err.value.format()
    assert text.startswith(f"error: dataset 'tiny' is not available: {', '.join(IDX_FILE_NAMES)} not found on disk "
                           f"and the download failed")
    assert f"note: {bad}{name}: checksum mismatch (got sha256 " in text
    assert f"expected {TINY.files[0].sha256}); discarded" in text
    assert name not in cache_listing(cache / "tiny")
    assert not [n for n in cache_listing(cache / "tiny") if n.endswith(".part")]


def test_the_next_mirror_is_tried_after_a_bad_one(dirs, mirror):
    _, cache = dirs
    corrupt = {n: d[:-1] + b"\0" for n, d in TINY_FILES.items()}
    data = load_image_set(TINY, mirrors=[mirror.serve("bad", corrupt), mirror.serve("good", TINY_FILES)])
    assert len(data.train["label"]) == TRAIN
    assert cache_listing(cache / "tiny") == sorted(IDX_FILE_NAMES)


def test_a_connection_dropped_mid_download_leaves_nothing(dirs, mirror):
    _, cache = dirs
    files = dict(TINY_FILES)
    last = IDX_FILE_NAMES[-1]
    files[last] = ("partial", files[last])
    url = mirror.serve("drop", files)
    with pytest.raises(NncError) as err:
        load_image_set(TINY, mirrors=[url])
    size = len(TINY_FILES[last])
    assert f"note: {url}{last}: the connection closed early: got {size // 2:,} of the expected {size:,} bytes" \
        in err.value.format()
    assert cache_listing(cache / "tiny") == sorted(IDX_FILE_NAMES[:-1])


def test_a_killed_download_never_appears_under_the_final_name_and_its_part_is_cleaned(dirs, mirror):
    """SIGKILL a process in the middle of a download: only a .part file is left, and the next download
    removes it (its process is gone) and completes the cache."""
    _, cache = dirs
    name = IDX_FILE_NAMES[0]
    stalled = mirror.serve("stall", {name: ("stall", TINY_FILES[name])})
    script = textwrap.dedent(f"""
        from nnc.data.fetch import KnownFile, fetch_files
        f = KnownFile(*{tuple(TINY.files[0].__dict__.values())!r})
        fetch_files("tiny", (f,), [{stalled!r}])
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=nnc_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        parts: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            parts = list((cache / "tiny").glob("*.part")) if (cache / "tiny").exists() else []
            if parts and mirror.requests:  # the request is in and the response stalls halfway
                break
            time.sleep(0.02)
        assert parts, proc.communicate(timeout=5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (cache / "tiny" / name).exists()
    good = mirror.serve("good", TINY_FILES)
    fetch_files("tiny", TINY.files, [good])
    assert cache_listing(cache / "tiny") == sorted(IDX_FILE_NAMES)


def test_a_part_file_of_a_live_download_is_left_alone(dirs, mirror):
    _, cache = dirs
    (cache / "tiny").mkdir(parents=True)
    live = cache / "tiny" / f".{IDX_FILE_NAMES[0]}.{os.getpid()}.abc123.part"
    live.write_bytes(b"in progress")
    fetch_files("tiny", TINY.files, [mirror.serve("good", TINY_FILES)])
    assert live.exists()


def size_text(n: int) -> str:
    return f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} bytes"


def test_a_download_prints_its_progress_on_stderr(dirs, mirror, monkeypatch, capsys):
    """Not on a terminal: the URL and size, a line every LOG_SECONDS (bytes, percent, rate, time left) and one at
    the end; a file found in the cache prints nothing."""
    _, cache = dirs
    url = mirror.serve("tiny", TINY_FILES)
    rate = r"\d+(\.\d)? (bytes|kB|MB)/s"
    fetch_files("tiny", TINY.files, [url])  # a few kB: done well within the 30 s between two lines of a log
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        text for f in TINY.files
        for text in (f"downloading {url}{f.name} ({size_text(f.size)})", f"  {size_text(f.size)}")]
    monkeypatch.setattr(fetch, "LOG_SECONDS", 0.0)  # now a line after every read
    monkeypatch.setattr(fetch, "READ_CHUNK", 4096)
    shutil.rmtree(cache / "tiny")
    fetch_files("tiny", TINY.files, [url])
    lines = iter(capsys.readouterr().err.splitlines())
    for f in TINY.files:
        assert next(lines) == f"downloading {url}{f.name} ({size_text(f.size)})"
        for done in [*range(4096, f.size, 4096), f.size]:
            so_far = rf"  {re.escape(size_text(done))} of {re.escape(size_text(f.size))}"
            assert re.fullmatch(rf"{so_far} \({100 * done // f.size}%\), {rate}, \d+(\.\d)?s left",
                                line := next(lines)), line
        assert re.fullmatch(rf"  {re.escape(size_text(f.size))} in \d+\.\ds \({rate}\)", line := next(lines)), line
    assert next(lines, None) is None
    fetch_files("tiny", TINY.files, [url])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_the_real_files_match_the_known_checksums(name):
    """The files in NNC_DATA_DIR (tests/conftest.py) are the originals: found there, verified, no download."""
    from nnc.data.fetch import user_data_dir
    from nnc.data.images import IMAGE_SETS

    image_set = IMAGE_SETS[name]
    paths = fetch_files(name, image_set.files, [], download=False)
    assert sorted(paths) == sorted(IDX_FILE_NAMES)
    assert all(p.parent == user_data_dir() / name for p in paths.values())


def test_offline_without_files_says_where_to_put_the_four_files(dirs, monkeypatch):
    user, cache = dirs
    monkeypatch.setenv("NNC_DATASET_MIRROR", closed_port_url())
    result = run_main("run", EXAMPLES / "mnist_mlp.nn", "--data", "mnist", "--out", user / "run")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [f"error: dataset 'mnist' is not available: {', '.join(IDX_FILE_NAMES)} not found on disk and "
                      f"the download failed"]
    hint = result.stderr.split("hint: ", 1)[1]
    assert f"put the 4 original files {', '.join(IDX_FILE_NAMES)} in $NNC_DATA_DIR/mnist/ " \
           f"(here {user / 'mnist'}/) or in {cache / 'mnist'}/" in hint
    assert not (cache / "mnist").exists() or cache_listing(cache / "mnist") == []


# ---- binding, scaling, shapes ------------------------------------------------------------------------


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return write_folder(tmp_path / "idx", TINY_FILES)


def test_pixels_are_scaled_to_unit_range_and_reshaped_to_the_declared_input(tiny_folder):
    raw = synthetic_arrays()["train-images"]
    lenet = load_dataset(str(tiny_folder), nnc.load(EXAMPLES / "lenet5.nn"))
    image = lenet.train["image"]
    assert image.shape == (TRAIN, 1, 28, 28) and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == 1.0
    np.testing.assert_allclose(image[:, 0], raw / 255.0, rtol=1e-6)
    assert lenet.test["image"].shape == (TEST, 1, 28, 28)
    assert lenet.train["label"].dtype == np.int32
    mlp = load_dataset(str(tiny_folder), nnc.load(EXAMPLES / "mnist_mlp.nn"))
    assert mlp.train["image"].shape == (TRAIN, 784)
    np.testing.assert_array_equal(mlp.train["image"], image.reshape(TRAIN, 784))
    assert "image <- image [28, 28] as [1, 28, 28]" in lenet.describe()


def test_binding_by_role_when_names_differ(tmp_path):
    model = model_file(tmp_path, """
        model roles {
          input pixels: [B, 28, 28]
          input digit: int[B]
          logits = dense(flatten(pixels), 10)
          output logits
          loss cross_entropy(logits, digit)
        }
    """)
    folder = write_folder(tmp_path / "idx", TINY_FILES)
    data = load_dataset(str(folder), model)
    assert data.bindings == ["pixels <- image", "digit <- label"]
    np.testing.assert_array_equal(data.train["digit"], synthetic_arrays()["train-labels"])
    assert data.train["pixels"].shape == (TRAIN, 28, 28)


SEQUENCE_MODEL = """
    model seq {{
      input image: {declared}
      input label: int[B]
      logits = dense({summary}, 10)
      output logits
      loss cross_entropy(logits, label)
    }}
"""


@pytest.mark.parametrize("declared, shape, summary, shown", [
    ("[B, 28, 28]", (28, 28), "reshape(image, [B, 784])", "image"),           # a row of pixels per time step
    ("[B, 784, 1]", (784, 1), "reshape(image, [B, 784])", "image <- image [28, 28] as [784, 1]"),   # a pixel
    ("[B, T, 28]", (28, 28), "mean(image, axis=1)", "image"),                 # T from the data: 28 rows
    ("[B, T, 1]", (784, 1), "mean(image, axis=1)", "image <- image [28, 28] as [T, 1]"),   # T = 784 pixels
    ("[B, T]", (784,), "mean(image, axis=1, keepdims=true)", "image <- image [28, 28] as [T]"),
])
def test_images_bind_as_sequences_of_rows_or_of_pixels(tiny_folder, tmp_path, declared, shape, summary, shown):
    raw = synthetic_arrays()["train-images"]
    model = model_file(tmp_path, SEQUENCE_MODEL.format(declared=declared, summary=summary))
    data = load_dataset(str(tiny_folder), model)
    image = data.train["image"]
    assert image.shape == (TRAIN, *shape) and image.dtype == np.float32
    # time step t is row t (or pixel t in reading order) of every image
    np.testing.assert_allclose(image.reshape(TRAIN, 28, 28), raw / 255.0, rtol=1e-6)
    assert data.bindings[0] == shown


def test_a_recurrent_network_trains_on_images_read_a_row_per_step(tiny_folder, tmp_path):
    model_file(tmp_path, """
        model rows {
          input image: [B, 28, 28]
          input label: int[B]
          logits = dense(lstm(image, 8), 10)
          output logits
          loss cross_entropy(logits, label)
        }
    """)
    result = run_main("run", "m.nn", "--data", str(tiny_folder), "--batch", "8", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "; image, label; 10 classes" in result.stdout and "test accuracy" in result.stdout


def test_a_dataset_that_does_not_fit_names_both_shapes(tmp_path):
    files = dict(TINY_FILES)
    arrays = synthetic_arrays()
    for split in ("train", "t10k"):
        small = arrays[f"{split}-images"][:, :20, :20]
        files[f"{split}-images-idx3-ubyte.gz"] = gz(idx_bytes(small, IMAGES_MAGIC))
    folder = write_folder(tmp_path / "idx20", files)
    with pytest.raises(NncError) as err:
        load_dataset(str(folder), nnc.load(EXAMPLES / "lenet5.nn"))
    assert err.value.format().startswith(
        f"{folder / 'train-images-idx3-ubyte.gz'}: error: array image does not fit the model's input 'image': got "
        f"[{TRAIN}, 20, 20] (400 values per sample), expected [B, 1, 28, 28] (784 values per sample)")
    with pytest.raises(NncError, match=r"array x does not fit the model's input 'image': got \[300, 2\]"):
        load_dataset("spiral", nnc.load(EXAMPLES / "mnist_mlp.nn"))


SPIRAL_MODEL = """
    model spiral_net {
      input x: [B, 2]
      input label: int[B]
      logits = dense(relu(dense(x, 8)), 3)
      output logits
      loss cross_entropy(logits, label)
    }
"""


def test_validation_split_by_count_and_fraction(tmp_path):
    model = model_file(tmp_path, SPIRAL_MODEL)
    whole = open_dataset("spiral").train
    by_count = load_dataset("spiral", model, val=30, seed=4)
    assert (by_count.n_train, by_count.n_val, by_count.n_test) == (270, 30, 300)
    rows = np.concatenate([by_count.train["x"], by_count.val["x"]])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, whole["x"]))
    by_fraction = load_dataset("spiral", model, val=0.1, seed=4)
    np.testing.assert_array_equal(by_fraction.val["x"], by_count.val["x"])
    other_seed = load_dataset("spiral", model, val=30, seed=5)
    assert not np.array_equal(other_seed.val["x"], by_count.val["x"])
    none = load_dataset("spiral", model)
    assert none.n_val == 0 and none.n_train == 300
    with pytest.raises(NncError, match="val=300 takes 300 of the 300 samples, leaving none to train on"):
        load_dataset("spiral", model, val=300)


def test_val_from_the_command_line_beats_the_train_block(tmp_path):
    model = model_file(tmp_path, SPIRAL_MODEL + "\ntrain {\n  data = spiral\n  val = 0.5\n}\n")
    assert load_for_model(model).n_val == 150
    assert load_for_model(model, val=12).n_val == 12
    result = run_main("run", tmp_path / "m.nn", "--val", "1.5", "--epochs", "1")
    assert result.returncode == 2 and "argument --val: expected a count (100) or a fraction" in result.stderr


def test_csv_with_target_binds_features_and_target_by_role():
    data = load_dataset(str(EXAMPLES / "data" / "apartments.csv"), nnc.load(EXAMPLES / "apartment.nn"),
                        target="price")
    table = np.genfromtxt(EXAMPLES / "data" / "apartments.csv", delimiter=",", names=True)
    features = [n for n in table.dtype.names if n != "price"]
    assert data.task == "regression"
    x_input, y_input = data.bindings[0].split(" <- ")[0], data.target
    np.testing.assert_allclose(data.train[x_input], np.stack([table[n] for n in features], axis=1), rtol=1e-6)
    np.testing.assert_allclose(data.train[y_input][:, 0], table["price"], rtol=1e-6)


def test_csv_from_a_spreadsheet_loads(tmp_path):
    """A byte-order mark, CRLF line ends, blank lines and spaces around fields are what exported CSVs have."""
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffhours , score\r\n2, 81\r\n\r\n4 ,93\r\n".encode("utf-8"))
    data = load_dataset(str(path), nnc.load(LINREG), target="score")
    np.testing.assert_array_equal(data.train["x"][:, 0], [2, 4])
    np.testing.assert_array_equal(data.train["y"][:, 0], [81, 93])


def test_npz_binds_by_name_with_its_own_test_arrays(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "d.npz"
    np.savez(path, image=rng.random((6, 784), np.float32), label=np.arange(6) % 10,
             image_test=rng.random((3, 784), np.float32), label_test=np.array([1, 2, 3]))
    data = load_dataset(str(path), nnc.load(EXAMPLES / "mnist_mlp.nn"))
    assert (data.n_train, data.n_test) == (6, 3)
    np.testing.assert_array_equal(data.test["label"], [1, 2, 3])
    assert data.test_source == "the archive's _test arrays"


# ---- broken files: one message naming the file and the problem ---------------------------------------


def broken_folder(tmp_path: Path, name: str, data: bytes) -> tuple[Path, Path]:
    folder = write_folder(tmp_path / "broken", TINY_FILES)
    (folder / name).write_bytes(data)
    return folder, folder / name


def first_error(err: pytest.ExceptionInfo) -> str:
    return err.value.format().split("\n")[0]


TRAIN_IMAGES = IDX_FILE_NAMES[0]
TRAIN_LABELS = IDX_FILE_NAMES[1]
GOOD = TINY_FILES[TRAIN_IMAGES]


@pytest.mark.parametrize("name, data, message", [
    (TRAIN_IMAGES, GOOD[:len(GOOD) // 2],
     f"the gzip stream is truncated: the file ends after {len(GOOD) // 2:,} bytes, before the end of the "
     f"compressed data"),
    (TRAIN_IMAGES, GOOD[:-8] + bytes(b ^ 0xFF for b in GOOD[-8:-4]) + GOOD[-4:],
     "corrupt gzip data (CRC check failed)"),
    (TRAIN_IMAGES, b"", "not a gzip file: got the bytes of an empty file, expected 1f 8b"),
    (TRAIN_IMAGES, gz(idx_bytes(synthetic_arrays()["train-images"], IMAGES_MAGIC)[:-10]),
     f"truncated: got {TRAIN * 784 - 10:,} bytes of data, expected {TRAIN * 784:,} ({TRAIN} x 28 x 28)"),
    (TRAIN_IMAGES, gz(idx_bytes(synthetic_arrays()["train-images"], IMAGES_MAGIC)[:10]),
     "truncated header: got 10 bytes, expected 16 for 3 dimensions"),
    (TRAIN_IMAGES, gz(b"\x12\x34\x56\x78" + idx_bytes(synthetic_arrays()["train-images"], IMAGES_MAGIC)[4:]),
     "wrong magic number: got 305419896 (0x12345678), expected 2051 (0x00000803) for an image file"),
    (TRAIN_IMAGES, TINY_FILES[TRAIN_LABELS],
     "wrong magic number: got 2049 (0x00000801), expected 2051 (0x00000803) for an image file"),
    (TRAIN_LABELS, gz(idx_bytes(synthetic_arrays()["train-labels"][:-1], LABELS_MAGIC)),
     f"got {TRAIN - 1} labels, expected {TRAIN}: one per image of {TRAIN_IMAGES}"),
], ids=["truncated-gzip", "corrupt-gzip", "empty", "short-data", "short-header", "bad-magic", "swapped",
        "count-mismatch"])
def test_broken_idx_files(tmp_path, name, data, message):
    folder, path = broken_folder(tmp_path, name, data)
    with pytest.raises(NncError) as err:
        open_dataset(str(folder))
    assert first_error(err) == f"{path}: error: {message}"


def test_broken_idx_file_through_the_command_line(tmp_path):
    folder, path = broken_folder(tmp_path, TRAIN_IMAGES, GOOD[:100])
    result = run_main("run", EXAMPLES / "mnist_mlp.nn", "--data", folder, "--out", tmp_path / "run")
    assert result.returncode == 1
    assert result.stderr.startswith(f"{path}: error: the gzip stream is truncated")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("split, part", [("train", "training"), ("t10k", "test")])
def test_labels_out_of_range_for_the_model_name_the_label_file(tmp_path, split, part):
    labels = synthetic_arrays()[f"{split}-labels"].copy()
    labels[5] = 12
    name = f"{split}-labels-idx1-ubyte.gz"
    folder, path = broken_folder(tmp_path, name, gz(idx_bytes(labels, LABELS_MAGIC)))
    with pytest.raises(NncError) as err:
        load_dataset(str(folder), nnc.load(EXAMPLES / "mnist_mlp.nn"))
    assert first_error(err) == (f"{path}: error: label 12 in the {part} data is out of range for model "
                                f"'mnist_mlp': expected 0 to 9 for the 10 classes of its logits [B, 10]")
    assert "the model needs 13 outputs" in err.value.format()



@pytest.mark.parametrize("text, line, message", [
    ("hours,score\n2,81\n4,\n", 3, "missing value in column 'score': got an empty field, expected a number"),
    ("hours,score\n2,81\nfour,93\n", 3, "non-numeric value in column 'hours': got 'four', expected a number"),
    ("hours,score\n2,81\n4,93\n6,inf\n", 4, "value in column 'score' is not finite: got 'inf', expected a number"),
    ("hours,score\n2,81\n4\n", 3, "got 1 values, expected 2 (hours, score)"),
    ("2,81\n4,93\n", 1, "the first row should name the columns: got the number '2', expected a name"),
    ("hours,score\n", None, "no data: the file has a header row and no rows of numbers"),
], ids=["missing", "non-numeric", "infinite", "short-row", "no-header", "no-rows"])
def test_broken_csv_names_the_row_and_column(tmp_path, text, line, message):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(NncError) as err:
        load_dataset(str(path), nnc.load(LINREG), target="score")
    where = f"{path}:{line}" if line else str(path)
    assert first_error(err) == f"{where}: error: {message}"


def test_csv_target_column_missing(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("hours,score\n2,81\n4,93\n")
    with pytest.raises(NncError) as err:
        load_dataset(str(path), nnc.load(LINREG), target="scores")
    assert first_error(err) == f"{path}: error: no column 'scores' for the target: the columns are hours, score"
    assert "did you mean 'score'?" in err.value.format()
    with pytest.raises(NncError) as err:
        load_dataset(str(path), nnc.load(LINREG))
    assert first_error(err) == f"{path}: error: no target column for the model's input 'y' ([B, 1])"


def npz_error(path: Path, model: str = "mnist_mlp.nn") -> str:
    with pytest.raises(NncError) as err:
        load_dataset(str(path), nnc.load(EXAMPLES / model))
    return first_error(err)


def test_npz_missing_arrays(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, image=np.zeros((4, 784), np.float32))
    assert npz_error(path) == f"{path}: error: no array for the model's input label (int[B]): the archive has image"
    np.savez(path, image=np.zeros((4, 784), np.float32), label=np.zeros(4, np.int32), image_test=np.zeros((2, 784)))
    assert npz_error(path) == (f"{path}: error: some arrays have a test partner and some do not: missing "
                               f"label_test")


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, image=np.zeros((2, 784), np.float32), label=np.array([{"a": 1}, None], dtype=object))
    assert npz_error(path) == (f"{path}: error: array 'label' holds Python objects, expected numbers: nnc loads "
                               f"arrays named after the model's inputs without pickle")


@pytest.mark.parametrize("content, message", [
    (b"PK\x03\x04 and then nothing", "not a readable .npz file (File is not a zip file)"),
    (b"\x93NUMPY\x01\x00", "got a single .npy array, expected an .npz archive of arrays named after the model's "
                           "inputs"),
    (b"image,label\n", "not an .npz archive of arrays named after the model's inputs"),
], ids=["bad-zip", "npy", "text"])
def test_npz_that_is_not_an_archive(tmp_path, content, message):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    assert npz_error(path) == f"{path}: error: {message}"


def test_npz_member_that_is_not_an_array(tmp_path):
    import zipfile

    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hello")
    assert npz_error(path) == (f"{path}: error: member 'notes.txt' is not a NumPy array, expected only .npy arrays "
                               f"in an .npz archive of arrays named after the model's inputs")


# ---- random damage: always one message naming the file ----------------------------------------------

DAMAGE_TOKENS = [b",", b"\n", b"nan", b"-", b"1e999", b'"', b"\x00", b"\xff", b"PK\x03\x04", b"\x93NUMPY"]


def damaged(rng, data: bytes) -> bytes:
    """One to four random edits: a byte changed, the end cut off, bytes inserted or deleted, a token dropped in."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        edit = rng.randrange(5)
        if edit == 0 and at < len(data):
            data[at] = rng.randrange(256)
        elif edit == 1:
            del data[at:]
        elif edit == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif edit == 3:
            del data[at:at + rng.randint(1, 16)]
        else:
            data[at:at] = rng.choice(DAMAGE_TOKENS)
    return bytes(data)


def test_randomly_damaged_data_files_give_a_message_naming_the_file(tmp_path):
    """1,000 damaged IDX (gzip and plain), CSV and NPZ files: each loads, or is one NncError that starts with the
    file's (or its folder's) path; never another exception."""
    import io
    import random

    npz = io.BytesIO()
    np.savez(npz, image=np.random.default_rng(0).random((6, 784), np.float32), label=np.arange(6))
    originals = {"gz": TINY_FILES, "plain": {n.removesuffix(".gz"): gzip.decompress(d) for n, d in TINY_FILES.items()},
                 "csv": (EXAMPLES / "data" / "apartments.csv").read_bytes(), "npz": npz.getvalue()}
    mlp, apartment = nnc.load(EXAMPLES / "mnist_mlp.nn"), nnc.load(EXAMPLES / "apartment.nn")
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(1000):
        rng = random.Random(i)
        kind = rng.choice(list(originals))
        folder = tmp_path / f"case{i}"
        if kind in ("gz", "plain"):
            files = dict(originals[kind])
            name = rng.choice(list(files))
            files[name] = damaged(rng, files[name])
            spec, load = write_folder(folder, files), lambda s: load_dataset(str(s), mlp)
        else:
            folder.mkdir()
            spec = folder / f"data.{kind}"
            spec.write_bytes(damaged(rng, originals[kind]))
            model, target = (apartment, "price") if kind == "csv" else (mlp, None)
            load = lambda s, model=model, target=target: load_dataset(str(s), model, target=target)  # noqa: E731
        try:
            load(spec)
            outcomes["loaded"] += 1
        except NncError as err:
            assert err.format().startswith(str(folder)), f"case {i} ({kind}): {err.format()}"
            outcomes["refused"] += 1
    assert outcomes["refused"] > 900, outcomes


def test_the_product_never_refers_to_the_shared_data_folder():
    """Only the tests and CI point NNC_DATA_DIR at ../shared/data; nnc finds data through the variable alone."""
    package = Path(nnc.__file__).parent
    mentions = [str(p.relative_to(package)) for p in package.rglob("*") if p.is_file() and p.suffix in (".py", ".lark")
                and "shared/data" in p.read_text(encoding="utf-8", errors="replace").replace("\\", "/")]
    assert mentions == []
