"""The user's own data: CSV tables with a header row, and NPZ archives of arrays named after a model's inputs.

A CSV file loads as one float64 array per column, named after its header.
Its columns are separated by commas, or by semicolons or tabs when the header
row splits into more names at those (a spreadsheet set to decimal commas
exports `;`). The `target` column is the target; the other columns, in file
order, are the features. Every value must be a finite number; a missing or
non-numeric value is an error at `file.csv:LINE` naming the column, and a
decimal comma (`1,5`) is named as such.

An NPZ archive binds to a model by name only: one array per input, each named
after it. Arrays named `<input>_test` (all of them or none) form a separate
test part. Pickled objects are refused.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from ..errors import NncError, nearest
from ..fileio import load_npz, reading
from .dataset import Dataset, sample_count

TEST_SUFFIX = "_test"
CSV_HINT = "a CSV file for nnc has a header row of column names, then one row of numbers per sample"
SEPARATORS = {",": "commas", ";": "semicolons", "\t": "tabs"}  # the first is the default


def read_csv(path: Path, target: str | None) -> Dataset:
    """The table's columns as arrays; `target` names the target column (None: every column a feature)."""
    where = str(path)
    header, rows, separator = _read_rows(path)
    columns = _parse_columns(where, header, rows, separator)
    if target is not None and target not in columns:
        close = nearest(target, header)
        raise NncError(f"no column '{target}' for the target: the columns are {', '.join(header)}", filename=where,
                       hint=f"did you mean '{close}'?" if close else "--target COLUMN names the target column")
    features = tuple(name for name in header if name != target)
    return Dataset(where, columns, None, features=features, target=target, unit="column")


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]], str]:
    """The header's column names, (line number, fields) of each non-blank row, and the column separator."""
    where = str(path)
    try:
        with reading(path, "a CSV file"), open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
        separator = _separator(text)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
        rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as err:
        raise NncError(f"not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})",
                       filename=where, hint=CSV_HINT) from None
    except csv.Error as err:
        raise NncError(f"not a readable CSV file ({err})", filename=where, hint=CSV_HINT) from None
    rows = [(line, fields) for line, fields in rows if any(field.strip() for field in fields)]
    if not rows:
        raise NncError("empty file: got no header row, expected column names", filename=where, hint=CSV_HINT)
    header_line, header = rows[0]
    header = [name.strip() for name in header]
    for i, name in enumerate(header):
        if not name:
            raise NncError(f"column {i + 1} of the header has no name", filename=f"{where}:{header_line}",
                           hint=CSV_HINT)
        if name in header[:i]:
            raise NncError(f"column '{name}' appears twice in the header", filename=f"{where}:{header_line}")
        if _is_number(name):
            raise NncError(f"the first row should name the columns: got the number '{name}', expected a name",
                           filename=f"{where}:{header_line}", hint=CSV_HINT)
    if len(rows) == 1:
        raise NncError("no data: the file has a header row and no rows of numbers", filename=where)
    return header, rows[1:], separator


def _separator(text: str) -> str:
    """The separator that splits the first non-blank line, the header, into the most names (commas on a tie)."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    return max(SEPARATORS, key=lambda sep: len(next(csv.reader([header], delimiter=sep), [])))


def _parse_columns(where: str, header: list[str], rows, separator: str) -> dict[str, np.ndarray]:
    values = np.empty((len(rows), len(header)), np.float64)
    for r, (line, fields) in enumerate(rows):
        if len(fields) != len(header):
            raise NncError(f"got {len(fields)} values, expected {len(header)} ({', '.join(header)})",
                           filename=f"{where}:{line}")
        for c, field in enumerate(fields):
            text = field.strip()
            if not text:
                raise NncError(f"missing value in column '{header[c]}': got an empty field, expected a number",
                               filename=f"{where}:{line}", hint="fill in or remove the row; nnc does not guess values")
            try:
                value = float(text)
            except ValueError:
                if _is_decimal_comma(text):
                    raise NncError(f"decimal comma in column '{header[c]}': got '{text}', expected a number with a "
                                   f"decimal point", filename=f"{where}:{line}",
                                   hint=f"the file separates its columns with {SEPARATORS[separator]} and writes "
                                   f"decimals with commas (a spreadsheet's export for a decimal-comma locale); "
                                   f"export it with '.' as the decimal separator") from None
                raise NncError(f"non-numeric value in column '{header[c]}': got '{text}', expected a number",
                               filename=f"{where}:{line}",
                               hint="every column must be numeric; encode categories as numbers") from None
            if not math.isfinite(value):
                raise NncError(f"value in column '{header[c]}' is not finite: got '{text}', expected a number",
                               filename=f"{where}:{line}")
            values[r, c] = value
    return {name: values[:, c].copy() for c, name in enumerate(header)}


def _is_decimal_comma(text: str) -> bool:
    """'1,5' or '-1.234,5': a number written with a decimal comma (and dots between thousands)."""
    return text.count(",") == 1 and _is_number(text.replace(".", "").replace(",", "."))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_npz(path: Path) -> Dataset:
    """The archive's arrays; `<name>_test` arrays make the test part."""
    where = str(path)
    arrays = load_npz(path, "arrays named after the model's inputs")
    if not arrays:
        raise NncError("the archive holds no arrays", filename=where,
                       hint="save one array per model input: numpy.savez(FILE, image=..., label=...)")
    for name, a in arrays.items():
        _check_array(where, name, a)
    test = {k.removesuffix(TEST_SUFFIX): a for k, a in arrays.items() if k.endswith(TEST_SUFFIX)}
    train = {k: a for k, a in arrays.items() if not k.endswith(TEST_SUFFIX)}
    if test and set(test) != set(train):
        lonely = sorted(set(train) ^ set(test))
        partner = [f"{n}{TEST_SUFFIX}" if n in train else n for n in lonely]
        raise NncError(f"some arrays have a test partner and some do not: missing {', '.join(partner)}",
                       filename=where, hint=f"give every array a '{TEST_SUFFIX}' partner, or none")
    sample_count(train, where)
    if test:
        sample_count({f"{k}{TEST_SUFFIX}": a for k, a in test.items()}, where)
    return Dataset(where, train, test or None, by_name_only=True,
                   test_source=f"the archive's {TEST_SUFFIX} arrays" if test else "")


def _check_array(where: str, name: str, a: np.ndarray) -> None:
    if a.dtype.kind not in "biuf":
        raise NncError(f"array '{name}' has dtype {a.dtype}, expected numbers (int, float or bool)", filename=where)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise NncError(f"array '{name}' holds {a[tuple(bad)]} at index {list(bad)}, expected finite numbers",
                       filename=where)
