"""One image file (any format Pillow reads) as an example of a model's image input, and an array the user
gives checked as one example or a batch of an input (what `nnc predict` feeds a model).

An input is an image when its sizes after the batch dimension are fixed and are
[H, W] or [1, H, W] (grey), [3, H, W] (RGB, channels first), or one row of
s² (grey) or 3·s² (RGB, channels first) values with s >= 8, a square image
flattened (MNIST's 784 = 28², CIFAR's 3072 = 3·32²) as the data binding
flattens one. The file's first frame is converted (colour to grey with the
ITU-R 601 luma Pillow uses, grey to RGB by repeating it, alpha dropped),
resized (bilinear) and scaled to floats in [0, 1] as MNIST's and CIFAR's bytes
are divided by 255 when bound; `read_image` says what it did in one note.
Nothing is inverted unless asked: a light background (the median of the
outermost pixels) for a grey model, such as a dark digit on white paper where
MNIST's digits are white on black, is only pointed out in the note.

An array is one example when its shape is the input's after the batch
dimension, a batch when one dimension more; an image input also takes its
image as [H, W] (grey), [C, H, W] or the flat row, and batches of those.
Anything else is refused naming both shapes: an array is never cut into
examples of another shape.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NncError
from ..fileio import reading
from ..ir.types import format_shape

MIN_FLAT_SIDE = 8   # a flat input of s² values is a square image from 8 × 8 up (a table's 4 or 9 features are not)
LUMA = (0.299, 0.587, 0.114)   # ITU-R 601-2, as Pillow's convert("L")
GREY_MODES = {"1": 255.0, "L": 255.0, "LA": 255.0, "La": 255.0, "I": 65535.0, "I;16": 65535.0,
              "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "F": 1.0}   # the value of white
SOURCE_NAMES = {"1": "black-and-white", "LA": "grey with alpha", "La": "grey with alpha", "P": "palette",
                "PA": "palette with alpha", "RGBa": "RGBA"}
IMAGE_HINT = ("an image input is [B, H, W] or [B, 1, H, W] (grey), [B, 3, H, W] (RGB), or [B, N] with N = s² or "
              f"3·s² (a square image flattened, s >= {MIN_FLAT_SIDE})")


@dataclass(frozen=True)
class ImageShape:
    """The image an input holds per example: channels (1 grey, 3 RGB), height and width, and whether the input
    is its pixels in one row (channels first)."""

    channels: int
    height: int
    width: int
    flat: bool
    dims: tuple     # the input's declared shape of one example: [H, W], [C, H, W] or [C·H·W]

    @property
    def colour(self) -> str:
        return "grey" if self.channels == 1 else "RGB"

    @property
    def size(self) -> int:
        return self.channels * self.height * self.width

    def example_shapes(self) -> list[tuple]:
        """The shapes one example may have as an array: the flat row, [C, H, W], and [H, W] when grey."""
        shapes = [(self.size,), (self.channels, self.height, self.width)]
        return shapes + [(self.height, self.width)] if self.channels == 1 else shapes


def example_shape(t) -> tuple | None:
    """The declared shape of one example of an input of type `t` (the sizes after a symbolic batch dimension);
    None when its first dimension is not symbolic (the input is the whole batch)."""
    return tuple(t.shape[1:]) if t.shape and isinstance(t.shape[0], str) else None


def image_shape(t) -> ImageShape | None:
    """The image an input of type `t` holds per example; None when it holds no image of fixed size."""
    dims = example_shape(t)
    if not t.is_float or dims is None or not all(isinstance(d, int) and d > 0 for d in dims):
        return None
    if len(dims) == 2:
        return ImageShape(1, dims[0], dims[1], False, dims)
    if len(dims) == 3 and dims[0] in (1, 3):
        return ImageShape(dims[0], dims[1], dims[2], False, dims)
    if len(dims) == 1:
        for channels in (1, 3):
            side = math.isqrt(dims[0] // channels)
            if side >= MIN_FLAT_SIDE and channels * side * side == dims[0]:
                return ImageShape(channels, side, side, True, dims)
    return None


def not_an_image(path: Path, input_name: str, t) -> NncError:
    return NncError(f"input '{input_name}' is {t}, not an image", filename=str(path),
                    hint=f"{IMAGE_HINT}; give this input a .npy or .npz array instead")


def as_examples(array: np.ndarray, t, input_name: str, where: str) -> np.ndarray:
    """`array` as a batch for an input of type `t`: one example gets a batch dimension, a batch stays as it is, an
    image input's image forms (see `ImageShape.example_shapes`) take the declared shape; anything else is an
    error naming both shapes."""
    dims = example_shape(t)
    if dims is None:   # the input is the whole batch
        if _matches(array.shape, t.shape):
            return array
        raise NncError(f"input '{input_name}' is {t}: got an array of shape {format_shape(array.shape)}, expected "
                       f"{format_shape(t.shape)}", filename=where)
    image = image_shape(t)
    forms = [dims] + [s for s in (image.example_shapes() if image else []) if s != dims]
    for form in forms:    # one example first: [1, H, W] is one grey image, whichever way it is read
        if _matches(array.shape, form):
            return array.reshape((1, *dims)) if form != dims else array[None]
    for form in forms:
        if array.ndim == len(form) + 1 and _matches(array.shape[1:], form):
            return array.reshape((len(array), *dims)) if form != dims else array
    raise NncError(f"input '{input_name}' is {t}: got an array of shape {format_shape(array.shape)}, expected "
                   f"one example {_either(forms)}{',' if len(forms) > 1 else ''} or a batch "
                   f"{_either([('N', *f) for f in forms])}", filename=where,
                   hint="an array is never cut into examples of another shape: reshape it to one of these")


def _either(shapes: list[tuple]) -> str:
    """"[784], [1, 28, 28] or [28, 28]"."""
    shown = [format_shape(s) for s in shapes]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _matches(shape: tuple, declared: tuple) -> bool:
    """Whether an array's shape fits declared dims (a symbolic dim fits any size)."""
    return len(shape) == len(declared) and all(not isinstance(d, int) or d == n for n, d in zip(shape, declared))


