"""The documentation is tested: every model it shows builds, every command it shows parses or runs,
every figure it quotes is re-measured (tests/test_doc_figures.py).

Conventions of README.md, docs/*.md and examples/README.md, read by this file:

- ```nn             a complete .nn file: each model is parsed, built and shape-checked in its
                    evaluation and training forms and run once on random inputs (batch 2) by the
                    reference interpreter. ```nn NAME.nn also names the file, so the ```sh
                    commands of the same page may use NAME.nn.
- ```nn-fragment    a few lines of a model; not checked.
- ```nn-error NAME.nn followed by a ```text block: a file nnc must refuse; the text block is
                    exactly what `nnc check NAME.nn` prints on stderr.
- ```sh             every line (or `&&` part) starting with `nnc ` or `.venv/bin/nnc ` is a command,
                    parsed by nnc's own argparse parser (`nnc.cli.main.make_parser`) so a renamed flag
                    fails here; its model file must
                    exist (examples/... or a named nn block of the page). The quick subcommands
                    (check, eval, grad, explain) are run and must exit 0 (on the reference
                    interpreter unless the command names a backend), from the repository root
                    (a page's own files and anything a command writes: a temporary folder);
                    run, predict, compile and the others are only parsed (they train, read
                    data or take seconds).
- ```text output   right after a ```sh block of one quick command: exactly what it prints
                    on stdout.
- `#   nnc ...` lines in the header comments of examples/*.nn are parsed too (an arrow `->`
                    starts the shown result).
- `-> FIGURES`      figures that come from running nnc, on a command line of a ```sh block (in its
                    comment: `nnc run examples/xor.nn   # learns XOR -> test loss 0.0025`) or of
                    an example's header (`#   nnc eval examples/circuit.nn --at ... -> f = -12`).
                    A line holding only `# -> FIGURES` adds figures to the command above it.
                    FIGURES is one or more pieces of what the command prints, separated by `;`:
                    each must occur in its stdout, token by token, where a space stands for any
                    whitespace (newlines too), tokens written together may be apart, `...` skips
                    text within a line, and a number matches a printed number that rounds to it
                    at the digits shown (`std=0.36` matches `std=0.355793`, `100%` matches
                    `100.00%`, `4e-07` matches `4.24182e-07`). tests/test_doc_figures.py runs the
                    commands of each block (or header) that has figures, in order up to the last
                    one with figures, natively and as written (`--threads 2` where the last
                    digits depend on the thread count: convolutions), in a temporary folder
                    holding the page's named nn files and links to examples/ and tests/
                    (MNIST and Fashion-MNIST from $NNC_DATA_DIR).
- ```console        `$ nnc ...` on its first line, then exactly what the command prints (stdout,
                    then stderr); run like the blocks with figures.
- ```python         a line `EXPR  # -> FIGURES` shows figures of repr(EXPR): the block's lines up to
                    the last such line run from a temporary folder as above.
- figures in prose  every percentage with decimals (`95.37%`) and every number with four or more
                    decimals (`0.6931`) written in the text or tables of a page, outside code, must
                    also be in one of the page's checked figures or outputs above, so a figure
                    quoted in a sentence is one a test measures. A figure that is not nnc's (a
                    published result) or that a test of its own checks is listed, with the reason,
                    in a comment beside it: `<!-- elsewhere: 98.40% (Keras's published result) -->`.
- the tables of docs/language.md between `<!-- table: KIND -->` and `<!-- end table -->`
                    list every built-in function (KIND functions), initializer, optimizer,
                    schedule and train setting with its signature or default, as nnc/layers.py,
                    nnc/builder.py and nnc/settings.py define them.
"""

from __future__ import annotations

import inspect
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_main
from doc_files import DOC_FILES

import nnc
from nnc.cli.main import make_parser
from nnc.errors import NncError
from nnc.front.builder import INIT_NAMES
from nnc.front.layers import FUNCTIONS
from nnc.front.settings import SETTINGS
from nnc.front.syntax import parse
from nnc.ir import interp
from nnc.specs import OPTIMIZERS, SCHEDULES

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "examples" / "README.md"]
LANGUAGE = REPO / "docs" / "language.md"
QUICK = {"check", "eval", "grad", "explain"}          # subcommands run here, not only parsed
WRITES = {"--out", "--save-params", "-o", "--output"}  # flags that write files: those commands run in a temp dir


