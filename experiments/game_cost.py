r"""The cost of each game mode: compile time and time per training round, measured in one run.

    python experiments/game_cost.py --variants=paper,paper+channel,complement+channel,realx+channel
    python experiments/game_cost.py --config configs/synth_hair.py:paper --repeats=20   # accelerator scale

Every variant (experiments/variants.py names: game[+channel][+nonadv][+advN]...)
is built with the same config, compiled, then timed one round each in turn,
``--repeats`` times, so a load that comes and goes hits every variant alike;
the ratio to the first variant is what carries over to another machine.
Synthetic batches (uniform noise, random labels): the cost of a round does
not depend on the pixel values.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
from absl import app, flags

from variants import load_base, variant_config

flags.DEFINE_string("config", "configs/synth_hair.py", "experiment config file[:arg]")
flags.DEFINE_float("topk_fraction", None, "K (default: the config's)")
flags.DEFINE_list("variants", ["paper", "paper+channel", "complement+channel", "realx+channel",
                               "shuffled+channel", "realx+channel+nonadv"], "variants; the first is the reference")
flags.DEFINE_integer("repeats", 10, "timed rounds per variant (alternating)")
flags.DEFINE_string("json", "", "also write the results here")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from jaxmask import platform
    platform.configure_xla_defaults()          # before the first computation, as the CLI does
    import jax
    from jaxmask import build, parallel
    base = load_base(FLAGS.config, FLAGS.topk_fraction)
    shape = (base.image_size, base.image_size, base.channels)
    rng = np.random.default_rng(0)
    timed = {}
    for variant in FLAGS.variants:
        config = variant_config(base, variant, seed=0)
        built = parallel.wrap(build.from_config(config))
        steps_per_round = config.predictor_steps + config.obfuscator_steps
        batches = {"image": rng.random((steps_per_round, config.batch_size, *shape), dtype=np.float32),
                   "label": rng.integers(0, config.num_classes, (steps_per_round, config.batch_size)).astype(np.int32),
                   "identity": rng.integers(0, config.data.num_identities,
                                            (steps_per_round, config.batch_size)).astype(np.int32)}
        holder = [built.init_state(jax.random.key(0))]

        def call(built=built, batches=batches, holder=holder):
            state, metrics = built.play_round(holder[0], batches)
            holder[0] = jax.block_until_ready(state)
            jax.block_until_ready(metrics)

        start = time.perf_counter()
        call()
        timed[variant] = {"compile_s": time.perf_counter() - start, "call": call, "times": []}
        print(f"[cost] {variant}: first round (compile included) {timed[variant]['compile_s']:.1f} s", flush=True)
    for _ in range(FLAGS.repeats):
        for entry in timed.values():
            start = time.perf_counter()
            entry["call"]()
            entry["times"].append(time.perf_counter() - start)
    reference = statistics.median(next(iter(timed.values()))["times"])
    results = {}
    print(f"\n| variant | compile (s) | s / round (median of {FLAGS.repeats}) | × {FLAGS.variants[0]} |\n|---|---|---|---|")
    for variant, entry in timed.items():
        median = statistics.median(entry["times"])
        results[variant] = {"compile_s": entry["compile_s"], "median_s": median, "ratio": median / reference,
                            "times_s": entry["times"]}
        print(f"| {variant} | {entry['compile_s']:.1f} | {median:.3f} | {median / reference:.2f} |")
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"config": FLAGS.config, "devices": [str(d) for d in jax.devices()], **results}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
