"""Release functions: every method the evaluation compares, behind one signature.

A *release* maps a batch of images to what would be handed out::

    release(images) -> (released, revealed)
      images:   float32 (B, H, W, C) in [0, 1]
      released: float32 (B, H, W, C) in [0, 1], the image that leaves the owner
      revealed: float32 (B, H, W, 1), 1 where ``released`` holds the original
                pixel value unchanged, 0 where the pixel was hidden or altered

so every metric (utility, re-identification, embedding similarity, mask
quality) treats the baselines and the trained maskers alike. Revealed
fraction of each (DESIGN.md §5):

=================  =====================================  =====================
name               released                               revealed fraction
=================  =====================================  =====================
Original           x                                      1
Block              x with the face box set to 0 (black)   1 − box area
Gaussian Blur      x with the face box Gaussian-blurred   1 − box area
Random-K           h ⊙ x, h = k random pixels per image   k / (H·W), exactly
masker (bundle)    h ⊙ x (binary) or m ⊙ h ⊙ x (soft)     k / (H·W), exactly
=================  =====================================  =====================

The *face box* is a square given as image fractions (centre y, centre x,
side); the SynthFaces default centres it on the face (DESIGN.md §4), so the
box hides eyes, brows, nose and cheeks, as a privacy block would.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from jaxmask import topk

Release = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _check_images(images) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"a release takes a (B, H, W, C) batch of images in [0, 1]; got shape {images.shape}")
    return images


def box_pixels(height: int, width: int, box: tuple[float, float, float]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) pixel bounds of ``box`` = (centre y, centre x, side) in image fractions.

    The side is rounded to whole pixels and the box is clipped to the image.
    """
    centre_y, centre_x, side = (float(v) for v in box)
    if not 0.0 < side <= 1.0:
        raise ValueError(f"face box side={side} must be a fraction of the image side in (0, 1]")
    size_y, size_x = max(1, round(side * height)), max(1, round(side * width))
    top = min(max(0, round(centre_y * height - size_y / 2)), height - size_y)
    left = min(max(0, round(centre_x * width - size_x / 2)), width - size_x)
    return top, left, top + size_y, left + size_x


def _box_mask(shape, box) -> np.ndarray:
    """(1, H, W, 1) float32: 1 inside the box."""
    _, height, width, _ = shape
    top, left, bottom, right = box_pixels(height, width, box)
    inside = np.zeros((1, height, width, 1), np.float32)
    inside[:, top:bottom, left:right] = 1
    return inside


def original(images) -> tuple[np.ndarray, np.ndarray]:
    """The unmodified images: everything revealed."""
    images = _check_images(images)
    return images, np.ones(images.shape[:3] + (1,), np.float32)


def block(images, box: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A black square over the face box."""
    images = _check_images(images)
    inside = _box_mask(images.shape, box)
    revealed = np.broadcast_to(1 - inside, images.shape[:3] + (1,)).copy()
    return images * revealed, revealed


def gaussian_kernel(kernel_size: int, sigma: float = 0.0) -> np.ndarray:
    """Normalised 1-D Gaussian weights (float32, length ``kernel_size``, odd).

    ``sigma`` ≤ 0 picks OpenCV's rule for a kernel size: 0.3·((size − 1)/2 − 1) + 0.8.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur kernel_size={kernel_size} must be a positive odd number of pixels")
    if sigma <= 0:
        sigma = 0.3 * ((kernel_size - 1) / 2 - 1) + 0.8
    offsets = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).astype(np.float32)


def _blur(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur of a (B, H, W, C) batch, edges reflected."""
    radius = len(kernel) // 2
    out = images
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if out.shape[axis] > radius else "edge")
        length = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(i, i + length), axis=axis) for i, w in enumerate(kernel))
    return out.astype(np.float32)


def gaussian_blur(images, box: tuple[float, float, float], kernel_size: int,
                  sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The face box replaced by a Gaussian blur of the image (context from around the box)."""
    images = _check_images(images)
    inside = _box_mask(images.shape, box)
    blurred = _blur(images, gaussian_kernel(kernel_size, sigma))
    revealed = np.broadcast_to(1 - inside, images.shape[:3] + (1,)).copy()
    return images * revealed + blurred * inside, revealed


def random_indicator(rng: np.random.Generator, batch: int, height: int, width: int, k: int) -> np.ndarray:
    """(B, H, W, 1) float32 with exactly k ones per image at uniformly random pixels."""
    order = rng.random((batch, height * width)).argsort(axis=1)[:, :k]
    h = np.zeros((batch, height * width), np.float32)
    np.put_along_axis(h, order, 1.0, axis=1)
    return h.reshape(batch, height, width, 1)


class RandomK:
    """Reveals exactly k = round(fraction·H·W) uniformly random pixels per image.

    Calls draw fresh pixels from one generator seeded with ``seed``, so the same
    sequence of batches always gets the same masks.
    """

    def __init__(self, fraction: float, seed: int = 0):
        self.fraction = float(fraction)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def __call__(self, images) -> tuple[np.ndarray, np.ndarray]:
        images = _check_images(images)
        batch, height, width, _ = images.shape
        h = random_indicator(self._rng, batch, height, width, topk.num_revealed(self.fraction, height, width))
        return images * h, h

    def reset(self) -> "RandomK":
        """A fresh copy that replays the same masks from the start."""
        return RandomK(self.fraction, self.seed)


def masker(bundle, topk_fraction: float | None = None) -> Release:
    """The release of an exported masker (``jaxmask.load_masker``), optionally at another K.

    ``revealed`` is h, the exact-k indicator, also in soft mode (where the
    released pixels are m ⊙ x, not the original values: its mask is m ⊙ h).
    """

    def release(images) -> tuple[np.ndarray, np.ndarray]:
        images = _check_images(images)
        released, mask = bundle.mask(images, topk_fraction=topk_fraction)
        return np.asarray(released, np.float32), (np.asarray(mask) > 0).astype(np.float32)

    return release


def standard(eval_config, topk_fraction: float) -> dict[str, Release]:
    """Original, Block, Gaussian Blur and Random-K (at ``topk_fraction``), in table order."""
    box = tuple(eval_config.face_box)
    return {
        "Original": original,
        "Block": lambda images: block(images, box),
        "Gaussian Blur": lambda images: gaussian_blur(images, box, eval_config.blur_kernel_size,
                                                      eval_config.blur_sigma),
        "Random-K": RandomK(topk_fraction, eval_config.seed),
    }
