"""The pure steps: who gets updated, what a round does, what evaluation counts."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmask import (build_method, create_train_state, eval_step, mask_images, obfuscator_step,
                     predictor_step, train_round)
from jaxmask.models import Masker

IMAGE_SHAPE = (16, 16, 3)


def tiny(config, **overrides):
    """The smoke config at 16 px, exact-k (these steps and their counts are the exact-k game's)."""
    config.image_size = IMAGE_SHAPE[0]
    config.game, config.reveal = "realx", "exact"
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def batch(key, num, batch_size=8):
    images = jax.random.uniform(key, (num, batch_size, *IMAGE_SHAPE))
    labels = jax.random.randint(jax.random.fold_in(key, 1), (num, batch_size), 0, 4)
    identities = jax.random.randint(jax.random.fold_in(key, 2), (num, batch_size), 0, 20)
    return {"image": images, "label": labels, "identity": identities}


def differs(a, b):
    return any(bool(jnp.any(x != y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def setup():
    from conftest import load_config
    method = build_method(tiny(load_config("synth_hair", "smoke")))
    state = create_train_state(method, jax.random.key(0), IMAGE_SHAPE)
    return method, state


def test_obfuscator_step_updates_only_the_masker(setup):
    method, state = setup
    one = jax.tree.map(lambda x: x[0], batch(jax.random.key(1), 1))
    new, metrics = jax.jit(functools.partial(obfuscator_step, method))(state, one)
    assert differs(new.masker.params, state.masker.params)
    assert differs(new.masker.batch_stats, state.masker.batch_stats)
    for old_leaf, new_leaf in zip(jax.tree.leaves(state.phi), jax.tree.leaves(new.phi)):
        np.testing.assert_array_equal(old_leaf, new_leaf)       # bit-identical
    assert np.isfinite(metrics["obfuscator_loss"])
    # CE(uniform, ·) ≥ log(num_classes), with equality at uniform predictions.
    assert float(metrics["obfuscator_loss"]) >= np.log(4) - 1e-5


def test_predictor_step_updates_both_players(setup):
    method, state = setup
    one = jax.tree.map(lambda x: x[0], batch(jax.random.key(2), 1))
    new, metrics = jax.jit(functools.partial(predictor_step, method))(state, one)
    assert differs(new.masker.params, state.masker.params)
    assert differs(new.phi.params, state.phi.params)
    assert differs(new.phi.batch_stats, state.phi.batch_stats)
    assert 0.0 <= float(metrics["predictor_accuracy"]) <= 1.0


@pytest.mark.parametrize("obfuscator_steps", [1, 0])
def test_train_round_counts_rounds_and_reports_both_roles(obfuscator_steps):
    from conftest import load_config
    # Two predictor steps: a round of several steps per role, at half the compile of the paper's 3 + 1.
    method = build_method(tiny(load_config("synth_hair", "smoke"), predictor_steps=2,
                               obfuscator_steps=obfuscator_steps))
    state = create_train_state(method, jax.random.key(0), IMAGE_SHAPE)
    round_fn = jax.jit(functools.partial(train_round, method))
    state, metrics = round_fn(state, batch(jax.random.key(3), 2 + obfuscator_steps))
    state, metrics = round_fn(state, batch(jax.random.key(4), 2 + obfuscator_steps))
    assert int(state.step) == 2
    assert ("obfuscator_loss" in metrics) == bool(obfuscator_steps)
    with pytest.raises(ValueError, match="stacked batches"):
        round_fn(state, batch(jax.random.key(5), 4))


def test_eval_step_and_mask_images_reveal_exactly_k(setup):
    method, state = setup
    one = jax.tree.map(lambda x: x[0], batch(jax.random.key(6), 1))
    sums = jax.jit(functools.partial(eval_step, method))(state, one)
    assert float(sums["count"]) == 8
    assert float(sums["revealed"]) == 8 * method.reveal.k
    assert 0 <= float(sums["correct_revealed"]) <= 8 and 0 <= float(sums["correct_hidden"]) <= 8
    released, mask = mask_images(method, state, one["image"])
    np.testing.assert_array_equal(np.asarray(mask).reshape(8, -1).sum(1), method.reveal.k)
    np.testing.assert_array_equal(released, np.asarray(one["image"]) * np.asarray(mask))
    soft_method = dataclasses.replace(method, reveal=dataclasses.replace(method.reveal, values="soft"))
    soft, soft_mask = mask_images(soft_method, state.masker.variables, one["image"])
    np.testing.assert_array_equal(np.count_nonzero(np.asarray(soft_mask).reshape(8, -1), axis=1), method.reveal.k)


def test_masker_refuses_indivisible_images():
    masker = Masker(widths=(4, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        masker.init(jax.random.key(0), jnp.zeros((1, 18, 18, 3)))
    out, _ = Masker(widths=(4, 8), dtype=jnp.bfloat16).init_with_output(
        jax.random.key(0), jnp.zeros((2, 8, 8, 3)))
    assert out.shape == (2, 8, 8, 1) and out.dtype == jnp.float32
