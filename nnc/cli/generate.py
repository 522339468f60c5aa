"""`nnc generate`: text sampled from a trained character-level model, one character at a time.

The model reads character ids (`input text: int[B, T]`) and its evaluated
output (nnc.runtime.task) holds the logits of the next character: `[B, T, V]`
at every position (the last one is read) or `[B, V]` after the window. The
vocabulary is the run folder's vocab.json (written by `nnc run` on a text).
Starting from the prime, each step feeds the last T characters (a shorter
context is padded on the left with spaces, or the vocabulary's first character
when it has no space), or the whole context when T is symbolic, and samples
the next character from softmax(logits / temperature); temperature 0 takes the
most likely one. The same seed gives the same text.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.text import VOCAB_FILE, encode, read_vocabulary
from ..errors import NncError
from ..ir import ops
from ..runtime.execute import run_graph
from ..runtime.task import task_of
from .options import backend_option, gather_params, load_model, model_options, params_options, positive_int

PAD = " "   # what a context shorter than the model's T is padded with on the left


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="sample text from a trained character-level model",
                       description="Sample text from a character model trained by `nnc run` on a text.")
    model_options(p)
    params_options(p, seed_help="seed for the sampling (and --random-params); the same seed writes the same text "
                   "(default 0)")
    p.add_argument("--prime", required=True, metavar="TEXT", help="the text to continue (its characters must be in "
                   "the vocabulary)")
    p.add_argument("--length", type=positive_int, default=200, metavar="N", help="characters to add (default 200)")
    p.add_argument("--temperature", type=temperature, default=1.0, metavar="X", help="divides the logits: below 1 "
                   "more likely characters, above 1 more surprising ones; 0 always the most likely (default 1)")
    backend_option(p, "native code (default) or the NumPy reference interpreter", default="llvm")
    p.set_defaults(func=cmd_generate)


def temperature(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, got {text}")
    return v


@dataclass(frozen=True)
class CharacterModel:
    """Where a model reads character ids and writes the next character's logits."""

    input: str
    output: int              # its node
    length: int | None       # T, or None when symbolic: the whole context is fed
    every_position: bool     # the output is [B, T, V] (else [B, V])
    probabilities: bool      # the output is a softmax's (else logits)


def character_model(model) -> CharacterModel:
    g = model.graph
    task = task_of(g)
    ids = [name for name, t in model.inputs.items() if not t.is_float and name != task.target]
    if len(ids) != 1 or len(model.inputs[ids[0]].shape) != 2:
        listed = ", ".join(f"{n} ({t})" for n, t in model.inputs.items())
        raise NncError(f"model '{model.name}' does not read characters: generate needs one input of character ids "
                       f"int[B, T] besides the target, got {listed}",
                       hint="a character model declares e.g. `input text: int[B, T]` and `input next: int[B, T]`")
    name = ids[0]
    dim = model.inputs[name].shape[1]
    if task.output is None:
        raise NncError(f"model '{model.name}' has no output to sample from", hint="add `output logits`")
    node = g.outputs[task.output]
    shape = g.type_of(node).shape
    every = len(shape) == 3 and shape[1] == dim
    if not (every or len(shape) == 2) or not isinstance(shape[-1], int):
        raise NncError(f"model '{model.name}''s output '{task.output}' is {g.type_of(node)}, expected the logits "
                       f"of the next character: [B, {dim}, V] at every position or [B, V] after the window")
    return CharacterModel(name, node, dim if isinstance(dim, int) else None, every, g.op(node) is ops.softmax)


def sample_text(logits_of: Callable[[np.ndarray], np.ndarray], vocabulary: tuple[str, ...], prime: str,
                length: int, temperature: float, seed: int, context: int | None) -> str:
    """`prime` and `length` characters sampled after it; `logits_of(ids [1, L])` gives the next character's
    logits [V] (V >= the vocabulary: the ids beyond it are never sampled); `context`: feed the last `context`
    characters (padded on the left), or None for all of them."""
    if not prime:
        raise NncError("the prime is empty: got no characters, expected some text to continue",
                       hint='give the start of a text, e.g. --prime "The "')
    ids = list(encode(prime, vocabulary, "the prime"))
    pad = vocabulary.index(PAD) if PAD in vocabulary else 0
    rng = np.random.default_rng(seed)
    for _ in range(length):
        window = ids if context is None else [pad] * (context - len(ids)) + ids[-context:]
        logits = logits_of(np.array([window], np.int32))
        if len(logits) < len(vocabulary):
            raise NncError(f"the model's logits have {len(logits)} classes, fewer than the {len(vocabulary)} "
                           f"characters of the vocabulary", hint="give the run folder this model was trained in")
        ids.append(next_id(logits[:len(vocabulary)], temperature, rng))
    return prime + "".join(vocabulary[i] for i in ids[len(prime):])


def next_id(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """A class drawn from softmax(logits / temperature); the most likely one (the first on a tie) at 0."""
    logits = np.asarray(logits, np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    p = np.exp(z - z.max())
    cumulative = np.cumsum(p)
    return min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")), len(p) - 1)


def graph_logits(g, params: dict, cm: CharacterModel, backend: str) -> Callable[[np.ndarray], np.ndarray]:
    """logits_of(ids [1, L]) for sample_text: the model run on the ids, its output at the last position."""
    def logits_of(ids: np.ndarray) -> np.ndarray:
        out = run_graph(g, {cm.input: ids}, params, [cm.output], backend=backend)[cm.output]
        last = out[0, -1] if cm.every_position else out[0]
        if cm.probabilities:
            with np.errstate(divide="ignore"):
                return np.log(last)
        return last
    return logits_of


def vocabulary_file(params: str | None) -> Path:
    """The vocab.json of the run that --params names (a run folder, or a file in one)."""
    if params is None:
        raise NncError("no vocabulary: generate reads the characters from the run folder of `nnc run`",
                       hint="give --params RUN_DIR, the folder nnc run printed")
    path = Path(params)
    found = (path if path.is_dir() else path.parent) / VOCAB_FILE
    if not found.exists():
        raise NncError(f"no {VOCAB_FILE} in {found.parent}: generate needs the vocabulary of the text the model was "
                       f"trained on", hint="give --params the run folder of `nnc run` on a .txt text")
    return found


def cmd_generate(args) -> int:
    model = load_model(args)
    cm = character_model(model)
    vocabulary = read_vocabulary(vocabulary_file(args.params))
    params = gather_params(args, model)
    text = sample_text(graph_logits(model.graph, params, cm, args.backend), vocabulary, args.prime, args.length,
                       args.temperature, args.seed, cm.length)
    print(text)
    return 0
