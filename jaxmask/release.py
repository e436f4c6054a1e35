"""One image in, one released image out: reading, the reveal at the image's own size, writing.

``jaxmask mask`` (jaxmask/masking.py) walks a folder; this module does the
per-image work, so that the rules of a release live in one place:

* **K at the resolution released.** The masker scores the image at model
  resolution; each model pixel stands for the block of original pixels that
  nearest-neighbour resizing maps onto it. Blocks are taken in score order
  (ties: lower flat index first, as ``lax.top_k``) until k = round(K·H·W)
  original pixels are revealed; the block that crosses k is revealed in
  row-major order up to exactly k. So every image reveals exactly k pixels at
  its own size, smaller, larger or non-square. An image so small that
  round(K·H·W) = 0 (fewer than 1/(2K) pixels, e.g. 1×1 at K < 0.5) is
  refused: revealing one pixel of it would exceed K.
* **Fill.** ``alpha`` (default): an 8-bit PNG with an alpha channel, alpha 0
  on hidden pixels (their colour is 0 too), the original alpha (255 for an
  opaque image) on revealed ones, so "hidden" is never confused with black.
  ``black``: the original format, mode and bit depth, hidden pixels 0 in
  every channel (alpha included).
* **Memory.** Peak memory per image is about 12 bytes per pixel of that image
  (its pixels, the 1-byte reveal, the output and Pillow's copy while
  encoding): at most ~1.1 GB at Pillow's decompression limit (89.5 Mpx);
  ``--max_pixels`` lowers it. Soft values (``--values soft``) scale the
  revealed pixels in float32: up to ~30 bytes per pixel. The model input is made by box-reducing in the
  image's own dtype first, so no float copy of a large image is ever made.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

FILLS = ("alpha", "black")
# Modes converted before masking: multiplying palette indices or ink
# amounts by a mask is meaningless, so they become RGB(A) / grey first.
_CONVERT = {"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "CMYK": "RGB", "YCbCr": "RGB",
            "LAB": "RGB", "HSV": "RGB"}
_KEEP = ("L", "LA", "RGB", "RGBA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# Encoder options: JPEG at high quality without chroma subsampling, so the
# black hidden region does not bleed into the revealed pixels.
_SAVE_OPTIONS = {"JPEG": {"quality": 95, "subsampling": 0}, "MPO": {"quality": 95, "subsampling": 0},
                 "WEBP": {"lossless": True}}


class ImageError(Exception):
    """A file that cannot be masked; the message is the reason listed in the report."""


def output_name(relative: str, fill: str) -> str:
    """The output's relative path: the input's, with a .png extension for the alpha fill."""
    if fill == "alpha":
        return os.path.splitext(relative)[0] + ".png"
    return relative


# ---- Reading ----------------------------------------------------------------------------

def read_image(path: str, max_pixels: int) -> tuple[np.ndarray, str, str]:
    """(pixels (H, W) or (H, W, C) in the image's own dtype, mode, format) of an image file.

    Multi-frame files (GIF, TIFF, APNG): the first frame only, as Pillow opens them.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                fmt = image.format
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(f"{width}x{height} = {width * height} pixels is over the limit of "
                                     f"{max_pixels} (decompression bomb guard; --max_pixels)")
                image.load()
                image = ImageOps.exif_transpose(image)
                mode = image.mode
                if mode == "P":
                    mode = "RGBA" if "transparency" in image.info else "RGB"
                else:
                    mode = _CONVERT.get(mode, mode)
                if mode not in _KEEP:
                    mode = "RGB"
                if mode != image.mode:
                    image = image.convert(mode)
                pixels = np.array(image)
                del image    # Pillow's own copy: not kept beside the array
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"decompression bomb refused: {error}") from None
    except Image.UnidentifiedImageError:
        reason = "empty file" if os.path.getsize(path) == 0 else "not an image Pillow can read"
        raise ImageError(reason) from None
    except MemoryError:
        raise ImageError("not enough memory to decode it (lower --max_pixels)") from None
    except (OSError, ValueError, SyntaxError, EOFError, TypeError) as error:
        raise ImageError(f"unreadable image: {error}") from None
    if pixels.size == 0:
        raise ImageError("image has no pixels")
    return pixels, mode, fmt


