"""Writing a diagram: DOT text as is, or SVG / PNG / PDF through Graphviz's `dot` program.

Without `dot` on PATH a `.dot` file still works and any other format is one
clear error saying how to install Graphviz.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import NncError
from ..fileio import atomic_write

FORMATS = (".svg", ".png", ".pdf", ".dot")
INSTALL = ("install Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz) "
           "or write a .dot file")


def output_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise NncError(f"cannot write a diagram to {path}: got format '{suffix or 'none'}', "
                       f"expected {', '.join(FORMATS)}")
    return suffix[1:]


def dot_program() -> str | None:
    return shutil.which("dot")


def render(dot_text: str, fmt: str) -> bytes:
    """The diagram in `fmt` (svg, png, pdf, dot)."""
    if fmt == "dot":
        return dot_text.encode("utf-8")
    program = dot_program()
    if program is None:
        raise NncError(f"rendering {fmt.upper()} needs the Graphviz 'dot' program, which is not on PATH: {INSTALL}")
    done = subprocess.run([program, f"-T{fmt}"], input=dot_text.encode("utf-8"), capture_output=True)
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise NncError(f"Graphviz could not render the diagram: {detail[0] if detail else 'dot failed'}")
    return done.stdout


def write_diagram(dot_text: str, path: str | Path) -> None:
    data = render(dot_text, output_format(path))
    atomic_write(Path(path), lambda f: f.write(data))


class Diagram:
    """A finished diagram: its DOT source, shown as SVG in Jupyter, written to a file by `save`."""

    def __init__(self, source: str):
        self.source = source

    def _repr_svg_(self) -> str | None:
        """Inline SVG for Jupyter; None without Graphviz (Jupyter then shows the text repr)."""
        return svg_text(self.source) if dot_program() else None

    def save(self, path: str | Path) -> None:
        write_diagram(self.source, path)

    def __repr__(self) -> str:
        return f"<nnc diagram: {len(self.source.splitlines())} lines of DOT>"


def svg_text(dot_text: str) -> str:
    """Inline SVG (no XML prologue), for HTML pages and Jupyter."""
    svg = render(dot_text, "svg").decode("utf-8")
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
