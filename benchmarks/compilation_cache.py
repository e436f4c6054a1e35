"""First vs second run of each jaxmask command with a fresh persistent compilation cache.

    python benchmarks/compilation_cache.py --out benchmarks/results/cpu_2026-12-05/compilation_cache.json
    python benchmarks/compilation_cache.py --cases train_smoke,mask     # a subset

Every case gets its own empty cache folder (``--compilation_cache``), then runs
the same command twice, each time in a fresh workdir or output folder: the
first run compiles and writes the cache, the second loads from it. Recorded per
run: wall and CPU seconds of the whole process (``resource`` children usage),
and for the training commands each "first round (compilation included) took
X s (Y s of CPU); compilation cache …" log line. On a shared machine the CPU
seconds are the steadier figure: other load stretches the wall time. Cases:

* ``train_smoke``: ``jaxmask train --config configs/synth_hair.py:smoke``
* ``train_default``: ``jaxmask train`` (configs/synth_hair.py, the default
  ``realx`` game) stopped after 2 rounds (``--config.num_rounds=2``: the same
  programs as a full run; the first round is what is compared)
* ``mask``: ``jaxmask mask`` on 10 SynthFaces test images (64×64 PNG), with the
  masker ``train_smoke`` exported
* ``evaluate``: ``jaxmask evaluate`` of that masker on the smoke config with a
  small schedule (1 epoch, 1000 training and 500 test images, no probes)
* ``run``: ``jaxmask run --config configs/synth_hair.py:smoke
  --eval.network.epochs=1`` (the README's whole-pipeline check; two trainings)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "synth_hair.py:smoke")
FIRST_ROUND = re.compile(r"first round \(compilation included\) took ([0-9.]+) s \(([0-9.]+) s of CPU\); "
                         r"(compilation cache [^\n]*)")
SMALL_EVAL = ["--eval.network.epochs=1", "--eval.network.retrain_epochs=1", "--eval.max_train=1000",
              "--eval.max_test=500", "--eval.mask_only=false", "--eval.hidden_part=false",
              "--eval.mask_swap=false", "--eval.oracle=false", "--k_sweep=0.25", "--eval.dlib=off"]


def timed(command: list[str], env: dict) -> dict:
    """Runs ``command``; its wall and CPU seconds, exit status and first-round log lines."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{log[-3000:]}")
    rounds = [{"seconds": float(s), "cpu_s": float(c), "cache": phrase} for s, c, phrase in FIRST_ROUND.findall(log)]
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "first_rounds": rounds}


def jaxmask(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxmask.cli", *args]


def write_images(folder: str, count: int = 10) -> None:
    sys.path.insert(0, REPO)
    import numpy as np
    from PIL import Image
    from jaxmask.data import synthetic
    images = synthetic.generate(synthetic.SynthFacesSpec(image_size=64), "test", count)["image"]
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(np.asarray(image)).save(os.path.join(folder, f"face{i}.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="train_smoke,train_default,mask,evaluate,run")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    cases = args.cases.split(",")
    env = dict(os.environ, PYTHONPATH=REPO)
    results = {"machine": {"cpu": _cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_average_at_start": os.getloadavg()}, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="jaxmask_cache_bench_") as root:
        bundle = os.path.join(root, "bundle")
        needs_bundle = {"mask", "evaluate"} & set(cases)
        for case in cases:
            cache = os.path.join(root, f"cache_{case}")
            runs = []
            for attempt in (1, 2):
                out = os.path.join(root, f"{case}_{attempt}")
                flag = f"--compilation_cache={cache}"
                if case == "train_smoke":
                    command = jaxmask("train", "--config", SMOKE, f"--workdir={out}", flag)
                elif case == "train_default":
                    command = jaxmask("train", f"--workdir={out}", "--config.num_rounds=2", flag)
                elif case == "mask":
                    if not os.path.exists(os.path.join(root, "images")):
                        write_images(os.path.join(root, "images"))
                    command = jaxmask("mask", "--model", bundle, "--input", os.path.join(root, "images"),
                                      "--output", out, "--noprogress", flag)
                elif case == "evaluate":
                    command = jaxmask("evaluate", "--config", SMOKE, "--models", f"Ours={bundle}", "--out", out,
                                      *SMALL_EVAL, flag)
                elif case == "run":
                    command = jaxmask("run", "--config", SMOKE, f"--workdir={out}", "--eval.network.epochs=1", flag)
                else:
                    raise SystemExit(f"unknown case {case!r}")
                if needs_bundle and case in ("mask", "evaluate") and not os.path.exists(bundle):
                    workdir = os.path.join(root, "bundle_workdir")
                    timed(jaxmask("train", "--config", SMOKE, f"--workdir={workdir}",
                                  f"--compilation_cache={os.path.join(root, 'cache_bundle')}"), env)
                    timed(jaxmask("export", f"--workdir={workdir}", f"--out={bundle}"), env)
                runs.append(timed(command, env))
                print(case, attempt, json.dumps(runs[-1]), flush=True)
            entry = {"first": runs[0], "second": runs[1],
                     "second_over_first_wall": round(runs[1]["wall_s"] / runs[0]["wall_s"], 3)}
            if runs[0]["first_rounds"]:
                pairs = list(zip(runs[0]["first_rounds"], runs[1]["first_rounds"]))
                entry["second_over_first_first_round"] = [round(b["seconds"] / a["seconds"], 3) for a, b in pairs]
                entry["second_over_first_first_round_cpu"] = [round(b["cpu_s"] / a["cpu_s"], 3) for a, b in pairs]
            results["cases"][case] = entry
    results["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


if __name__ == "__main__":
    main()
