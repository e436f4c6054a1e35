"""``jaxmask run``: the main job — train ours and the non-adversarial baseline, export, evaluate, report.

    jaxmask run --workdir runs/synth_hair                    # embedded default: SynthFaces hair
    jaxmask run --config configs/synth_expression.py --workdir runs/synth_expression
    jaxmask run --config configs/synth_hair.py:smoke --workdir /tmp/smoke --eval.network.epochs=1

Two schedules. The default (quick: 396 s on 2 quiet CPU cores for SynthFaces
hair) trains both maskers in full but trains the evaluation networks on the
first 4000 training images (the study's protocol in docs/results.md) and runs
the three fresh-network probes and the mask swap on Ours only. Probes trained
on fewer images are weaker, so ``--full`` (~15 min, estimated) uses every
training image and probes every masker and the Oracle. An explicit
``--eval.<field>`` wins over either.

Steps, each resumable (a finished training is not repeated on a rerun):

1. ``train.train_and_evaluate(config, WORKDIR/ours)``;
2. the same config with ``obfuscator_steps=0`` (the paper's non-adversarial
   baseline: same model, same K, no adversary) in WORKDIR/non_adversarial;
3. both exported as masker bundles (WORKDIR/*/masker);
4. ``jaxmask evaluate`` of both against Original, Block, Gaussian Blur and
   Random-K, written to WORKDIR/report (report.md, metrics.json, figures).

``--ablation`` also trains the paper's game (Φ judges both parts, no mask
channel; adversarial and not) and the paper's soft-value formulation with both
gradient rules, each adversarial and not (six more maskers, same config
otherwise), so the report's "Maskers" table is the game × value mode ×
gradient rule × adversary ablation of DESIGN.md §1 (several times the run time).

It prints where the report is, and its main table.
"""

from __future__ import annotations

# Imports inside functions are for start-up: `--help` and argument errors answer before JAX and the
# training stack load.

import os
import sys
import time

from absl import flags, logging
from ml_collections import config_flags

from jaxmask.commands._config import define_config_flag

FLAGS = flags.FLAGS
OURS, NON_ADVERSARIAL = "Ours", "Non-adversarial"
# The default schedule's evaluation (see the module doc); --full keeps jaxmask.evaluate's defaults.
QUICK_EVAL = {"max_train": 4000, "probe_max_train": 4000, "probe_releases": (OURS,)}
PAPER_GAME = {"game": "paper", "mask_channel": False, "reveal": "exact"}
# Soft values scale the released pixels by m: an exact-k reveal of the realx game (a cap is a 0/1 mask).
SOFT = {"game": "realx", "reveal": "exact"}
# --ablation: (report name, workdir, adversarial, config overrides)
ABLATION = (("Paper game", "paper", True, PAPER_GAME),
            ("Paper game, non-adversarial", "paper_non_adversarial", False, PAPER_GAME),
            ("Soft, straight-through", "soft_st", True,
             {**SOFT, "mask_values": "soft", "mask_gradient": "straight_through"}),
            ("Soft, straight-through, non-adversarial", "soft_st_non_adversarial", False,
             {**SOFT, "mask_values": "soft", "mask_gradient": "straight_through"}),
            ("Soft, exact", "soft_exact", True, {**SOFT, "mask_values": "soft", "mask_gradient": "exact"}),
            ("Soft, exact, non-adversarial", "soft_exact_non_adversarial", False,
             {**SOFT, "mask_values": "soft", "mask_gradient": "exact"}))


def define_flags() -> None:
    from jaxmask import evaluate
    define_config_flag()
    flags.DEFINE_string("workdir", None, "run directory (default: runs/<config file name>)")
    flags.DEFINE_list("k_sweep", None, "K values of the privacy–utility sweep (default: --eval.k_sweep)")
    flags.DEFINE_alias("k-sweep", "k_sweep")
    flags.DEFINE_bool("ablation", False, "also train and evaluate the paper's game and the soft-value maskers "
                      "(both gradient rules), adversarial and not: the game and value-mode ablation")
    flags.DEFINE_bool("overwrite", False, "replace the bundles and the report of an earlier run in --workdir "
                      "(default: refuse; a finished masker of the same round is reused, not rewritten)")
    flags.DEFINE_bool("full", False, "the full evaluation: every training image for every evaluation network, "
                      "probes on every masker and the Oracle (about twice the time); default: the quick schedule "
                      f"({', '.join(f'--eval.{k}={v}' for k, v in QUICK_EVAL.items())})")
    config_flags.DEFINE_config_dict("eval", evaluate.get_config(), "evaluation settings", lock_config=True)


