"""The paper's two roles (Gupta et al. 2021): Φ is the predictor and the obfuscator's judge.

* ``predictor_step``: minimise CE(y, Φ(keep ⊙ x)) over the masker and Φ;
  both BatchNorm states update.
* ``obfuscator_step``: minimise CE(uniform, Φ(rest ⊙ x)) over the masker
  only; Φ runs with batch statistics and gets no update.

Measured on SynthFaces (docs/results.md), Φ co-trained on the masker's own
reveals learns to decode *where* the masker reveals, and the obfuscator fools
Φ instead of hiding the task region. ``weighted_obfuscator_step`` is the
obfuscator with a weight, a view and an objective of the caller's, for the
minimal game's Φ-judged variant (``games.minimal``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxmask import steps
from jaxmask.state import Method, TrainState

Batch = steps.Batch
Metrics = steps.Metrics


def predictor_step(method: Method, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """Minimises CE(y, Φ(keep ⊙ x)) over masker and Φ; both BatchNorm states update."""
    images, labels = batch["image"], batch["label"]

    def loss_fn(masker_params, phi_params):
        m, keep, _, masker_stats = steps.masker_split(method, masker_params, state.masker.batch_stats, images, True)
        logits, phi_stats = steps.apply_train(method.players.phi, state.phi, phi_params,
                                              steps.classifier_input(method, keep, images))
        loss = steps.cross_entropy(logits, labels)
        aux = (masker_stats, phi_stats, steps.accuracy(logits, labels), m.mean())
        return loss, aux

    (loss, (masker_stats, phi_stats, phi_accuracy, mask_mean)), (masker_grads, phi_grads) = (
        jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            state.masker.params, state.phi.params))
    new_state = steps.update_masker_and_phi(method, state, masker=(masker_grads, masker_stats),
                                            phi=(phi_grads, phi_stats))
    metrics = {"predictor_loss": loss, "predictor_accuracy": phi_accuracy, "mask_mean": mask_mean}
    return new_state, steps.device_mean(metrics, method.axis_name)


def obfuscator_step(method: Method, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """Minimises CE(uniform, Φ(rest ⊙ x)) over the masker only.

    Φ runs in train mode (batch statistics) but gets no update: its params and
    batch stats come out unchanged, bit for bit.
    """
    return weighted_obfuscator_step(method, state, batch, 1.0)


def uniform_objective(logits, labels):
    """The paper's obfuscator loss: CE(uniform, Φ(rest ⊙ x)), the batch mean (log C at best)."""
    del labels
    return jnp.mean(steps.uniform_cross_entropy(logits))


def weighted_obfuscator_step(method: Method, state: TrainState, batch: Batch, weight, view=None,
                             objective=uniform_objective) -> tuple[TrainState, Metrics]:
    """``obfuscator_step`` with its loss times ``weight`` (a float or a traced scalar, e.g. a learned
    multiplier), Φ's input passed through ``view`` (e.g. a random jitter; None: as it is) and
    ``objective(logits, labels)`` in place of CE(uniform, ·); ``obfuscator_loss`` in the metrics is
    the unweighted objective."""
    images, labels = batch["image"], batch["label"]

    def loss_fn(masker_params):
        _, _, rest, masker_stats = steps.masker_split(method, masker_params, state.masker.batch_stats, images, True)
        inputs = steps.classifier_input(method, rest, images)
        logits, _ = steps.apply_train(method.players.phi, state.phi, state.phi.params,
                                      inputs if view is None else view(inputs))
        loss = objective(logits, labels)
        return weight * loss, (masker_stats, steps.accuracy(logits, labels), loss)

    (_, (masker_stats, phi_accuracy, loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.masker.params)
    new_state = steps.update_masker_and_phi(method, state, masker=(grads, masker_stats))
    metrics = {"obfuscator_loss": loss, "obfuscator_accuracy": phi_accuracy}
    return new_state, steps.device_mean(metrics, method.axis_name)
