"""The privacy side of the games beyond the paper's: trained adversaries, the masker's step against
them, and their settings (``AdversarySettings``, from ``config.adversary``).

* ``adversary_step``: complement adversaries Φ_c learn y from the hidden part
  (Yu et al. 2019) and mask-pattern adversaries Ψ learn y from the 0/1 mask
  alone; the masker's output is stop-gradiented, so only they learn. Two or
  more members of different widths, ``adversary_steps`` updates per round
  (``adversary_updates``: with an early exit once every member is strong) and
  one member re-initialised every ``reinit_every`` rounds keep them strong
  (Wu et al. 2018).
* ``privacy_step``: the masker minimises, per example, the *max* over members
  of CE(uniform, Φ_c(x_o)), plus ``pattern_weight`` × the same against Ψ(h):
  neither the withheld pixels nor the reveal pattern may carry the label.
  ``weighted_privacy_step`` takes both weights as arguments (the minimal-reveal
  game's learned multipliers).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax

from jaxmask import steps
from jaxmask.state import Method, TrainState

Batch = steps.Batch
Metrics = steps.Metrics


@dataclasses.dataclass(frozen=True)
class AdversarySettings:
    """What the adversary roles read, from ``config.adversary`` (configs/synth_hair.py documents each).

    ``steps`` is 0 where the game trains no adversary (then only ``jitter``,
    the judges' view, is read: the minimal game's Φ-judged variant uses it).
    """
    steps: int = 0                         # adversary updates per round (each on one of the round's batches)
    exit_accuracy: float | None = None     # skip the rest once every member reaches it (None: never)
    plateau: float | None = None           # skip the rest once held-out accuracy rises less than this
    jitter: int = 0                        # judges read their inputs shifted by up to this (pixels) and flipped
    reinit_every: int | None = None        # rounds between re-initialising one member per ensemble (None = never)
    pattern_weight: float = 0.0            # Ψ's term in the masker's privacy loss

    @classmethod
    def from_config(cls, block, trains_adversaries: bool) -> "AdversarySettings":
        """The settings of ``config.adversary``; ``trains_adversaries``: the game has adversary networks."""
        optional = lambda value, kind: None if value is None else kind(value)
        return cls(steps=int(block.steps) if trains_adversaries else 0,
                   exit_accuracy=optional(block.exit_accuracy, float), plateau=optional(block.plateau, float),
                   jitter=int(block.jitter), reinit_every=optional(block.reinit_every, int),
                   pattern_weight=float(block.pattern_weight))


def adversary_step(method: Method, state: TrainState, batch: Batch, update: int = 0
                   ) -> tuple[TrainState, Metrics]:
    """One update of every complement adversary Φ_c (on the hidden part), every Ψ (on h) and every
    identity adversary (the person, ``batch["identity"]``, from the release concat(h ⊙ x, h)).

    The masker runs in train mode (its batch-stat update is discarded) and its
    output is a constant here: only the adversaries learn. ``update``: the
    update's index in the round (its jitter draw).
    """
    images, labels = batch["image"], batch["label"]
    _, keep, rest, _ = steps.masker_split(method, state.masker.params, state.masker.batch_stats, images, True)
    keep, rest = lax.stop_gradient(keep), lax.stop_gradient(rest)
    metrics, weakest = {}, []

    def train_members(modules, players, inputs, name, targets=labels):
        new_players, accuracies = [], []
        for module, player in zip(modules, players):
            def loss_fn(params):
                logits, stats = steps.apply_train(module, player, params, inputs)
                loss = steps.cross_entropy(logits, targets)
                return loss, (stats, steps.accuracy(logits, targets))
            (_, (stats, member_accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(player.params)
            grads = steps.device_mean(grads, method.axis_name)
            new_players.append(steps.update_player(player, method.players.adversary_tx, grads, stats))
            # Global accuracy per member before the max / min over members (a per-device
            # min would differ from the global one under pmap).
            accuracies.append(steps.device_mean(member_accuracy, method.axis_name))
        if accuracies:
            metrics[f"{name}_train_accuracy"] = jnp.max(jnp.stack(accuracies))
            weakest.append(jnp.min(jnp.stack(accuracies)))
        return tuple(new_players)

    jitter = method.adversary.jitter
    complement = train_members(method.players.complement, state.complement, steps.judge_view(
        method, state, steps.classifier_input(method, rest, images), 2 * update, jitter), "complement")
    pattern = train_members(method.players.pattern, state.pattern,
                            steps.judge_view(method, state, keep, 2 * update + 1, jitter), "pattern")
    identity = train_members(method.players.identity, state.identity, steps.judge_view(
        method, state, steps.classifier_input(method, keep, images), 200 + update, jitter), "identity",
        batch.get("identity"))
    # The weakest member's batch accuracy before its update: what the early exit reads.
    metrics["adversary_weakest_accuracy"] = jnp.min(jnp.stack(weakest))
    return (state.replace(complement=complement, pattern=pattern, identity=identity),
            steps.device_mean(metrics, method.axis_name))


def adversary_updates(method: Method, state: TrainState, take) -> tuple[TrainState, list[Metrics]]:
    """Up to ``method.adversary.steps`` adversary updates, the j-th on ``take(j)``: toward best response.

    The remaining updates of a round are skipped (``lax.cond``: not computed)
    once the adversaries are done, by either rule (None: off):

    * ``exit_accuracy``: every member reached that accuracy;
    * ``plateau``: the weakest member's accuracy on the next batch,
      measured before it trains on it (held out from its updates of this
      round while the round's batches last), rose by less than this since the
      previous update: more updates would not make it stronger.

    Adversaries that already read the label, or stopped improving, get no more
    steps; weak, still-improving ones get up to ``steps`` (the cap).
    Decisions are device means, so every device takes the same branch.
    ``adversary_updates`` in the metrics counts the updates made.
    """
    per_step = []
    settings = method.adversary
    early_exit = settings.exit_accuracy is not None or settings.plateau is not None
    done, updates = jnp.zeros((), bool), jnp.zeros((), jnp.float32)
    previous = None
    for j in range(settings.steps):
        if not early_exit or j == 0:
            state, metrics = adversary_step(method, state, take(j), j)
        else:
            state, metrics = lax.cond(done, lambda s, m: (s, m),
                                      lambda s, m, j=j: adversary_step(method, s, take(j), j), state, metrics)
        updates = updates + jnp.where(done, 0.0, 1.0)
        weakest = metrics["adversary_weakest_accuracy"]
        if settings.exit_accuracy is not None:
            done = done | (weakest >= settings.exit_accuracy)
        if settings.plateau is not None and previous is not None:
            done = done | (weakest < previous + settings.plateau)
        previous = weakest
        per_step.append(metrics)
    return state, per_step + [{"adversary_updates": updates}]


def privacy_step(method: Method, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    """The masker minimises max-over-members CE(uniform, Φ_c(x_o)) + pattern_weight × the same for Ψ(h)
    (+ the same for the identity adversaries on the release, where the game has them)."""
    return weighted_privacy_step(method, state, batch, 1.0, method.adversary.pattern_weight, identity_weight=1.0)


def weighted_privacy_step(method: Method, state: TrainState, batch: Batch, complement_weight,
                          pattern_weight, channel_gradient: bool = True, identity_weight=0.0
                          ) -> tuple[TrainState, Metrics]:
    """The masker minimises complement_weight × max-over-members CE(uniform, Φ_c(x_o)) + pattern_weight ×
    the same for Ψ(h) + identity_weight × the same for the identity adversaries on the release
    concat(h ⊙ x, h), over the identities (weights: floats or traced scalars, e.g. learned multipliers).

    The identity term prices what a release gives away of the person — face
    pixels, a rim of skin, a lattice over the face — as what it is, not as area.

    Adversaries run with batch statistics and get no update. ``*_accuracy``
    is the best member's accuracy on this batch before the masker's update.
    ``channel_gradient=False``: Φ_c still sees the hidden part's mask channel,
    but the masker's gradient reaches it only through the hidden *pixels*:
    it learns to reveal the pixels that leak, not to reshape the mask so that
    these particular adversaries misread it.
    """
    images, labels = batch["image"], batch["label"]

    def hidden_input(rest):
        if channel_gradient or not method.game.mask_channel:
            return steps.classifier_input(method, rest, images)
        x = rest * images
        return jnp.concatenate([x, lax.stop_gradient(rest).astype(x.dtype)], axis=-1)

    def ensemble_loss(modules, players, inputs, targets=labels):
        per_member = [steps.apply_train(module, player, player.params, inputs)[0]
                      for module, player in zip(modules, players)]
        losses = jnp.stack([steps.uniform_cross_entropy(logits) for logits in per_member])   # (members, B)
        best_accuracy = jnp.max(jnp.stack([steps.accuracy(logits, targets) for logits in per_member]))
        return jnp.max(losses, axis=0).mean(), best_accuracy

    def loss_fn(masker_params):
        _, keep, rest, masker_stats = steps.masker_split(method, masker_params, state.masker.batch_stats, images, True)
        aux = {}
        loss = jnp.zeros((), jnp.float32)
        if method.players.complement:
            complement_loss, aux["complement_accuracy"] = ensemble_loss(
                method.players.complement, state.complement,
                steps.judge_view(method, state, hidden_input(rest), 500, method.adversary.jitter))
            aux["complement_loss"] = complement_loss
            loss = loss + complement_weight * complement_loss
        if method.players.pattern:
            pattern_loss, aux["pattern_accuracy"] = ensemble_loss(method.players.pattern, state.pattern,
                                                                  steps.judge_view(method, state, keep, 501,
                                                                                   method.adversary.jitter))
            aux["pattern_loss"] = pattern_loss
            loss = loss + pattern_weight * pattern_loss
        if method.players.identity:
            identity_loss, aux["identity_accuracy"] = ensemble_loss(
                method.players.identity, state.identity,
                steps.judge_view(method, state, steps.classifier_input(method, keep, images), 503,
                                 method.adversary.jitter), batch["identity"])
            aux["identity_loss"] = identity_loss
            loss = loss + identity_weight * identity_loss
        return loss, (masker_stats, aux)

    (loss, (masker_stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.masker.params)
    new_state = steps.update_masker_and_phi(method, state, masker=(grads, masker_stats))
    return new_state, steps.device_mean({"obfuscator_loss": loss, **aux}, method.axis_name)


def reinitialise_adversaries(method: Method, state: TrainState, image_shape) -> TrainState:
    """Every ``reinit_every`` rounds, member (round / reinit_every) mod n of each ensemble starts afresh.

    A fresh member is what a new attacker is: if the masker only hid from the
    members it has trained against, the fresh one finds the label again.
    """
    if not (method.players.complement or method.players.pattern or method.players.identity) or \
            method.adversary.reinit_every is None:
        return state
    every = method.adversary.reinit_every
    height, width, channels = image_shape
    due = (state.step > 0) & (state.step % every == 0)
    turn = state.step // every
    rng = steps.step_key(method, state, 23)

    def refresh(modules, players, input_shape, salt):
        out = []
        for i, (module, player) in enumerate(zip(modules, players)):
            fresh = steps.init_player(module, method.players.adversary_tx, jax.random.fold_in(rng, salt + i), input_shape)
            pick = due & (turn % len(modules) == i)
            out.append(jax.tree.map(lambda new, old: jnp.where(pick, new, old), fresh, player))
        return tuple(out)

    return state.replace(
        complement=refresh(method.players.complement, state.complement,
                           (height, width, channels + method.classifier_channels), 0),
        pattern=refresh(method.players.pattern, state.pattern, (height, width, 1), 100),
        identity=refresh(method.players.identity, state.identity,
                         (height, width, channels + method.classifier_channels), 200))


def eval_sums(method: Method, state: TrainState, batch, keep, rest) -> Metrics:
    """The best member's number of right answers on one batch: ``correct_complement`` (on the hidden
    part), ``correct_pattern`` (on h) and ``correct_identity`` (the person, on the release), for the
    games that train them (else {}).

    Next to the evaluation's fresh probes, they show whether the game's own
    judges were strong enough (``gap_*`` in model selection's records).
    """
    images, labels = batch["image"], batch["label"]

    def best(modules, players, inputs, targets=labels):
        hits = [jnp.sum((jnp.argmax(steps.apply_train(module, player, player.params, inputs)[0], -1)
                         == targets).astype(jnp.float32)) for module, player in zip(modules, players)]
        return jnp.max(jnp.stack(hits))

    sums = {}
    if method.players.complement:
        sums["correct_complement"] = best(method.players.complement, state.complement,
                                          steps.classifier_input(method, rest, images))
    if method.players.pattern:
        sums["correct_pattern"] = best(method.players.pattern, state.pattern, (keep > 0).astype(jnp.float32))
    if method.players.identity:
        sums["correct_identity"] = best(method.players.identity, state.identity,
                                        steps.classifier_input(method, keep, images), batch["identity"])
    return sums
