r"""SynthFaces, task hair colour (4 classes): the embedded default experiment.

    jaxmask train --config configs/synth_hair.py --workdir /tmp/jaxmask/hair
    jaxmask train --config configs/synth_hair.py:smoke --workdir /tmp/jaxmask/smoke
    jaxmask train --config configs/synth_hair.py:paper --workdir /tmp/jaxmask/paper   # accelerator

Default: CPU scale (32×32 images, narrow networks) so `jaxmask run` finishes in
minutes on a laptop. ``paper``: the paper's 64×64 input with the default U-Net
widths (32, 64, 128, 256) for accelerators. ``smoke``: seconds, for tests.
K (topk_fraction) = 0.5 is a *cap*, not a quota (``reveal='cap'``): twice the
hair region's mean area (0.25), and the default game, ``minimal``, reveals
only what the task needs below it (docs/results.md, "The minimal reveal").
Under the exact-k games K must fit the task region: 0.35 lets every image's
hair fit (at 0.25, 48% do not), and every pixel beyond it is spent on the face.
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
    config.topk_fraction = 0.5          # a cap with reveal='cap' (the default), the exact count with 'exact'
    config.mask_values = "binary"    # binary | soft (the paper's literal formulation)
    config.mask_gradient = "straight_through"  # straight_through | exact (soft only)
    config.predictor_steps = 3
    config.obfuscator_steps = 1      # 0 = the non-adversarial baseline

    # The game (DESIGN.md §1 "Games"; jaxmask/games/table.py): what judges the two parts.
    #   paper:      Φ trained on the masker's reveals; the obfuscator fools that same Φ.
    #   complement: + separately trained complement adversaries Φ_c on the hidden part
    #               (the obfuscator fools them, not Φ) and, with pattern_weight > 0,
    #               mask-pattern adversaries Ψ on the 0/1 mask alone.
    #   realx:      complement, and Φ learns only from random exact-k masks (blobs,
    #               blocks, pixels), never the masker's: it has no decoder for a code.
    #   shuffled:   complement, and Φ learns from the masker's masks shuffled across the batch.
    #   minimal:    K is a cap (reveal='cap'); the revealed area is minimised subject to Φ's
    #               utility and the adversaries' hidden-part and mask-pattern constraints,
    #               with multipliers learned by dual ascent (jaxmask/games/minimal.py).
    #   minimal_phi: minimal, with Φ itself (random masks only) as the hidden part's judge.
    # Default minimal + mask channel: reveals the hair region alone at any loose K
    # (docs/results.md, "The minimal reveal"); realx + channel is the best exact-k game.
    config.game = "minimal"
    config.mask_channel = True       # classifiers see concat(part, its 0/1 mask): hidden ≠ black
    config.reveal = "cap"            # cap: at most k (top-k with m > cap_threshold) | exact: k pixels always
    config.cap_threshold = 0.5
    # reveal='cap': release only the opening×opening squares that fit in the capped reveal (jaxmask/topk.py
    # opening): pixels, lattices, lines and strips thinner than that cannot survive, so cannot carry a code.
    # An exact-k reveal keeps its count: there the opening does not apply (like cap_threshold).
    config.opening = 3               # None: no opening
    # The minimal game (jaxmask/games/minimal.py): minimise the revealed area subject to these
    # constraints, with learned multipliers (dual ascent on log λ, this rate per round).
    config.minimal = ml_collections.ConfigDict()
    config.minimal.utility_accuracy = 0.95   # Φ's accuracy on the reveal ≥ this
    config.minimal.hidden_margin = 0.05      # best complement adversary on the hidden part ≤ chance + this
    config.minimal.pattern_margin = 0.05     # best Ψ on the 0/1 mask ≤ chance + this
    config.minimal.dual_learning_rate = 0.2
    # Multipliers stay in [e^-2, e^2]: a privacy constraint the masker cannot meet holds its multiplier at
    # e^2 instead of outweighing the area without bound (at e^6 every run spent the whole cap).
    config.minimal.max_log_multiplier = 2.0
    config.minimal.boundary_weight = 0.0     # weight of the soft mask's boundary length beside its area
    config.minimal.channel_gradient = True   # False: the privacy gradient reaches the masker through pixels only
    config.minimal.judge_objective = "uniform"   # minimal_phi: uniform (CE(uniform, Φ)) | excess (Φ's p(y) above chance)
    config.minimal.min_mask_rate = 0.01      # Φ's random masks reveal a fraction log-uniform in [this, 1]
    # With identity adversaries (adversary.identity_widths): the best one's re-identification from the
    # release ≤ chance (1 / data.num_identities) + this.
    config.minimal.identity_margin = 0.05
    # The identity constraint outranks the label constraints: its log λ starts at identity_start and is
    # bounded by identity_max_log_multiplier (the others start at 0 and stop at max_log_multiplier): at a
    # loose cap, revealing more hides the label better, and a late identity multiplier let faces through.
    config.minimal.identity_start = 2.0
    config.minimal.identity_max_log_multiplier = 4.0
    config.adversary = ml_collections.ConfigDict()
    config.adversary.complement_widths = ((16, 32, 64, 64), (8, 16, 32, 32))   # one Φ_c per entry
    config.adversary.pattern_widths = ((16, 32, 64, 64), (8, 16, 32, 32))      # one Ψ per entry
    # Identity adversaries: re-identify the person (data.num_identities classes) from the release itself;
    # the masker hides the identity from them (datasets with identity labels: SynthFaces). () = none.
    config.adversary.identity_widths = ((16, 32, 64, 64),)
    config.adversary.hidden = 64
    config.adversary.learning_rate = 1e-3
    config.adversary.steps = 4       # adversary updates per round (all members, on the round's batches)
    # Early exit: a round's remaining adversary updates are skipped once every member reaches this
    # batch accuracy (None = never: always adversary.steps).
    config.adversary.exit_accuracy = ml_collections.config_dict.placeholder(float)
    # Plateau exit: ... once the weakest member's accuracy on the next (not yet trained on) batch rose
    # by less than this since the previous update (None = never).
    config.adversary.plateau = ml_collections.config_dict.placeholder(float)
    # Judges of the hidden part and the mask (adversaries, and Φ in minimal_phi) read their inputs
    # shifted by up to this many pixels and flipped at random: a pixel-exact pattern cannot fool them.
    config.adversary.jitter = 2
    config.adversary.reinit_every = 50   # rounds; re-initialise one member per ensemble in turn (None = never)
    config.adversary.pattern_weight = 1.0   # Ψ's term in the masker's privacy loss (0 = no Ψ)

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

    # Model selection (jaxmask/selection.py): at every evaluation, fresh probes fit on half the
    # validation reveals score the checkpoint; the best one's masker is kept as WORKDIR/selected.
    config.selection = ml_collections.ConfigDict()
    config.selection.probe_epochs = 4        # None: no selection (use the last checkpoint)
    config.selection.probe_widths = (16, 32, 32)
    config.selection.probe_batch_size = 50
    config.selection.max_images = 1000       # validation images masked and probed (0 = all)
    # A checkpoint whose release probe falls more than this below the same probe on the original
    # images is ineligible (revealing nothing leaks nothing); None: no floor.
    config.selection.utility_margin = 0.05
    # Where the validation split has identity labels: a fresh re-identification probe on the release (this
    # many epochs) and its advantage over chance subtracted from the score (a face in the release costs).
    config.selection.identity_probe = True
    config.selection.identity_epochs = 10

    # Loop.
    config.log_every = 25            # rounds
    config.eval_every = 20           # rounds; validation split (and model selection)
    config.checkpoint_every = 100    # rounds
    config.max_checkpoints = 2       # the newest ones kept (0: every checkpoint)

    if mode == "smoke":
        config.data.num_train, config.data.num_validation, config.data.num_test = 256, 64, 64
        config.masker_widths = (8, 16)
        config.phi_widths = (8, 8, 8, 8)
        config.phi_hidden = 16
        config.adversary.complement_widths = ((8, 8, 8, 8),)
        config.adversary.pattern_widths = ((8, 8, 8, 8),)
        config.adversary.identity_widths = ((8, 8, 8, 8),)
        config.adversary.hidden = 16
        config.adversary.steps = 1
        config.adversary.reinit_every = 3
        config.batch_size = 16
        config.num_rounds = 6
        config.log_every, config.eval_every, config.checkpoint_every = 2, 3, 3
        config.selection.probe_epochs, config.selection.probe_widths = 1, (4, 8)
        config.selection.probe_batch_size = 16
    elif mode == "paper":
        config.image_size = 64
        config.data.num_train, config.data.num_validation, config.data.num_test = 50000, 2000, 5000
        config.masker_widths = (32, 64, 128, 256)
        config.phi_widths = (32, 64, 128, 256)
        config.phi_hidden = 256
        config.adversary.complement_widths = ((32, 64, 128, 256), (16, 32, 64, 128))
        config.adversary.pattern_widths = ((32, 64, 128, 256), (16, 32, 64, 128))
        config.adversary.identity_widths = ((32, 64, 128, 256),)
        config.adversary.hidden = 256
        config.adversary.reinit_every = 500
        config.batch_size = 128
        config.num_rounds = 5000
        config.log_every, config.eval_every, config.checkpoint_every = 100, 1000, 1000
    return config
