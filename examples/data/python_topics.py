"""Writes python_topics.txt: the help topics of the Python standard library's documentation as plain text.

The text is `pydoc_data/topics.py` of the Python that runs this script (the
text `help("assert")` shows, generated from the Python documentation, PSF
licence): every topic in the order of its name, separated by one blank line,
with the trailing whitespace of each line removed. The same Python version
writes the same bytes; the file in the repository was written by Python 3.11.7
(MADE_WITH):

    python3 examples/data/python_topics.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from pydoc_data.topics import topics

MADE_WITH = "3.11.7"
OUT = Path(__file__).resolve().parent / "python_topics.txt"


def topics_text() -> str:
    parts = []
    for name in sorted(topics):
        lines = [line.rstrip() for line in topics[name].strip("\n").split("\n")]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    version = ".".join(map(str, sys.version_info[:3]))
    if version != MADE_WITH:
        print(f"note: Python {version}; the file in the repository was written by {MADE_WITH}", file=sys.stderr)
    OUT.write_text(topics_text(), encoding="utf-8", newline="\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")
