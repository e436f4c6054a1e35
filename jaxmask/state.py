"""Types only: the train state of every player, and the static description of a training.

``TrainState`` is a pure pytree (arrays only): it can be jitted, donated,
sharded, pmapped and checkpointed as it is. Everything that is not an array
(the flax modules, the optax transforms, k, the game's settings) lives in
``Method``, which the step functions close over. Nothing here builds either:
``jaxmask.build`` makes them from a config, once per process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax


@flax.struct.dataclass
class PlayerState:
    """One player's parameters, BatchNorm running statistics and optimiser state."""
    params: Any
    batch_stats: Any
    opt_state: Any

    @property
    def variables(self) -> dict[str, Any]:
        return {"params": self.params, "batch_stats": self.batch_stats}


@flax.struct.dataclass
class TrainState:
    """Every player and the number of completed rounds (int32 scalar).

    ``complement``, ``pattern`` and ``identity`` are the adversary ensembles
    of the games that train them (``jaxmask.games.adversaries``): the hidden
    part's, the mask's and the release's re-identification; empty tuples otherwise.
    ``log_multipliers`` are the learned constraint multipliers of the games
    that have them (``jaxmask.games.minimal``); {} otherwise.
    """
    step: Any
    masker: PlayerState
    phi: PlayerState
    complement: tuple[PlayerState, ...] = ()
    pattern: tuple[PlayerState, ...] = ()
    identity: tuple[PlayerState, ...] = ()
    log_multipliers: dict[str, Any] = flax.struct.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Players:
    """The networks of a game and their optimisers (flax modules and optax transforms: static).

    Annotated ``Any`` so that this module imports no model: ``masker`` is a
    ``models.Masker``, ``phi`` and the adversaries ``models.Classifier``, the
    ``*_tx`` ``optax.GradientTransformation``.
    """
    masker: Any
    phi: Any
    masker_tx: Any
    phi_tx: Any
    complement: tuple[Any, ...] = ()   # complement adversaries Φ_c (on the hidden part)
    pattern: tuple[Any, ...] = ()      # mask-pattern adversaries Ψ (on h alone)
    identity: tuple[Any, ...] = ()     # identity adversaries (re-identify the person from the release)
    adversary_tx: Any = None


@dataclasses.dataclass(frozen=True)
class Reveal:
    """The reveal rule: how the masker's scores m become the revealed pixels (``jaxmask.topk``)."""
    k: int                                 # exact: k pixels per image; cap: at most k
    mode: str = "exact"                    # exact | cap (K is a cap: top-k ∩ m > cap_threshold)
    values: str = "binary"                 # binary | soft (the paper's literal m ⊙ h)
    gradient: str = "straight_through"     # straight_through | exact (soft only)
    cap_threshold: float = 0.5
    opening: int | None = None             # cap: reveal only the squares of this side that fit (topk.opening)


@dataclasses.dataclass(frozen=True)
class GameSettings:
    """What every game's round reads: its row in ``jaxmask.games.table.GAMES`` and its phases.

    ``predictor_steps`` batches go to the row's predictor role, then
    ``obfuscator_steps`` to its obfuscator role (0: the non-adversarial baseline).
    """
    name: str = "paper"
    predictor_steps: int = 3
    obfuscator_steps: int = 1
    mask_channel: bool = False


@dataclasses.dataclass(frozen=True)
class Method:
    """Everything static about one training (closed over by the steps).

    ``game``: the row and its phases; ``adversary`` and ``minimal``: the
    settings of the roles that read them, each built from its own config
    block (``games.adversaries.AdversarySettings`` from ``config.adversary``,
    ``games.minimal.MinimalSettings`` from ``config.minimal``).
    ``axis_name`` is the pmap device axis gradients, metrics and BatchNorm
    statistics are averaged over; None for single-device and sharded-jit runs.
    ``seed`` keys the steps' own randomness (fold_in(seed, round), no RNG in the state).
    """
    players: Players
    reveal: Reveal
    game: GameSettings
    adversary: Any = None
    minimal: Any = None
    axis_name: str | None = None
    seed: int = 0

    @property
    def classifier_channels(self) -> int:
        """Extra input channels of every classifier: the 0/1 mask channel, if on."""
        return 1 if self.game.mask_channel else 0

    def with_axis_name(self, axis_name: str | None) -> "Method":
        """The same method with gradients, metrics and BatchNorm averaged over ``axis_name`` (pmap).

        The networks are cloned with that BatchNorm axis; their parameters and
        state shapes do not change, so one train state serves both.
        """
        def clone(module):
            return module.clone(bn_axis_name=axis_name)
        players = dataclasses.replace(
            self.players, masker=clone(self.players.masker), phi=clone(self.players.phi),
            complement=tuple(map(clone, self.players.complement)), pattern=tuple(map(clone, self.players.pattern)),
            identity=tuple(map(clone, self.players.identity)))
        return dataclasses.replace(self, players=players, axis_name=axis_name)
