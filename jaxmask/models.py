"""The two players: ``Masker`` (U-Net scoring every pixel) and ``Classifier`` (Φ).

Both are flax.linen modules over NHWC float images in [0, 1]. ``dtype`` is
the compute dtype (parameters stay float32). ``bn_axis_name`` names the
device axis BatchNorm averages its statistics over under ``pmap``; under a
sharded ``jit`` it stays None because BatchNorm already sees the global batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# BatchNorm momentum of the running averages used in eval mode.
_BN_MOMENTUM = 0.9


def _windows(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c)


def max_pool_2x2(x):
    """2×2 max pool, stride 2, NHWC; same values and gradient as ``nn.max_pool(x, (2, 2), (2, 2))``.

    A reshape + max instead of ``reduce_window``: on CPU the latter's gradient
    (select-and-scatter) materialises an int32 iota per activation. The
    gradient goes to the first maximum of each window in row-major order, as
    select-and-scatter does; ties are common here (Φ sees images with most
    pixels zeroed), and ``jnp.max``'s own tie-splitting gradient would change
    the masker's gradient. An odd trailing row or column is dropped, as VALID
    padding does.
    """
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    return _max_pool_even(x[:, :h, :w])


@jax.custom_vjp
def _max_pool_even(x):
    return _windows(x).max(axis=(2, 4))


def _first_max(x, y):
    e = _windows(x) == y[:, :, None, :, None, :]
    e00 = e[:, :, 0, :, 0]
    e01 = e[:, :, 0, :, 1] & ~e00
    e10 = e[:, :, 1, :, 0] & ~(e00 | e01)
    e11 = e[:, :, 1, :, 1] & ~(e00 | e01 | e10)
    rows = [jnp.stack([e00, e01], axis=3), jnp.stack([e10, e11], axis=3)]
    return jnp.stack(rows, axis=2).reshape(x.shape)


def _max_pool_fwd(x):
    y = _max_pool_even(x)
    return y, (x, y)


def _max_pool_bwd(residuals, g):
    x, y = residuals
    g = jnp.broadcast_to(g[:, :, None, :, None, :], _windows(x).shape).reshape(x.shape)
    return (jnp.where(_first_max(x, y), g, jnp.zeros_like(g)),)


_max_pool_even.defvjp(_max_pool_fwd, _max_pool_bwd)


class Upsample2x2(nn.Module):
    """``nn.ConvTranspose(features, (2, 2), strides=(2, 2))`` as one GEMM: same params, init, output.

    Each input pixel writes its own 2×2 output block, so the layer is a
    (B·H·W, C) × (C, 4·F) matmul; XLA:CPU runs the ConvTranspose's weight
    gradient as an rhs-dilated convolution at ~1 GFLOP/s.
    """
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

    # The two layers with a faster CPU formulation, as methods so that
    # benchmarks/variants.py can put the flax layers they replace back in.
    def _pool(self, x):
        return max_pool_2x2(x)

    def _upsample(self, features, index, x):
        # Named as the nn.ConvTranspose it replaces: checkpoints keep loading.
        return Upsample2x2(features, self.dtype, name=f"ConvTranspose_{index}")(x)

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
            x = self._pool(x)
        x = self._block(self.widths[-1], x, train)
        for i, (features, skip) in enumerate(zip(reversed(self.widths[:-1]), reversed(skips))):
            x = self._upsample(features, i, x)
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

    def _pool(self, x):   # a method for benchmarks/variants.py, as in Masker
        return max_pool_2x2(x)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        for features in self.widths:
            x = ConvBNReLU(features, self.dtype, self.bn_axis_name)(x, train)
            x = self._pool(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                         axis_name=self.bn_axis_name, dtype=self.dtype)(x)
        x = nn.relu(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
