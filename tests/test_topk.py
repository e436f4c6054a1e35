"""topk_split: exact k, tie order, every backward rule, and every transform."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxmask.topk import num_revealed, topk_indicator, topk_split

K = 13


def revealed_per_image(h):
    return np.asarray(h).reshape(h.shape[0], -1).sum(1)


@pytest.mark.parametrize("kind", ["random", "constant", "saturated", "bfloat16"])
def test_exactly_k_revealed(kind):
    rng = np.random.default_rng(0)
    m = rng.uniform(size=(4, 8, 8, 1)).astype(np.float32)
    if kind == "constant":
        m[:] = 0.5
    elif kind == "saturated":
        m = (m > 0.3).astype(np.float32)      # many exact 0s and 1s: ties everywhere
    elif kind == "bfloat16":
        m = jnp.asarray(m, jnp.bfloat16).round()
    keep, rest = topk_split(jnp.asarray(m), K)
    np.testing.assert_array_equal(revealed_per_image(keep), K)
    np.testing.assert_array_equal(np.asarray(keep + rest, np.float32), 1.0)


def test_ties_go_to_lower_flat_index():
    m = jnp.zeros((2, 4, 4, 1)).at[1, 3, 3, 0].set(1.0)
    h = np.asarray(topk_indicator(m, 3)).reshape(2, -1)
    assert np.flatnonzero(h[0]).tolist() == [0, 1, 2]
    assert np.flatnonzero(h[1]).tolist() == [0, 1, 15]


def test_reveals_the_largest_scores():
    m = jax.random.uniform(jax.random.key(1), (3, 6, 6, 1))
    h = np.asarray(topk_indicator(m, K)).reshape(3, -1).astype(bool)
    flat = np.asarray(m).reshape(3, -1)
    for row, mask in zip(flat, h):
        assert row[mask].min() > row[~mask].max()


def _formula(values, gradient, m, h, g_keep, g_rest):
    if values == "binary":
        return g_keep - g_rest
    if gradient == "straight_through":
        return g_keep + g_rest * (1 - h)
    return g_keep * h + g_rest * (1 - h)


@pytest.mark.parametrize("values,gradient", [("binary", "straight_through"),
                                             ("soft", "straight_through"), ("soft", "exact")])
def test_forward_and_backward_match_design(values, gradient):
    keys = jax.random.split(jax.random.key(2), 3)
    m = jax.random.uniform(keys[0], (3, 8, 8, 1))
    g_keep, g_rest = (jax.random.normal(k, m.shape) for k in keys[1:])
    (keep, rest), vjp = jax.vjp(lambda m: topk_split(m, K, values, gradient), m)
    h = topk_indicator(m, K)
    expected = (h, 1 - h) if values == "binary" else (m * h, m * (1 - h))
    np.testing.assert_allclose(keep, expected[0])
    np.testing.assert_allclose(rest, expected[1])
    (dm,) = vjp((g_keep, g_rest))
    np.testing.assert_allclose(dm, _formula(values, gradient, m, h, g_keep, g_rest), rtol=1e-6)


def test_binary_exact_is_refused_and_k_checked():
    m = jnp.ones((1, 4, 4, 1))
    with pytest.raises(ValueError, match="gradient='exact'.*refused"):
        topk_split(m, 3, "binary", "exact")
    for k in (0, 17):
        with pytest.raises(ValueError, match=f"k={k}.*1 ≤ k ≤ 16"):
            topk_split(m, k)
    with pytest.raises(ValueError, match="topk_fraction"):
        num_revealed(1.5, 4, 4)
    assert num_revealed(0.25, 32, 32) == 256


def _loss(m):
    keep, rest = topk_split(m, K)
    return jnp.sum(keep * 2.0) + jnp.sum(rest * 3.0)


def test_under_jit_vmap_and_grad():
    m = jax.random.uniform(jax.random.key(3), (2, 3, 8, 8, 1))
    expected = jax.grad(_loss)(m[0])
    np.testing.assert_allclose(expected, -1.0)            # ḡ_keep − ḡ_rest = 2 − 3
    np.testing.assert_allclose(jax.jit(jax.grad(_loss))(m[0]), expected)
    per_group = jax.vmap(jax.grad(_loss))(m)
    np.testing.assert_allclose(per_group, -1.0)
    keep, _ = jax.vmap(lambda x: topk_split(x, K))(m)
    np.testing.assert_array_equal(np.asarray(keep).reshape(6, -1).sum(1), K)


def test_under_pmap_and_shard_map():
    n = jax.device_count()
    assert n == 8, "conftest must give 8 fake devices"
    m = jax.random.uniform(jax.random.key(4), (n, 2, 8, 8, 1))
    keep = jax.pmap(lambda x: topk_split(x, K)[0])(m)
    np.testing.assert_array_equal(np.asarray(keep).reshape(2 * n, -1).sum(1), K)
    grads = jax.pmap(jax.grad(_loss))(m)
    np.testing.assert_allclose(grads, -1.0)

    mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    flat = m.reshape(2 * n, 8, 8, 1)

    @functools.partial(jax.shard_map, mesh=mesh, in_specs=P("data"), out_specs=P("data"))
    def sharded(x):
        return topk_split(x, K)[0]

    flat = jax.device_put(flat, jax.sharding.NamedSharding(mesh, P("data")))
    with jax.set_mesh(mesh):
        keep = sharded(flat)
        grads = jax.jit(jax.grad(lambda x: jnp.sum(sharded(x) * 2.0)))(flat)
    np.testing.assert_array_equal(np.asarray(keep).reshape(2 * n, -1).sum(1), K)
    np.testing.assert_allclose(np.asarray(grads), 2.0)
