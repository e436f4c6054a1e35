"""jaxmask: adversarial mask generation for visual privacy, in JAX/Flax.

The Python API (DESIGN.md §6). Every public name below loads its module on
first use (PEP 562 ``__getattr__``), so a command imports only what it needs:
``jaxmask.load_masker`` and ``jaxmask mask`` go through ``jaxmask.export``
alone, never the training stack (optax, orbax, jaxmask.build/steps/games);
tests/test_mask_cli.py checks it in a fresh interpreter. This module imports
no jaxmask module itself: every module may use ``from jaxmask import x``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name → the module that defines it (imported on first access).
_EXPORTS = {
    "Classifier": "jaxmask.models",
    "Masker": "jaxmask.models",
    "Method": "jaxmask.state",
    "PlayerState": "jaxmask.state",
    "TrainState": "jaxmask.state",
    "build_method": "jaxmask.build",
    "create_train_state": "jaxmask.build",
    "adversary_step": "jaxmask.games.adversaries",
    "privacy_step": "jaxmask.games.adversaries",
    "random_mask_predictor_step": "jaxmask.games.random_masks",
    "shuffled_mask_predictor_step": "jaxmask.games.random_masks",
    "obfuscator_step": "jaxmask.games.paper",
    "predictor_step": "jaxmask.games.paper",
    "eval_step": "jaxmask.games.table",
    "play_round": "jaxmask.games.table",
    "train_round": "jaxmask.games.table",
    "mask_images": "jaxmask.steps",
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

