"""Faster formulations of two layers of jaxmask/models.py, measured here before proposing them.

Benchmark-only: jaxmask/models.py stays the reference. Both variants compute
the same function with the same parameter tree (names, shapes, init), so a
checkpoint of one loads into the other:

* ``Upsample2x2``: ``nn.ConvTranspose(f, (2, 2), strides=(2, 2))`` is a
  per-pixel matmul (each input pixel writes its own 2×2 output block), so it
  is one (B·H·W, C) × (C, 4·F) GEMM and a transpose. XLA CPU lowers the
  ConvTranspose's *weight gradient* to an rhs-dilated convolution on the
  generic Eigen path at ~1 GFLOP/s: 40% of the round's time at 64×64.
* ``max_pool_2x2``: a reshape + max over the two 2-wide axes instead of
  ``reduce_window``, whose gradient on CPU goes through a select-and-scatter
  that materialises an int32 iota the size of every activation. Its custom
  VJP routes each window's gradient to the *first* maximum in row-major
  order, exactly as ``reduce_window``'s select-and-scatter (and PyTorch) do.
  This matters here: Φ sees images with 75% of the pixels zeroed, so whole
  windows hold exactly tied positive activations, and ``jnp.max``'s own
  gradient (split equally among ties) changes the masker's gradient by ~10%.

``with_variants(method, upsample=..., pool=...)`` swaps them into a
``jaxmask.state.Method``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmask.models import _BN_MOMENTUM, Classifier, ConvBNReLU, Masker


def _windows(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def max_pool_2x2(x):
    """2×2 max pool, stride 2, NHWC (H, W even); gradient to the first maximum of each window."""
    return _windows(x).max(axis=(2, 4))


def _first_max(x, y):
    """Indicator of the first maximum of each 2×2 window (row-major), shaped like x."""
    e = _windows(x) == y[:, :, None, :, None, :]
    e00 = e[:, :, 0, :, 0]
    e01 = e[:, :, 0, :, 1] & ~e00
    e10 = e[:, :, 1, :, 0] & ~(e00 | e01)
    e11 = e[:, :, 1, :, 1] & ~(e00 | e01 | e10)
    top = jnp.stack([e00, e01], axis=3)
    bottom = jnp.stack([e10, e11], axis=3)
    return jnp.stack([top, bottom], axis=2).reshape(x.shape)


def _pool_fwd(x):
    y = max_pool_2x2(x)
    return y, (x, y)


def _pool_bwd(residuals, g):
    x, y = residuals
    g_up = jnp.broadcast_to(g[:, :, None, :, None, :], _windows(x).shape).reshape(x.shape)
    return (jnp.where(_first_max(x, y), g_up, jnp.zeros_like(g_up)),)


max_pool_2x2.defvjp(_pool_fwd, _pool_bwd)


def reduce_window_pool(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2))


class Upsample2x2(nn.Module):
    """``nn.ConvTranspose(features, (2, 2), strides=(2, 2))`` as one GEMM; same params and init."""
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (2, 2, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        b, h, w, _ = x.shape
        # flax's ConvTranspose does not flip the kernel: output (2i+p, 2j+q) uses kernel[1-p, 1-q].
        y = jnp.einsum("bhwc,pqco->bhpwqo", x, kernel[::-1, ::-1])
        return y.reshape(b, 2 * h, 2 * w, self.features) + bias


class VariantMasker(nn.Module):
    """``jaxmask.models.Masker`` with a choice of upsampling and pooling (same params)."""
    widths: Sequence[int] = (32, 64, 128, 256)
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None
    upsample: str = "dot"       # dot | conv_transpose
    pool: str = "reshape"       # reshape | reduce_window

    def _block(self, features, x, train):
        for _ in range(2):
            x = ConvBNReLU(features, self.dtype, self.bn_axis_name)(x, train)
        return x

    @nn.compact
    def __call__(self, x, train: bool = False):
        pool = max_pool_2x2 if self.pool == "reshape" else reduce_window_pool
        x = x.astype(self.dtype)
        skips = []
        for features in self.widths[:-1]:
            x = self._block(features, x, train)
            skips.append(x)
            x = pool(x)
        x = self._block(self.widths[-1], x, train)
        for i, (features, skip) in enumerate(zip(reversed(self.widths[:-1]), reversed(skips))):
            if self.upsample == "dot":
                x = Upsample2x2(features, self.dtype, name=f"ConvTranspose_{i}")(x)
            else:
                x = nn.ConvTranspose(features, (2, 2), strides=(2, 2), dtype=self.dtype,
                                     name=f"ConvTranspose_{i}")(x)
            x = self._block(features, jnp.concatenate([x, skip], axis=-1), train)
        logits = nn.Conv(1, (1, 1), dtype=self.dtype, name="Conv_0")(x)
        return nn.sigmoid(logits.astype(jnp.float32))


class VariantClassifier(nn.Module):
    """``jaxmask.models.Classifier`` with a choice of pooling (same params)."""
    num_classes: int
    widths: Sequence[int] = (32, 64, 128, 256)
    hidden: int = 256
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None
    pool: str = "reshape"

    @nn.compact
    def __call__(self, x, train: bool = False):
        pool = max_pool_2x2 if self.pool == "reshape" else reduce_window_pool
        x = x.astype(self.dtype)
        for features in self.widths:
            x = pool(ConvBNReLU(features, self.dtype, self.bn_axis_name)(x, train))
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                         axis_name=self.bn_axis_name, dtype=self.dtype)(x)
        x = nn.relu(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


def with_variants(method, upsample: str = "dot", pool: str = "reshape"):
    """The same ``Method`` with the variant layers (parameter trees unchanged)."""
    m, p = method.masker, method.phi
    if not isinstance(m, Masker) or not isinstance(p, Classifier):
        raise TypeError("with_variants expects a Method built by jaxmask.state.build_method")
    return dataclasses.replace(
        method,
        masker=VariantMasker(widths=m.widths, dtype=m.dtype, bn_axis_name=m.bn_axis_name,
                             upsample=upsample, pool=pool),
        phi=VariantClassifier(num_classes=p.num_classes, widths=p.widths, hidden=p.hidden,
                              dtype=p.dtype, bn_axis_name=p.bn_axis_name, pool=pool))
