"""Masking a folder of real images with an exported masker (``jaxmask mask``).

Every regular file under the input folder is read (recursively, symlinked
folders not followed) and written under the output folder with the same
relative path, name, format and mode:

* any size and mode (RGB, RGBA, grey, 16-bit, palette, CMYK, …): the image,
  upright per its EXIF orientation, is resized whole to the model resolution
  (bilinear) and converted to the model's channels; the mask is computed there
  (exactly k pixels) and upsampled with nearest neighbour to the original
  resolution, where it multiplies the original pixel values. Hidden pixels are
  0 in every channel, alpha included; binary release keeps revealed pixels
  bit-exact (lossy formats such as JPEG re-encode, quality 95, 4:4:4).
* ``save_masks``: the applied mask beside each output, ``<name>.mask.png``
  (8-bit, 255 = revealed; soft mode: m ⊙ h × 255).
* Unreadable, corrupt, non-image and over-large files (Pillow's decompression
  bomb limit) are skipped and listed; existing outputs are kept unless
  ``overwrite``; nothing is written outside the output folder (paths whose
  real location leaves it are refused), and each file is written to a
  temporary name first, then renamed, so no partial output is left behind.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
import warnings
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageOps

MASK_SUFFIX = ".mask.png"
# Modes converted before masking: multiplying palette indices or ink
# amounts by a mask is meaningless, so they become RGB(A) / grey first.
_CONVERT = {"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA", "CMYK": "RGB", "YCbCr": "RGB",
            "LAB": "RGB", "HSV": "RGB"}
_KEEP = ("L", "LA", "RGB", "RGBA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# Encoder options: JPEG at high quality without chroma subsampling, so the
# black hidden region does not bleed into the revealed pixels.
_SAVE_OPTIONS = {"JPEG": {"quality": 95, "subsampling": 0}, "MPO": {"quality": 95, "subsampling": 0},
                 "WEBP": {"lossless": True}}


@dataclasses.dataclass
class MaskReport:
    """Relative paths of the written, kept (existing) and failed (with a reason) inputs."""
    input_dir: str
    output_dir: str
    k: int
    model_size: int
    values: str
    written: list[str] = dataclasses.field(default_factory=list)
    kept: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        pixels = self.model_size * self.model_size
        lines = [f"masked {len(self.written)} image(s) from {self.input_dir} into {self.output_dir} in "
                 f"{self.seconds:.1f} s: {self.k} of {self.model_size}x{self.model_size} = {pixels} pixels "
                 f"revealed at model resolution ({self.k / pixels:.1%}), values={self.values}"]
        if self.kept:
            lines.append(f"kept {len(self.kept)} existing output(s) (--overwrite replaces them)")
        if self.failed:
            lines.append(f"failed {len(self.failed)} file(s), skipped:")
            lines += [f"  {_display(path)}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def _display(path: str) -> str:
    # File names need not be valid UTF-8: never let printing them fail.
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def iter_files(input_dir: str, skip_dir: str | None = None) -> Iterator[str]:
    """Relative paths of the regular files under ``input_dir``, sorted, skipping ``skip_dir``."""
    for root, dirs, files in os.walk(input_dir):
        dirs[:] = sorted(d for d in dirs if skip_dir is None
                         or os.path.realpath(os.path.join(root, d)) != skip_dir)
        for name in sorted(files):
            path = os.path.join(root, name)
            if os.path.isfile(path):
                yield os.path.relpath(path, input_dir)


# ---- Reading and converting -------------------------------------------------------------

class ImageError(Exception):
    """A file that cannot be masked; the message is the reason listed in the report."""


def read_image(path: str, max_pixels: int) -> tuple[np.ndarray, str, str]:
    """(pixels (H, W) or (H, W, C) in the image's own dtype, mode, format) of an image file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                fmt = image.format
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(f"{width}x{height} = {width * height} pixels is over the limit of "
                                     f"{max_pixels} (decompression bomb guard)")
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
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"decompression bomb refused: {error}") from None
    except Image.UnidentifiedImageError:
        reason = "empty file" if os.path.getsize(path) == 0 else "not an image Pillow can read"
        raise ImageError(reason) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f"unreadable image: {error}") from None
    if pixels.size == 0:
        raise ImageError("image has no pixels")
    return pixels, mode, fmt


