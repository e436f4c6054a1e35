"""The fast CPU building blocks in models.py compute exactly what the flax layers they replace do.

Inits and applies are jitted: eagerly, flax compiles every layer's operations one by one.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmask.models import Classifier, Masker, Upsample2x2, max_pool_2x2


def _reference_pool(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2))


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 7, 9, 2)])
def test_max_pool_matches_flax_values_and_gradient_with_ties(shape):
    # Quantised values and zeroed pixels give many ties inside windows, as masked images do.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 3, shape).astype(np.float32) * (rng.random(shape) < 0.6))
    g = jnp.asarray(rng.normal(size=_reference_pool(x).shape).astype(np.float32))
    np.testing.assert_array_equal(max_pool_2x2(x), _reference_pool(x))
    ours = jax.vjp(max_pool_2x2, x)[1](g)[0]
    reference = jax.vjp(_reference_pool, x)[1](g)[0]
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 2e-2)])
def test_upsample_matches_conv_transpose(dtype, tol):
    x = jax.random.normal(jax.random.key(1), (2, 4, 5, 6))
    reference = nn.ConvTranspose(7, (2, 2), strides=(2, 2), dtype=dtype)
    ours = Upsample2x2(7, dtype)
    params = jax.jit(reference.init)(jax.random.key(2), x)
    # Same parameter tree (names, shapes), so checkpoints of either load into the other.
    assert jax.tree.map(jnp.shape, jax.eval_shape(ours.init, jax.random.key(2), x)) == \
        jax.tree.map(jnp.shape, params)
    params = jax.jit(lambda p: jax.tree.map(lambda q: q + 0.1 * jax.random.normal(jax.random.key(3), q.shape), p))(
        params)
    want = jax.jit(reference.apply)(params, x)
    got = jax.jit(ours.apply)(params, x)
    assert got.dtype == want.dtype and got.shape == want.shape == (2, 8, 10, 7)
    np.testing.assert_allclose(np.float32(got), np.float32(want), rtol=tol, atol=tol)


def test_masker_keeps_conv_transpose_parameter_names():
    variables = jax.eval_shape(functools.partial(Masker(widths=(4, 8, 16)).init, train=False),
                               jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    names = set(variables["params"])
    assert {"ConvTranspose_0", "ConvTranspose_1"} <= names
    assert variables["params"]["ConvTranspose_0"]["kernel"].shape == (2, 2, 16, 8)


def test_classifier_accepts_sizes_that_pool_to_odd():
    # 40 -> 20 -> 10 -> 5 -> 2: the odd map is cropped as VALID padding does.
    model = Classifier(widths=(4, 4, 4, 4), hidden=8, num_classes=3)
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), jnp.zeros((2, 40, 40, 3)))
    assert jax.jit(functools.partial(model.apply, train=False))(variables, jnp.ones((2, 40, 40, 3))).shape == (2, 3)
