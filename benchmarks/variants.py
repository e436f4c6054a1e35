"""The layers jaxmask/models.py used before its two CPU speed-ups, to measure them side by side.

jaxmask/models.py now computes both layers the fast way (`Upsample2x2`,
`max_pool_2x2`, see their docstrings); this module puts the previous flax
layers back so "before" stays measurable on any machine:

* ``upsample="conv_transpose"``: ``nn.ConvTranspose(f, (2, 2), strides=(2, 2))``.
  XLA CPU lowers its *weight gradient* to an rhs-dilated convolution on the
  generic Eigen path at ~1 GFLOP/s: 40% of the round's time at 64×64.
* ``pool="reduce_window"``: ``nn.max_pool``, whose gradient on CPU goes
  through a select-and-scatter that materialises an int32 iota the size of
  every activation.

Both variants compute the same function with the same parameter tree (names,
shapes, init) as models.py, so a checkpoint of one loads into the other.
``with_variants(method, upsample=..., pool=...)`` swaps them into a
``jaxmask.state.Method``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmask.models import _BN_MOMENTUM, Classifier, ConvBNReLU, Masker, Upsample2x2, max_pool_2x2


def reduce_window_pool(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2))


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
