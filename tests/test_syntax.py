"""The parser (nnc/syntax.py, grammars/nn.lark): every construct of the language, its AST and its source positions.

Positions are checked through `span_text`, the exact source text a node's
span covers, so a test reads like the model it parses.
"""

from __future__ import annotations

import pytest

from nnc import NncError
from nnc.front import ast
from nnc.front.syntax import parse, read_source


def span_text(loc: ast.Loc) -> str:
    """The source text under a location (spans may cross lines; end column exclusive)."""
    lines = loc.source.text.split("\n")
    s = loc.span
    if s.line == s.end_line:
        return lines[s.line - 1][s.column - 1:s.end_column - 1]
    first, last = lines[s.line - 1][s.column - 1:], lines[s.end_line - 1][:s.end_column - 1]
    parts = [first] + lines[s.line:s.end_line - 1] + [last]
    return "\n".join(parts)


def body(text: str) -> tuple:
    """Parse statements inside a model and return them."""
    return parse("model m {\n" + text + "\n}").models[0].body


def expr(text: str):
    """Parse one expression (as the right side of an assignment)."""
    (stmt,) = body(f"v = {text}")
    return stmt.value


def shape_of(e) -> str:
    """A compact, fully parenthesized rendering of an expression tree."""
    if isinstance(e, ast.Number):
        return repr(e.value)
    if isinstance(e, ast.String):
        return f'"{e.value}"'
    if isinstance(e, ast.Var):
        return e.name
    if isinstance(e, ast.Neg):
        return f"(-{shape_of(e.operand)})"
    if isinstance(e, ast.BinOp):
        return f"({shape_of(e.left)} {e.op} {shape_of(e.right)})"
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(shape_of(i) for i in e.items) + "]"
    if isinstance(e, ast.Call):
        args = [shape_of(a) for a in e.args] + [f"{k.name}={shape_of(k.value)}" for k in e.kwargs]
        return f"{e.func}(" + ", ".join(args) + ")"
    raise AssertionError(e)


# ---- file structure -------------------------------------------------------------------


def test_empty_file_and_comment_only_file_have_no_models():
    for text in ("", "   \n\n", "# just a comment\n# and another"):
        program = parse(text)
        assert program.models == () and program.blocks == () and program.trains == ()


def test_models_blocks_and_train_are_collected_in_order():
    program = parse("""
def b1(x) { return x }
model first { input x  output x }
def b2(x, y) { return x + y }
model second { input y  output y }
train { batch = 4 }
""")
    assert [m.name for m in program.models] == ["first", "second"]
    assert [b.name for b in program.blocks] == ["b1", "b2"]
    assert [p.name for p in program.blocks[1].params] == ["x", "y"]
    assert len(program.trains) == 1
    assert program.source.filename == "<string>"


def test_block_without_parameters():
    (block,) = parse("def const_one() { return 1 }").blocks
    assert block.params == ()
    assert isinstance(block.body[0], ast.Return)


def test_statements_are_self_delimiting_so_newlines_do_not_matter():
    one_line = parse("model m { input x: [B, 2] y = relu(x) output y }").models[0].body
    spread = body("input\n x\n :\n [B,\n 2]\n y\n =\n relu(\n x\n )\n output\n y")
    assert [type(s) for s in one_line] == [type(s) for s in spread] == [ast.InputDecl, ast.Assign, ast.Output]


def test_filename_is_kept_for_messages():
    program = parse("model m { input x output x }", filename="models/m.nn")
    assert str(program.models[0].name_loc) == "models/m.nn:1:7"


# ---- statements ------------------------------------------------------------------------


def test_input_without_type_is_a_scalar_float():
    (decl,) = body("input x")
    assert isinstance(decl, ast.InputDecl) and decl.name == "x" and decl.type is None


