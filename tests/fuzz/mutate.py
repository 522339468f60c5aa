"""Mutations of existing .nn files: the hostile-input half of the fuzzer.

Owns `mutate(rng, data, corpus)`, which applies one to four random edits to
the bytes of a file. Token edits (delete, duplicate, swap, replace, insert)
work on a rough tokenization so that most results still lex; byte edits
insert random and non-UTF-8 bytes; the structural ones make the inputs a
parser meets in the wild: huge numbers, deep nesting, long operator chains,
very long lines, truncated, empty and spliced files, odd line endings.
"""

from __future__ import annotations

import random
import re

TOKEN = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]*|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?|\*\*|#[^\n]*|\"[^\"\n]*\"|\s+|.",
                   re.S)
HUGE = [b"1e308", b"1e309", b"-1e308", b"99999999999999999999", b"9223372036854775808", b"2147483648",
        b"1000000000", b"100000", b"4294967297", b"1" + b"0" * 400, b"9" * 5000, b"1e-400", b"0", b"-1",
        b"0.000000001", b"1e99999", b"00000000000000000001"]
DICTIONARY = [b"model", b"def", b"train", b"input", b"param", b"output", b"loss", b"return", b"(", b")", b"[", b"]",
              b"{", b"}", b",", b"=", b":", b"+", b"-", b"*", b"/", b"@", b"**", b"int", b"f64", b"float", b"B",
              b"dense", b"conv2d", b"relu", b"flatten", b"reshape", b"concat", b"batchnorm", b"dropout", b"mean",
              b"cross_entropy", b"mse", b"transpose", b"maxpool", b"softmax", b"x", b"h1.weight", b"true", b"\"s\"",
              b"name=", b"axis=", b"-1", b"#", b"\"", b"\n", b"zeros", b"normal(0, 1)", b"l2", b"global_avgpool"]
NON_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xc0\xaf", b"\xe2\x82"]
ODD_TEXT = ["\u00e9", "\u2028", "\u0663", "\ufeff", "\x00", "\x0b", "\x0c", "\r", "\t", "\u00a0", "\U0001f600",
            "\u200b", "\x1c", "\x85"]


def tokens(data: bytes) -> list[bytes]:
    return TOKEN.findall(data)


def _expr_positions(toks: list[bytes]) -> list[int]:
    """Indices of name tokens that are plausibly expressions (not keywords)."""
    keywords = {b"model", b"def", b"train", b"input", b"param", b"output", b"loss", b"return", b"int", b"float",
                b"f64", b"f32"}
    return [i for i, t in enumerate(toks) if t[:1].isalpha() and t not in keywords] or [0]


# ---- the mutations: each (rng, data, corpus, big) -> bytes -------------------------------------


def delete_token(rng, data, corpus, big):
    toks = tokens(data)
    if toks:
        del toks[rng.randrange(len(toks))]
    return b"".join(toks)


def duplicate_token(rng, data, corpus, big):
    toks = tokens(data)
    if toks:
        i = rng.randrange(len(toks))
        toks.insert(i, toks[i] * rng.choice([1, 1, 2, 50]))
    return b"".join(toks)


def swap_tokens(rng, data, corpus, big):
    toks = tokens(data)
    if len(toks) > 1:
        i, j = rng.randrange(len(toks)), rng.randrange(len(toks))
        toks[i], toks[j] = toks[j], toks[i]
    return b"".join(toks)


def replace_token(rng, data, corpus, big):
    toks = tokens(data)
    if toks:
        i = rng.randrange(len(toks))
        toks[i] = rng.choice(DICTIONARY + toks)
    return b"".join(toks)


def insert_token(rng, data, corpus, big):
    toks = tokens(data)
    toks.insert(rng.randint(0, len(toks)), rng.choice(DICTIONARY) + rng.choice([b"", b" "]))
    return b"".join(toks)


def huge_number(rng, data, corpus, big):
    toks = tokens(data)
    numbers = [i for i, t in enumerate(toks) if t[:1].isdigit() or t[:1] == b"."] or [rng.randint(0, len(toks))]
    i = rng.choice(numbers)
    value = rng.choice(HUGE)
    if i < len(toks):
        toks[i] = value
    else:
        toks.append(value)
    return b"".join(toks)


def random_bytes(rng, data, corpus, big):
    pos = rng.randint(0, len(data))
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return data[:pos] + junk + data[pos:]


def flip_byte(rng, data, corpus, big):
    if not data:
        return data
    pos = rng.randrange(len(data))
    return data[:pos] + bytes([data[pos] ^ (1 << rng.randrange(8))]) + data[pos + 1:]


