"""Hostile model files: a bounded fuzz run, hypothesis properties and the protections they rely on.

The property (tests/fuzz/harness.py): nnc accepts a file, or reports an
NncError as `file:line:col: error: ...` with the source line and a caret (or
`file: error: ...`), and never raises anything else, hangs or crashes. The
long run is `python -m tests.fuzz.run` (tests/fuzz/README.md); here a fixed
slice of the same inputs runs on every test run, and the protections the
fuzzer needed are pinned down one by one: resource limits, recursion and
depth limits, number ranges, source positions.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.fuzz, whatever directory pytest runs from

from nnc import limits  # noqa: E402
from nnc.errors import NncError  # noqa: E402
from nnc.front.builder import MAX_CALL_DEPTH, MAX_EXPR_DEPTH as BUILDER_MAX_EXPR_DEPTH  # noqa: E402
from nnc.front.syntax import MAX_EXPR_DEPTH, MAX_SOURCE_CHARS, parse  # noqa: E402
from nnc.model import load, loads  # noqa: E402
from tests.fuzz import generate, harness, mutate, run  # noqa: E402

BOUNDED_COUNT = 2500
BOUNDED_SEED = 8
FILES = run.corpus()


def check_text(tmp_path: Path, text: str | bytes) -> harness.Result:
    data = text.encode() if isinstance(text, str) else text
    result = harness.check(data, tmp_path / "input.nn", seconds=60)
    assert result.ok, f"{result.status}: {result.signature}\n{result.detail}"
    return result


def error_of(text: str, filename: str = "m.nn") -> NncError:
    with pytest.raises(NncError) as info:
        loads(text, filename)
    return info.value


# ---- the bounded run -------------------------------------------------------------------------


def test_bounded_fuzz_run(tmp_path):
    """Inputs 0..BOUNDED_COUNT of a fixed seed: generated programs and mutated examples."""
    counts: Counter = Counter()
    failures = []
    for i in range(BOUNDED_COUNT):
        data, origin = run.make_input(BOUNDED_SEED, i, FILES, big=False)
        result = harness.check(data, tmp_path / "input.nn", seconds=60, seed=i)
        counts[result.status] += 1
        counts["evaluated"] += result.evaluated
        if not result.ok:
            failures.append(f"input {i} ({origin}): {result.signature}\n{result.detail[-2000:]}")
    assert not failures, f"{len(failures)} of {BOUNDED_COUNT} inputs broke the property:\n\n" + "\n\n".join(
        failures[:5])
    # A run that never gets past the parser, or never fails, tests little.
    assert counts["accepted"] >= BOUNDED_COUNT // 10, counts
    assert counts["evaluated"] >= BOUNDED_COUNT // 10, counts
    assert counts["rejected"] >= BOUNDED_COUNT // 3, counts


def test_the_same_seed_makes_the_same_inputs():
    assert run.make_input(3, 17, FILES) == run.make_input(3, 17, FILES)
    assert run.make_input(3, 17, FILES) != run.make_input(3, 18, FILES)


def test_the_harness_reports_what_it_should(tmp_path):
    """The oracle itself: a crash, a hang and a malformed message are each caught, not passed."""
    path = tmp_path / "input.nn"
    good = harness.check(b"model m { input x: [B, 2]\n y = relu(x)\n output y }", path)
    assert good.status == "accepted" and good.evaluated == 1
    bad = harness.check(b"model m { input x: [B, 2]\n y = relu(q)\n output y }", path)
    assert bad.status == "rejected" and bad.detail.startswith(f"{path}:2:11: error: undefined name 'q'")
    unlocated = NncError("no position")
    assert harness.format_problem(unlocated, str(path)) is not None
    with harness.time_limit(0.05), pytest.raises(harness.Hang):
        while True:
            pass


def test_the_harness_catches_native_code_that_disagrees_with_the_interpreter(tmp_path, monkeypatch):
    from nnc.model import Model

    real_eval = Model.eval
    text = b"model m { input x: [B, 2]\n y = relu(x)\n output y }"
    for wrong, what in [(lambda y: y + 0.01, "differs from the reference by 0.01"),
                        (lambda y: y * np.nan, "non-finite at other places"),
                        (lambda y: y[:1], "shape [1, 2], reference [2, 2]")]:
        monkeypatch.setattr(Model, "eval", lambda self, *a, wrong=wrong, **k: {
            name: wrong(value) for name, value in real_eval(self, *a, **k).items()})
        result = harness.check(text, tmp_path / "input.nn")
        assert result.status == "mismatch" and what in result.detail, result.detail


def test_an_ill_conditioned_output_is_not_compared(tmp_path):
    """layernorm(eps=0) of seven equal values is 0/0: rounding noise or NaN on any backend (long run seed 3,
    input 19210 reported it as a mismatch); the float32 and float64 references disagree, so nothing is compared."""
    text = (b"model m1 {\n  input x2: [B, 4, 4]\n  h7 = dense(flatten(x2), 7, init=ones)\n"
            b"  h12 = dense(layernorm(h7, eps=0), 11, bias=true, init=he)\n  output h12\n}\n")
    assert harness.check(text, tmp_path / "input.nn", seed=19210).status == "accepted"
    g = load(tmp_path / "input.nn").graph
    out = g.outputs["h12"]
    noise = {out: np.array([[1.0, np.nan]])}
    harness._compare_outputs(g, {"h12": np.array([[np.nan, 1.0]])}, noise, {out: np.array([[np.nan, 1.0]])})
    with pytest.raises(harness.Mismatch, match="non-finite at other places"):
        harness._compare_outputs(g, {"h12": np.array([[np.nan, 1.0]])}, noise, noise)


def test_the_real_command_agrees_on_a_sample(tmp_path):
    """`nnc check` / `nnc eval` in a subprocess: exit 0 or 1 and the same first line of the message."""
    for i in (0, 1, 2, 3, 11):
        data, origin = run.make_input(BOUNDED_SEED, i, FILES, big=False)
        path = tmp_path / f"smoke{i}.nn"
        result = harness.check(data, path)
        assert result.ok
        assert harness.smoke(path, result) is None, origin


# ---- hypothesis ------------------------------------------------------------------------------

TOKENS = ["model", "def", "train", "input", "param", "output", "loss", "return", "m", "x", "y", "B", "h1.weight",
          "dense", "relu", "conv2d", "flatten", "mean", "cross_entropy", "reshape", "int", "f64", "(", ")", "[",
          "]", "{", "}", ",", "=", ":", "+", "-", "*", "/", "@", "**", "0", "1", "2", "-1", "784", "0.5", "1e308",
          "1e309", "99999999999999999999", '"s"', "name=", "axis=", "#", "\n", "\u00e9", "\ufeff"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes(tmp_path, data):
    check_text(tmp_path, data)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map(" ".join))
def test_any_token_soup(tmp_path, text):
    check_text(tmp_path, text)


@FUZZ
@given(st.integers(0, 2**32), st.sampled_from([0.0, 0.1, 0.3]))
def test_generated_programs(tmp_path, seed, wild):
    check_text(tmp_path, generate.program(random.Random(seed), wild=wild))


@FUZZ
@given(st.integers(0, 2**32), st.integers(0, len(FILES) - 1))
def test_mutated_examples(tmp_path, seed, k):
    data, _ = mutate.mutate(random.Random(seed), FILES[k], FILES, big=False)
    check_text(tmp_path, data)


@FUZZ
@given(st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False)),
       st.sampled_from(["y = x * {}", "y = dense(x, {})", "y = reshape(x, [B, {}])", "y = x ** {}",
                        "y = maxpool(reshape(x, [B, 1, 2, 2]), {})", "y = leaky_relu(x, {})",
                        "y = x + {} * {} * {}", "y = sum(x, axis={})", "y = dropout(x, {})"]))
def test_any_number_anywhere(tmp_path, number, template):
    text = repr(number).replace("inf", "1e999")
    src = f"model m {{\n  input x: [B, 4]\n  {template.format(text, text, text)}\n  output y\n}}\n"
    result = check_text(tmp_path, src)
    if result.status == "accepted" and result.evaluated:
        assert result.inputs is not None


# ---- resource limits -------------------------------------------------------------------------


def test_dense_of_a_billion_units_is_refused_with_its_size():
    err = error_of("model m {\n  input x: [B, 784]\n  h = dense(x, 1000000000)\n  output h\n}\n")
    text = err.format()
    assert text.startswith("m.nn:3:7: error: dense: the weight [784, 1000000000] would take 2.9 TiB, "
                           "expected at most "), text
    assert f"{limits.format_bytes(limits.memory_limit())}" in text


def test_a_huge_param_statement_is_refused():
    err = error_of("model m {\n  input x: [B, 4]\n  param w: [100000, 100000]\n  output x\n}\n")
    assert err.format().startswith("m.nn:3:9: error: param 'w' [100000, 100000] would take 37.3 GiB"), err.format()


@pytest.mark.parametrize("body, what", [
    ("input x: [B, 100000, 100000]\n output x", "input 'x' [B, 100000, 100000] would take 37.3 GiB per example"),
    ("input x: [B, 100000]\n y = reshape(x, [B, 100000, 1]) * reshape(x, [B, 1, 100000])\n output y",
     "'*': the result [B, 100000, 100000] would take 37.3 GiB per example"),
    ("input x: [B, 1, 8, 8]\n y = conv2d(x, 1, 1, pad=1000000)\n output y",
     "conv2d: the result [B, 1, 2000008, 2000008] would take 14.6 TiB per example"),
])
def test_inputs_and_op_results_are_held_to_the_limit(body, what):
    assert what in error_of(f"model m {{\n {body}\n}}").message


def test_the_limit_is_a_fraction_of_the_machine(monkeypatch):
    """Just under the limit builds; just over is refused; the parameters are also limited together."""
    monkeypatch.setattr(limits, "machine_memory", lambda: 2 * 8 * 2**20)  # limit: 8 MiB
    src = "model m {{\n  input x: [B, 4]\n  {}\n  output x\n}}"
    loads(src.format("param w: [1024, 2048]"))  # exactly 8 MiB
    err = error_of(src.format("param w: [1024, 2049]"))
    assert "param 'w' [1024, 2049] would take 8.0 MiB, expected at most 8.0 MiB (half of this machine's " \
           "16.0 MiB)" in err.message
    err = error_of(src.format("param w: [1024, 1024]\n  param v: [1024, 1025]"))
    assert err.message.startswith("the parameters would take 8.0 MiB with 'v', expected at most 8.0 MiB")


def test_machine_memory_comes_from_the_os():
    assert limits.machine_memory() > 2**26
    assert limits.memory_limit() == int(limits.machine_memory() * limits.MEMORY_FRACTION)


def test_nothing_is_allocated_before_the_refusal(tmp_path):
    """Under a 1.5 GiB address-space limit, a 2.9 TiB layer is a located error (exit 1), not a MemoryError."""
    model = tmp_path / "big.nn"
    model.write_text("model m {\n  input x: [B, 784]\n  h = dense(x, 1000000000)\n  output h\n}\n")
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**29, 3 * 2**29))
        from nnc.cli import main
        sys.exit(main(["eval", {str(model)!r}, "--at", "x=[[0]]"]))
    """)
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "dense: the weight [784, 1000000000] would take 2.9 TiB, expected at most 768.0 MiB (half of this " \
           "machine's 1.5 GiB)" in proc.stderr