@pytest.mark.parametrize("text, dtype, dims", [
    ("float", "float32", None),
    ("f32", "float32", None),
    ("f64", "float64", None),
    ("int", "int32", None),
    ("[B, 784]", "float32", ("B", 784)),
    ("float[3]", "float32", (3,)),
    ("f64[B, 1]", "float64", ("B", 1)),
    ("int[B]", "int32", ("B",)),
    ("[]", "float32", ()),
    ("[N, C, 28, 28]", "float32", ("N", "C", 28, 28)),
])
def test_input_types(text, dtype, dims):
    (decl,) = body(f"input x: {text}")
    assert decl.type.dtype == dtype
    assert decl.type.dims == dims
    assert span_text(decl.type.loc) == text


def test_param_with_and_without_initializer():
    with_init, without = body("param a: [1, 1] = zeros\nparam b: [3]")
    assert isinstance(with_init, ast.ParamDecl) and with_init.type.dims == (1, 1)
    assert isinstance(with_init.init, ast.Var) and with_init.init.name == "zeros"
    assert without.init is None
    (call_init,) = body("param w: [2, 3] = normal(0, 0.01)")
    assert shape_of(call_init.init) == "normal(0, 0.01)"


def test_param_needs_a_type():
    with pytest.raises(NncError, match="syntax error"):
        body("param w")


def test_assign_output_loss_and_return():
    assign, output, loss, loss_eq = body("y = x\noutput y, z\nloss mean(y)\nloss = mean(z)")
    assert isinstance(assign, ast.Assign) and assign.target == "y"
    assert [v.name for v in output.names] == ["y", "z"]
    assert isinstance(loss, ast.LossStmt) and shape_of(loss.value) == "mean(y)"
    assert shape_of(loss_eq.value) == "mean(z)"  # `loss = EXPR` is accepted too
    (block,) = parse("def f(x) { return x * 2 }").blocks
    assert isinstance(block.body[0], ast.Return) and shape_of(block.body[0].value) == "(x * 2)"


def test_train_settings():
    (train,) = parse("""train {
  data      = mnist
  optimizer = adam(lr=0.001, beta1=0.8)
  batch     = 128
  schedule  = "cosine"
  clip      = 1e-2
}""").trains
    settings = {s.name: s.value for s in train.settings}
    assert list(settings) == ["data", "optimizer", "batch", "schedule", "clip"]
    assert shape_of(settings["data"]) == "mnist"
    assert shape_of(settings["optimizer"]) == "adam(lr=0.001, beta1=0.8)"
    assert settings["batch"].value == 128 and isinstance(settings["batch"].value, int)
    assert settings["schedule"].value == "cosine"
    assert settings["clip"].value == pytest.approx(0.01)


# ---- expressions -------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("42", 42), ("3.5", 3.5), ("3.", 3.0), (".5", 0.5), ("1e-3", 1e-3), ("1E3", 1000.0),
    ("2.5e+2", 250.0), (".5e1", 5.0), ("6.02e23", 6.02e23),
])
def test_numbers_with_exponents(text, value):
    number = expr(text)
    assert isinstance(number, ast.Number)
    assert number.value == value
    assert type(number.value) is type(value)  # integers stay integers: they size layers
    assert span_text(number.loc) == text


@pytest.mark.parametrize("text, tree", [
    ("-x ** 2", "(-(x ** 2))"),                      # unary minus binds looser than **
    ("2 ** -1", "(2 ** (-1))"),
    ("a ** b ** c", "(a ** (b ** c))"),               # ** is right-associative
    ("a - b - c", "((a - b) - c)"),                   # the others are left-associative
    ("a / b * c", "((a / b) * c)"),
    ("a + b * c", "(a + (b * c))"),
    ("a * b + c", "((a * b) + c)"),
    ("x @ w + b", "((x @ w) + b)"),
    ("a @ b @ c", "((a @ b) @ c)"),
    ("-a * b", "((-a) * b)"),
    ("--a", "(-(-a))"),
    ("+a", "a"),                                      # unary plus is dropped
    ("(a + b) * c", "((a + b) * c)"),
    ("2 * (x + y) ** 2", "(2 * ((x + y) ** 2))"),
    ("-relu(x) ** 2", "(-(relu(x) ** 2))"),
])
def test_operator_precedence(text, tree):
    assert shape_of(expr(text)) == tree


