"""Train state of the two players, and the static description of the game.

``TrainState`` is a pure pytree (arrays only): it can be jitted, donated,
sharded, pmapped and checkpointed as it is. Everything that is not an array
(the flax modules, the optax transforms, k, the value and gradient modes)
lives in ``Method``, which the step functions close over.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxmask import topk, validation
from jaxmask.models import Classifier, Masker


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

    ``complement`` and ``pattern`` are the adversary ensembles of the games
    beyond the paper's (``jaxmask.games``); empty tuples in the paper game.
    ``log_multipliers`` are the minimal game's learned constraint multipliers.
    """
    step: jax.Array
    masker: PlayerState
    phi: PlayerState
    complement: tuple[PlayerState, ...] = ()
    pattern: tuple[PlayerState, ...] = ()
    # log λ of each learned constraint multiplier (the minimal game, jaxmask.minimal); {} otherwise.
    log_multipliers: dict[str, Any] = flax.struct.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Players:
    """The networks of a game and their optimisers (flax modules and optax transforms: static)."""
    masker: Masker
    phi: Classifier
    masker_tx: optax.GradientTransformation
    phi_tx: optax.GradientTransformation
    complement: tuple[Classifier, ...] = ()   # complement adversaries Φ_c (on the hidden part)
    pattern: tuple[Classifier, ...] = ()      # mask-pattern adversaries Ψ (on h alone)
    adversary_tx: optax.GradientTransformation | None = None


@dataclasses.dataclass(frozen=True)
class Reveal:
    """How the masker's soft mask becomes the released part (jaxmask.topk)."""
    k: int                                 # exact: k pixels per image; cap: at most k
    mode: str = "exact"                    # exact | cap (K is a cap: top-k ∩ m > cap_threshold)
    values: str = "binary"                 # binary | soft (the paper's literal m ⊙ h)
    gradient: str = "straight_through"     # straight_through | exact (soft only)
    cap_threshold: float = 0.5


@dataclasses.dataclass(frozen=True)
class GameSettings:
    """The game's row name in jaxmask.games.GAMES and every setting its steps read."""
    name: str = "paper"
    predictor_steps: int = 3
    obfuscator_steps: int = 1
    mask_channel: bool = False
    # The adversaries (jaxmask.adversaries).
    adversary_steps: int = 0               # adversary updates per round (each on one of the round's batches)
    exit_accuracy: float | None = None     # skip the rest once every member reaches it (None: never)
    plateau: float | None = None           # skip the rest once held-out accuracy rises less than this
    judge_jitter: int = 0                  # judges read their inputs shifted by up to this (pixels) and flipped
    reinit_every: int | None = None        # rounds between re-initialising one member per ensemble (None = never)
    pattern_weight: float = 0.0
    # The minimal game's constraints (jaxmask.minimal) and its Φ's random-mask rates.
    utility_accuracy: float = 0.95
    hidden_margin: float = 0.05
    pattern_margin: float = 0.05
    dual_learning_rate: float = 0.2
    max_log_multiplier: float = 2.0        # |log λ| bound: a lost constraint cannot run away
    boundary_weight: float = 0.0           # the area's boundary-length prior (jaxmask.minimal.boundary)
    channel_gradient: bool = True          # the privacy step's gradient also through Φ_c's mask channel
    judge_objective: str = "uniform"       # minimal_phi: "uniform" (CE(uniform, ·)) | "excess" (true-label evidence)
    min_mask_rate: float = 0.01


@dataclasses.dataclass(frozen=True)
class Method:
    """Everything static about one training (closed over by the steps): the players, the reveal and
    the game.

    ``axis_name`` is the pmap device axis gradients, metrics and BatchNorm
    statistics are averaged over; None for single-device and sharded-jit runs.
    ``seed`` keys the steps' own randomness (fold_in(seed, round), no RNG in the state).
    """
    players: Players
    reveal: Reveal
    game: GameSettings
    axis_name: str | None = None
    seed: int = 0

    @property
    def classifier_channels(self) -> int:
        """Extra input channels of every classifier: the 0/1 mask channel, if on."""
        return 1 if self.game.mask_channel else 0


# float64 exists for equivalence tests (needs jax_enable_x64): it takes float
# rounding noise, which a hard top-K can amplify, out of comparisons.
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


