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
  Every mode is converted to 8-bit grey or RGB (with alpha) first.
  ``black``: the original format, mode and bit depth, hidden pixels 0 in
  every channel (alpha included); a palette image keeps its palette, hidden
  pixels get the index of black (appended if the palette has room). Kept
  only where that is true: the modes in which all-zero is black
  (``BLACK_FILL_MODES``) and palettes, a file whose samples
  Pillow decodes at full depth, and a writer that stores the mode (each
  output's header is read back before it replaces anything); any other image
  is listed with the reason (the alpha fill releases it). The promise "hidden
  = 0" holds in the file: a lossy format (JPEG, JPEG 2000, AVIF, …) would
  break it (JPEG's ringing put values up to 15 in hidden pixels), so such an
  image is released as a PNG, ``<name>.png`` (``LOSSLESS_FORMATS``).
* **Refused by name** (a listed skip, both fills): several frames (GIF, APNG,
  TIFF, WebP, MPO: a release of one frame would drop the others), NaN/inf,
  float values outside 0–1 and integer values outside 0–65535 (the scales
  jaxmask reads them in).
* **Memory.** Peak memory per image is about 12 bytes per pixel of that image
  (its pixels, the 1-byte reveal, the output and Pillow's copy while
  encoding): at most ~1.1 GB at Pillow's decompression limit (89.5 Mpx);
  ``--max_pixels`` lowers it. Soft values (``--values soft``) scale the
  revealed pixels in float32: up to ~30 bytes per pixel. The model input is made by box-reducing in the
  image's own dtype first, so no float copy of a large image is ever made.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

from jaxmask import files

FILLS = ("alpha", "black")
TEMP_SUFFIX = files.TEMP_SUFFIX      # a release being written (files.write_atomically)
# Modes converted before masking: multiplying palette indices or ink
# amounts by a mask is meaningless, so they become RGB(A) / grey first.
_CONVERT = {"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "CMYK": "RGB", "YCbCr": "RGB",
            "LAB": "RGB", "HSV": "RGB"}
_KEEP = ("L", "LA", "RGB", "RGBA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# --fill black keeps the input's mode: only where a pixel of zeros is black
# (not palette index 0, CMYK's white, YCbCr's green) and numpy holds it as is.
BLACK_FILL_MODES = ("1", "L", "LA", "RGB", "RGBA", "I", "I;16", "I;16L", "I;16B", "F")
# Bits per sample of each decoded mode (8 for the rest): a file with more is decoded with a loss.
_MODE_BITS = {"1": 1, "I": 32, "F": 32, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16}
_SAME_MODE = {"I;16L": "I;16"}     # two names of one layout (little-endian 16-bit)
_WIDE_INT_MAX = 65535      # integer images of more than 8 bits are read as 16-bit (unit_scale)
# Encoder options: WebP's lossless mode (its default is lossy), so a release keeps its pixels exactly.
_SAVE_OPTIONS = {"WEBP": {"lossless": True}}


class ImageError(Exception):
    """A file that cannot be masked; the message is the reason listed in the report."""


class Palette(str):
    """The mode "P" of a palette image kept as indices (--fill black): its colours and the index of black.

    Compares equal to "P". ``colours``: uint8 (n, 3); ``black``: the index hidden pixels get (black is
    appended when the palette has none and room for it); ``transparency``: the image's transparent index.
    """

    def __new__(cls, image: Image.Image):
        self = super().__new__(cls, "P")
        self.colours = np.asarray(image.getpalette() or [], np.uint8).reshape(-1, 3)
        self.transparency = image.info.get("transparency")
        black = np.flatnonzero((self.colours == 0).all(-1))
        if len(black):
            self.black = int(black[0])
        elif len(self.colours) < 256:
            self.colours = np.concatenate([self.colours, np.zeros((1, 3), np.uint8)])
            self.black = len(self.colours) - 1
        else:
            raise ImageError("a 256-colour palette without black: --fill black has no index for hidden pixels; "
                             "the default alpha fill releases it (8-bit PNG)")
        return self

    def rgb(self, indices: np.ndarray) -> np.ndarray:
        lookup = np.zeros((256, 3), np.uint8)
        lookup[:len(self.colours)] = self.colours
        return lookup[indices]


# Writers that store exactly the pixels they are given (WebP with the lossless option, _SAVE_OPTIONS):
# with --fill black a hidden pixel is 0 in the file only in these. Any other format (JPEG, JPEG 2000,
# AVIF, MPO, … or a writer that resizes, such as ICO) is released as a PNG, <name>.png.
LOSSLESS_FORMATS = frozenset({"PNG", "TIFF", "BMP", "DIB", "GIF", "WEBP", "PPM", "TGA", "SGI", "PCX", "QOI",
                              "IM", "MSP", "XBM", "SPIDER"})


def _extension_format(name: str) -> str | None:
    """The format Pillow writes for ``name``'s extension ('.jpg' → 'JPEG'), or None."""
    Image.init()
    return Image.registered_extensions().get(os.path.splitext(name)[1].lower())


def output_name(relative: str, fill: str) -> str:
    """The output's relative path: the input's, with a .png extension for the alpha fill, and for the
    black fill where the input's extension names a format that does not store pixels exactly."""
    stem, extension = os.path.splitext(relative)
    if fill == "alpha":
        return stem + ".png"
    fmt = _extension_format(relative)
    return stem + ".png" if fmt is not None and fmt not in LOSSLESS_FORMATS else relative


def output_format(out_path: str, content_format: str | None, fill: str) -> str:
    """The format a release is written in: PNG for the alpha fill; for the black fill, the format the
    output's name says (a lossless one, see ``output_name``), else the input's own when it is lossless,
    else PNG: hidden pixels are 0 in the file, in every output format."""
    if fill == "alpha":
        return "PNG"
    named = _extension_format(out_path)
    if named in LOSSLESS_FORMATS:
        return named
    return content_format if content_format in LOSSLESS_FORMATS else "PNG"


# ---- Reading ----------------------------------------------------------------------------

def _file_bits(image: Image.Image) -> int | None:
    """The widest sample the file stores, from the raw modes of its tiles (e.g. 'RGB;16B' → 16), or None."""
    bits = []
    for tile in image.tile:
        args = tile.args if hasattr(tile, "args") else tile[3]
        for arg in args if isinstance(args, tuple) else (args,):
            if isinstance(arg, str):
                bits += [int(b) for b in re.findall(r";(\d+)", arg)]
    return max(bits, default=None)


def read_image(path: str, max_pixels: int, fill: str = "alpha") -> tuple[np.ndarray, str, str]:
    """(pixels (H, W) or (H, W, C) in the image's own dtype, mode, format) of an image file.

    ImageError (the listed reason) for an image that cannot be released
    faithfully (module doc, "Refused by name"): several frames, NaN/inf,
    values outside the scale of their type; with ``fill="black"``, also a mode
    that fill cannot keep and samples Pillow decodes at less than their depth.
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
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    raise ImageError(f"{fmt} with {frames} frames: jaxmask masks single images, and releasing "
                                     f"the first frame would drop {frames - 1}; save each frame as its own "
                                     "file to mask them")
                bits = _file_bits(image)
                if fill == "black" and bits and bits > _MODE_BITS.get(image.mode, 8):
                    raise ImageError(f"{fmt} with {bits}-bit samples, which Pillow decodes to "
                                     f"{_MODE_BITS.get(image.mode, 8)} bits (mode {image.mode}): --fill black "
                                     "would not keep the bit depth; the default alpha fill releases it as "
                                     "an 8-bit PNG")
                image.load()
                image = ImageOps.exif_transpose(image)
                mode = image.mode
                if fill == "black" and mode == "P" and isinstance(image.info.get("transparency", 0), int):
                    mode = Palette(image)        # indices kept; hidden pixels get the index of black
                elif fill == "black":
                    if mode not in BLACK_FILL_MODES:
                        raise ImageError(f"mode {mode}: --fill black keeps each image's mode, and in mode "
                                         f"{mode} hidden pixels cannot be black (0) with the mode kept; the "
                                         "default alpha fill releases it (8-bit PNG)")
                elif mode == "P":
                    mode = "RGBA" if "transparency" in image.info else "RGB"
                else:
                    mode = _CONVERT.get(mode, mode)
                if mode not in _KEEP and mode not in BLACK_FILL_MODES and mode != "P":
                    mode = "RGB"
                if mode != image.mode:
                    image = image.convert(mode)
                pixels = np.array(image)
                del image    # Pillow's own copy: not kept beside the array
        check_values(pixels, mode)
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


def check_values(pixels: np.ndarray, mode: str) -> None:
    """ImageError unless every value lies on the scale jaxmask reads its type in (module doc)."""
    if pixels.dtype.kind == "f":
        finite = np.isfinite(pixels)
        if not finite.all():
            raise ImageError(f"{int(finite.size - finite.sum())} NaN/inf pixel value(s) (mode {mode}): the masker "
                             "cannot score them; replace them first")
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0 or high > 1:
            raise ImageError(f"float pixel values span [{low:g}, {high:g}] (mode {mode}); jaxmask reads float "
                             "images as 0–1: rescale to 0–1 (or save as 8/16-bit) first")
    elif pixels.dtype.kind in "iu" and pixels.dtype.itemsize > 2:
        low, high = int(pixels.min()), int(pixels.max())
        if low < 0 or high > _WIDE_INT_MAX:
            raise ImageError(f"integer pixel values span [{low}, {high}] (mode {mode}); jaxmask reads integer "
                             f"images of more than 8 bits as 0–{_WIDE_INT_MAX}: rescale or save as 16-bit first")


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
    if isinstance(mode, Palette):
        pixels, mode = mode.rgb(pixels), "RGB"
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
    if isinstance(mode, Palette):
        if soft is not None:
            raise ImageError("soft values scale colours, which a palette image cannot hold: --fill black keeps "
                             "its palette; use the default alpha fill, or binary values")
        out = np.full(pixels.shape, mode.black, np.uint8)
        np.copyto(out, pixels, where=keep)            # exact: the original indices
        return out
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


def save_image(path: str, array: np.ndarray, fmt: str | None, fill: str, mode: str | None = None, lock=None) -> None:
    """Writes the release; with the black fill, refuses (ImageError) a writer that would not keep ``mode``."""
    fmt = output_format(path, fmt, fill)
    options = dict(_SAVE_OPTIONS.get(fmt, {}))
    if isinstance(mode, Palette):
        image = Image.frombytes("P", array.shape[::-1], np.ascontiguousarray(array).tobytes())
        image.putpalette(mode.colours.ravel().tolist())
        if mode.transparency is not None:
            options["transparency"] = mode.transparency
    else:
        image = Image.fromarray(array)     # the mode follows from the shape and dtype

    def save(tmp: str) -> None:
        image.save(tmp, format=fmt, **options)
        if fill == "black" and mode is not None:
            with Image.open(tmp) as back:      # the header only: the mode and size the file holds
                if _SAME_MODE.get(back.mode, back.mode) != _SAME_MODE.get(mode, mode) or back.size != image.size:
                    raise ImageError(f"{fmt} stores this mode-{mode} image as mode {back.mode}: --fill black "
                                     "would not keep the input's mode and bit depth; the default alpha fill "
                                     "releases it (8-bit PNG)")
    files.write_atomically(path, save, lock)
