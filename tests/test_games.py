"""The games beyond the paper's (jaxmask.games): who learns what, from which masks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dataclasses

from jaxmask import build_method, create_train_state, topk
from jaxmask.games import adversaries, paper, random_masks, table

IMAGE_SHAPE = (16, 16, 3)


def game_config(game="realx", **overrides):
    """The smoke config at 16 px with two tiny members per ensemble and rounds of 2 + 1 steps
    (compiling dominates these tests)."""
    from conftest import load_config
    config = load_config("synth_hair", "smoke")
    config.image_size = IMAGE_SHAPE[0]
    config.game, config.mask_channel = game, True
    config.reveal = "exact"          # the exact-k games: every count below is k
    config.predictor_steps = 2
    config.masker_widths, config.phi_widths, config.phi_hidden = (4, 8), (4, 4, 4, 4), 8
    config.adversary.complement_widths = ((4, 4, 4, 4), (2, 2, 2, 2))
    config.adversary.pattern_widths = ((4, 4, 4, 4),)
    config.adversary.hidden = 8
    config.adversary.reinit_every = 2
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def batch(key, batch_size=8):
    return {"image": jax.random.uniform(key, (batch_size, *IMAGE_SHAPE)),
            "label": jax.random.randint(jax.random.fold_in(key, 1), (batch_size,), 0, 4),
            "identity": jax.random.randint(jax.random.fold_in(key, 2), (batch_size,), 0, 20)}


def same(a, b):
    return all(bool(jnp.all(x == y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def setup():
    method = build_method(game_config())
    return method, create_train_state(method, jax.random.key(0), IMAGE_SHAPE)


@pytest.fixture(scope="module")
def compiled(setup):
    """Each role jitted once for the module's method (a fresh jit object would recompile)."""
    method, _ = setup
    bind = lambda fn: jax.jit(functools.partial(fn, method))
    return {"adversary": bind(adversaries.adversary_step), "privacy": bind(adversaries.privacy_step),
            "random_mask_predictor": bind(random_masks.random_mask_predictor_step),
            "predictor": bind(paper.predictor_step), "eval": bind(table.eval_step)}


def test_players_and_mask_channel(setup):
    method, state = setup
    assert len(state.complement) == len(method.players.complement) == 2 and len(state.pattern) == 1
    # Φ and Φ_c see the part plus its 0/1 mask (C + 1 channels); Ψ sees the mask alone.
    assert state.phi.params["ConvBNReLU_0"]["Conv_0"]["kernel"].shape[2] == 4
    assert state.complement[0].params["ConvBNReLU_0"]["Conv_0"]["kernel"].shape[2] == 4
    assert state.pattern[0].params["ConvBNReLU_0"]["Conv_0"]["kernel"].shape[2] == 1
    paper = build_method(game_config("paper", mask_channel=False))
    assert paper.players.complement == () and paper.players.pattern == ()
    non_adversarial = build_method(game_config("realx", obfuscator_steps=0))
    assert non_adversarial.players.complement == () and non_adversarial.adversary.steps == 0
    with pytest.raises(ValueError, match="config.game='nope'"):
        build_method(game_config("nope"))


def test_random_masks_are_exact_k_and_batch_independent():
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(3), i))(jnp.arange(64))
    masks = random_masks.random_masks(keys, (64, 16, 16, 1), 40)
    np.testing.assert_array_equal(np.asarray(masks).reshape(64, -1).sum(1), 40)
    # An image's mask depends on its own key only, not on the rest of the batch.
    np.testing.assert_array_equal(random_masks.random_masks(keys[5:7], (2, 16, 16, 1), 40), masks[5:7])
    assert len({np.asarray(m).tobytes() for m in masks}) >= 48   # smooth 2×2 blobs can coincide


def test_adversary_step_trains_only_the_adversaries(setup, compiled):
    method, state = setup
    new, metrics = compiled["adversary"](state, batch(jax.random.key(1)))
    assert same(new.masker, state.masker) and same(new.phi, state.phi)
    assert not same(new.complement[0].params, state.complement[0].params)
    assert not same(new.pattern[0].params, state.pattern[0].params)
    assert 0 <= float(metrics["complement_train_accuracy"]) <= 1


def test_adversary_updates_exit_early_once_every_member_is_strong(setup, compiled):
    """exit_accuracy: the round's remaining updates are skipped (not computed) once the weakest member
    reached it; unset, every update runs."""
    method, state = setup
    batches = [batch(jax.random.key(10 + j)) for j in range(2)]
    one_step, _ = compiled["adversary"](state, batches[0])
    for exit_accuracy, expected in ((None, 2), (0.0, 1)):
        exiting = dataclasses.replace(method, adversary=dataclasses.replace(
            method.adversary, steps=2, exit_accuracy=exit_accuracy))
        new, per_step = jax.jit(lambda s: adversaries.adversary_updates(exiting, s, lambda j: batches[j]))(state)
        assert float(per_step[-1]["adversary_updates"]) == expected
        assert same(new.complement, one_step.complement) == (expected == 1)
        assert 0 <= float(per_step[0]["adversary_weakest_accuracy"]) <= float(per_step[0]["complement_train_accuracy"])
    config = game_config()
    config.adversary.exit_accuracy = 0.9
    assert build_method(config).adversary.exit_accuracy == 0.9


