"""The games (DESIGN.md §1 "Games") as data: one table row each, played by one round function.

A game says what each phase of a round runs:

* ``utility_step``: the first ``predictor_steps`` batches (Φ and the masker's
  utility objective);
* ``privacy_step``: the last ``obfuscator_steps`` batches (the masker hides
  from the game's judge of the hidden part; none in a non-adversarial run);
* ``adversaries``: whether separately trained complement and mask-pattern
  ensembles (``jaxmask.adversaries``) are updated between the two;
* ``update_multipliers``: dual ascent on the learned constraint multipliers
  named in ``multipliers`` (one log λ each in the train state), from the
  round's metrics (``jaxmask.minimal``), or None.

The rows:

* ``paper``: Φ co-trains on the masker's reveals and judges the hidden part
  (the paper's game; ``steps.predictor_step`` / ``steps.obfuscator_step``).
  Measured on SynthFaces, the masker then writes the label into *which*
  pixels it reveals and fools Φ instead of hiding the task region.
* ``complement``: Φ co-trained; trained adversaries judge the hidden part and the mask.
* ``realx``: Φ learns only from random exact-k masks (REAL-X), adversaries judge.
* ``shuffled``: Φ learns from the masker's masks shuffled across the batch.
* ``minimal``: K is a cap; the revealed area is minimised under utility,
  hidden-part and mask-pattern constraints with learned multipliers.

``play_round(method, state, batches)`` plays ``GAMES[method.game.name]``; bind
``method`` with functools.partial before jit/pmap.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax

from jaxmask import minimal, steps
from jaxmask.adversaries import (adversary_step, adversary_updates, privacy_step,  # noqa: F401 (API)
                                 reinitialise_adversaries, uniform_cross_entropy, weighted_privacy_step)
from jaxmask.state import Method, TrainState
from jaxmask.utility import (example_keys, multi_rate_predictor_step, random_mask_predictor_step,  # noqa: F401
                             random_masks, random_masks_at_rates, shuffled_mask_predictor_step)

Batch = steps.Batch
Metrics = steps.Metrics
Step = Callable[[Method, TrainState, Batch], tuple[TrainState, Metrics]]


@dataclasses.dataclass(frozen=True)
class Game:
    """One row of the games table (see the module doc)."""
    utility_step: Step
    privacy_step: Step
    adversaries: bool
    update_multipliers: Callable | None = None
    multipliers: tuple[str, ...] = ()   # names of the learned constraint multipliers in the state
    reveal: str | None = None      # the reveal the game needs ("cap"), or None: either


GAMES: dict[str, Game] = {
    "paper": Game(steps.predictor_step, steps.obfuscator_step, adversaries=False),
    "complement": Game(steps.predictor_step, privacy_step, adversaries=True),
    "realx": Game(random_mask_predictor_step, privacy_step, adversaries=True),
    "shuffled": Game(shuffled_mask_predictor_step, privacy_step, adversaries=True),
    "minimal": Game(minimal.minimal_utility_step, minimal.minimal_privacy_step, adversaries=True,
                    update_multipliers=minimal.update_multipliers, multipliers=minimal.CONSTRAINTS,
                    reveal="cap"),
    "minimal_phi": Game(minimal.minimal_utility_step, minimal.phi_judged_privacy_step, adversaries=False,
                        update_multipliers=minimal.update_multipliers, multipliers=minimal.CONSTRAINTS,
                        reveal="cap"),
}


def play_round(method: Method, state: TrainState, batches: Batch) -> tuple[TrainState, Metrics]:
    """One round of ``method.game.name``, one compiled call; returns metrics averaged over the round.

    ``batches`` stacks predictor_steps + obfuscator_steps batches: the utility
    steps take the first predictor_steps, the privacy steps the rest; the
    ``adversary_steps`` adversary updates cycle over all of them, after the
    utility steps and before the privacy steps, so the masker is judged by
    adversaries that have seen its latest masks. Steps are unrolled at trace
    time, not lax.scan-ned: on XLA:CPU a convolution inside a while loop ran
    >10× slower (one predictor step 0.4 s standalone, 9 s as a length-1 scan).
    """
    row = GAMES[method.game.name]
    num_steps = method.game.predictor_steps + method.game.obfuscator_steps
    steps.check_round_batches(method, batches)
    take = lambda i: jax.tree.map(lambda v: v[i % num_steps], batches)
    state = reinitialise_adversaries(method, state, batches["image"].shape[2:])
    per_step = []
    for i in range(method.game.predictor_steps):
        state, metrics = row.utility_step(method, state, take(i))
        per_step.append(metrics)
    if method.game.adversary_steps:
        state, adversary_metrics = adversary_updates(method, state, take)
        per_step += adversary_metrics
    for i in range(method.game.predictor_steps, num_steps):
        state, metrics = row.privacy_step(method, state, take(i))
        per_step.append(metrics)
    round_metrics = steps.mean_metrics(per_step)
    if row.update_multipliers is not None:
        state, multiplier_metrics = row.update_multipliers(method, state, round_metrics)
        round_metrics = {**round_metrics, **multiplier_metrics}
    return state.replace(step=state.step + 1), round_metrics


train_round = play_round   # the API name (DESIGN.md §6): every game, the paper's included


def build_round(method: Method):
    """The round function (``play_round``: the game is looked up once, at trace time)."""
    del method
    return play_round
