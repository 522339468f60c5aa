"""CIFAR-10 and CIFAR-100: their binary archives, checksums, record format and class names.

Both sets have 50,000 training and 10,000 test colour images of 32 x 32 pixels.
In their binary version (https://www.cs.toronto.edu/~kriz/cifar.html) a file is
a run of records: the label byte (CIFAR-10: the class; CIFAR-100: the coarse
class, then the fine one), then 3,072 pixel bytes: the 1,024 red values of the
image row by row, then the green, then the blue. A set loads as arrays `image`
(bytes [N, 3, 32, 32], channels first as in PyTorch, bound as float32 in
[0, 1]) and `label` (int32 [N]: CIFAR-100's fine labels, or with
`target = coarse` its 20 superclasses), with the test file as its test part.

`load_cifar` finds a set's archive as nnc.data.fetch describes, with one
addition: in `$NNC_DATA_DIR/<name>/` the files the archive extracts to (there
or in the archive's own folder, `cifar-10-batches-bin/`) serve as well. No
checksums of those were published, so each must hold the original's number of
records. The archive is read where it lies, never extracted to disk.
`load_cifar_folder` reads a folder of one's own in either format (the same file
names, any number of records), without checksums. Class names come from the
names file beside the batches (`batches.meta.txt`, `fine_label_names.txt`,
`coarse_label_names.txt`) when there is one, else CIFAR-10's built-in ten.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..fileio import reading
from .dataset import Dataset
from .fetch import DATA_DIR_ENV, KnownFile, fetch_files, mirrors_from_env, user_data_dir
from .idx import GZIP_MAGIC

SIDE, CHANNELS = 32, 3
PIXELS = CHANNELS * SIDE * SIDE
REPLACE_HINT = "replace it with the original file"
TORONTO = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class CifarFormat:
    """The files of a set's binary version and what a record holds."""

    title: str                          # "CIFAR-10", for messages
    folder: str                         # the folder the archive extracts to
    train_files: tuple[str, ...]
    test_file: str
    labels: tuple[str, ...]             # the label bytes that open a record, in order
    classes: dict[str, int]             # label -> its number of classes
    names_files: dict[str, str]         # label -> the file naming its classes, one per line
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # label -> names when no file gives them

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file)

    @property
    def record_size(self) -> int:
        return len(self.labels) + PIXELS

    def listing(self) -> str:
        return f"{', '.join(self.train_files)} and {self.test_file}"


