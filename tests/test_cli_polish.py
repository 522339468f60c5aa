"""Command-line polish: no flag guessed from a prefix, a did-you-mean for unknown commands, flags and choices,
`nnc` alone prints its help, Ctrl-C during start-up ends in one line, --threads no more than the cores (and
`nnc bench` with `nnc run`'s default threads), CSV files separated by semicolons or tabs, and the progress a
download shows (its lines through a real download are checked in test_data.py).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, REPO, nnc_env, run_main

import nnc
from nnc.cli.main import make_parser, parse
from nnc.data import load_dataset
from nnc.data.fetch import DownloadProgress
from nnc.errors import NncError
from nnc.specs import OPTIMIZERS, check_name
from nnc.train.config import default_threads, usable_cores

XOR = "examples/xor.nn"
CIRCUIT = "examples/circuit.nn"
LINREG = EXAMPLES / "linreg.nn"

# the smallest command line of each command, so that a flag added to it is all that can be wrong
ARGV = {"check": ["m.nn"], "eval": ["m.nn"], "predict": ["m.nn", "--input", "x.png"], "grad": ["m.nn"],
        "run": ["m.nn"], "generate": ["m.nn", "--prime", "a"], "explain": ["m.nn"], "viz": [], "compile": ["m.nn"],
        "bench": ["m.nn"]}


def usage_error(capsys, argv: list[str]) -> str:
    """What nnc prints for a command line it refuses (exit 2), parsed only: nothing runs."""
    with pytest.raises(SystemExit) as exit:
        parse(make_parser(), argv)
    assert exit.value.code == 2
    return capsys.readouterr().err


# ---- flags: no prefix guessing, did-you-mean -----------------------------------------------------------


def test_a_prefix_of_a_flag_is_refused_and_suggested():
    result = run_main("run", XOR, "--epoch", "2")
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith("nnc run: error: unrecognized arguments: --epoch 2\nhint: did you mean --epochs?\n")
    assert result.stdout == ""


@pytest.mark.parametrize("command", list(ARGV))
def test_no_command_guesses_a_flag_from_its_prefix(capsys, command):
    """Every command's parser: a flag cut short by one letter (where only that flag starts so) is unknown."""
    flags = make_parser().command_parsers[command].flags
    cut = [f[:-1] for f in flags if f.startswith("--") and len(f) > 5 and [g for g in flags if g.startswith(f[:-1])]
           == [f]]
    assert cut, command
    for prefix in cut:
        err = usage_error(capsys, [command, *ARGV[command], prefix, "1"])
        assert f"unrecognized arguments: {prefix}" in err and f"hint: did you mean {prefix}" in err, err


@pytest.mark.parametrize("argv, message, hint", [
    (["run", XOR, "--learning-rate", "0.1"], "nnc run: error: unrecognized arguments: --learning-rate 0.1",
     "did you mean --lr?"),
    (["run", XOR, "--batch_size", "8"], "nnc run: error: unrecognized arguments: --batch_size 8",
     "did you mean --batch?"),
    (["run", XOR, "--Weight-Decay=0.1", "--num-threads", "1"],
     "nnc run: error: unrecognized arguments: --Weight-Decay=0.1 --num-threads 1",
     "did you mean --weight-decay for --Weight-Decay and --threads for --num-threads?"),
    (["run", XOR, "--optimizer", "Adam"], "nnc run: error: argument --optimizer: invalid choice: 'Adam' (choose "
     f"from {', '.join(map(repr, OPTIMIZERS))})", "did you mean 'adam'?"),
    (["bench", XOR, "--optimizer", "SGD"], "nnc bench: error: argument --optimizer: invalid choice: 'SGD'",
     "did you mean 'sgd'?"),
    (["run", XOR, "--schedule", "cosin"], "nnc run: error: argument --schedule: invalid choice: 'cosin'",
     "did you mean 'cosine'?"),
    (["eval", CIRCUIT, "--dtype", "Float64"], "nnc eval: error: argument --dtype: invalid choice: 'Float64' (choose "
     "from 'float32', 'float64')", "did you mean 'float64'?"),
    (["train", XOR], "nnc: error: argument COMMAND: invalid choice: 'train' (choose from 'check', 'eval', "
     "'predict', 'grad', 'run', 'generate', 'explain', 'viz', 'compile', 'bench', 'export', 'import')",
     "did you mean 'run'?"),
    (["evaluate", CIRCUIT], "nnc: error: argument COMMAND: invalid choice: 'evaluate'", "did you mean 'eval'?"),
], ids=["initials", "underscore", "two-flags", "optimizer-case", "bench-optimizer", "schedule", "dtype", "train",
        "evaluate"])
def test_did_you_mean(argv, message, hint):
    result = run_main(*argv)
    assert result.returncode == 2, result.stderr
    *_, error, hint_line, end = result.stderr.split("\n")
    assert error.startswith(message) and hint_line == f"hint: {hint}" and end == "", result.stderr
    assert result.stderr.startswith("usage: nnc") and result.stdout == ""


