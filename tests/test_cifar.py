"""CIFAR-10 and CIFAR-100 (nnc.data.cifar): files in their exact binary format, written here, small.

A record is the label byte(s) then 3,072 pixel bytes (1,024 red, 1,024 green,
1,024 blue, each plane row by row). The sets here hold a few dozen records per
file; `tiny()` is a CifarSet of such files whose archive checksum the test
computes, so `$NNC_DATA_DIR`, the cache and the download (from the local HTTP
server of tests/test_data.py) run as they do for the real archives, and the
real CIFAR-10 and CIFAR-100 entries are used where no checksum is involved.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main
from test_data import Mirror, closed_port_url

import nnc
from nnc.data import cifar, load_dataset, load_for_model, open_dataset
from nnc.data.cifar import CIFAR10, CIFAR10_FORMAT, CIFAR100_FORMAT, CifarSet, load_cifar
from nnc.data.fetch import KnownFile
from nnc.errors import NncError

NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PER_FILE, TEST_RECORDS = 12, 10
TINY_MODEL = """
    model tiny {{
      input  image: {shape}
      input  label: int[B]
      logits = dense(flatten(image), {classes})
      output logits
      loss   cross_entropy(logits, label)
    }}
"""


def record_bytes(labels: np.ndarray, images: np.ndarray) -> bytes:
    """Records written plane by plane, as the format describes them (not through a reshape of the reader's)."""
    out = bytearray()
    for label, image in zip(labels, images):
        out += bytes(int(v) for v in np.atleast_1d(label))
        for c in range(3):
            for y in range(32):
                out += bytes(int(image[c, y, x]) for x in range(32))
    return bytes(out)


def arrays(fmt, counts: dict[str, int], seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """file -> (label bytes [n, labels], images [n, 3, 32, 32]) of a set in `fmt`, random."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in counts.items():
        labels = np.stack([rng.integers(0, fmt.classes[lab], n) for lab in fmt.labels], axis=1).astype(np.uint8)
        out[name] = labels, rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    return out


CIFAR10_COUNTS = {**{f: PER_FILE for f in CIFAR10_FORMAT.train_files}, CIFAR10_FORMAT.test_file: TEST_RECORDS}
CIFAR10_ARRAYS = arrays(CIFAR10_FORMAT, CIFAR10_COUNTS)
CIFAR10_FILES = {name: record_bytes(*a) for name, a in CIFAR10_ARRAYS.items()}
FINE = tuple(f"fine{i}" for i in range(100))
COARSE = tuple(f"super{i}" for i in range(20))
CIFAR100_ARRAYS = arrays(CIFAR100_FORMAT, {"train.bin": 30, "test.bin": TEST_RECORDS}, seed=1)
CIFAR100_FILES = {name: record_bytes(*a) for name, a in CIFAR100_ARRAYS.items()}


def names_file(names) -> bytes:
    return ("\n".join(names) + "\n\n").encode()   # the original ends with blank lines


def tar_gz(folder: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVE = tar_gz("cifar-10-batches-bin", {**CIFAR10_FILES, "batches.meta.txt": names_file(NAMES)})


def tiny(archive: bytes = ARCHIVE, records: dict[str, int] = CIFAR10_COUNTS) -> CifarSet:
    """CIFAR-10 with small files: an archive of a checksum computed here, and those record counts."""
    known = KnownFile(CIFAR10.archive.name, len(archive), hashlib.md5(archive).hexdigest(),
                      hashlib.sha256(archive).hexdigest())
    return CifarSet("tiny-cifar", CIFAR10_FORMAT, known, records, ("http://127.0.0.1:9/unused/",))


def write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def expected(name: str, part: str):
    files = CIFAR10_FORMAT.train_files if part == "train" else (CIFAR10_FORMAT.test_file,)
    source = CIFAR10_ARRAYS if name == "cifar10" else CIFAR100_ARRAYS
    return (np.concatenate([source[f][1] for f in files]),
            np.concatenate([source[f][0][:, -1] for f in files]).astype(np.int32))


def model(tmp_path: Path, shape: str = "[B, 3, 32, 32]", classes: int = 10, train: str = "") -> nnc.Model:
    path = tmp_path / "m.nn"
    path.write_text(textwrap.dedent(TINY_MODEL.format(shape=shape, classes=classes)) + textwrap.dedent(train))
    return nnc.load(path)


@pytest.fixture
def mirror():
    m = Mirror()
    yield m
    m.close()


def check_cifar10(data, name: str = "cifar10") -> None:
    for part in ("train", "test"):
        images, labels = expected("cifar10", part)
        got = getattr(data, part)
        assert got["image"].dtype == np.uint8 and got["image"].shape == (len(labels), 3, 32, 32)
        np.testing.assert_array_equal(got["image"], images)
        np.testing.assert_array_equal(got["label"], labels)
        assert got["label"].dtype == np.int32
    assert data.class_names == NAMES and data.classes == 10 and data.divisors == {"image": 255.0}


# ---- the format ------------------------------------------------------------------------------------


def test_a_pixel_lands_at_its_channel_row_and_column(tmp_path):
    """Red, green and blue planes of known values: byte 1 + c * 1024 + y * 32 + x is image[i, c, y, x]."""
    data = bytearray([3])
    data += bytes((y * 32 + x) % 256 for y in range(32) for x in range(32))            # red
    data += bytes((7 * x + 3 * y) % 256 for y in range(32) for x in range(32))         # green
    data += bytes(255 - (x ^ y) for y in range(32) for x in range(32))                 # blue
    files = {name: bytes(data) for name in CIFAR10_FORMAT.files}
    got = open_dataset(str(write(tmp_path / "one", files)))
    image = got.train["image"][0]
    y, x = np.mgrid[0:32, 0:32]
    np.testing.assert_array_equal(image[0], (y * 32 + x) % 256)
    np.testing.assert_array_equal(image[1], (7 * x + 3 * y) % 256)
    np.testing.assert_array_equal(image[2], 255 - (x ^ y))
    assert image[0, 1, 2] == 34 and image[1, 1, 2] == 17 and image[2, 1, 2] == 252
    assert got.train["label"].tolist() == [3] * 5


def test_images_bind_channels_first_scaled_to_unit_range(tmp_path):
    folder = write(tmp_path / "c10", CIFAR10_FILES)
    data = load_dataset(str(folder), model(tmp_path))
    images, labels = expected("cifar10", "train")
    assert data.train["image"].dtype == np.float32 and data.train["image"].shape == (5 * PER_FILE, 3, 32, 32)
    np.testing.assert_allclose(data.train["image"], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.train["label"], labels)
    mlp = load_dataset(str(folder), model(tmp_path, "[B, 3072]"))
    np.testing.assert_array_equal(mlp.train["image"], data.train["image"].reshape(-1, 3072))
    assert "image <- image [3, 32, 32] as [3072]" in mlp.describe()
    assert data.describe() == (f"data {folder}: {5 * PER_FILE} train, 0 val, {TEST_RECORDS} test (test_batch.bin); "
                               f"image, label; 10 classes")


def test_a_channels_last_input_is_refused_not_reshaped(tmp_path):
    folder = write(tmp_path / "c10", CIFAR10_FILES)
    with pytest.raises(NncError) as err:
        load_dataset(str(folder), model(tmp_path, "[B, 32, 32, 3]"))
    text = err.value.format()
    assert text.startswith(f"{folder}: error: array image does not fit the model's input 'image': got [3, 32, 32] "
                           f"per sample, channels first, expected [B, 32, 32, 3], channels last")
    assert "hint: nnc's images are channels first ([C, H, W], as in PyTorch) and are not transposed: declare " \
           "`input image: [B, 3, 32, 32]`" in text


# ---- where the files are found ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["archive", "extracted", "extracted-in-its-folder"])
def test_nnc_data_dir_holds_the_archive_or_its_extracted_files(dirs, layout):
    user, cache = dirs
    if layout == "archive":
        write(user / "tiny-cifar", {CIFAR10.archive.name: ARCHIVE})
    else:
        write(user / "tiny-cifar" / ("cifar-10-batches-bin" if layout.endswith("folder") else ""), CIFAR10_FILES)
    data = load_cifar(tiny(), download=False)
    check_cifar10(data)
    assert data.test_source == "test_batch.bin"
    assert not cache.exists()


def test_the_archive_is_downloaded_once_with_its_progress_then_read_from_the_cache(dirs, mirror, monkeypatch,
                                                                                    capsys):
    user, cache = dirs
    url = mirror.serve("cifar", {CIFAR10.archive.name: ARCHIVE})
    monkeypatch.setenv("NNC_DATASET_MIRROR", url)
    check_cifar10(load_cifar(tiny()))
    assert mirror.requests == [f"/cifar/{CIFAR10.archive.name}"]
    assert sorted(p.name for p in (cache / "tiny-cifar").iterdir()) == [CIFAR10.archive.name]
    assert capsys.readouterr().err.startswith(f"downloading {url}{CIFAR10.archive.name} ({len(ARCHIVE) / 1e3:.1f} kB)")
    mirror.requests.clear()
    check_cifar10(load_cifar(tiny()))
    assert mirror.requests == []


def test_a_download_with_the_wrong_checksum_is_discarded(dirs, mirror):
    _, cache = dirs
    damaged = ARCHIVE[:-1] + bytes([ARCHIVE[-1] ^ 1])
    url = mirror.serve("bad", {CIFAR10.archive.name: damaged})
    with pytest.raises(NncError) as err:
        load_cifar(tiny(), mirrors=[url])
    text = err.value.format()
    assert text.startswith(f"error: dataset 'tiny-cifar' is not available: {CIFAR10.archive.name} not found on disk "
                           f"and the download failed")
    assert f"note: {url}{CIFAR10.archive.name}: checksum mismatch (got sha256 " \
           f"{hashlib.sha256(damaged).hexdigest()}, expected {hashlib.sha256(ARCHIVE).hexdigest()}); discarded" in text
    assert not [p for p in (cache / "tiny-cifar").iterdir()]


def test_an_archive_in_nnc_data_dir_with_the_wrong_checksum_is_named(dirs):
    user, _ = dirs
    path = write(user / "cifar10", {CIFAR10.archive.name: ARCHIVE}) / CIFAR10.archive.name
    with pytest.raises(NncError) as err:
        open_dataset("cifar10")
    assert err.value.format().startswith(
        f"{path}: error: checksum mismatch: got sha256 {hashlib.sha256(ARCHIVE).hexdigest()}, expected "
        f"{CIFAR10.archive.sha256} (md5 {CIFAR10.archive.md5}, 170,052,171 bytes)")


def test_offline_without_files_says_what_to_put_where(dirs, monkeypatch, tmp_path):
    user, cache = dirs
    monkeypatch.setenv("NNC_DATASET_MIRROR", closed_port_url())
    model(tmp_path)
    result = run_main("run", tmp_path / "m.nn", "--data", "cifar-10", "--out", tmp_path / "run")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "error:" in line] == [
        "error: dataset 'cifar10' is not available: cifar-10-binary.tar.gz not found on disk and the download failed"]
    hint = result.stderr.split("hint: ", 1)[1]
    assert hint.startswith(f"put the original file cifar-10-binary.tar.gz in $NNC_DATA_DIR/cifar10/ "
                           f"(here {user / 'cifar10'}/) or in {cache / 'cifar10'}/; or the files it extracts to, "
                           f"data_batch_1.bin, data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, "
                           f"data_batch_5.bin and test_batch.bin, in $NNC_DATA_DIR/cifar10/ (or in its "
                           f"cifar-10-batches-bin/ folder there)")


def test_extracted_files_need_the_original_record_counts(dirs):
    """No checksums of the extracted files were published: each must hold the original's 10,000 records."""
    user, _ = dirs
    folder = write(user / "cifar10" / "cifar-10-batches-bin", CIFAR10_FILES)
    with pytest.raises(NncError) as err:
        open_dataset("cifar10")
    assert err.value.format().splitlines()[0] == (
        f"{folder / 'data_batch_1.bin'}: error: got {PER_FILE} records, expected 10,000 as in the original CIFAR-10 "
        f"file (30,730,000 bytes)")
    user100 = write(user / "cifar100", CIFAR100_FILES)
    with pytest.raises(NncError) as err:
        open_dataset("cifar100")
    assert err.value.format().splitlines()[0] == (
        f"{user100 / 'train.bin'}: error: got 30 records, expected 50,000 as in the original CIFAR-100 file "
        f"(153,700,000 bytes)")


def test_a_partly_extracted_folder_lists_what_it_lacks(dirs):
    user, _ = dirs
    files = dict(CIFAR10_FILES)
    del files["data_batch_3.bin"], files["test_batch.bin"]
    folder = write(user / "tiny-cifar", files)
    with pytest.raises(NncError) as err:
        load_cifar(tiny(), download=False)
    assert err.value.format() == (
        f"error: folder {folder} lacks data_batch_3.bin, test_batch.bin\n"
        f"hint: CIFAR-10's binary version holds the 6 files data_batch_1.bin, data_batch_2.bin, data_batch_3.bin, "
        f"data_batch_4.bin, data_batch_5.bin and test_batch.bin: put them all in {folder}/")


# ---- broken files ----------------------------------------------------------------------------------


def broken(name: str, data: bytes) -> dict[str, bytes]:
    return {**CIFAR10_FILES, name: data}


GOOD = CIFAR10_FILES["data_batch_2.bin"]
BAD_LABEL = bytearray(GOOD)
BAD_LABEL[4 * 3073] = 10


@pytest.mark.parametrize("data, message", [
    (GOOD[:-100], f"truncated: got {len(GOOD) - 100:,} bytes, {PER_FILE - 1} records of 3,073 bytes and 2,973 "
                  f"bytes over, expected whole CIFAR-10 records (a label byte and 3,072 pixel bytes each)"),
    (b"", "no records: the file is empty, expected CIFAR-10 records (a label byte and 3,072 pixel bytes each)"),
    (bytes(BAD_LABEL), "label byte 10 in record 5 is out of range: expected 0 to 9 for 10 classes"),
], ids=["truncated", "empty", "label-out-of-range"])
def test_broken_files_are_named(tmp_path, data, message):
    folder = write(tmp_path / "c10", broken("data_batch_2.bin", data))
    with pytest.raises(NncError) as err:
        open_dataset(str(folder))
    assert err.value.format().splitlines()[0] == f"{folder / 'data_batch_2.bin'}: error: {message}"


def test_a_record_count_that_differs_from_the_original_is_named(dirs):
    user, _ = dirs
    folder = write(user / "tiny-cifar", broken("test_batch.bin", CIFAR10_FILES["test_batch.bin"][:-3073]))
    with pytest.raises(NncError) as err:
        load_cifar(tiny(), download=False)
    assert err.value.format().splitlines()[0] == (
        f"{folder / 'test_batch.bin'}: error: got {TEST_RECORDS - 1} records, expected {TEST_RECORDS} as in the "
        f"original CIFAR-10 file ({TEST_RECORDS * 3073:,} bytes)")


@pytest.mark.parametrize("archive, message", [
    (ARCHIVE[:len(ARCHIVE) // 2], f"truncated archive: the file ends after {len(ARCHIVE) // 2:,} bytes, before the "
                                  f"end of the compressed data"),
    (ARCHIVE[:-8] + bytes(b ^ 0xFF for b in ARCHIVE[-8:-4]) + ARCHIVE[-4:],
     "corrupt archive (Error -3 while decompressing data: incorrect data check)"),
    (b"", "not a gzip file: got the bytes of an empty file, expected 1f 8b"),
    (gzip.compress(b"not a tar archive" * 100),
     "corrupt archive: not a tar archive inside, or a damaged one (invalid header)"),
    (tar_gz("cifar-10-batches-bin", {n: d for n, d in CIFAR10_FILES.items() if n != "data_batch_4.bin"}),
     "the archive lacks data_batch_4.bin"),
], ids=["truncated", "crc", "empty", "not-tar", "member-missing"])
def test_a_broken_archive_is_named(dirs, archive, message):
    """The checksum guards the real archive; one whose (test) checksum matches and still cannot be read is named."""
    user, _ = dirs
    path = write(user / "tiny-cifar", {CIFAR10.archive.name: archive}) / CIFAR10.archive.name
    with pytest.raises(NncError) as err:
        load_cifar(tiny(archive), download=False)
    assert err.value.format().splitlines()[0] == f"{path}: error: {message}"


def test_a_broken_member_of_an_archive_is_named_with_the_archive(dirs):
    user, _ = dirs
    archive = tar_gz("cifar-10-batches-bin", broken("data_batch_2.bin", bytes(BAD_LABEL)))
    path = write(user / "tiny-cifar", {CIFAR10.archive.name: archive}) / CIFAR10.archive.name
    with pytest.raises(NncError) as err:
        load_cifar(tiny(archive), download=False)
    assert err.value.format().splitlines()[0] == (
        f"{path} (cifar-10-batches-bin/data_batch_2.bin): error: label byte 10 in record 5 is out of range: "
        f"expected 0 to 9 for 10 classes")


# ---- class names in reports -------------------------------------------------------------------------


def test_nnc_run_on_cifar10_reports_class_names(dirs, tmp_path, monkeypatch):
    """`--data cifar10` from NNC_DATA_DIR (the real entry, with the record counts of the small files here)."""
    user, _ = dirs
    write(user / "cifar10", CIFAR10_FILES)
    monkeypatch.setitem(cifar.CIFAR_SETS, "cifar10", replace(CIFAR10, records=CIFAR10_COUNTS))
    model(tmp_path)
    result = run_main("run", "m.nn", "--data", "cifar10", "--epochs", "1", "--batch", "8", "--out", "run",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"data cifar10: {5 * PER_FILE} train, 0 val, {TEST_RECORDS} test (test_batch.bin); image, label; " \
           f"10 classes" in result.stdout
    rows = result.stdout.split("confusion matrix (rows: true class, columns: predicted):\n")[1].splitlines()[1:11]
    assert [row.split()[:2] for row in rows] == [[str(i), name] for i, name in enumerate(NAMES)]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["class_names"] == list(NAMES)


def test_class_names_come_from_the_names_file_beside_the_batches(tmp_path):
    own = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
    folder = write(tmp_path / "c10", {**CIFAR10_FILES, "batches.meta.txt": names_file(own)})
    assert open_dataset(str(folder)).class_names == own
    assert open_dataset(str(write(tmp_path / "plain", CIFAR10_FILES))).class_names == NAMES
    (folder / "batches.meta.txt").write_text("\n\n")
    with pytest.raises(NncError, match="batches.meta.txt: error: no class names: the file is empty"):
        open_dataset(str(folder))


# ---- CIFAR-100 ---------------------------------------------------------------------------------------


def cifar100_folder(tmp_path: Path) -> Path:
    return write(tmp_path / "c100" / "cifar-100-binary", {**CIFAR100_FILES, "fine_label_names.txt": names_file(FINE),
                                                          "coarse_label_names.txt": names_file(COARSE)}).parent


def test_cifar100_fine_labels_by_default_coarse_on_request(tmp_path):
    folder = cifar100_folder(tmp_path)
    fine = open_dataset(str(folder))
    np.testing.assert_array_equal(fine.train["image"], CIFAR100_ARRAYS["train.bin"][1])
    np.testing.assert_array_equal(fine.train["label"], CIFAR100_ARRAYS["train.bin"][0][:, 1])
    np.testing.assert_array_equal(fine.test["label"], CIFAR100_ARRAYS["test.bin"][0][:, 1])
    assert fine.classes == 100 and fine.class_names == FINE and fine.test_source == "test.bin"
    coarse = open_dataset(str(folder), target="coarse")
    np.testing.assert_array_equal(coarse.train["label"], CIFAR100_ARRAYS["train.bin"][0][:, 0])
    assert coarse.classes == 20 and coarse.class_names == COARSE
    assert coarse.note == "coarse labels: CIFAR-100's 20 superclasses"


def test_target_coarse_in_the_train_block_reaches_the_data(tmp_path):
    folder = cifar100_folder(tmp_path)
    m = model(tmp_path, classes=20, train=f"""
        train {{
          data   = "{folder}"
          target = coarse
        }}
    """)
    data = load_for_model(m)
    assert data.n_classes == 20 and data.class_names == COARSE
    np.testing.assert_array_equal(data.train["label"], CIFAR100_ARRAYS["train.bin"][0][:, 0])


@pytest.mark.parametrize("spec, target, message", [
    ("c100", "label", "--target: got 'label', expected fine (100 classes) or coarse (20 classes): which of "
                      "CIFAR-100's labels to learn"),
    ("c10", "coarse", "--target: got 'coarse', but {folder} has one label per image, its class"),
])
def test_a_target_cifar_does_not_have_is_refused(tmp_path, spec, target, message):
    folder = cifar100_folder(tmp_path) if spec == "c100" else write(tmp_path / "c10", CIFAR10_FILES)
    with pytest.raises(NncError) as err:
        open_dataset(str(folder), target=target)
    assert err.value.format().splitlines()[0] == "error: " + message.format(folder=folder)


def test_cifar100_label_bytes_are_checked_against_their_classes(tmp_path):
    data = bytearray(CIFAR100_FILES["test.bin"])
    data[2 * 3074] = 20    # the coarse label of record 3
    folder = write(tmp_path / "c100", {**CIFAR100_FILES, "test.bin": bytes(data)})
    with pytest.raises(NncError) as err:
        open_dataset(str(folder))
    assert err.value.format().splitlines()[0] == (
        f"{folder / 'test.bin'}: error: coarse label byte 20 in record 3 is out of range: expected 0 to 19 for 20 "
        f"classes")

