r"""CelebA hair colour (black / blond / brown / gray), the paper's first benchmark.

    jaxmask prepare --dataset celeba_hair --manual_dir ~/raw/celeba --data_dir ~/tfds
    jaxmask train --config configs/celeba_hair.py --config.data.data_dir ~/tfds --workdir /tmp/jaxmask/celeba
    # seconds, on the tiny fixture that `python tests/data_fixtures.py /tmp/fx` prepares:
    jaxmask train --config configs/celeba_hair.py:smoke --config.data.data_dir /tmp/fx/tfds --workdir /tmp/smoke

The paper's settings: 64×64 RGB input (centre square crop of the aligned
image), U-Net widths (32, 64, 128, 256), Φ = 4 conv blocks. Every other key is
configs/synth_hair.py's ``paper`` (or ``smoke``) value, so all configs share
one key set; the synth_faces-only keys (data.num_*) are unused here.
Reads the tfds variant ``celeba_hair/64px_3ch`` (``<image_size>px_<channels>ch``).
"""

from jaxmask import config_files


def get_config(arg: str | None = None):
    mode = arg or "default"
    if mode not in ("default", "smoke"):
        raise ValueError(f"unknown config argument {arg!r}: use '' or 'smoke'")
    config = config_files.load_sibling(__file__, "synth_hair.py", "smoke" if mode == "smoke" else "paper")
    config.dataset = "celeba_hair"
    config.task = "hair"
    config.num_classes = 4
    config.channels = 3
    config.image_size = 64
    config.masker_widths = (32, 64, 128, 256)
    config.phi_widths = (32, 64, 128, 256)
    config.phi_hidden = 256
    # PNG decoding is the input cost: one process reads ~2k img/s, 8 grain
    # workers ~11k img/s on a 16-core host (benchmarks/input_pipeline.py).
    config.data.worker_count = 8
    # Identity adversaries need identity labels of data.num_identities classes (SynthFaces' own).
    config.adversary.identity_widths = ()
    if mode == "smoke":
        # The tiny fixture: 32×32, 24 / 8 / 8 images; batches must fit the validation split.
        config.image_size = 32
        config.masker_widths = (8, 16)
        config.phi_widths = (8, 8, 8, 8)
        config.phi_hidden = 16
        config.batch_size = 8
        config.data.worker_count = 0
    return config
