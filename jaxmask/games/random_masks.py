"""The predictor roles where Φ learns from masks the masker does not choose, and those masks.

In the paper's game (``games.paper.predictor_step``) Φ co-trains on the masker's own
reveals, so it learns to decode whatever the masker writes into *where* it
reveals (docs/results.md). Here Φ learns from other masks, and the masker
learns to reveal what that Φ (batch statistics, no update from the masker's
loss) reads:

* ``random_mask_predictor_step`` (REAL-X, Jethani et al. 2021): random exact-k
  masks in masker-like shapes (blobs, blocks, pixels);
* ``multi_rate_masks``: random masks whose revealed fraction is drawn per
  image over [min_rate, 1] (REAL-X samples its selection rate; one rate at K
  teaches Φ nothing about a task region of 1%), for a capped reveal whose
  size varies per image (the minimal game's predictor, ``games.minimal``);
* ``shuffled_mask_predictor_step``: the masker's own masks shuffled across the
  batch (mask i on image j).

Each takes the masker's objective as data: ``masker_objective(method, state,
cross_entropy, m) -> loss`` (the cross-entropy of Φ on the masker's reveal, and
the soft mask m), so the minimal-reveal game (``games.minimal``) can weigh
it against the revealed area without another copy of the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxmask import steps
from jaxmask.state import Method, TrainState
from jaxmask.topk import topk_indicator

Batch = steps.Batch
Metrics = steps.Metrics


def _mask_score(key, height: int, width: int):
    """(H, W, 1) random scores of one image at one of four scales (a faint pixel noise breaks ties)."""
    keys = jax.random.split(key, 6)
    up = lambda noise, how: jax.image.resize(noise, (height, width, 1), how)
    layers = jnp.stack([up(jax.random.uniform(keys[0], (2, 2, 1)), "bilinear"),
                        up(jax.random.uniform(keys[1], (4, 4, 1)), "bilinear"),
                        up(jax.random.uniform(keys[2], (8, 8, 1)), "nearest"),
                        jax.random.uniform(keys[3], (height, width, 1))])
    score = layers[jax.random.randint(keys[4], (), 0, len(layers))]
    return score + 1e-3 * jax.random.uniform(keys[5], score.shape)


def random_masks(keys, shape, k: int):
    """(B, H, W, 1) random 0/1 masks of exactly k pixels, in masker-like shapes; one key per image.

    Each image draws one scale: smooth blobs (noise on a 2×2 or 4×4 grid,
    bilinearly upsampled), blocks (an 8×8 grid, nearest) or single pixels, and
    reveals its top-k cells. Per-image keys make an image's mask independent
    of the batch it is in and of how the batch is split over devices (with the
    default threefry PRNG; the rbg and unsafe_rbg implementations are not
    vmap-invariant).
    """
    _, height, width, _ = shape
    return topk_indicator(jax.vmap(lambda key: _mask_score(key, height, width))(keys), k)


def random_masks_at_rates(keys, shape, min_rate: float, max_rate: float = 1.0):
    """(B, H, W, 1) random 0/1 masks in the shapes of ``random_masks``, each revealing its own fraction.

    Image i reveals round(r_i·H·W) ≥ 1 pixels, r_i log-uniform in [min_rate,
    max_rate]: small rates are as frequent as large ones, so Φ learns a task
    whose region is 1% of the image as well as one of 50%.
    """
    _, height, width, _ = shape
    pixels = height * width

    def one(key):
        score_key, rate_key = jax.random.split(key)
        score = _mask_score(score_key, height, width).reshape(-1)
        log_rate = jax.random.uniform(rate_key, (), minval=jnp.log(min_rate), maxval=jnp.log(max_rate))
        count = jnp.clip(jnp.round(jnp.exp(log_rate) * pixels), 1, pixels)
        rank = jnp.argsort(jnp.argsort(-score))            # 0 for the highest score
        return (rank < count).astype(jnp.float32).reshape(height, width, 1)

    return jax.vmap(one)(keys)


def cross_entropy_objective(method: Method, state: TrainState, cross_entropy, m):
    """The masker's utility objective in the exact-k games: Φ's cross-entropy on its reveal."""
    del method, state, m
    return cross_entropy


def predictor_masks_step(method: Method, state: TrainState, batch: Batch, phi_masks,
                         masker_objective=cross_entropy_objective) -> tuple[TrainState, Metrics]:
    """Φ learns y from ``phi_masks(masker keep, rng)`` of the images; the masker minimises
    ``masker_objective`` of Φ's cross-entropy on the masker's own reveal (Φ with batch
    statistics, no update from this loss)."""
    images, labels = batch["image"], batch["label"]

    def masker_loss(masker_params):
        m, keep, _, masker_stats = steps.masker_split(method, masker_params, state.masker.batch_stats,
                                                      images, True)
        logits, _ = steps.apply_train(method.players.phi, state.phi, state.phi.params,
                                      steps.classifier_input(method, keep, images))
        cross_entropy = steps.cross_entropy(logits, labels)
        loss = masker_objective(method, state, cross_entropy, m)
        return loss, (masker_stats, keep, steps.accuracy(logits, labels), m.mean(), cross_entropy)

    (masker_loss_value, (masker_stats, keep, masker_accuracy, mask_mean, cross_entropy)), masker_grads = (
        jax.value_and_grad(masker_loss, has_aux=True)(state.masker.params))
    masks = phi_masks(lax.stop_gradient(keep), steps.step_key(method, state, 17))

    def phi_loss(phi_params):
        logits, phi_stats = steps.apply_train(method.players.phi, state.phi, phi_params,
                                              steps.classifier_input(method, masks, images))
        loss = steps.cross_entropy(logits, labels)
        return loss, (phi_stats, steps.accuracy(logits, labels))

    (phi_loss_value, (phi_stats, phi_accuracy)), phi_grads = jax.value_and_grad(phi_loss, has_aux=True)(
        state.phi.params)
    new_state = steps.update_masker_and_phi(method, state, masker=(masker_grads, masker_stats),
                                            phi=(phi_grads, phi_stats))
    metrics = {"predictor_loss": masker_loss_value, "predictor_accuracy": masker_accuracy,
               "predictor_cross_entropy": cross_entropy, "phi_loss": phi_loss_value,
               "phi_accuracy": phi_accuracy, "mask_mean": mask_mean,
               "revealed_fraction": jnp.mean(keep > 0)}
    return new_state, steps.device_mean(metrics, method.axis_name)


def random_mask_predictor_step(method: Method, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """REAL-X utility: Φ learns from random exact-k masks only; the masker learns against it."""
    def masks(keep, rng):
        return random_masks(steps.example_keys(method, rng, keep.shape[0]), keep.shape, method.reveal.k)
    return predictor_masks_step(method, state, batch, masks)


def multi_rate_masks(method: Method, min_rate: float):
    """``phi_masks`` of random masks at rates over [min_rate, 1] (see ``random_masks_at_rates``)."""
    def masks(keep, rng):
        return random_masks_at_rates(steps.example_keys(method, rng, keep.shape[0]), keep.shape, min_rate)
    return masks


def shuffled_mask_predictor_step(method: Method, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """Φ learns from the masker's masks shuffled across the batch (image i, mask π(i)).

    Under pmap the shuffle stays within each device's share of the batch.
    """
    return predictor_masks_step(
        method, state, batch, lambda keep, rng: keep[jax.random.permutation(rng, keep.shape[0])])
