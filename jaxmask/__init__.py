"""jaxmask: adversarial mask generation for visual privacy, in JAX/Flax.

The Python API (DESIGN.md §6). Every public name below loads its module on
first use (PEP 562 ``__getattr__``), so a command imports only what it needs:
``jaxmask.load_masker`` and ``jaxmask mask`` go through ``jaxmask.export``
alone, never the training stack (optax, orbax, jaxmask.state/steps/games);
tests/test_mask_cli.py checks it in a fresh interpreter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name → the module that defines it (imported on first access).
_EXPORTS = {
    "Classifier": "jaxmask.models",
    "Masker": "jaxmask.models",
    "Method": "jaxmask.state",
    "PlayerState": "jaxmask.state",
    "TrainState": "jaxmask.state",
    "build_method": "jaxmask.state",
    "create_train_state": "jaxmask.state",
    "adversary_step": "jaxmask.games",
    "build_round": "jaxmask.games",
    "privacy_step": "jaxmask.games",
    "random_mask_predictor_step": "jaxmask.games",
    "shuffled_mask_predictor_step": "jaxmask.games",
    "eval_step": "jaxmask.steps",
    "mask_images": "jaxmask.steps",
    "obfuscator_step": "jaxmask.steps",
    "predictor_step": "jaxmask.steps",
    "play_round": "jaxmask.games",
    "train_round": "jaxmask.games",
    "capped_split": "jaxmask.topk",
    "num_revealed": "jaxmask.topk",
    "topk_indicator": "jaxmask.topk",
    "topk_split": "jaxmask.topk",
    "load_masker": "jaxmask.export",   # an exported masker bundle: numpy, jax and flax only
    "load_config": "jaxmask.config_files",   # configs/x.py[:arg] → its checked ConfigDict
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        # An AttributeError lets `from jaxmask import train` fall back to the submodule.
        raise AttributeError(f"module 'jaxmask' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value      # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:   # static analysers and IDEs see the eager imports
    from jaxmask.export import load_masker
    from jaxmask.games import (adversary_step, build_round, play_round, privacy_step,
                               random_mask_predictor_step, shuffled_mask_predictor_step, train_round)
    from jaxmask.models import Classifier, Masker
    from jaxmask.state import Method, PlayerState, TrainState, build_method, create_train_state
    from jaxmask.steps import eval_step, mask_images, obfuscator_step, predictor_step
    from jaxmask.topk import capped_split, num_revealed, topk_indicator, topk_split
