"""What every evaluator shares (the context, the helpers below the driver), and ``from_config``:
the evaluators an evaluation config names."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import numpy as np

from jaxmask import facesim
from jaxmask.evaluation import networks


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


class Evaluator:
    """An evaluator: made once per evaluation with the shared ``Context``; ``run(row, released)``
    yields its (metric name, value) pairs for one row (each module's ``Evaluator`` subclasses this)."""

    def __init__(self, context: Context):
        self.context = context

    def run(self, row, released):
        raise NotImplementedError


def from_config(context: Context) -> list[Any]:
    """One ``Evaluator`` per name in ``eval.evaluators``, in that order (big_vision's registry by
    name: module ``jaxmask.evaluation.<name>``; each decides from the config what it computes)."""
    return [importlib.import_module(f"jaxmask.evaluation.{name}").Evaluator(context)
            for name in context.eval_config.evaluators]


def accuracies(net, images, split, heads) -> dict[str, float]:
    """{task_accuracy, reid_accuracy (where identities are known)} of ``net`` on ``images``."""
    accuracy = net.accuracies(images, {head: split[head] for head in heads})
    out = {"task_accuracy": accuracy["label"]}
    if "identity" in accuracy:
        out["reid_accuracy"] = accuracy["identity"]
    return out


def train_network(images, labels, context: Context, name: str, init=None):
    """The evaluation's EvalNet: ``epochs`` from scratch, or ``retrain_epochs`` fine-tuning ``init``."""
    settings = context.eval_config.network
    return networks.train_classifier(
        images, labels, num_classes=context.num_classes, widths=tuple(settings.widths),
        epochs=settings.epochs if init is None else settings.retrain_epochs,
        batch_size=settings.batch_size, learning_rate=settings.learning_rate, seed=context.eval_config.seed,
        init_params=None if init is None else init.params, progress=context.say, name=name)


def apply_in_batches(fn: Callable, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, ...]:
    """``fn`` over ``images`` in batches of ``batch_size``, outputs concatenated as float32 arrays.

    Every call sees the same batch shape (the last batch is padded with zeros,
    its padding cut from the outputs), so a jitted ``fn`` compiles once.
    """
    outputs = []
    n = len(images)
    for i in range(0, n, batch_size):
        batch = images[i:i + batch_size]
        if len(batch) < batch_size and n > batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - len(batch), *batch.shape[1:]), batch.dtype)])
        outputs.append([np.asarray(x, np.float32) for x in fn(batch)])
    return tuple(np.concatenate(parts)[:n] for parts in zip(*outputs))


def apply_release(release: Callable, images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(released (N, H, W, C), revealed (N, H, W, 1)) of a whole array, in batches."""
    released, revealed = apply_in_batches(release, images, batch_size)
    return released, revealed


def mask_quality(revealed: np.ndarray, task_mask: np.ndarray | None = None,
                 identity_mask: np.ndarray | None = None) -> dict[str, float]:
    """Revealed fraction, shares of the revealed pixels inside the task / identity regions,
    and the share of the task region that is revealed.

    ``revealed`` (N, H, W[, 1]) 0/1; the region masks bool (N, H, W).
    ``task_region_revealed`` (recall) is the mean over images of revealed
    task-region pixels / task-region pixels; images with an empty task region
    are left out of the mean (NaN if every image's region is empty).
    """
    h = np.asarray(revealed).reshape(revealed.shape[:3]) > 0
    total = max(int(h.sum()), 1)
    per_image = h.reshape(len(h), -1).mean(axis=1)
    out = {"revealed_fraction": float(h.mean())}
    if per_image.min() != per_image.max():     # reveal=cap: K is a cap, so the fraction varies per image
        out["revealed_fraction_min"], out["revealed_fraction_max"] = float(per_image.min()), float(per_image.max())
    if task_mask is not None:
        task_mask = np.asarray(task_mask, bool)
        out["task_region_share"] = float((h & task_mask).sum()) / total
        area = task_mask.sum(axis=(1, 2))
        hit = (h & task_mask).sum(axis=(1, 2))
        nonempty = area > 0
        out["task_region_revealed"] = (float((hit[nonempty] / area[nonempty]).mean())
                                       if nonempty.any() else float("nan"))
    if identity_mask is not None:
        out["identity_region_share"] = float((h & identity_mask).sum()) / total
    return out


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays; 0 where either row is zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(1) / np.maximum(norms, 1e-12), 0.0)


def standard_error(p: float, n: int) -> float:
    """Binomial standard error of an accuracy ``p`` measured on ``n`` images."""
    return float(np.sqrt(max(p * (1 - p), 0.0) / max(n, 1)))


def use_dlib(config, eval_config) -> bool:
    """Whether dlib's face similarity runs: ``eval.dlib`` on, or auto on real faces with the extra."""
    if eval_config.dlib == "off":
        return False
    if eval_config.dlib == "on":
        facesim.require()
        return True
    # SynthFaces are drawings: dlib's face detector finds no faces there.
    return config.dataset != "synth_faces" and facesim.available()