def compute_dtype(name: str):
    if name not in _DTYPES:
        raise ValueError(f"config.dtype={name!r}: expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """``adam`` (default) or ``sgd`` (momentum 0.9)."""
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "sgd":
        return optax.sgd(learning_rate, momentum=0.9)
    raise ValueError(f"config.optimizer={name!r}: expected 'adam' or 'sgd'")


REVEAL_MODES = validation.REVEAL_MODES


def _adversaries(config, dtype, axis_name, widths_list, num_classes) -> tuple[Classifier, ...]:
    return tuple(Classifier(num_classes=num_classes, widths=tuple(widths), hidden=config.adversary.hidden,
                            dtype=dtype, bn_axis_name=axis_name) for widths in widths_list)


def build_method(config, axis_name: str | None = None) -> Method:
    """Builds the ``Method`` a config describes (see configs/synth_hair.py for the fields)."""
    validation.check_method_config(config)     # every rule of the game's fields lives in validation.py
    dtype = compute_dtype(config.dtype)
    size = config.image_size
    k = topk.num_revealed(config.topk_fraction, size, size)
    adversary = config.adversary
    from jaxmask.games import GAMES   # the table of games (games imports this module)
    beyond_paper = GAMES[config.game].adversaries
    adversarial = config.obfuscator_steps > 0
    complement = (_adversaries(config, dtype, axis_name, adversary.complement_widths, config.num_classes)
                  if beyond_paper and adversarial else ())
    pattern = (_adversaries(config, dtype, axis_name, adversary.pattern_widths, config.num_classes)
               if beyond_paper and adversarial and adversary.pattern_weight > 0 else ())
    return Method(
        players=Players(
            masker=Masker(widths=tuple(config.masker_widths), dtype=dtype, bn_axis_name=axis_name),
            phi=Classifier(num_classes=config.num_classes, widths=tuple(config.phi_widths),
                           hidden=config.phi_hidden, dtype=dtype, bn_axis_name=axis_name),
            masker_tx=make_optimizer(config.optimizer, config.masker_learning_rate),
            phi_tx=make_optimizer(config.optimizer, config.phi_learning_rate),
            complement=complement,
            pattern=pattern,
            adversary_tx=make_optimizer(config.optimizer, adversary.learning_rate)),
        reveal=Reveal(k=k, mode=config.reveal, values=config.mask_values, gradient=config.mask_gradient,
                      cap_threshold=float(config.cap_threshold)),
        game=GameSettings(
            name=config.game,
            predictor_steps=config.predictor_steps,
            obfuscator_steps=config.obfuscator_steps,
            mask_channel=bool(config.mask_channel),
            adversary_steps=int(adversary.steps) if (complement or pattern) else 0,
            # getattr: configs saved before the field existed, and bench's plain namespaces, lack it.
            exit_accuracy=(None if getattr(adversary, "exit_accuracy", None) is None
                           else float(adversary.exit_accuracy)),
            plateau=(None if getattr(adversary, "plateau", None) is None else float(adversary.plateau)),
            judge_jitter=int(getattr(adversary, "jitter", 0) or 0),
            reinit_every=None if adversary.reinit_every is None else int(adversary.reinit_every),
            pattern_weight=float(adversary.pattern_weight),
            **_minimal_settings(config)),
        axis_name=axis_name,
        seed=int(config.seed),
    )


def _minimal_settings(config) -> dict[str, float]:
    """The minimal game's fields of ``config.minimal`` (defaults where a config predates them)."""
    section = getattr(config, "minimal", None)
    if section is None:
        return {}
    out = {name: float(section[name]) for name in
           ("utility_accuracy", "hidden_margin", "pattern_margin", "dual_learning_rate", "max_log_multiplier",
            "boundary_weight", "min_mask_rate")}
    # getattr: configs saved before these fields existed lack them (their runs had these values).
    return {**out, "channel_gradient": bool(getattr(section, "channel_gradient", True)),
            "judge_objective": str(getattr(section, "judge_objective", "uniform"))}


def init_player(module, tx, rng, input_shape) -> PlayerState:
    """A fresh player for inputs of ``input_shape`` = (H, W, C)."""
    variables = module.init(rng, jnp.zeros((1, *input_shape), jnp.float32), train=False)
    params = variables["params"]
    return PlayerState(params=params, batch_stats=variables["batch_stats"],
                       opt_state=tx.init(params))


def create_train_state(method: Method, rng: jax.Array, image_shape: tuple[int, int, int]) -> TrainState:
    """Fresh state for images of ``image_shape`` = (H, W, C)."""
    height, width, channels = image_shape
    part_shape = (height, width, channels + method.classifier_channels)   # what a classifier sees
    mask_shape = (height, width, 1)                                      # Ψ sees the mask alone
    # The paper game's keys stay as they were (masker, Φ); adversaries get their own.
    masker_rng, phi_rng = jax.random.split(rng)
    adversary_rng = jax.random.fold_in(rng, 1)

    from jaxmask.games import GAMES
    multipliers = GAMES[method.game.name].multipliers   # one learned log λ per constraint, starting at λ = 1

    @jax.jit
    def init(masker_rng, phi_rng, adversary_rng):
        complement_rngs = jax.random.split(jax.random.fold_in(adversary_rng, 0), max(len(method.players.complement), 1))
        pattern_rngs = jax.random.split(jax.random.fold_in(adversary_rng, 1), max(len(method.players.pattern), 1))
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            masker=init_player(method.players.masker, method.players.masker_tx, masker_rng, image_shape),
            phi=init_player(method.players.phi, method.players.phi_tx, phi_rng, part_shape),
            complement=tuple(init_player(m, method.players.adversary_tx, r, part_shape)
                             for m, r in zip(method.players.complement, complement_rngs)),
            pattern=tuple(init_player(m, method.players.adversary_tx, r, mask_shape)
                          for m, r in zip(method.players.pattern, pattern_rngs)),
            log_multipliers={name: jnp.zeros((), jnp.float32) for name in multipliers},
        )

    return init(masker_rng, phi_rng, adversary_rng)