def test_format_bytes():
    assert limits.format_bytes(0) == "0 B"
    assert limits.format_bytes(1536) == "1.5 KiB"
    assert limits.format_bytes(784 * 10**9 * 4) == "2.9 TiB"
    assert limits.format_bytes(10**400).startswith("about 2**")


# ---- recursion and depth ---------------------------------------------------------------------


def test_a_block_calling_itself_is_an_error():
    err = error_of("def f(x) { return f(x) }\nmodel m { input x: [B, 2]\n y = f(x)\n output y }")
    assert "block 'f' calls itself (f -> f)" in err.message
    assert err.loc.span.line == 1


def test_blocks_calling_each_other_in_a_cycle_is_an_error():
    src = "def a(x) { return b(x) }\ndef b(x) { return c(relu(x)) }\ndef c(x) { return a(x) }\n" \
          "model m { input x: [B, 2]\n y = a(x)\n output y }"
    assert "block 'a' calls itself (a -> b -> c -> a)" in error_of(src).message


def test_blocks_nested_too_deeply_is_an_error():
    n = MAX_CALL_DEPTH + 1
    blocks = "".join(f"def b{i}(x) {{ return b{i + 1}(x) }}\n" for i in range(n)) + f"def b{n}(x) {{ return x }}\n"
    err = error_of(blocks + "model m { input x: [B, 2]\n y = b0(x)\n output y }")
    assert err.message.startswith(f"blocks nested too deeply: got more than {MAX_CALL_DEPTH} levels")


