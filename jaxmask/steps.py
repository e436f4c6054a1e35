"""Pure step functions of the masking game (DESIGN.md §1). No I/O, no globals.

Every function takes the static ``Method`` first (bind it with
``functools.partial`` before ``jit``/``pmap``), then a ``TrainState`` and a
batch ``{"image": (B, H, W, C) float32 in [0, 1], "label": (B,) int32}``.
Under ``pmap`` (``method.axis_name`` set) gradients, BatchNorm statistics and
metrics are averaged over the device axis, so every device holds the same
state as a single-device run on the global batch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxmask.state import Method, PlayerState, TrainState
from jaxmask.topk import capped_split, topk_split

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def device_mean(tree, axis_name):
    return tree if axis_name is None else lax.pmean(tree, axis_name)


def _device_sum(tree, axis_name):
    return tree if axis_name is None else lax.psum(tree, axis_name)


def accuracy(logits, labels):
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def update_player(player: PlayerState, tx: optax.GradientTransformation, grads, batch_stats) -> PlayerState:
    updates, opt_state = tx.update(grads, player.opt_state, player.params)
    return PlayerState(params=optax.apply_updates(player.params, updates),
                       batch_stats=batch_stats, opt_state=opt_state)


def masker_split(method: Method, masker_params, masker_stats, images, train: bool):
    """Soft mask m and its (keep, rest) split; new masker batch stats in train mode."""
    variables = {"params": masker_params, "batch_stats": masker_stats}
    if train:
        m, updates = method.players.masker.apply(variables, images, train=True, mutable=["batch_stats"])
        new_stats = updates["batch_stats"]
    else:
        m, new_stats = method.players.masker.apply(variables, images, train=False), masker_stats
    keep, rest = reveal_split(method, m)
    return m, keep, rest, new_stats


def reveal_split(method: Method, m):
    """(keep, rest) of the soft mask m: exact-k (``topk_split``) or, with reveal='cap', at most k."""
    if method.reveal.mode == "cap":
        return capped_split(m, method.reveal.k, method.reveal.cap_threshold)
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


def _phi_train(method: Method, phi_params, phi_stats, images):
    logits, updates = method.players.phi.apply({"params": phi_params, "batch_stats": phi_stats},
                                       images, train=True, mutable=["batch_stats"])
    return logits, updates["batch_stats"]


def predictor_step(method: Method, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """Minimises CE(y, Φ(keep ⊙ x)) over masker and Φ; both BatchNorm states update."""
    images, labels = batch["image"], batch["label"]

    def loss_fn(masker_params, phi_params):
        m, keep, _, masker_stats = masker_split(method, masker_params, state.masker.batch_stats, images, True)
        logits, phi_stats = _phi_train(method, phi_params, state.phi.batch_stats,
                                       classifier_input(method, keep, images))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        aux = (masker_stats, phi_stats, accuracy(logits, labels), m.mean())
        return loss, aux

    (loss, (masker_stats, phi_stats, phi_accuracy, mask_mean)), (masker_grads, phi_grads) = (
        jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            state.masker.params, state.phi.params))
    masker_grads, phi_grads = device_mean((masker_grads, phi_grads), method.axis_name)
    new_state = state.replace(
        masker=update_player(state.masker, method.players.masker_tx, masker_grads, masker_stats),
        phi=update_player(state.phi, method.players.phi_tx, phi_grads, phi_stats))
    metrics = {"predictor_loss": loss, "predictor_accuracy": phi_accuracy, "mask_mean": mask_mean}
    return new_state, device_mean(metrics, method.axis_name)


def obfuscator_step(method: Method, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """Minimises CE(uniform, Φ(rest ⊙ x)) over the masker only.

    Φ runs in train mode (batch statistics) but gets no update: its params and
    batch stats come out unchanged, bit for bit.
    """
    return weighted_obfuscator_step(method, state, batch, 1.0)


def uniform_cross_entropy_loss(logits, labels):
    """CE(uniform, softmax(logits)), the batch mean: the paper's obfuscator loss (log C at best)."""
    del labels
    return -jnp.mean(jax.nn.log_softmax(logits, axis=-1))


