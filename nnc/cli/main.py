"""The `nnc` command: the parser assembled from the command modules, and the error policy.

Each command module (check, eval, predict, grad, run, generate, explain, viz,
compile, bench) adds its subparser with `add_parser` and sets the function that runs
it; the options several share are nnc.cli.options'. `nnc` alone prints the help
(exit 0). Usage mistakes exit 2 with argparse's message, and a `hint: did you
mean ...?` when an unknown command, flag or choice is close to a real one; a flag
is never guessed from its prefix (`--epoch` is not `--epochs`). User mistakes
(NncError) print one located message and exit 1; Ctrl-C exits 130 with one line,
from the first moment: this module imports little, and the command modules
(numpy, the front end, the runtime: a few tenths of a second to load) are
imported inside the same guard as the command runs in (`CtrlC`). A closed pipe
exits 141; anything else is a bug in nnc, said in one line with exit status 3.
A traceback appears only with --debug.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys

from ..version import __version__

# commands a newcomer may type, and the command that does it (near misses such as `evaluate` difflib finds)
COMMAND_SYNONYMS = {"train": "run", "fit": "run", "infer": "predict", "sample": "generate", "plot": "viz",
                    "draw": "viz"}


class Parser(argparse.ArgumentParser):
    """argparse's parser, for `nnc` and every command: no prefix guessing, a did-you-mean for a value that is not
    one of an option's choices, and the flags it declared (`flags`) for a did-you-mean on an unknown one."""

    def __init__(self, *args, **kwargs):
        self.flags: list[str] = []  # before argparse adds --help
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        choices = kwargs.get("choices")
        if choices is not None and "type" not in kwargs and all(isinstance(c, str) for c in choices):
            kwargs["type"] = choice_type(tuple(choices))
        action = super().add_argument(*args, **kwargs)
        self.flags.extend(action.option_strings)
        return action


def choice_type(choices: tuple[str, ...]):
    """The argument type of an option with `choices`: argparse's message for a value that is none of them, with
    the closest one (`--optimizer Adam`: did you mean 'adam'?)."""
    def choice(text: str) -> str:
        if text in choices:
            return text
        from ..errors import closest

        near = closest(text, choices)
        raise argparse.ArgumentTypeError(with_hint(
            f"invalid choice: {text!r} (choose from {', '.join(map(repr, choices))})",
            f"did you mean {near!r}?" if near else None))
    return choice


def with_hint(message: str, hint: str | None) -> str:
    return f"{message}\nhint: {hint}" if hint else message


def closest_flag(arg: str, flags: list[str]) -> str | None:
    """The flag an unknown `arg` most likely means: whose initials it spells out (--learning-rate: --lr), that it
    is the only prefix of (--epoch: --epochs), or the nearest spelling, in any case and with `_` for `-`."""
    from ..errors import closest

    given = arg.split("=", 1)[0].lstrip("-").replace("_", "-").lower()
    names = {flag.lstrip("-"): flag for flag in flags if flag.startswith("--")}
    words = given.split("-")
    initials = "".join(w[:1] for w in words)
    starts = [name for name in names if name.startswith(given)]
    if len(words) > 1 and initials in names:
        near = initials
    elif len(starts) == 1:
        near = starts[0]
    else:
        near = closest(given, names)
    return names[near] if near else None


def commands() -> tuple:
    """The command modules, in the order `nnc --help` lists them."""
    from . import bench, check, compile, eval, explain, export, generate, grad, import_, predict, run, viz

    return (check, eval, predict, grad, run, generate, explain, viz, compile, bench, export, import_)


def __getattr__(name: str):
    if name == "COMMANDS":  # imported on demand: importing this module stays quick (see the module docstring)
        return commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def named_command(argv: list[str]):
    """The module of the command `argv` names (`import` is import_.py), or None: `nnc check` need not load what
    `nnc run` and `nnc bench` import (the training stack, LLVM)."""
    import importlib
    import importlib.util
    import keyword

    name = next((a for a in argv if not a.startswith("-")), None)
    if name is None or not name.isidentifier() or name.startswith("_"):
        return None
    module = f"{__package__}.{name}_" if keyword.iskeyword(name) else f"{__package__}.{name}"
    if importlib.util.find_spec(module) is None:
        return None
    module = importlib.import_module(module)
    return module if hasattr(module, "add_parser") else None


