"""Issue 23's parts: a reveal that cannot draw a code (the opening), identity adversaries on the
release, and model selection that sees faces."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from test_export import random_state, small_config
from test_games import IMAGE_SHAPE, batch, game_config, same

import jaxmask
from jaxmask import build, export, masking, selection, topk
from jaxmask.games import adversaries, minimal, table


def _reveal(rows):
    return jnp.asarray(np.array(rows, np.float32))[None, :, :, None]


def test_the_opening_removes_every_shape_thinner_than_its_square_and_keeps_the_rest():
    """Isolated pixels, a lattice, a one-pixel line, a two-pixel strip at the edge: gone. A 3×3 block and
    a region with a one-pixel rim keep their shape (a rim attached to a region is not a code the opening
    can see: identity adversaries price it). Always a subset: a cap still holds after it."""
    h = np.zeros((12, 12), np.float32)
    h[1::2, 1:6:2] = 1                 # a lattice of single pixels
    h[8, :] = 1                        # a one-pixel line
    h[:, 10:] = 1                      # a two-pixel strip along the right edge
    h[2:5, 6:9] = 1                    # a 3×3 block
    opened = np.asarray(topk.opening(_reveal(h), 3))[0, :, :, 0]
    want = np.zeros_like(h)
    want[2:5, 6:9] = 1
    np.testing.assert_array_equal(opened, want)
    region = np.zeros((10, 10), np.float32)
    region[2:8, 2:8] = 1
    region[1, 2:8] = 1                 # a one-pixel rim on the region
    np.testing.assert_array_equal(np.asarray(topk.opening(_reveal(region), 3))[0, :, :, 0], region)
    m = jax.random.uniform(jax.random.key(0), (4, 16, 16, 1))
    opened = topk.capped_indicator(m, 60, 0.3, opening_size=3)
    # The capped reveal ranked on the opened scores: at most k, only pixels scored above the threshold,
    # and nothing the opening would remove (every pixel lies in a revealed square).
    assert float(opened.reshape(4, -1).sum(1).max()) <= 60 and 0 < float(opened.sum())
    assert bool(jnp.all(opened <= (m > 0.3))) and bool(jnp.all(topk.opening(opened, 3) == opened))
    # Thresholding commutes with the grayscale opening: {open_scores(m) > t} = opening({m > t}).
    np.testing.assert_array_equal(np.asarray(topk.open_scores(m, 3) > 0.3),
                                  np.asarray(topk.opening((m > 0.3).astype(jnp.float32), 3)) > 0)


def test_the_opened_reveals_gradient_reaches_the_lowest_score_of_each_square():
    """Straight-through on the opened scores, then through the opening: the gradient of a square lands
    on the pixel that decides it (its lowest score), and nowhere else."""
    m = jnp.full((1, 5, 5, 1), 0.9).at[0, 2, 2, 0].set(0.6)
    g = jax.grad(lambda m: jnp.sum(topk.capped_split(m, 25, 0.5, 3)[0]))(m)
    # In a 5×5 image every square that fits contains (2, 2): every revealed score is its 0.6, so all 25
    # pixels' gradients land there, and none on the pixels that decide nothing.
    want = np.zeros((1, 5, 5, 1), np.float32)
    want[0, 2, 2, 0] = 25.0
    np.testing.assert_allclose(np.asarray(g), want)
    with pytest.raises(ValueError, match="opening_size=2 must be an odd integer"):
        topk.capped_split(m, 20, 0.5, 2)


def test_an_opening_has_an_odd_side_and_applies_to_a_capped_reveal_only(smoke_config):
    from jaxmask import config_checks
    config = smoke_config.copy_and_resolve_references()
    config.opening = 2
    with pytest.raises(config_checks.ConfigError, match="config.opening=2 needs an odd side"):
        build.check_training_config(config)
    config.opening, config.game, config.reveal = 3, "realx", "exact"    # exact-k keeps its count: no opening
    assert build.build_method(config).reveal.opening is None


def test_training_the_bundle_and_jaxmask_mask_release_the_same_opened_reveal(tmp_path):
    """The opening is part of the reveal rule everywhere: the training's mask_images, the exported
    bundle, and `jaxmask mask` at the model's own size."""
    config = small_config()
    # A dense capped reveal (a random masker's scores are noise): squares fit in most of it, not all.
    config.game, config.reveal, config.opening, config.topk_fraction = "minimal", "cap", 3, 0.9
    config.cap_threshold = 0.05
    method = build.build_method(config)
    state = random_state(config)
    images = np.random.default_rng(2).uniform(size=(3, config.image_size, config.image_size, 3)).astype(np.float32)
    _, live = jax.jit(functools.partial(jaxmask.mask_images, method))(state.masker.variables, images)
    path = export.export_masker(state, config, tmp_path / "b", step=7)
    bundle = jaxmask.load_masker(path)
    assert bundle.opening == 3
    np.testing.assert_array_equal(np.asarray(bundle.mask(images)[1]), np.asarray(live))
    assert 0 < float(np.asarray(live).sum()) < float(np.asarray(topk.capped_indicator(
        bundle.scores(images), bundle.k, 0.05)).sum()) and np.array_equal(
        np.asarray(topk.opening(jnp.asarray(live), 3)), np.asarray(live))      # opened already: a fixed point
    (tmp_path / "in").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(np.rint(image * 255).astype(np.uint8)).save(tmp_path / "in" / f"{i}.png")
    masking.mask_folder(bundle, str(tmp_path / "in"), str(tmp_path / "out"), progress=False)
    for i in range(3):
        alpha = np.asarray(Image.open(tmp_path / "out" / f"{i}.png"))[..., 3] > 0
        quantised = np.rint(images[i] * 255).astype(np.uint8).astype(np.float32) / 255
        _, want = bundle.mask(quantised[None])
        np.testing.assert_array_equal(alpha, np.asarray(want)[0, :, :, 0] > 0)


