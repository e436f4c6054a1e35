"""The two players: ``Masker`` (U-Net scoring every pixel) and ``Classifier`` (Φ).

Both are flax.linen modules over NHWC float images in [0, 1]. ``dtype`` is
the compute dtype (parameters stay float32). ``bn_axis_name`` names the
device axis BatchNorm averages its statistics over under ``pmap``; under a
sharded ``jit`` it stays None because BatchNorm already sees the global batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

# BatchNorm momentum of the running averages used in eval mode.
_BN_MOMENTUM = 0.9


class ConvBNReLU(nn.Module):
    features: int
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                         axis_name=self.bn_axis_name, dtype=self.dtype)(x)
        return nn.relu(x)


class Masker(nn.Module):
    """U-Net: ``widths[:-1]`` encoder levels, ``widths[-1]`` bottleneck.

    Input (B, H, W, C); output (B, H, W, 1) float32 sigmoid scores. H and W
    must be divisible by 2**(len(widths) - 1).
    """
    widths: Sequence[int] = (32, 64, 128, 256)
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    def _block(self, features, x, train):
        for _ in range(2):
            x = ConvBNReLU(features, self.dtype, self.bn_axis_name)(x, train)
        return x

    @nn.compact
    def __call__(self, x, train: bool = False):
        depth = len(self.widths) - 1
        factor = 2 ** depth
        if x.ndim != 4 or x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"Masker with widths={tuple(self.widths)} halves the image {depth} times, so it "
                f"needs NHWC input with H and W divisible by {factor}; got shape {x.shape}. "
                "Resize the images or use fewer widths.")
        x = x.astype(self.dtype)
        skips = []
        for features in self.widths[:-1]:
            x = self._block(features, x, train)
            skips.append(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = self._block(self.widths[-1], x, train)
        for features, skip in zip(reversed(self.widths[:-1]), reversed(skips)):
            x = nn.ConvTranspose(features, (2, 2), strides=(2, 2), dtype=self.dtype)(x)
            x = self._block(features, jnp.concatenate([x, skip], axis=-1), train)
        logits = nn.Conv(1, (1, 1), dtype=self.dtype)(x)
        # Scores in float32: bfloat16 sigmoids saturate into ties early.
        return nn.sigmoid(logits.astype(jnp.float32))


class Classifier(nn.Module):
    """Φ from the paper: len(widths) × [conv3×3 → BN → ReLU → maxpool 2×2] → dense → BN → ReLU → dense.

    Input (B, H, W, C); output (B, num_classes) float32 logits.
    """
    num_classes: int
    widths: Sequence[int] = (32, 64, 128, 256)
    hidden: int = 256
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        for features in self.widths:
            x = ConvBNReLU(features, self.dtype, self.bn_axis_name)(x, train)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                         axis_name=self.bn_axis_name, dtype=self.dtype)(x)
        x = nn.relu(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
