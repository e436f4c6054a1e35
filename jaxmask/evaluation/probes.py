"""Probes: fresh networks and direct tests that decide whether a masker protects anything.

None of them is the training Φ (DESIGN.md §5). For a release with reveal
masks h (N, H, W, 1):

* ``mask_only``: a network trained on h alone (no pixel values) — how much
  the *positions* of the revealed pixels say (a positional code);
* ``hidden_part``: networks of two architectures (``networks.EvalNet`` and
  ``networks.PlainCNN``) trained on the withheld part concat((1 − h) ⊙ x,
  1 − h) — what the pixels that are never released still say (with the mask
  channel, hidden pixels and black pixels differ);
* ``mask_swap``: an evaluator applied to image i under image j's mask (y_i ≠
  y_j): a masker that reveals the task region is read as y_i; one that
  encodes the label in its mask pattern pulls the answer towards y_j;
* ``per_class_recall``: the share of the task region revealed, per class;
* ``oracle_indicator``: the ground-truth task region padded (random
  non-task pixels) or trimmed (random task pixels) to exactly k — what a
  perfect masker would release.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from jaxmask.evaluation import networks

Progress = Callable[[str], None]

# (metric suffix, progress title, view, architecture) of every fresh-network probe.
PROBES = (
    ("mask_only", "mask-only", "mask", "resnet"),
    ("hidden_part", "hidden-part (ResNet)", "hidden", "resnet"),
    ("hidden_part_plain", "hidden-part (plain CNN)", "hidden", "plain"),
)
PLAIN_WIDTHS = (32, 64, 128)


def view(kind: str, images: np.ndarray, revealed: np.ndarray) -> np.ndarray:
    """What a probe sees: 'mask' → h (N, H, W, 1); 'hidden' → concat((1 − h) ⊙ x, 1 − h)."""
    h = np.asarray(revealed, np.float32).reshape(*images.shape[:3], 1)
    if kind == "mask":
        return h
    if kind == "hidden":
        return np.concatenate([images * (1.0 - h), 1.0 - h], axis=-1)
    raise ValueError(f"probe view {kind!r}: expected 'mask' or 'hidden'")


def fresh_network_probes(train: dict, test: dict, train_revealed: np.ndarray, test_revealed: np.ndarray,
                         num_classes: dict[str, int], settings, seed: int, say: Progress, name: str,
                         probes=PROBES) -> dict[str, float]:
    """{task_accuracy_<probe>, reid_accuracy_<probe>} of each probe trained from scratch on ``train``.

    ``settings`` is the evaluation's network settings (widths, epochs, batch
    size, learning rate); the plain CNN uses ``PLAIN_WIDTHS``.
    """
    heads = tuple(num_classes)
    labels = {head: train[head] for head in heads}
    out: dict[str, float] = {}
    for suffix, title, kind, arch in probes:
        net = networks.train_classifier(
            view(kind, train["image"], train_revealed), labels, num_classes=num_classes,
            widths=tuple(settings.widths) if arch == "resnet" else PLAIN_WIDTHS, epochs=settings.epochs,
            batch_size=settings.batch_size, learning_rate=settings.learning_rate, seed=seed,
            progress=say, name=f"{title} probe on {name}", arch=arch)
        test_view = view(kind, test["image"], test_revealed)
        accuracy = net.accuracies(test_view, {h: test[h] for h in heads})
        out[f"task_accuracy_{suffix}"] = accuracy["label"]
        if kind == "hidden" and "task_mask" in test:
            out[f"task_accuracy_{suffix}_by_hidden_task_pixels"] = by_hidden_task_pixels(
                net.predict(test_view, "label") == test["label"], test["task_mask"], test_revealed)
        if "identity" in accuracy:
            out[f"reid_accuracy_{suffix}"] = accuracy["identity"]
    return out


HIDDEN_TASK_PIXEL_BINS = ((0, 0), (1, 4), (5, 16), (17, None))


def by_hidden_task_pixels(correct: np.ndarray, task_mask: np.ndarray, revealed: np.ndarray
                          ) -> list[dict[str, float]]:
    """A hidden-part probe's accuracy by how many task-region pixels each test image leaves hidden.

    Separates a recall failure (the label read from task pixels the masker
    left hidden: high accuracy in the bins above 0) from a code (the label
    read where no task pixel is hidden: high accuracy in the 0 bin). One entry
    per ``HIDDEN_TASK_PIXEL_BINS`` bin: {low, high (None: no bound), count,
    accuracy (NaN where empty)}.
    """
    task_mask = np.asarray(task_mask, bool)
    h = np.asarray(revealed).reshape(task_mask.shape) > 0
    hidden_task = (task_mask & ~h).reshape(len(h), -1).sum(axis=1)
    correct = np.asarray(correct, bool)
    out = []
    for low, high in HIDDEN_TASK_PIXEL_BINS:
        members = (hidden_task >= low) & (True if high is None else hidden_task <= high)
        out.append({"low": low, "high": high, "count": int(members.sum()),
                    "accuracy": float(correct[members].mean()) if members.any() else float("nan")})
    return out


def swap_partners(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each image i, an image j with a different label (-1 if every label is the same)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    partners = np.full(len(labels), -1)
    for i, y in enumerate(labels):
        others = np.flatnonzero(labels != y)
        if len(others):
            partners[i] = others[rng.integers(len(others))]
    return partners


def mask_swap(net, images: np.ndarray, revealed: np.ndarray, labels: np.ndarray, seed: int = 0
              ) -> dict[str, float]:
    """Accuracy of ``net`` (a TrainedNet with a 'label' head) on x_i ⊙ h_j, j with y_j ≠ y_i.

    ``swap_follows_image``: share predicted y_i (the task region is what is
    read); ``swap_follows_mask``: share predicted y_j (the mask carries the label).
    """
    partners = swap_partners(labels, seed)
    keep = partners >= 0
    if not keep.any():
        return {}
    i, j = np.flatnonzero(keep), partners[keep]
    swapped = images[i] * revealed[j].reshape(len(j), *images.shape[1:3], 1)
    predicted = net.predict(swapped, "label")
    return {"swap_follows_image": float(np.mean(predicted == labels[i])),
            "swap_follows_mask": float(np.mean(predicted == labels[j]))}


def per_class_recall(revealed: np.ndarray, task_mask: np.ndarray, labels: np.ndarray, num_classes: int
                     ) -> list[float]:
    """Mean over the images of each class of revealed task pixels / task pixels (NaN: no image)."""
    h = np.asarray(revealed).reshape(np.asarray(task_mask).shape) > 0
    task_mask = np.asarray(task_mask, bool)
    area = task_mask.sum(axis=(1, 2))
    recall = np.where(area > 0, (h & task_mask).sum(axis=(1, 2)) / np.maximum(area, 1), np.nan)
    out = []
    for c in range(num_classes):
        values = recall[(np.asarray(labels) == c) & (area > 0)]
        out.append(float(values.mean()) if len(values) else float("nan"))
    return out


def oracle_indicator(task_mask: np.ndarray, k: int, seed: int = 0, pad: bool = True) -> np.ndarray:
    """(N, H, W, 1) float32: each image's task region padded or trimmed to exactly k pixels.

    Padding pixels are drawn uniformly from outside the task region and
    trimmed pixels uniformly from inside it, so the oracle's choice beyond the
    task region carries nothing. ``pad=False`` is the Oracle-exact (see
    ``oracle_exact_indicator``).
    """
    task_mask = np.asarray(task_mask, bool)
    n, height, width = task_mask.shape
    rng = np.random.default_rng(seed)
    flat = task_mask.reshape(n, -1)
    out = np.zeros_like(flat, dtype=np.float32)
    for i in range(n):
        inside, outside = np.flatnonzero(flat[i]), np.flatnonzero(~flat[i])
        if len(inside) >= k:
            chosen = rng.choice(inside, k, replace=False)
        elif not pad:
            chosen = inside
        else:
            chosen = np.concatenate([inside, rng.choice(outside, k - len(inside), replace=False)])
        out[i, chosen] = 1.0
    return out.reshape(n, height, width, 1)


def oracle_exact_indicator(task_mask: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """(N, H, W, 1) float32: each image's task region alone, trimmed (random task pixels) to at most k.

    The floor for a capped reveal: what a perfect minimal masker releases. The
    exact-k Oracle (``oracle_indicator``) pads to k with random non-task pixels,
    which is the floor for an exact-k reveal, not for a cap.
    """
    return oracle_indicator(task_mask, k, seed, pad=False)