def test_privacy_step_updates_only_the_masker(setup, compiled):
    method, state = setup
    new, metrics = compiled["privacy"](state, batch(jax.random.key(2)))
    assert not same(new.masker.params, state.masker.params)
    assert same(new.phi, state.phi) and same(new.complement, state.complement) and same(new.pattern, state.pattern)
    # Each term is a CE(uniform, ·) ≥ log 4; the pattern term has weight pattern_weight.
    assert float(metrics["complement_loss"]) >= np.log(4) - 1e-5
    np.testing.assert_allclose(metrics["obfuscator_loss"],
                               metrics["complement_loss"] + method.adversary.pattern_weight * metrics["pattern_loss"]
                               + metrics["identity_loss"], rtol=1e-5)     # the identity term at weight 1


def test_random_mask_predictor_never_learns_from_the_maskers_masks(setup, compiled):
    """Φ's update is the same whatever the masker is: it only sees random masks."""
    method, state = setup
    one = batch(jax.random.key(4))
    other_masker = create_train_state(method, jax.random.key(9), IMAGE_SHAPE).masker
    a, _ = compiled["random_mask_predictor"](state, one)
    b, _ = compiled["random_mask_predictor"](state.replace(masker=other_masker), one)
    assert same(a.phi.params, b.phi.params)
    assert not same(a.masker.params, state.masker.params)
    # The paper's predictor step, by contrast, trains Φ on the masker's own masks.
    paper_a, _ = compiled["predictor"](state, one)
    paper_b, _ = compiled["predictor"](state.replace(masker=other_masker), one)
    assert not same(paper_a.phi.params, paper_b.phi.params)


def test_shuffled_predictor_trains_phi_on_permuted_masks(setup):
    """The shuffled game's utility step updates both Φ (on image i under mask π(i)) and the masker."""
    method, state = setup
    new, metrics = jax.jit(functools.partial(random_masks.shuffled_mask_predictor_step, method))(
        state, batch(jax.random.key(6)))
    assert not same(new.phi.params, state.phi.params) and not same(new.masker.params, state.masker.params)
    assert np.isfinite(float(metrics["phi_loss"]))


def test_reinitialisation_refreshes_one_member_in_turn(setup, compiled):
    method, state = setup
    trained, _ = compiled["adversary"](state, batch(jax.random.key(5)))
    refresh = jax.jit(functools.partial(adversaries.reinitialise_adversaries, method, image_shape=IMAGE_SHAPE))
    assert same(refresh(trained.replace(step=jnp.int32(3))), trained.replace(step=jnp.int32(3)))  # not due
    due = refresh(trained.replace(step=jnp.int32(2)))    # turn 1: member 1 of each ensemble
    assert same(due.complement[0], trained.complement[0])
    assert not same(due.complement[1].params, trained.complement[1].params)
    assert all(float(jnp.sum(jnp.abs(m))) == 0 for m in jax.tree.leaves(due.complement[1].opt_state)
               if jnp.issubdtype(m.dtype, jnp.floating))


def test_round_runs_every_role_and_reveals_exactly_k(setup, compiled):
    method, state = setup
    steps_per_round = method.game.predictor_steps + method.game.obfuscator_steps
    batches = jax.tree.map(lambda *x: jnp.stack(x), *[batch(jax.random.key(i)) for i in range(steps_per_round)])
    round_fn = jax.jit(functools.partial(table.play_round, method))
    state, metrics = round_fn(state, batches)
    assert int(state.step) == 1
    for key in ("predictor_loss", "obfuscator_loss", "complement_accuracy", "pattern_accuracy",
                "complement_train_accuracy"):
        assert np.isfinite(float(metrics[key])), key
    sums = compiled["eval"](state, batch(jax.random.key(7)))
    assert float(sums["revealed"]) == 8 * method.reveal.k
    assert 0 <= float(sums["correct_complement"]) <= 8 and 0 <= float(sums["correct_pattern"]) <= 8


def test_capped_reveal_is_at_most_k_and_straight_through():
    m = jnp.array([[0.9, 0.2, 0.8, 0.6, 0.1, 0.95]]).reshape(1, 6, 1, 1)
    keep, rest = topk.capped_split(m, 3, 0.7)
    np.testing.assert_array_equal(np.asarray(keep).ravel(), [1, 0, 1, 0, 0, 1])
    keep, _ = topk.capped_split(m, 2, 0.5)      # the cap binds: top 2 of the 4 above 0.5
    np.testing.assert_array_equal(np.asarray(keep).ravel(), [1, 0, 0, 0, 0, 1])
    g = jax.grad(lambda m: jnp.sum(topk.capped_split(m, 3, 0.7)[0] * 2.0 + topk.capped_split(m, 3, 0.7)[1]))(m)
    np.testing.assert_allclose(np.asarray(g).ravel(), 1.0)     # ḡ_keep − ḡ_rest = 2 − 1



def test_capped_release_reveals_at_most_k(setup):
    from jaxmask import mask_images
    method, state = setup
    images = batch(jax.random.key(8))["image"]
    m = method.players.masker.apply(state.masker.variables, images, train=False)
    threshold = float(jnp.quantile(m, 0.8))     # about 51 of 256 pixels above it, k = 90
    capped = dataclasses.replace(method, reveal=dataclasses.replace(method.reveal, mode="cap", cap_threshold=threshold))
    released, mask = mask_images(capped, state, images)
    counts = np.asarray(mask).reshape(8, -1).sum(1)
    assert (counts <= method.reveal.k).all() and counts.sum() < 8 * method.reveal.k
    np.testing.assert_array_equal(np.asarray(mask) > 0, (np.asarray(m) > threshold) & (np.asarray(
        topk.topk_indicator(m, method.reveal.k)) > 0))
