"""The decoded-array cache of checksummed dataset files (nnc.data.decoded): a second load reads the arrays
instead of decompressing, equal to the first; a damaged entry is decoded again; no cache costs only time."""

from __future__ import annotations

import numpy as np
import pytest
from test_data import TINY, TINY_FILES, synthetic_arrays, write_folder

from nnc.data import idx
from nnc.data.decoded import decoded_folder
from nnc.data.images import IDX_FILE_NAMES, load_image_set


@pytest.fixture
def tiny(dirs):
    user, _ = dirs
    write_folder(user / "tiny", TINY_FILES)
    return decoded_folder("tiny")


def assert_tiny(data):
    arrays = synthetic_arrays()
    np.testing.assert_array_equal(data.train["image"], arrays["train-images"])
    np.testing.assert_array_equal(data.train["label"], arrays["train-labels"])
    np.testing.assert_array_equal(data.test["image"], arrays["t10k-images"])
    np.testing.assert_array_equal(data.test["label"], arrays["t10k-labels"])
    assert data.train["label"].dtype == np.int32


def refuse_to_decode(monkeypatch):
    def decode(data, path, magic):
        raise AssertionError(f"{path} was decoded again")
    monkeypatch.setattr(idx, "parse_idx", decode)


def test_a_second_load_reads_the_decoded_arrays(tiny, monkeypatch):
    assert_tiny(load_image_set(TINY))
    entries = sorted(p.name.split("-")[0] for p in tiny.iterdir())
    assert entries == sorted(f.sha256 for f in TINY.files)
    refuse_to_decode(monkeypatch)
    assert_tiny(load_image_set(TINY))


def test_a_damaged_entry_is_decoded_again_and_replaced(tiny, monkeypatch):
    load_image_set(TINY)
    images = next(tiny.glob(f"{TINY.files[0].sha256}-*.npy"))
    raw = bytearray(images.read_bytes())
    raw[-1] ^= 0xFF                      # one pixel: the file still loads, its CRC-32 does not match
    images.write_bytes(bytes(raw))
    truncated = next(tiny.glob(f"{TINY.files[2].sha256}-*.npy"))
    truncated.write_bytes(truncated.read_bytes()[:100])
    assert_tiny(load_image_set(TINY))
    assert len(list(tiny.iterdir())) == len(IDX_FILE_NAMES)   # the damaged ones replaced, not added to
    refuse_to_decode(monkeypatch)
    assert_tiny(load_image_set(TINY))


def test_a_cache_that_cannot_be_written_costs_only_time(tiny):
    tiny.parent.mkdir(parents=True)
    tiny.write_text("a file where the folder would go")
    assert_tiny(load_image_set(TINY))
    assert_tiny(load_image_set(TINY))


def test_files_without_checksums_are_not_cached(dirs, tmp_path):
    from nnc.data.images import load_idx_folder

    folder = write_folder(tmp_path / "mine", TINY_FILES)
    assert_tiny(load_idx_folder(folder, "mine"))
    assert not decoded_folder("mine").exists()