def identity_config(**overrides):
    config = game_config("minimal", reveal="cap", **overrides)
    config.adversary.identity_widths = ((4, 4, 4, 4),)
    return config


@pytest.fixture(scope="module")
def identity_setup():
    method = build.build_method(identity_config())
    return method, build.create_train_state(method, jax.random.key(0), IMAGE_SHAPE)


def with_identity(b, identities=20):
    return {**b, "identity": jax.random.randint(jax.random.key(5), b["label"].shape, 0, identities)}


def test_identity_adversaries_learn_the_person_from_the_release_and_the_masker_hides_it(identity_setup):
    method, state = identity_setup
    assert len(method.players.identity) == 1 and method.players.identity[0].num_classes == 20
    assert set(state.log_multipliers) == {*minimal.CONSTRAINTS, "identity"}
    b = with_identity(batch(jax.random.key(1)))
    trained, metrics = jax.jit(functools.partial(adversaries.adversary_step, method))(state, b)
    assert not same(trained.identity[0].params, state.identity[0].params) and same(trained.masker, state.masker)
    assert "identity_train_accuracy" in metrics
    hidden, metrics = jax.jit(functools.partial(minimal.minimal_privacy_step, method))(trained, b)
    assert not same(hidden.masker.params, trained.masker.params) and same(hidden.identity, trained.identity)
    assert float(metrics["identity_loss"]) >= np.log(20) - 1e-4          # CE(uniform over identities) ≥ log 20
    violations = minimal.violations(method, {"predictor_accuracy": 1.0, "identity_accuracy": jnp.float32(0.2)})
    np.testing.assert_allclose(float(violations["identity"]), 0.2 - (1 / 20 + method.minimal.identity_margin))
    # The identity constraint outranks the label ones: it climbs past their bound, to its own.
    far, out = minimal.update_multipliers(
        dataclasses.replace(method, minimal=dataclasses.replace(method.minimal, dual_learning_rate=1e3)), state,
        {"predictor_accuracy": jnp.float32(1.0), "complement_accuracy": jnp.float32(1.0),
         "identity_accuracy": jnp.float32(1.0)})
    assert float(far.log_multipliers["hidden"]) == method.minimal.max_log_multiplier
    assert float(far.log_multipliers["identity"]) == method.minimal.identity_max_log_multiplier > \
        method.minimal.max_log_multiplier
    sums = jax.jit(functools.partial(table.eval_step, method))(hidden, b)
    assert 0 <= float(sums["correct_identity"]) <= 8
    # A game without them keeps no identity multiplier, and no identity player.
    plain_config = game_config("minimal", reveal="cap")
    plain_config.adversary.identity_widths = ()
    plain = build.build_method(plain_config)
    assert plain.players.identity == () and "identity" not in minimal.constraints(plain)


def test_identity_adversaries_need_identity_labels(smoke_config):
    from jaxmask import config_checks
    config = smoke_config.copy_and_resolve_references()
    config.adversary.identity_widths = ((8, 8),)
    config.dataset = "image_folder"
    with pytest.raises(config_checks.ConfigError, match="identity adversaries need identity labels"):
        build.check_training_config(config)


def test_training_batches_carry_the_identity(smoke_config):
    from jaxmask.data import pipeline
    inputs = pipeline.training_inputs(smoke_config)
    first = next(inputs.batches)
    assert set(first) == {"image", "label", "identity"} and first["identity"].shape == first["label"].shape
    assert first["identity"].min() >= 0 and first["identity"].max() < smoke_config.data.num_identities
    evaluation = next(pipeline.eval_batches(inputs.validation, global_batch=16, cache=inputs.validation_cache))
    assert "identity" in evaluation


def test_selection_subtracts_what_the_release_says_of_the_person():
    probes = {"utility": 1.0, "hidden": 0.25, "mask": 0.25}
    without = selection.score(probes, 0.25, 4)
    assert selection.score({**probes, "identity": 0.05}, 0.25, 4, num_identities=20) == pytest.approx(without)
    faced = selection.score({**probes, "identity": 0.525}, 0.25, 4, num_identities=20)
    assert faced == pytest.approx(without - 0.5)          # advantage over 1/20 chance: (0.525 − 0.05) / 0.95
    ranking = selection.Ranking(4, None, num_identities=20)
    assert ranking.update({**probes, "identity": 0.05}, 0.3)["selected"] == 1.0
    assert ranking.update({**probes, "identity": 0.6}, 0.2)["selected"] == 0.0   # less area, but a face


def test_turning_the_identity_adversaries_off_on_data_with_identities_is_said(smoke_config):
    """identity_widths=() is the off-switch for data without identity labels; on SynthFaces a run accepts it
    (the user named it) but says that nothing judges identity, and says nothing when one does."""
    assert build.identity_judging_off(smoke_config, build.build_method(smoke_config)) is None
    off = smoke_config.copy_and_resolve_references()
    off.adversary.identity_widths = ()
    line = build.identity_judging_off(off, build.build_method(off))
    assert line is not None and "identity_widths=()" in line
    assert build.from_config(off).warnings == (line,)       # what `train` prints as a warning
    assert build.from_config(smoke_config).warnings == ()
    paper = smoke_config.copy_and_resolve_references()
    paper.game, paper.reveal, paper.mask_channel = "paper", "exact", False
    paper.adversary.identity_widths = ()
    assert build.identity_judging_off(paper, build.build_method(paper)) is None   # no adversaries at all
