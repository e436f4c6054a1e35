"""The minimal reveal: K is a cap, and the revealed area is minimised under constraints.

A top-k quota spends its whole budget: every pixel beyond the task region is
placed by the masker, on faces and in a label-dependent pattern
(docs/results.md). Here the reveal is capped (``reveal='cap'``: the top-k
pixels whose score m exceeds ``cap_threshold``) and the masker solves

    minimise    area = mean(m) / AREA_UNIT   (half the image: the same price at any K)
    subject to  utility:  Φ's accuracy on the reveal        ≥ ``utility_accuracy``
                hidden:   the best complement adversary's
                          accuracy on the hidden part       ≤ chance + ``hidden_margin``
                pattern:  the best Ψ's accuracy on the mask ≤ chance + ``pattern_margin``

by gradient descent on the Lagrangian for the masker and dual ascent for the
multipliers (GECO, Rezende & Viola 2018; the expected-L0 Lagrangian of
HardKuma, Bastings et al. 2019). Split by step:

    utility step:  area + λ_utility · CE(y, Φ(h ⊙ x))
    privacy step:  λ_hidden · max_members CE(uniform, Φ_c((1 − h) ⊙ x)) + λ_pattern · max_members CE(uniform, Ψ(h))
    end of round:  log λ_c ← clip(log λ_c + η · violation_c)   (η = ``dual_learning_rate``)

Each violation is measured on the round's own batches (accuracies, not
losses, so the constraints read as what a user is promised). Multipliers live
in log space in the train state (positive, multiplicative steps); a satisfied
constraint's multiplier decays until the area term wins again, which is what
makes the cap bind. Φ is REAL-X's at every rate
(``random_masks.multi_rate_masks``): it learns from random masks whose
revealed fraction varies per image, so it reads the task at any budget and
has no decoder for a code the masker could write. The judges are the
adversaries of ``games.adversaries`` (``minimal``) or Φ itself (``minimal_phi``).

The game's settings are ``MinimalSettings``, from ``config.minimal``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxmask import steps
from jaxmask.games import adversaries, paper, random_masks
from jaxmask.state import Method, TrainState

CONSTRAINTS = ("utility", "hidden", "pattern")   # every minimal game's; "identity" where it has identity adversaries
JUDGE_OBJECTIVES = ("uniform", "excess")


@dataclasses.dataclass(frozen=True)
class MinimalSettings:
    """The minimal game's constraints, its dual ascent and its Φ's random-mask rates, from
    ``config.minimal`` (configs/synth_hair.py documents each)."""
    utility_accuracy: float = 0.95
    hidden_margin: float = 0.05
    pattern_margin: float = 0.05
    dual_learning_rate: float = 0.2
    max_log_multiplier: float = 2.0        # |log λ| bound: a lost constraint cannot run away
    boundary_weight: float = 0.0           # the area's boundary-length prior (``boundary``)
    channel_gradient: bool = True          # the privacy step's gradient also through Φ_c's mask channel
    judge_objective: str = "uniform"       # minimal_phi: "uniform" (CE(uniform, ·)) | "excess" (true-label evidence)
    min_mask_rate: float = 0.01            # Φ's random masks reveal a fraction log-uniform in [this, 1]
    identity_margin: float = 0.05          # identity adversaries on the release ≤ 1 / identities + this
    identity_start: float = 2.0            # the identity multiplier's first log λ (the others start at 0)
    identity_max_log_multiplier: float = 4.0   # its bound: above the label constraints' (max_log_multiplier)

    @classmethod
    def from_config(cls, block) -> "MinimalSettings":
        return cls(**{field.name: type(field.default)(block[field.name]) for field in dataclasses.fields(cls)})


def multiplier(state: TrainState, name: str):
    return jnp.exp(state.log_multipliers[name])


def boundary(m):
    """Mean absolute difference of m between 4-neighbours (per pixel): the soft mask's boundary length.

    A solid region pays for its outline only; a lattice or speckle of the same
    area pays for every pixel's edges.
    """
    return (jnp.abs(m[:, 1:] - m[:, :-1]).sum() + jnp.abs(m[:, :, 1:] - m[:, :, :-1]).sum()) / m.size


# The area's unit: half the image. A fixed unit, not K: K is only a cap, and an area priced per unit
# of K would weigh less against the constraints the looser the cap, so that a loose budget would buy
# a larger reveal by construction.
AREA_UNIT = 0.5


def area_objective(method: Method, state: TrainState, cross_entropy, m):
    """(area + boundary_weight · boundary) / AREA_UNIT + λ_utility · CE: the utility step's share of
    the Lagrangian."""
    cost = (m.mean() + method.minimal.boundary_weight * boundary(m)) / AREA_UNIT
    return cost + multiplier(state, "utility") * cross_entropy


def minimal_utility_step(method: Method, state: TrainState, batch):
    """Φ learns from random masks at every rate; the masker minimises area + λ_utility · CE on its reveal."""
    return random_masks.predictor_masks_step(
        method, state, batch, random_masks.multi_rate_masks(method, method.minimal.min_mask_rate),
        masker_objective=area_objective)


def constraints(method: Method) -> dict[str, float]:
    """The game's constraints and each one's first log λ: ``CONSTRAINTS`` at λ = 1, and "identity" where
    the method has identity adversaries (the release must not re-identify the person).

    The identity constraint outranks the label constraints: it starts at
    ``identity_start`` and may rise to ``identity_max_log_multiplier``, above
    their bound. Revealing more hides the label better (the hidden part
    shrinks), so at a loose cap the hidden-part constraint pulls toward the
    whole face; measured (docs/results.md, K = 0.7), an identity multiplier
    that started at 1 and shared their bound rose too late to stop it.
    """
    out = {name: 0.0 for name in CONSTRAINTS}
    if method.players.identity:
        out["identity"] = method.minimal.identity_start
    return out


def minimal_privacy_step(method: Method, state: TrainState, batch):
    """The masker hides from the adversaries, each term weighted by its learned multiplier."""
    identity = multiplier(state, "identity") if "identity" in state.log_multipliers else 0.0
    return adversaries.weighted_privacy_step(method, state, batch, multiplier(state, "hidden"),
                                             multiplier(state, "pattern"), method.minimal.channel_gradient,
                                             identity_weight=identity)


def excess_label_probability(logits, labels):
    """mean over the batch of max(0, log p(y | hidden part) − log(1/C)): the judge's evidence for the
    *true* label beyond chance.

    Unlike CE(uniform, ·) it does not punish a judge's confident *wrong*
    readings (an imperfect Φ reads brows or shadows as hair colour): those are
    independent of the label and would pull the masker toward revealing
    whatever features mislead this particular judge, differently per class.
    """
    log_p = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), labels[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.relu(log_p + jnp.log(logits.shape[-1])))


def phi_judged_privacy_step(method: Method, state: TrainState, batch):
    """The masker hides the task from Φ itself: λ_hidden · (Φ's excess evidence for y on (1 − h) ⊙ x).

    Φ learns only from random masks at every rate, never from the masker's, so
    it reads any part of an image the same way and has no decoder the masker
    could write to: a judge that cannot be co-adapted, without adversaries.
    """
    return paper.weighted_obfuscator_step(
        method, state, batch, multiplier(state, "hidden"),
        view=lambda inputs: steps.judge_view(method, state, inputs, 502, method.adversary.jitter),
        objective=excess_label_probability if method.minimal.judge_objective == "excess" else paper.uniform_objective)


def violations(method: Method, round_metrics) -> dict[str, jnp.ndarray]:
    """Each constraint's violation (> 0: violated) from a round's mean metrics."""
    chance = 1.0 / method.players.phi.num_classes
    settings = method.minimal
    out = {"utility": settings.utility_accuracy - round_metrics["predictor_accuracy"]}
    hidden = round_metrics.get("complement_accuracy", round_metrics.get("obfuscator_accuracy"))
    if hidden is not None:
        out["hidden"] = hidden - (chance + settings.hidden_margin)
    if "pattern_accuracy" in round_metrics:
        out["pattern"] = round_metrics["pattern_accuracy"] - (chance + settings.pattern_margin)
    if "identity_accuracy" in round_metrics:
        identities = method.players.identity[0].num_classes
        out["identity"] = round_metrics["identity_accuracy"] - (1.0 / identities + settings.identity_margin)
    return out


def update_multipliers(method: Method, state: TrainState, round_metrics):
    """Dual ascent on log λ from the round's violations; returns (state, their metrics)."""
    settings = method.minimal
    log_multipliers = dict(state.log_multipliers)
    metrics = {}
    for name, violation in violations(method, round_metrics).items():
        high = settings.identity_max_log_multiplier if name == "identity" else settings.max_log_multiplier
        log_multipliers[name] = jnp.clip(log_multipliers[name] + settings.dual_learning_rate * violation,
                                         -settings.max_log_multiplier, high)
        metrics[f"violation_{name}"] = violation
        metrics[f"multiplier_{name}"] = jnp.exp(log_multipliers[name])
    return state.replace(log_multipliers=log_multipliers), metrics