CIFAR10_FORMAT = CifarFormat(
    "CIFAR-10", "cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin",
    ("label",), {"label": 10}, {"label": "batches.meta.txt"},
    {"label": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")})
CIFAR100_FORMAT = CifarFormat(
    "CIFAR-100", "cifar-100-binary", ("train.bin",), "test.bin", ("coarse", "fine"), {"coarse": 20, "fine": 100},
    {"coarse": "coarse_label_names.txt", "fine": "fine_label_names.txt"})
FORMATS = (CIFAR10_FORMAT, CIFAR100_FORMAT)


@dataclass(frozen=True)
class CifarSet:
    name: str
    format: CifarFormat
    archive: KnownFile
    records: dict[str, int]     # file -> its records in the original: the check of extracted files
    mirrors: tuple[str, ...]


# Size and md5 as published on the Toronto page; SHA-256 as in tensorflow-datasets' checksum files
# (url_checksums/cifar10.txt and cifar100.txt).
CIFAR10 = CifarSet(
    "cifar10", CIFAR10_FORMAT,
    KnownFile("cifar-10-binary.tar.gz", 170052171, "c32a1d4ab5d03f1284b67883e8d87530",
              "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
    {f: 10_000 for f in CIFAR10_FORMAT.files}, (TORONTO,))
CIFAR100 = CifarSet(
    "cifar100", CIFAR100_FORMAT,
    KnownFile("cifar-100-binary.tar.gz", 168513733, "03b5dce01913d631647c71ecec9e9cb8",
              "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec"),
    {"train.bin": 50_000, "test.bin": 10_000}, (TORONTO,))
CIFAR_SETS = {s.name: s for s in (CIFAR10, CIFAR100)}

# a file's content and where messages say it is: the file, or the archive and the member
Contents = dict[str, tuple[bytes | memoryview, str]]


def load_cifar(cifar_set: CifarSet, *, target: str | None = None, mirrors: list[str] | None = None,
               download: bool = True, log: Callable[[str], None] | None = None) -> Dataset:
    """The set from `$NNC_DATA_DIR/<name>/` (its archive or the files extracted from it), else its verified
    archive from the cache or a download."""
    fmt = cifar_set.format
    label = _label_choice(fmt, target, cifar_set.name)
    user_dir = user_data_dir()
    own = user_dir / cifar_set.name if user_dir else None
    if own is not None and not (own / cifar_set.archive.name).is_file():
        folder = batches_folder(own, fmt)
        if folder is not None:
            return _dataset(cifar_set.name, fmt, _read_folder(folder, fmt), label, cifar_set.records)
    bases = mirrors if mirrors is not None else mirrors_from_env(cifar_set.mirrors)
    alternative = (f"or the files it extracts to, {fmt.listing()}, in ${DATA_DIR_ENV}/{cifar_set.name}/ "
                   f"(or in its {fmt.folder}/ folder there)")
    paths = fetch_files(cifar_set.name, (cifar_set.archive,), bases, download=download, log=log,
                        alternative=alternative)
    archive = paths[cifar_set.archive.name]
    return _dataset(cifar_set.name, fmt, _read_archive(archive, fmt), label, cifar_set.records)


def cifar_format(folder: Path) -> tuple[CifarFormat, Path] | None:
    """The format of the CIFAR files in a folder (or in the folder their archive extracts to) and where they are;
    None when it holds none."""
    for fmt in FORMATS:
        found = batches_folder(folder, fmt)
        if found is not None:
            return fmt, found
    return None


def load_cifar_folder(folder: Path, target: str | None = None) -> Dataset:
    """A set of one's own in CIFAR-10's or CIFAR-100's binary format: any number of records, not checksummed."""
    found = cifar_format(folder)
    if found is None:
        raise NncError(f"folder {folder} holds no CIFAR files",
                       hint=" or ".join(f"{fmt.title}'s binary version holds {fmt.listing()}" for fmt in FORMATS))
    fmt, where = found
    return _dataset(str(folder), fmt, _read_folder(where, fmt), _label_choice(fmt, target, str(folder)), None)


def batches_folder(folder: Path, fmt: CifarFormat) -> Path | None:
    """`folder` or its subfolder named as the archive's when it holds any of the format's files, else None."""
    for candidate in (folder, folder / fmt.folder):
        if any((candidate / f).is_file() for f in fmt.files):
            return candidate
    return None


def _label_choice(fmt: CifarFormat, target: str | None, name: str) -> str:
    """Which label byte becomes `label`: the last (CIFAR-100's fine label), or the one `target` names."""
    if target is None:
        return fmt.labels[-1]
    if len(fmt.labels) == 1:
        raise NncError(f"--target: got '{target}', but {name} has one label per image, its class",
                       hint="drop --target (and `target = ...` in the train block) for this data")
    if target not in fmt.labels:
        choices = " or ".join(f"{lab} ({fmt.classes[lab]} classes)" for lab in reversed(fmt.labels))
        raise NncError(f"--target: got '{target}', expected {choices}: which of {fmt.title}'s labels to learn",
                       hint=f"the default is {fmt.labels[-1]}; `target = coarse` in the train block, or --target "
                            f"coarse, learns the {fmt.classes['coarse']} superclasses")
    return target


def _read_folder(folder: Path, fmt: CifarFormat) -> Contents:
    missing = [f for f in fmt.files if not (folder / f).is_file()]
    if missing:
        raise NncError(f"folder {folder} lacks {', '.join(missing)}",
                       hint=f"{fmt.title}'s binary version holds the {len(fmt.files)} files {fmt.listing()}: "
                            f"put them all in {folder}/")
    contents = {}
    for name in (*fmt.files, *fmt.names_files.values()):
        path = folder / name
        if path.is_file():
            with reading(path, f"a {fmt.title} file"):
                contents[name] = (path.read_bytes(), str(path))
    return contents


def _read_archive(path: Path, fmt: CifarFormat) -> Contents:
    """The format's files (and names files) from a .tar.gz archive, found by their names in any folder of it:
    views of the archive, decompressed in memory in one call."""
    hint = f"{REPLACE_HINT}, a .tar.gz archive of {fmt.title}'s binary version"
    with reading(path, "a .tar.gz archive"):
        compressed = path.read_bytes()
    if not compressed.startswith(GZIP_MAGIC):
        raise NncError(f"not a gzip file: got the bytes {compressed[:4].hex(' ') or 'of an empty file'}, expected "
                       f"1f 8b", filename=str(path), hint=hint)
    inflate = zlib.decompressobj(wbits=31)   # the gzip format: its end checks the CRC and length of all the data
    try:
        raw = inflate.decompress(compressed)
    except zlib.error as err:
        raise NncError(f"corrupt archive ({err})", filename=str(path), hint=hint) from None
    if not inflate.eof:
        raise NncError(f"truncated archive: the file ends after {len(compressed):,} bytes, before the end of the "
                       f"compressed data", filename=str(path), hint=hint)
    del compressed
    wanted = {*fmt.files, *fmt.names_files.values()}
    contents: Contents = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in wanted and name not in contents:
                    data = memoryview(raw)[member.offset_data:member.offset_data + member.size]
                    if len(data) < member.size:
                        raise tarfile.ReadError(f"{member.name} is cut short")
                    contents[name] = (data, f"{path} ({member.name})")
    except tarfile.TarError as err:
        raise NncError(f"corrupt archive: not a tar archive inside, or a damaged one ({err})", filename=str(path),
                       hint=hint) from None
    missing = [f for f in fmt.files if f not in contents]
    if missing:
        raise NncError(f"the archive lacks {', '.join(missing)}", filename=str(path),
                       hint=f"{fmt.title}'s binary version holds {fmt.listing()} in its folder {fmt.folder}/")
    return contents


def _class_names(fmt: CifarFormat, contents: Contents, label: str) -> tuple[str, ...]:
    """The label's class names from its names file (blank lines skipped), else the format's built-in ones."""
    if fmt.names_files[label] not in contents:
        return fmt.names.get(label, ())
    data, where = contents[fmt.names_files[label]]
    names = tuple(line.strip() for line in bytes(data).decode("utf-8", "replace").splitlines() if line.strip())
    if not names:
        raise NncError("no class names: the file is empty", filename=where,
                       hint=f"it names {fmt.title}'s classes, one per line, in label order; or remove it")
    return names


def parse_records(data: bytes | memoryview, where: str, fmt: CifarFormat, classes: dict[str, int],
                  records: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The images (uint8 [N, 3, 32, 32]) and label bytes (uint8 [N, labels]) of one file's records, each label
    within its classes; `records`: the number the file must hold."""
    size = fmt.record_size
    count, extra = divmod(len(data), size)
    layout = (f"{'a label byte' if len(fmt.labels) == 1 else f'{len(fmt.labels)} label bytes'} and {PIXELS:,} "
              f"pixel bytes each")
    if extra:
        raise NncError(f"truncated: got {len(data):,} bytes, {count:,} records of {size:,} bytes and {extra:,} bytes "
                       f"over, expected whole {fmt.title} records ({layout})", filename=where, hint=REPLACE_HINT)
    if records is not None and count != records:
        raise NncError(f"got {count:,} records, expected {records:,} as in the original {fmt.title} file "
                       f"({records * size:,} bytes)", filename=where, hint=REPLACE_HINT)
    if not count:
        raise NncError(f"no records: the file is empty, expected {fmt.title} records ({layout})", filename=where)
    rows = np.frombuffer(data, np.uint8).reshape(count, size)
    for i, label in enumerate(fmt.labels):
        bad = np.flatnonzero(rows[:, i] >= classes[label])
        if len(bad):
            record = int(bad[0])
            kind = f"{label} label" if len(fmt.labels) > 1 else "label"
            raise NncError(f"{kind} byte {rows[record, i]} in record {record + 1:,} is out of range: expected 0 to "
                           f"{classes[label] - 1} for {classes[label]} classes", filename=where,
                           hint="not a CIFAR file, or a damaged one: " + REPLACE_HINT)
    return rows[:, len(fmt.labels):].reshape(count, CHANNELS, SIDE, SIDE), rows[:, :len(fmt.labels)]


def _dataset(name: str, fmt: CifarFormat, contents: Contents, label: str, records: dict[str, int] | None) -> Dataset:
    names = {lab: _class_names(fmt, contents, lab) for lab in fmt.labels}
    classes = {lab: len(names[lab]) or fmt.classes[lab] for lab in fmt.labels}
    parts = []
    for files in (fmt.train_files, (fmt.test_file,)):
        read = [parse_records(*contents[f], fmt, classes, records[f] if records else None) for f in files]
        images = np.concatenate([x for x, _ in read])
        labels = np.concatenate([y[:, fmt.labels.index(label)] for _, y in read]).astype(np.int32)
        parts.append({"image": images, "label": labels})
    train, test = parts
    note = f"{label} labels: {fmt.title}'s {classes[label]} superclasses" if label == "coarse" else ""
    return Dataset(name, train, test, features=("image",), target="label", classes=classes[label],
                   class_names=names[label], test_source=fmt.test_file, divisors={"image": 255.0}, note=note)
