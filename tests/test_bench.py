"""``jaxmask bench`` keeps working: a tiny end-to-end run, and the XLA-defaults merge.

No test asserts a time. The CLI runs in a subprocess so this process's device
count and XLA_FLAGS (conftest) do not leak into it, and so its own XLA
defaults apply as they do for a user.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from jaxmask import platform

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--config", str(ROOT / "configs" / "synth_hair.py") + ":smoke", "--image_size=8",
        "--batch_size=4", "--masker_widths=4,8", "--phi_widths=4,4", "--phi_hidden=8"]


def _bench(tmp_path, *extra, env_extra=None):
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    # Test speed only: LLVM -O0 halves the compile time of the tiny round; jaxmask's own
    # defaults are still merged in (configure_xla_defaults adds, never replaces).
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-m", "jaxmask.cli", "bench", *TINY, f"--json={out}", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_reports_finite_throughputs(tmp_path):
    report, stdout = _bench(tmp_path)
    assert "benchmark" in stdout and "round" in stdout          # the table was printed
    env = report["environment"]
    assert env["backend"] == "cpu" and env["jax"]
    [run] = report["runs"]
    assert run["spec"]["batch_size"] == 4 and run["spec"]["image_size"] == 8
    assert run["k"] == 32                                        # round(0.5 · 8 · 8), the default K
    results = run["results"]
    assert set(results) == {"round", "masker", "topk", "topk_fwd_bwd"}
    for name, result in results.items():
        assert len(result["times_s"]) == 5, name
        assert all(_positive(t) for t in result["times_s"]), name
        assert _positive(result["median_s"]) and _positive(result["images_per_s"]), name
        assert _positive(result["compile_s"]), name
    # A round is 3 predictor + 1 obfuscator steps of 4 images each.
    round_ = results["round"]
    assert math.isclose(round_["images_per_s"] * round_["median_s"], 16)
    for name in ("round", "masker"):
        assert _positive(results[name]["flops_per_image"]), name
        assert _positive(results[name]["gflops_per_s"]), name
        assert _positive(results[name]["pct_of_peak"]), name
    assert results["round"]["flops_per_image"] > results["masker"]["flops_per_image"]
    assert _positive(run["peaks_gflops"]["sgemm"])
    assert 0 < run["summary"]["topk_share_of_round"] < 10   # a ratio of medians, not a bound
    assert run["equivalence"] is None


def test_bench_rejects_too_few_repeats(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "jaxmask.cli", "bench", *TINY, "--repeats=2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "at least 5" in proc.stderr


def test_bench_compare_torch(tmp_path):
    pytest.importorskip("torch")
    # One OpenMP thread: tiny eager ops with two threads stall on a loaded machine.
    report, stdout = _bench(tmp_path, "--compare-torch", "--benchmarks=round",
                            env_extra={"OMP_NUM_THREADS": "1"})
    [run] = report["runs"]
    assert run["equivalence"]["ok"], run["equivalence"]
    assert _positive(run["results"]["round[torch_eager]"]["median_s"])
    assert _positive(run["summary"]["speedup_vs_round[torch_eager]"])
    assert "torch equivalence (ok)" in stdout


def test_merge_xla_flags_keeps_user_flags():
    defaults = {"xla_cpu_experimental_ynn_fusion_type": "-individual_convolution",
                "xla_cpu_enable_fast_math": "false"}
    merged = platform.merge_xla_flags(
        "--xla_cpu_experimental_ynn_fusion_type=individual_dot --xla_dump_to=/tmp/x", defaults)
    assert "--xla_cpu_experimental_ynn_fusion_type=individual_dot" in merged
    assert "-individual_convolution" not in merged
    assert merged.endswith("--xla_cpu_enable_fast_math=false")
    assert platform.merge_xla_flags("", {}) == ""


def test_configure_xla_defaults_is_overridable():
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    merged = platform.configure_xla_defaults(env)
    assert env["XLA_FLAGS"] == merged and merged.startswith("--xla_dump_to=/tmp/x")
    assert all(f"--{name}=" in merged for name in platform.xla_defaults())
    assert platform.configure_xla_defaults(env) == merged                   # idempotent
    off = {"XLA_FLAGS": "", platform.DISABLE_ENV: "0"}
    assert platform.configure_xla_defaults(off) == "" and off["XLA_FLAGS"] == ""


def test_xla_defaults_only_on_measured_jaxlib():
    assert platform.xla_defaults((0, 10)) == {
        "xla_cpu_experimental_ynn_fusion_type": "-individual_convolution"}
    assert platform.xla_defaults((0, 11)) == {}   # unknown XLA flags abort: never guess
    assert platform.xla_defaults((0, 9)) == {}


@pytest.mark.slow
def test_bench_end_to_end_smoke(tmp_path):
    """--end_to_end runs its three measurements on a prepared tiny synth_faces (numbers not judged).

    Slow (prepares a tfds dataset, times the input paths, three rounds and a training); the fast
    siblings: test_bench_reports_finite_throughputs (the bench command end to end),
    tests/test_train.py (a training's time fractions) and tests/test_data_pipeline.py (the cached,
    placed and prefetched input paths)."""
    out = tmp_path / "e2e.json"
    # One device and the session's XLA flags: the smoke round is tests/test_checkpoint.py's `jaxmask
    # train` round, loaded from the session's compilation cache rather than compiled again.
    from test_checkpoint import train_env
    env = train_env()
    proc = subprocess.run(
        [sys.executable, "-m", "jaxmask.cli", "bench", "--end_to_end",
         "--config", str(ROOT / "configs" / "synth_hair.py") + ":smoke", "--num_train=64",
         f"--data_dir={tmp_path / 'tfds'}", "--rounds=2", "--workers=0", "--input_seconds=0.2",
         f"--json={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["input_images_per_s"]) == {
        "records_decoded_workers0", "cache_build_threads1", f"cache_build_threads{os.cpu_count()}",
        "cache_host_float", "cache_device_uint8"}
    assert all(_positive(rate) for rate in report["input_images_per_s"].values())
    assert len(report["round"]["times_before_s"]) == len(report["round"]["times_after_s"]) == 5
    e2e = report["end_to_end"]
    assert _positive(e2e["images_per_s"]) and e2e["images_per_s_training"] >= e2e["images_per_s"]
    assert e2e["eval_fraction"] > 0 and 0 <= e2e["input_fraction"] <= 1
    assert report["ratio_end_to_end_over_round"] == e2e["images_per_s"] / report["round"]["images_per_s"]
    assert 0 < report["training_time_in_round"] <= 1
    assert "end-to-end / round:" in proc.stdout