def non_utf8(rng, data, corpus, big):
    pos = rng.randint(0, len(data))
    return data[:pos] + rng.choice(NON_UTF8) + data[pos:]


def odd_text(rng, data, corpus, big):
    pos = rng.randint(0, len(data))
    return data[:pos] + rng.choice(ODD_TEXT).encode("utf-8") + data[pos:]


def deep_nesting(rng, data, corpus, big):
    """Wrap an expression in many brackets, calls or unary minuses."""
    toks = tokens(data)
    i = rng.choice(_expr_positions(toks)) if toks else 0
    depth = rng.choice([50, 99, 100, 101, 150, 199, 200, 201, 400, 1000] + ([10000] if big else []))
    kind = rng.choice(["paren", "list", "call", "neg", "brace"])
    inner = toks[i] if toks else b"x"
    if kind == "paren":
        new = b"(" * depth + inner + b")" * depth
    elif kind == "list":
        new = b"[" * depth + inner + b"]" * depth
    elif kind == "call":
        new = b"relu(" * depth + inner + b")" * depth
    elif kind == "neg":
        new = b"-" * depth + inner
    else:
        new = b"{" * depth + inner + b"}" * depth
    if toks:
        toks[i] = new
    else:
        toks = [new]
    return b"".join(toks)


def long_chain(rng, data, corpus, big):
    """x + x + ... + x with up to 100,000 terms (or ** and @ chains)."""
    toks = tokens(data)
    i = rng.choice(_expr_positions(toks)) if toks else 0
    n = rng.choice([10, 99, 100, 101, 400, 1000] + ([5000, 100000] if big else [])) if rng.random() < 0.5 \
        else int(10 ** rng.uniform(1, 4 if big else 3))
    op = rng.choice([b" + ", b" * ", b" ** ", b" @ ", b" - ", b"+"])
    inner = toks[i] if toks else b"x"
    if toks:
        toks[i] = op.join([inner] * n)
    else:
        toks = [op.join([inner] * n)]
    return b"".join(toks)


def long_line(rng, data, corpus, big):
    """A very long name, number, comment or string, or the whole file on one line."""
    kind = rng.choice(["name", "number", "comment", "string", "one_line"])
    n = rng.choice([1000, 10000, 100000] if big else [1000, 10000])
    if kind == "one_line":
        text = re.sub(rb"#[^\n]*", b"", data)
        return text.replace(b"\n", b" ")
    piece = {"name": b"a" * n, "number": b"7" * n, "comment": b"# " + b"c" * n + b"\n",
             "string": b'"' + b"s" * n + b'"'}[kind]
    toks = tokens(data)
    toks.insert(rng.randint(0, len(toks)), b" " + piece + b" ")
    return b"".join(toks)


def truncate(rng, data, corpus, big):
    return data[:rng.randint(0, len(data))]


def empty(rng, data, corpus, big):
    return rng.choice([b"", b" ", b"\n\n", b"# only a comment", b"\xef\xbb\xbf", b"\x00"])


def splice(rng, data, corpus, big):
    other = rng.choice(corpus)
    return data[:rng.randint(0, len(data))] + other[rng.randint(0, len(other)):]


def repeat_file(rng, data, corpus, big):
    return data + b"\n" + rng.choice([data, rng.choice(corpus)])


def line_endings(rng, data, corpus, big):
    return data.replace(b"\n", rng.choice([b"\r\n", b"\r", b"\n\n", b"\x0c", "\u2028".encode("utf-8")]))


def shuffle_lines(rng, data, corpus, big):
    lines = data.split(b"\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


MUTATIONS = [delete_token, duplicate_token, swap_tokens, replace_token, insert_token, huge_number, random_bytes,
             flip_byte, non_utf8, odd_text, deep_nesting, long_chain, long_line, truncate, empty, splice,
             repeat_file, line_endings, shuffle_lines]
# Cheap edits are common; the structural ones that make big inputs are rarer.
WEIGHTS = [8, 5, 5, 8, 6, 6, 3, 3, 2, 2, 2, 1, 1, 2, 1, 2, 1, 1, 2]


def mutate(rng: random.Random, data: bytes, corpus: list[bytes], big: bool = True) -> tuple[bytes, list[str]]:
    """One to four random edits of `data`; returns the result and the names of the edits applied.

    `big=False` keeps the structural edits to sizes that take milliseconds (the test-suite run).
    """
    applied = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
        m = rng.choices(MUTATIONS, WEIGHTS)[0]
        data = m(rng, data, corpus, big)
        applied.append(m.__name__)
    return data, applied
