"""Stand-in sequence models for the data and generate tests, built as graphs from ops every nnc has (one_hot,
reshape, matmul, softmax, cross-entropy on [B, classes]), so the data side is tested without the embedding
and recurrent layers. A stand-in has what nnc.data and the evaluator read of a model: `graph`, `inputs`,
`name`.

The target input is declared first: nnc.runtime.task takes the first int input that something indexes by as
the target, and one_hot indexes by the character ids too (the embedding's ids are told apart from labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import nnc
from nnc.front.layers import FUNCTIONS
from nnc.ir import ops
from nnc.ir.graph import Emitter, Graph
from nnc.ir.initializer import Init
from nnc.ir.types import TensorType

HAS_EMBEDDING = "embedding" in FUNCTIONS
NEEDS_EMBEDDING = "needs the embedding(ids, vocab, dim) layer of issue 13"


@dataclass
class StandIn:
    graph: Graph
    name: str = "stand_in"

    @property
    def inputs(self) -> dict:
        return {n: self.graph.type_of(v) for n, v in self.graph.inputs.items()}


def _param(g: Graph, name: str, shape: tuple) -> int:
    t = TensorType(shape)
    node = g.add_op(ops.param, (), {"name": name, "type": t, "init": Init("zeros"), "trainable": True}, type=t,
                    layer="param")
    g.params[name] = node
    return node


def unigram_model(classes: int, length="T") -> StandIn:
    """logits [B, T, classes] = one_hot(text) · s + b for every position, scored against next int[B, T] by the
    squared error of its softmax (a loss that reads next through one_hot). With s = 0 it predicts every
    character with probabilities softmax(b): a unigram model."""
    g = Graph(model="stand_in")
    e = Emitter(g)
    nxt = e.input("next", TensorType(("B", length), "int32"))
    text = e.input("text", TensorType(("B", length), "int32"))
    s, b = _param(g, "s", (classes,)), _param(g, "b", (classes,))
    logits = e.add(e.mul(e.one_hot(text, depth=classes, dtype="float32"), s), b)
    g.outputs["logits"] = logits
    diff = e.sub(e.softmax(logits, axis=-1), e.one_hot(nxt, depth=classes, dtype="float32"))
    g.loss = e.mean(e.square(diff), axis=None)
    return StandIn(g)


def window_model(classes: int, length: int) -> StandIn:
    """logits [B, classes] = reshape(one_hot(text), [B, T·classes]) @ w after a window text int[B, T], with
    cross_entropy against next int[B]: a model that predicts one character after the window."""
    g = Graph(model="stand_in")
    e = Emitter(g)
    nxt = e.input("next", TensorType(("B",), "int32"))
    text = e.input("text", TensorType(("B", length), "int32"))
    w = _param(g, "w", (length * classes, classes))
    flat = e.reshape(e.one_hot(text, depth=classes, dtype="float32"), shape=("B", length * classes))
    logits = e.matmul(flat, w)
    g.outputs["logits"] = logits
    g.loss = e.mean(e.xent(logits, nxt), axis=None)
    return StandIn(g)


def successor_weights(classes: int, length: int, scale: float = 10.0) -> np.ndarray:
    """w of window_model whose logits favour the id after the window's last one: (last + 1) mod classes."""
    w = np.zeros((length * classes, classes), np.float32)
    last = (length - 1) * classes
    for c in range(classes):
        w[last + c, (c + 1) % classes] = scale
    return w


def bigram_source(vocab: int, window: str = "T", train: str = "") -> str:
    """A character model in the language: a bigram table as an embedding whose rows are the next character's
    logits."""
    return f"""
model bigram {{
  input  text: int[B, {window}]
  input  next: int[B, {window}]
  logits = embedding(text, {vocab}, {vocab})
  output logits
  loss   cross_entropy(logits, next)
}}
{train}
"""


def load_source(tmp_path, text: str, name: str = "m.nn"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return nnc.load(path)