def split_alpha(pixels: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour (H, W, C), alpha (H, W) or None)."""
    if pixels.ndim == 2:
        return pixels[..., None], None
    if mode in ("LA", "RGBA"):
        return pixels[..., :-1], pixels[..., -1]
    return pixels, None


def unit_scale(pixels: np.ndarray) -> float:
    if pixels.dtype == np.uint8:
        return 255.0
    if pixels.dtype.kind in "ui":
        return 65535.0          # 16-bit images (mode I;16, or I from older decoders)
    return 1.0                  # float images (mode F) are taken as [0, 1]


def _resized_channel(channel: np.ndarray, size: int) -> np.ndarray:
    """One (H, W) channel → float32 (size, size) in its own units, box-reduced first when large."""
    height, width = channel.shape
    factor = min(height, width) // (2 * size)
    if channel.dtype == np.uint8:
        image = Image.fromarray(np.ascontiguousarray(channel))
    else:
        image = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32))
    if factor >= 2:
        image = image.reduce(factor)        # box average in the channel's dtype: no large float copy
    if image.mode != "F":
        image = image.convert("F")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image, np.float32)


def model_input(pixels: np.ndarray, mode: str, size: int, channels: int) -> np.ndarray:
    """The image as float32 (size, size, channels) in [0, 1]: whole-image bilinear resize."""
    colour, _ = split_alpha(pixels, mode)
    unit = np.stack([_resized_channel(colour[..., c], size) for c in range(colour.shape[-1])], axis=-1)
    unit = np.clip(unit / unit_scale(colour), 0.0, 1.0)
    if channels == 1 and unit.shape[-1] == 3:
        unit = unit @ np.asarray([0.299, 0.587, 0.114], np.float32)[:, None]   # ITU-R 601 luma, as PIL's "L"
    elif channels == 3 and unit.shape[-1] == 1:
        unit = np.repeat(unit, 3, axis=-1)
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


# ---- The reveal at the image's own size -------------------------------------------------

def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each of ``target`` pixels under nearest-neighbour resizing (pixel centres)."""
    return np.minimum(((np.arange(target) + 0.5) * source / target).astype(np.int64), source - 1)


def upsample_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) → (height, width) by nearest neighbour: each original pixel takes its model pixel's value."""
    return mask[nearest_indices(mask.shape[0], height)][:, nearest_indices(mask.shape[1], width)]


def revealed_count(fraction: float, height: int, width: int) -> int:
    """k = round(K·H·W) at an image's own size; ImageError when that is 0 (see the module doc)."""
    k = min(int(round(fraction * height * width)), height * width)
    if k < 1:
        raise ImageError(f"{width}x{height} is too small: K={fraction:g} of {height * width} pixel(s) rounds "
                         "to 0, and revealing one would exceed K")
    return k


