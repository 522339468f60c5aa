"""The figures the documentation quotes are what nnc prints now: each is re-measured here.

The conventions (`-> FIGURES` after a command, ```console transcripts, `# ->` in ```python
blocks, figures in prose) are described in test_docs.py's docstring. This file runs every
command that has figures (training runs included: one-epoch MNIST runs take a few seconds, the
examples' full runs up to a minute; those are marked `slow`), checks the claims, and checks
that the figures written in sentences and tables are among them. It also checks the perceptron
learning rule of examples/perceptron_rule.nn step by step against the rule computed by hand,
and the learning rates the course quotes from a run's history.csv.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_main
from doc_files import DOC_FILES, write_doc_files
from test_docs import code_blocks, existing_pages, named_files

import nnc
from nnc.cli.main import make_parser
from nnc.cli.run import config_from
from nnc.data.load import load_for_model
from nnc.passes.costs import graph_macs
from nnc.train.trainer import Trainer

# ---- matching figures against what nnc prints ------------------------------------------------

NUMBER = r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?"
TOKEN = re.compile(rf"(?P<skip>\.\.\.)|(?P<space>\s+)|(?P<word>[A-Za-z_]\w*)|(?P<number>{NUMBER})|(?P<char>.)", re.S)


def figure_pattern(piece: str) -> tuple[str, list[str]]:
    """A regular expression for one piece of FIGURES and the numbers it shows (one group each)."""
    parts, shown = [], []
    tokens = [(m.lastgroup, m.group()) for m in TOKEN.finditer(piece.strip())]
    for i, (kind, text) in enumerate(tokens):
        beside_skip = "skip" in (tokens[i - 1][0] if i else None, tokens[i + 1][0] if i + 1 < len(tokens) else None)
        if kind == "space":
            parts.append(r"[^\S\n]*" if beside_skip else r"\s+")   # `...` and its spaces stay within a line
            continue
        if parts and tokens[i - 1][0] != "space":
            parts.append(r"[^\S\n]*" if beside_skip else r"\s*")   # `[[0.],` also matches `[[0.      ],`
        if kind == "skip":
            parts.append(r"[^\n]*?")
        elif kind == "number":
            parts.append(rf"(?<![\w.])({NUMBER})(?!\d)")
            shown.append(text)
        else:
            parts.append(re.escape(text))
    return "".join(parts), shown


def same_figure(printed: str, shown: str) -> bool:
    """Whether the printed number rounds to the shown one at the digits shown."""
    printed, shown = printed.replace(",", ""), shown.replace(",", "")
    if printed == shown:
        return True
    digits = re.fullmatch(r"[-+]?\d*(?:\.(\d*))?(?:e([-+]?\d+))?", shown)
    decimals = len(digits.group(1) or "")
    form = "e" if digits.group(2) is not None else "f"
    return float(format(float(printed), f".{decimals}{form}")) == float(shown)


def figure_found(piece: str, text: str) -> bool:
    pattern, shown = figure_pattern(piece)
    for m in re.finditer(f"(?={pattern})", text):   # at every start, overlapping ones too
        if all(same_figure(printed, s) for printed, s in zip(m.groups(), shown)):
            return True
    return False


def near(piece: str, text: str) -> str:
    """The printed lines that hold the piece's first word: what a failure shows."""
    word = next((m.group() for m in TOKEN.finditer(piece) if m.lastgroup == "word"), None)
    lines = [line for line in text.splitlines() if word and word in line] or text.splitlines()[-5:]
    return "\n".join(f"    | {line}" for line in lines[:12])


