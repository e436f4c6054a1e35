r"""Your own images: ``root/<split>/<label>/*.png|jpg`` (+ optional identities.csv).

    jaxmask prepare --dataset image_folder --manual_dir ~/my_images --data_dir ~/tfds
    jaxmask train --config configs/image_folder.py --config.num_classes 5 \
        --config.data.data_dir ~/tfds --workdir /tmp/jaxmask/mine
    # seconds, on the tiny fixture that `python tests/data_fixtures.py /tmp/fx` prepares (2 classes):
    jaxmask train --config configs/image_folder.py:smoke --config.data.data_dir /tmp/fx/tfds --workdir /tmp/smoke

Set ``num_classes`` to the number of label folders (training checks it against
the prepared dataset). Images are centre-cropped to squares and resized to
``image_size``; the paper's network sizes are the default. Every other key is
configs/synth_hair.py's ``paper`` (or ``smoke``) value. Reads the tfds variant
``image_folder/<image_size>px_<channels>ch``.
"""

from jaxmask import config_files


def get_config(arg: str | None = None):
    mode = arg or "default"
    if mode not in ("default", "smoke"):
        raise ValueError(f"unknown config argument {arg!r}: use '' or 'smoke'")
    config = config_files.load_sibling(__file__, "synth_hair.py", "smoke" if mode == "smoke" else "paper")
    config.dataset = "image_folder"
    config.task = "folder"   # for the record only: labels are the folder names
    config.num_classes = 2   # set to your number of label folders
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
        # The tiny fixture: 32×32, cat/dog, 20 / 8 / 8 images.
        config.image_size = 32
        config.masker_widths = (8, 16)
        config.phi_widths = (8, 8, 8, 8)
        config.phi_hidden = 16
        config.batch_size = 8
        config.data.worker_count = 0
    return config
