"""The default (minimal game, K = 0.5 a cap, the 3×3 opening, an identity adversary) reveals the hair
region, and little of the face.

Slow: trains the default config (configs/synth_hair.py, seed 0, 100 rounds,
model selection on) and checks the selected masker on 1000 test images. What
the default reached on every run made with it (docs/results.md, "Safe on
every run", hair K = 0.5, seeds 0–2, 2000 test images):

    machine        seed   selected round   revealed / task area   recall, worst class   reveal in the identity region
    Intel Xeon     s0     80               1.23                   0.92                  0.103
    Intel Xeon     s1     100              1.32                   0.95                  0.052
    Intel Xeon     s2     40               1.67                   0.94                  0.120
    (the previous default: s0 on the AMD EPYC round 60, 1.68, 0.96, 0.228; s2 on the Intel Xeon 1.80, 0.94, 0.258)

The same seed trains the same masker on one machine (CI's machine passed this test with the final
default) and another masker on another CPU (float order), so the thresholds are the worst seed of the
study with a margin: the area bound 1.7 (worst 1.67), recall 0.88 (worst 0.92); the identity share's
bound 0.18 is one the previous default failed on both machines. They are looser than the issue's goals
(1.25×, 0.90, 0.05), which not every seed reaches. The probes
(label from the mask alone, from the hidden part) and re-identification are
not asserted here (each needs networks trained for minutes: docs/results.md
gives them per seed). The fast siblings are tests/test_minimal.py and
tests/test_codes_and_identity.py (the game's mechanics, the opening and the
identity adversaries on a 16 px smoke config).
"""

import numpy as np
import pytest

from conftest import load_config
from jaxmask import export, train
from jaxmask.data import pipeline
from jaxmask.evaluation import common, probes

# The worst seed on each (the table above) and the margin the test allows on another CPU.
MAX_AREA_RATIO = 1.7            # revealed fraction / task-region fraction (worst 1.67)
MIN_WORST_CLASS_RECALL = 0.88   # worst 0.92
MAX_IDENTITY_SHARE = 0.18       # worst 0.120; the previous default: 0.228 and 0.258


@pytest.mark.slow
def test_default_reveals_the_task_region_and_little_of_the_face_under_a_loose_cap(tmp_path):
    config = load_config("synth_hair")
    config.num_devices = 1
    result = train.train_and_evaluate(config, str(tmp_path))
    bundle = export.load_masker(result["selected"])
    test = pipeline.load_split(config, "test", 1000)
    _, mask = bundle.mask(test["image"])
    h = np.asarray(mask) > 0
    recall = probes.per_class_recall(h, test["task_mask"], test["label"], config.num_classes)
    quality = common.mask_quality(h.astype(np.float32), test["task_mask"], test["identity_mask"])
    ratio = quality["revealed_fraction"] / float(test["task_mask"].mean())
    print(f"selected round {bundle.step}: revealed {quality['revealed_fraction']:.3f} ({ratio:.2f}× the task "
          f"region), recall per class {np.round(recall, 3)}, in the identity region "
          f"{quality['identity_region_share']:.3f}")
    assert quality["revealed_fraction"] <= config.topk_fraction + 1e-6        # K is a cap
    assert ratio <= MAX_AREA_RATIO
    assert min(recall) >= MIN_WORST_CLASS_RECALL
    assert quality["identity_region_share"] <= MAX_IDENTITY_SHARE