def default_workdir() -> str:
    """runs/<config file name without .py and :arg>, e.g. runs/synth_hair."""
    path = config_flags.get_config_filename(FLAGS["config"]) or ""
    name = os.path.splitext(os.path.basename(path.split(":")[0]))[0]
    return os.path.join("runs", name or "experiment")


STOPPED = "what finished is kept (checkpoints, bundles); run the same command again to resume"
PATH_FLAGS = ("workdir",)


def _bundle_step(bundle: str) -> int | None:
    """The round an existing bundle was exported at (None: no bundle there)."""
    import json
    try:
        with open(os.path.join(bundle, "manifest.json")) as f:
            return int(json.load(f)["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None if not os.path.lexists(bundle) else -1


def check_outputs(workdir: str, runs, overwrite: bool) -> None:
    """Up front: without --overwrite, nothing of an earlier run is replaced (its bundles, its report)."""
    from jaxmask import report
    if overwrite:
        return
    for _, run_config, subdir, _ in runs:
        bundle = os.path.join(workdir, subdir, "masker")
        step = _bundle_step(bundle)
        if step is not None and step != run_config.num_rounds:
            raise ValueError(f"{bundle} holds a masker of round {step}, which this run (num_rounds="
                             f"{run_config.num_rounds}) would replace: pass --overwrite, or another --workdir")
    report.check_report_folder(os.path.join(workdir, "report"), overwrite, "--workdir")


def train_and_export(recipe, workdir: str, overwrite: bool = False) -> str:
    """Trains ``recipe.config`` in ``workdir`` (resuming), exports its last masker as WORKDIR/masker and
    returns the bundle to evaluate: WORKDIR/selected (the model selection's pick) where selection is on.

    A last-round bundle already there is reused (it is verified when loaded), not rewritten.
    """
    from jaxmask import checkpoint, export, train
    config = recipe.config
    result = train.train_and_evaluate(config, workdir, recipe=recipe)
    if result.get("stopped_by"):
        # The training saved a checkpoint and stopped: one line, and 128 + the signal, as every stop.
        import signal
        reason = result["stopped_by"]
        print(f"jaxmask run: stopped by {reason} while training in {workdir} (a checkpoint was saved): "
              f"{STOPPED}", file=sys.stderr)
        raise SystemExit(128 + getattr(signal, reason, signal.SIGTERM))
    step = int(result["state"].step)
    bundle = os.path.join(workdir, "masker")
    if _bundle_step(bundle) == step and not overwrite:
        return result.get("selected") or bundle
    metrics = checkpoint.last_validation_metrics(workdir, step)
    last = export.export_masker(result["state"], config, bundle, step=step, metrics=metrics,
                                    overwrite=overwrite)
    # With model selection on, the run's masker is the best-scoring checkpoint's (jaxmask/selection.py),
    # not the last one's (WORKDIR/masker, kept beside it).
    return result.get("selected") or last


def schedule(eval_config, full: bool, given: dict):
    """``eval_config`` with the quick schedule's settings, unless ``full``, where ``given`` (the
    fields set on the command line) does not name them."""
    if not full:
        for key, value in QUICK_EVAL.items():
            if key not in given:
                eval_config[key] = value
    return eval_config


def variant(config, adversarial: bool, **overrides):
    """``config`` with the adversary on (its own obfuscator_steps) or off, and ``overrides`` set
    (e.g. ``game="paper"``, ``mask_values="soft"``)."""
    out = config.copy_and_resolve_references()
    if not adversarial:
        out.obfuscator_steps = 0
    for key, value in overrides.items():
        setattr(out, key, value)
    return out


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    from jaxmask import build, config_checks, evaluate, export, files, workdir as workdir_lib
    start = time.time()
    config = FLAGS.config
    workdir = os.path.abspath(FLAGS.workdir or default_workdir())
    runs = [(OURS, config, "ours"), (NON_ADVERSARIAL, variant(config, adversarial=False), "non_adversarial")]
    if FLAGS.ablation:
        runs += [(name, variant(config, adversarial, **overrides), subdir)
                 for name, subdir, adversarial, overrides in ABLATION]
    eval_config = schedule(FLAGS.eval, FLAGS.full, config_flags.get_override_values(FLAGS["eval"]))
    # Every check that needs no data, before two trainings and an evaluation (tens of minutes).
    try:
        for _, run_config, _ in runs:
            build.check_training_config(run_config)
        config_checks.check_folder_argument(workdir, "--workdir")
        files.check_tree(workdir, "--workdir")      # resumes and reused bundles read its files
        if FLAGS.k_sweep:
            eval_config.k_sweep = config_checks.parse_k_sweep(FLAGS.k_sweep)
        config_checks.check_eval_config(eval_config, config, [name for name, _, _ in runs])
        # Each masker's method and state shapes, built once (the model builds: eval_shape) and handed down.
        runs = [(name, run_config, subdir, build.from_config(run_config)) for name, run_config, subdir in runs]
        os.makedirs(workdir, exist_ok=True)
        lock = workdir_lib.lock_folder(workdir, "jaxmask run", "--workdir")    # one run per workdir
        lock.__enter__()
        lock.remove_journaled()       # what a killed run left (its journal), nothing else
    except (OSError, ValueError) as error:
        raise SystemExit(f"jaxmask run: error: {error}") from None
    bundles = {}
    try:
        check_outputs(workdir, runs, FLAGS.overwrite)
        for name, run_config, subdir, recipe in runs:
            print(f"[run {time.time() - start:5.0f} s] training {name} "
                  f"(game={run_config.game}, mask_channel={run_config.mask_channel}, {run_config.num_rounds} "
                  f"rounds, obfuscator_steps={run_config.obfuscator_steps}) "
                  f"in {os.path.join(workdir, subdir)}", flush=True)
            bundles[name] = train_and_export(recipe, os.path.join(workdir, subdir), FLAGS.overwrite)
            chosen = export.read_manifest(bundles[name])
            score = (chosen.get("metrics") or {}).get("selection_score")
            print(f"[run {time.time() - start:5.0f} s] {name}: the masker of round {chosen['step']}"
                  + ("" if score is None else f" (selected: score {score:.3f})") + f": {bundles[name]}", flush=True)
        # Non-adversarial first: the report lists maskers in this order.
        order = [NON_ADVERSARIAL, OURS] + [name for name, *_ in ABLATION if name in bundles]
        paths = evaluate.evaluate_bundles(
            config, {name: bundles[name] for name in order}, os.path.join(workdir, "report"), eval_config)
    except (FloatingPointError, OSError, ValueError, ImportError) as error:
        logging.error("%s", error)
        print(f"jaxmask run: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        lock.__exit__(None, None, None)
    import json
    from jaxmask import report
    with open(paths["report"]) as f:
        text = f.read()
    table = text.split("## Main table", 1)[-1].split("\n\n")[1] if "## Main table" in text else ""
    with open(paths["metrics"]) as f:
        criteria = report.checks(json.load(f), OURS, NON_ADVERSARIAL)
    lines = [f"  [{'x' if ok else ' '}] {criterion}: {numbers}" for criterion, numbers, ok in criteria]
    print(f"\n{table}\n\nchecks (Ours):\n" + "\n".join(lines) +
          f"\n\njaxmask run finished in {time.time() - start:.0f} s\nreport: {paths['report']}\n"
          f"metrics: {paths['metrics']}\nfigures: {paths['grid']} {paths['plot'] or ''}".rstrip(), flush=True)
