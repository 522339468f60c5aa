"""`nnc generate` (nnc/cli/generate.py): the sampling of the next character, the context fed to the model, the
vocabulary from the run folder and the errors; on stand-in models built from ops every nnc has, and end to
end on a character model once the embedding layer exists."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import EXAMPLES, run_main
from sequence_support import (
    HAS_EMBEDDING,
    NEEDS_EMBEDDING,
    bigram_source,
    successor_weights,
    unigram_model,
    window_model,
)

from nnc.cli.generate import character_model, graph_logits, next_id, sample_text
from nnc.data.text import VOCAB_FILE, vocabulary_json
from nnc.errors import NncError

ALPHABET = tuple("abcdefgh")


# ---- the next character ----------------------------------------------------------------------------------------


def test_temperature_zero_takes_the_most_likely_class_and_the_first_on_a_tie():
    rng = np.random.default_rng(0)
    assert next_id(np.array([0.1, 3.0, -1.0]), 0.0, rng) == 1
    assert next_id(np.array([2.0, 1.0, 2.0]), 0.0, rng) == 0


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_samples_follow_softmax_of_the_logits_over_the_temperature(temperature):
    logits = np.array([1.0, 0.0, -1.0, 2.0])
    rng = np.random.default_rng(7)
    draws = np.array([next_id(logits, temperature, rng) for _ in range(20_000)])
    p = np.exp(logits / temperature) / np.exp(logits / temperature).sum()
    frequencies = np.bincount(draws, minlength=4) / len(draws)
    # four standard errors of a frequency over 20,000 draws is below 0.015
    np.testing.assert_allclose(frequencies, p, atol=0.015)


def test_the_same_seed_gives_the_same_text_and_another_seed_another():
    def logits_of(ids):
        return np.zeros(len(ALPHABET))
    one = sample_text(logits_of, ALPHABET, "ab", 40, 1.0, 3, None)
    assert one == sample_text(logits_of, ALPHABET, "ab", 40, 1.0, 3, None)
    assert one != sample_text(logits_of, ALPHABET, "ab", 40, 1.0, 4, None)
    assert one.startswith("ab") and len(one) == 42 and set(one) <= set(ALPHABET)


# ---- the context ------------------------------------------------------------------------------------------------


def recording_model(fed: list):
    """logits that favour the id after the last one fed, recording what was fed."""
    def logits_of(ids):
        fed.append(ids.copy())
        logits = np.zeros(len(ALPHABET) + 2)   # wider than the vocabulary: the extra ids are never sampled
        logits[(ids[0, -1] + 1) % len(ALPHABET)] = 5.0
        logits[-1] = 100.0
        return logits
    return logits_of


def test_a_fixed_T_gets_the_last_T_characters_padded_on_the_left_with_spaces():
    fed = []
    vocabulary = (" ", *ALPHABET)
    text = sample_text(recording_model(fed), vocabulary, "ab", 5, 0.0, 0, 4)
    assert text == "abcdefg"                                     # ids beyond the vocabulary are never drawn
    assert [f.shape for f in fed] == [(1, 4)] * 5
    space = vocabulary.index(" ")
    assert fed[0].tolist() == [[space, space, 1, 2]]              # " " " " a b
    assert fed[-1].tolist()[0] == [vocabulary.index(c) for c in text[-5:-1]]
    fed.clear()
    sample_text(recording_model(fed), ALPHABET, "ab", 1, 0.0, 0, 4)   # no space: the first character pads
    assert fed[0].tolist() == [[0, 0, 0, 1]]


def test_a_symbolic_T_gets_the_whole_context():
    fed = []
    text = sample_text(recording_model(fed), ALPHABET, "abc", 4, 0.0, 0, None)
    assert text == "abcdefg"                                     # each character the successor of the last
    assert [f.shape[1] for f in fed] == [3, 4, 5, 6]
    assert fed[-1].tolist() == [[0, 1, 2, 3, 4, 5]]


def test_a_prime_character_outside_the_vocabulary_is_named():
    with pytest.raises(NncError) as err:
        sample_text(recording_model([]), ALPHABET, "abz", 3, 1.0, 0, None)
    assert err.value.message == ("the prime has the character 'z' (U+007A, character 3), which is not in the "
                                 "vocabulary of 8 characters")
    with pytest.raises(NncError, match="the prime is empty"):
        sample_text(recording_model([]), ALPHABET, "", 3, 1.0, 0, None)


def test_logits_narrower_than_the_vocabulary_are_refused():
    with pytest.raises(NncError, match="the model's logits have 3 classes, fewer than the 8 characters"):
        sample_text(lambda ids: np.zeros(3), ALPHABET, "a", 1, 1.0, 0, None)


# ---- stand-in models ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_a_model_that_predicts_after_its_window_generates_successors(backend):
    model = window_model(len(ALPHABET), 3)
    cm = character_model(model)
    assert (cm.input, cm.length, cm.every_position, cm.probabilities) == ("text", 3, False, False)
    params = {"w": successor_weights(len(ALPHABET), 3)}
    text = sample_text(graph_logits(model.graph, params, cm, backend), ALPHABET, "ce", 6, 0.0, 0, cm.length)
    assert text == "cefghabc"


def test_a_model_with_logits_at_every_position_is_read_at_the_last():
    model = unigram_model(len(ALPHABET))
    cm = character_model(model)
    assert (cm.length, cm.every_position) == (None, True)
    s = np.zeros(len(ALPHABET), np.float32)
    s[3] = 50.0                               # the character 'd' predicts itself; the rest follow b
    b = np.zeros(len(ALPHABET), np.float32)
    b[6] = 10.0
    logits_of = graph_logits(model.graph, {"s": s, "b": b}, cm, "reference")
    assert sample_text(logits_of, ALPHABET, "ad", 2, 0.0, 0, cm.length) == "addd"
    assert sample_text(logits_of, ALPHABET, "da", 2, 0.0, 0, cm.length) == "dagg"


def test_a_model_that_reads_no_characters_is_refused():
    import nnc

    with pytest.raises(NncError, match="model 'mnist_mlp' does not read characters: generate needs one input of "
                                       r"character ids int\[B, T\] besides the target"):
        character_model(nnc.load(EXAMPLES / "mnist_mlp.nn"))


# ---- the command ------------------------------------------------------------------------------------------------


def test_the_command_refuses_a_model_without_characters_and_a_negative_temperature():
    model = str(EXAMPLES / "mnist_mlp.nn")
    result = run_main("generate", model, "--prime", "a")
    assert result.returncode == 1 and "does not read characters" in result.stderr
    result = run_main("generate", model, "--prime", "a", "--temperature", "-1")
    assert result.returncode == 2 and "expected a number of 0 or more, got -1" in result.stderr


@pytest.mark.skipif(not HAS_EMBEDDING, reason=NEEDS_EMBEDDING)
def test_generate_samples_from_a_trained_character_model(tmp_path):
    text = "abcdefgh " * 300
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    (tmp_path / "bigram.nn").write_text(bigram_source(9, "16", 'train {\n  data = "t.txt"\n  optimizer = '
                                                            'adam(lr=0.1)\n  epochs = 5\n}'), encoding="utf-8")
    trained = run_main("run", "bigram.nn", "--out", "run", "--quiet", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    greedy = run_main("generate", "bigram.nn", "--params", "run", "--prime", "cd", "--length", "12",
                      "--temperature", "0", cwd=tmp_path)
    assert greedy.returncode == 0, greedy.stderr
    assert greedy.stdout == "cdefgh abcdefg\n"                 # the bigram has learnt what follows what
    sampled = [run_main("generate", "bigram.nn", "--params", "run/checkpoint.npz", "--prime", "a", "--seed", str(s),
                        cwd=tmp_path).stdout for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] and len(sampled[0]) == 202
    bad = run_main("generate", "bigram.nn", "--params", "run", "--prime", "abz", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("error: the prime has the character 'z'")
    (tmp_path / "run" / VOCAB_FILE).unlink()
    missing = run_main("generate", "bigram.nn", "--params", "run", "--prime", "a", cwd=tmp_path)
    assert missing.returncode == 1 and f"no {VOCAB_FILE} in run" in missing.stderr


def test_vocab_json_is_found_next_to_a_checkpoint(tmp_path):
    from nnc.cli.generate import vocabulary_file

    (tmp_path / VOCAB_FILE).write_text(json.dumps(vocabulary_json(ALPHABET, "t.txt")), encoding="utf-8")
    assert vocabulary_file(str(tmp_path)) == tmp_path / VOCAB_FILE
    assert vocabulary_file(str(tmp_path / "checkpoint.npz")) == tmp_path / VOCAB_FILE
    with pytest.raises(NncError, match="no vocabulary: generate reads the characters from the run folder"):
        vocabulary_file(None)