def reveal(scores: np.ndarray, height: int, width: int, k: int, cap_threshold: float | None = None
           ) -> np.ndarray:
    """Bool (height, width) with exactly ``k`` True: the top-scored model pixels' blocks (module doc).

    ``cap_threshold`` (a bundle trained with reveal='cap'): K is a cap, so only
    blocks scored above it are revealed, at most ``k`` pixels.
    """
    rows, cols = nearest_indices(scores.shape[0], height), nearest_indices(scores.shape[1], width)
    row_count = np.bincount(rows, minlength=scores.shape[0])
    col_count = np.bincount(cols, minlength=scores.shape[1])
    order = np.argsort(-scores.ravel(), kind="stable")            # ties: lower flat index first
    block_sizes = np.outer(row_count, col_count).ravel()[order]
    taken = np.cumsum(block_sizes)
    if cap_threshold is not None:
        above = int(np.sum(scores.ravel()[order] > cap_threshold))
        k = min(k, int(taken[above - 1]) if above else 0)
        if k == 0:
            return np.zeros((height, width), bool)
    whole = int(np.searchsorted(taken, k, side="right"))          # blocks revealed entirely
    selected = np.zeros(scores.size, bool)
    selected[order[:whole]] = True
    mask = upsample_nearest(selected.reshape(scores.shape), height, width)
    missing = k - (int(taken[whole - 1]) if whole else 0)
    if missing:
        # The block that crosses k: its first `missing` pixels in row-major order.
        block_row, block_col = divmod(int(order[whole]), scores.shape[1])
        row_span = np.flatnonzero(rows == block_row)
        col_span = np.flatnonzero(cols == block_col)
        full_rows, rest = divmod(missing, len(col_span))
        top, left = row_span[0], col_span[0]
        mask[top:top + full_rows, left:left + len(col_span)] = True
        mask[top + full_rows, left:left + rest] = True
    return mask


# ---- Applying and writing ---------------------------------------------------------------

def _to_uint8(colour: np.ndarray) -> np.ndarray:
    if colour.dtype == np.uint8:
        return colour
    return np.rint(np.clip(colour.astype(np.float32) / unit_scale(colour), 0, 1) * 255).astype(np.uint8)


def released_pixels(pixels: np.ndarray, mode: str, keep: np.ndarray, fill: str,
                    soft: np.ndarray | None = None) -> np.ndarray:
    """The output array: original pixels where ``keep`` (times ``soft`` in soft mode), 0 elsewhere.

    ``alpha``: uint8 (H, W, C+1), alpha 0 where hidden; ``black``: the input's shape and dtype.
    Built in place in the output array: no temporary of the image's size.
    """
    colour, alpha = split_alpha(pixels, mode)
    if fill == "alpha":
        colour = _to_uint8(colour)
        alpha = np.uint8(255) if alpha is None else _to_uint8(alpha[..., None])[..., 0]
        out = np.zeros(colour.shape[:2] + (colour.shape[2] + 1,), np.uint8)
        colour_out = out[..., :-1]
        np.copyto(out[..., -1], alpha, where=keep)
    else:
        out = np.zeros_like(pixels).reshape(colour.shape[:2] + (-1,))
        colour_out = out[..., :colour.shape[2]]
        if alpha is not None:
            np.copyto(out[..., -1], alpha, where=keep)
    np.copyto(colour_out, colour, where=keep[..., None])          # exact: original values
    if soft is not None:
        scaled = colour_out * soft[..., None]
        if colour_out.dtype.kind in "ui":
            scaled = np.rint(scaled)
        colour_out[...] = scaled.astype(colour_out.dtype)
    return out if fill == "alpha" else out.reshape(pixels.shape)


def write_atomically(path: str, save: Callable[[str], None]) -> None:
    """``save(tmp)`` to a temporary name beside ``path``, then rename: no partial output, ever.

    The rename replaces a directory entry: an existing file (or link) at
    ``path`` is replaced, never written through.
    """
    directory, name = os.path.split(path)
    # A short prefix: the name itself may already be near the 255-byte limit of a file name.
    fd, tmp = tempfile.mkstemp(prefix=f".{os.fsencode(name)[:64].decode(errors='ignore')}.", suffix=".tmp",
                               dir=directory)
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_image(path: str, array: np.ndarray, fmt: str | None, fill: str) -> None:
    if fill == "alpha":
        fmt = "PNG"
    if fmt is None:
        raise ImageError("unknown format")
    image = Image.fromarray(array)     # the mode follows from the shape and dtype
    write_atomically(path, lambda tmp: image.save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {})))
