"""Utility, privacy and mask metrics of every release, on one experiment (DESIGN.md §5).

``evaluate(config, models, eval_config)`` compares the standard baselines
(``jaxmask.baselines``: Original, Block, Gaussian Blur, Random-K) with exported
maskers (``{name: MaskerBundle}``), all through the same ``release(images)``:

* utility: an independent evaluator (``evaluation.networks.EvalNet``'s task head, not
  Φ) trained on original training images, accuracy on released test images;
  and the *retrained* protocol: the evaluator fine-tuned on released training
  images, tested on released test images.
* privacy: (a) identity re-identification accuracy of an attacker trained on
  original training images, tested on released test images (held-out images
  of the same identities); (b) the attacker fine-tuned on released training
  images (an adaptive adversary); the attacker is the identity head of the
  same EvalNet (one shared backbone: one training per release, not two); (c) face similarity: cosine similarity of
  the attacker's pooled embedding of the released vs the original image, and
  on real faces dlib's face-recognition descriptor (``jaxmask.facesim``,
  optional extra).
* mask quality (datasets with ground-truth regions, e.g. SynthFaces): the
  revealed fraction, the share of revealed pixels inside the task region
  and inside the identity region, and the share of the task region that is
  revealed (recall: per image, revealed task-region pixels / task-region
  pixels, averaged over the test images).
* optional, per masker and Random-K (each trains a fresh network from
  scratch): what the reveal mask h alone says (``mask_only``), and what the
  hidden part (1 − h) ⊙ x says (``hidden_part``: the obfuscator's goal is
  that it says nothing about the task).

"Fine-tuned" starts from the network trained on originals, so the retrained
numbers are an adversary that knows the originals *and* adapts to the release.
A K sweep re-ranks each masker's scores at other K (the masker is trained at
one K) and compares it with Random-K at the same K.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

import ml_collections
import numpy as np

from jaxmask import baselines, config_checks, report
from jaxmask.export import load_masker
from jaxmask.data.pipeline import load_split
from jaxmask.evaluation import common, rows as rows_lib
from jaxmask.evaluation.common import accuracies, apply_release, mask_quality, train_network, use_dlib

Progress = Callable[[str], None]

# Metrics per method, in report column order (see report.COLUMNS for their titles).
METRICS = ("face_similarity", "task_accuracy", "task_accuracy_retrained", "reid_accuracy",
           "reid_accuracy_retrained", "task_accuracy_mask_only", "reid_accuracy_mask_only",
           "task_accuracy_hidden_part", "reid_accuracy_hidden_part", "task_accuracy_hidden_part_plain",
           "reid_accuracy_hidden_part_plain", "swap_follows_image", "swap_follows_mask", "revealed_fraction",
           "task_region_share", "task_region_revealed", "identity_region_share", "dlib_similarity")


def get_config() -> ml_collections.ConfigDict:
    """Evaluation settings (``--eval.field=value`` on the command line)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    # Block / blur region: square (centre y, centre x, side) in image fractions,
    # centred on the SynthFaces face (its centre sits at y = 0.53).
    config.face_box = (0.53, 0.5, 0.5)
    config.blur_kernel_size = 9      # pixels at model resolution, odd
    config.blur_sigma = 0.0          # ≤ 0: OpenCV's rule for the kernel size
    config.k_sweep = (0.05, 0.1, 0.25, 0.5)
    config.sweep_retrained = False   # also fine-tune evaluator/attacker per sweep point (slow)
    # Also train a network on the reveal mask h alone (no pixel values) for every
    # masked release: what the *positions* of the revealed pixels say about the
    # label and the identity (slow: one training from scratch per release).
    config.mask_only = True
    # Also train a network from scratch on the *hidden* part (1 - h) * x of every
    # masked release and test it on hidden parts of test images: whether the
    # obfuscator reached its goal (hidden part uninformative) against a fresh
    # network rather than against Φ (slow: one training per masker and Random-K).
    config.hidden_part = True        # two architectures: jaxmask.evaluation.probes.PROBES
    config.oracle = True             # the Oracle row (datasets with ground-truth task regions)
    # Probes and mask swap on Random-K too (its reveal ignores the image, so its mask
    # carries nothing by construction, and its hidden part shows 1 − K of every image).
    config.probe_random_k = False
    config.probe_max_train = 0       # training images of each probe (0 = all, as the evaluator; >0 weakens the probes)
    # Releases the probes and the mask swap run on, by row name (e.g. ("Ours",)); () = every
    # masker and the Oracle (and Random-K with probe_random_k). Each probed row costs three trainings.
    config.probe_releases = ()
    config.mask_swap = True          # the retrained evaluator on x_i with image j's mask
    config.max_train = 0             # training images for evaluator/attacker (0 = all)
    config.max_test = 0              # test images (0 = all)
    config.batch_size = 256          # images per release call
    config.grid_examples = 6         # rows of the picture grid
    config.dlib = "auto"             # dlib face similarity: auto (real faces, extra installed) | on | off
    config.dlib_images = 200         # test images it compares (face detection is ~0.3 s an image)
    # The evaluator (task head) and the attacker (identity head): one EvalNet,
    # trained on originals, then fine-tuned per release for the retrained protocol.
    config.network = ml_collections.ConfigDict(dict(
        widths=(32, 32, 64, 128), epochs=6, retrain_epochs=2, batch_size=64, learning_rate=2e-3))
    # The evaluators (jaxmask/evaluation/<name>.py), in the order their columns are computed.
    config.evaluators = config_checks.EVALUATORS
    return config


