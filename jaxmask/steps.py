"""The kit every game's pure steps are made of (DESIGN.md §1). No I/O, no globals, no game.

Every step takes the static ``Method`` first (bind it with
``functools.partial`` before ``jit``/``pmap``), then a ``TrainState`` and a
batch ``{"image": (B, H, W, C) float32 in [0, 1], "label": (B,) int32}``.
Under ``pmap`` (``method.axis_name`` set) gradients, BatchNorm statistics and
metrics are averaged over the device axis (``device_mean``), so every device
holds the same state as a single-device run on the global batch.

Here, one copy each: the masker's split of an image into its revealed and
hidden parts, what a classifier sees of a part, a player applied with batch
statistics, an update, the losses every game shares, the per-example keys
and the judges' jitter, and the release (``mask_images``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxmask.state import Method, PlayerState, TrainState
from jaxmask.topk import capped_split, release, topk_split

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


# ---- Device axis --------------------------------------------------------------------------

def device_mean(tree, axis_name):
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def device_sum(tree, axis_name):
    return tree if axis_name is None else lax.psum(tree, axis_name)


# ---- Losses and metrics -------------------------------------------------------------------

def accuracy(logits, labels):
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def cross_entropy(logits, labels):
    """CE(y, softmax(logits)), the batch mean."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def uniform_cross_entropy(logits):
    """CE(uniform, softmax(logits)) per example: minimal (log C) when the output is uniform."""
    return -jnp.mean(jax.nn.log_softmax(logits, axis=-1), axis=-1)


def mean_metrics(per_step: list[Metrics]) -> Metrics:
    """Each metric averaged over the steps of a round that report it."""
    return {name: jnp.mean(jnp.stack([m[name] for m in per_step if name in m]))
            for name in dict.fromkeys(k for m in per_step for k in m)}


# ---- Players ------------------------------------------------------------------------------

def apply_train(module, player: PlayerState, params, inputs):
    """Logits of a player with batch statistics (train mode), and its new batch stats.

    The one way a game applies a classifier while learning: its own updates
    keep the new statistics, a judge of the masker's loss discards them.
    """
    logits, updates = module.apply({"params": params, "batch_stats": player.batch_stats}, inputs,
                                   train=True, mutable=["batch_stats"])
    return logits, updates["batch_stats"]


def init_player(module, tx, rng, input_shape) -> PlayerState:
    """A fresh player for inputs of ``input_shape`` = (H, W, C)."""
    variables = module.init(rng, jnp.zeros((1, *input_shape), jnp.float32), train=False)
    params = variables["params"]
    return PlayerState(params=params, batch_stats=variables["batch_stats"], opt_state=tx.init(params))


def update_player(player: PlayerState, tx: optax.GradientTransformation, grads, batch_stats) -> PlayerState:
    updates, opt_state = tx.update(grads, player.opt_state, player.params)
    return PlayerState(params=optax.apply_updates(player.params, updates),
                       batch_stats=batch_stats, opt_state=opt_state)


def update_masker_and_phi(method: Method, state: TrainState, masker=None, phi=None) -> TrainState:
    """``state`` with the masker and/or Φ updated from their (gradients, new batch stats); the
    gradients are averaged over the device axis first (None: that player keeps its state)."""
    grads = device_mean({name: update[0] for name, update in (("masker", masker), ("phi", phi))
                         if update is not None}, method.axis_name)
    if masker is not None:
        state = state.replace(masker=update_player(state.masker, method.players.masker_tx, grads["masker"], masker[1]))
    if phi is not None:
        state = state.replace(phi=update_player(state.phi, method.players.phi_tx, grads["phi"], phi[1]))
    return state


# ---- The masker's split -------------------------------------------------------------------

def masker_split(method: Method, masker_params, masker_stats, images, train: bool):
    """Soft mask m and its (keep, rest) split; new masker batch stats in train mode."""
    variables = {"params": masker_params, "batch_stats": masker_stats}
    if train:
        m, updates = method.players.masker.apply(variables, images, train=True, mutable=["batch_stats"])
        new_stats = updates["batch_stats"]
    else:
        m, new_stats = method.players.masker.apply(variables, images, train=False), masker_stats
    keep, rest = split_scores(method, m)
    return m, keep, rest, new_stats


