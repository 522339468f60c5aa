"""Parsing: .nn source text -> the AST of nnc/ast.py, with located syntax errors.

Owns the Lark parser (built once from grammars/nn.lark, which is found next to
the package in a source checkout and inside it in an installed wheel) and the
translation of Lark's exceptions into `NncError`s.
"""

from __future__ import annotations

import functools
import math
import sys
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, v_args
from lark.visitors import Transformer_NonRecursive

from ..errors import Loc, NncError, Source, Span
from ..fileio import cache_dir, reading
from . import ast

DTYPES = {"float": "float32", "f32": "float32", "f64": "float64", "int": "int32"}
MAX_NESTING = 200
# Every pass after the parser recurses over expressions, so their depth is bounded here, where a
# 100,000-term `x + x + ... + x` chain or a run of unary minuses is still a flat token stream.
MAX_EXPR_DEPTH = 100
MAX_INT = 2**63 - 1            # integer literals are int64
MAX_SOURCE_CHARS = 2**20       # Lark parses ~40,000 tokens a second: a bigger file would seem to hang
_EXPR_RULES = {"add", "sub", "mul", "div", "matmul", "pow", "neg", "number", "var", "string", "call", "list",
               "kwarg", "index"}


def grammar_text() -> str:
    """The grammar, from the wheel (nnc/grammars) or the source tree (grammars/)."""
    packaged = resources.files("nnc").joinpath("grammars", "nn.lark")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / "grammars" / "nn.lark").read_text(encoding="utf-8")


@functools.cache
def parser() -> Lark:
    """The LALR parser. Building its tables takes longer than the rest of `nnc check`, so Lark keeps them in
    nnc's cache folder, under the hash of the grammar and the options (rebuilt when either changes, or when
    the file cannot be read)."""
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        cache = str(folder / "grammar.lark-cache")
    except OSError:
        cache = False
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True, cache=cache)


