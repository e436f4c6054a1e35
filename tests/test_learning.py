"""The method learns on SynthFaces hair (slow: trains two small models, ~1–2 min).

At K = the hair region's mean area, after training: Φ reads the hair colour
from the revealed part, fails on the hidden part (train-mode BatchNorm, as the
obfuscator sees it), and the adversarial run puts more of its reveal on the
hair than the non-adversarial one.
"""

import jax
import numpy as np
import pytest

from conftest import load_config
from jaxmask import mask_images, train
from jaxmask.data import pipeline, synthetic

ROUNDS = 150


def learning_config(obfuscator_steps):
    config = load_config("synth_hair")
    config.num_devices = 1
    config.obfuscator_steps = obfuscator_steps
    config.data.num_train, config.data.num_validation, config.data.num_test = 4000, 512, 512
    config.masker_widths, config.phi_widths, config.phi_hidden = (8, 16, 32), (16, 16, 32, 32), 32
    config.batch_size = 32
    config.num_rounds = ROUNDS
    config.log_every, config.eval_every, config.checkpoint_every = 50, ROUNDS, ROUNDS
    spec = synthetic.SynthFacesSpec(task="hair", image_size=config.image_size)
    config.topk_fraction = round(synthetic.task_region_fraction(spec), 3)
    return config


def hair_share(result, config):
    """Share of revealed test pixels that lie inside the hair region."""
    source = pipeline.get_source(config, "test")
    method, masker_vars = result["method"], result["state"].masker.variables
    inside = total = 0.0
    for batch in pipeline.eval_batches(source, global_batch=128, fields=("image", "task_mask")):
        _, mask = mask_images(method.masker, masker_vars, batch["image"], method.k)
        revealed = np.asarray(mask[..., 0]) > 0
        inside += float((revealed & batch["task_mask"]).sum())
        total += float(revealed.sum())
    return inside / total


@pytest.mark.slow
def test_adversarial_masker_reveals_the_hair(tmp_path):
    results = {}
    for obfuscator_steps in (1, 0):
        config = learning_config(obfuscator_steps)
        result = train.train_and_evaluate(config, str(tmp_path / f"o{obfuscator_steps}"))
        results[obfuscator_steps] = (result["validation"], hair_share(result, config))
    (adversarial, adversarial_share), (_, baseline_share) = results[1], results[0]
    print(f"K={config.topk_fraction} adversarial {adversarial} hair share {adversarial_share:.3f}; "
          f"non-adversarial hair share {baseline_share:.3f}")
    chance = 1 / config.num_classes
    assert adversarial["accuracy_revealed"] >= 0.90
    assert adversarial["accuracy_hidden"] <= chance + 0.15
    assert adversarial_share > baseline_share