def test_ten_thousand_nested_parentheses_are_a_located_error():
    src = "model m {\n  input x: [B, 2]\n  y = " + "(" * 10000 + "x" + ")" * 10000 + "\n  output y\n}\n"
    err = error_of(src)
    assert err.format().startswith("m.nn:3:") and "nested too deeply" in err.message


def test_a_hundred_thousand_term_chain_is_a_located_error():
    src = "model m {\n  input x: [B, 2]\n  y = " + " + ".join(["x"] * 100_000) + "\n  output y\n}\n"
    err = error_of(src)
    assert err.format().startswith(f"m.nn:3:7: error: expression nested too deeply: got more than "
                                   f"{MAX_EXPR_DEPTH} levels"), err.format()[:300]


@pytest.mark.parametrize("make", [
    lambda n: "-" * n + "x",
    lambda n: " ** ".join(["x"] * n),
    lambda n: "relu(" * (n // 2) + "x" + ")" * (n // 2),
])
def test_deep_expressions_of_every_kind_are_located_errors(make):
    for n in (2 * MAX_EXPR_DEPTH, 5000):
        err = error_of("model m {\n  input x: [B, 2]\n  y = " + make(n) + "\n  output y\n}\n")
        assert "nested too deeply" in err.message and err.loc.span.line == 3


def _nested(depth: int, fn):
    """Call fn with `depth` more Python frames on the stack: a caller that is itself deep."""
    return fn() if depth == 0 else _nested(depth - 1, fn)


@pytest.mark.parametrize("kind", ["calls", "chain", "negations", "blocks", "wrapped blocks"])
def test_the_deepest_accepted_model_builds_with_frames_to_spare(kind):
    """The depth limits leave room under Python's recursion limit, even for a caller 250 frames deep."""
    d = MAX_EXPR_DEPTH
    if kind == "calls":
        src = "model m { input x: [B, 2]\n y = " + "relu(" * (d - 1) + "x" + ")" * (d - 1) + "\n output y }"
    elif kind == "chain":
        src = "model m { input x: [B, 2]\n y = " + " + ".join(["x"] * d) + "\n output y }"
    elif kind == "negations":
        src = "model m { input x: [B, 2]\n y = " + "-" * (d - 1) + "x\n output y }"
    elif kind == "wrapped blocks":  # the most frames: just under the builder's depth limit through two blocks
        k = (BUILDER_MAX_EXPR_DEPTH - 4) // 2
        src = f"def b0(x) {{ return {'relu(' * k}b1(x){')' * k} }}\ndef b1(x) {{ return {'relu(' * k}x{')' * k} }}\n" \
              "model m { input x: [B, 2]\n y = b0(x)\n output y }"
    else:  # blocks nested as deep as allowed, each with a deep expression
        inner = "relu(" * 4 + "x" + ")" * 4
        blocks = "".join(f"def b{i}(x) {{ return {inner} + b{i + 1}(x) }}\n" for i in range(MAX_CALL_DEPTH - 1))
        src = blocks + f"def b{MAX_CALL_DEPTH - 1}(x) {{ return x }}\nmodel m {{ input x: [B, 2]\n y = b0(x)\n" \
                       f" output y }}"
    model = _nested(250, lambda: loads(src))
    assert model.outputs == ["y"]


# ---- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("literal, message", [
    ("99999999999999999999", "integer too large: got 99999999999999999999, expected at most 9223372036854775807"),
    ("9" * 5000, "integer too large: got 999999999999... (5000 characters)"),
    ("1e309", "number too large: got 1e309, expected at most 1.798e+308"),
])
def test_literals_out_of_range_are_located_errors(literal, message):
    err = error_of(f"model m {{\n  input x: [B, 2]\n  y = x * {literal}\n  output y\n}}")
    assert err.message.startswith(message) and (err.loc.span.line, err.loc.span.column) == (3, 11)


