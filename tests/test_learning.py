"""The default game (realx + mask channel) reveals more of the hair, and encodes less, than the paper's game.

Slow: trains two small maskers for 100 rounds (seed 0). K = 0.35, where every
image's hair region fits in the reveal. What the default game reliably does
better than the paper's game (Φ judges both parts, no mask channel), measured
on 512 test images with this config (docs/results.md has the full-size study
with fresh-network probes):

    seed  hair recall per class (black/blond/brown/gray)   mean          class-mean-mask distance
          realx                 paper                       realx / paper realx / paper
    0     0.95/0.80/0.92/0.63   0.65/0.11/0.70/0.62        0.83 / 0.52   0.205 / 0.278
    1     0.97/0.91/0.91/0.25   0.31/0.81/0.31/0.70        0.76 / 0.53   0.198 / 0.210

(2026-12-02, this config, seeds 0–1; CI runs seed 0.) What holds on both
seeds, and is asserted: mean recall ≥ the paper game's + 0.15 (margins 0.31
and 0.23), and a smaller class-mean-mask distance (margins 0.073 and 0.012;
asserted with 0.01). What does not hold on every seed, so is not asserted:
the worst class (seed 1: gray 0.25 vs the paper game's 0.31) — at this size
and schedule the default game is not yet where the full-size study gets it.

"recall": a hair colour's share of its hair region revealed. "class-mean-mask
distance": the mean L1 distance between the classes' mean reveal masks, a cheap
reading of a positional code (the oracle's is 0.025 on 1000 test images:
sampling noise).
"""

import numpy as np
import pytest

from conftest import load_config
from jaxmask import mask_images, probes, train
from jaxmask.data import pipeline

ROUNDS = 100
SEED = 0


def learning_config(game: str, seed: int = SEED):
    config = load_config("synth_hair")
    config.seed, config.num_devices = seed, 1
    config.game, config.mask_channel = game, game != "paper"
    config.data.num_train, config.data.num_validation, config.data.num_test = 4000, 512, 512
    config.masker_widths, config.phi_widths, config.phi_hidden = (8, 16, 32), (16, 16, 32, 32), 32
    config.adversary.complement_widths = ((16, 16, 32, 32), (8, 8, 16, 16))
    config.adversary.pattern_widths = ((16, 16, 32, 32), (8, 8, 16, 16))
    config.adversary.hidden = 32
    config.batch_size = 32
    config.num_rounds = ROUNDS
    config.log_every, config.eval_every, config.checkpoint_every = 50, ROUNDS, ROUNDS
    config.topk_fraction = 0.35
    return config


def reveal_statistics(result, config):
    """(per-class hair recall, class-mean-mask distance) on the test split."""
    source = pipeline.get_source(config, "test")
    method, variables = result["method"], result["state"].masker.variables
    masks, regions, labels = [], [], []
    for batch in pipeline.eval_batches(source, global_batch=128, fields=("image", "task_mask", "label")):
        _, mask = mask_images(method.masker, variables, batch["image"], method.k)
        masks.append(np.asarray(mask))
        regions.append(batch["task_mask"])
        labels.append(batch["label"])
    h, regions, labels = np.concatenate(masks), np.concatenate(regions), np.concatenate(labels)
    recall = probes.per_class_recall(h, regions, labels, config.num_classes)
    means = [h[labels == c].mean(0) for c in range(config.num_classes)]
    distance = np.mean([np.abs(means[a] - means[b]).mean()
                        for a in range(len(means)) for b in range(a + 1, len(means))])
    return recall, float(distance)


MEAN_RECALL_MARGIN = 0.15
CODE_MARGIN = 0.01


@pytest.mark.slow

def test_default_game_reveals_more_hair_and_encodes_less_than_the_paper_game(tmp_path):
    stats = {}
    for game in ("realx", "paper"):
        config = learning_config(game)
        result = train.train_and_evaluate(config, str(tmp_path / game))
        stats[game] = reveal_statistics(result, config)
        validation = result["validation"]
        print(f"{game}: recall per class {stats[game][0]}, class-mean-mask distance {stats[game][1]:.3f}, "
              f"validation {validation}")
        assert validation["accuracy_revealed"] >= 0.9
        pixels = config.image_size ** 2
        assert validation["revealed_fraction"] == pytest.approx(round(config.topk_fraction * pixels) / pixels)
    (realx_recall, realx_code), (paper_recall, paper_code) = stats["realx"], stats["paper"]
    assert np.mean(realx_recall) >= np.mean(paper_recall) + MEAN_RECALL_MARGIN
    assert realx_code <= paper_code - CODE_MARGIN