def _split_alpha(pixels: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour (H, W, C), alpha (H, W) or None)."""
    if pixels.ndim == 2:
        return pixels[..., None], None
    if mode in ("LA", "RGBA"):
        return pixels[..., :-1], pixels[..., -1]
    return pixels, None


def _unit_scale(pixels: np.ndarray) -> float:
    if pixels.dtype == np.uint8:
        return 255.0
    if pixels.dtype.kind in "ui":
        return 65535.0          # 16-bit images (mode I;16, or I from older decoders)
    return 1.0                  # float images (mode F) are taken as [0, 1]


def model_input(pixels: np.ndarray, mode: str, size: int, channels: int) -> np.ndarray:
    """The image as float32 (size, size, channels) in [0, 1]: whole-image bilinear resize."""
    colour, _ = _split_alpha(pixels, mode)
    unit = np.clip(colour.astype(np.float32) / _unit_scale(colour), 0.0, 1.0)
    if channels == 1 and unit.shape[-1] == 3:
        unit = unit @ np.asarray([0.299, 0.587, 0.114], np.float32)[:, None]   # ITU-R 601 luma, as PIL's "L"
    elif channels == 3 and unit.shape[-1] == 1:
        unit = np.repeat(unit, 3, axis=-1)
    if unit.shape[:2] != (size, size):
        unit = np.stack([np.asarray(Image.fromarray(unit[..., c]).resize((size, size), Image.BILINEAR))
                         for c in range(channels)], axis=-1)
    return np.clip(unit, 0.0, 1.0).astype(np.float32)


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index of each of ``target`` pixels under nearest-neighbour resizing (pixel centres)."""
    return np.minimum(((np.arange(target) + 0.5) * source / target).astype(np.int64), source - 1)


def upsample_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w) → (height, width) by nearest neighbour: each original pixel takes its model pixel's value."""
    return mask[nearest_indices(mask.shape[0], height)][:, nearest_indices(mask.shape[1], width)]


def apply_mask(pixels: np.ndarray, mode: str, mask: np.ndarray) -> np.ndarray:
    """The original pixels times ``mask`` (H, W) in [0, 1], in their own dtype; alpha hidden where mask is 0."""
    colour, alpha = _split_alpha(pixels, mode)
    released = colour.astype(np.float64) * mask[..., None]
    if colour.dtype.kind in "ui":
        released = np.rint(released)
    released = released.astype(colour.dtype)
    if alpha is not None:
        released = np.concatenate([released, (alpha * (mask > 0)).astype(alpha.dtype)[..., None]], axis=-1)
    return released.reshape(pixels.shape)


# ---- Writing ----------------------------------------------------------------------------

def _write_atomically(path: str, save: Callable[[str], None]) -> None:
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _save_image(path: str, array: np.ndarray, fmt: str | None) -> None:
    image = Image.fromarray(array)     # the mode follows from the shape and dtype
    if fmt is None:
        raise ImageError("unknown format")
    _write_atomically(path, lambda tmp: image.save(tmp, format=fmt, **_SAVE_OPTIONS.get(fmt, {})))