@pytest.mark.parametrize("expr, message", [
    ("2 ** 64", "2 ** 64 overflows"),
    ("9 ** 999999999", "9 ** 999999999 overflows"),  # not computed first
    ("1e308 * 10", "1e+308 * 10 overflows"),
    ("4611686018427387904 * 2", "4611686018427387904 * 2 overflows"),
    ("x * 1e300", "the number 1e+300 does not fit float tensors"),
    ("dense(x, 1e300)", "dense: units must be an integer, got the number 1e+300"),
])
def test_arithmetic_on_numbers_stays_in_range(expr, message):
    assert message in error_of(f"model m {{\n  input x: [B, 2]\n  y = {expr}\n  output y\n}}").message


def test_int_constants_fit_int32():
    err = error_of("model m {\n  input l: int[B]\n  y = l + 3000000000\n  output l\n}")
    assert err.message.startswith("the number 3e+09 does not fit int tensors: got 3e+09, expected -2.14748e+09 to ")


@pytest.mark.parametrize("init", ["constant(1e39)", "normal(0, 1e38)", "uniform(-1e308, 1e308)"])
def test_initializers_that_overflow_are_refused(init):
    err = error_of(f"model m {{\n  input x: [B, 2]\n  param w: [2] = {init}\n  output x\n}}")
    assert "gives values beyond" in err.message