def split_scores(method: Method, m):
    """(keep, rest) of the scores m under the method's reveal rule: exact-k (``topk_split``) or, with
    mode 'cap', at most k (``capped_split``)."""
    if method.reveal.mode == "cap":
        return capped_split(m, method.reveal.k, method.reveal.cap_threshold, method.reveal.opening)
    return topk_split(m, method.reveal.k, method.reveal.values, method.reveal.gradient)


def classifier_input(method: Method, part, images):
    """What a classifier sees of one part (``keep`` or ``rest``, (B, H, W, 1)) of the images.

    With ``mask_channel`` the part's own 0/1 indicator rides along as a last
    channel: a hidden pixel is 0 like black hair, and the channel is what lets
    a classifier tell "hidden" from "black" (and the masker's gradient reach
    dark pixels, whose image channels contribute ≈ 0 to ∂L/∂m).
    """
    x = part * images
    return jnp.concatenate([x, part.astype(x.dtype)], axis=-1) if method.game.mask_channel else x


# ---- Randomness: keys from (seed, round), never from the state --------------------------

def step_key(method: Method, state: TrainState, salt: int):
    """A key for this round and purpose: fold_in(seed, round), then ``salt`` (no RNG in the state)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(method.seed), state.step), salt)


def example_keys(method: Method, key, batch: int):
    """One key per example of this device's batch, folded from its index in the *global* batch."""
    offset = 0 if method.axis_name is None else lax.axis_index(method.axis_name) * batch
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(offset + jnp.arange(batch))


def jitter(inputs, keys, max_shift: int):
    """Each (H, W, C) input rolled by a random (dy, dx) in [−max_shift, max_shift]² and flipped
    left–right with probability 1/2, one key per input (``example_keys``); ``max_shift`` 0: unchanged.

    A judge that reads its inputs through this cannot be fooled by a pixel-exact
    pattern (a lattice that moves with the pixels it sits on); a task region
    left hidden still gives the label away wherever it lands.
    """
    if not max_shift:
        return inputs

    def one(x, key):
        shift_y, shift_x, flip = jax.random.split(key, 3)
        dy = jax.random.randint(shift_y, (), -max_shift, max_shift + 1)
        dx = jax.random.randint(shift_x, (), -max_shift, max_shift + 1)
        x = jnp.roll(x, (dy, dx), axis=(0, 1))
        return jnp.where(jax.random.bernoulli(flip), x[:, ::-1], x)

    return jax.vmap(one)(inputs, keys)


def judge_view(method: Method, state: TrainState, inputs, salt: int, max_shift: int):
    """A judge's inputs of this round through ``jitter`` of up to ``max_shift`` pixels (none when 0)."""
    if not max_shift:
        return inputs
    keys = example_keys(method, step_key(method, state, 1000 + salt), inputs.shape[0])
    return jitter(inputs, keys, max_shift)


# ---- The release ----------------------------------------------------------------------------

def mask_images(method: Method, state: TrainState | dict[str, Any], images: jax.Array
                ) -> tuple[jax.Array, jax.Array]:
    """The release of (B, H, W, C) ``images`` by the masker of ``state`` (a TrainState, or the
    masker's variables ``{"params", "batch_stats"}``): (released images, reveal mask), both (B, H, W, ·).

    ``binary`` releases h ⊙ x (original pixel values on exactly k pixels per
    image; at most k with the reveal mode 'cap'); ``soft`` releases m ⊙ h ⊙ x
    as the paper does. The mask is h (binary) or m ⊙ h (soft), (B, H, W, 1).
    The rule is ``topk.release``, which an exported bundle applies too.
    """
    reveal = method.reveal
    variables = state.masker.variables if isinstance(state, TrainState) else state
    m = method.players.masker.apply(variables, images, train=False)
    return release(m, images, reveal.k, reveal.values, reveal.cap_threshold if reveal.mode == "cap" else None,
                   reveal.opening)
