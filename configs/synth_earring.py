r"""SynthFaces, task earring colour (4 classes): a task region of about 1% of the image.

    jaxmask run --config configs/synth_earring.py --workdir runs/synth_earring
    jaxmask train --config configs/synth_earring.py:smoke --workdir /tmp/jaxmask/smoke

Everything is configs/synth_hair.py (same arguments: '', 'smoke', 'paper')
except the task and K. The earring covers 1.03% of a 32 px image on average
(0.68–1.56%; ``data.synthetic.task_region_fraction``), so the label sits in
a small region a top-k quota would bury in surplus pixels. K = 0.08, eight
times the mean area, is a loose cap (the minimal game must leave the rest
hidden); ``--config.topk_fraction=0.02`` is the tight one (twice the mean).

No opening of the reveal (``opening=None``; the hair default opens it by a
3×3 square so that no code of isolated pixels or thin lines can be released):
an earring disc of 7–16 pixels, often a five-pixel cross, holds few or no
3×3 squares, and the masker, whose gradient reaches each square through its
lowest pixel, never learned to reveal it. Measured at K = 0.08 on an Intel
Xeon (docs/results.md, "Safe on every run"): with the opening, recall 0.06
and 0.02 (seeds 0, 1), task at chance; without it, on the same seed, 0.84.
Without the opening the release can again draw a code; the mask-alone probe
in the earring study says what it carries.
"""

from jaxmask import config_files


def get_config(arg: str | None = None):
    config = config_files.load_sibling(__file__, "synth_hair.py", arg)
    config.task = "earring"
    config.num_classes = 4
    config.topk_fraction = 0.08
    config.opening = None
    return config
