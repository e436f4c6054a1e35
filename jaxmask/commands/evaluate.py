"""``jaxmask evaluate --models NAME=BUNDLE …``: every metric of exported maskers vs the baselines.

    jaxmask evaluate --models Ours=/tmp/hair/ours_masker --out /tmp/hair/report
    jaxmask evaluate --config configs/synth_expression.py \
        --models Non-adversarial=/tmp/expr/non_adversarial_masker,Ours=/tmp/expr/ours_masker \
        --out /tmp/expr/report --k-sweep 0.05,0.1,0.25,0.5
    jaxmask evaluate --models … --out … --eval.network.epochs=10 --eval.sweep_retrained

Trains the independent task evaluator and the identity attacker on the
experiment's original training images (progress lines while they train),
evaluates Original, Block, Gaussian Blur, Random-K and each model on the test
split, and writes report.md, metrics.json, examples.png and
privacy_utility.png to --out. Evaluation settings: ``jaxmask.evaluate.get_config``
(override with --eval.field=value). Metrics and protocols: jaxmask/evaluate.py.
"""

from __future__ import annotations

# Imports inside functions are for start-up: `--help` and argument errors answer before JAX and the
# training stack load.

import sys

from absl import flags
from ml_collections import config_flags

from jaxmask.commands._config import define_config_flag

FLAGS = flags.FLAGS


def define_flags() -> None:
    from jaxmask import evaluate
    define_config_flag()
    flags.DEFINE_multi_string("models", [], "NAME=BUNDLE pairs (comma-separated or repeated), in "
                              "table order, e.g. Non-adversarial=runs/x/na_masker,Ours=runs/x/masker")
    flags.DEFINE_string("out", None, "directory for report.md, metrics.json and the figures", required=True)
    flags.DEFINE_list("k_sweep", None, "K values of the privacy–utility sweep (default: --eval.k_sweep)")
    flags.DEFINE_alias("k-sweep", "k_sweep")
    flags.DEFINE_bool("overwrite", False, "replace the report files of an earlier evaluation in --out "
                      "(default: refuse)")
    config_flags.DEFINE_config_dict("eval", evaluate.get_config(), "evaluation settings", lock_config=True)


STOPPED = "the report was not written (an earlier one is kept); run the same command again"
PATH_FLAGS = ("out",)


def parse_models(values: list[str]) -> dict[str, str]:
    """['A=p,B=q', 'C=r'] → {'A': 'p', 'B': 'q', 'C': 'r'} (order kept; each name a row of its own in the
    report: jaxmask.report.check_model_names)."""
    from jaxmask import report
    pairs: list[tuple[str, str]] = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            name, sep, path = item.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"--models {item!r}: expected NAME=BUNDLE_DIR (the bundle's path is empty)"
                                 if sep and name.strip() else f"--models {item!r}: expected NAME=BUNDLE_DIR")
            pairs.append((name.strip(), path.strip()))
    report.check_model_names([name for name, _ in pairs], "--models")
    return dict(pairs)


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    from jaxmask import config_checks, evaluate, report, workdir
    eval_config = FLAGS.eval
    try:
        # Every check that needs no data, before the evaluation (minutes): the settings, the model
        # names, an --out that cannot be written (it would lose the results) or holds another report.
        if FLAGS.k_sweep:
            eval_config.k_sweep = config_checks.parse_k_sweep(FLAGS.k_sweep)
        models = parse_models(FLAGS.models)
        config_checks.check_eval_config(eval_config, FLAGS.config, list(models))
        config_checks.check_writable_folder(FLAGS.out, "--out")
        with workdir.lock_folder(FLAGS.out, "jaxmask evaluate", "--out") as lock:   # one writer per --out
            lock.remove_journaled()       # what a killed evaluation left (its journal), nothing else
            report.check_report_folder(FLAGS.out, FLAGS.overwrite)
            paths = evaluate.evaluate_bundles(FLAGS.config, models, FLAGS.out, eval_config)
    except (OSError, ValueError, ImportError) as error:
        print(f"jaxmask evaluate: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"report: {paths['report']}\nmetrics: {paths['metrics']}")