@pytest.mark.parametrize("argv", [["eval", CIRCUIT, "--bogus"], ["run", XOR, "--verbose"], ["frobnicate"]])
def test_nothing_close_no_hint(capsys, argv):
    err = usage_error(capsys, argv)
    assert "error: " in err and "hint:" not in err, err


def test_a_name_in_the_wrong_case_is_suggested_not_accepted():
    """The train block's names go through the same check: SGD is not sgd, but it is what was meant."""
    with pytest.raises(NncError) as err:
        check_name(OPTIMIZERS, "SGD", "optimizer")
    assert err.value.format() == "error: unknown optimizer 'SGD'\nhint: did you mean 'sgd'?"


def test_nnc_alone_prints_the_help():
    result = run_main()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: nnc") and "COMMAND" in result.stdout and " run " in result.stdout
    assert result.stderr == ""


# ---- Ctrl-C during start-up ----------------------------------------------------------------------------


def catches_ctrl_c(pid: int, timeout: float = 30) -> None:
    """Wait until the process `pid` has its SIGINT handler (Python installs it as it starts, before any
    import): on a loaded machine 0.1 s after the start may be before that."""
    if not Path("/proc/self/status").exists():   # not Linux: the delay alone
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(status.split("SigCgt:")[1].split()[0], 16)
        if caught & (1 << (signal.SIGINT - 1)):
            return
        time.sleep(0.002)
    raise AssertionError(f"process {pid} did not install a SIGINT handler within {timeout} s")


@pytest.mark.parametrize("entry", ["python -m nnc", "console script"])
@pytest.mark.parametrize("delay", [0.1, 0.3])
def test_ctrl_c_during_start_up_ends_in_one_line(tmp_path, entry, delay):
    """SIGINT while nnc loads its modules, the data or compiles (before the first training step): one line on
    stderr, exit 130, no traceback."""
    command = [sys.executable, "-m", "nnc"] if entry == "python -m nnc" else [str(Path(sys.executable).parent / "nnc")]
    proc = subprocess.Popen([*command, "run", "examples/mnist_mlp.nn", "--out", str(tmp_path / "run")], cwd=REPO,
                            env=nnc_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    catches_ctrl_c(proc.pid)   # before that, SIGINT ends the interpreter as it starts: nnc is not running yet
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    # 130, or ended by SIGINT, which a shell reports as 130 too: CPython ends so, whatever status nnc returns,
    # when the KeyboardInterrupt passed through an exec or eval of a string (dataclasses build classes so)
    assert proc.returncode in (130, -signal.SIGINT), err
    assert err == "nnc: interrupted\n" and out == ""
    assert not (tmp_path / "run").exists()


def test_a_ctrl_c_that_a_library_turns_into_its_own_error_is_still_an_interruption(monkeypatch, capsys):
    """numpy, interrupted while it loads its C extension, raises ImportError: that is Ctrl-C, not a bug in nnc."""
    cli = importlib.import_module("nnc.cli.main")

    def loading_numpy(argv=None):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)
        except KeyboardInterrupt:
            raise ImportError("PyCapsule_Import could not import module \"datetime\"") from None

    monkeypatch.setattr(cli, "make_parser", loading_numpy)
    assert cli.main(["check", "m.nn"]) == 130
    assert capsys.readouterr().err == "nnc: interrupted\n"


def test_a_ctrl_c_that_python_drops_is_raised_again(monkeypatch, capsys):
    """A Ctrl-C in a weakref callback (the import system's module locks have them) is printed and dropped by
    Python; nnc raises it again."""
    cli = importlib.import_module("nnc.cli.main")

    class Module:
        pass

    def loading(argv=None):
        def callback(ref):
            raise KeyboardInterrupt

        module = Module()
        ref = weakref.ref(module, callback)  # noqa: F841 (the callback runs when `module` goes)
        del module
        time.sleep(10)
        raise AssertionError("the Ctrl-C was lost")

    monkeypatch.setattr(cli, "make_parser", loading)
    started = time.monotonic()
    assert cli.main(["check", "m.nn"]) == 130
    assert capsys.readouterr().err == "nnc: interrupted\n" and time.monotonic() - started < 5


# ---- threads -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "bench"])
def test_more_threads_than_cores_needs_oversubscribe(capsys, command):
    cores = usable_cores()
    err = usage_error(capsys, [command, XOR, "--threads", str(cores + 1)])
    assert err.endswith(
        f"nnc {command}: error: argument --threads: got {cores + 1}, expected at most {cores}, the cores this "
        f"process may use\nhint: use --threads {cores} or fewer, or add --oversubscribe to run {cores + 1} threads "
        f"on {cores} core{'s' if cores > 1 else ''} anyway (usually slower)\n")
    args = parse(make_parser(), [command, XOR, "--threads", str(cores + 1), "--oversubscribe"])
    assert args.threads == cores + 1
    assert parse(make_parser(), [command, XOR, "--threads", str(cores)]).threads == cores


