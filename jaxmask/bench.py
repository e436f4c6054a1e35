"""Throughput harness behind ``jaxmask bench``: the round, the release path and top-K.

Everything is timed the same way: compiled ahead of time (compile seconds
reported separately), ``warmup`` untimed calls, then ``repeats`` timed calls
that block on their results; the steady-state time is the median. The
contenders of one configuration (jaxmask's round, masker forward, top-K, the
PyTorch reference, numpy's sgemm) are timed *alternately*, one call each per
repeat, so load from other processes hits them alike and their ratios stay
honest on a shared machine.

FLOPs come from XLA's cost analysis of the compiled call (the same count is
used for the PyTorch reference, which computes the same function), so
GFLOP/s = FLOPs / median time. On CPU the peak is numpy's sgemm rate measured
in the same loop; on a GPU it is the vendor's dense peak for the dtype.

The bench path imports neither grain nor tensorflow_datasets: it builds
synthetic batches itself.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.util
import math
import pathlib
import platform as host_platform
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxmask import build, config_files, steps, topk
from jaxmask.games import table

BENCHMARKS = ("round", "masker", "topk")

# Dense peak TFLOP/s by (device kind substring, dtype); float32 lists the
# non-tensor-core rate and, as "tf32", the tensor-core rate XLA may use.
GPU_PEAK_TFLOPS = {
    "H100": {"bfloat16": 989.0, "float32": 67.0, "tf32": 495.0},
    "H200": {"bfloat16": 989.0, "float32": 67.0, "tf32": 495.0},
    "A100": {"bfloat16": 312.0, "float32": 19.5, "tf32": 156.0},
}


@dataclasses.dataclass(frozen=True)
class Spec:
    """One benchmarked configuration (defaults: configs/synth_hair.py:paper at batch 64)."""
    batch_size: int = 64
    image_size: int = 64
    channels: int = 3
    num_classes: int = 4
    masker_widths: tuple[int, ...] = (32, 64, 128, 256)
    phi_widths: tuple[int, ...] = (32, 64, 128, 256)
    phi_hidden: int = 256
    dtype: str = "float32"
    topk_fraction: float = 0.25
    mask_values: str = "binary"
    mask_gradient: str = "straight_through"
    predictor_steps: int = 3
    obfuscator_steps: int = 1
    optimizer: str = "adam"
    learning_rate: float = 1e-3

    @classmethod
    def from_config(cls, config, **overrides) -> "Spec":
        """The fields of a jaxmask config (configs/*.py); ``overrides`` win."""
        fields = dict(
            batch_size=config.batch_size, image_size=config.image_size, channels=config.channels,
            num_classes=config.num_classes, masker_widths=tuple(config.masker_widths),
            phi_widths=tuple(config.phi_widths), phi_hidden=config.phi_hidden, dtype=config.dtype,
            topk_fraction=config.topk_fraction, mask_values=config.mask_values,
            mask_gradient=config.mask_gradient, predictor_steps=config.predictor_steps,
            obfuscator_steps=config.obfuscator_steps, optimizer=config.optimizer,
            learning_rate=config.masker_learning_rate)
        fields.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**fields)

    def config(self):
        """The embedded default config (configs/synth_hair.py) with this spec's fields, in the paper's
        game: the one benchmarks/torch_reference.py implements."""
        config = config_files.load(config_files.default_config_path())
        config.update(dict(
            dtype=self.dtype, image_size=self.image_size, channels=self.channels, batch_size=self.batch_size,
            predictor_steps=self.predictor_steps, obfuscator_steps=self.obfuscator_steps,
            topk_fraction=self.topk_fraction, mask_values=self.mask_values, mask_gradient=self.mask_gradient,
            masker_widths=self.masker_widths, phi_widths=self.phi_widths, phi_hidden=self.phi_hidden,
            optimizer=self.optimizer, masker_learning_rate=self.learning_rate, phi_learning_rate=self.learning_rate,
            game="paper", mask_channel=False, reveal="exact", seed=0))
        if (self.num_classes, self.channels) != (config.num_classes, config.channels):   # not SynthFaces hair
            config.update(dict(dataset="image_folder", task="folder", num_classes=self.num_classes))
        return config

    @property
    def steps_per_round(self) -> int:
        return self.predictor_steps + self.obfuscator_steps

    @property
    def k(self) -> int:
        return topk.num_revealed(self.topk_fraction, self.image_size, self.image_size)


@dataclasses.dataclass
class Contender:
    """One timed callable: ``call()`` runs once and blocks on its results."""
    name: str
    framework: str
    call: Callable[[], Any]
    images: int                     # images processed per call
    flops: float | None = None      # per call
    compile_s: float | None = None
    times: list[float] = dataclasses.field(default_factory=list)

    def result(self, peak_gflops: float | None) -> dict[str, Any]:
        median = statistics.median(self.times)
        out = {"framework": self.framework, "compile_s": self.compile_s, "median_s": median,
               "min_s": min(self.times), "times_s": self.times,
               "images_per_s": self.images / median}
        if self.flops:
            out["flops_per_image"] = self.flops / self.images
            out["gflops_per_s"] = self.flops / median / 1e9
            if peak_gflops:
                out["pct_of_peak"] = 100.0 * out["gflops_per_s"] / peak_gflops
        return out


def _flops(stage) -> float | None:
    analysis = stage.cost_analysis()
    if isinstance(analysis, (list, tuple)):   # older jax: one dict per program
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def _compile(fn, *args, donate_argnums=()):
    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=donate_argnums).lower(*args).compile()
    return compiled, time.perf_counter() - start


def _model_flops(fn, *args) -> float | None:
    """FLOPs of the program as XLA:CPU counts it, whatever the default backend.

    The compiled program's own count depends on the backend: on GPU the
    convolutions become cuDNN custom calls that XLA's cost analysis does not
    count (the H200 run reported 0.13 instead of 3.6 GFLOP per image), and the
    GPU backend gives no estimate for a lowered program. Lowering the same
    function for the CPU (abstract arguments, nothing is copied or run) counts
    the model's arithmetic the same way on every machine, so GFLOP/s and MFU
    compare across devices.
    """
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu), args)
    try:
        return _flops(jax.jit(fn).lower(*abstract))
    except Exception:   # noqa: BLE001 - a missing estimate only drops the GFLOP/s column
        return None


def synthetic_batches(spec: Spec, seed: int = 0) -> dict[str, np.ndarray]:
    """Stacked round batches: image (S, B, H, W, C) float32 in [0, 1], label (S, B) int32."""
    rng = np.random.default_rng(seed)
    shape = (spec.steps_per_round, spec.batch_size, spec.image_size, spec.image_size, spec.channels)
    return {"image": rng.random(shape, dtype=np.float32),
            "label": rng.integers(0, spec.num_classes, shape[:2]).astype(np.int32)}


def jax_contenders(spec: Spec, method, state, batches, benchmarks=BENCHMARKS) -> list[Contender]:
    """jaxmask's round (state donated), masker forward (release path) and top-K alone."""
    out = []
    device_batches = jax.device_put(batches)
    if "round" in benchmarks:
        fresh = jax.tree.map(jnp.copy, state)      # the round donates its state
        round_step = functools.partial(table.play_round, method)
        round_flops = _model_flops(round_step, fresh, device_batches)
        round_fn, seconds = _compile(round_step, fresh, device_batches, donate_argnums=0)
        holder = [fresh]

        def round_call():
            new_state, metrics = round_fn(holder[0], device_batches)
            holder[0] = jax.block_until_ready(new_state)
            jax.block_until_ready(metrics)

        out.append(Contender("round", "jax", round_call, spec.steps_per_round * spec.batch_size,
                             round_flops, seconds))
    images = device_batches["image"][0]
    if "masker" in benchmarks:
        release = functools.partial(steps.mask_images, method)
        variables = state.masker.variables
        release_fn, seconds = _compile(lambda v, x: release(v, x), variables, images)
        release_flops = _model_flops(lambda v, x: release(v, x), variables, images)
        out.append(Contender("masker", "jax", lambda: jax.block_until_ready(release_fn(variables, images)),
                             spec.batch_size, release_flops, seconds))
    if "topk" in benchmarks:
        m = jax.random.uniform(jax.random.PRNGKey(1), images.shape[:-1] + (1,), jnp.float32)
        split = functools.partial(topk.topk_split, k=method.reveal.k, values=method.reveal.values,
                                  gradient=method.reveal.gradient)

        def forward_backward(m):
            (keep, rest), vjp = jax.vjp(split, m)
            return keep, rest, vjp((keep, rest))[0]

        split_fn, seconds = _compile(split, m)
        out.append(Contender("topk", "jax", lambda: jax.block_until_ready(split_fn(m)),
                             spec.batch_size, None, seconds))
        split_fb_fn, seconds = _compile(forward_backward, m)
        out.append(Contender("topk_fwd_bwd", "jax", lambda: jax.block_until_ready(split_fb_fn(m)),
                             spec.batch_size, None, seconds))
    return out


def sgemm_contender(n: int = 2048) -> Contender:
    """numpy float32 n×n matmul: the machine's practical CPU peak, timed in the same loop."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    return Contender("sgemm", "numpy", lambda: a @ b, 1, 2.0 * n ** 3, 0.0)


def time_alternating(contenders: list[Contender], warmup: int, repeats: int) -> None:
    """Warm every contender up, then time one call of each per repeat, in turn."""
    for contender in contenders:
        for _ in range(warmup):
            contender.call()
    for _ in range(repeats):
        for contender in contenders:
            start = time.perf_counter()
            contender.call()
            contender.times.append(time.perf_counter() - start)


def gpu_peak_gflops(device_kind: str, dtype: str) -> dict[str, float]:
    for name, peaks in GPU_PEAK_TFLOPS.items():
        if name.lower() in device_kind.lower():
            if dtype == "bfloat16":
                return {"bfloat16": 1e3 * peaks["bfloat16"]}
            return {"float32": 1e3 * peaks["float32"], "tf32": 1e3 * peaks["tf32"]}
    return {}


def load_torch_reference(path: str | None = None):
    """benchmarks/torch_reference.py (next to the jaxmask package in a checkout), loaded by path."""
    path = pathlib.Path(path) if path else (
        pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "torch_reference.py")
    if not path.exists():
        raise FileNotFoundError(
            f"--compare_torch needs the PyTorch reference at {path}: run from a jaxmask checkout "
            "or pass --torch_reference=/path/to/torch_reference.py")
    module_spec = importlib.util.spec_from_file_location("jaxmask_torch_reference", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def run_spec(spec: Spec, *, benchmarks=BENCHMARKS, warmup: int = 1, repeats: int = 5,
             torch_reference=None, torch_variants=("eager",), check: bool = True,
             sgemm: bool | None = None, method_transform: Callable | None = None,
             seed: int = 0) -> dict[str, Any]:
    """Benchmarks one ``Spec``; returns a JSON-ready dict (see ``format_table``)."""
    if repeats < 5:
        raise ValueError(f"repeats={repeats}: the steady-state time is a median of at least 5 repeats")
    method = build.build_method(spec.config())
    if method_transform is not None:
        method = method_transform(method)
    state = build.create_train_state(method, jax.random.PRNGKey(seed),
                                     (spec.image_size, spec.image_size, spec.channels))
    batches = synthetic_batches(spec, seed)
    contenders = jax_contenders(spec, method, state, batches, benchmarks)
    on_cpu = jax.default_backend() == "cpu"
    if sgemm if sgemm is not None else on_cpu:
        contenders.append(sgemm_contender())
    equivalence = None
    if torch_reference is not None:
        if check:
            equivalence = torch_reference.check_equivalence(
                dataclasses.replace(spec, dtype="float32"), seed=seed,
                method_transform=method_transform)
        flops = {c.name: c.flops for c in contenders}
        contenders += torch_reference.contenders(spec, state, batches, benchmarks, flops,
                                                 variants=torch_variants)
    time_alternating(contenders, warmup, repeats)

    device_kind = jax.devices()[0].device_kind
    sgemm_result = next((c for c in contenders if c.name == "sgemm"), None)
    peaks = {"sgemm": sgemm_result.result(None)["gflops_per_s"]} if sgemm_result else {}
    if not on_cpu:
        peaks.update(gpu_peak_gflops(device_kind, spec.dtype))
    main_peak = peaks.get("sgemm") or peaks.get(spec.dtype) or None
    results = {}
    for c in contenders:
        if c.name == "sgemm":
            continue
        key = c.name if c.framework == "jax" else f"{c.name}[{c.framework}]"
        results[key] = c.result(main_peak)
        for peak_name, peak in peaks.items():
            if results[key].get("gflops_per_s") and peak_name != "sgemm":
                results[key][f"mfu_{peak_name}"] = results[key]["gflops_per_s"] / peak
    summary = {}
    if "round" in results and "topk_fwd_bwd" in results:
        summary["topk_share_of_round"] = (spec.steps_per_round * results["topk_fwd_bwd"]["median_s"]
                                          / results["round"]["median_s"])
    if "masker" in results and "topk" in results:
        summary["topk_share_of_masker"] = results["topk"]["median_s"] / results["masker"]["median_s"]
    for key, r in results.items():
        base = key.split("[")[0]
        if r["framework"] != "jax" and base in results:
            # > 1: jaxmask is faster than this reference.
            summary[f"speedup_vs_{key}"] = r["median_s"] / results[base]["median_s"]
    return {"spec": dataclasses.asdict(spec), "k": spec.k, "device_kind": device_kind,
            "peaks_gflops": peaks, "results": results, "summary": summary,
            "equivalence": equivalence}


def environment() -> dict[str, Any]:
    """Where and with what the numbers were taken."""
    import os
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": [d.device_kind for d in jax.devices()],
            "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "python": host_platform.python_version(),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
    try:
        import jaxlib
        info["jaxlib"] = jaxlib.__version__
    except ImportError:
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return host_platform.processor() or "unknown"


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width table of every run in ``report["runs"]``."""
    header = (f"{'benchmark':<22}{'batch':>6} {'dtype':<9}{'compile s':>10}{'median s':>10}"
              f"{'images/s':>11}{'GFLOP/img':>10}{'GFLOP/s':>9}{'%peak':>7}")
    lines = [header, "-" * len(header)]
    for run in report["runs"]:
        spec = run["spec"]
        for key, r in run["results"].items():
            def fmt(value, spec_):
                if value is not None and math.isfinite(value):
                    return format(value, spec_)
                return "-".rjust(int(spec_.split(".")[0]))
            lines.append(
                f"{key:<22}{spec['batch_size']:>6} {spec['dtype']:<9}{fmt(r['compile_s'], '10.2f')}"
                f"{fmt(r['median_s'], '10.4f')}{fmt(r['images_per_s'], '11.1f')}"
                f"{fmt(r.get('flops_per_image', 0) / 1e9 or None, '10.3f')}"
                f"{fmt(r.get('gflops_per_s'), '9.1f')}{fmt(r.get('pct_of_peak'), '7.1f')}")
        peaks = ", ".join(f"{k} {v:.0f}" for k, v in run["peaks_gflops"].items())
        summary = ", ".join(f"{k} {v:.3f}" for k, v in run["summary"].items())
        lines.append(f"  peak GFLOP/s: {peaks or '-'}; {summary}")
        if run.get("equivalence"):
            eq = run["equivalence"]
            lines.append(f"  torch equivalence ({'ok' if eq['ok'] else 'FAILED'}): " + ", ".join(
                f"{k} {v:.3g}" for k, v in eq.items() if isinstance(v, float)))
    return "\n".join(lines)
