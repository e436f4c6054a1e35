"""The device run behind benchmarks/gpu.sh: a correctness check, then timings, within a budget.

    python3 benchmarks/gpu_bench.py --out=$OUT --budget_s=270

1. Correctness: one predictor step and one obfuscator step of the paper model
   (batch 8, SGD so updates are gradients) on the accelerator against the same
   steps on the CPU backend of the same process (same weights, same batch,
   float32 matmuls at full precision; relative update error < 1e-2), and
   the PyTorch reference's one-step equivalence on CUDA when torch is there.
2. Timings (``jaxmask.bench.run_spec``; PyTorch eager alternating when
   importable) at the paper model for batch 256 and 1024, float32 and
   bfloat16, most informative first; a configuration that would start after
   ``--budget_s`` is skipped and named in the log. The JSON is rewritten after
   every configuration, so a timeout still leaves what finished.

Writes ``$OUT/gpu_bench.json`` and ``$OUT/gpu_bench.txt``. Uses only
jax/flax/optax/numpy (+ torch if present): no grain, tfds or ml_collections.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

START = time.perf_counter()


def log(out: pathlib.Path, text: str) -> None:
    print(text, flush=True)
    with open(out / "gpu_bench.txt", "a") as f:
        f.write(text + "\n")


def check_against_cpu(spec) -> dict:
    """One round's first predictor step and its obfuscator step, accelerator vs CPU backend."""
    import jax
    import numpy as np

    from jaxmask import bench, build
    from jaxmask.games import paper

    # SGD: its first update is −lr·g, so comparing updates compares gradients (Adam's
    # ≈ −lr·sign(g) would turn rounding noise in near-zero gradients into ±lr).
    spec = dataclasses.replace(spec, optimizer="sgd")
    method = build.build_method(spec.config())
    cpu = jax.devices("cpu")[0]
    accel = jax.devices()[0]
    batches = bench.synthetic_batches(spec)
    first = {k: v[0] for k, v in batches.items()}
    last = {k: v[spec.predictor_steps] for k, v in batches.items()}
    results = {}
    with jax.default_matmul_precision("highest"):
        for name, device in (("cpu", cpu), ("accelerator", accel)):
            with jax.default_device(device):
                state = build.create_train_state(method, jax.random.PRNGKey(0),
                                                     (spec.image_size, spec.image_size, spec.channels))
                mask = jax.jit(lambda v, x: method.players.masker.apply(v, x, train=False))(
                    state.masker.variables, jax.device_put(first["image"], device))
                after_p, mp = jax.jit(lambda s, b: paper.predictor_step(method, s, b))(
                    state, jax.device_put(first, device))
                after_o, mo = jax.jit(lambda s, b: paper.obfuscator_step(method, s, b))(
                    after_p, jax.device_put(last, device))
                results[name] = jax.device_get({
                    "mask": mask, "before": state.masker.params, "after": after_o.masker.params,
                    "phi_before": state.phi.params, "phi_after": after_o.phi.params,
                    "predictor_loss": mp["predictor_loss"], "obfuscator_loss": mo["obfuscator_loss"]})
    c, a = results["cpu"], results["accelerator"]
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
    errors = {}
    for player, (before, after) in {"masker": ("before", "after"),
                                    "phi": ("phi_before", "phi_after")}.items():
        upd_c = flat(c[after]) - flat(c[before])
        upd_a = flat(a[after]) - flat(a[before])
        errors[player] = float(np.linalg.norm(upd_c - upd_a) / np.linalg.norm(upd_c))
    report = {
        "mask_max_abs_diff": float(np.max(np.abs(c["mask"] - a["mask"]))),
        "predictor_loss_cpu": float(c["predictor_loss"]),
        "predictor_loss_accelerator": float(a["predictor_loss"]),
        "obfuscator_loss_cpu": float(c["obfuscator_loss"]),
        "obfuscator_loss_accelerator": float(a["obfuscator_loss"]),
        "masker_update_rel_error": errors["masker"], "phi_update_rel_error": errors["phi"],
    }
    rel = lambda x, y: abs(x - y) / max(1.0, abs(x))
    report["ok"] = bool(report["mask_max_abs_diff"] < 1e-3
                        and rel(report["predictor_loss_cpu"], report["predictor_loss_accelerator"]) < 1e-3
                        and rel(report["obfuscator_loss_cpu"], report["obfuscator_loss_accelerator"]) < 1e-3
                        and max(errors.values()) < 1e-2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget_s", type=float, default=270.0)
    parser.add_argument("--batch_sizes", default="256,1024")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import jax

    from jaxmask import bench

    report = {"environment": bench.environment(), "argv": sys.argv, "checks": {}, "runs": [],
              "skipped": []}
    save = lambda: (out / "gpu_bench.json").write_text(json.dumps(report, indent=1))
    log(out, f"devices: {jax.devices()}  jax {jax.__version__}")

    torch_reference = None
    try:
        import torch
        torch.backends.cudnn.benchmark = True   # XLA autotunes its convolutions too
        torch_reference = bench.load_torch_reference()
        report["environment"]["torch"] = torch.__version__
        report["environment"]["torch_cuda"] = torch.cuda.is_available()
        log(out, f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    except ImportError as e:
        log(out, f"torch not importable ({e}): PyTorch reference skipped")

    base = bench.Spec(batch_size=8)
    try:
        report["checks"]["accelerator_vs_cpu"] = check_against_cpu(base)
    except Exception:
        report["checks"]["accelerator_vs_cpu"] = {"ok": False, "error": traceback.format_exc()}
    log(out, f"check accelerator vs CPU: {report['checks']['accelerator_vs_cpu']}")
    if torch_reference is not None:
        try:
            report["checks"]["torch_equivalence"] = torch_reference.check_equivalence(base)
        except Exception:
            report["checks"]["torch_equivalence"] = {"ok": False, "error": traceback.format_exc()}
        log(out, f"check torch equivalence: {report['checks']['torch_equivalence']}")
    save()

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    dtypes = args.dtypes.split(",")
    # Most informative first: the smaller batch in both dtypes, then the larger.
    order = [(b, d) for b in batch_sizes for d in dtypes]
    for batch_size, dtype in order:
        elapsed = time.perf_counter() - START
        if elapsed > args.budget_s:
            report["skipped"].append({"batch_size": batch_size, "dtype": dtype,
                                      "reason": f"budget: {elapsed:.0f}s > {args.budget_s:.0f}s"})
            log(out, f"skipped batch {batch_size} {dtype}: {elapsed:.0f}s elapsed")
            continue
        spec = dataclasses.replace(base, batch_size=batch_size, dtype=dtype)
        try:
            run = bench.run_spec(spec, warmup=args.warmup, repeats=args.repeats,
                                 torch_reference=torch_reference, check=False)
        except Exception:
            report["skipped"].append({"batch_size": batch_size, "dtype": dtype,
                                      "reason": traceback.format_exc()})
            log(out, f"batch {batch_size} {dtype} failed:\n{traceback.format_exc()}")
            continue
        run["elapsed_s"] = time.perf_counter() - START
        report["runs"].append(run)
        save()
        log(out, bench.format_table({"runs": [run]}))
        mfu = {k: v for k, v in run["results"].get("round", {}).items() if k.startswith("mfu")}
        log(out, f"  round MFU: {mfu}  (elapsed {run['elapsed_s']:.0f}s)")
    save()
    ok = all(c.get("ok") for c in report["checks"].values())
    log(out, f"done in {time.perf_counter() - START:.0f}s; checks {'ok' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
