"""The `nnc` command: the parser assembled from the command modules, and the error policy.

Each command module (check, eval, predict, grad, run, generate, explain, viz,
compile, bench) adds its subparser with `add_parser` and sets the function that runs
it; the options several share are nnc.cli.options'. User mistakes (NncError)
print one located message and exit 1; bad flags exit 2 (argparse); Ctrl-C
exits 130, a closed pipe 141; anything else is a bug in nnc, said in one line
with exit status 3. A traceback appears only with --debug.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import NncError
from ..version import __version__
from . import bench, check, compile, eval, explain, generate, grad, predict, run, viz

# in the order `nnc --help` lists them
COMMANDS = (check, eval, predict, grad, run, generate, explain, viz, compile, bench)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnc", description="nnc: compile declarative .nn neural-network models, run them and see them learn.")
    parser.add_argument("--version", action="version", version=f"nnc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = make_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NncError as err:
        if args.debug:
            raise
        print(err.format(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nnc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (nnc ... | head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail
        return 141
    except Exception as err:  # a bug in nnc: say so plainly
        if args.debug:
            raise
        print(f"nnc: internal error: {type(err).__name__}: {err}\n"
              f"hint: this is a bug in nnc; rerun with --debug for the traceback and report it", file=sys.stderr)
        return 3
