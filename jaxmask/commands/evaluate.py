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

import os
import sys
import time

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
# What write_report writes into --out.
REPORT_FILES = ("report.md", "metrics.json", "examples.png", "privacy_utility.png")


def check_report_folder(out: str, overwrite: bool, flag: str = "--out") -> None:
    """Refuses (up front) an --out holding report files of an earlier evaluation, unless ``overwrite``."""
    found = [name for name in REPORT_FILES if os.path.lexists(os.path.join(out, name))]
    if found and not overwrite:
        raise ValueError(f"{flag} {out} holds the report of an earlier evaluation ({', '.join(found)}): pass "
                         f"--overwrite to replace it, or another {flag}")


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


def check_models(config, bundles: dict) -> None:
    """Refuses a bundle trained on another dataset, task or image shape than --config."""
    for name, bundle in bundles.items():
        trained = bundle.config
        for field in ("dataset", "task", "image_size", "channels"):
            if trained.get(field) != config[field]:
                raise ValueError(
                    f"model {name!r} ({bundle.path}) was trained with {field}={trained.get(field)!r} but "
                    f"--config has {field}={config[field]!r}: pass the config it was trained with")
        if bundle.topk_fraction != config.topk_fraction:
            print(f"note: model {name!r} was trained at K={bundle.topk_fraction:g}; Random-K uses the "
                  f"config's K={config.topk_fraction:g}", file=sys.stderr)


def run_evaluation(config, model_paths: dict[str, str], out: str, eval_config) -> dict[str, str]:
    """Loads the bundles, evaluates, writes the report; returns the written paths."""
    import jaxmask
    from jaxmask import evaluate, report
    bundles = {name: jaxmask.load_masker(path) for name, path in model_paths.items()}
    check_models(config, bundles)
    start = time.time()

    def progress(line: str) -> None:
        print(f"[evaluate {time.time() - start:5.0f} s] {line}", flush=True)

    results = evaluate.evaluate(config, bundles, eval_config, progress)
    return report.write_report(out, results)


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    from jaxmask import validation, workdir
    eval_config = FLAGS.eval
    try:
        # Every check that needs no data, before the evaluation (minutes): the settings, the model
        # names, an --out that cannot be written (it would lose the results) or holds another report.
        if FLAGS.k_sweep:
            eval_config.k_sweep = validation.parse_k_sweep(FLAGS.k_sweep)
        models = parse_models(FLAGS.models)
        validation.check_eval_config(eval_config, FLAGS.config, list(models))
        validation.check_writable_folder(FLAGS.out, "--out")
        with workdir.lock_folder(FLAGS.out, "jaxmask evaluate", "--out") as lock:   # one writer per --out
            lock.remove_journaled()       # what a killed evaluation left (its journal), nothing else
            check_report_folder(FLAGS.out, FLAGS.overwrite)
            paths = run_evaluation(FLAGS.config, models, FLAGS.out, eval_config)
    except (OSError, ValueError, ImportError) as error:
        print(f"jaxmask evaluate: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"report: {paths['report']}\nmetrics: {paths['metrics']}")
