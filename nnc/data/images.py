"""MNIST and Fashion-MNIST: their four original IDX files, checksums, mirrors and class names.

Both sets have 60,000 training and 10,000 test images of 28 x 28 grey pixels
in 10 classes, in files named alike. A dataset loads as arrays `image`
(bytes [N, 28, 28], bound as float32 in [0, 1]) and `label` (int32 [N]), with
the t10k files as its test part. `load_idx_folder` reads the same four files
from any folder (a set of one's own in MNIST's format), without checksums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import NncError
from .dataset import Dataset
from .decoded import decoded_array
from .fetch import KnownFile, fetch_files, mirrors_from_env
from .idx import labelled_images, read_images, read_labelled_images, read_labels

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
IDX_FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


@dataclass(frozen=True)
class ImageSet:
    name: str
    files: tuple[KnownFile, ...]
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]


MNIST = ImageSet(
    "mnist",
    (
        KnownFile(TRAIN_IMAGES, 9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                  "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        KnownFile(TRAIN_LABELS, 28881, "d53e105ee54ea40749a09fcbcd1e9432",
                  "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        KnownFile(TEST_IMAGES, 1648877, "9fb629c4189551a2d022fa330f9573f3",
                  "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        KnownFile(TEST_LABELS, 4542, "ec29112dd5afa0611ce80d1b7f02629c",
                  "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
    ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    tuple(str(d) for d in range(10)),
)

FASHION_MNIST = ImageSet(
    "fashion-mnist",
    (
        KnownFile(TRAIN_IMAGES, 26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                  "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        KnownFile(TRAIN_LABELS, 29515, "25c81989df183df01b3e8a0aad5dffbe",
                  "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        KnownFile(TEST_IMAGES, 4422102, "bef4ecab320f06d8554ea6380940ec79",
                  "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        KnownFile(TEST_LABELS, 5148, "bb300cfdad3c16e7a12a480ee83cd310",
                  "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ),
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)

IMAGE_SETS = {s.name: s for s in (MNIST, FASHION_MNIST)}


def load_image_set(image_set: ImageSet, *, mirrors: list[str] | None = None, download: bool = True,
                   log: Callable[[str], None] | None = None) -> Dataset:
    """The dataset from its verified files (found or downloaded as nnc.data.fetch describes)."""
    bases = mirrors if mirrors is not None else mirrors_from_env(image_set.mirrors)
    paths = fetch_files(image_set.name, image_set.files, bases, download=download, log=log)
    return _dataset(image_set.name, paths, image_set.class_names, {f.name: f.sha256 for f in image_set.files})


def load_idx_folder(folder: Path, name: str) -> Dataset:
    """The four files, gzip-compressed (`.gz`) or not, from a folder of the user's; not checksummed."""
    paths = {}
    for file_name in IDX_FILE_NAMES:
        plain = folder / file_name.removesuffix(".gz")
        paths[file_name] = folder / file_name if (folder / file_name).is_file() else plain
    absent = [n for n, p in paths.items() if not p.is_file()]
    if absent:
        raise NncError(f"folder {folder} lacks {', '.join(absent)}",
                       hint=f"a folder of IDX data holds the four files {', '.join(IDX_FILE_NAMES)} "
                            f"(gzip-compressed or not); a folder of CIFAR data the binary batches, "
                            f"data_batch_1.bin ... test_batch.bin or train.bin and test.bin")
    return _dataset(name, paths, ())


def _dataset(name: str, paths: dict[str, Path], class_names: tuple[str, ...],
             checksums: dict[str, str] | None = None) -> Dataset:
    """The dataset of the four files; `checksums` (the files' verified SHA-256) lets their decoded arrays
    come from the cache (nnc.data.decoded)."""
    def read(images: str, labels: str):
        if checksums is None:
            return read_labelled_images(paths[images], paths[labels])
        return labelled_images(decoded_array(name, checksums[images], lambda: read_images(paths[images])),
                               decoded_array(name, checksums[labels], lambda: read_labels(paths[labels])),
                               paths[images], paths[labels])

    train_x, train_y = read(TRAIN_IMAGES, TRAIN_LABELS)
    test_x, test_y = read(TEST_IMAGES, TEST_LABELS)
    files = {("train", "image"): paths[TRAIN_IMAGES], ("train", "label"): paths[TRAIN_LABELS],
             ("test", "image"): paths[TEST_IMAGES], ("test", "label"): paths[TEST_LABELS]}
    return Dataset(name, {"image": train_x, "label": train_y}, {"image": test_x, "label": test_y},
                   features=("image",), target="label", classes=len(class_names) or None, class_names=class_names,
                   test_source="the t10k files", divisors={"image": 255.0},
                   files={key: str(path) for key, path in files.items()})
