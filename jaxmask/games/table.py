"""The games (DESIGN.md §1 "Games") as data: one row each, played by one round function.

A row says what each phase of a round runs:

* ``predictor``: the first ``predictor_steps`` batches (Φ and the masker's
  utility objective);
* ``obfuscator``: the last ``obfuscator_steps`` batches (the masker hides
  from the game's judge of the hidden part; none in a non-adversarial run);
* ``adversaries``: whether separately trained complement and mask-pattern
  ensembles (``games.adversaries``) are updated between the two;
* ``update_multipliers``: dual ascent on the learned constraint multipliers
  named in ``multipliers`` (one log λ each in the train state), from the
  round's metrics (``games.minimal``), or None;
* ``reveal_mode``: the reveal mode the game needs ("cap"), or None: either.

The rows, and where their roles live:

* ``paper``: Φ co-trains on the masker's reveals and judges the hidden part
  (``games.paper``). Measured on SynthFaces, the masker then writes the
  label into *which* pixels it reveals and fools Φ instead of hiding the
  task region.
* ``complement``: Φ co-trained; trained adversaries (``games.adversaries``)
  judge the hidden part and the mask.
* ``realx``: Φ learns only from random exact-k masks (``games.random_masks``,
  REAL-X), adversaries judge.
* ``shuffled``: Φ learns from the masker's masks shuffled across the batch.
* ``minimal``: K is a cap; the revealed area is minimised under utility,
  hidden-part and mask-pattern constraints with learned multipliers
  (``games.minimal``); ``minimal_phi``: the same with Φ as the judge.

``play_round(method, state, batches)`` plays ``GAMES[method.game.name]`` and
``eval_step`` scores one batch; bind ``method`` with functools.partial
before jit/pmap.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxmask import steps
from jaxmask.games import adversaries, minimal, paper, random_masks
from jaxmask.state import Method, TrainState

Batch = steps.Batch
Metrics = steps.Metrics
Step = Callable[[Method, TrainState, Batch], tuple[TrainState, Metrics]]


@dataclasses.dataclass(frozen=True)
class Game:
    """One row of the games table (see the module doc)."""
    predictor: Step
    obfuscator: Step
    adversaries: bool
    update_multipliers: Callable | None = None
    # method → {name: first log λ} of the learned constraint multipliers in the state (one log λ each)
    multipliers: Callable[[Method], dict[str, float]] = lambda method: {}
    reveal_mode: str | None = None


GAMES: dict[str, Game] = {
    "paper": Game(paper.predictor_step, paper.obfuscator_step, adversaries=False),
    "complement": Game(paper.predictor_step, adversaries.privacy_step, adversaries=True),
    "realx": Game(random_masks.random_mask_predictor_step, adversaries.privacy_step, adversaries=True),
    "shuffled": Game(random_masks.shuffled_mask_predictor_step, adversaries.privacy_step, adversaries=True),
    "minimal": Game(minimal.minimal_utility_step, minimal.minimal_privacy_step, adversaries=True,
                    update_multipliers=minimal.update_multipliers, multipliers=minimal.constraints,
                    reveal_mode="cap"),
    "minimal_phi": Game(minimal.minimal_utility_step, minimal.phi_judged_privacy_step, adversaries=False,
                        update_multipliers=minimal.update_multipliers, multipliers=minimal.constraints,
                        reveal_mode="cap"),
}


def play_round(method: Method, state: TrainState, batches: Batch) -> tuple[TrainState, Metrics]:
    """One round of ``method.game.name``, one compiled call; returns metrics averaged over the round.

    ``batches`` stacks predictor_steps + obfuscator_steps batches: the
    predictor role takes the first predictor_steps, the obfuscator role the
    rest; the adversary updates (``method.adversary.steps``) cycle over all of
    them, after the predictor steps and before the obfuscator steps, so the
    masker is judged by adversaries that have seen its latest masks. Steps are
    unrolled at trace time, not lax.scan-ned: on XLA:CPU a convolution inside
    a while loop ran >10× slower (one predictor step 0.4 s standalone, 9 s as
    a length-1 scan).
    """
    row = GAMES[method.game.name]
    num_steps = method.game.predictor_steps + method.game.obfuscator_steps
    check_round_batches(method, batches)
    take = lambda i: jax.tree.map(lambda v: v[i % num_steps], batches)
    incoming = state
    state = adversaries.reinitialise_adversaries(method, state, batches["image"].shape[2:])
    per_step = []
    for i in range(method.game.predictor_steps):
        state, metrics = row.predictor(method, state, take(i))
        per_step.append(metrics)
    if method.adversary is not None and method.adversary.steps:
        state, adversary_metrics = adversaries.adversary_updates(method, state, take)
        per_step += adversary_metrics
    for i in range(method.game.predictor_steps, num_steps):
        state, metrics = row.obfuscator(method, state, take(i))
        per_step.append(metrics)
    round_metrics = steps.mean_metrics(per_step)
    if row.update_multipliers is not None:
        state, multiplier_metrics = row.update_multipliers(method, state, round_metrics)
        round_metrics = {**round_metrics, **multiplier_metrics}
    return _stored_like(state.replace(step=state.step + 1), incoming), round_metrics


def _stored_like(state: TrainState, incoming: TrainState) -> TrainState:
    # The state leaves a round in the dtypes it came in (float32 storage, whatever the compute
    # dtype): under dtype=float64 BatchNorm's running statistics come out float64, and the next
    # round would be another program (a second compile) and a checkpoint other than its template.
    keep = lambda new, old: new.astype(old.dtype) if jnp.issubdtype(old.dtype, jnp.floating) else new
    return jax.tree.map(keep, state, incoming)


def check_round_batches(method: Method, batches: Batch) -> None:
    """A round takes one stacked batch per step: predictor_steps + obfuscator_steps of them."""
    num_steps = method.game.predictor_steps + method.game.obfuscator_steps
    leading = {v.shape[0] for v in jax.tree.leaves(batches)}
    if leading != {num_steps}:
        raise ValueError(
            f"a round needs {num_steps} stacked batches (predictor_steps="
            f"{method.game.predictor_steps} + obfuscator_steps={method.game.obfuscator_steps}); "
            f"got leading axes {sorted(leading)}")


train_round = play_round   # the API name (DESIGN.md §6): every game, the paper's included


def eval_step(method: Method, state: TrainState, batch: Batch) -> Metrics:
    """Sums over a batch (add them up, then divide by ``count``).

    ``correct_revealed``: Φ (eval mode) right on keep ⊙ x, the released part;
    ``correct_hidden``: Φ (train-mode BatchNorm, as the obfuscator sees it) right
    on rest ⊙ x; ``correct_complement`` / ``correct_pattern`` (games with
    adversaries): their best member on the hidden part / on h; ``revealed``:
    number of revealed pixels; ``count``: images.
    """
    images, labels = batch["image"], batch["label"]
    _, keep, rest, _ = steps.masker_split(method, state.masker.params, state.masker.batch_stats, images, False)
    logits_revealed = method.players.phi.apply(state.phi.variables, steps.classifier_input(method, keep, images),
                                               train=False)
    logits_hidden, _ = steps.apply_train(method.players.phi, state.phi, state.phi.params,
                                         steps.classifier_input(method, rest, images))
    hits = lambda logits: jnp.sum((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
    sums = {
        "correct_revealed": hits(logits_revealed),
        "correct_hidden": hits(logits_hidden),
        **adversaries.eval_sums(method, state, batch, keep, rest),
        "revealed": jnp.sum((keep > 0).astype(jnp.float32)),
        "count": jnp.asarray(labels.shape[0], jnp.float32),
    }
    return steps.device_sum(sums, method.axis_name)
