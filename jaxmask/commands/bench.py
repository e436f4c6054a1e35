"""``jaxmask bench``: throughput of the round, the release path and top-K (optionally vs PyTorch).

    jaxmask bench                                      # paper model, batch 64, float32
    jaxmask bench --batch_size=64,256 --dtype=float32,bfloat16 --json=/tmp/bench.json
    jaxmask bench --compare-torch                      # + the PyTorch reference, alternating
    jaxmask bench --config=configs/synth_hair.py:smoke --repeats=5

Without --config the model is configs/synth_hair.py:paper (64×64, widths
(32, 64, 128, 256)) at batch 64; with it, the config's model and batch, and
the flags below override single fields. Timings and their method:
jaxmask/bench.py; results and how they were taken: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import sys

from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    config_flags.DEFINE_config_file(
        "config", None, "Optional config file (configs/x.py[:arg]) giving the model and batch.",
        lock_config=True)
    flags.DEFINE_list("batch_size", None, "Global batch size(s), e.g. 64,256 (default: config's, or 64).")
    flags.DEFINE_list("dtype", None, "Compute dtype(s): float32, bfloat16 (default: config's, or float32).")
    flags.DEFINE_integer("image_size", None, "Image height = width (default: config's, or 64).")
    flags.DEFINE_list("widths", None, "Masker and Φ widths, e.g. 32,64,128,256.")
    flags.DEFINE_list("masker_widths", None, "Masker U-Net widths (overrides --widths).")
    flags.DEFINE_list("phi_widths", None, "Φ widths (overrides --widths).")
    flags.DEFINE_integer("phi_hidden", None, "Φ hidden units.")
    flags.DEFINE_list("benchmarks", ["round", "masker", "topk"], "Which of round, masker, topk to time.")
    flags.DEFINE_integer("warmup", 1, "Untimed calls before timing (after compilation).")
    flags.DEFINE_integer("repeats", 5, "Timed calls per benchmark (median reported; at least 5).")
    flags.DEFINE_bool("compare_torch", False,
                      "Also time benchmarks/torch_reference.py, alternating with jaxmask, and check "
                      "that both compute the same function on the same weights.")
    flags.DEFINE_alias("compare-torch", "compare_torch")
    flags.DEFINE_list("torch_variants", ["eager"],
                      "PyTorch variants with --compare_torch: eager (NCHW), eager_cl (channels_last), "
                      "compile / compile_cl (torch.compile + fused Adam, NCHW / channels_last).")
    flags.DEFINE_bool("check", True, "With --compare_torch: run the one-step equivalence check first.")
    flags.DEFINE_string("torch_reference", None, "Path of torch_reference.py (default: the checkout's).")
    flags.DEFINE_bool("sgemm", None, "Time numpy's sgemm as the peak (default: on CPU only).")
    flags.DEFINE_string("json", None, "Write the full report as JSON here ('-' for stdout).")
    flags.DEFINE_integer("seed", 0, "Seed of the weights and synthetic batches.")


def _ints(values):
    return tuple(int(v) for v in values) if values else None


def specs():
    """The ``Spec``s the flags ask for: one per (batch size, dtype)."""
    from jaxmask import bench
    config = FLAGS.config
    base = bench.Spec.from_config(config) if config is not None else bench.Spec()
    widths = _ints(FLAGS.widths)
    overrides = dict(image_size=FLAGS.image_size, phi_hidden=FLAGS.phi_hidden,
                     masker_widths=_ints(FLAGS.masker_widths) or widths,
                     phi_widths=_ints(FLAGS.phi_widths) or widths)
    base = bench.Spec(**{**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    batch_sizes = _ints(FLAGS.batch_size) or (base.batch_size,)
    dtypes = tuple(FLAGS.dtype) if FLAGS.dtype else (base.dtype,)
    return [bench.Spec(**{**base.__dict__, "batch_size": b, "dtype": d})
            for b in batch_sizes for d in dtypes]


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"jaxmask bench: unexpected arguments {argv[1:]}")
    if FLAGS.repeats < 5:
        raise SystemExit(f"jaxmask bench: --repeats={FLAGS.repeats}: the steady-state time is a "
                         "median of at least 5 repeats")
    unknown = set(FLAGS.benchmarks) - {"round", "masker", "topk"}
    if unknown:
        raise SystemExit(f"--benchmarks: unknown {sorted(unknown)}; choose from round, masker, topk")
    from jaxmask import platform
    platform.configure_xla_defaults()   # idempotent; cli.main normally did it already
    from jaxmask import bench
    torch_reference = bench.load_torch_reference(FLAGS.torch_reference) if FLAGS.compare_torch else None
    report = {"environment": bench.environment(), "argv": sys.argv, "runs": []}
    for spec in specs():
        report["runs"].append(bench.run_spec(
            spec, benchmarks=tuple(FLAGS.benchmarks), warmup=FLAGS.warmup, repeats=FLAGS.repeats,
            torch_reference=torch_reference, torch_variants=tuple(FLAGS.torch_variants),
            check=FLAGS.check, sgemm=FLAGS.sgemm, seed=FLAGS.seed))
        print(bench.format_table({"runs": report["runs"][-1:]}), flush=True)
    if FLAGS.json == "-":
        print(json.dumps(report, indent=1))
    elif FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(report, f, indent=1)
    failed = [r["spec"] for r in report["runs"] if r["equivalence"] and not r["equivalence"]["ok"]]
    if failed:
        raise SystemExit(f"jaxmask bench: PyTorch reference does not match jaxmask for {failed}")
