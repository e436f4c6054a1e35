r"""Quick prototype loop for a game: train one masker, then cheap held-out checks and a picture grid.

    python experiments/proto.py --out runs/proto/minimal_k05 --set game=minimal --set reveal=cap \
        --set topk_fraction=0.5 [--config configs/synth_hair.py] [--seed 0]

Checks on 1000 test images (SynthFaces): revealed fraction (mean, and per
class), the mean task-region fraction, recall per class, the share of the
reveal in the identity region; then fresh networks trained on 2000 released
training images for 4 epochs (weaker than the study's probes: a prototype's
screen, never a result): the label from the mask alone, from the hidden part,
and identity + label from the release (retrained from scratch). The same for
the Oracle-exact release (the task region alone, within the cap) as the floor.
Writes OUT/proto.json and OUT/grid.png. Not the study (experiments/privacy_study.py).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags

flags.DEFINE_string("out", None, "workdir", required=True)
flags.DEFINE_string("config", "configs/synth_hair.py", "config file[:arg]")
flags.DEFINE_multi_string("set", [], "config overrides key=value (python literal)")
flags.DEFINE_integer("seed", 0, "seed")
flags.DEFINE_integer("probe_train", 2000, "training images of the quick probes")
flags.DEFINE_integer("probe_epochs", 4, "epochs of the quick probes")
FLAGS = flags.FLAGS


def _set(config, key, text):
    import ast
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    node = config
    *path, leaf = key.split(".")
    for part in path:
        node = node[part]
    node[leaf] = value


def _probe(view_train, y_train, view_test, y_test, num_classes, name):
    from jaxmask.evaluation import networks
    net = networks.train_classifier(view_train, y_train, num_classes=num_classes,
                                      epochs=FLAGS.probe_epochs, seed=0, name=name)
    return net.accuracies(view_test, y_test)


def checks(train, test, train_h, test_h, num_classes, num_identities, name):
    """Mask quality and the quick probes of one release (h: (N, H, W, 1) 0/1)."""
    from jaxmask.evaluation import common, probes
    out = common.mask_quality(test_h, test["task_mask"], test["identity_mask"])
    out["recall_per_class"] = probes.per_class_recall(test_h, test["task_mask"], test["label"], num_classes)
    per_image = test_h.reshape(len(test_h), -1).mean(1)
    out["revealed_per_class"] = [float(per_image[test["label"] == c].mean()) for c in range(num_classes)]
    label = {"label": num_classes}
    both = {"label": num_classes, "identity": num_identities}
    mask = _probe(train_h, {"label": train["label"]}, test_h, {"label": test["label"]}, label, f"{name} mask")
    hidden = _probe(probes.view("hidden", train["image"], train_h), {"label": train["label"]},
                    probes.view("hidden", test["image"], test_h), {"label": test["label"]}, label, f"{name} hidden")
    release = _probe(train["image"] * train_h, {"label": train["label"], "identity": train["identity"]},
                     test["image"] * test_h, {"label": test["label"], "identity": test["identity"]}, both,
                     f"{name} release")
    out.update(mask_probe=mask["label"], hidden_probe=hidden["label"], task_retrained=release["label"],
               reid_retrained=release["identity"])
    return out


def grid(path, images, masks_by_row, labels):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = len(masks_by_row)
    cols = len(images)
    fig, axes = plt.subplots(rows + 1, cols, figsize=(cols * 1.1, (rows + 1) * 1.1))
    for j in range(cols):
        axes[0, j].imshow(images[j]); axes[0, j].set_title(str(labels[j]), fontsize=6)
        for i, (name, masks) in enumerate(masks_by_row.items()):
            axes[i + 1, j].imshow(images[j] * masks[j])
            if j == 0:
                axes[i + 1, j].set_ylabel(name, fontsize=6)
    for ax in axes.ravel():
        ax.set_xticks([]); ax.set_yticks([])
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv):
    del argv
    from jaxmask import platform
    platform.configure_xla_defaults()          # before the first computation, as the CLI does
    platform.configure_compilation_cache()
    from variants import load_base
    from jaxmask import mask_images, topk, train
    from jaxmask.data.pipeline import load_split
    from jaxmask.evaluation import probes
    config = load_base(FLAGS.config)
    config.seed = FLAGS.seed
    for item in FLAGS.set:
        key, _, text = item.partition("=")
        _set(config, key, text)
    out = os.path.abspath(FLAGS.out)
    start = time.time()
    result = train.train_and_evaluate(config, out)
    train_seconds = time.time() - start
    method, variables = result["method"], result["state"].masker.variables
    selected_round = int(result["state"].step)
    if result.get("selected") and os.path.exists(os.path.join(result["selected"], "manifest.json")):
        import jaxmask     # the run's masker is model selection's pick, as `jaxmask run` evaluates it
        bundle = jaxmask.load_masker(result["selected"])
        variables, selected_round = bundle.variables, bundle.step
    train_split = load_split(config, "train", FLAGS.probe_train)
    test_split = load_split(config, "test", 1000)

    def reveal(images):
        hs = []
        for i in range(0, len(images), 250):
            _, h = mask_images(method, variables, images[i:i + 250])
            hs.append(np.asarray(h, np.float32))
        return np.concatenate(hs)

    train_h, test_h = reveal(train_split["image"]), reveal(test_split["image"])
    num_classes, num_identities = int(config.num_classes), int(train_split["identity"].max()) + 1
    k = topk.num_revealed(config.topk_fraction, config.image_size, config.image_size)
    report = {"config": config.to_dict(), "train_seconds": train_seconds, "selected_round": selected_round,
              "validation": result["validation"], "train": result["train"],
              "task_region_fraction": float(test_split["task_mask"].mean())}
    report["ours"] = checks(train_split, test_split, train_h, test_h, num_classes, num_identities, "ours")
    oracle_train = probes.oracle_exact_indicator(train_split["task_mask"], k, seed=0)
    oracle_test = probes.oracle_exact_indicator(test_split["task_mask"], k, seed=1)
    # The Oracle-exact's checks depend on the task and K only: computed once per pair.
    cached = os.path.join(os.path.dirname(out), f"oracle_exact_{config.task}_k{k}.json")
    if os.path.exists(cached):
        with open(cached) as f:
            report["oracle_exact"] = json.load(f)
    else:
        report["oracle_exact"] = checks(train_split, test_split, oracle_train, oracle_test, num_classes,
                                        num_identities, "oracle")
        with open(cached, "w") as f:
            json.dump(report["oracle_exact"], f)
    with open(os.path.join(out, "proto.json"), "w") as f:
        json.dump(report, f, indent=1)
    pick = np.concatenate([np.flatnonzero(test_split["label"] == c)[:3] for c in range(num_classes)])
    grid(os.path.join(out, "grid.png"), test_split["image"][pick],
         {"ours": test_h[pick], "oracle-exact": oracle_test[pick]}, test_split["label"][pick])
    summary = {key: report["ours"][key] for key in ("revealed_fraction", "task_region_revealed", "recall_per_class",
                                                    "identity_region_share", "mask_probe", "hidden_probe",
                                                    "task_retrained", "reid_retrained")}
    print(json.dumps({"out": out, "selected_round": selected_round, "task_region_fraction": report["task_region_fraction"], "ours": summary,
                      "oracle_reid": report["oracle_exact"]["reid_retrained"],
                      "oracle_mask": report["oracle_exact"]["mask_probe"],
                      "oracle_hidden": report["oracle_exact"]["hidden_probe"]}, indent=None))


if __name__ == "__main__":
    app.run(main)
