"""jit-sharded, pmap and single-device runs of the same rounds agree.

The runs compute in float64: the hard top-K is discontinuous, so float32
reduction-order noise (~1e-7) occasionally swaps a pixel at the k-th place and
the runs drift apart by ~1e-3 after a few Adam steps. In float64 that noise is
gone, and any real difference (pmean of the wrong thing, per-device BatchNorm
statistics) still shows at O(1). SGD rather than Adam: Adam divides each
gradient by its own magnitude, so a dead unit's zero gradient (1e-18 here,
1e-10 there after float32 averaging) becomes a full-size step either way.
"""

import jax
import numpy as np
import pytest

from jaxmask import build, parallel

IMAGE_SHAPE = (16, 16, 3)
ROUNDS = 3


def config_for(mode, num_devices, game="paper"):
    from conftest import load_config
    config = load_config("synth_hair", "smoke")
    # The minimal game adds adversaries, the random-mask predictor and the judges' jitter (per-example
    # keys folded from the global index), learned multipliers and the mask channel.
    config.game = game
    config.mask_channel = game != "paper"
    config.reveal = "cap" if game == "minimal" else "exact"
    config.predictor_steps = 1   # one utility + one privacy step a round: the unrolled round compiles in half the time
    config.image_size = IMAGE_SHAPE[0]
    config.parallel, config.num_devices = mode, num_devices
    config.dtype = "float64"
    config.optimizer = "sgd"
    # The minimal game's identity multiplier starts at e^2: with SGD at 0.05 the masker's weights grew to
    # ~1e6 in three rounds, and a trajectory that diverges turns float32 parameter rounding (the state is
    # stored in float32) into differences above the tolerance (CI saw 1.8e-5). At 0.005 the weights stay
    # O(1) and the runs agree to ~1e-6 relative.
    config.masker_learning_rate = config.phi_learning_rate = 0.05 if game == "paper" else 0.005
    return config


def global_batches(round_index, steps_per_round, batch_size=16):
    rng = np.random.default_rng(round_index)
    return {"image": rng.uniform(size=(steps_per_round, batch_size, *IMAGE_SHAPE)).astype(np.float32),
            "label": rng.integers(0, 4, size=(steps_per_round, batch_size)).astype(np.int32),
            "identity": rng.integers(0, 20, size=(steps_per_round, batch_size)).astype(np.int32)}


def run(mode, num_devices, game="paper"):
    with jax.enable_x64(True):
        return _run(mode, num_devices, game)


def _run(mode, num_devices, game):
    steps = parallel.wrap(build.from_config(config_for(mode, num_devices, game)))
    state = steps.init_state(jax.random.key(0))
    per_round = steps.method.game.predictor_steps + steps.method.game.obfuscator_steps
    for r in range(ROUNDS):
        state, metrics = steps.play_round(state, global_batches(r, per_round))
    evaluation = steps.eval_step(state, jax.tree.map(lambda x: x[0], global_batches(99, per_round)))
    return steps.gather_state(state), jax.device_get(metrics), jax.device_get(evaluation)


@pytest.fixture(scope="module")
def single():
    return run("jit", 1)


def assert_runs_match(got, want):
    state, metrics, evaluation = got
    ref_state, ref_metrics, ref_evaluation = want
    assert int(state.step) == ROUNDS
    for ref, got in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    for key in ref_metrics:
        np.testing.assert_allclose(metrics[key], ref_metrics[key], rtol=1e-5, atol=1e-6)
    for key in ref_evaluation:
        np.testing.assert_allclose(evaluation[key], ref_evaluation[key], rtol=1e-5)


def test_a_round_returns_the_state_in_the_dtypes_it_was_given(single):
    """Under dtype=float64, BatchNorm's running statistics come out of a round in float64; the round
    stores them back in the dtypes it received (float32, as the checkpoint's template), so every round
    after the first is the same program (one compile, not two) and checkpoints match their template."""
    state, _, _ = single
    with jax.enable_x64(True):
        template = build.from_config(config_for("jit", 1)).abstract_state
    dtypes = lambda tree: {jax.tree_util.keystr(path): str(leaf.dtype)
                           for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
    assert dtypes(state) == dtypes(template)


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_eight_devices_match_one(single, mode):
    assert jax.device_count() == 8
    assert_runs_match(run(mode, 8), single)


@pytest.mark.slow
def test_default_game_under_pmap_matches_one_device():
    """The minimal game: adversaries, random masks at many rates and judge jitter drawn per example
    from its global index, multipliers updated from device means: pmap on 8 devices = one device.
    Two float64 compiles of the round (~1 min on 2 cores); the fast sibling is the next test."""
    assert_runs_match(run("pmap", 8, "minimal"), run("jit", 1, "minimal"))


def test_default_game_evaluation_under_pmap_matches_one_device():
    """The default game's evaluation (masker, capped split, Φ and both adversaries, mask channel) summed
    over 8 pmap devices equals one device's, without compiling a round (tests/test_games.py checks
    that each image's random mask depends on its own key alone, which keeps a sharded round equal)."""
    evaluations = []
    with jax.enable_x64(True):
        for mode, num_devices in (("pmap", 8), ("jit", 1)):
            steps = parallel.wrap(build.from_config(config_for(mode, num_devices, "minimal")))
            state = steps.init_state(jax.random.key(0))
            batch = jax.tree.map(lambda x: x[0], global_batches(99, 2))
            evaluations.append(jax.device_get(steps.eval_step(state, batch)))
    pmapped, single = evaluations
    assert {"correct_complement", "correct_pattern"} <= set(single)
    for key in single:
        np.testing.assert_allclose(pmapped[key], single[key], rtol=1e-5)


def test_batch_not_divisible_by_devices_is_refused():
    config = config_for("jit", 8)
    config.batch_size = 12
    with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices"):
        parallel.wrap(build.from_config(config))