@dataclass
class Block:
    page: Path
    line: int       # of the opening fence
    info: str       # what follows ``` on the opening fence
    text: str

    @property
    def kind(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def filename(self) -> str | None:
        words = self.info.split()
        return words[1] if len(words) > 1 else None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def code_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order."""
    blocks, current, lines = [], None, []
    for number, line in enumerate(page.read_text(encoding="utf-8").split("\n"), 1):
        fence = re.match(r"^\s*```(.*)$", line)
        if current is None and fence:
            current, lines = Block(page, number, fence.group(1).strip(), ""), []
        elif current is not None and fence and not fence.group(1).strip():
            current.text = "\n".join(lines) + "\n"
            blocks.append(current)
            current = None
        elif current is not None:
            lines.append(line)
    assert current is None, f"{page.relative_to(REPO)}:{current.line}: unclosed code block"
    return blocks


def existing_pages() -> list[Path]:
    return [p for p in PAGES if p.is_file()]


def all_blocks(kind: str) -> list[Block]:
    return [b for page in existing_pages() for b in code_blocks(page) if b.kind == kind]


def named_files(page: Path) -> dict[str, str]:
    """NAME.nn -> text of the page's named nn and nn-error blocks."""
    return {b.filename: b.text for b in code_blocks(page) if b.kind in ("nn", "nn-error") and b.filename}


# ---- nn blocks ----------------------------------------------------------------------------


def test_the_pages_exist_and_show_models():
    for name in ("docs/language.md", "docs/course.md", "examples/README.md"):
        assert (REPO / name).is_file(), name
    assert len(all_blocks("nn")) >= 20


@pytest.mark.parametrize("block", all_blocks("nn"), ids=lambda b: b.where)
def test_nn_block_builds_and_runs(block):
    filename = block.filename or block.where
    try:
        program = parse(block.text, filename)
        assert program.models, f"{block.where}: no model; mark fragments ```nn-fragment"
        for m in program.models:
            model = nnc.loads(block.text, filename, model=m.name)
            model.training_graph  # noqa: B018 - dropout masks and batch statistics build too
            g = model.graph
            inputs = model.random_inputs(batch=2, seed=0)
            params = model.init_params(seed=0)
            values = interp.run(g, inputs, params, targets=g.roots(), seed=0)
            for name, node in g.outputs.items():
                assert np.all(np.isfinite(values[node])), f"{block.where}: output {name} is not finite"
    except NncError as err:
        pytest.fail(f"{block.where}: the documented model does not build:\n{err.format()}")


@pytest.mark.parametrize("block", all_blocks("nn-error"), ids=lambda b: b.where)
def test_error_example_is_what_nnc_prints(block, tmp_path):
    assert block.filename, f"{block.where}: name the file: ```nn-error NAME.nn"
    blocks = code_blocks(block.page)
    shown = blocks[blocks.index(block) + 1]
    assert shown.kind == "text", f"{block.where}: follow it with a ```text block of the message"
    (tmp_path / block.filename).write_text(block.text, encoding="utf-8")
    result = run_main("check", block.filename, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == shown.text


# ---- commands -----------------------------------------------------------------------------


def commands(page: Path) -> list[tuple[Block, list[str]]]:
    """The `nnc ...` lines of a page's sh blocks as argument lists (line continuations joined)."""
    out = []
    for b in code_blocks(page):
        if b.kind != "sh":
            continue
        for line in b.text.replace("\\\n", " ").replace("&&", "\n").split("\n"):
            words = shlex.split(line, comments=True)
            if words and words[0] in ("nnc", ".venv/bin/nnc"):  # the README's setup line runs the venv's
                out.append((b, words[1:]))
    return out


ALL_COMMANDS = [(page, b, argv) for page in existing_pages() for b, argv in commands(page)]


def written_before(page: Path, block: Block) -> set[str]:
    """The files the `-o` of commands up to `block`'s, in its page, write: a reader has them by then."""
    written = set()
    for b, argv in commands(page):
        written |= {argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "-o"}
        if b is block:
            break
    return written


def shown_output(block: Block) -> str | None:
    """The ```text output block that directly follows an sh block, if any."""
    blocks = code_blocks(block.page)
    after = blocks[blocks.index(block) + 1:]
    return after[0].text if after and after[0].info == "text output" else None


@pytest.mark.parametrize("page, block, argv", ALL_COMMANDS, ids=[" ".join(c[2]) for c in ALL_COMMANDS])
def test_documented_command(page, block, argv, tmp_path):
    try:
        args = make_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{block.where}: nnc's parser refuses `nnc {' '.join(argv)}`")
    expected = shown_output(block)
    if expected is not None:
        assert [b for b, _ in commands(page)].count(block) == 1, f"{block.where}: one command before its output"
        assert args.command in QUICK and not getattr(args, "params", None), \
            f"{block.where}: only check, eval, grad and explain outputs are checked"
    model = getattr(args, "model", None)
    if model is None:
        return
    files = named_files(page)
    if model in files:
        (tmp_path / model).write_text(files[model], encoding="utf-8")
    elif model in DOC_FILES:   # an ONNX model tests/doc_files.py makes
        return
    else:
        assert (REPO / model).is_file() or model in written_before(page, block), \
            f"{block.where}: `nnc {' '.join(argv)}`: no file {model}"
    if args.command not in QUICK or getattr(args, "data", None) or getattr(args, "params", None) \
            or getattr(args, "inputs", None):
        return
    cwd = tmp_path if model in files else REPO
    if model not in files and WRITES & set(argv):  # files it writes land in the temp dir
        cwd, argv = tmp_path, [str(REPO / a) if a == model else a for a in argv]
    if getattr(args, "backend", "given") is None:  # the interpreter: the same numbers without compile time
        argv = [*argv, "--backend", "reference"]
    result = run_main(*argv, cwd=cwd)
    assert result.returncode == 0, f"{block.where}: `nnc {' '.join(argv)}` failed:\n{result.stderr}"
    if expected is not None:
        assert result.stdout == expected, f"{block.where}: the page shows other output than nnc prints"


EXAMPLE_COMMANDS = [(path, line) for path in sorted((REPO / "examples").glob("*.nn"))
                    for line in re.findall(r"^#\s+(nnc .*?)(?:\s+->.*)?$", path.read_text(encoding="utf-8"), re.M)]


@pytest.mark.parametrize("path, line", EXAMPLE_COMMANDS, ids=[line for _, line in EXAMPLE_COMMANDS])
def test_commands_in_example_comments_parse(path, line):
    """`#   nnc eval examples/circuit.nn --at x=-2 y=5 z=-4   ->  f = -12` in an example's header."""
    argv = shlex.split(line, comments=True)[1:]
    try:
        args = make_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{path.relative_to(REPO)}: nnc's parser refuses `{line}`")
    model = getattr(args, "model", None)
    assert model is None or (REPO / model).is_file(), f"{path.relative_to(REPO)}: `{line}`: no file {model}"


def test_pages_show_commands():
    counted = {p.relative_to(REPO).as_posix(): len(commands(p)) for p in existing_pages()}
    assert counted["docs/course.md"] >= 20 and counted["examples/README.md"] >= 10, counted


def test_every_example_has_a_line_in_examples_readme():
    text = (REPO / "examples" / "README.md").read_text(encoding="utf-8")
    for path in sorted((REPO / "examples").glob("*.nn")):
        assert f"examples/{path.name}" in text, f"examples/README.md does not mention {path.name}"


# ---- tables generated from the code -------------------------------------------------------


def table_rows(kind: str) -> dict[str, str]:
    """First-column code spans of the `<!-- table: KIND -->` tables of docs/language.md: {name: span}."""
    text = LANGUAGE.read_text(encoding="utf-8")
    rows = {}
    for part in re.findall(rf"<!-- table: {kind} -->(.*?)<!-- end table -->", text, re.S):
        for span in re.findall(r"^\|\s*`([^`]+)`", part, re.M):
            name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", span).group(0)
            assert name not in rows, f"{kind} table: {name} listed twice"
            rows[name] = span
    assert rows, f"docs/language.md has no <!-- table: {kind} --> table"
    return rows


def literal(value) -> str:
    """A default value as a .nn source would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return re.sub(r"e-0(\d)", r"e-\1", repr(value))
    return str(value)


def signature(name: str, fn) -> str:
    """dense(x, units, bias=true, [init], [name]): [p] an optional argument with no default value."""
    parts = []
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.kind is p.VAR_POSITIONAL:
            parts.append(f"{p.name}...")
        elif p.default is inspect.Parameter.empty:
            parts.append(p.name)
        elif p.default is None:
            parts.append(f"[{p.name}]")
        else:
            default = f'"{p.default}"' if isinstance(p.default, str) else literal(p.default)
            parts.append(f"{p.name}={default}")
    return f"{name}({', '.join(parts)})"


def call_form(name: str, args: dict) -> str:
    return f"{name}({', '.join(f'{k}={literal(v)}' for k, v in args.items())})" if args else name


def test_functions_table_matches_the_code():
    rows = table_rows("functions")
    assert sorted(rows) == sorted(FUNCTIONS), "the functions table and nnc/layers.py FUNCTIONS differ"
    for name, fn in FUNCTIONS.items():
        assert rows[name] == signature(name, fn)


def test_optimizer_and_schedule_tables_match_the_code():
    for kind, table in (("optimizers", OPTIMIZERS), ("schedules", SCHEDULES)):
        rows = table_rows(kind)
        assert sorted(rows) == sorted(table)
        for name, args in table.items():
            assert rows[name] == call_form(name, args)


def test_train_settings_table_matches_the_code():
    rows = table_rows("settings")
    assert sorted(rows) == sorted(SETTINGS)
    for name, (_kind, default) in SETTINGS.items():
        assert rows[name] == name + ("" if default is None else f" = {literal(default)}")


def test_initializers_are_all_documented():
    rows = table_rows("initializers")
    assert sorted(rows) == sorted(INIT_NAMES | {"normal", "uniform", "constant"})
    for name in ("normal", "uniform", "constant"):
        assert rows[name] == signature(name, FUNCTIONS[name])