def weighted_obfuscator_step(method: Method, state: TrainState, batch: Batch, weight, view=None,
                             objective=uniform_cross_entropy_loss) -> tuple[TrainState, Metrics]:
    """``obfuscator_step`` with its loss times ``weight`` (a float or a traced scalar, e.g. a learned
    multiplier), Φ's input passed through ``view`` (e.g. a random jitter; None: as it is) and
    ``objective(logits, labels)`` in place of CE(uniform, ·); ``obfuscator_loss`` in the metrics is
    the unweighted objective."""
    images, labels = batch["image"], batch["label"]

    def loss_fn(masker_params):
        _, _, rest, masker_stats = masker_split(method, masker_params, state.masker.batch_stats, images, True)
        inputs = classifier_input(method, rest, images)
        logits, _ = _phi_train(method, state.phi.params, state.phi.batch_stats,
                               inputs if view is None else view(inputs))
        loss = objective(logits, labels)
        return weight * loss, (masker_stats, accuracy(logits, labels), loss)

    (_, (masker_stats, phi_accuracy, loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.masker.params)
    grads = device_mean(grads, method.axis_name)
    new_state = state.replace(masker=update_player(state.masker, method.players.masker_tx, grads, masker_stats))
    metrics = {"obfuscator_loss": loss, "obfuscator_accuracy": phi_accuracy}
    return new_state, device_mean(metrics, method.axis_name)


def check_round_batches(method: Method, batches: Batch) -> None:
    """A round takes one stacked batch per step: predictor_steps + obfuscator_steps of them."""
    num_steps = method.game.predictor_steps + method.game.obfuscator_steps
    leading = {v.shape[0] for v in jax.tree.leaves(batches)}
    if leading != {num_steps}:
        raise ValueError(
            f"train_round needs {num_steps} stacked batches (predictor_steps="
            f"{method.game.predictor_steps} + obfuscator_steps={method.game.obfuscator_steps}); "
            f"got leading axes {sorted(leading)}")


def mean_metrics(per_step: list[Metrics]) -> Metrics:
    """Each metric averaged over the steps of a round that report it."""
    return {name: jnp.mean(jnp.stack([m[name] for m in per_step if name in m]))
            for name in dict.fromkeys(k for m in per_step for k in m)}


def _apply_player_train(module, player: PlayerState, inputs):
    """Logits of a player with batch statistics (how the masker's loss sees it); no update."""
    return module.apply(player.variables, inputs, train=True, mutable=["batch_stats"])[0]


def eval_step(method: Method, state: TrainState, batch: Batch) -> Metrics:
    """Sums over a batch (add them up, then divide by ``count``).

    ``correct_revealed``: Φ (eval mode) right on keep ⊙ x, the released part;
    ``correct_hidden``: Φ (train-mode BatchNorm, as the obfuscator sees it) right
    on rest ⊙ x; ``correct_complement`` / ``correct_pattern`` (games with
    adversaries): their best member on the hidden part / on h; ``revealed``:
    number of revealed pixels; ``count``: images.
    """
    images, labels = batch["image"], batch["label"]
    m, keep, rest, _ = masker_split(method, state.masker.params, state.masker.batch_stats, images, False)
    logits_revealed = method.players.phi.apply(state.phi.variables, classifier_input(method, keep, images), train=False)
    logits_hidden, _ = _phi_train(method, state.phi.params, state.phi.batch_stats,
                                  classifier_input(method, rest, images))
    hits = lambda logits: jnp.sum((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    sums = {
        "correct_revealed": hits(logits_revealed),
        "correct_hidden": hits(logits_hidden),
        # The in-training adversaries (games beyond the paper's): their best member per batch,
        # next to which the evaluation's fresh probes show whether they are strong enough.
        **({"correct_complement": jnp.max(jnp.stack([
            hits(_apply_player_train(module, player, classifier_input(method, rest, images)))
            for module, player in zip(method.players.complement, state.complement)]))} if method.players.complement else {}),
        **({"correct_pattern": jnp.max(jnp.stack([
            hits(_apply_player_train(module, player, (keep > 0).astype(jnp.float32)))
            for module, player in zip(method.players.pattern, state.pattern)]))} if method.players.pattern else {}),
        "revealed": jnp.sum((keep > 0).astype(jnp.float32)),
        "count": jnp.asarray(labels.shape[0], jnp.float32),
    }
    return _device_sum(sums, method.axis_name)


def mask_images(masker, masker_variables: dict[str, Any], images: jax.Array, k: int,
                values: str = "binary", reveal: str = "exact", cap_threshold: float = 0.5
                ) -> tuple[jax.Array, jax.Array]:
    """The release path: (released images, reveal mask), both (B, H, W, ·).

    ``binary`` releases h ⊙ x (original pixel values on exactly k pixels per
    image; at most k with ``reveal="cap"``); ``soft`` releases m ⊙ h ⊙ x as the
    paper does. The returned mask is h (binary) or m ⊙ h (soft), shaped (B, H, W, 1).
    """
    from jaxmask.topk import reveal as release     # the one release rule, shared with export.py
    m = masker.apply(masker_variables, images, train=False)
    return release(m, images, k, values, cap_threshold if reveal == "cap" else None)