def make_parser(argv: list[str] | None = None) -> Parser:
    """nnc's parser with every command, or (given the command line) with the command it names alone when that
    is one: the same parse, without importing the other commands' modules."""
    parser = Parser(
        prog="nnc", description="nnc: compile declarative .nn neural-network models, run them and see them learn.")
    parser.add_argument("--version", action="version", version=f"nnc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    command = named_command(argv) if argv else None
    for module in (command,) if command else commands():
        module.add_parser(sub)
    if command and next(a for a in argv if not a.startswith("-")) not in sub.choices:
        return make_parser()
    parser.command_parsers = sub.choices  # name -> the command's parser
    return parser


def parse(parser: Parser, argv: list[str]) -> argparse.Namespace:
    """The parsed command line; a usage mistake exits 2 (argparse's message, a hint when one is close). The checks
    a command's options declared (`validate`, several flags at once) run here, before any work."""
    from ..errors import closest

    name = next((a for a in argv if not a.startswith("-")), None)  # nnc's own options take no values
    if name is not None and name not in parser.command_parsers:
        near = COMMAND_SYNONYMS.get(name.lower()) or closest(name, parser.command_parsers)
        parser.error(with_hint(f"argument COMMAND: invalid choice: {name!r} (choose from "
                               f"{', '.join(map(repr, parser.command_parsers))})", near and f"did you mean '{near}'?"))
    args, extras = parser.parse_known_args(argv)
    command = parser.command_parsers[args.command]
    if extras:
        meant = [(arg.split("=", 1)[0], flag) for arg in extras
                 if arg.startswith("-") and (flag := closest_flag(arg, command.flags))]
        hint = (f"did you mean {meant[0][1]}?" if len(meant) == 1 else
                f"did you mean {' and '.join(f'{flag} for {arg}' for arg, flag in meant)}?" if meant else None)
        command.error(with_hint(f"unrecognized arguments: {' '.join(extras)}", hint))
    if getattr(args, "validate", None):
        try:
            args.validate(args)
        except argparse.ArgumentTypeError as err:
            command.error(str(err))
    return args


class CtrlC:
    """Ctrl-C raises KeyboardInterrupt, as with Python's own handler, and is remembered: a library that turns the
    KeyboardInterrupt into an error of its own while it loads (numpy: ImportError) is not a bug in nnc. One that
    Python could only print and drop (it landed in a weakref callback of the import system) is raised again.
    Where SIGINT is ignored (a background job) it stays ignored."""

    def __init__(self):
        self.pressed = False
        self.previous = self.unraisablehook = None

    def __enter__(self):
        import threading  # here: within main's guard

        self.timer = threading.Timer
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            try:
                self.previous = signal.signal(signal.SIGINT, self.handler)
            except ValueError:  # not the main thread
                return self
            self.unraisablehook, sys.unraisablehook = sys.unraisablehook, self.dropped
        return self

    def handler(self, signum, frame):
        self.pressed = True
        raise KeyboardInterrupt

    def dropped(self, unraisable) -> None:
        if issubclass(unraisable.exc_type, KeyboardInterrupt):  # again, from outside the callback: a moment later
            again = self.timer(0.01, os.kill, (os.getpid(), signal.SIGINT))
            again.daemon = True
            again.start()
        else:
            self.unraisablehook(unraisable)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            sys.unraisablehook = self.unraisablehook
        return False


def main(argv=None) -> int:
    """`nnc ARGS` -> the exit status. Everything but this module's few imports runs inside the Ctrl-C guard.
    Without `argv` (the command line's) nnc is the program: the process ends with the command."""
    try:
        with CtrlC() as ctrl_c:
            return run_command(list(sys.argv[1:] if argv is None else argv), ctrl_c, exits=argv is None)
    except KeyboardInterrupt:
        print("nnc: interrupted", file=sys.stderr)
        return 130


def run_brief(args, exits: bool) -> int:
    """A brief command (its parser sets `brief`: nnc check) with the cycle collector paused. What it loads (numpy,
    networkx, Lark, the front end: tens of thousands of objects) lives until the exit, and the collector would only
    scan it again and again. When the process ends with the command (`exits`) those objects are frozen out of the
    collector, which Python's exit would otherwise scan once more; in a Python session (tests call `main`) the
    collector is simply on again after the command."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return args.func(args)
    finally:
        if exits:
            gc.freeze()
        if collecting:
            gc.enable()


def run_command(argv: list[str], ctrl_c: CtrlC, exits: bool = False) -> int:
    from ..errors import NncError

    args = None
    try:
        parser = make_parser(argv)
        if not argv:
            parser.print_help()
            return 0
        args = parse(parser, argv)
        if getattr(args, "brief", False):
            return run_brief(args, exits)
        return args.func(args)
    except NncError as err:
        if getattr(args, "debug", False):
            raise
        print(err.format(), file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (nnc ... | head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail
        return 141
    except Exception as err:  # a bug in nnc: say so plainly
        if ctrl_c.pressed:
            raise KeyboardInterrupt from err
        if getattr(args, "debug", "--debug" in argv):
            raise
        print(f"nnc: internal error: {type(err).__name__}: {err}\n"
              f"hint: this is a bug in nnc; rerun with --debug for the traceback and report it", file=sys.stderr)
        return 3
