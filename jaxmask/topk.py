"""The reveal primitives: ``topk_split`` (exact k), ``capped_split`` (at most k), and ``release``.

``h`` is the hard indicator of the k largest mask entries of each image. It is
built by scattering ones at the indices ``lax.top_k`` returns, never by
thresholding at the k-th value: a threshold reveals more than k pixels on ties
(constant or saturated masks, bfloat16) and slicing the k-th value makes XLA
compile a full sort. ``lax.top_k`` orders ties by lower index first, so ties
go to the lower flat index and exactly k pixels are revealed, always.

Value modes and their backward rules (DESIGN.md §1), with ḡ the cotangents of
``keep`` and ``rest``:

=========  ==========================  ==============================================
values     forward (keep, rest)        ∂L/∂m
=========  ==========================  ==============================================
binary     h, 1 − h                    ḡ_keep − ḡ_rest            (straight-through)
soft       m⊙h, m⊙(1 − h)              ḡ_keep + ḡ_rest⊙(1 − h)    (straight_through)
soft       m⊙h, m⊙(1 − h)              ḡ_keep⊙h + ḡ_rest⊙(1 − h)  (exact)
=========  ==========================  ==============================================

The binary straight-through rule treats ``keep = h ≈ m`` and ``rest = 1 − h ≈
1 − m``: raising m moves a pixel from the hidden part into the revealed one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

VALUE_MODES = ("binary", "soft")
GRADIENT_RULES = ("straight_through", "exact")


def num_revealed(fraction: float, height: int, width: int) -> int:
    """k = round(fraction·H·W), checked to lie in [1, H·W]."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"topk_fraction={fraction} is out of range: it is the share of pixels "
            "revealed and must be in (0, 1], e.g. --config.topk_fraction=0.25")
    k = int(round(fraction * height * width))
    return max(1, min(k, height * width))


def topk_indicator(m: jax.Array, k: int) -> jax.Array:
    """Hard indicator (same shape and dtype as ``m``) of the k largest entries per image.

    Args:
      m: (B, ...) scores; everything after the batch axis is one image.
      k: static number of entries to set per image, 1 ≤ k ≤ prod(m.shape[1:]).
    """
    batch = m.shape[0]
    flat = m.reshape(batch, -1)
    _, idx = lax.top_k(flat, k)
    rows = jnp.arange(batch)[:, None]
    h = jnp.zeros(flat.shape, m.dtype).at[rows, idx].set(
        1, indices_are_sorted=False, unique_indices=True)
    return h.reshape(m.shape)


