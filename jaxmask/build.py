"""From a config to what a training runs: the ``Method``, a fresh ``TrainState``, and their shapes.

Built once per process and handed down (big_vision's ``eval_shape`` once):
``from_config(config)`` returns a ``Recipe`` — the method, the image shape
and the abstract state (``jax.eval_shape``: nothing is allocated or
compiled) — which the training loop gives to the parallel steps, the
checkpoints, resume and model selection; none of them builds it again.

Each part of the method is made from its own config block: the networks
and optimisers (``Players``), the reveal rule (``Reveal``), the game's row
and phases (``GameSettings``), the adversary settings (``config.adversary``
→ ``games.adversaries.AdversarySettings``) and the minimal game's
(``config.minimal`` → ``games.minimal.MinimalSettings``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxmask import config_checks, steps, topk
from jaxmask.games import adversaries, minimal
from jaxmask.games.table import GAMES
from jaxmask.models import Classifier, Masker
from jaxmask.state import GameSettings, Method, Players, Reveal, TrainState

# float64 exists for equivalence tests (needs jax_enable_x64): it takes float
# rounding noise, which a hard top-K can amplify, out of comparisons.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}

_methods_built = 0     # how many methods this process has built (tests/test_build.py: once per training)


def methods_built() -> int:
    return _methods_built


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
    """``adam`` (default) or ``sgd`` (momentum 0.9)."""
    if name == "adam":
        return optax.adam(learning_rate)
    if name == "sgd":
        return optax.sgd(learning_rate, momentum=0.9)
    raise ValueError(f"config.optimizer={name!r}: expected 'adam' or 'sgd'")


def check_training_config(config) -> None:
    """Every check of a training config against the games table (``config_checks``): one ConfigError
    naming the field and the fix, before anything is built."""
    config_checks.check_training_config(config, GAMES)


def _players(config, trains_adversaries: bool, axis_name: str | None) -> Players:
    dtype = DTYPES[config.dtype]
    adversary = config.adversary
    trains = trains_adversaries

    def ensemble(widths_list, num_classes=config.num_classes):
        return tuple(Classifier(num_classes=num_classes, widths=tuple(widths), hidden=adversary.hidden,
                                dtype=dtype, bn_axis_name=axis_name) for widths in widths_list)

    return Players(
        masker=Masker(widths=tuple(config.masker_widths), dtype=dtype, bn_axis_name=axis_name),
        phi=Classifier(num_classes=config.num_classes, widths=tuple(config.phi_widths), hidden=config.phi_hidden,
                       dtype=dtype, bn_axis_name=axis_name),
        masker_tx=make_optimizer(config.optimizer, config.masker_learning_rate),
        phi_tx=make_optimizer(config.optimizer, config.phi_learning_rate),
        complement=ensemble(adversary.complement_widths) if trains else (),
        pattern=ensemble(adversary.pattern_widths) if trains and adversary.pattern_weight > 0 else (),
        identity=ensemble(adversary.identity_widths, config.data.num_identities) if trains else (),
        adversary_tx=make_optimizer(config.optimizer, adversary.learning_rate))


def build_method(config, axis_name: str | None = None) -> Method:
    """The ``Method`` a config describes (configs/synth_hair.py documents the fields); its rules are
    checked first (``config_checks.check_method``: ConfigError naming the field and the fix)."""
    global _methods_built
    config_checks.check_method(config, GAMES)
    trains = config_checks.trains_adversaries(config, GAMES)
    _methods_built += 1
    adversary = adversaries.AdversarySettings.from_config(config.adversary, trains_adversaries=trains)
    minimal_settings = minimal.MinimalSettings.from_config(config.minimal)
    size = config.image_size
    reveal = Reveal(k=topk.num_revealed(config.topk_fraction, size, size), mode=config.reveal,
                    values=config.mask_values, gradient=config.mask_gradient, cap_threshold=float(config.cap_threshold),
                    opening=config.opening if config.reveal == "cap" else None)
    return Method(
        players=_players(config, trains, axis_name),
        reveal=reveal,
        game=GameSettings(name=config.game, predictor_steps=config.predictor_steps,
                          obfuscator_steps=config.obfuscator_steps, mask_channel=bool(config.mask_channel)),
        adversary=adversary,
        minimal=minimal_settings,
        axis_name=axis_name,
        seed=int(config.seed))


def create_train_state(method: Method, rng: jax.Array, image_shape: tuple[int, int, int]) -> TrainState:
    """Fresh state for images of ``image_shape`` = (H, W, C)."""
    height, width, channels = image_shape
    part_shape = (height, width, channels + method.classifier_channels)   # what a classifier sees
    mask_shape = (height, width, 1)                                      # Ψ sees the mask alone
    # The paper game's keys stay as they were (masker, Φ); adversaries get their own.
    masker_rng, phi_rng = jax.random.split(rng)
    adversary_rng = jax.random.fold_in(rng, 1)
    multipliers = GAMES[method.game.name].multipliers(method)   # {constraint: its first log λ}
    players = method.players

    @jax.jit
    def init(masker_rng, phi_rng, adversary_rng):
        complement_rngs = jax.random.split(jax.random.fold_in(adversary_rng, 0), max(len(players.complement), 1))
        pattern_rngs = jax.random.split(jax.random.fold_in(adversary_rng, 1), max(len(players.pattern), 1))
        identity_rngs = jax.random.split(jax.random.fold_in(adversary_rng, 2), max(len(players.identity), 1))
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            masker=steps.init_player(players.masker, players.masker_tx, masker_rng, image_shape),
            phi=steps.init_player(players.phi, players.phi_tx, phi_rng, part_shape),
            complement=tuple(steps.init_player(m, players.adversary_tx, r, part_shape)
                             for m, r in zip(players.complement, complement_rngs)),
            pattern=tuple(steps.init_player(m, players.adversary_tx, r, mask_shape)
                          for m, r in zip(players.pattern, pattern_rngs)),
            identity=tuple(steps.init_player(m, players.adversary_tx, r, part_shape)    # the release's view
                           for m, r in zip(players.identity, identity_rngs)),
            log_multipliers={name: jnp.full((), start, jnp.float32) for name, start in multipliers.items()},
        )

    return init(masker_rng, phi_rng, adversary_rng)


def identity_judging_off(config, method: Method) -> str | None:
    """The line a run prints when its game trains adversaries on data with identity labels but none judges
    identity: ``adversary.identity_widths=()`` is the documented off-switch (for data without identity
    labels), so on SynthFaces it is accepted, and said rather than silent."""
    if (method.players.complement and not method.players.identity
            and config.dataset == "synth_faces" and config.data.num_identities >= 2):
        return ("config.adversary.identity_widths=(): no identity adversary judges the release, so nothing in "
                "training keeps faces out of it (the default judges with one)")
    return None


def image_shape(config) -> tuple[int, int, int]:
    return (config.image_size, config.image_size, config.channels)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What one config makes, built once: the method, the image shape and the state's abstract
    shapes (ShapeDtypeStructs), and the lines a run using it prints as warnings (a config that is
    accepted but worth a word). ``template()`` is a zero single-copy state of those shapes (for
    restoring and checksums); ``init(rng)`` a fresh one."""
    config: Any
    method: Method
    image_shape: tuple[int, int, int]
    abstract_state: Any
    warnings: tuple[str, ...] = ()

    def template(self) -> TrainState:
        return jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), self.abstract_state)

    def init(self, rng: jax.Array) -> TrainState:
        return create_train_state(self.method, rng, self.image_shape)


def from_config(config) -> Recipe:
    """The ``Recipe`` of ``config``; ConfigError (naming the fields) when no model can be built from it."""
    method = build_method(config)
    shape = image_shape(config)
    identity_off = identity_judging_off(config, method)
    warnings = () if identity_off is None else (identity_off,)
    try:
        abstract = jax.eval_shape(lambda: create_train_state(method, jax.random.key(0), shape))
    except Exception as error:     # flax/jax raise many types for a model that does not fit the image
        message = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise config_checks.ConfigError(
            f"config.image_size={config.image_size} with masker_widths={tuple(config.masker_widths)} and "
            f"phi_widths={tuple(config.phi_widths)} builds no model ({type(error).__name__}: {message}): every "
            "level of the U-Net halves the image, so pass a larger --config.image_size or fewer "
            "--config.masker_widths") from None
    return Recipe(config, method, shape, abstract, warnings)


def abstract_state(config) -> Any:
    """The single-copy TrainState of ``config`` as ShapeDtypeStructs (for configs other than the
    run's own, e.g. a checkpoint's saved config; the run's own is its ``Recipe``)."""
    return from_config(config).abstract_state
