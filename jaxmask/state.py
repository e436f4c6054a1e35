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

from jaxmask import topk
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
    """Both players and the number of completed rounds (int32 scalar)."""
    step: jax.Array
    masker: PlayerState
    phi: PlayerState


@dataclasses.dataclass(frozen=True)
class Method:
    """Everything static about one training game (closed over by the steps).

    ``axis_name`` is the pmap device axis gradients, metrics and BatchNorm
    statistics are averaged over; None for single-device and sharded-jit runs.
    """
    masker: Masker
    phi: Classifier
    masker_tx: optax.GradientTransformation
    phi_tx: optax.GradientTransformation
    k: int
    values: str = "binary"
    gradient: str = "straight_through"
    predictor_steps: int = 3
    obfuscator_steps: int = 1
    axis_name: str | None = None


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


def build_method(config, axis_name: str | None = None) -> Method:
    """Builds the ``Method`` a config describes (see configs/synth_hair.py for the fields)."""
    dtype = compute_dtype(config.dtype)
    size = config.image_size
    if config.predictor_steps < 1 or config.obfuscator_steps < 0:
        raise ValueError(
            f"predictor_steps={config.predictor_steps}, obfuscator_steps={config.obfuscator_steps}: "
            "a round needs predictor_steps ≥ 1 and obfuscator_steps ≥ 0 (0 = non-adversarial)")
    k = topk.num_revealed(config.topk_fraction, size, size)
    topk.check_arguments((1, size, size, 1), jnp.float32, k, config.mask_values, config.mask_gradient)
    return Method(
        masker=Masker(widths=tuple(config.masker_widths), dtype=dtype, bn_axis_name=axis_name),
        phi=Classifier(num_classes=config.num_classes, widths=tuple(config.phi_widths),
                       hidden=config.phi_hidden, dtype=dtype, bn_axis_name=axis_name),
        masker_tx=make_optimizer(config.optimizer, config.masker_learning_rate),
        phi_tx=make_optimizer(config.optimizer, config.phi_learning_rate),
        k=k,
        values=config.mask_values,
        gradient=config.mask_gradient,
        predictor_steps=config.predictor_steps,
        obfuscator_steps=config.obfuscator_steps,
        axis_name=axis_name,
    )


def _init_player(module, tx, rng, image_shape) -> PlayerState:
    variables = module.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables["params"]
    return PlayerState(params=params, batch_stats=variables["batch_stats"],
                       opt_state=tx.init(params))


def create_train_state(method: Method, rng: jax.Array, image_shape: tuple[int, int, int]) -> TrainState:
    """Fresh state for images of ``image_shape`` = (H, W, C)."""
    masker_rng, phi_rng = jax.random.split(rng)

    @jax.jit
    def init(masker_rng, phi_rng):
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            masker=_init_player(method.masker, method.masker_tx, masker_rng, image_shape),
            phi=_init_player(method.phi, method.phi_tx, phi_rng, image_shape),
        )

    return init(masker_rng, phi_rng)