# ---- The evaluation ---------------------------------------------------------------------

def releases_for(config, models: dict[str, Any], eval_config, topk_fraction: float | None = None
                 ) -> dict[str, baselines.Release]:
    """Baselines then models, in table order; ``topk_fraction`` re-ranks the maskers at another K."""
    fraction = config.topk_fraction if topk_fraction is None else topk_fraction
    releases = baselines.standard(eval_config, fraction)
    for name, bundle in models.items():
        releases[name] = baselines.masker(bundle, topk_fraction)
    return releases


def evaluate(config, models: dict[str, Any], eval_config=None, progress: Progress | None = print
             ) -> dict[str, Any]:
    """Every metric of every release; the dict that ``report.write_report`` writes out.

    Every row (``evaluation.rows``) is released once, then scored by every
    evaluator ``eval.evaluators`` names (``evaluation.common.from_config``); no
    row is special-cased by name.

    Args:
      config: the experiment config (dataset, task, image size, K).
      models: {row name: loaded masker bundle}, e.g. {"Non-adversarial": ..., "Ours": ...}.
      eval_config: ``get_config()`` or an override of it.
      progress: called with progress lines (None: silent).
    """
    report.check_model_names(list(models), "models")     # each a row of its own, before any work
    eval_config = get_config() if eval_config is None else eval_config
    config_checks.check_eval_config(eval_config, config, list(models))    # the API path too: before any work
    say = progress or (lambda line: None)
    start = time.time()
    for name, bundle in models.items():
        if bundle.image_shape != (config.image_size, config.image_size, config.channels):
            raise ValueError(f"model {name!r} ({bundle.path}) takes {bundle.image_shape} images, the "
                             f"experiment has {(config.image_size, config.image_size, config.channels)}")
    train = load_split(config, "train", eval_config.max_train)
    test = load_split(config, "test", eval_config.max_test)
    say(f"data: {len(train['label'])} train / {len(test['label'])} test images "
        f"({config.dataset} {config.task}, {config.image_size}px)")
    has_identity = bool((train["identity"] >= 0).all() and (test["identity"] >= 0).all())
    num_identities = int(train["identity"].max()) + 1 if has_identity else 0
    # Heads of the shared network: the evaluator ("label") and the attacker ("identity").
    num_classes = {"label": int(config.num_classes)}
    if has_identity:
        num_classes["identity"] = num_identities
    rows = rows_lib.from_config(config, models, eval_config, train, test)
    probed = rows_lib.probed(eval_config, rows)     # before any training: a bad name fails fast
    context = common.Context(config, eval_config, train, test, num_classes, network=None, say=say, probed=probed)

    # ---- Evaluator and attacker trained on originals, then every row through every evaluator.
    context.network = common.train_network(train["image"], context.train_labels, context,
                                           "evaluator + attacker (originals)")
    evaluators = common.from_config(context)
    methods: dict[str, dict[str, float]] = {}
    released_test: dict[str, np.ndarray] = {}
    revealed_test: dict[str, np.ndarray] = {}
    for row in rows:
        say(f"{row.name}: releasing {len(train['label'])} + {len(test['label'])} images")
        released = row.release_splits(train, test, eval_config.batch_size)
        released_test[row.name], revealed_test[row.name] = released.test, released.test_revealed
        metrics = {"n_test": len(test["label"]), "n_train": len(train["label"])}
        for evaluator in evaluators:
            metrics.update(evaluator.run(row, released))
        methods[row.name] = metrics
        say(f"{row.name}: " + " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float)))

    # ---- K sweep: Random-K and the maskers at other K.
    sweep = _k_sweep(config, models, eval_config, train, test, context)

    examples = _examples(test, released_test, revealed_test, models, eval_config)
    return {
        "experiment": {"dataset": config.dataset, "task": config.task, "image_size": config.image_size,
                       "topk_fraction": float(config.topk_fraction), "num_classes": int(config.num_classes),
                       "num_identities": num_identities},
        "reference": {"task_chance": 1 / config.num_classes,
                      "identity_chance": 1 / num_identities if num_identities else None},
        "protocol": _protocol(eval_config, use_dlib(config, eval_config)),
        "methods": methods,
        "k_sweep": sweep,
        "examples": examples,
        "eval_config": eval_config.to_dict(),
        "models": {name: {"path": bundle.path, "step": bundle.step, "values": bundle.values,
                          "gradient": bundle.config.get("mask_gradient"),
                          "obfuscator_steps": bundle.config.get("obfuscator_steps"),
                          "game": bundle.config.get("game", "paper"),
                          "mask_channel": bundle.config.get("mask_channel", False),
                          "reveal": bundle.config.get("reveal", "exact"),
                          "k": bundle.k, "selection": selection_record(bundle.metrics)}
                   for name, bundle in models.items()},
        "seconds": time.time() - start,
    }


# What a bundle's manifest says about how model selection chose it (jaxmask/selection.py's record).
SELECTION_KEYS = ("selection_score", "probe_identity", "probe_identity_fresh", "accuracy_identity")


def selection_record(metrics: dict | None) -> dict[str, float]:
    """The selection figures of a bundle's manifest metrics: empty for a bundle no selection chose
    (``jaxmask export --step``, a final round); the report says which identity term was used."""
    return {key: float(metrics[key]) for key in SELECTION_KEYS if key in (metrics or {})}


def _k_sweep(config, models, eval_config, train, test, context):
    """{name: [{topk_fraction, task_accuracy, reid_accuracy, …}]} for Random-K and each masker."""
    sweep: dict[str, list[dict[str, float]]] = {}
    network, heads = context.network, context.heads
    for fraction in eval_config.k_sweep:
        releases = releases_for(config, models, eval_config, fraction)
        for name in ["Random-K", *models]:
            release = releases[name]
            released, revealed = apply_release(release, test["image"], eval_config.batch_size)
            point = {"topk_fraction": float(fraction), **accuracies(network, released, test, heads)}
            point.update(mask_quality(revealed, test.get("task_mask"), test.get("identity_mask")))
            if eval_config.sweep_retrained:
                train_released, _ = apply_release(release, train["image"], eval_config.batch_size)
                tuned = train_network(train_released, context.train_labels, context,
                                      f"retrained on {name} at K={fraction:g}", init=network)
                point.update({f"{key}_retrained": value
                              for key, value in accuracies(tuned, released, test, heads).items()})
            sweep.setdefault(name, []).append(point)
        context.say(f"K sweep: K={fraction:g} done")
    return sweep


def _examples(test, released_test, revealed_test, models, eval_config) -> dict[str, Any]:
    """The picture grid's arrays: the first test images, every release, and the maskers' masks."""
    n = min(eval_config.grid_examples, len(test["label"]))
    masks = {name: revealed_test[name][:n] for name in models}
    return {"original": test["image"][:n], "released": {k: v[:n] for k, v in released_test.items()},
            "masks": masks}


def _protocol(eval_config, use_dlib: bool) -> dict[str, str]:
    net = eval_config.network
    return {
        "evaluator and attacker": f"one EvalNet (ResNet widths {tuple(net.widths)}, no BatchNorm) with a "
                                  f"task head (the evaluator) and an identity head (the attacker), trained "
                                  f"{net.epochs} epochs on the original train images",
        "retrained": f"that network fine-tuned {net.retrain_epochs} epoch(s) on the released train images "
                     "of each method (an adaptive adversary that also knows the originals), tested on its "
                     "released test images; re-ID test images are held-out images of the training identities",
        "face_similarity": "cosine similarity of the network's pooled embedding, released vs original"
                           + ("; dlib: face_recognition ResNet descriptor (jaxmask.facesim)" if use_dlib else ""),
        **({"mask_only": "a fresh network trained on the reveal masks h alone (no pixel values): what the "
                          "positions of the revealed pixels encode"} if eval_config.mask_only else {}),
        **({"oracle": "the ground-truth task region padded (random non-task pixels) or trimmed to exactly k: "
                      "what a perfect exact-k masker would release; Oracle-exact: the task region alone "
                      "(trimmed to k where larger), what a perfect capped masker would release"}
           if eval_config.oracle else {}),
        **({"mask_swap": "the retrained evaluator on image i under image j's mask (y_j ≠ y_i): the share read "
                         "as y_i (follows the image) and as y_j (follows the mask)"} if eval_config.mask_swap else {}),
        **({"hidden_part": "fresh networks of two architectures (the ResNet and a plain CNN) trained from scratch "
                           "on the hidden parts concat((1 − h) ⊙ x, 1 − h) of the train images, tested on hidden "
                           "parts of the test images: what the withheld pixels still say (goal: chance); every probe "
                           f"trains on the first {eval_config.probe_max_train or 'all'} training images"}
           if eval_config.hidden_part else {}),
        **({"probed": "probes and mask swap run on " + ", ".join(eval_config.probe_releases) + " only "
                      "(--eval.probe_releases=; empty probes every masker and the Oracle)"}
           if eval_config.probe_releases and (eval_config.mask_only or eval_config.hidden_part) else {}),
        "k_sweep": "maskers re-ranked at each K (trained at the config's K); networks trained on originals"
                   + (", and fine-tuned per point" if eval_config.sweep_retrained else ""),
    }


def check_models(config, bundles: dict) -> None:
    """Refuses a bundle trained on another dataset, task or image shape than ``config``."""
    for name, bundle in bundles.items():
        trained = bundle.config
        for field in ("dataset", "task", "image_size", "channels"):
            if trained.get(field) != config[field]:
                raise ValueError(
                    f"model {name!r} ({bundle.path}) was trained with {field}={trained.get(field)!r} but "
                    f"--config has {field}={config[field]!r}: pass the config it was trained with")
        if bundle.topk_fraction != config.topk_fraction:
            print(f"note: model {name!r} was trained at K={bundle.topk_fraction:g}; Random-K uses the "
                  f"config's K={config.topk_fraction:g}", file=sys.stderr)


def evaluate_bundles(config, model_paths: dict[str, str], out: str, eval_config) -> dict[str, str]:
    """Loads the bundles {name: path}, evaluates them with progress lines, writes the report to
    ``out``; returns the written paths (``report.write_report``)."""
    bundles = {name: load_masker(path) for name, path in model_paths.items()}
    check_models(config, bundles)
    start = time.time()

    def progress(line: str) -> None:
        print(f"[evaluate {time.time() - start:5.0f} s] {line}", flush=True)

    return report.write_report(out, evaluate(config, bundles, eval_config, progress))