def test_a_file_over_the_size_limit_is_a_file_level_error():
    text = "# " + "x" * MAX_SOURCE_CHARS
    with pytest.raises(NncError) as info:
        parse(text, "big.nn")
    assert info.value.format().startswith(f"big.nn: error: file too large: got {len(text):,} characters")


# ---- shapes the fuzzer broke -------------------------------------------------------------------


@pytest.mark.parametrize("expr", ["concat([s, s], axis=0)", "sum(s, axis=0)", "mean(s, axis=-1)"])
def test_a_scalar_has_no_axes(expr):
    err = error_of(f"model m {{\n  input s\n  y = {expr}\n  output y\n}}")
    assert "axis" in err.message and "got a scalar" in err.message


def test_transpose_of_a_scalar_stays_a_scalar():
    result = loads("model m { input s\n y = transpose(s)\n output y }").eval({"s": 3.0})
    assert np.shape(result["y"]) == ()


@pytest.mark.parametrize("loss", ["cross_entropy(s, l)", "hinge(s, l)"])
def test_classes_must_be_a_number(loss):
    err = error_of(f"model m {{\n  input x: [B, 3]\n  input l: int[B]\n  s = x @ transpose(x)\n"
                   f"  output s\n  loss {loss}\n}}")
    assert "[B, B]" in err.message


def test_a_whole_float_is_a_kernel_size():
    model = loads("model m {\n  input x: [B, 1, 4, 4]\n  y = conv2d(x, 2, 3.0)\n  output y\n}")
    assert str(model.graph.type_of(model.graph.outputs["y"])) == "[B, 2, 2, 2]"
    err = error_of("model m {\n  input x: [B, 1, 4, 4]\n  y = conv2d(x, 2, 1e-400)\n  output y\n}")
    assert err.message == "conv2d: kernel must be at least 1x1, got 0x0"


def test_parameters_cannot_have_symbolic_sizes():
    err = error_of("model m {\n  input x: [B, 784]\n  y = batchnorm(transpose(x))\n  output y\n}")
    assert err.message.startswith("batchnorm: the gamma would have shape [B]: got the symbolic dim B")


# ---- special values through native code ----------------------------------------------------

SPECIAL_VALUES = np.array([[np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 100.0, -100.0, 1e-30]],
                          np.float32)