def test_calls_positional_and_keyword_arguments():
    call = expr('conv2d(image, 6, 5, stride=2, pad=1, name="c1")')
    assert isinstance(call, ast.Call) and call.func == "conv2d"
    assert [shape_of(a) for a in call.args] == ["image", "6", "5"]
    assert [(k.name, shape_of(k.value)) for k in call.kwargs] == [("stride", "2"), ("pad", "1"), ("name", '"c1"')]
    assert span_text(call.func_loc) == "conv2d"
    assert span_text(call.kwargs[1].loc) == "pad=1"
    assert span_text(call.kwargs[1].value.loc) == "1"
    assert shape_of(expr("f()")) == "f()"


def test_keyword_arguments_may_come_before_positional_ones_in_the_source():
    call = expr("f(axis=1, x)")
    assert [shape_of(a) for a in call.args] == ["x"] and call.kwargs[0].name == "axis"


def test_lists_nested_and_empty():
    assert shape_of(expr("[B, 1, 28, 28]")) == "[B, 1, 28, 28]"
    assert shape_of(expr("[]")) == "[]"
    assert shape_of(expr("concat([a, b], axis=1)")) == "concat([a, b], axis=1)"
    assert shape_of(expr("[[1, 2], [3, -4]]")) == "[[1, 2], [3, (-4)]]"


def test_dotted_names_refer_to_parameters():
    call = expr("l2(h1.weight) + l1(r1.h_2.weight)")
    assert shape_of(call) == "(l2(h1.weight) + l1(r1.h_2.weight))"


def test_strings_may_hold_hash_signs():
    call = expr('dense(x, 4, name="a#b")  # a real comment')
    assert call.kwargs[0].value.value == "a#b"


# ---- comments ----------------------------------------------------------------------------


def test_comments_anywhere():
    program = parse("""# header
model m {   # after the brace
  input x: [B, 4]   # after a statement
  # a line of its own
  y = relu(   # inside a call
    x)
  output y  #
}
# trailing""")
    assert [type(s) for s in program.models[0].body] == [ast.InputDecl, ast.Assign, ast.Output]


def test_hash_ends_at_the_line():
    (decl, assign) = body("input x # comment\ny = x")
    assert decl.name == "x" and assign.target == "y"


# ---- positions -----------------------------------------------------------------------------


def test_statement_and_name_positions():
    program = parse("model lenet {\n  input  image: [B, 1, 28, 28]\n  h1 = relu(dense(image, 120))\n  output h1\n}")
    model = program.models[0]
    assert (model.name_loc.span.line, model.name_loc.span.column) == (1, 7)
    assert span_text(model.name_loc) == "lenet"
    decl, assign, output = model.body
    assert span_text(decl.loc) == "input  image: [B, 1, 28, 28]"
    assert span_text(decl.name_loc) == "image"
    assert (decl.name_loc.span.line, decl.name_loc.span.column) == (2, 10)
    assert span_text(assign.loc) == "h1 = relu(dense(image, 120))"
    assert span_text(assign.target_loc) == "h1"
    inner = assign.value.args[0]
    assert span_text(inner.loc) == "dense(image, 120)"
    assert (inner.loc.span.line, inner.loc.span.column, inner.loc.span.end_column) == (3, 13, 30)
    assert span_text(inner.args[0].loc) == "image"
    assert span_text(output.names[0].loc) == "h1"


def test_expression_positions():
    e = expr("x @ a + b")
    assert span_text(e.loc) == "x @ a + b"
    assert span_text(e.left.loc) == "x @ a"
    assert span_text(e.right.loc) == "b"
    neg = expr("-x ** 2")
    assert span_text(neg.loc) == "-x ** 2"
    assert span_text(neg.operand.loc) == "x ** 2"
    assert span_text(expr("[a,  b]").loc) == "[a,  b]"
    assert span_text(expr('"text"').loc) == '"text"'