def split_figures(line: str) -> tuple[str, list[str]]:
    """`nnc run x.nn  # note -> a; b` -> ("nnc run x.nn  # note ", ["a", "b"]): the arrow outside quotes, or
    anywhere in the line's `#` comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            note, arrow, figures = line[i:].partition("->")
            return (line[:i] + note, _pieces(figures)) if arrow else (line, [])
        elif line.startswith("->", i):
            return line[:i], _pieces(line[i + 2:])
    return line, []


def _pieces(figures: str) -> list[str]:
    return [p.strip() for p in figures.split(";") if p.strip()]


# ---- what the pages and examples claim -------------------------------------------------------


@dataclass
class Step:
    argv: list[str]
    figures: list[str]        # pieces of its stdout; empty: run for what it writes


@dataclass
class Unit:
    """Commands that run in order in one folder, as a reader would run them."""

    where: str
    steps: list[Step]
    files: dict = field(default_factory=dict)    # NAME.nn -> text, written into the folder first
    console: str | None = None                   # a ```console transcript: the exact output of the one step


def command_lines(text: str) -> list[str]:
    """The lines of an sh block, continuations joined and `&&` parts apart."""
    return [part for line in text.replace("\\\n", " ").split("\n") for part in line.split("&&")]


def sh_units(page: Path) -> list[Unit]:
    units = []
    files = named_files(page)
    for block in code_blocks(page):
        if block.kind == "sh":
            steps = []
            for line in command_lines(block.text):
                code, figures = split_figures(line)
                words = shlex.split(code, comments=True)
                if words and words[0] == "nnc":
                    steps.append(Step(words[1:], figures))
                elif not words and figures and steps:   # `    # -> ...` on a line of its own: the command above
                    steps[-1].figures += figures
            if any(s.figures for s in steps):
                last = max(i for i, s in enumerate(steps) if s.figures)
                units.append(Unit(block.where, steps[:last + 1], files))
        elif block.kind == "console":
            first, _, shown = block.text.partition("\n")
            assert first.startswith("$ nnc "), f"{block.where}: a console block starts with `$ nnc ...`"
            units.append(Unit(block.where, [Step(shlex.split(first)[2:], [])], files, console=shown))
    return units


def example_units() -> list[Unit]:
    units = []
    for path in sorted((REPO / "examples").glob("*.nn")):
        steps = []
        for line in re.findall(r"^#\s+(nnc .*)$", path.read_text(encoding="utf-8"), re.M):
            code, figures = split_figures(line)
            steps.append(Step(shlex.split(code, comments=True)[1:], figures))
        if any(s.figures for s in steps):
            last = max(i for i, s in enumerate(steps) if s.figures)
            units.append(Unit(f"examples/{path.name}", steps[:last + 1]))
    return units


MLP_MACS = 784 * 256 + 256 * 128 + 128 * 10   # examples/mnist_mlp.nn's multiply-adds per example


def forward_macs(model) -> int:
    """Multiply-adds per example, as `nnc check` counts them (nnc/passes/costs.py); a symbolic dim other than
    the batch counts as 1."""
    count = graph_macs(model.graph)
    return count.at(**dict.fromkeys(count.symbols, 1))


PARSER = make_parser()   # one for the collection's 130 steps: building it is 10 ms


def training_cost(argv: list[str], files: dict) -> float:
    """What a step trains, in epochs of examples/mnist_mlp.nn on MNIST (about 3 s on two cores)."""
    args = PARSER.parse_args(argv)
    if args.command != "run":
        return 0.0
    if args.model in DOC_FILES:   # an ONNX model the tests make: the pages fine-tune it for seconds at most
        return 0.0
    source = files.get(args.model) or (REPO / args.model).read_text(encoding="utf-8")
    model = nnc.loads(source, args.model, model=args.model_name)
    data = args.data or model.settings["data"]
    epochs = args.epochs if args.epochs is not None else model.settings["epochs"]
    if data in ("mnist", "fashion-mnist"):
        examples = 60000
    elif str(data).endswith(".txt"):   # windows of T characters
        text = (REPO / "examples" / data) if not Path(data).is_absolute() else Path(data)
        steps = next(d for d in model.graph.type_of(next(iter(model.graph.inputs.values()))).shape[1:])
        examples = text.stat().st_size / steps if text.exists() else 0
    else:
        return 0.0   # the course's small tables and toy sets: a second or two
    return epochs * forward_macs(model) * examples / (MLP_MACS * 60000)


def slow(unit: Unit) -> bool:
    """More than about half a minute of training: the examples' full runs, the residual network."""
    return sum(training_cost(s.argv, unit.files) for s in unit.steps) > 10


READS_A_RUN = ("--out", "--init-from", "--params", "--resume")


def split(unit: Unit) -> list[Unit]:
    """A unit of `nnc run`s none of which reads what another writes, one unit per step: each is a test of its
    own, so its time shows and pytest-xdist can share them out (examples/README.md's full runs take minutes)."""
    independent = unit.console is None and all(
        s.argv[:1] == ["run"] and not any(w.startswith(READS_A_RUN) or "runs/" in w for w in s.argv)
        for s in unit.steps)
    if not independent or len(unit.steps) < 2:
        return [unit]
    return [Unit(f"{unit.where} nnc {shlex.join(s.argv)}", [s], unit.files) for s in unit.steps]


UNITS = [part for page in existing_pages() for u in sh_units(page) for part in split(u)] + example_units()


# ---- running them ----------------------------------------------------------------------------


def folder_for(unit: Unit, tmp_path: Path) -> Path:
    for name in ("examples", "tests"):
        (tmp_path / name).symlink_to(REPO / name, target_is_directory=True)
    for name, text in unit.files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    write_doc_files([word for step in unit.steps for word in step.argv], tmp_path)
    return tmp_path


