r"""SynthFaces, task mouth expression (3 classes: neutral, happy, surprised).

    jaxmask run --config configs/synth_expression.py --workdir runs/synth_expression
    jaxmask train --config configs/synth_expression.py --workdir /tmp/jaxmask/expression
    jaxmask train --config configs/synth_expression.py:smoke --workdir /tmp/jaxmask/smoke

Everything is configs/synth_hair.py (same arguments: '', 'smoke', 'paper')
except the task, the number of classes and K: topk_fraction is the largest
mouth region's area rounded up to 0.01 (0.11 of the image; the mean is 0.09),
measured on generated training images with
``data.synthetic.task_region_fraction``, so that every image's mouth fits in
the reveal (DESIGN.md §4; docs/results.md, "The privacy study").

Neither the opening of the reveal nor the identity adversary of the hair
default (``opening=None``, ``adversary.identity_widths=()``): Φ learns the
mouth from random masks slowly (at chance for most of a run), and either
part stops the masker before Φ's utility signal exists. Measured on an Intel
Xeon, K = 0.11, seed 0, quick probes (docs/results.md, "Safe on every
run"): mouth recall 0.00 with the opening, 0.18 with the identity adversary,
0.48 with neither (task, retrained: 0.32 / 0.34 / 0.64). The mouth patch is
painted in identity-free colours; model selection still subtracts a fresh
re-identification probe's reading.
"""

import math

from jaxmask import config_files

from jaxmask.data import synthetic


def get_config(arg: str | None = None):
    config = config_files.load_sibling(__file__, "synth_hair.py", arg)
    config.task = "expression"
    config.num_classes = 3
    spec = synthetic.SynthFacesSpec(task="expression", image_size=config.image_size,
                                    num_identities=config.data.num_identities, seed=config.seed)
    # K covers every mouth region (the largest, rounded up to 0.01), as the hair config's 0.35 covers
    # every hair region: a region larger than k must leave task pixels in the hidden part.
    config.topk_fraction = math.ceil(100 * synthetic.task_region_fraction(spec, statistic="max")) / 100
    config.opening = None
    config.adversary.identity_widths = ()
    return config
