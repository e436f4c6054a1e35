r"""The privacy study of docs/results.md: game modes × mask channel × K, several seeds, one evaluation.

    python experiments/privacy_study.py --out runs/study_hair_035 --topk_fraction=0.35 \
        --variants=paper,paper+channel,complement+channel,realx+channel --seeds=0,1,2

Each variant is trained (resumable: a finished bundle is reused), exported,
and all of them are evaluated together by ``jaxmask.evaluate`` (Original,
Block, Blur, Random-K, the Oracle and every probe), so they share one
evaluator, one attacker and the same test images. Writes OUT/report/
(report.md, metrics.json, figures) and prints the probe table.

Variants: ``name`` (trained for every --seeds) or ``name@seed``; a name is a game name (paper | complement | realx | shuffled), optionally
with ``+channel`` (mask channel on), ``+cap`` (reveal=cap with sparsity),
``+nopattern`` (no mask-pattern adversary), ``+nonadv`` (obfuscator_steps=0),
``+obfN`` (N privacy steps per round), ``+advN`` (N adversary updates per
round), ``+rN`` (N rounds).
"""

from __future__ import annotations

import json
import os
import time

from absl import app, flags

from variants import load_base, variant_config

flags.DEFINE_string("out", None, "study directory", required=True)
flags.DEFINE_string("config", "configs/synth_hair.py", "experiment config file[:arg]")
flags.DEFINE_list("variants", ["paper", "paper+channel", "complement+channel", "realx+channel"], "variants")
flags.DEFINE_list("seeds", ["0"], "training seeds")
flags.DEFINE_float("topk_fraction", None, "K (default: the config's)")
flags.DEFINE_integer("num_rounds", None, "rounds (default: the config's)")
flags.DEFINE_integer("eval_epochs", None, "epochs of every evaluation network (default: evaluate's)")
flags.DEFINE_integer("max_train", 0, "training images of the evaluation networks (0 = all)")
flags.DEFINE_bool("train_only", False, "train and export, no evaluation")
flags.DEFINE_list("probe_oracles", None, "probe the maskers and these Oracle rows only (default: every "
                  "masker and Oracle)")
flags.DEFINE_bool("final_too", False, "also evaluate each run's last checkpoint where selection picked another")
flags.DEFINE_string("report", "report", "report directory, relative to --out")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from jaxmask import platform
    platform.configure_xla_defaults()          # before the first computation, as the CLI does
    platform.configure_compilation_cache()
    from jaxmask import checkpoint, evaluate, export, report, train
    base = load_base(FLAGS.config, FLAGS.topk_fraction, FLAGS.num_rounds)
    out = os.path.abspath(FLAGS.out)
    os.makedirs(out, exist_ok=True)
    bundles, timings = {}, {}
    runs = [(v.split("@")[0], [int(v.split("@")[1])] if "@" in v else [int(s) for s in FLAGS.seeds])
            for v in FLAGS.variants]
    selection = {}
    for variant, seeds in runs:
        for seed in seeds:
            name = f"{variant} s{seed}"
            workdir = os.path.join(out, variant.replace("+", "_") + f"_s{seed}")
            bundle = os.path.join(workdir, "masker")
            if not os.path.exists(os.path.join(bundle, "manifest.json")):
                config = variant_config(base, variant, seed)
                start = time.time()
                result = train.train_and_evaluate(config, workdir)
                step = int(result["state"].step)
                export.export_masker(result["state"], config, bundle, step=step,
                                         metrics=checkpoint.last_validation_metrics(workdir, step))
                timings[name] = (time.time() - start) / max(step, 1)
                print(f"[study] {name}: {step} rounds, {timings[name]:.2f} s/round, "
                      f"validation {result['validation']}", flush=True)
            # The run's masker is the model selection's pick where selection ran (WORKDIR/selected),
            # else the last checkpoint's; both rounds' validation records go to selection.json.
            selected = os.path.join(workdir, "selected")
            chosen = selected if os.path.exists(os.path.join(selected, "manifest.json")) else bundle
            bundles[name] = export.load_masker(chosen)
            last = checkpoint.last_validation_metrics(workdir)
            selection[name] = {"selected": bundles[name].metrics, "final": last}
            if FLAGS.final_too and chosen != bundle and bundles[name].step != (last or {}).get("step"):
                bundles[f"{name} final"] = export.load_masker(bundle)
    with open(os.path.join(out, "selection.json"), "w") as f:
        json.dump(selection, f, indent=1)
    with open(os.path.join(out, "timings.json"), "a") as f:
        f.write(json.dumps(timings) + "\n")
    if FLAGS.train_only:
        return
    eval_config = evaluate.get_config()
    eval_config.k_sweep = ()
    eval_config.max_train = FLAGS.max_train
    eval_config.probe_random_k = False
    if FLAGS.eval_epochs:
        eval_config.network.epochs = FLAGS.eval_epochs
    if FLAGS.probe_oracles is not None:   # probe the maskers and these Oracle rows only
        eval_config.probe_releases = (*bundles, *FLAGS.probe_oracles)
    results = evaluate.evaluate(base, bundles, eval_config)
    paths = report.write_report(os.path.join(out, FLAGS.report), results)
    print(f"[study] report: {paths['report']}")


if __name__ == "__main__":
    app.run(main)
