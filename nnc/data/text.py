"""Text for character-level models: the file, its vocabulary, windows of character ids, the unigram baseline.

A `.txt` file is read as UTF-8 (a byte-order mark is dropped, Windows line
ends become "\\n"). Its vocabulary is its distinct characters, sorted by code
point: character `vocabulary[i]` has id i. The ids are cut into windows of
T + 1 characters, T apart (nnc.data.sequences), so every character but the
first is a target once: text = window[:-1], target = window[1:] (or only
window[-1] for a model that predicts one character). Validation text is held
out in contiguous blocks (nnc.data.splits.contiguous_holdout), 10% of the
windows unless `val` says otherwise, and the final evaluation is on it: a
text has no separate test part.

The run folder keeps the vocabulary as vocab.json (`vocabulary_json`), which
`nnc generate` reads back (`read_vocabulary`). `unigram_baseline` is the
perplexity of predicting every character with its frequency in the training
text (add-one smoothed, so that a character seen only in validation text
costs a finite amount).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..fileio import reading
from ..ir import ops
from .dataset import Baseline, Dataset
from .sequences import Layout, cut_windows, too_short

TEXT_SUFFIXES = (".txt",)
VOCAB_FILE = "vocab.json"
TEXT_VAL = 0.1           # the validation share of a text when the run asks for none
MIN_WINDOWS = 2          # one to train on, one to validate


def read_text(path: Path) -> str:
    with reading(path, "a text file"):
        data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise NncError(f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start:,} (line {line})",
                       filename=str(path), hint="save the file as UTF-8") from None
    text = text.replace("\r\n", "\n")
    if not text:
        raise NncError("empty file: got no characters, expected a text to learn from", filename=str(path))
    return text


def vocabulary_of(text: str) -> tuple[str, ...]:
    return tuple(sorted(set(text)))


def encode(text: str, vocabulary: tuple[str, ...], what: str = "the text") -> np.ndarray:
    """The ids of `text`'s characters (int32); a character outside the vocabulary is an error naming it."""
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    known = np.array([ord(c) for c in vocabulary], np.uint32)   # sorted by code point, as the vocabulary
    ids = np.minimum(np.searchsorted(known, codes), len(known) - 1)
    unknown = np.flatnonzero(known[ids] != codes)
    if len(unknown):
        c = text[unknown[0]]
        raise NncError(f"{what} has the character {c!r} (U+{ord(c):04X}, character {unknown[0] + 1}), which is not "
                       f"in the vocabulary of {len(vocabulary)} characters",
                       hint=f"use only characters of the training text: {''.join(vocabulary)!r}")
    return ids.astype(np.int32)


def text_dataset(name: str, text: str, layout: Layout) -> Dataset:
    """The windows of `text` (read from the file `name`), named after the model's inputs (see the module
    docstring)."""
    vocabulary = vocabulary_of(text)
    ids = encode(text, vocabulary)
    x, y = cut_windows(ids, layout, layout.length)
    if len(x) < MIN_WINDOWS:
        raise too_short(name, len(ids), "characters", layout, MIN_WINDOWS)
    return Dataset(name, {layout.input: x, layout.target: y}, None, features=(layout.input,),
                   target=layout.target,
                   overlap=layout.overlap(layout.length), default_val=TEXT_VAL, final_on_val=True,
                   vocabulary=vocabulary, note=f"{len(text):,} characters, a vocabulary of {len(vocabulary)}, "
                                               f"windows of {layout.length} (from {layout.source})",
                   baseline=lambda train, evaluated: unigram_baseline(train[layout.target], evaluated[layout.target],
                                                                      len(vocabulary)))


def unigram_baseline(train_targets: np.ndarray, targets: np.ndarray, size: int) -> Baseline:
    """Perplexity on `targets` of predicting each character with its add-one smoothed frequency in
    `train_targets` (ids below `size`)."""
    counts = np.bincount(train_targets.ravel(), minlength=size).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    return Baseline("unigram: each character at its training frequency", "perplexity",
                    math.exp(-float(log_p[targets.ravel()].mean())))


def perplexity(mean_cross_entropy: float) -> float:
    """exp of the mean cross-entropy per character (in nats); inf when that is too large to exponentiate."""
    return math.exp(mean_cross_entropy) if mean_cross_entropy < 700 else math.inf


def vocabulary_json(vocabulary: tuple[str, ...], source: str) -> dict:
    """vocab.json: the characters in id order, and the text they came from."""
    return {"characters": list(vocabulary), "size": len(vocabulary), "text": source}


def read_vocabulary(path: Path) -> tuple[str, ...]:
    """The characters of a run folder's vocab.json, in id order."""
    with reading(path, "a vocab.json file"):
        raw = path.read_text(encoding="utf-8")
    try:
        chars = json.loads(raw)["characters"]
        if not isinstance(chars, list) or not chars or not all(isinstance(c, str) and len(c) == 1 for c in chars) \
                or chars != sorted(set(chars)):
            raise ValueError("'characters' must list distinct single characters in code-point order")
    except (ValueError, KeyError, TypeError) as err:
        raise NncError(f"{path} is damaged ({type(err).__name__}: {err})",
                       hint="it is written by `nnc run` on text data; train again to get a new one") from None
    return tuple(chars)


def check_vocabulary(model, layout: Layout, vocabulary: tuple[str, ...], where: str) -> None:
    """The model must tell apart every character of the text: its logits and the embedding of its input
    (what indexes by them, see Graph.label_classes) have at least len(vocabulary) classes."""
    g = model.graph
    for name in (layout.target, layout.input):
        classes = g.label_classes(g.inputs[name])
        if classes is not None and classes < len(vocabulary):
            raise NncError(f"the text has {len(vocabulary)} distinct characters, but model '{model.name}' has room "
                           f"for {classes}: {_indexed_by(g, name, classes)}", filename=where,
                           hint=f"make it {len(vocabulary)} (the vocabulary size) or more")


def _indexed_by(g, name: str, classes: int) -> str:
    """What gives input `name` its `classes` classes, for the message: "its logits [B, T, 50] have 50 classes"."""
    node = g.inputs[name]
    for user in g.successors(node):
        op, operands = g.op(user), g.operands(user)
        in_types = [g.type_of(o) for o in operands]
        uses = [i for i, o in enumerate(operands) if o == node and op.label_operand(i, in_types)]
        if not uses or op.labels.classes(in_types, g.nodes[user]["attrs"]) != classes:
            continue
        if op is ops.xent:
            return f"its logits {in_types[0]} have {classes} classes"
        return f"{g.nodes[user].get('layer') or op.name} reads '{name}' as ids 0 to {classes - 1}"
    return f"its input '{name}' indexes {classes} classes"