class Progress:
    """A one-line counter on stderr (redrawn on a terminal, every 10% otherwise)."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.done, self.failed = total, 0, 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled and total > 0
        self.tty = self.enabled and self.stream.isatty()
        self._next_line = 0

    def update(self, done: int = 1, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        if not self.enabled:
            return
        text = f"masking: {self.done}/{self.total} files ({self.failed} failed)"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if self.done >= self.total else ""))
            self.stream.flush()
        elif self.done >= self._next_line or self.done >= self.total:
            self.stream.write(text + "\n")
            self._next_line = self.done + max(1, self.total // 10)


# ---- The folder -------------------------------------------------------------------------

def mask_folder(bundle, input_dir: str, output_dir: str, *, values: str | None = None,
                topk_fraction: float | None = None, batch_size: int = 32, save_masks: bool = False,
                overwrite: bool = False, max_pixels: int | None = None, progress: bool = True) -> MaskReport:
    """Masks every image under ``input_dir`` into ``output_dir`` with ``bundle`` (a MaskerBundle).

    ``values``/``topk_fraction`` override the trained value mode and K;
    ``batch_size`` images go through the masker at once; ``max_pixels``
    (default Pillow's ``Image.MAX_IMAGE_PIXELS``) refuses larger images.
    Returns the report; failures never stop the run.
    """
    start = time.time()
    in_root = os.path.realpath(input_dir)
    out_root = os.path.realpath(output_dir)
    if not os.path.isdir(in_root):
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    if out_root == in_root:
        raise ValueError("the output folder must differ from the input folder")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be ≥ 1")
    max_pixels = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    values = bundle.values if values is None else values
    if values not in ("binary", "soft"):
        raise ValueError(f"values={values!r}: expected 'binary' or 'soft'")
    k = bundle.num_revealed(topk_fraction)
    size, channels = bundle.image_size, bundle.channels
    report = MaskReport(input_dir, output_dir, k, size, values)
    os.makedirs(out_root, exist_ok=True)
    files = list(iter_files(in_root, skip_dir=out_root))
    counter = Progress(len(files), progress)
    pending: list[tuple[str, np.ndarray, str, str, str]] = []   # rel, pixels, mode, format, out path

    def flush():
        if not pending:
            return
        batch = np.zeros((batch_size, size, size, channels), np.float32)   # one compiled shape
        for i, (_, pixels, mode, _, _) in enumerate(pending):
            batch[i] = model_input(pixels, mode, size, channels)
        _, masks = bundle.mask(batch, values=values, topk_fraction=topk_fraction)
        masks = np.asarray(masks)[..., 0]
        for (rel, pixels, mode, fmt, out_path), small in zip(pending, masks):
            try:
                mask = upsample_nearest(small, pixels.shape[0], pixels.shape[1])
                _save_image(out_path, apply_mask(pixels, mode, mask), fmt)
                if save_masks:
                    mask_png = Image.fromarray(np.rint(mask * 255).astype(np.uint8))
                    _write_atomically(out_path + MASK_SUFFIX, lambda tmp: mask_png.save(tmp, format="PNG"))
                report.written.append(rel)
                counter.update()
            except (ImageError, OSError, ValueError, KeyError, TypeError) as error:
                report.failed.append((rel, f"cannot write {fmt} output: {error}"))
                counter.update(failed=1)
        pending.clear()

    for rel in files:
        out_path = os.path.join(out_root, rel)
        parent = os.path.dirname(out_path)
        if not _inside(out_root, os.path.realpath(parent)):
            report.failed.append((rel, f"output folder {parent} leads outside {output_dir}: refused"))
            counter.update(failed=1)
            continue
        targets = [out_path] + ([out_path + MASK_SUFFIX] if save_masks else [])
        if not overwrite and any(os.path.lexists(t) for t in targets):
            report.kept.append(rel)
            counter.update()
            continue
        try:
            pixels, mode, fmt = read_image(os.path.join(in_root, rel), max_pixels)
        except ImageError as error:
            report.failed.append((rel, str(error)))
            counter.update(failed=1)
            continue
        os.makedirs(parent, exist_ok=True)
        pending.append((rel, pixels, mode, fmt, out_path))
        if len(pending) == batch_size:
            flush()
    flush()
    report.seconds = time.time() - start
    return report