@pytest.mark.parametrize("unit", [pytest.param(u, marks=[pytest.mark.slow] if slow(u) else []) for u in UNITS],
                         ids=[u.where for u in UNITS])
def test_documented_figures_are_what_nnc_prints(unit, tmp_path):
    cwd = folder_for(unit, tmp_path)
    wrong = []
    for step in unit.steps:
        result = run_main(*step.argv, cwd=cwd)
        command = "nnc " + shlex.join(step.argv)
        if unit.console is not None:   # a transcript may show an error: its message is the output
            assert result.stdout + result.stderr == unit.console, \
                f"{unit.where}: `{command}` prints\n{result.stdout}{result.stderr}"
            continue
        assert result.returncode == 0, f"{unit.where}: `{command}` failed:\n{result.stderr}"
        for piece in step.figures:
            if not figure_found(piece, result.stdout):
                wrong.append(f"`{command}`: the page shows `{piece}`; nnc prints\n{near(piece, result.stdout)}")
    assert not wrong, f"{unit.where}: figures that are not what nnc prints:\n" + "\n".join(wrong)


def python_blocks() -> list:
    return [b for page in existing_pages() for b in code_blocks(page) if b.kind == "python" and "# ->" in b.text]


@pytest.mark.parametrize("block", python_blocks(), ids=lambda b: b.where)
def test_python_results_are_what_nnc_returns(block, tmp_path, monkeypatch):
    """`m.eval({...})   # -> {'f': array(-12., dtype=float32)}`: the lines up to the last such one run."""
    lines = block.text.split("\n")
    last = max(i for i, line in enumerate(lines) if "# ->" in line)
    code = "\n".join(lines[:last + 1])
    monkeypatch.chdir(folder_for(Unit(block.where, []), tmp_path))
    space, wrong = {}, []
    for stmt in ast.parse(code).body:
        source = ast.get_source_segment(code, stmt)
        _, figures = split_figures(lines[stmt.end_lineno - 1])
        assert not figures or isinstance(stmt, ast.Expr), f"{block.where}: `{source}` shows figures of no value"
        with contextlib.redirect_stdout(io.StringIO()):
            if figures:
                shown = repr(eval(source, space))   # noqa: S307 - the page's own example
                wrong += [f"`{source}`: the page shows `{p}`, Python gives {shown}"
                          for p in figures if not figure_found(p, shown)]
            else:
                exec(source, space)   # noqa: S102
    assert not wrong, f"{block.where}:\n" + "\n".join(wrong)


# ---- figures in sentences --------------------------------------------------------------------

PROSE_FIGURE = re.compile(r"(?<![\w.])\d+\.\d+%|(?<![\w.])\d+\.\d{4,}(?![\d%])")


def prose(page: Path) -> str:
    """The page's text outside code blocks, inline code and HTML comments."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^\s*```.*?^\s*```\s*$", "", text, flags=re.S | re.M)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def checked_text(page: Path) -> str:
    """Everything a test compares with nnc's output: figures, text outputs, console transcripts."""
    parts = [b.text for b in code_blocks(page) if b.info in ("text output", "console") or b.kind == "console"]
    parts += [piece for unit in sh_units(page) for step in unit.steps for piece in step.figures]
    parts += [piece for b in python_blocks() if b.page == page
              for line in b.text.split("\n") for piece in split_figures(line)[1]]
    return "\n".join(parts)