def read_image(path: Path, shape: ImageShape, invert: bool = False) -> tuple[np.ndarray, str]:
    """(one example: the file's first frame as `shape`, float32 in [0, 1], inverted when `invert`; the note
    saying what was done, e.g. "resized 640×480 RGB to 28×28 grey")."""
    from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

    kind = f"a {path.suffix.lower()} image" if path.suffix else "an image"
    with reading(path, kind):
        data = path.read_bytes()
    img = None
    try:
        img = Image.open(io.BytesIO(data))
        frames = getattr(img, "n_frames", 1)
        img.load()   # the first frame
        turned = img.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9)
        upright = ImageOps.exif_transpose(img)
    except UnidentifiedImageError:
        raise NncError("not an image Pillow can read (PNG, JPEG, BMP, GIF, ...), nor a .npy or .npz array",
                       filename=str(path)) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        what = f"{img.format} image" if img is not None and img.format else "image"
        raise NncError(f"not a readable {what} ({err})", filename=str(path)) from None
    width, height = upright.size
    source = SOURCE_NAMES.get(img.mode, "grey" if img.mode in GREY_MODES else img.mode)
    alpha = "A" in img.mode or "a" in img.mode or (img.mode == "P" and "transparency" in img.info)

    channels = _channels(upright)   # [k, H, W] in [0, 1], k = 1 (grey) or 3 (RGB)
    if shape.channels == 1 and len(channels) == 3:
        channels = np.tensordot(np.asarray(LUMA, np.float32), channels, axes=1)[None]
    elif shape.channels == 3 and len(channels) == 1:
        channels = np.repeat(channels, 3, axis=0)
    resized = (shape.width, shape.height) != upright.size
    if resized:
        channels = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(c, dtype=np.float32)).resize(
            (shape.width, shape.height), Image.Resampling.BILINEAR)) for c in channels])   # in mode "F"
    pixels = np.clip(channels, 0.0, 1.0).astype(np.float32)

    if resized:
        what = f"resized {width}×{height} {source} to {shape.width}×{shape.height} {shape.colour}"
    elif source != shape.colour:
        what = f"converted {width}×{height} {source} to {shape.colour}"
    else:
        what = f"read {width}×{height} {source}"
    done = [f"first of its {frames} frames"] if frames > 1 else []
    done += ["turned upright as its EXIF orientation says"] if turned else []
    done += ["alpha dropped"] if alpha else []
    done += [f"flattened to {shape.size} values"] if shape.flat else []
    done += ["inverted (--invert)"] if invert else []
    note = ", ".join([what, *done])
    if shape.channels == 1 and not invert and np.median(_edges(pixels[0])) > 0.5:
        note += ("; the image has a light background: if it is dark on light (a digit on paper) and the model "
                 "learned light on dark (as MNIST's white digits on black), add --invert")
    if invert:
        pixels = 1.0 - pixels
    return pixels.reshape(shape.dims), note


def _edges(grey: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of an image: its background, whatever it shows in the middle."""
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def _channels(img) -> np.ndarray:
    """The image's pixels as [1, H, W] (grey) or [3, H, W] (anything in colour) floats in [0, 1]."""
    white = GREY_MODES.get(img.mode)
    if white is None:
        return np.moveaxis(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0, -1, 0)
    if img.mode == "1" or img.mode.startswith("L"):
        img = img.convert("L")
    return (np.asarray(img, dtype=np.float32) / np.float32(white))[None]
