"""What every evaluator shares, and the evaluators an evaluation config asks for."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import numpy as np

# Evaluator modules in the order their columns are computed (one module per metric family).
EVALUATORS = ("mask_quality", "original", "retrained", "fresh_probes", "in_training")


@dataclasses.dataclass
class Context:
    """The data and networks of one evaluation.

    ``train`` / ``test``: ``evaluate.load_split`` dicts; ``num_classes``:
    {head: classes} of the shared EvalNet ("label", and "identity" where
    identities are known); ``network``: that EvalNet trained on originals;
    ``say``: progress lines; ``probed``: the row names the fresh probes and
    the mask swap run on (``rows.probed``).
    """
    config: Any
    eval_config: Any
    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    num_classes: dict[str, int]
    network: Any
    say: Callable[[str], None]
    probed: set[str] = dataclasses.field(default_factory=set)   # rows the probes and the mask swap run on

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.num_classes)

    @property
    def train_labels(self) -> dict[str, np.ndarray]:
        return {head: self.train[head] for head in self.heads}


@dataclasses.dataclass
class Released:
    """One row's release of both splits: images (N, H, W, C) and reveals (N, H, W, 1)."""
    train: np.ndarray
    train_revealed: np.ndarray
    test: np.ndarray
    test_revealed: np.ndarray


def from_config(context: Context) -> list[Any]:
    """One ``Evaluator`` per module of ``EVALUATORS`` (each decides from the config what it computes)."""
    return [importlib.import_module(f"jaxmask.evaluation.{name}").Evaluator(context) for name in EVALUATORS]


def accuracies(net, images, split, heads) -> dict[str, float]:
    """{task_accuracy, reid_accuracy (where identities are known)} of ``net`` on ``images``."""
    accuracy = net.accuracies(images, {head: split[head] for head in heads})
    out = {"task_accuracy": accuracy["label"]}
    if "identity" in accuracy:
        out["reid_accuracy"] = accuracy["identity"]
    return out


def train_network(images, labels, context: Context, name: str, init=None):
    """The evaluation's EvalNet: ``epochs`` from scratch, or ``retrain_epochs`` fine-tuning ``init``."""
    from jaxmask import evaluators
    settings = context.eval_config.network
    return evaluators.train_classifier(
        images, labels, num_classes=context.num_classes, widths=tuple(settings.widths),
        epochs=settings.epochs if init is None else settings.retrain_epochs,
        batch_size=settings.batch_size, learning_rate=settings.learning_rate, seed=context.eval_config.seed,
        init_params=None if init is None else init.params, progress=context.say, name=name)