@pytest.mark.parametrize("page", existing_pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_figures_in_prose_are_measured(page):
    checked = checked_text(page) + "\n".join(re.findall(r"<!-- elsewhere:(.*?)-->", page.read_text(encoding="utf-8"),
                                                        re.S))
    unmeasured = sorted({f for f in PROSE_FIGURE.findall(prose(page)) if f not in checked})
    assert not unmeasured, (f"{page.relative_to(REPO)} quotes {', '.join(unmeasured)} in its text but no command "
                            f"of the page shows them after `->`: add the command that prints them")


# ---- the matcher itself ----------------------------------------------------------------------


@pytest.mark.parametrize("piece, text, found", [
    ("test accuracy 95.37%", "test loss 0.1658  test accuracy 95.37%\n", True),
    ("test accuracy 95.96%", "test loss 0.1658  test accuracy 95.37%\n", False),
    ("test accuracy 95.4%", "test accuracy 95.37%", True),
    ("test accuracy 100%", "test accuracy 100.00%", True),
    ("h4 = ... std=0.36", "h4 = [64, 256] float32  mean=0.00131736 std=0.355793 min=-0.89", True),
    ("h4 = ... std=0.35", "h4 = [64, 256] float32  mean=0.00131736 std=0.355793 min=-0.89", False),
    ("h4 = ... std=0.36", "h4 = [64, 256] float32\nstd=0.36", False),            # ... stays within a line
    ("std=4e-07", "std=4.24182e-07", True),
    ("std=4e-06", "std=4.24182e-07", False),
    ("w = [[2.] [1.]]", "  w = [[2.]\n [1.]]\n", True),
    ("h = [[0.], [0.000045]]", "h = [[0.      ],\n [0.000045]]", True),
    ("parameters: 235,146 trainable", " parameters: 235,146 trainable, 0 non-trainable", True),
    ("parameters: 235,147 trainable", " parameters: 235,146 trainable, 0 non-trainable", False),
    ("loss 0.69", "epoch 1/9  loss 0.7000\ntest loss 0.6931", True),              # any occurrence
    ("a = [[2.3]]", "a = [[12.3]]", False),                                     # whole numbers only
    ("f = -12", "f = -12\n", True),
    ("f = 12", "f = -12\n", False),
])
def test_figures_match_as_documented(piece, text, found):
    assert figure_found(piece, text) is found


def test_figures_follow_the_arrow_outside_quotes():
    assert split_figures("nnc eval m.nn --at 'x=[1]'   # saturated -> h4 = ... std=0.97; min=-1") == \
        ("nnc eval m.nn --at 'x=[1]'   # saturated ", ["h4 = ... std=0.97", "min=-1"])
    assert split_figures("nnc eval m.nn --at 'x=\"->\"'")[1] == []
    assert split_figures("nnc check m.nn   # each layer's shape -> [B, 10]")[1] == ["[B, 10]"]
    assert split_figures("nnc eval m.nn --at x=1   ->  f = -12")[1] == ["f = -12"]


# ---- the perceptron learning rule ------------------------------------------------------------


def test_perceptron_rule_example_is_the_rule_step_by_step():
    """examples/perceptron_rule.nn trained by nnc's SGD (batch 1) updates w and b exactly as
    w += η·(t − y)·x, b += η·(t − y), y = step(x·w + b), after every step."""
    path = REPO / "examples" / "perceptron_rule.nn"
    model = nnc.load(path)
    config = config_from(model, make_parser().parse_args(["run", str(path)]))
    assert config.batch == 1 and config.optimizer.name == "sgd" and config.schedule.name == "constant"
    eta = config.lr
    train = load_for_model(model).train
    x, t = train["x"], train["target"]
    trainer = Trainer(model, config)
    w, b = np.zeros((2, 1)), np.full(1, -0.5)
    updates = []

    def after_step(done, total, loss, accuracy):
        nonlocal w, b
        row = trainer.epoch_order(len(x), trainer.epoch)[done - 1]
        y = float(x[row] @ w[:, 0] + b[0] >= 0)
        w = w + eta * (t[row, 0] - y) * x[row][:, None]
        b = b + eta * (t[row, 0] - y)
        got = trainer.model_params()
        np.testing.assert_array_equal(got["w"], w, err_msg=f"epoch {trainer.epoch + 1}, step {done}")
        np.testing.assert_array_equal(got["b"], b, err_msg=f"epoch {trainer.epoch + 1}, step {done}")
        updates.append(t[row, 0] != y)

    for _ in range(config.epochs):
        trainer.train_epoch(train, on_step=after_step)
    assert len(updates) == 4 * config.epochs and sum(updates) >= 3     # the rule did move the weights
    assert np.array_equal((x @ w + b >= 0).astype(np.float32), t)        # and they compute AND


# ---- a figure read from the run folder -------------------------------------------------------


def test_schedule_rates_in_history_are_the_course_figures(tmp_path):
    """docs/course.md quotes the `lr` column of history.csv for its schedules.nn."""
    page = REPO / "docs" / "course.md"
    quoted = re.search(r"for `schedules\.nn`: ([\d.]+) at the end of the warm-up epoch, then ([\d.]+), ([\d.]+), "
                       r"([\d.]+)\)", page.read_text(encoding="utf-8"))
    assert quoted, "docs/course.md no longer quotes the rates of schedules.nn"
    (tmp_path / "schedules.nn").write_text(named_files(page)["schedules.nn"], encoding="utf-8")
    result = run_main("run", "schedules.nn", "--out", "runs/warmup", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "runs" / "warmup" / "history.csv", newline="") as f:
        rates = [row["lr"] for row in csv.DictReader(f)]
    assert len(rates) == len(quoted.groups())
    for printed, shown in zip(rates, quoted.groups()):
        assert same_figure(printed, shown), (printed, shown)
