"""``jaxmask bench``: throughput of the round, the release path and top-K (optionally vs PyTorch).

    jaxmask bench                                      # paper model, batch 64, float32
    jaxmask bench --batch_size=64,256 --dtype=float32,bfloat16 --json=/tmp/bench.json
    jaxmask bench --compare-torch                      # + the PyTorch reference, alternating
    jaxmask bench --config=configs/synth_hair.py:smoke --repeats=5
    jaxmask bench --end_to_end                         # input pipeline, round, train end to end

Without --config the model is configs/synth_hair.py:paper (64×64, widths
(32, 64, 128, 256)) at batch 64; with it, the config's model and batch, and
the flags below override single fields. Timings and their method:
jaxmask/bench.py; results and how they were taken: benchmarks/RESULTS.md.

--end_to_end (jaxmask/bench_e2e.py) instead measures, in this one process,
the input pipeline alone, the compiled round alone and ``train_and_evaluate``
on a prepared dataset (synth_faces: prepared under --data_dir if missing),
and prints end-to-end / round.
"""

from __future__ import annotations

# Imports inside functions are for start-up: `--help` and argument errors answer before JAX and the
# training stack load.

import json
import os
import sys

from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
PATH_FLAGS = ("json", "torch_reference", "data_dir")


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
    flags.DEFINE_bool("end_to_end", False, "Input pipeline, round and train_and_evaluate on a prepared "
                      "dataset, with the ratio end-to-end / round (jaxmask/bench_e2e.py).")
    flags.DEFINE_integer("rounds", 4, "--end_to_end: rounds timed after the first (compiling) one.")
    flags.DEFINE_string("data_dir", None, "--end_to_end: tfds data dir (default: the config's, else "
                        "a jaxmask_bench_tfds folder in the temp dir).")
    flags.DEFINE_integer("num_train", 4096, "--end_to_end on synth_faces: train images to prepare.")
    flags.DEFINE_list("workers", ["0", "2"], "--end_to_end: grain worker counts for the per-record path.")
    flags.DEFINE_float("input_seconds", 3.0, "--end_to_end: timing window per input measurement.")


def write_json(report) -> None:
    """--json: the report to stdout ('-') or to a file, written to a temporary name and renamed."""
    text = json.dumps(report, indent=1, default=str)
    if FLAGS.json == "-":
        print(text)
    elif FLAGS.json:
        from jaxmask import files

        def save(tmp):
            with open(tmp, "w") as f:
                f.write(text + "\n")
        files.write_atomically(FLAGS.json, save)


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


def end_to_end_config():
    """The config --end_to_end runs: --config (or configs/synth_hair.py:paper at batch 64) on tfds."""
    import os
    import tempfile

    from jaxmask import config_files
    config = FLAGS.config
    if config is None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        config = config_files.load(os.path.join(root, "configs", "synth_hair.py"), "paper")
        config.batch_size = 64
    config = config.copy_and_resolve_references()
    if FLAGS.batch_size:
        config.batch_size = int(FLAGS.batch_size[0])
    if FLAGS.dtype:
        config.dtype = FLAGS.dtype[0]
    config.data.data_dir = (FLAGS.data_dir or config.data.data_dir
                            or os.path.join(tempfile.gettempdir(), "jaxmask_bench_tfds"))
    if config.dataset == "synth_faces":
        config.data.num_train = FLAGS.num_train
    return config


def check_arguments() -> None:
    """Before anything is imported or allocated: the output is a file (or new), the sizes fit memory."""
    from jaxmask import arguments, files
    if FLAGS.json not in (None, "-") and os.path.exists(FLAGS.json) and not os.path.isfile(FLAGS.json):
        raise ValueError(f"--json {FLAGS.json} is {files.describe(FLAGS.json)}, not a file: pass a file to write "
                         "(or - for stdout)")
    for name in ("batch_size", "widths", "masker_widths", "phi_widths"):
        for value in FLAGS[name].value or ():
            try:
                arguments.integer(int(value), f"--{name}", 1)
            except ValueError:
                raise ValueError(f"--{name}: {value!r} is not a positive integer") from None
    for spec in specs():
        arguments.integer(spec.image_size, "--image_size", 8, 4096)
        # A floor of what a round holds: its inputs and one full-resolution activation of the widest layer.
        floats = spec.image_size ** 2 * (spec.channels + max(*spec.masker_widths, *spec.phi_widths))
        arguments.check_bytes(spec.batch_size * floats * 4,
                              f"--batch_size={spec.batch_size} at --image_size={spec.image_size} (the round's "
                              "inputs and activations)", "pass a smaller --batch_size or --image_size")


def main_end_to_end() -> None:
    from jaxmask import bench, bench_e2e
    config = end_to_end_config()
    report = bench_e2e.run(config, rounds=FLAGS.rounds, repeats=FLAGS.repeats,
                           workers=tuple(int(w) for w in FLAGS.workers), seconds=FLAGS.input_seconds)
    report = {"environment": bench.environment(), "argv": sys.argv, "config": config.to_dict(), **report}
    print(bench_e2e.format_report(report), flush=True)
    write_json(report)


def main(argv) -> None:
    if len(argv) > 1:
        raise SystemExit(f"jaxmask bench: unexpected arguments {argv[1:]}")
    if FLAGS.repeats < 5:
        raise SystemExit(f"jaxmask bench: --repeats={FLAGS.repeats}: the steady-state time is a "
                         "median of at least 5 repeats")
    unknown = set(FLAGS.benchmarks) - {"round", "masker", "topk"}
    if unknown:
        raise SystemExit(f"--benchmarks: unknown {sorted(unknown)}; choose from round, masker, topk")
    try:
        check_arguments()
    except (TypeError, ValueError) as error:
        raise SystemExit(f"jaxmask bench: error: {error}") from None
    from jaxmask import platform
    platform.configure_xla_defaults()   # idempotent; cli.main normally did it already
    if FLAGS.end_to_end:
        return main_end_to_end()
    from jaxmask import bench
    torch_reference = bench.load_torch_reference(FLAGS.torch_reference) if FLAGS.compare_torch else None
    report = {"environment": bench.environment(), "argv": sys.argv, "runs": []}
    for spec in specs():
        report["runs"].append(bench.run_spec(
            spec, benchmarks=tuple(FLAGS.benchmarks), warmup=FLAGS.warmup, repeats=FLAGS.repeats,
            torch_reference=torch_reference, torch_variants=tuple(FLAGS.torch_variants),
            check=FLAGS.check, sgemm=FLAGS.sgemm, seed=FLAGS.seed))
        print(bench.format_table({"runs": report["runs"][-1:]}), flush=True)
    write_json(report)
    failed = [r["spec"] for r in report["runs"] if r["equivalence"] and not r["equivalence"]["ok"]]
    if failed:
        raise SystemExit(f"jaxmask bench: PyTorch reference does not match jaxmask for {failed}")