def check_arguments(shape: tuple[int, ...], dtype, k: int, values: str, gradient: str) -> None:
    """Raises a ValueError/TypeError naming the bad argument and the fix."""
    if values not in VALUE_MODES:
        raise ValueError(f"values={values!r}: expected one of {VALUE_MODES}")
    if gradient not in GRADIENT_RULES:
        raise ValueError(f"gradient={gradient!r}: expected one of {GRADIENT_RULES}")
    if values == "binary" and gradient == "exact":
        raise ValueError(
            "values='binary' with gradient='exact' is refused: the exact gradient of a "
            "hard 0/1 indicator is zero everywhere, so the masker would never learn. "
            "Use gradient='straight_through', or values='soft' for the exact rule.")
    if len(shape) < 2:
        raise ValueError(f"mask must be batched (B, H, W[, 1]); got shape {shape}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"mask must be floating point, got {dtype}")
    pixels = 1
    for d in shape[1:]:
        pixels *= d
    if not isinstance(k, int) or not 1 <= k <= pixels:
        raise ValueError(
            f"k={k!r} is out of range for images of {pixels} pixels (mask shape {shape}): "
            f"k must be an int with 1 ≤ k ≤ {pixels}; use num_revealed(fraction, H, W)")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _split(m, k, values, gradient):
    h = topk_indicator(m, k)
    if values == "binary":
        return h, 1 - h
    return m * h, m * (1 - h)


def _split_fwd(m, k, values, gradient):
    h = topk_indicator(m, k)
    out = (h, 1 - h) if values == "binary" else (m * h, m * (1 - h))
    return out, h


def _split_bwd(k, values, gradient, h, cotangents):
    g_keep, g_rest = cotangents
    if values == "binary":
        dm = g_keep - g_rest
    elif gradient == "straight_through":
        dm = g_keep + g_rest * (1 - h)
    else:
        dm = g_keep * h + g_rest * (1 - h)
    return (dm.astype(h.dtype),)


_split.defvjp(_split_fwd, _split_bwd)


def topk_split(m: jax.Array, k: int, values: str = "binary",
               gradient: str = "straight_through") -> tuple[jax.Array, jax.Array]:
    """Splits each image's mask into its exact-k revealed and its hidden part.

    Args:
      m: (B, H, W, 1) or (B, H, W) soft mask in [0, 1] (float32 or bfloat16).
      k: static number of revealed pixels per image.
      values: "binary" (keep = h, rest = 1 − h) or "soft" (keep = m⊙h, rest = m⊙(1 − h)).
      gradient: "straight_through" or "exact" (soft values only).

    Returns:
      (keep, rest), each shaped and typed like ``m``; multiply them into the
      image to get the revealed part x_p and the hidden part x_o.
    """
    check_arguments(m.shape, m.dtype, k, values, gradient)
    return _split(m, k, values, gradient)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _capped_split(m, k, threshold, opening_size):
    # ``m``: scores already opened (``open_scores``); the second opening only where the cap cut a square.
    h = topk_indicator(m, k) * (m > threshold).astype(m.dtype)
    h = h if not opening_size or opening_size == 1 else opening(h, opening_size)
    return h, 1 - h


def _capped_fwd(m, k, threshold, opening_size):
    return _capped_split(m, k, threshold, opening_size), None


def _capped_bwd(k, threshold, opening_size, _, cotangents):
    g_keep, g_rest = cotangents
    return ((g_keep - g_rest),)


_capped_split.defvjp(_capped_fwd, _capped_bwd)


def open_scores(m: jax.Array, size: int) -> jax.Array:
    """The grayscale opening of (B, H, W, 1) scores by a ``size``×``size`` square: each pixel's score
    becomes the best, over the squares that contain it, of the square's lowest score (outside the image
    scores 0).

    Thresholding commutes with it: {open_scores(m) > t} is ``opening({m > t})``,
    so a reveal ranked on these scores is made of whole squares — and, unlike
    opening the 0/1 reveal afterwards, its gradient reaches the pixels that
    decide it (the lowest of a square), so the masker learns to fill squares
    rather than to place pixels the opening then removes.
    """
    pad = size // 2
    window, strides = (1, size, size, 1), (1, 1, 1, 1)
    padded = jnp.pad(m, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=0)
    eroded = -lax.reduce_window(-padded, -jnp.inf, lax.max, window, strides, "VALID")
    return lax.reduce_window(eroded, -jnp.inf, lax.max, window, strides, "SAME")


def opening(h: jax.Array, size: int) -> jax.Array:
    """The morphological opening of a (B, H, W, 1) 0/1 reveal by a ``size``×``size`` square.

    Erosion (a pixel stays where its whole square is revealed; outside the
    image counts as hidden) then dilation: what survives is the union of the
    squares that fit inside the reveal. A pixel, a lattice, a line or a strip
    thinner than ``size`` cannot survive it, so it cannot carry a code; a
    region that holds a square keeps its shape. Label-independent, no
    parameters, and a subset of ``h``: a cap still holds after it.
    """
    pad = size // 2
    window, strides = (1, size, size, 1), (1, 1, 1, 1)
    hidden = jnp.pad(1 - h, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=1)
    eroded = 1 - lax.reduce_window(hidden, jnp.zeros((), h.dtype), lax.max, window, strides, "VALID")
    return lax.reduce_window(eroded, jnp.zeros((), h.dtype), lax.max, window, strides, "SAME")


def capped_indicator(m: jax.Array, k: int, threshold: float, opening_size: int | None = None) -> jax.Array:
    """The top-k indicator restricted to entries above ``threshold``: at most k per image. With
    ``opening_size``: the top-k of ``open_scores(m)`` above ``threshold``, opened again (``opening``)
    where the cap cut a square, so every revealed pixel lies in a revealed square of that side."""
    if opening_size and opening_size > 1:
        m = open_scores(m, opening_size)
    h = topk_indicator(m, k) * (m > threshold).astype(m.dtype)
    return h if not opening_size or opening_size == 1 else opening(h, opening_size)


def capped_split(m: jax.Array, k: int, threshold: float = 0.5, opening_size: int | None = None
                 ) -> tuple[jax.Array, jax.Array]:
    """K as a cap, not a quota: reveals the top-k pixels whose score also exceeds ``threshold``
    (then, with ``opening_size``, only the squares of that side that fit in them: ``opening``).

    Binary values and the binary straight-through rule of ``topk_split``
    (∂L/∂m = ḡ_keep − ḡ_rest; with an opening, through ``open_scores``). At most k pixels per image are revealed, so a
    masker can leave hidden what the task does not need; ``topk_split``'s
    exact-k guarantee is unchanged and remains the default.
    """
    check_arguments(m.shape, m.dtype, k, "binary", "straight_through")
    if opening_size is not None and (not isinstance(opening_size, int) or opening_size < 1 or opening_size % 2 == 0):
        raise ValueError(f"opening_size={opening_size!r} must be an odd integer ≥ 1 (or None: no opening)")
    if opening_size and opening_size > 1:
        m = open_scores(m, opening_size)       # differentiable: the gradient reaches each square's lowest score
    return _capped_split(m, k, float(threshold), opening_size)


def release(m: jax.Array, images: jax.Array, k: int, values: str = "binary",
            cap_threshold: float | None = None, opening_size: int | None = None) -> tuple[jax.Array, jax.Array]:
    """The release of ``images`` under the masker's scores ``m``: (released images, reveal mask).

    The one release rule, shared by training (``steps.mask_images``) and the
    exported bundle (``export.MaskerBundle.mask``), so the two cannot drift.
    ``binary`` releases h ⊙ x (original values on exactly k pixels per image),
    ``soft`` releases m ⊙ h ⊙ x as the paper does; with ``cap_threshold``
    (a masker trained with reveal='cap') at most k pixels, only those scored
    above it (binary values), and with ``opening_size`` only what squares of
    that side fill (``opening``). The mask is h (binary) or m ⊙ h (soft), shaped like ``m``.
    """
    if cap_threshold is not None:
        keep, _ = capped_split(m, k, cap_threshold, opening_size)
    else:
        keep, _ = topk_split(m, k, values)
    return keep * images, keep
