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


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _capped_split(m, k, threshold):
    h = capped_indicator(m, k, threshold)
    return h, 1 - h


def _capped_fwd(m, k, threshold):
    return _capped_split(m, k, threshold), None


def _capped_bwd(k, threshold, _, cotangents):
    g_keep, g_rest = cotangents
    return ((g_keep - g_rest),)


_capped_split.defvjp(_capped_fwd, _capped_bwd)


def capped_indicator(m: jax.Array, k: int, threshold: float) -> jax.Array:
    """The top-k indicator restricted to entries above ``threshold``: at most k per image."""
    return topk_indicator(m, k) * (m > threshold).astype(m.dtype)


def capped_split(m: jax.Array, k: int, threshold: float = 0.5) -> tuple[jax.Array, jax.Array]:
    """K as a cap, not a quota: reveals the top-k pixels whose score also exceeds ``threshold``.

    Binary values and the binary straight-through rule of ``topk_split``
    (∂L/∂m = ḡ_keep − ḡ_rest). At most k pixels per image are revealed, so a
    masker can leave hidden what the task does not need; ``topk_split``'s
    exact-k guarantee is unchanged and remains the default.
    """
    check_arguments(m.shape, m.dtype, k, "binary", "straight_through")
    return _capped_split(m, k, float(threshold))


def release(m: jax.Array, images: jax.Array, k: int, values: str = "binary",
            cap_threshold: float | None = None) -> tuple[jax.Array, jax.Array]:
    """The release of ``images`` under the masker's scores ``m``: (released images, reveal mask).

    The one release rule, shared by training (``steps.mask_images``) and the
    exported bundle (``export.MaskerBundle.mask``), so the two cannot drift.
    ``binary`` releases h ⊙ x (original values on exactly k pixels per image),
    ``soft`` releases m ⊙ h ⊙ x as the paper does; with ``cap_threshold``
    (a masker trained with reveal='cap') at most k pixels, only those scored
    above it (binary values). The mask is h (binary) or m ⊙ h (soft), shaped like ``m``.
    """
    if cap_threshold is not None:
        keep, _ = capped_split(m, k, cap_threshold)
    else:
        keep, _ = topk_split(m, k, values)
    return keep * images, keep
