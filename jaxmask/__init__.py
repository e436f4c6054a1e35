"""jaxmask: adversarial mask generation for visual privacy, in JAX/Flax.

The Python API (DESIGN.md §6). Imports are light: data pipelines, orbax and
the CLI load only when used.
"""

__version__ = "0.1.0"

from jaxmask.models import Classifier, Masker
from jaxmask.state import Method, PlayerState, TrainState, build_method, create_train_state
from jaxmask.games import (adversary_step, build_round, privacy_step, random_mask_predictor_step,
                           shuffled_mask_predictor_step)
from jaxmask.games import play_round, train_round
from jaxmask.steps import eval_step, mask_images, obfuscator_step, predictor_step
from jaxmask.topk import capped_split, num_revealed, topk_indicator, topk_split


def load_masker(path):
    """Loads an exported masker bundle (see ``jaxmask.checkpoint``)."""
    from jaxmask.checkpoint import load_masker as _load
    return _load(path)


__all__ = [
    "Classifier", "Masker", "Method", "PlayerState", "TrainState", "adversary_step", "build_method",
    "build_round", "capped_split", "create_train_state", "eval_step", "load_masker", "mask_images",
    "num_revealed", "obfuscator_step", "play_round", "predictor_step", "privacy_step", "random_mask_predictor_step",
    "shuffled_mask_predictor_step", "topk_indicator", "topk_split", "train_round",
]
