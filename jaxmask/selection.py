"""Model selection without ground truth: fresh validation probes score each evaluated checkpoint.

A user trains once and has no task-region labels, and the last round is not
the best one (docs/results.md: 200 rounds were worse than 100). At every
evaluation the training loop masks the validation split with the current
masker and fits three small *fresh* networks on the first half of it, tested
on the second half (none of them is a player of the game, so none has been
beaten by the masker):

* ``utility``: the label from the release h ⊙ x (with h as a channel);
* ``hidden``:  the label from the hidden part concat((1 − h) ⊙ x, 1 − h);
* ``mask``:    the label from the 0/1 mask h alone.

The documented score (higher is better), from quantities every labelled data
set has: with each accuracy turned into its advantage over chance,
adv(a) = (a − 1/C) / (1 − 1/C),

    score = adv(utility) − max(0, adv(hidden)) − max(0, adv(mask)) − revealed_fraction

so a release that keeps the task (utility 1), leaks nothing through the
hidden part or the mask (both at chance) and reveals a quarter of the image
scores 0.75; revealing less for the same utility and leaks scores higher.

**Utility is a floor, not a trade.** Revealing nothing leaks nothing: an
empty reveal scores about 0, above any useful release that still leaks
(the expression study's first selections were such empty reveals, task at
chance). So a checkpoint whose release probe falls more than
``selection.utility_margin`` below the *reference* is *ineligible*: it scores
``INELIGIBLE + adv(utility)``, below every eligible checkpoint (whose score
is ≥ −4), and among ineligible ones the most useful wins. The reference is
the higher of the same probe on the original validation images (fit once)
and the best release probe of this run so far: the small probe can read a
release better than the original image it came from (expression: 0.77 on a
release, 0.37 on the originals), so the run's own best is the stronger
floor. The floor only rises; at each evaluation the kept checkpoint is
re-scored under the current floor, so a later, clearly more useful round
replaces it. (A resumed run starts the running best from the kept
checkpoint's own probe.) ``utility_margin`` None: no floor.
The training loop keeps the best-scoring checkpoint's masker as the
``selected`` bundle in the workdir (``SELECTED``), with its round, score and
probe accuracies.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np

from jaxmask import config_checks, export, steps
from jaxmask.data.pipeline import load_split
from jaxmask.evaluation import networks
from jaxmask.evaluation.common import apply_in_batches

SELECTED = export.SELECTED      # the workdir's bundle of the best-scoring checkpoint
VIEWS = ("utility", "hidden", "mask")


def advantage(accuracy: float, num_classes: int) -> float:
    """(accuracy − chance) / (1 − chance): 0 at chance, 1 when always right."""
    chance = 1.0 / num_classes
    return (accuracy - chance) / (1.0 - chance)


INELIGIBLE = -10.0              # an ineligible score lies in [-11, -9]; every eligible one is ≥ -4


def score(probes: dict[str, float], revealed_fraction: float, num_classes: int,
          utility_floor: float | None = None, num_identities: int | None = None) -> float:
    """The selection score of one checkpoint (see the module doc); ``utility_floor``: the release
    probe's accuracy below which the checkpoint is ineligible (None: none); ``num_identities``: the
    identities the ``identity`` probe (re-identification from the release) tells apart, where it ran."""
    if utility_floor is not None and probes["utility"] < utility_floor:
        return INELIGIBLE + advantage(probes["utility"], num_classes)
    out = (advantage(probes["utility"], num_classes)
           - max(0.0, advantage(probes["hidden"], num_classes))
           - max(0.0, advantage(probes["mask"], num_classes))
           - revealed_fraction)
    if num_identities and "identity" in probes:
        out -= max(0.0, advantage(probes["identity"], num_identities))
    return out


def probe_views(images: np.ndarray, revealed: np.ndarray) -> dict[str, np.ndarray]:
    """What each probe sees of (N, H, W, C) images under (N, H, W, 1) 0/1 reveals."""
    h = np.asarray(revealed, np.float32)
    return {"utility": np.concatenate([images * h, h], axis=-1),
            "hidden": np.concatenate([images * (1.0 - h), 1.0 - h], axis=-1),
            "mask": h}


def validation_probes(images: np.ndarray, labels: np.ndarray, revealed: np.ndarray, num_classes: int,
                      settings, seed: int = 0) -> dict[str, float]:
    """{utility, hidden, mask} accuracies of fresh probes fit on the first half, tested on the second.

    ``settings``: ``probe_widths`` (a plain CNN's widths), ``probe_epochs``,
    ``probe_batch_size``. Every evaluation of a run fits networks of the same
    shapes, so each view compiles once per run.
    """
    return {view: probe_accuracy(x, labels, num_classes, settings, view, seed)
            for view, x in probe_views(images, revealed).items()}


def probe_accuracy(x: np.ndarray, labels: np.ndarray, num_classes: int, settings, view: str,
                   seed: int = 0, epochs: int | None = None) -> float:
    """A fresh probe on ``x`` (what ``view`` sees), fit on the first half, its accuracy on the second
    (``epochs``: default ``settings.probe_epochs``)."""
    config_checks.check_selection_split(len(labels), settings)
    half = len(labels) // 2
    net = networks.train_classifier(
        x[:half], {"label": labels[:half]}, num_classes={"label": num_classes},
        widths=tuple(settings.probe_widths), epochs=epochs or settings.probe_epochs,
        batch_size=settings.probe_batch_size, seed=seed, name=f"selection probe ({view})", arch="plain")
    return net.accuracy(x[half:], labels[half:], "label")


class Ranking:
    """The online choice: each evaluated checkpoint's score under the current utility floor, and
    whether it beats the kept one re-scored under the same floor (see the module doc).

    ``reference``: the originals' probe accuracy (None with ``margin`` None: no floor); ``kept``:
    the (probes, revealed fraction) of a checkpoint kept before a resume; ``num_identities``: where
    the identity probe runs, the identities it tells apart.
    """

    def __init__(self, num_classes: int, margin: float | None, reference: float | None = None, kept=None,
                 num_identities: int | None = None):
        self.num_classes, self.margin, self.reference, self.kept = num_classes, margin, reference, kept
        self.num_identities = num_identities
        if margin is not None and kept is not None:
            self.reference = max(reference if reference is not None else 0.0, kept[0]["utility"])

    def update(self, probes: dict[str, float], fraction: float) -> dict[str, float]:
        """{selection_score, selected (1.0/0.0)[, selection_floor]} of one checkpoint; keeps it if selected."""
        floor = None
        if self.margin is not None:
            self.reference = max(self.reference if self.reference is not None else 0.0, probes["utility"])
            floor = self.reference - self.margin
        out = {"selection_score": score(probes, fraction, self.num_classes, floor, self.num_identities)}
        if floor is not None:
            out["selection_floor"] = floor
        kept = None if self.kept is None else score(*self.kept, self.num_classes, floor, self.num_identities)
        out["selected"] = float(kept is None or out["selection_score"] > kept)
        if out["selected"]:
            self.kept = (probes, fraction)
        return out


class Selector:
    """Scores each evaluated checkpoint and keeps the best one's masker as WORKDIR/selected.

    Process 0 does all of it (the state it reads is the gathered single copy,
    and nothing it computes flows back into training). ``settings`` is
    ``config.selection``; the validation split is loaded once.
    """

    def __init__(self, config, workdir: str, method):
        self.config, self.settings = config, config.selection
        self.path = os.path.join(workdir, SELECTED)
        self.num_classes = int(config.num_classes)
        split = load_split(config, "validation", self.settings.max_images or 0)
        self.images, self.labels = split["image"], split["label"]
        config_checks.check_selection_split(len(self.labels), self.settings)   # before the first round compiles
        # The identity term: where the split has identity labels, a fresh re-identification probe on the
        # release (what a masker that reveals a face gives away); None where it has none (the report says so).
        self.identities = split["identity"]
        self.num_identities = (int(self.identities.max()) + 1 if self.settings.identity_probe
                               and (self.identities >= 0).all() else None)
        # One part of the utility floor's reference: the same probe on the original images (a
        # reveal of every pixel), fit once per run; the other is the run's best release probe.
        margin = self.settings.get("utility_margin")
        self.original_utility = None
        if margin is not None:
            everything = np.ones((*self.images.shape[:-1], 1), np.float32)
            originals = probe_views(self.images, everything)["utility"]   # a reveal of every pixel
            self.original_utility = probe_accuracy(originals, self.labels, self.num_classes, self.settings,
                                                   "utility", seed=config.seed)
        self._mask = jax.jit(functools.partial(steps.mask_images, method))
        # A resumed run competes with the bundle its killed predecessor selected: its probes and
        # revealed fraction, re-scored under each evaluation's floor.
        kept = None
        if os.path.exists(os.path.join(self.path, export.MANIFEST)):
            metrics = export.read_manifest(self.path).get("metrics") or {}
            if all(f"probe_{view}" in metrics for view in VIEWS) and "probe_revealed_fraction" in metrics:
                kept = ({view: metrics[f"probe_{view}"] for view in (*VIEWS, "identity") if f"probe_{view}" in metrics},
                        metrics["probe_revealed_fraction"])
        self.ranking = Ranking(self.num_classes, margin, self.original_utility, kept, self.num_identities)

    def revealed(self, masker_variables, batch_size: int = 250) -> np.ndarray:
        """(N, H, W, 1) reveals of the validation images (one compiled batch shape: the last is padded)."""
        return apply_in_batches(lambda batch: self._mask(masker_variables, batch)[1:], self.images, batch_size)[0]

    def __call__(self, step: int, state, config, eval_metrics: dict[str, float]) -> dict[str, float]:
        """The selection record of round ``step`` (and a new ``selected`` bundle if it is the best)."""
        revealed = self.revealed(state.masker.variables)
        probes = validation_probes(self.images, self.labels, revealed, self.num_classes, self.settings,
                                   seed=step)
        if self.num_identities:
            # The stronger of two readings: a fresh probe (small: 500 images) and the game's own identity
            # adversary on the validation split (trained all along, so a face-revealing release cannot hide
            # from it the way it can from a probe of 25 images per person).
            release = probe_views(self.images, revealed)["utility"]
            fresh = probe_accuracy(release, self.identities, self.num_identities, self.settings,
                                   "identity", seed=step, epochs=self.settings.identity_epochs)
            probes["identity"] = max(fresh, eval_metrics.get("accuracy_identity", 0.0))
            extra = {"probe_identity_fresh": fresh}
        else:
            extra = {}
        fraction = float(revealed.mean())
        ranked = self.ranking.update(probes, fraction)
        record = {"selection_score": ranked["selection_score"],
                  **{f"probe_{view}": value for view, value in probes.items()}, **extra,
                  "probe_revealed_fraction": fraction}
        if "selection_floor" in ranked:
            record["probe_utility_original"] = self.original_utility
            record["selection_floor"] = ranked["selection_floor"]
        # How far the game's own adversaries trail a fresh network (the gap issue 17 asks to log).
        if "accuracy_complement" in eval_metrics:
            record["gap_complement"] = probes["hidden"] - eval_metrics["accuracy_complement"]
        if "accuracy_pattern" in eval_metrics:
            record["gap_pattern"] = probes["mask"] - eval_metrics["accuracy_pattern"]
        record["selected"] = ranked["selected"]
        if record["selected"]:
            # The workdir's own bundle, replaced by each better checkpoint of this training.
            export.export_masker(state, config, self.path, step=step,
                                 metrics={**eval_metrics, **record, "step": step}, overwrite=True)
        return record
