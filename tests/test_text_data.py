"""Text for character models (nnc/data/text.py): windows, vocabulary, the held-out validation text, the
vocabulary check against the model, the unigram baseline and the perplexity arithmetic, vocab.json in the
run folder, and the shipped Python documentation text. The end-to-end runs need the embedding layer."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import numpy as np
import pytest
from conftest import EXAMPLES, REPO, run_main
from sequence_support import HAS_EMBEDDING, NEEDS_EMBEDDING, bigram_source, unigram_model, window_model

from nnc.data import load_dataset
from nnc.data.sequences import Layout, cut_windows
from nnc.data.text import (
    VOCAB_FILE,
    encode,
    read_text,
    read_vocabulary,
    unigram_baseline,
    vocabulary_json,
    vocabulary_of,
)
from nnc.errors import NncError
from nnc.train import runfolder
from nnc.train.evaluator import Evaluator
from nnc.train.metrics import mean_cross_entropy

TOPICS = EXAMPLES / "data" / "python_topics.txt"


def unique_text(n: int) -> str:
    """n distinct characters in increasing code-point order: character i has id i, so a window's ids are the
    positions it covers."""
    return "".join(chr(0x100 + i) for i in range(n))


def write(tmp_path, text: str, name: str = "t.txt"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# ---- windows and vocabulary --------------------------------------------------------------------------------


def test_windows_are_T_apart_and_the_target_is_the_text_shifted_by_one():
    ids = np.arange(23, dtype=np.int32)
    shifted = Layout("text", "next", 4, True, "the model")
    x, y = cut_windows(ids, shifted, 4)
    assert x.tolist()[:2] == [[0, 1, 2, 3], [4, 5, 6, 7]] and len(x) == 5   # 5 windows of 4 + 1 fit in 23
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(y.ravel(), ids[1:21])   # every character but the first is a target once
    last_only = Layout("text", "next", 4, False, "the model")
    x, y = cut_windows(ids, last_only, 4)
    np.testing.assert_array_equal(y, x[:, -1] + 1)


def test_the_vocabulary_is_the_sorted_characters_and_survives_vocab_json(tmp_path):
    text = "hello, world\n\t\"é\\"
    vocabulary = vocabulary_of(text)
    assert vocabulary == tuple(sorted(set(text)))
    assert "".join(vocabulary[i] for i in encode(text, vocabulary)) == text
    path = tmp_path / VOCAB_FILE
    path.write_text(json.dumps(vocabulary_json(vocabulary, "t.txt")), encoding="utf-8")
    assert read_vocabulary(path) == vocabulary
    path.write_text('{"characters": ["a", "bc"]}', encoding="utf-8")
    with pytest.raises(NncError, match="vocab.json is damaged"):
        read_vocabulary(path)


def test_a_character_outside_the_vocabulary_is_named():
    with pytest.raises(NncError, match=r"the prime has the character '€' \(U\+20AC, character 3\), which is not "
                                       r"in the vocabulary of 3 characters"):
        encode("ab€", ("a", "b", "c"), "the prime")


@pytest.mark.parametrize("data, message", [
    (b"abc\xff\ndef", r"not UTF-8 text: byte 0xff at offset 3 \(line 1\)"),
    (b"", "empty file: got no characters"),
])
def test_a_text_that_cannot_be_read_is_one_error(tmp_path, data, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(NncError, match=message) as err:
        load_dataset(str(path), unigram_model(10), window=4)
    assert err.value.format().startswith(f"{path}: error: ")


def test_windows_line_ends_and_a_byte_order_mark_are_read_as_plain_text(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\r\n")
    assert read_text(path) == "one\ntwo\n"


def test_a_text_too_short_for_two_windows(tmp_path):
    path = write(tmp_path, "abcdef")
    with pytest.raises(NncError) as err:
        load_dataset(str(path), unigram_model(10), window=8)
    assert err.value.format().startswith(f"{path}: error: got 6 characters, too few for 2 windows of T + 1 = 9 "
                                         f"(T = 8 from window = 8)")


# ---- the model's sequence length ------------------------------------------------------------------------------


def test_a_symbolic_T_needs_window_and_a_number_must_agree_with_it(tmp_path):
    path = str(write(tmp_path, "abcdefghij" * 40))
    with pytest.raises(NncError) as err:
        load_dataset(path, unigram_model(10))
    assert "reads windows of T steps (text: int[B, T]), and nothing says how long they are" in err.value.message
    assert "`window = N` in the train block (or --window N)" in err.value.hint
    assert load_dataset(path, unigram_model(10), window=8).train["text"].shape[1] == 8
    assert load_dataset(path, unigram_model(10, length=5)).train["text"].shape[1] == 5
    with pytest.raises(NncError, match=r"window = 6 disagrees with model 'stand_in': its input 'text' int\[B, 5\] "
                                       r"reads windows of 5"):
        load_dataset(path, unigram_model(10, length=5), window=6)


def test_a_model_that_predicts_one_character_gets_the_one_after_the_window(tmp_path):
    text = unique_text(300)
    data = load_dataset(str(write(tmp_path, text)), window_model(300, 6))
    assert data.train["next"].shape == (len(data.train["text"]),)
    np.testing.assert_array_equal(data.train["next"], data.train["text"][:, -1] + 1)


# ---- the vocabulary against the model ---------------------------------------------------------------------------


def test_a_vocabulary_larger_than_the_model_names_both_numbers(tmp_path):
    path = write(tmp_path, "".join(chr(ord("a") + i) for i in range(20)) * 5)
    with pytest.raises(NncError) as err:
        load_dataset(str(path), window_model(12, 4))
    assert err.value.format().split("\n")[:2] == [
        f"{path}: error: the text has 20 distinct characters, but model 'stand_in' has room for 12: its logits "
        f"[B, 12] have 12 classes",
        "hint: make it 20 (the vocabulary size) or more"]
    bigger = load_dataset(str(path), window_model(25, 4))   # room to spare is fine
    assert bigger.vocabulary == vocabulary_of("abcdefghijklmnopqrst")


# ---- the validation text --------------------------------------------------------------------------------------


def spans(data, part: str) -> np.ndarray:
    """Positions [N, T + 1] each window of a unique_text covers."""
    x = data.__getattribute__(part)["text"]
    return np.concatenate([x, x[:, -1:] + 1], axis=1)


def test_validation_text_is_held_out_in_contiguous_seeded_blocks_that_no_training_window_touches(tmp_path):
    path = str(write(tmp_path, unique_text(4001)))
    data = load_dataset(path, unigram_model(4001), window=4, seed=3)
    windows = 1000
    assert data.final_split == "validation" and data.test is data.val
    assert 90 <= data.n_val <= 110                          # 10% by default, in whole blocks
    starts = data.val["text"][:, 0]
    assert np.all(np.diff(starts) % 4 == 0)
    runs = np.split(starts, np.flatnonzero(np.diff(starts) != 4) + 1)
    assert all(len(run) >= 10 for run in runs[:-1])       # blocks of about 1% of the windows
    held = set(spans(data, "val").ravel())
    assert not held & set(spans(data, "train").ravel())     # the validation text is unseen
    assert data.n_train + data.n_val + 2 * len(runs) >= windows - 2   # only the neighbours of a block are dropped
    again = load_dataset(path, unigram_model(4001), window=4, seed=3)
    np.testing.assert_array_equal(again.val["text"], data.val["text"])
    other = load_dataset(path, unigram_model(4001), window=4, seed=4)
    assert not np.array_equal(other.val["text"], data.val["text"])
    more = load_dataset(path, unigram_model(4001), window=4, seed=3, val=0.3)
    assert 280 <= more.n_val <= 320


def test_a_text_too_short_to_hold_out_a_block_leaves_nothing_to_train_on(tmp_path):
    # 8 windows of 4 + 1 make one block: validating on it leaves no training text
    with pytest.raises(NncError, match=r"val=1 windows leaves none to train on: the 8 windows are held out in "
                                       r"blocks of 8 consecutive ones"):
        load_dataset(str(write(tmp_path, unique_text(33))), unigram_model(33), window=4)


def test_the_run_header_says_how_the_text_was_cut(tmp_path):
    data = load_dataset(str(write(tmp_path, "ab\n" * 100)), unigram_model(3), window=10)
    line = data.describe()
    assert "val (validation held out in blocks of consecutive windows, seed 0; no test part: the final " \
           "evaluation is on it)" in line
    assert "300 characters, a vocabulary of 3, windows of 10 (from window = 10)" in line
    assert " test" not in line.split("(")[0]


# ---- baseline and perplexity ----------------------------------------------------------------------------------


def test_unigram_baseline_is_add_one_smoothed_training_frequencies():
    # counts 2, 1, 0 plus one: p = 3/6, 2/6, 1/6; validation characters 0 and 1: exp(-(log 1/2 + log 1/3) / 2)
    baseline = unigram_baseline(np.array([0, 0, 1]), np.array([[0, 1]]), 3)
    assert baseline.metric == "perplexity"
    assert baseline.value == pytest.approx(math.sqrt(6))
    assert baseline.text() == "baseline (unigram: each character at its training frequency): perplexity 2.449"


def test_mean_cross_entropy_of_logits_and_of_probabilities():
    logits = np.array([[[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]]], np.float32)   # [1, 2, 4]
    labels = np.array([[3, 0]])
    expected = (math.log(4) + math.log(math.exp(2) + 3) - 2) / 2
    assert mean_cross_entropy(logits, labels) == pytest.approx(expected)
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    assert mean_cross_entropy(probs, labels, probabilities=True) == pytest.approx(expected, rel=1e-6)
    assert mean_cross_entropy(np.full((5, 7), 3.0), np.arange(5)) == pytest.approx(math.log(7))
    huge = mean_cross_entropy(np.array([[0.0, 1e4]]), np.array([0]))
    assert huge == pytest.approx(1e4)


def test_a_unigram_model_scores_the_unigram_baseline_and_uniform_logits_the_vocabulary_size(tmp_path):
    text = ("the quick brown fox jumps over the lazy dog\n" * 40)
    data = load_dataset(str(write(tmp_path, text)), unigram_model(28), window=12, seed=1)
    size = len(data.vocabulary)
    counts = np.bincount(data.train["next"].ravel(), minlength=28).astype(np.float64)
    counts[:size] += 1
    b = np.log(np.where(counts > 0, counts / counts.sum(), 1e-30)).astype(np.float32)
    s = np.zeros(28, np.float32)
    model = unigram_model(28)
    result = Evaluator(model, "reference", {"s": s, "b": b}).evaluate(data.val, perplexity=True)
    assert result["perplexity"] == pytest.approx(data.baseline.value, rel=1e-4)
    uniform = Evaluator(model, "reference", {"s": s, "b": np.zeros(28, np.float32)}).evaluate(data.val,
                                                                                           perplexity=True)
    assert uniform["perplexity"] == pytest.approx(28, rel=1e-6)
    assert "perplexity" not in Evaluator(model, "reference", {"s": s, "b": b}).evaluate(data.val)


# ---- the run folder --------------------------------------------------------------------------------------------


def test_the_run_folder_keeps_the_vocabulary_and_a_resumed_run_checks_it(tmp_path):
    data = load_dataset(str(write(tmp_path, "abcabd" * 30)), unigram_model(4), window=5)
    runfolder.keep_vocabulary(tmp_path, data, resumed=False)
    saved = json.loads((tmp_path / VOCAB_FILE).read_text(encoding="utf-8"))
    assert saved["characters"] == ["a", "b", "c", "d"] and saved["size"] == 4
    runfolder.keep_vocabulary(tmp_path, data, resumed=True)
    other = load_dataset(str(write(tmp_path, "abcabe" * 30, "u.txt")), unigram_model(5), window=5)
    with pytest.raises(NncError, match="has other characters than when the run in .* started"):
        runfolder.keep_vocabulary(tmp_path, other, resumed=True)


# ---- the shipped text ---------------------------------------------------------------------------------------


def topics_script():
    spec = importlib.util.spec_from_file_location("python_topics", EXAMPLES / "data" / "python_topics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_text_is_english_of_at_least_100_kb_with_its_source_named():
    data = TOPICS.read_bytes()
    assert len(data) >= 100_000
    text = data.decode("utf-8")
    assert text.count(" the ") > 1000
    readme = (EXAMPLES / "data" / "README.md").read_text(encoding="utf-8")
    assert "python_topics.txt" in readme and "PSF" in readme and "pydoc_data/topics.py" in readme


@pytest.mark.skipif(".".join(map(str, sys.version_info[:3])) != topics_script().MADE_WITH,
                    reason="the file was written by another Python version, whose topics differ")
def test_the_shipped_text_is_what_its_script_writes():
    assert topics_script().topics_text().encode("utf-8") == TOPICS.read_bytes()


# ---- end to end: nnc run on a text --------------------------------------------------------------------------


TRAIN_TEXT = "train {\n  data = \"t.txt\"\n  optimizer = adam(lr=0.1)\n  epochs = 3\n  batch = 16\n}"


@pytest.mark.skipif(not HAS_EMBEDDING, reason=NEEDS_EMBEDDING)
@pytest.mark.parametrize("window, flags, source", [
    ("32", [], "the model"),
    # a symbolic T takes the run's window, and both engines size T from the data (not from the batch)
    ("T", ["--window", "32"], "window = 32"),
    ("T", ["--window", "32", "--backend", "reference"], "window = 32"),
])
def test_nnc_run_on_a_text_reports_perplexity_next_to_the_unigram_baseline(tmp_path, window, flags, source):
    text = TOPICS.read_text(encoding="utf-8")[:30_000]
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    size = len(set(text))
    (tmp_path / "bigram.nn").write_text(bigram_source(size, window, TRAIN_TEXT), encoding="utf-8")
    result = run_main("run", "bigram.nn", "--out", "run", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"a vocabulary of {size}, windows of 32 (from {source})" in result.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["evaluated_on"] == "validation"
    assert metrics["settings"]["window"] == (32 if flags else None)
    baseline = metrics["baseline"]["perplexity"]
    assert f"validation perplexity {metrics['perplexity']:.4g} per character" in result.stdout
    assert f"baseline (unigram: each character at its training frequency): perplexity {baseline:.4g}" \
        in result.stdout
    assert metrics["perplexity"] < baseline                  # a bigram model knows more than the frequencies
    assert read_vocabulary(tmp_path / "run" / VOCAB_FILE) == vocabulary_of(text)
    assert not (tmp_path / "run" / "confusion.png").exists()
    # nnc eval --data on the trained parameters prints what the run ended with
    evaluated = run_main("eval", "bigram.nn", "--params", "run", "--data", "t.txt", *flags[:2], cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"validation perplexity {metrics['perplexity']:.4g} per character" in evaluated.stdout
    assert f"perplexity {baseline:.4g}" in evaluated.stdout


@pytest.mark.skipif(not HAS_EMBEDDING, reason=NEEDS_EMBEDDING)
def test_nnc_run_refuses_a_model_with_too_small_a_vocabulary(tmp_path):
    (tmp_path / "t.txt").write_text("abcdefghij" * 20, encoding="utf-8")
    (tmp_path / "small.nn").write_text(bigram_source(6, "8"), encoding="utf-8")
    result = run_main("run", "small.nn", "--data", "t.txt", "--out", "run", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("t.txt: error: the text has 10 distinct characters, but model 'bigram' has "
                                    "room for 6: ")
    assert not (tmp_path / "run").exists()


def test_the_window_flag_is_a_run_setting():
    from nnc.cli.main import make_parser

    args = make_parser().parse_args(["run", str(REPO / "examples" / "xor.nn"), "--window", "50"])
    assert args.window == 50