def _span(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _token_span(tok: Token) -> Span:
    return Span(tok.line, tok.column, tok.end_line, tok.end_column)


def _number(text: str) -> float | int:
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


@v_args(inline=True, meta=True)
class _ToAst(Transformer_NonRecursive):
    def __init__(self, source: Source):
        super().__init__()
        self.source = source

    def _loc(self, meta) -> Loc:
        return Loc(self.source, _span(meta))

    def _tloc(self, tok: Token) -> Loc:
        return Loc(self.source, _token_span(tok))

    # top level
    def start(self, meta, *items):
        return ast.Program(
            models=tuple(i for i in items if isinstance(i, ast.Model)),
            blocks=tuple(i for i in items if isinstance(i, ast.Block)),
            trains=tuple(i for i in items if isinstance(i, ast.Train)),
            source=self.source,
        )

    def model(self, meta, name, *body):
        return ast.Model(str(name), tuple(body), self._loc(meta), self._tloc(name))

    def block(self, meta, name, *rest):
        params = tuple(ast.Var(str(t), self._tloc(t)) for t in rest if isinstance(t, Token) and t.type == "NAME")
        body = tuple(s for s in rest if not isinstance(s, Token) and s is not None)
        return ast.Block(str(name), params, body, self._loc(meta), self._tloc(name))

    def train(self, meta, *settings):
        return ast.Train(tuple(settings), self._loc(meta))

    def setting(self, meta, name, value):
        return ast.Setting(str(name), value, self._loc(meta), self._tloc(name))

    # statements
    def input_decl(self, meta, name, typ):
        return ast.InputDecl(str(name), typ, self._loc(meta), self._tloc(name))

    def param_decl(self, meta, name, typ, init):
        return ast.ParamDecl(str(name), typ, init, self._loc(meta), self._tloc(name))

    def assign(self, meta, target, value):
        return ast.Assign(str(target), value, self._loc(meta), self._tloc(target))

    def unpack(self, meta, *rest):
        *names, value = rest
        return ast.Unpack(tuple(ast.Var(str(n), self._tloc(n)) for n in names), value, self._loc(meta))

    def output_stmt(self, meta, *names):
        return ast.Output(tuple(ast.Var(str(n), self._tloc(n)) for n in names), self._loc(meta))

    def loss_stmt(self, meta, value):
        return ast.LossStmt(value, self._loc(meta))

    def named_loss(self, meta, name, value, *trains):
        return ast.LossStmt(value, self._loc(meta), str(name), tuple(ast.Var(str(t), self._tloc(t)) for t in trains))

    def return_stmt(self, meta, *values):
        if len(values) == 1:
            return ast.Return(values[0], self._loc(meta))
        first, last = values[0].loc.span, values[-1].loc.span
        span = Span(first.line, first.column, last.end_line, last.end_column)
        return ast.Return(ast.Values(values, Loc(self.source, span)), self._loc(meta))

    # types
    def scalar_type(self, meta, dtype):
        return ast.TypeSpec(DTYPES[str(dtype)], None, self._loc(meta))

    def tensor_type(self, meta, dtype, *dims):
        dims = tuple(d for d in dims if d is not None)
        return ast.TypeSpec(DTYPES[str(dtype)] if dtype is not None else "float32", dims, self._loc(meta))

    def dim_int(self, meta, tok):
        return int(tok)

    def dim_sym(self, meta, tok):
        return str(tok)

    # expressions
    def _binop(op):  # noqa: N805 - a factory used in the class body
        def rule(self, meta, left, right):
            return ast.BinOp(op, left, right, self._loc(meta))
        return rule

    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    div = _binop("/")
    matmul = _binop("@")
    pow = _binop("**")

    def neg(self, meta, operand):
        return ast.Neg(operand, self._loc(meta))

    def unary(self, meta, operand):  # unary plus
        return operand

    def number(self, meta, tok):
        return ast.Number(_number(str(tok)), self._loc(meta))

    def string(self, meta, tok):
        return ast.String(str(tok)[1:-1], self._loc(meta))

    def var(self, meta, tok):
        return ast.Var(str(tok), self._loc(meta))

    def list(self, meta, *items):
        return ast.ListExpr(tuple(i for i in items if i is not None), self._loc(meta))

    def index(self, meta, value, *subscripts):
        return ast.Index(value, subscripts, self._loc(meta))

    def sub_index(self, meta, value):
        return value

    def sub_slice(self, meta, start, stop, step):
        return ast.Slice(start, stop, step, self._loc(meta))

    def sub_ellipsis(self, meta):
        return ast.EllipsisIndex(self._loc(meta))

    def kwarg(self, meta, name, value):
        return ast.Kwarg(str(name), value, self._loc(meta))

    def call(self, meta, name, *args):
        args = [a for a in args if a is not None]
        positional = tuple(a for a in args if not isinstance(a, ast.Kwarg))
        kwargs = tuple(a for a in args if isinstance(a, ast.Kwarg))
        return ast.Call(str(name), positional, kwargs, self._loc(meta), self._tloc(name))


# Readable names for the grammar's terminals in "expected ..." messages.
_TERMINAL_NAMES = {
    "NAME": "a name", "NUMBER": "a number", "INT": "an integer", "STRING": "a string",
    "DTYPE": "a dtype (float, f64, int)", "$END": "end of file",
}


_EXPR_START = {"NAME", "NUMBER", "LPAR", "LSQB", "MINUS"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "AT", "__ANON_0", "LSQB"}  # and '[' after a value: indexing
_STMT_START = {"INPUT", "PARAM", "OUTPUT", "LOSS", "RETURN"}


def _expected_terminals(err: UnexpectedInput) -> set[str]:
    """The terminals that could really come next.

    LALR lookahead sets (`err.expected`) include tokens that only become
    invalid after pending reductions, such as ')' after a complete statement;
    the interactive parser tries each one and keeps those it accepts.
    """
    ip = getattr(err, "interactive_parser", None)
    if ip is not None:
        try:
            return set(ip.accepts())
        except Exception:  # noqa: BLE001 - fall back to Lark's own set
            pass
    return set(getattr(err, "expected", None) or getattr(err, "allowed", None) or ())


def _brackets(source: Source):
    """Yield (char, line, column) for every bracket outside comments and strings."""
    line, col = 1, 0
    in_comment = in_string = False
    for ch in source.text:
        col += 1
        if ch == "\n":
            line, col = line + 1, 0
            in_comment = in_string = False
        elif in_comment:
            continue
        elif ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch == "#":
            in_comment = True
        elif ch in "([{)]}":
            yield ch, line, col


def _unclosed_bracket(source: Source, before: tuple[int, int] | None = None) -> tuple[str, int, int] | None:
    """The innermost bracket still open at (line, column) `before`, or at the end: (char, line, column)."""
    stack = []
    for ch, line, col in _brackets(source):
        if before is not None and (line, col) >= before:
            break
        if ch in "([{":
            stack.append((ch, line, col))
        elif stack:
            stack.pop()
    return stack[-1] if stack else None


def _describe_expected(expected: set[str]) -> str:
    p = parser()
    names = set()
    if _STMT_START <= expected:
        names.add("a statement")
        expected = expected - _STMT_START - {"NAME"}
    if _EXPR_START <= expected:
        names.add("an expression")
        expected = expected - _EXPR_START - {"STRING", "PLUS"}
    if {"PLUS", "STAR", "SLASH"} <= expected:
        names.add("an operator")
        expected = expected - _OPERATORS
    for term in expected:
        if term in _TERMINAL_NAMES:
            names.add(_TERMINAL_NAMES[term])
            continue
        try:
            pattern = p.get_terminal(term).pattern
        except KeyError:
            names.add(term)
            continue
        names.add(f"'{pattern.value}'" if pattern.type == "str" else term.lower())
    ordered = sorted(names, key=lambda s: (not s.startswith("'"), s))
    if len(ordered) == 1:
        return ordered[0]
    if len(ordered) > 6:
        return "one of " + ", ".join(ordered[:6]) + ", ..."
    return "one of " + ", ".join(ordered)


_CLOSER = {"(": "RPAR", "[": "RSQB", "{": "RBRACE"}


def _syntax_error(err: UnexpectedInput, source: Source) -> NncError:
    line, column = max(err.line, 1), max(err.column, 1)
    width = 1
    hint = None
    expected = _expected_terminals(err)
    if isinstance(err, UnexpectedToken) and err.token.type == "$END":
        what = "unexpected end of file"
        text = source.text.rstrip()
        line = text.count("\n") + 1
        column = len(text.rsplit("\n", 1)[-1]) + 1
        open_bracket = _unclosed_bracket(source)
        if open_bracket:
            char, open_line, open_col = open_bracket
            hint = f"the '{char}' at {open_line}:{open_col} is never closed"
    elif isinstance(err, UnexpectedEOF):
        what = "unexpected end of file"
    elif isinstance(err, UnexpectedToken):
        tok = err.token
        width = max(len(str(tok)), 1)
        what = f"unexpected {_token_text(tok)}"
        if tok.type in ("INT", "NUMBER") and "NAME" in err.expected:
            hint = "names start with a letter or '_'"
        elif str(tok) == "=" and "EQUAL" not in err.expected:
            hint = "'=' binds a name; to compare values use a function such as maximum(...)"
        else:  # a bracket left open on an earlier line is the likely cause
            open_bracket = _unclosed_bracket(source, before=(line, column))
            if open_bracket and open_bracket[1] < line and _CLOSER[open_bracket[0]] in expected:
                hint = f"the '{open_bracket[0]}' at {open_bracket[1]}:{open_bracket[2]} is not closed"
    elif isinstance(err, UnexpectedCharacters):
        char = source.text[err.pos_in_stream] if err.pos_in_stream < len(source.text) else "?"
        what = f"unexpected character {char!r}"
        if char == '"':
            hint = "strings must end on the line they start"
        elif char == "'":
            hint = 'strings take double quotes: "..."'
        elif char == ";":
            hint = "statements need no ';': each one simply ends where the next begins"
    else:  # pragma: no cover - Lark has no other kinds
        what = "syntax error"
    message = f"syntax error: {what}"
    if expected:
        message += f", expected {_describe_expected(expected)}"
    span = Span(line, column, line, column + width)
    return NncError(message, Loc(source, span), hint)


def _token_text(tok: Token) -> str:
    text = str(tok)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"'{text}'"


def _check_nesting(source: Source) -> None:
    """Refuse absurd bracket nesting before Lark builds a tree that deep."""
    depth = 0
    for ch, line, col in _brackets(source):
        if ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise NncError(f"brackets nested too deeply: got more than {MAX_NESTING} levels, "
                               f"expected at most {MAX_NESTING}", Loc(source, Span(line, col, line, col + 1)))
        else:
            depth = max(depth - 1, 0)


def _clip(text: str) -> str:
    return text if len(text) <= 30 else f"{text[:12]}... ({len(text)} characters)"


def _check_number(tok: Token, source: Source) -> None:
    """Numbers must fit what nnc computes with: finite floats and int64 integers."""
    text = str(tok)
    loc = Loc(source, _token_span(tok))
    if any(c in text for c in ".eE"):
        if math.isinf(float(text)):
            raise NncError(f"number too large: got {_clip(text)}, expected at most {sys.float_info.max:.4g}", loc,
                           hint="that is the largest float")
    elif len(text.lstrip("0")) > 19 or int(text) > MAX_INT:  # int() refuses strings of over 4300 digits
        raise NncError(f"integer too large: got {_clip(text)}, expected at most {MAX_INT} (2**63 - 1)", loc,
                       hint="write a large real number as a float, such as 1e20")


def _check_tree(tree, source: Source) -> None:
    """Refuse numbers out of range and expressions nested deeper than MAX_EXPR_DEPTH.

    Iterative (Lark yields the subtrees children first), since the tree may be 100,000 levels deep.
    """
    depth = {}
    for t in tree.iter_subtrees():
        d = max((depth[id(c)] for c in t.children if isinstance(c, Tree)), default=0)
        if t.data in _EXPR_RULES:
            d += 1
            if d > MAX_EXPR_DEPTH:
                raise NncError(f"expression nested too deeply: got more than {MAX_EXPR_DEPTH} levels, "
                               f"expected at most {MAX_EXPR_DEPTH}", Loc(source, _span(t.meta)),
                               hint="split it into several statements: s = a + b, then t = s + c")
        if t.data in ("number", "dim_int"):
            _check_number(t.children[0], source)
        depth[id(t)] = d


def parse(text: str, filename: str = "<string>") -> ast.Program:
    """Parse .nn source into an `ast.Program`; raise `NncError` on a syntax error."""
    if len(text) > MAX_SOURCE_CHARS:
        raise NncError(f"file too large: got {len(text):,} characters, expected at most {MAX_SOURCE_CHARS:,}",
                       filename=filename, hint="a model file describes a network; data belongs in data files")
    source = Source(text, filename)
    _check_nesting(source)
    try:
        tree = parser().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, source) from None
    _check_tree(tree, source)
    return _ToAst(source).transform(tree)


def read_source(path: str | Path) -> str:
    """Read a model file as UTF-8, turning I/O and decoding problems into NncErrors."""
    path = Path(path)
    with reading(path, "a .nn file"):
        data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        prefix = data[:err.start]  # valid UTF-8: the first bad byte is at err.start
        line = prefix.count(b"\n") + 1
        column = len(prefix[prefix.rfind(b"\n") + 1:].decode("utf-8")) + 1  # in characters, not bytes
        text = data.decode("utf-8", errors="replace")
        loc = Loc(Source(text, str(path)), Span(line, column, line, column + 1))
        raise NncError(f"file is not valid UTF-8: got byte 0x{data[err.start]:02x}", loc,
                       hint="save the file as UTF-8") from None