def test_every_one_argument_function_treats_nan_and_inf_as_the_reference_does():
    """NaN and ±inf go through native code as through the NumPy reference (the long run, seed 3 input 64769,
    found native elu turning NaN into 0: its min(x, 0) was an ordered compare)."""
    from nnc.front.layers import FUNCTIONS

    differ, checked = {}, 0
    for name in sorted(FUNCTIONS):
        try:
            model = loads(f"model m {{\n  input x: [B, 12]\n  y = {name}(x)\n  output y\n}}", "m.nn")
        except NncError:
            continue  # needs more arguments
        with np.errstate(all="ignore"):
            native = model.eval({"x": SPECIAL_VALUES})["y"]
            reference = model.eval({"x": SPECIAL_VALUES}, backend="reference")["y"]
        checked += 1
        same = (native == reference) | np.isclose(native, reference, rtol=1e-5, atol=1e-6, equal_nan=True)
        if native.shape != reference.shape or not same.all():
            differ[name] = (native.tolist(), reference.tolist())
    assert checked >= 15
    assert not differ, differ


def test_binary_operators_treat_special_values_as_the_reference_does():
    """Every pair of NaN, ±inf, ±0, ±1, 0.5, -2.5 through + - * / ** and the two-argument functions, native
    against the reference (native ** gave NaN for 1 ** nan, 1 ** inf and (-inf) ** 0.5, and +inf for
    (-0.0) ** -1, where C99 pow gives 1, 1, inf and -inf)."""
    import itertools

    from nnc.front.layers import FUNCTIONS

    specials = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5]
    a, b = (np.array([column], np.float32) for column in zip(*itertools.product(specials, specials)))
    n = a.shape[1]
    differ, checked = {}, 0
    for expr in ["x + z", "x - z", "x * z", "x / z", "x ** z", *(f"{f}(x, z)" for f in sorted(FUNCTIONS))]:
        try:
            model = loads(f"model m {{\n  input x: [B, {n}]\n  input z: [B, {n}]\n  y = {expr}\n  output y\n}}",
                          "m.nn")
        except NncError:
            continue  # not a function of two tensors
        with np.errstate(all="ignore"):
            native = model.eval({"x": a, "z": b})["y"]
            reference = model.eval({"x": a, "z": b}, backend="reference")["y"]
        checked += 1
        same = (native == reference) | np.isclose(native, reference, rtol=1e-5, atol=1e-6, equal_nan=True)
        if native.shape != reference.shape or not same.all():
            differ[expr] = [(x, z, got, want) for x, z, got, want in zip(a[~same], b[~same], native[~same],
                                                                          reference[~same])][:4]
    assert checked >= 8
    assert not differ, differ


def test_a_computed_class_index_out_of_range_is_located_on_native_code_too(tmp_path):
    """`cross_entropy(logits, -label)` is a legal model whose labels go negative at run time; native code
    said only 'labels out of range' with no place (long run seed 4, input 18372). Both backends now point at
    the call."""
    path = tmp_path / "neg.nn"
    path.write_text("model m {\n  input x: [B, 3]\n  input label: int[B]\n  logits = dense(x, 3)\n  output logits\n"
                    "  loss cross_entropy(logits, -label)\n}\n")
    model = load(path)
    inputs = {"x": np.ones((2, 3), np.float32), "label": np.array([1, 0], np.int32)}
    for backend in ("llvm", "reference"):
        with pytest.raises(NncError) as info:
            model.eval(inputs, backend=backend, random_params=True)
        assert info.value.format().startswith(f"{path}:6:8: error: labels out of range: got class -1, expected 0 "
                                              f"to 2\n    loss cross_entropy(logits, -label)\n"), backend


# ---- positions ------------------------------------------------------------------------------


@pytest.mark.parametrize("sep", ["\u2028", "\x0b", "\x0c", "\r", "\x1c", "\x85"])
def test_the_caret_line_is_the_reported_line(sep):
    """Only \\n ends a line for the parser, so only \\n may end one in the message."""
    text = f"model m {{  # a{sep}b\n  input x: [B, 2]\n  y = relu(q)\n  output y\n}}"
    err = error_of(text)
    assert err.loc.span.line == 3
    assert err.format().split("\n")[1] == "    y = relu(q)"


def test_a_bad_byte_is_reported_in_characters(tmp_path):
    path = tmp_path / "u.nn"
    path.write_bytes("model m { # é€\n  input x é€ ".encode() + b"\xff")  # the bad byte is character 14
    with pytest.raises(NncError) as info:
        load(path)
    assert info.value.format().startswith(f"{path}:2:14: error: file is not valid UTF-8: got byte 0xff")
