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

import flax.linen as nn

from jaxmask.models import Classifier, Masker, max_pool_2x2


def reduce_window_pool(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2))


class VariantMasker(Masker):
    """``jaxmask.models.Masker`` with a choice of upsampling and pooling (same params)."""
    upsample: str = "dot"       # dot | conv_transpose
    pool: str = "reshape"       # reshape | reduce_window

    def _pool(self, x):
        return max_pool_2x2(x) if self.pool == "reshape" else reduce_window_pool(x)

    def _upsample(self, features, index, x):
        if self.upsample == "dot":
            return super()._upsample(features, index, x)
        return nn.ConvTranspose(features, (2, 2), strides=(2, 2), dtype=self.dtype,
                                name=f"ConvTranspose_{index}")(x)


class VariantClassifier(Classifier):
    """``jaxmask.models.Classifier`` with a choice of pooling (same params)."""
    pool: str = "reshape"

    def _pool(self, x):
        return max_pool_2x2(x) if self.pool == "reshape" else reduce_window_pool(x)


def with_variants(method, upsample: str = "dot", pool: str = "reshape"):
    """The same ``Method`` with the variant layers (parameter trees unchanged)."""
    m, p = method.players.masker, method.players.phi
    if not isinstance(m, Masker) or not isinstance(p, Classifier):
        raise TypeError("with_variants expects a Method built by jaxmask.build.build_method")
    return dataclasses.replace(
        method,
        masker=VariantMasker(widths=m.widths, dtype=m.dtype, bn_axis_name=m.bn_axis_name,
                             upsample=upsample, pool=pool),
        phi=VariantClassifier(num_classes=p.num_classes, widths=p.widths, hidden=p.hidden,
                              dtype=p.dtype, bn_axis_name=p.bn_axis_name, pool=pool))
