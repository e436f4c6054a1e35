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
    return config
