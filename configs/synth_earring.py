r"""SynthFaces, task earring colour (4 classes): a task region of about 1% of the image.

    jaxmask run --config configs/synth_earring.py --workdir runs/synth_earring
    jaxmask train --config configs/synth_earring.py:smoke --workdir /tmp/jaxmask/smoke

Everything is configs/synth_hair.py (same arguments: '', 'smoke', 'paper')
except the task and K. The earring covers 1.03% of a 32 px image on average
(0.68–1.56%; ``data.synthetic.task_region_fraction``), so the label sits in
a small region a top-k quota would bury in surplus pixels. K = 0.08, eight
times the mean area, is a loose cap (the minimal game must leave the rest
hidden); ``--config.topk_fraction=0.02`` is the tight one (twice the mean).
"""

from jaxmask import config_files


def get_config(arg: str | None = None):
    config = config_files.load_sibling(__file__, "synth_hair.py", arg)
    config.task = "earring"
    config.num_classes = 4
    config.topk_fraction = 0.08
    return config
