r"""SynthFaces, task mouth expression (3 classes: neutral, happy, surprised).

    jaxmask run --config configs/synth_expression.py --workdir runs/synth_expression
    jaxmask train --config configs/synth_expression.py --workdir /tmp/jaxmask/expression
    jaxmask train --config configs/synth_expression.py:smoke --workdir /tmp/jaxmask/smoke

Everything is configs/synth_hair.py (same arguments: '', 'smoke', 'paper')
except the task, the number of classes and K: topk_fraction is the mouth
region's mean area (≈ 0.09 of the image), measured on generated training
images with ``data.synthetic.task_region_fraction``, so that the task region
can fill the reveal budget (DESIGN.md §4).
"""

from jaxmask import config_files

from jaxmask.data import synthetic


def get_config(arg: str | None = None):
    config = config_files.load_sibling(__file__, "synth_hair.py", arg)
    config.task = "expression"
    config.num_classes = 3
    spec = synthetic.SynthFacesSpec(task="expression", image_size=config.image_size,
                                    num_identities=config.data.num_identities, seed=config.seed)
    config.topk_fraction = round(synthetic.task_region_fraction(spec), 3)
    return config
