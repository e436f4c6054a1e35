"""The minimal-reveal game (jaxmask.games.minimal): K is a cap, the area is minimised under constraints
whose multipliers are learned by dual ascent; and the games table that plays it."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmask import build_method, create_train_state
from jaxmask.games import minimal, random_masks, table

from test_games import IMAGE_SHAPE, batch, game_config, same


def minimal_config(**overrides):
    """test_games' tiny config, playing the minimal game (K a cap)."""
    return game_config("minimal", **{"reveal": "cap", **overrides})


@pytest.fixture(scope="module")
def setup():
    method = build_method(minimal_config())
    return method, create_train_state(method, jax.random.key(0), IMAGE_SHAPE)


def test_the_game_needs_a_cap_and_carries_its_multipliers(setup):
    method, state = setup
    assert set(state.log_multipliers) == set(minimal.constraints(method)) >= set(minimal.CONSTRAINTS)
    # λ = 1 at the start; the identity constraint's (where there are identity adversaries) starts higher.
    assert {name: float(v) for name, v in state.log_multipliers.items()} == {
        **{name: 0.0 for name in minimal.CONSTRAINTS}, "identity": method.minimal.identity_start}
    with pytest.raises(ValueError, match="needs config.reveal='cap'.*--config.reveal=cap"):
        build_method(minimal_config(reveal="exact"))
    # Games without learned multipliers keep none in their state.
    realx = build_method(game_config("realx"))
    assert create_train_state(realx, jax.random.key(0), IMAGE_SHAPE).log_multipliers == {}


def test_random_masks_at_rates_vary_per_image_and_are_batch_independent():
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(jnp.arange(256))
    masks = np.asarray(random_masks.random_masks_at_rates(keys, (256, 16, 16, 1), min_rate=0.01))
    counts = masks.reshape(256, -1).sum(1)
    assert counts.min() >= 1 and counts.max() <= 256 and set(np.unique(masks)) <= {0.0, 1.0}
    # Log-uniform over [0.01, 1]: about half the images below 10% of the pixels, half above.
    assert 0.35 <= np.mean(counts < 0.1 * 256) <= 0.65
    np.testing.assert_array_equal(random_masks.random_masks_at_rates(keys[5:7], (2, 16, 16, 1), 0.01), masks[5:7])


def test_boundary_prices_a_lattice_above_a_solid_region_of_the_same_area():
    solid = jnp.zeros((1, 8, 8, 1)).at[:, :4].set(1.0)
    lattice = jnp.asarray((np.indices((8, 8)).sum(0) % 2)[None, ..., None], jnp.float32)
    assert float(solid.mean()) == float(lattice.mean())
    assert float(minimal.boundary(lattice)) > 10 * float(minimal.boundary(solid)) > 0


def test_dual_ascent_raises_violated_and_lowers_satisfied_multipliers(setup):
    method, state = setup
    chance = 0.25
    metrics = {"predictor_accuracy": jnp.float32(0.5),                          # utility violated by 0.45
               "complement_accuracy": jnp.float32(chance),                       # hidden satisfied by 0.05
               "pattern_accuracy": jnp.float32(chance + method.minimal.pattern_margin)}  # exactly on the bound
    new, out = minimal.update_multipliers(method, state, metrics)
    eta = method.minimal.dual_learning_rate
    np.testing.assert_allclose(float(new.log_multipliers["utility"]), eta * (method.minimal.utility_accuracy - 0.5), rtol=1e-6)
    np.testing.assert_allclose(float(new.log_multipliers["hidden"]), -eta * method.minimal.hidden_margin, rtol=1e-6)
    assert float(new.log_multipliers["pattern"]) == 0.0
    assert float(out["multiplier_utility"]) > 1 > float(out["multiplier_hidden"])
    # Bounded: a constraint that cannot be met does not run away.
    bounded = dataclasses.replace(method, minimal=dataclasses.replace(method.minimal, dual_learning_rate=1e3))
    far, _ = minimal.update_multipliers(bounded, state, metrics)
    assert float(far.log_multipliers["utility"]) == method.minimal.max_log_multiplier


def test_area_term_lowers_the_reveal_when_the_constraints_are_slack(setup):
    """With every multiplier ≈ 0 the Lagrangian is the area: the masker's scores fall, step after step."""
    method, state = setup
    slack = state.replace(log_multipliers={k: jnp.float32(-20.0) for k in minimal.constraints(method)})   # λ ≈ 0
    step = jax.jit(functools.partial(minimal.minimal_utility_step, method))
    one = batch(jax.random.key(1))
    means = []
    for _ in range(6):
        slack, metrics = step(slack, one)
        means.append(float(metrics["mask_mean"]))       # train-mode mean(m), before each update
    assert means[-1] < means[0] - 0.005 and all(b <= a for a, b in zip(means, means[1:]))
    assert 0 <= float(metrics["revealed_fraction"]) <= method.reveal.k / 256


def test_phi_learns_only_from_random_masks(setup):
    """Φ's update in the minimal game does not depend on the masker (no decoder for a code)."""
    method, state = setup
    step = jax.jit(functools.partial(minimal.minimal_utility_step, method))
    other = create_train_state(method, jax.random.key(9), IMAGE_SHAPE).masker
    a, _ = step(state, batch(jax.random.key(4)))
    b, _ = step(state.replace(masker=other), batch(jax.random.key(4)))
    assert same(a.phi.params, b.phi.params) and not same(a.masker.params, b.masker.params)


def test_round_plays_the_table_row_reveals_at_most_k_and_updates_the_multipliers(setup):
    method, state = setup
    per_round = method.game.predictor_steps + method.game.obfuscator_steps
    batches = jax.tree.map(lambda *x: jnp.stack(x), *[batch(jax.random.key(i)) for i in range(per_round)])
    new, metrics = jax.jit(functools.partial(table.play_round, method))(state, batches)
    assert int(new.step) == 1
    for name in minimal.constraints(method):
        assert f"multiplier_{name}" in metrics and f"violation_{name}" in metrics
        np.testing.assert_allclose(float(jnp.log(metrics[f"multiplier_{name}"])),
                                   float(new.log_multipliers[name]), rtol=1e-5, atol=1e-6)
    assert not same(new.log_multipliers, state.log_multipliers)
    assert 0 <= float(metrics["revealed_fraction"]) <= method.reveal.k / 256 + 1e-6
    # The games table is the only place a game is named: every row plays through the same function.
    assert table.train_round is table.play_round
    assert set(table.GAMES) >= {"paper", "complement", "realx", "shuffled", "minimal"}