def test_oversubscribed_run_trains(tmp_path):
    result = run_main("run", REPO / XOR, "--epochs", "1", "--threads", usable_cores() + 1, "--oversubscribe",
                      "--out", "run", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["threads"] == usable_cores() + 1


def test_bench_uses_the_threads_nnc_run_would(tmp_path):
    """Neither flag nor train block: every core (at most 8), as nnc run; the train block's when it says."""
    result = run_main("bench", XOR, "--batch", "4", "--rounds", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == default_threads()
    text = (REPO / XOR).read_text().replace("  epochs    = 300\n", "  epochs    = 300\n  threads   = 1\n")
    (tmp_path / "xor.nn").write_text(text)
    result = run_main("bench", "xor.nn", "--batch", "4", "--rounds", "1", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["threads"] == 1


# ---- CSV separators ------------------------------------------------------------------------------------


@pytest.mark.parametrize("separator", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_csv_separated_by_semicolons_or_tabs_loads(tmp_path, separator):
    path = tmp_path / "t.csv"
    path.write_text(separator.join(["hours", "score"]) + "\n" +
                    "".join(f"{h}{separator}{s}\n" for h, s in [(2, 81), (4.5, 93), (-0.25, 70)]))
    data = load_dataset(str(path), nnc.load(LINREG), target="score")
    np.testing.assert_array_equal(data.train["x"][:, 0], [2, 4.5, -0.25])
    np.testing.assert_array_equal(data.train["y"][:, 0], [81, 93, 70])


def test_a_quoted_column_name_with_a_semicolon_is_still_comma_separated(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('"hours; weekly",score\n2,81\n4,93\n')
    data = load_dataset(str(path), nnc.load(LINREG), target="score")
    np.testing.assert_array_equal(data.train["x"][:, 0], [2, 4])


@pytest.mark.parametrize("separator, name", [(";", "semicolons"), ("\t", "tabs")])
def test_decimal_commas_are_named(tmp_path, separator, name):
    path = tmp_path / "t.csv"
    path.write_text(f"hours{separator}score\n2{separator}81\n4,5{separator}1.093,5\n")
    with pytest.raises(NncError) as err:
        load_dataset(str(path), nnc.load(LINREG), target="score")
    assert err.value.format() == (
        f"{path}:3: error: decimal comma in column 'hours': got '4,5', expected a number with a decimal point\n"
        f"hint: the file separates its columns with {name} and writes decimals with commas (a spreadsheet's export "
        f"for a decimal-comma locale); export it with '.' as the decimal separator")


# ---- download progress ---------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_download_progress_in_a_log_is_a_line_every_30_seconds():
    stream, clock = io.StringIO(), Clock()
    progress = DownloadProgress("http://mirror/f.gz", 10_000_000, stream, clock)
    for second in range(0, 101, 5):  # 100 kB/s
        clock.now = second
        progress.update(100_000 * second)
    progress.end(10_000_000, complete=True)
    assert stream.getvalue().split("\n") == [
        "downloading http://mirror/f.gz (10.0 MB)",
        "  3.0 MB of 10.0 MB (30%), 100.0 kB/s, 1m 10s left",
        "  6.0 MB of 10.0 MB (60%), 100.0 kB/s, 40s left",
        "  9.0 MB of 10.0 MB (90%), 100.0 kB/s, 10s left",
        "  10.0 MB in 1m 40s (100.0 kB/s)",
        ""]


def test_download_progress_on_a_terminal_is_one_line_rewritten_at_most_every_half_second():
    stream, clock = Terminal(), Clock()
    progress = DownloadProgress("http://mirror/f.gz", 2_000_000, stream, clock)
    for step in range(1, 21):  # 0.1 s apart, 1 MB/s
        clock.now = step / 10
        progress.update(100_000 * step)
    progress.end(2_000_000, complete=True)
    text = stream.getvalue()
    assert text.startswith("downloading http://mirror/f.gz (2.0 MB)\n")
    shown = text.split("\n")[1].split("\r")[1:]
    assert shown == ["  500.0 kB of 2.0 MB (25%), 1.0 MB/s, 1.5s left\033[K",
                     "  1.0 MB of 2.0 MB (50%), 1.0 MB/s, 1.0s left\033[K",
                     "  1.5 MB of 2.0 MB (75%), 1.0 MB/s, 0.5s left\033[K",
                     "  2.0 MB of 2.0 MB (100%), 1.0 MB/s, 0.0s left\033[K",
                     "  2.0 MB in 2.0s (1.0 MB/s)\033[K"]
    assert text.endswith("\n") and text.count("\n") == 2


def test_a_failed_download_ends_its_progress_line():
    stream, clock = Terminal(), Clock()
    progress = DownloadProgress("http://mirror/f.gz", 2_000_000, stream, clock)
    clock.now = 1.0
    progress.update(1_000_000)
    progress.end(1_000_000, complete=False)
    assert stream.getvalue().endswith("  1.0 MB of 2.0 MB (50%), 1.0 MB/s, 1.0s left\033[K\n")
