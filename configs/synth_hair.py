r"""SynthFaces, task hair colour (4 classes): the embedded default experiment.

    jaxmask train --config configs/synth_hair.py --workdir /tmp/jaxmask/hair
    jaxmask train --config configs/synth_hair.py:smoke --workdir /tmp/jaxmask/smoke
    jaxmask train --config configs/synth_hair.py:paper --workdir /tmp/jaxmask/paper   # accelerator

Default: CPU scale (32×32 images, narrow networks) so `jaxmask run` finishes in
minutes on a laptop. ``paper``: the paper's 64×64 input with the default U-Net
widths (32, 64, 128, 256) for accelerators. ``smoke``: seconds, for tests.
K (topk_fraction) equals the hair region's mean area (≈ 0.25): privacy comes
from a K the task region fills (DESIGN.md §4).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    mode = arg or "default"
    if mode not in ("default", "smoke", "paper"):
        raise ValueError(f"unknown config argument {arg!r}: use '', 'smoke' or 'paper'")
    config = ml_collections.ConfigDict()
    config.seed = 0

    # Data (DESIGN.md §4).
    config.dataset = "synth_faces"   # synth_faces | celeba_hair | ferplus | image_folder
    config.task = "hair"             # synth_faces: hair | expression
    config.image_size = 32
    config.channels = 3
    config.num_classes = 4
    config.data = ml_collections.ConfigDict()
    config.data.num_identities = 20
    config.data.num_train = 8000
    config.data.num_validation = 1000
    config.data.num_test = 2000
    config.data.data_dir = ""        # tfds data dir (prepared datasets)
    config.data.manual_dir = ""      # raw files for `jaxmask prepare`
    config.data.worker_count = 0     # grain worker processes (0 = in process; unused with cache)
    config.data.cache = True         # decode each process's shard once into host memory (uint8)
    config.data.prefetch = 2         # batches read ahead

    # The method (DESIGN.md §1).
    config.topk_fraction = 0.25
    config.mask_values = "binary"    # binary | soft (the paper's literal formulation)
    config.mask_gradient = "straight_through"  # straight_through | exact (soft only)
    config.predictor_steps = 3
    config.obfuscator_steps = 1      # 0 = the non-adversarial baseline

    # Models.
    config.masker_widths = (16, 32, 64)
    config.phi_widths = (16, 32, 64, 64)
    config.phi_hidden = 64
    config.dtype = "float32"         # compute dtype: float32 | bfloat16

    # Optimisation (the paper gives none: Adam 1e-3 for both players).
    config.optimizer = "adam"        # adam | sgd (momentum 0.9)
    config.masker_learning_rate = 1e-3
    config.phi_learning_rate = 1e-3
    config.batch_size = 64           # global, split over devices and processes
    config.num_rounds = 100          # one round = predictor_steps + obfuscator_steps batches

    # Parallelism (DESIGN.md §3).
    config.parallel = "jit"          # jit | pmap
    config.num_devices = 0           # 0 = all visible devices

    # Loop.
    config.log_every = 25            # rounds
    config.eval_every = 100          # rounds; validation split
    config.checkpoint_every = 100    # rounds
    config.max_checkpoints = 2

    if mode == "smoke":
        config.data.num_train, config.data.num_validation, config.data.num_test = 256, 64, 64
        config.masker_widths = (8, 16)
        config.phi_widths = (8, 8, 8, 8)
        config.phi_hidden = 16
        config.batch_size = 16
        config.num_rounds = 6
        config.log_every, config.eval_every, config.checkpoint_every = 2, 3, 3
    elif mode == "paper":
        config.image_size = 64
        config.data.num_train, config.data.num_validation, config.data.num_test = 50000, 2000, 5000
        config.masker_widths = (32, 64, 128, 256)
        config.phi_widths = (32, 64, 128, 256)
        config.phi_hidden = 256
        config.batch_size = 128
        config.num_rounds = 5000
        config.log_every, config.eval_every, config.checkpoint_every = 100, 1000, 1000
    return config
