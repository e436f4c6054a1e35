"""``jaxmask export --workdir DIR --out BUNDLE``: a self-contained masker bundle from a checkpoint.

    jaxmask export --workdir /tmp/jaxmask/hair --out /tmp/jaxmask/hair_masker
    jaxmask export --workdir DIR --out BUNDLE --step 200 --with_classifier

Without ``--step``, the masker model selection kept (WORKDIR/selected, the
one `jaxmask run` evaluates) where the training ran selection, else the
latest checkpoint's; it says which. Writes the masker's params and batch
stats (Φ's too with --with_classifier, from a checkpoint; never the
optimiser state) and manifest.json (version, model, image size, K, value
mode, step, validation metrics, sha256 of every file). Load it with
``jaxmask.load_masker(BUNDLE)``; layout in jaxmask/export.py.
"""

from __future__ import annotations

# Imports inside functions are for start-up: `--help` and argument errors answer before JAX and the
# training stack load.

import os
import sys

from absl import flags

STOPPED = "no bundle was written (an existing one is kept); run the same command again"
PATH_FLAGS = ("workdir", "out")


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "training directory (holds checkpoints/ and metrics.jsonl)",
                        required=True)
    flags.DEFINE_string("out", None, "bundle directory to write (an existing bundle is replaced)",
                        required=True)
    flags.DEFINE_integer("step", None, "checkpoint step to export (default: the round model selection kept, "
                         "WORKDIR/selected, else the latest checkpoint)")
    flags.DEFINE_bool("with_classifier", False, "include Φ's params and batch stats")
    flags.DEFINE_bool("overwrite", False, "replace an existing bundle at --out (default: refuse)")
    flags.DEFINE_bool("accept_unverified_checkpoint", False,
                      "export a checkpoint that has no checksums/ (its contents cannot be verified; it is still "
                      "checked for NaN/inf)")
    flags.DEFINE_alias("with-classifier", "with_classifier")
    flags.DEFINE_alias("accept-unverified-checkpoint", "accept_unverified_checkpoint")


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    from jaxmask import checkpoint, export, files
    FLAGS = flags.FLAGS
    selected = os.path.join(FLAGS.workdir, export.SELECTED)
    from_selection = FLAGS.step is None and not FLAGS.with_classifier and os.path.isfile(
        os.path.join(selected, export.MANIFEST))
    try:
        files.check_tree(FLAGS.workdir, "--workdir")      # every file it reads is a regular file
        if from_selection:     # the masker `jaxmask run` evaluates: the selected bundle, verified, re-written
            kept = export.load_masker(selected)
            state = {"masker": {"params": kept.variables["params"], "batch_stats": kept.variables["batch_stats"]}}
            config, step, metrics = kept.config, kept.step, kept.metrics
        else:
            state, config, step = checkpoint.restore_for_export(
                FLAGS.workdir, FLAGS.step, accept_unverified=FLAGS.accept_unverified_checkpoint)
            metrics = checkpoint.last_validation_metrics(FLAGS.workdir, step)
        path = export.export_masker(state, config, FLAGS.out, step=step, metrics=metrics,
                                        with_classifier=FLAGS.with_classifier, overwrite=FLAGS.overwrite)
        bundle = export.load_masker(path)     # proves the bundle loads before saying so
    except (OSError, ValueError) as error:
        print(f"jaxmask export: error: {error}", file=sys.stderr)
        raise SystemExit(1)
    shown = "none in metrics.jsonl" if metrics is None else " ".join(
        f"{k}={v:.4f}" for k, v in metrics.items() if k not in ("step", "split") and isinstance(v, float))
    how = (f"the round model selection kept ({selected}; --step N exports a checkpoint instead)"
           if from_selection else f"the checkpoint of round {step}")
    print(f"exported the masker of round {step} to {path}\n  from {how}\n"
          f"  image {bundle.image_size}x{bundle.image_size}x{bundle.channels}, k={bundle.k} "
          f"({bundle.topk_fraction:g}), values={bundle.values}, classifier={'yes' if bundle.classifier else 'no'}\n"
          f"  validation: {shown}")
