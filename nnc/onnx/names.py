"""Fresh names for both directions: a stem, or the stem numbered when it is taken."""

from __future__ import annotations


def fresh_name(stem: str, taken: set, sep: str = "_", first: int | None = None) -> str:
    """`stem` (or `stem + sep + first` when `first` is given), then stem_2, stem_3, ... until one is not in
    `taken`; the name is added to `taken`."""
    k = first if first is not None else 1
    name = stem if first is None else f"{stem}{sep}{k}"
    while name in taken:
        k += 1
        name = f"{stem}{sep}{k}"
    taken.add(name)
    return name