def test_multi_line_span():
    (assign,) = body("y = dense(x,\n          4)")
    assert assign.loc.span.line + 1 == assign.loc.span.end_line
    assert span_text(assign.value.loc) == "dense(x,\n          4)"


def test_train_and_block_positions():
    program = parse("def res(x, c) {\n  return x\n}\ntrain {\n  batch = 8\n}")
    block = program.blocks[0]
    assert span_text(block.name_loc) == "res"
    assert [span_text(p.loc) for p in block.params] == ["x", "c"]
    setting = program.trains[0].settings[0]
    assert span_text(setting.name_loc) == "batch" and span_text(setting.loc) == "batch = 8"
    assert program.trains[0].loc.span.line == 4


# ---- syntax errors (the exact texts are golden files under tests/errors) --------------------------


@pytest.mark.parametrize("text, line, column", [
    ("model m {\n  input x\n", 2, 10),              # end of file: after the last text
    ("model m {\n  y = x +\n}", 3, 1),
    ("model m {\n  y = (x + 1\n  output y\n}", 3, 3),
    ("model 3 { }", 1, 7),
    ("model m { y = x ? 1 }", 1, 17),
])
def test_syntax_errors_are_located(text, line, column):
    with pytest.raises(NncError) as info:
        parse(text, "f.nn")
    err = info.value
    assert err.message.startswith("syntax error: ")
    assert (err.loc.span.line, err.loc.span.column) == (line, column)
    assert err.format().startswith(f"f.nn:{line}:{column}: error: syntax error")


def test_unclosed_bracket_hint_names_the_bracket():
    with pytest.raises(NncError) as info:
        parse("model m {\n  y = relu(dense(x, 3)\n  output y\n}")
    assert info.value.hint == "the '(' at 2:11 is not closed"


def test_expected_tokens_are_only_those_the_parser_accepts():
    with pytest.raises(NncError) as info:
        parse("model m {\n  y = relu(x) $\n}")
    # ')' and ',' are in Lark's LALR lookahead set here but could not follow a finished statement
    assert "')'" not in info.value.message and "','" not in info.value.message


def test_absurd_nesting_is_refused_before_parsing():
    with pytest.raises(NncError, match="nested too deeply"):
        parse("model m { y = " + "(" * 500 + "x" + ")" * 500 + " output y }")


def test_read_source_reports_files_and_encodings(tmp_path):
    good = tmp_path / "m.nn"
    good.write_text("model m { input x output x }  # café", encoding="utf-8")
    assert read_source(good).endswith("café")
    with pytest.raises(NncError, match="no such file"):
        read_source(tmp_path / "missing.nn")
    with pytest.raises(NncError, match="is a directory"):
        read_source(tmp_path)
    bad = tmp_path / "bad.nn"
    bad.write_bytes(b"model m {\n  input x  # \xff\n}")
    with pytest.raises(NncError) as info:
        read_source(bad)
    assert (info.value.loc.span.line, info.value.loc.span.column) == (2, 14)
    assert "0xff" in info.value.message


def test_ast_nodes_are_values_that_cannot_change():
    """AST nodes behave as the frozen dataclasses they replaced: built by position or name with defaults, equal
    and hashed by class and fields, printed with them, read-only."""
    one, same = (parse("model m {\n  loss d = mean(x) trains g\n}") for _ in range(2))
    assert one == same and hash(one.models[0]) == hash(same.models[0]) and one.models[0] is not same.models[0]
    loss = one.models[0].body[0]
    assert (loss.name, [v.name for v in loss.trains]) == ("d", ["g"])
    assert ast.LossStmt(loss.value, loss.loc) == ast.LossStmt(value=loss.value, loc=loss.loc, name=None, trains=())
    assert ast.Var("x", None) != ast.String("x", None) and repr(ast.Var("x", None)) == "Var(name='x', loc=None)"
    with pytest.raises(AttributeError, match="cannot assign to field 'name'"):
        loss.name = "e"
    with pytest.raises(TypeError, match="missing .*'loc'"):
        ast.Var("x")
