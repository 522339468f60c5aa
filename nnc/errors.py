"""User-facing errors: one located message per mistake.

Every mistake a user can make in a model file, on the command line or in the
data they hand nnc surfaces as an `NncError`. Its text follows the compiler
convention

    file.nn:7:18: error: dense: input has shape [B, 16, 5, 5], expected ...
      h1 = relu(dense(c2, 120))
                      ^~
    hint: insert flatten(...)

The CLI prints `format()` and exits 1; a traceback appears only with --debug.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of a source file, 1-based lines and columns, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass(frozen=True)
class Source:
    """The text of a model file and the name it is reported under."""

    text: str = field(repr=False)
    filename: str = "<string>"

    def line(self, number: int) -> str:
        # Lines end at "\n" only, as the parser counts them; str.splitlines would also split
        # at "\r", "\x0b", "\x0c", "\u2028" and others and show the wrong line.
        lines = self.text.split("\n")
        return lines[number - 1].removesuffix("\r") if 0 < number <= len(lines) else ""


@dataclass(frozen=True)
class Loc:
    """A span inside a particular source: what a graph node or AST node points at."""

    source: Source
    span: Span

    def __str__(self) -> str:
        return f"{self.source.filename}:{self.span}"


MAX_SHOWN_LINE = 200


class NncError(Exception):
    """A mistake in user input, reported with its location, never a traceback."""

    def __init__(self, message: str, loc: Loc | None = None, hint: str | None = None,
                 filename: str | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint
        self.filename = filename
        self.notes: list[str] = []  # context such as the block call an error happened in

    def format(self) -> str:
        if self.loc is None:
            prefix = f"{self.filename}: " if self.filename else ""
            text = f"{prefix}error: {self.message}"
        else:
            text = f"{self.loc}: error: {self.message}"
            text += "\n" + caret_lines(self.loc)
        for note in self.notes:
            text += f"\nnote: {note}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.format()


def caret_lines(loc: Loc) -> str:
    """The source line of `loc` and a caret line underlining the span."""
    span = loc.span
    line = loc.source.line(span.line).expandtabs(1)
    start = max(span.column - 1, 0)
    if span.end_line == span.line and span.end_column > span.column:
        width = span.end_column - span.column
    else:
        width = 1
    if len(line) > MAX_SHOWN_LINE:  # keep the caret visible on very long lines
        lo = max(0, start - MAX_SHOWN_LINE // 2)
        line = "..." + line[lo:lo + MAX_SHOWN_LINE] + "..."
        start = start - lo + 3
        width = min(width, MAX_SHOWN_LINE)
    width = max(1, min(width, max(len(line) - start, 1)))
    return f"  {line}\n  {' ' * start}^{'~' * (width - 1)}"


def closest(name: str, choices) -> str | None:
    """The choice `name` most likely stands for, for a `did you mean` (never to accept it): the same word in
    another case, else the nearest spelling (difflib), else None."""
    lowered = {choice.lower(): choice for choice in choices}
    near = nearest(name.lower(), lowered)
    return lowered[near] if near else None


def nearest(name: str, choices) -> str | None:
    """The choice spelled most like `name` (difflib's close match), or None: a mistake's `did you mean`."""
    import difflib  # here: only a mistake pays for it

    near = difflib.get_close_matches(name, list(choices), n=1)
    return near[0] if near else None


class ShapeError(Exception):
    """Raised by an op's shape rule; the builder adds the location.

    `operand` names the index of the argument at fault so the caret can point
    at it rather than at the whole call.
    """

    def __init__(self, message: str, hint: str | None = None, operand: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.operand = operand


class GraphError(Exception):
    """An invariant of the graph IR is broken: a bug in nnc, not in the user's model."""
